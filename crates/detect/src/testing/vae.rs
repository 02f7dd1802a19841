//! Synthetic AutoencoderKL VAEs in LDM and diffusers naming.

use super::Keys;

/// An AutoencoderKL to generate.
#[derive(Debug, Clone)]
pub(crate) struct VaeSpec {
    pub(crate) base: u64,
    pub(crate) mult: Vec<u64>,
    pub(crate) latent: u64,
    /// SD1/SDXL VAEs have quant_conv/post_quant_conv; SD3/Flux VAEs do not.
    pub(crate) quant_conv: bool,
    /// Diffusers files written before the attention rename store `query`/`key`/`value`.
    pub(crate) old_attention_names: bool,
}

impl VaeSpec {
    pub(crate) fn sd() -> Self {
        Self {
            base: 128,
            mult: vec![1, 2, 4, 4],
            latent: 4,
            quant_conv: true,
            old_attention_names: false,
        }
    }

    pub(crate) fn flux() -> Self {
        Self {
            latent: 16,
            quant_conv: false,
            ..Self::sd()
        }
    }

    fn top(&self) -> u64 {
        self.base * self.mult.last().copied().unwrap_or(1)
    }

    /// LDM naming.
    pub(crate) fn ldm(&self) -> Keys {
        let mut k = Keys::default();
        let levels = self.mult.len();
        k.conv("encoder.conv_in", self.base, 3, 3);
        let mut ch = self.base;
        for (l, m) in self.mult.iter().enumerate() {
            for b in 0..2 {
                res(
                    &mut k,
                    &format!("encoder.down.{l}.block.{b}"),
                    ch,
                    self.base * m,
                    "nin_shortcut",
                );
                ch = self.base * m;
            }
            if l + 1 != levels {
                k.conv(&format!("encoder.down.{l}.downsample.conv"), ch, ch, 3);
            }
        }
        ldm_mid(&mut k, "encoder.mid", ch);
        k.norm("encoder.norm_out", ch);
        k.conv("encoder.conv_out", 2 * self.latent, ch, 3);
        if self.quant_conv {
            k.conv("quant_conv", 2 * self.latent, 2 * self.latent, 1);
            k.conv("post_quant_conv", self.latent, self.latent, 1);
        }
        let mut ch = self.top();
        k.conv("decoder.conv_in", ch, self.latent, 3);
        ldm_mid(&mut k, "decoder.mid", ch);
        for (l, m) in self.mult.iter().enumerate().rev() {
            for b in 0..3 {
                res(
                    &mut k,
                    &format!("decoder.up.{l}.block.{b}"),
                    ch,
                    self.base * m,
                    "nin_shortcut",
                );
                ch = self.base * m;
            }
            if l != 0 {
                k.conv(&format!("decoder.up.{l}.upsample.conv"), ch, ch, 3);
            }
        }
        k.norm("decoder.norm_out", ch);
        k.conv("decoder.conv_out", 3, ch, 3);
        k
    }

    /// Diffusers naming (`AutoencoderKL`), attention projections as linear weights.
    pub(crate) fn diffusers(&self) -> Keys {
        let mut k = Keys::default();
        let levels = self.mult.len();
        k.conv("encoder.conv_in", self.base, 3, 3);
        let mut ch = self.base;
        for (l, m) in self.mult.iter().enumerate() {
            for b in 0..2 {
                res(
                    &mut k,
                    &format!("encoder.down_blocks.{l}.resnets.{b}"),
                    ch,
                    self.base * m,
                    "conv_shortcut",
                );
                ch = self.base * m;
            }
            if l + 1 != levels {
                k.conv(
                    &format!("encoder.down_blocks.{l}.downsamplers.0.conv"),
                    ch,
                    ch,
                    3,
                );
            }
        }
        self.diffusers_mid(&mut k, "encoder.mid_block", ch);
        k.norm("encoder.conv_norm_out", ch);
        k.conv("encoder.conv_out", 2 * self.latent, ch, 3);
        if self.quant_conv {
            k.conv("quant_conv", 2 * self.latent, 2 * self.latent, 1);
            k.conv("post_quant_conv", self.latent, self.latent, 1);
        }
        let mut ch = self.top();
        k.conv("decoder.conv_in", ch, self.latent, 3);
        self.diffusers_mid(&mut k, "decoder.mid_block", ch);
        for (u, m) in self.mult.iter().rev().enumerate() {
            for b in 0..3 {
                res(
                    &mut k,
                    &format!("decoder.up_blocks.{u}.resnets.{b}"),
                    ch,
                    self.base * m,
                    "conv_shortcut",
                );
                ch = self.base * m;
            }
            if u + 1 != levels {
                k.conv(
                    &format!("decoder.up_blocks.{u}.upsamplers.0.conv"),
                    ch,
                    ch,
                    3,
                );
            }
        }
        k.norm("decoder.conv_norm_out", ch);
        k.conv("decoder.conv_out", 3, ch, 3);
        k
    }

    fn diffusers_mid(&self, k: &mut Keys, p: &str, ch: u64) {
        res(k, &format!("{p}.resnets.0"), ch, ch, "conv_shortcut");
        res(k, &format!("{p}.resnets.1"), ch, ch, "conv_shortcut");
        let a = format!("{p}.attentions.0");
        k.norm(&format!("{a}.group_norm"), ch);
        let names: [&str; 4] = if self.old_attention_names {
            ["query", "key", "value", "proj_attn"]
        } else {
            ["to_q", "to_k", "to_v", "to_out.0"]
        };
        for n in names {
            k.linear(&format!("{a}.{n}"), ch, ch);
        }
    }
}

fn res(k: &mut Keys, p: &str, cin: u64, cout: u64, shortcut: &str) {
    k.norm(&format!("{p}.norm1"), cin);
    k.conv(&format!("{p}.conv1"), cout, cin, 3);
    k.norm(&format!("{p}.norm2"), cout);
    k.conv(&format!("{p}.conv2"), cout, cout, 3);
    if cin != cout {
        k.conv(&format!("{p}.{shortcut}"), cout, cin, 1);
    }
}

fn ldm_mid(k: &mut Keys, p: &str, ch: u64) {
    res(k, &format!("{p}.block_1"), ch, ch, "nin_shortcut");
    res(k, &format!("{p}.block_2"), ch, ch, "nin_shortcut");
    k.norm(&format!("{p}.attn_1.norm"), ch);
    for n in ["q", "k", "v", "proj_out"] {
        k.conv(&format!("{p}.attn_1.{n}"), ch, ch, 1);
    }
}
