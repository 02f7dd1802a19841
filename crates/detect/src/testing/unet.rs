//! Synthetic UNets: LDM (`openaimodel.UNetModel`) and diffusers (`UNet2DConditionModel`) key
//! lists with real shapes.

use super::Keys;

/// The structure of a UNet to generate.
#[derive(Debug, Clone)]
pub(crate) struct UnetSpec {
    pub(crate) model_channels: u64,
    pub(crate) in_channels: u64,
    pub(crate) channel_mult: Vec<u64>,
    pub(crate) res_blocks: u64,
    /// Transformer depth per level (0 = no attention).
    pub(crate) depth: Vec<u64>,
    pub(crate) middle_depth: u64,
    pub(crate) context_dim: u64,
    pub(crate) linear_proj: bool,
    pub(crate) adm: Option<u64>,
}

impl UnetSpec {
    pub(crate) fn sd15() -> Self {
        Self {
            model_channels: 320,
            in_channels: 4,
            channel_mult: vec![1, 2, 4, 4],
            res_blocks: 2,
            depth: vec![1, 1, 1, 0],
            middle_depth: 1,
            context_dim: 768,
            linear_proj: false,
            adm: None,
        }
    }

    pub(crate) fn sd2() -> Self {
        Self {
            context_dim: 1024,
            linear_proj: true,
            ..Self::sd15()
        }
    }

    pub(crate) fn sdxl() -> Self {
        Self {
            model_channels: 320,
            in_channels: 4,
            channel_mult: vec![1, 2, 4],
            res_blocks: 2,
            depth: vec![0, 2, 10],
            middle_depth: 10,
            context_dim: 2048,
            linear_proj: true,
            adm: Some(2816),
        }
    }

    pub(crate) fn refiner() -> Self {
        Self {
            model_channels: 384,
            in_channels: 4,
            channel_mult: vec![1, 2, 4, 4],
            res_blocks: 2,
            depth: vec![0, 4, 4, 0],
            middle_depth: 4,
            context_dim: 1280,
            linear_proj: true,
            adm: Some(2560),
        }
    }

    /// The same block counts at a tiny width (the way kiln-test-checkpoints writes them).
    pub(crate) fn narrow(mut self, width: u64, context: u64, adm: Option<u64>) -> Self {
        self.model_channels = width;
        self.context_dim = context;
        self.adm = adm;
        self
    }

    fn emb(&self) -> u64 {
        self.model_channels * 4
    }

    /// LDM naming, no prefix.
    pub(crate) fn ldm(&self) -> Keys {
        let mut k = Keys::default();
        let mc = self.model_channels;
        let emb = self.emb();
        k.linear("time_embed.0", emb, mc);
        k.linear("time_embed.2", emb, emb);
        if let Some(adm) = self.adm {
            k.linear("label_emb.0.0", emb, adm);
            k.linear("label_emb.0.2", emb, emb);
        }
        k.conv("input_blocks.0.0", mc, self.in_channels, 3);
        let mut chans = vec![mc];
        let mut ch = mc;
        let mut n = 1;
        let levels = self.channel_mult.len();
        for (level, mult) in self.channel_mult.iter().enumerate() {
            for _ in 0..self.res_blocks {
                self.ldm_res(&mut k, &format!("input_blocks.{n}.0"), ch, mc * mult);
                ch = mc * mult;
                if self.depth[level] > 0 {
                    self.transformer(
                        &mut k,
                        &format!("input_blocks.{n}.1"),
                        ch,
                        self.depth[level],
                    );
                }
                chans.push(ch);
                n += 1;
            }
            if level + 1 != levels {
                k.conv(&format!("input_blocks.{n}.0.op"), ch, ch, 3);
                chans.push(ch);
                n += 1;
            }
        }
        self.ldm_res(&mut k, "middle_block.0", ch, ch);
        if self.middle_depth > 0 {
            self.transformer(&mut k, "middle_block.1", ch, self.middle_depth);
            self.ldm_res(&mut k, "middle_block.2", ch, ch);
        } else {
            self.ldm_res(&mut k, "middle_block.1", ch, ch);
        }
        let mut n = 0;
        for (level, mult) in self.channel_mult.iter().enumerate().rev() {
            for i in 0..=self.res_blocks {
                let skip = chans.pop().unwrap_or(mc);
                self.ldm_res(
                    &mut k,
                    &format!("output_blocks.{n}.0"),
                    ch + skip,
                    mc * mult,
                );
                ch = mc * mult;
                let mut index = 1;
                if self.depth[level] > 0 {
                    self.transformer(
                        &mut k,
                        &format!("output_blocks.{n}.1"),
                        ch,
                        self.depth[level],
                    );
                    index = 2;
                }
                if level > 0 && i == self.res_blocks {
                    k.conv(&format!("output_blocks.{n}.{index}.conv"), ch, ch, 3);
                }
                n += 1;
            }
        }
        k.norm("out.0", ch);
        k.conv("out.2", 4, ch, 3);
        k
    }

