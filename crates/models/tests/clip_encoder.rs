//! The CLIP text encoder on tiny checkpoints in real key layouts: against an independent f64
//! reference written here from ComfyUI's `comfy/clip_model.py`, ComfyUI's prompt-weight formula,
//! clip skip, textual-inversion splicing, SDXL's two encoders, and f16/fp8 storage.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_detect::ComponentKind;
use kiln_models::{
    concat_sdxl_text, Attention, AttentionKernel, ClipConfig, ClipLayer, ClipTextEncoder,
    ClipToken, ClipTokenizer, ClipUsage, TokenizerConfig, Weights,
};
use kiln_test_checkpoints::{CheckpointSpec, Family, Packaging, Storage};
use support::load_component;

/// Loads `kind` of a tiny checkpoint as planned for the simulated `profile`, on the CPU.
fn load(spec: CheckpointSpec, kind: ComponentKind, profile: &str) -> (Weights, Attention) {
    let (store, attention) = load_component(&spec, kind, profile);
    (Weights::new(Arc::new(store)), attention)
}

/// Tiny presets use 16-wide heads.
fn encoder(weights: &Weights, kind: ComponentKind, usage: ClipUsage) -> ClipTextEncoder {
    let config = ClipConfig::from_weights(weights, kind).unwrap();
    let heads = config.hidden_size / 16;
    ClipTextEncoder::new(weights.clone(), kind, config.with_heads(heads), usage).unwrap()
}

