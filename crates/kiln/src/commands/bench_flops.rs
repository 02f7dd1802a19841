//! The arithmetic of one UNet evaluation (SD1.5, SDXL: any `UnetConfig`) and of one Flux
//! transformer evaluation, counted layer by layer from the architecture (`convolutions`, `linear
//! layers`, attention products; norms and elementwise work are left out as they are
//! memory-bound), and the CPU's nominal f32 peak, so `kiln bench` can say how close a step runs
//! to the hardware limit and scale a reduced-depth Flux to its full depth.

use kiln_test_checkpoints::UnetConfig;

/// Tokens of the text context (CLIP's 77 for every UNet family).
const CONTEXT_TOKENS: usize = 77;

/// Multiply-accumulates of a `k×k` convolution `cin → cout` producing `side²` pixels.
fn conv(cin: usize, cout: usize, k: usize, side: usize) -> f64 {
    (cin * cout * k * k * side * side) as f64
}

fn res_block(cin: usize, cout: usize, side: usize) -> f64 {
    let skip = if cin == cout {
        0.0
    } else {
        conv(cin, cout, 1, side)
    };
    conv(cin, cout, 3, side) + conv(cout, cout, 3, side) + skip
}

/// One `SpatialTransformer` with `depth` basic blocks over `side²` tokens of width `c`: 1×1 (or
/// linear) proj in/out, then per block self-attention (q, k, v, out), cross-attention (q, out;
/// k, v from the `context_width`-wide context), the GEGLU feed-forward (c → 8c, 4c → c), and the
/// two attention products of each attention.
fn transformer(c: usize, side: usize, depth: usize, context_width: usize) -> f64 {
    if depth == 0 {
        return 0.0;
    }
    let n = (side * side) as f64;
    let c = c as f64;
    let projections = n * c * c * 2.0;
    let linear = n * c * c * (4.0 + 2.0 + 12.0);
    let context = (CONTEXT_TOKENS * context_width) as f64 * c * 2.0;
    let self_attention = 2.0 * n * n * c;
    let cross_attention = 2.0 * n * CONTEXT_TOKENS as f64 * c;
    projections + depth as f64 * (linear + context + self_attention + cross_attention)
}

/// FLOPs (2 per multiply-accumulate) of one evaluation of `unet` on `batch` latents of
/// `latent_side`².
pub(crate) fn unet_flops(unet: &UnetConfig, latent_side: usize, batch: usize) -> f64 {
    let widths: Vec<usize> = unet
        .channel_mult
        .iter()
        .map(|mult| mult * unet.model_channels)
        .collect();
    let depth = |level: usize| unet.transformer_depth.get(level).copied().unwrap_or(0);
    let context = unet.context_dim;
    let first = unet.model_channels;
    let mut macs = conv(unet.in_channels, first, 3, latent_side);
    let mut skips = vec![first];
    let mut channels = first;
    let mut side = latent_side;
    for (level, &width) in widths.iter().enumerate() {
        for _ in 0..unet.num_res_blocks {
            macs += res_block(channels, width, side);
            channels = width;
            macs += transformer(width, side, depth(level), context);
            skips.push(width);
        }
        if level + 1 < widths.len() {
            side /= 2;
            macs += conv(width, width, 3, side);
            skips.push(width);
        }
    }
    macs += 2.0 * res_block(channels, channels, side)
        + transformer(channels, side, unet.transformer_depth_middle, context);
    for (level, &width) in widths.iter().enumerate().rev() {
        for _ in 0..=unet.num_res_blocks {
            let skip = skips.pop().unwrap_or(0);
            macs += res_block(channels + skip, width, side);
            channels = width;
            macs += transformer(width, side, depth(level), context);
        }
        if level > 0 {
            side *= 2;
            macs += conv(width, width, 3, side);
        }
    }
    macs += conv(first, unet.out_channels, 3, latent_side);
    2.0 * macs * batch as f64
}

/// Flux patchifies 2×2: `img_in` and `final_layer.linear` see 4 values per latent channel.
const FLUX_PATCH_VALUES: usize = 4;
/// Width of Flux's sinusoidal timestep (and guidance) embedding.
const FLUX_TIME_EMBEDDING: usize = 256;

/// The shape of one Flux evaluation: widths from the model, token counts from the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FluxShape {
    pub(crate) hidden: usize,
    pub(crate) mlp_hidden: usize,
    pub(crate) in_channels: usize,
    pub(crate) out_channels: usize,
    pub(crate) vec_in_dim: usize,
    pub(crate) context_in_dim: usize,
    pub(crate) guidance_embed: bool,
    pub(crate) image_tokens: usize,
    pub(crate) text_tokens: usize,
}

/// Multiply-accumulates of the parts outside the blocks (embeddings, final layer).
fn flux_outside_macs(shape: &FluxShape) -> f64 {
    let h = shape.hidden;
    let embed = FLUX_TIME_EMBEDDING * h + h * h;
    let mut macs = shape.image_tokens * shape.in_channels * FLUX_PATCH_VALUES * h
        + shape.text_tokens * shape.context_in_dim * h
        + embed
        + shape.vec_in_dim * h
        + h * h
        + 2 * h * h
        + shape.image_tokens * h * shape.out_channels * FLUX_PATCH_VALUES;
    if shape.guidance_embed {
        macs += embed;
    }
    macs as f64
}