    fn ldm_res(&self, k: &mut Keys, p: &str, cin: u64, cout: u64) {
        k.norm(&format!("{p}.in_layers.0"), cin);
        k.conv(&format!("{p}.in_layers.2"), cout, cin, 3);
        k.linear(&format!("{p}.emb_layers.1"), cout, self.emb());
        k.norm(&format!("{p}.out_layers.0"), cout);
        k.conv(&format!("{p}.out_layers.3"), cout, cout, 3);
        if cin != cout {
            k.conv(&format!("{p}.skip_connection"), cout, cin, 1);
        }
    }

    /// A spatial transformer; its key names are shared by both layouts.
    fn transformer(&self, k: &mut Keys, p: &str, ch: u64, depth: u64) {
        k.norm(&format!("{p}.norm"), ch);
        for proj in ["proj_in", "proj_out"] {
            if self.linear_proj {
                k.linear(&format!("{p}.{proj}"), ch, ch);
            } else {
                k.conv(&format!("{p}.{proj}"), ch, ch, 1);
            }
        }
        for t in 0..depth {
            let b = format!("{p}.transformer_blocks.{t}");
            for attn in ["attn1", "attn2"] {
                let kv = if attn == "attn1" {
                    ch
                } else {
                    self.context_dim
                };
                k.linear_no_bias(&format!("{b}.{attn}.to_q"), ch, ch);
                k.linear_no_bias(&format!("{b}.{attn}.to_k"), ch, kv);
                k.linear_no_bias(&format!("{b}.{attn}.to_v"), ch, kv);
                k.linear(&format!("{b}.{attn}.to_out.0"), ch, ch);
            }
            for norm in ["norm1", "norm2", "norm3"] {
                k.norm(&format!("{b}.{norm}"), ch);
            }
            k.linear(&format!("{b}.ff.net.0.proj"), ch * 8, ch);
            k.linear(&format!("{b}.ff.net.2"), ch, ch * 4);
        }
    }

    fn diffusers_res(&self, k: &mut Keys, p: &str, cin: u64, cout: u64) {
        k.norm(&format!("{p}.norm1"), cin);
        k.conv(&format!("{p}.conv1"), cout, cin, 3);
        k.linear(&format!("{p}.time_emb_proj"), cout, self.emb());
        k.norm(&format!("{p}.norm2"), cout);
        k.conv(&format!("{p}.conv2"), cout, cout, 3);
        if cin != cout {
            k.conv(&format!("{p}.conv_shortcut"), cout, cin, 1);
        }
    }

    /// Diffusers naming (`UNet2DConditionModel`).
    pub(crate) fn diffusers(&self) -> Keys {
        let mut k = Keys::default();
        let mc = self.model_channels;
        let emb = self.emb();
        k.conv("conv_in", mc, self.in_channels, 3);
        k.linear("time_embedding.linear_1", emb, mc);
        k.linear("time_embedding.linear_2", emb, emb);
        if let Some(adm) = self.adm {
            k.linear("add_embedding.linear_1", emb, adm);
            k.linear("add_embedding.linear_2", emb, emb);
        }
        let levels = self.channel_mult.len();
        let mut chans = vec![mc];
        let mut ch = mc;
        for (level, mult) in self.channel_mult.iter().enumerate() {
            for r in 0..self.res_blocks {
                self.diffusers_res(
                    &mut k,
                    &format!("down_blocks.{level}.resnets.{r}"),
                    ch,
                    mc * mult,
                );
                ch = mc * mult;
                if self.depth[level] > 0 {
                    let p = format!("down_blocks.{level}.attentions.{r}");
                    self.transformer(&mut k, &p, ch, self.depth[level]);
                }
                chans.push(ch);
            }
            if level + 1 != levels {
                k.conv(
                    &format!("down_blocks.{level}.downsamplers.0.conv"),
                    ch,
                    ch,
                    3,
                );
                chans.push(ch);
            }
        }
        self.diffusers_res(&mut k, "mid_block.resnets.0", ch, ch);
        if self.middle_depth > 0 {
            self.transformer(&mut k, "mid_block.attentions.0", ch, self.middle_depth);
        }
        self.diffusers_res(&mut k, "mid_block.resnets.1", ch, ch);
        for (up, (level, mult)) in self.channel_mult.iter().enumerate().rev().enumerate() {
            for i in 0..=self.res_blocks {
                let skip = chans.pop().unwrap_or(mc);
                let p = format!("up_blocks.{up}.resnets.{i}");
                self.diffusers_res(&mut k, &p, ch + skip, mc * mult);
                ch = mc * mult;
                if self.depth[level] > 0 {
                    let p = format!("up_blocks.{up}.attentions.{i}");
                    self.transformer(&mut k, &p, ch, self.depth[level]);
                }
            }
            if level > 0 {
                k.conv(&format!("up_blocks.{up}.upsamplers.0.conv"), ch, ch, 3);
            }
        }
        k.norm("conv_norm_out", ch);
        k.conv("conv_out", 4, ch, 3);
        k
    }
}