fn clip_l_f32() -> (Weights, Attention) {
    load(
        CheckpointSpec::new(Family::ClipL, Storage::F32, Packaging::Standalone),
        ComponentKind::ClipL,
        "cpu",
    )
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// An f64 CLIP text model in plain loops, independent of the crate's layers and attention.
struct Reference {
    weights: Weights,
    hidden: usize,
    heads: usize,
    layers: usize,
    gelu: bool,
}

impl Reference {
    fn tensor(&self, name: &str) -> Vec<f64> {
        values(&self.weights.get(name).unwrap())
    }

    fn layer_norm(&self, x: &[f64], prefix: &str) -> Vec<f64> {
        let w = self.tensor(&format!("{prefix}.weight"));
        let b = self.tensor(&format!("{prefix}.bias"));
        x.chunks(self.hidden)
            .flat_map(|row| {
                let mean = row.iter().sum::<f64>() / row.len() as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / row.len() as f64;
                row.iter()
                    .map(move |v| (v - mean) / (var + 1e-5).sqrt())
                    .zip(w.iter().zip(&b))
                    .map(|(n, (w, b))| n * w + b)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn linear(&self, x: &[f64], prefix: &str, inputs: usize) -> Vec<f64> {
        let w = self.tensor(&format!("{prefix}.weight"));
        let outputs = w.len() / inputs;
        let b = self
            .weights
            .contains(&format!("{prefix}.bias"))
            .then(|| self.tensor(&format!("{prefix}.bias")));
        x.chunks(inputs)
            .flat_map(|row| {
                (0..outputs)
                    .map(|o| {
                        let dot: f64 = row
                            .iter()
                            .zip(&w[o * inputs..(o + 1) * inputs])
                            .map(|(a, b)| a * b)
                            .sum();
                        dot + b.as_ref().map_or(0.0, |b| b[o])
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Hidden states after every layer (index 0 = embeddings) for one window of ids.
    fn run(&self, ids: &[u32]) -> Vec<Vec<f64>> {
        let d = self.hidden;
        let t = ids.len();
        let table = self.tensor("text_model.embeddings.token_embedding.weight");
        let positions = self.tensor("text_model.embeddings.position_embedding.weight");
        let mut x: Vec<f64> = ids
            .iter()
            .enumerate()
            .flat_map(|(p, &id)| {
                (0..d)
                    .map(|i| table[id as usize * d + i] + positions[p * d + i])
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut states = vec![x.clone()];
        let head_dim = d / self.heads;
        for l in 0..self.layers {
            let p = format!("text_model.encoder.layers.{l}");
            let h = self.layer_norm(&x, &format!("{p}.layer_norm1"));
            let q = self.linear(&h, &format!("{p}.self_attn.q_proj"), d);
            let k = self.linear(&h, &format!("{p}.self_attn.k_proj"), d);
            let v = self.linear(&h, &format!("{p}.self_attn.v_proj"), d);
            let mut attended = vec![0.0; t * d];
            for head in 0..self.heads {
                let off = head * head_dim;
                for i in 0..t {
                    // Causal: query i sees keys 0..=i.
                    let scores: Vec<f64> = (0..=i)
                        .map(|j| {
                            (0..head_dim)
                                .map(|c| q[i * d + off + c] * k[j * d + off + c])
                                .sum::<f64>()
                                / (head_dim as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = exp.iter().sum();
                    for (j, e) in exp.iter().enumerate() {
                        for c in 0..head_dim {
                            attended[i * d + off + c] += e / sum * v[j * d + off + c];
                        }
                    }
                }
            }
            let out = self.linear(&attended, &format!("{p}.self_attn.out_proj"), d);
            x.iter_mut().zip(out).for_each(|(a, b)| *a += b);
            let h = self.layer_norm(&x, &format!("{p}.layer_norm2"));
            let mut m = self.linear(&h, &format!("{p}.mlp.fc1"), d);
            for value in &mut m {
                *value = if self.gelu {
                    0.5 * *value * (1.0 + erf(*value / std::f64::consts::SQRT_2))
                } else {
                    *value / (1.0 + (-1.702 * *value).exp())
                };
            }
            let out = self.linear(&m, &format!("{p}.mlp.fc2"), m.len() / t);
            x.iter_mut().zip(out).for_each(|(a, b)| *a += b);
            states.push(x.clone());
        }
        states
    }
}

/// erf by its Maclaurin series (|x| small) or continued fraction, accurate to ~1e-12 here.
fn erf(x: f64) -> f64 {
    if x.abs() < 3.0 {
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        x.signum()
    }
}

fn ids_of(chunk: &[kiln_models::WeightedToken]) -> Vec<u32> {
    chunk
        .iter()
        .map(|t| match t.token {
            ClipToken::Id(id) => id,
            ClipToken::Embedding(_) => unreachable!(),
        })
        .collect()
}

#[test]
fn sd1_clip_l_matches_the_f64_reference_with_clip_skip() {
    let (weights, attention) = clip_l_f32();
    let encoder =
        encoder(&weights, ComponentKind::ClipL, ClipUsage::sd1_clip_l()).with_attention(attention);
    let config = encoder.config().clone();
    assert_eq!(
        (config.hidden_size, config.layers, config.positions),
        (32, 12, 77)
    );
    let tokens = ClipTokenizer::new(TokenizerConfig::clip_l())
        .tokenize("a photo of a cat", None)
        .unwrap();
    let reference = Reference {
        weights: weights.clone(),
        hidden: 32,
        heads: 2,
        layers: 12,
        gelu: false,
    };
    let states = reference.run(&ids_of(&tokens.chunks[0]));

    let (cond, pooled) = encoder.encode_chunks(&tokens.chunks, None).unwrap();
    assert_eq!(cond.dims(), [1, 77, 32]);
    assert_eq!(pooled.dims(), [1, 32]);
    let last = reference.layer_norm(&states[12], "text_model.final_layer_norm");
    let want = Tensor::from_vec(last.clone(), (1, 77, 32), &Device::Cpu).unwrap();
    assert!(
        max_abs_diff(&cond, &want) < 1e-4,
        "{}",
        max_abs_diff(&cond, &want)
    );
    // SD1 pools the unprojected final-norm output at the end token (position 6 here).
    let want_pooled =
        Tensor::from_vec(last[6 * 32..7 * 32].to_vec(), (1, 32), &Device::Cpu).unwrap();
    assert!(max_abs_diff(&pooled, &want_pooled) < 1e-4);

    // CLIPSetLastLayer -2: layer 10's output through the final norm (SD1 normalises hidden
    // states); -24 is beyond 12 layers and means the last layer.
    let (skipped, _) = encoder.encode_chunks(&tokens.chunks, Some(-2)).unwrap();
    let penultimate = reference.layer_norm(&states[11], "text_model.final_layer_norm");
    let want = Tensor::from_vec(penultimate, (1, 77, 32), &Device::Cpu).unwrap();
    assert!(max_abs_diff(&skipped, &want) < 1e-4);
    let (beyond, _) = encoder.encode_chunks(&tokens.chunks, Some(-24)).unwrap();
    assert_eq!(max_abs_diff(&beyond, &cond), 0.0);
}

#[test]
fn weights_interpolate_against_the_empty_prompt() {
    let (weights, _) = clip_l_f32();
    let encoder = encoder(&weights, ComponentKind::ClipL, ClipUsage::sd1_clip_l());
    let tokenizer = ClipTokenizer::new(TokenizerConfig::clip_l());
    let weighted = tokenizer.tokenize("a (cat:1.5)", None).unwrap();
    let (cond, _) = encoder.encode_chunks(&weighted.chunks, None).unwrap();

    let plain: Vec<ClipToken> = weighted.chunks[0].iter().map(|t| t.token.clone()).collect();
    let mut empty = vec![ClipToken::Id(49406), ClipToken::Id(49407)];
    empty.resize(77, ClipToken::Id(49407));
    let raw = encoder
        .encode_tokens(&[plain, empty], ClipLayer::Last)
        .unwrap()
        .hidden;
    let z = raw.narrow(0, 0, 1).unwrap();
    let z_empty = raw.narrow(0, 1, 1).unwrap();
    // Position 2 ("cat") has weight 1.5; every other position is untouched.
    let want_cat = ((z.narrow(1, 2, 1).unwrap() - z_empty.narrow(1, 2, 1).unwrap()).unwrap() * 1.5)
        .unwrap()
        .add(&z_empty.narrow(1, 2, 1).unwrap())
        .unwrap();
    assert!(max_abs_diff(&cond.narrow(1, 2, 1).unwrap(), &want_cat) < 1e-6);
    assert_eq!(
        max_abs_diff(&cond.narrow(1, 0, 2).unwrap(), &z.narrow(1, 0, 2).unwrap()),
        0.0
    );
    assert_eq!(
        max_abs_diff(
            &cond.narrow(1, 3, 74).unwrap(),
            &z.narrow(1, 3, 74).unwrap()
        ),
        0.0
    );
    assert!(max_abs_diff(&want_cat, &z.narrow(1, 2, 1).unwrap()) > 1e-3);
}

#[test]
fn long_prompts_concatenate_windows_and_pool_the_first() {
    let (weights, _) = clip_l_f32();
    let encoder = encoder(&weights, ComponentKind::ClipL, ClipUsage::sd1_clip_l());
    let tokens = ClipTokenizer::new(TokenizerConfig::clip_l())
        .tokenize(&"red apple, ".repeat(40), None)
        .unwrap();
    assert_eq!(tokens.chunks.len(), 2);
    let (cond, pooled) = encoder.encode_chunks(&tokens.chunks, None).unwrap();
    assert_eq!(cond.dims(), [1, 154, 32]);
    let (first, first_pooled) = encoder.encode_chunks(&tokens.chunks[..1], None).unwrap();
    assert_eq!(max_abs_diff(&cond.narrow(1, 0, 77).unwrap(), &first), 0.0);
    assert_eq!(max_abs_diff(&pooled, &first_pooled), 0.0);
}

#[test]
fn spliced_embeddings_act_like_the_token_they_copy() {
    let (weights, _) = clip_l_f32();
    let encoder = encoder(&weights, ComponentKind::ClipL, ClipUsage::sd1_clip_l());
    let tokens = ClipTokenizer::new(TokenizerConfig::clip_l())
        .tokenize("a photo of a cat", None)
        .unwrap();
    let cat_row = weights
        .get("text_model.embeddings.token_embedding.weight")
        .unwrap()
        .get(2368)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut spliced = tokens.chunks.clone();
    spliced[0][5].token = ClipToken::Embedding(Arc::from(cat_row));
    let (a, pa) = encoder.encode_chunks(&tokens.chunks, None).unwrap();
    let (b, pb) = encoder.encode_chunks(&spliced, None).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-6);
    assert!(max_abs_diff(&pa, &pb) < 1e-6);

    // A vector of the wrong width is dropped and the window padded at its end (ComfyUI).
    let mut wrong = tokens.chunks.clone();
    wrong[0][5].token = ClipToken::Embedding(Arc::from(vec![0.0f32; 7]));
    let (c, _) = encoder.encode_chunks(&wrong, None).unwrap();
    assert_eq!(c.dims(), [1, 77, 32]);
    assert!(max_abs_diff(&c, &a) > 1e-3);
}

#[test]
fn every_attention_kernel_encodes_the_same() {
    let (weights, _) = clip_l_f32();
    let tokens = ClipTokenizer::new(TokenizerConfig::clip_l())
        .tokenize("a photo of a cat", None)
        .unwrap();
    let plain = encoder(&weights, ComponentKind::ClipL, ClipUsage::sd1_clip_l());
    let (want, _) = plain.encode_chunks(&tokens.chunks, None).unwrap();
    for kernel in [
        AttentionKernel::Split,
        AttentionKernel::SubQuadratic,
        AttentionKernel::Fused,
        AttentionKernel::Flash,
    ] {
        let attention = Attention::new(kernel).with_budget(kiln_models::MemoryBudget::Bytes(4096));
        let got = plain
            .clone()
            .with_attention(attention)
            .encode_chunks(&tokens.chunks, None)
            .unwrap()
            .0;
        assert!(max_abs_diff(&got, &want) < 1e-4, "{kernel:?}");
    }
}

#[test]
fn sdxl_concatenates_l_and_g_and_pools_g_in_f16_storage() {
    let spec = CheckpointSpec::new(Family::Sdxl, Storage::F16, Packaging::SingleFile);
    let (l_weights, _) = load(spec, ComponentKind::ClipL, "cpu");
    let (g_weights, _) = load(spec, ComponentKind::ClipG, "cpu");
    let clip_l = encoder(&l_weights, ComponentKind::ClipL, ClipUsage::sdxl_clip_l());
    let clip_g = encoder(&g_weights, ComponentKind::ClipG, ClipUsage::sdxl_clip_g());
    assert_eq!(clip_g.config().layers, 32);
    let text = "a photo of a (cat:1.2)";
    let l_tokens = ClipTokenizer::new(TokenizerConfig::clip_l())
        .tokenize(text, None)
        .unwrap();
    let g_tokens = ClipTokenizer::new(TokenizerConfig::clip_g())
        .tokenize(text, None)
        .unwrap();
    let (l_cond, _) = clip_l.encode_chunks(&l_tokens.chunks, None).unwrap();
    let (g_cond, g_pooled) = clip_g.encode_chunks(&g_tokens.chunks, None).unwrap();
    let cond = concat_sdxl_text(&l_cond, &g_cond).unwrap();
    assert_eq!(cond.dims(), [1, 77, 32 + 64]);
    assert_eq!(cond.dtype(), DType::F32);
    assert_eq!(g_pooled.dims(), [1, 64]);
    assert!(values(&cond).iter().all(|v| v.is_finite()));
    // SDXL's hidden states skip the final norm: the penultimate raw output differs from the
    // normalised one.
    let normed = ClipUsage {
        layer_norm_hidden_state: true,
        ..ClipUsage::sdxl_clip_l()
    };
    let (l_normed, _) = encoder(&l_weights, ComponentKind::ClipL, normed)
        .encode_chunks(&l_tokens.chunks, None)
        .unwrap();
    assert!(max_abs_diff(&l_normed, &l_cond) > 1e-2);
}

#[test]
fn scaled_fp8_weights_widen_through_the_lookup_table_and_stay_close() {
    let (f32_weights, _) = clip_l_f32();
    // A simulated Turing GPU holds scaled fp8 as bytes and widens them per layer through a
    // table times the scale (plain fp8 files of tiny widths are planned f32: the f32 token table
    // outweighs their fp8 matrices).
    let (fp8_weights, _) = load(
        CheckpointSpec::new(Family::ClipL, Storage::ScaledF8E4M3, Packaging::Standalone),
        ComponentKind::ClipL,
        "cuda-sm75",
    );
    assert_eq!(
        fp8_weights
            .held("text_model.encoder.layers.0.mlp.fc1.weight")
            .unwrap()
            .held_as(),
        kiln_runtime::HeldAs::Dtype(DType::U8)
    );
    let tokens = ClipTokenizer::new(TokenizerConfig::clip_l())
        .tokenize("a photo of a cat", None)
        .unwrap();
    let exact = encoder(&f32_weights, ComponentKind::ClipL, ClipUsage::sd1_clip_l())
        .encode_chunks(&tokens.chunks, None)
        .unwrap()
        .0;
    let fp8 = encoder(&fp8_weights, ComponentKind::ClipL, ClipUsage::sd1_clip_l())
        .encode_chunks(&tokens.chunks, None)
        .unwrap()
        .0;
    let scale = values(&exact).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&exact, &fp8);
    assert!(diff > 0.0, "fp8 rounding must show");
    assert!(diff < 0.25 * scale, "{diff} vs scale {scale}");
}

#[test]
fn configs_come_from_the_weights() {
    let (weights, _) = clip_l_f32();
    let config = ClipConfig::from_weights(&weights, ComponentKind::ClipL).unwrap();
    assert_eq!(config.heads, 0, "width 32 has no 64-wide heads");
    let err = ClipTextEncoder::new(
        weights.clone(),
        ComponentKind::ClipL,
        config,
        ClipUsage::sd1_clip_l(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("with_heads"), "{err}");
    assert!(ClipConfig::from_weights(&weights, ComponentKind::Vae).is_err());
}

/// A table used in place from its file (f16 here) gives the rows of the widened table without
/// widening the whole vocabulary, and an id past its end is a typed input error.
#[test]
fn mapped_embedding_rows_are_the_widened_tables_rows() {
    let (weights, _) = load(
        CheckpointSpec::new(Family::ClipL, Storage::F16, Packaging::Standalone),
        ComponentKind::ClipL,
        "cpu",
    );
    let table = weights.pp("text_model.embeddings.token_embedding");
    assert!(matches!(
        table.held("weight").unwrap(),
        kiln_runtime::HeldTensor::Mapped { .. }
    ));
    let embedding = kiln_models::Embedding::new(table.clone()).unwrap();
    let ids = Tensor::new(&[3u32, 0, 7, 3], &Device::Cpu).unwrap();
    let rows = embedding.rows(&ids).unwrap();
    let widened = table.get("weight").unwrap().index_select(&ids, 0).unwrap();
    assert_eq!(rows.dtype(), widened.dtype());
    assert_eq!(values(&rows), values(&widened));
    let past_end = embedding.len().unwrap() as u32;
    let bad = Tensor::new(&[1u32, past_end], &Device::Cpu).unwrap();
    let error = embedding.rows(&bad).unwrap_err().to_string();
    assert!(error.contains(&past_end.to_string()), "{error}");
}