/// Multiply-accumulates of one double-stream block: per stream modulation (6h out), q/k/v,
/// output projection and the MLP over that stream's tokens; joint attention over all tokens.
fn flux_double_block_macs(shape: &FluxShape) -> f64 {
    let (h, m) = (shape.hidden as f64, shape.mlp_hidden as f64);
    let tokens = (shape.image_tokens + shape.text_tokens) as f64;
    let modulation = 2.0 * 6.0 * h * h;
    let linear = tokens * (3.0 * h * h + h * h + 2.0 * h * m);
    modulation + linear + 2.0 * tokens * tokens * h
}

/// Multiply-accumulates of one single-stream block: modulation (3h out), `linear1` (q, k, v and
/// the MLP in), `linear2` (attention and MLP out), attention over all tokens.
fn flux_single_block_macs(shape: &FluxShape) -> f64 {
    let (h, m) = (shape.hidden as f64, shape.mlp_hidden as f64);
    let tokens = (shape.image_tokens + shape.text_tokens) as f64;
    let linear = tokens * ((3.0 * h + m) * h + (h + m) * h);
    3.0 * h * h + linear + 2.0 * tokens * tokens * h
}

/// FLOPs (2 per multiply-accumulate) of one Flux evaluation of batch 1 with `double` and
/// `single` blocks.
pub(crate) fn flux_flops(shape: &FluxShape, double: usize, single: usize) -> f64 {
    2.0 * (flux_outside_macs(shape)
        + double as f64 * flux_double_block_macs(shape)
        + single as f64 * flux_single_block_macs(shape))
}

/// The CPU's nominal f32 peak and how it was derived: cores × clock × FLOP per cycle. The clock
/// is the one `/proc/cpuinfo` reports, in a VM the base clock, so boosting cores can beat it;
/// FLOP per cycle comes from the widest FMA the CPU reports (AMD's AVX-512 up to Zen 4 runs as two 256-bit FMA
/// pipes, 32 FLOP/cycle; Intel's as two 512-bit pipes, 64; AVX2+FMA, 32).
pub(crate) fn nominal_peak_flops(cores: usize, cpu_features: &[String]) -> (f64, String) {
    let mhz = cpu_mhz().unwrap_or(0.0);
    let has = |feature: &str| cpu_features.iter().any(|f| f == feature);
    let amd = std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| info.contains("AuthenticAMD"))
        .unwrap_or(false);
    let per_cycle = if has("avx512f") && !amd {
        64.0
    } else if has("avx512f") || (has("avx2") && has("fma")) {
        32.0
    } else {
        8.0
    };
    let peak = cores as f64 * mhz * 1e6 * per_cycle;
    (
        peak,
        format!(
            "{cores} cores × {mhz:.0} MHz (reported clock; boost can exceed it) × {per_cycle} f32 \
             FLOP/cycle"
        ),
    )
}

/// Physical cores (distinct package/core ids in `/proc/cpuinfo`; logical CPUs elsewhere).
pub(crate) fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut cores = std::collections::BTreeSet::new();
    let mut package = "";
    for line in info.lines() {
        if let Some((key, value)) = line.split_once(':') {
            match key.trim() {
                "physical id" => package = value.trim(),
                "core id" => {
                    cores.insert((package, value.trim()));
                }
                _ => {}
            }
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

fn cpu_mhz() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("cpu MHz"))
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(_, value)| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_test_checkpoints::UnetVariant;

    #[test]
    fn sd15_step_is_in_the_published_range() {
        // SD1.5's UNet is commonly quoted at ~0.8 TFLOP per 512² image evaluation (~400 GMAC);
        // the count here must land near that, and scale with the batch.
        let sd15 = UnetConfig::real(UnetVariant::Sd1);
        let one = unet_flops(&sd15, 64, 1);
        assert!((6.0e11..9.5e11).contains(&one), "{one:e}");
        assert_eq!(unet_flops(&sd15, 64, 2), 2.0 * one);
    }

    #[test]
    fn sdxl_step_is_in_the_published_range() {
        // SDXL's UNet at 1024² (a 128² latent) is quoted at ~6 TFLOP per image evaluation; its
        // ten-block transformers at the 32² level dominate, so a count that ignored the depth
        // would land near 2 TFLOP.
        let sdxl = UnetConfig::real(UnetVariant::Sdxl);
        let one = unet_flops(&sdxl, 128, 1);
        assert!((5.0e12..7.5e12).contains(&one), "{one:e}");
        let shallow = UnetConfig {
            transformer_depth: vec![0, 1, 1],
            transformer_depth_middle: 1,
            ..sdxl
        };
        assert!(unet_flops(&shallow, 128, 1) < 0.5 * one);
    }

    #[test]
    fn flux_blocks_dominate_and_match_the_parameter_count() {
        let shape = FluxShape {
            hidden: 3072,
            mlp_hidden: 12288,
            in_channels: 16,
            out_channels: 16,
            vec_in_dim: 768,
            context_in_dim: 4096,
            guidance_embed: false,
            image_tokens: 1024,
            text_tokens: 256,
        };
        // A block's token-wise linear layers hold 12·h² weights (113 M): 2 FLOP each per token.
        let tokens = 1280.0;
        let linear = 2.0 * tokens * 12.0 * 3072.0 * 3072.0;
        let double = flux_flops(&shape, 1, 0) - flux_flops(&shape, 0, 0);
        let single = flux_flops(&shape, 0, 1) - flux_flops(&shape, 0, 0);
        for block in [double, single] {
            assert!(block > linear && block < 1.1 * linear, "{block:e}");
        }
        // 19 + 38 blocks at 512²: ~17.7 TFLOP per evaluation, nearly all in the blocks.
        let full = flux_flops(&shape, 19, 38);
        assert!((1.7e13..1.85e13).contains(&full), "{full:e}");
        assert!(flux_flops(&shape, 0, 0) < 0.01 * full);
    }
}
