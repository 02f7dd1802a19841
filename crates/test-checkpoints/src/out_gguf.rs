//! Writes a planned diffusion model as city96's ComfyUI-GGUF converter and patched
//! `llama-quantize` produce it, and a T5 encoder as llama.cpp's own `convert_hf_to_gguf.py` and
//! stock `llama-quantize` do, through candle's `gguf_file::write`:
//! - metadata `general.architecture` (`flux`, `sd1`, `sdxl`, `sd3`, `t5encoder`),
//!   `general.quantization_version` 2 and `general.file_type` (llama.cpp's
//!   `LLAMA_FTYPE_MOSTLY_*`), then the plan's architecture metadata (`t5encoder.*`);
//! - 1-D tensors and tensors of at most 1024 elements stay F32, and so does T5's relative
//!   attention bias (`attn_rel_b`, which llama.cpp never quantises);
//! - for `sd1`/`sdxl` (the converter's `shape_fix`), a tensor of ≥ 2 dims and ≥ 512 elements whose
//!   element count divides by 256 but whose last dim does not is stored reshaped to
//!   `[n / 256, 256]`, with its real shape in `comfy.gguf.orig_shape.<name>` (i32 array);
//! - `.ff.net.2.weight` tensors (city96's "ffn_down" rule) go one step up: Q4_0→Q4_1,
//!   Q5_0→Q5_1, Q4_K→Q5_K;
//! - a tensor whose row length does not divide by the type's block size falls back to F16 in
//!   city96's patched quantiser; stock llama.cpp (T5) first tries Q4_K→Q5_0, Q5_K→Q5_1,
//!   Q6_K→Q8_0 and only then F16. llama.cpp's per-layer K-quant mixes (more bits for some
//!   `attn_v`/`ffn_down` layers) are not reproduced: every other matrix gets the base type.
//!
//! Upstream: <https://github.com/city96/ComfyUI-GGUF/blob/main/tools/convert.py>,
//! `tools/lcpp.patch` (`img_tensor_get_type`), and llama.cpp's `src/llama-quant.cpp`
//! (`llama_tensor_get_type`'s fallback for incompatible rows).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::layout::{FilePlan, Format};
use crate::t5::LLAMA_CPP_ARCHITECTURE;
use crate::{Error, GgufQuant};

const QUANTIZATION_THRESHOLD: usize = 1024;
const REARRANGE_THRESHOLD: usize = 512;

fn base_type(quant: GgufQuant) -> GgmlDType {
    match quant {
        GgufQuant::F16 => GgmlDType::F16,
        GgufQuant::Q8_0 => GgmlDType::Q8_0,
        GgufQuant::Q6_K => GgmlDType::Q6K,
        GgufQuant::Q5_K_S => GgmlDType::Q5K,
        GgufQuant::Q5_1 => GgmlDType::Q5_1,
        GgufQuant::Q5_0 => GgmlDType::Q5_0,
        GgufQuant::Q4_K_S => GgmlDType::Q4K,
        GgufQuant::Q4_1 => GgmlDType::Q4_1,
        GgufQuant::Q4_0 => GgmlDType::Q4_0,
    }
}

/// Stock llama.cpp's replacement for a K-quant whose rows do not fill 256-element blocks.
fn llama_cpp_fallback(dtype: GgmlDType) -> GgmlDType {
    match dtype {
        GgmlDType::Q4K => GgmlDType::Q5_0,
        GgmlDType::Q5K => GgmlDType::Q5_1,
        GgmlDType::Q6K => GgmlDType::Q8_0,
        _ => GgmlDType::F16,
    }
}

/// The GGML type one tensor of a GGUF file of `architecture` gets, and the shape it is stored
/// with.
pub(crate) fn tensor_type(
    name: &str,
    shape: &[usize],
    quant: GgufQuant,
    architecture: &str,
) -> (GgmlDType, Vec<usize>) {
    let llama_cpp = architecture == LLAMA_CPP_ARCHITECTURE;
    let shape_fix = matches!(architecture, "sd1" | "sdxl");
    let numel: usize = shape.iter().product();
    let never_quantised = llama_cpp && name.contains("attn_rel_b");
    if shape.len() <= 1 || numel <= QUANTIZATION_THRESHOLD || never_quantised {
        return (GgmlDType::F32, shape.to_vec());
    }
    let last = shape.last().copied().unwrap_or(1);
    let stored_shape = if shape_fix
        && numel >= REARRANGE_THRESHOLD
        && numel.is_multiple_of(256)
        && !last.is_multiple_of(256)
    {
        vec![numel / 256, 256]
    } else {
        shape.to_vec()
    };
    let mut dtype = base_type(quant);
    if name.contains(".ff.net.2.weight") {
        dtype = match dtype {
            GgmlDType::Q4_0 => GgmlDType::Q4_1,
            GgmlDType::Q5_0 => GgmlDType::Q5_1,
            GgmlDType::Q4K => GgmlDType::Q5K,
            other => other,
        };
    }
    let row = stored_shape.last().copied().unwrap_or(1);
    if !row.is_multiple_of(dtype.block_size()) {
        dtype = if llama_cpp {
            llama_cpp_fallback(dtype)
        } else {
            GgmlDType::F16
        };
        if !row.is_multiple_of(dtype.block_size()) {
            dtype = GgmlDType::F16;
        }
    }
    (dtype, stored_shape)
}

/// Writes `file` under `dest_dir`.
pub(crate) fn write(file: &FilePlan, dest_dir: &Path, seed: u64) -> Result<(), Error> {
    let path = dest_dir.join(&file.path);
    let Format::Gguf {
        architecture,
        quant,
        ref hparams,
    } = file.format
    else {
        return Err(Error::Io {
            path,
            source: std::io::Error::other("not a GGUF plan"),
        });
    };
    let mut metadata: Vec<(String, gguf_file::Value)> = vec![
        (
            "general.architecture".into(),
            gguf_file::Value::String(architecture.into()),
        ),
        (
            "general.quantization_version".into(),
            gguf_file::Value::U32(2),
        ),
        (
            "general.file_type".into(),
            gguf_file::Value::U32(quant.file_type()),
        ),
    ];
    metadata.extend(hparams.iter().cloned());
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(file.entries.len());
    for entry in &file.entries {
        let name = entry.def.name.clone();
        let (dtype, stored_shape) = tensor_type(&name, &entry.def.shape, quant, architecture);
        if stored_shape != entry.def.shape {
            let original = entry
                .def
                .shape
                .iter()
                .map(|d| gguf_file::Value::I32(*d as i32))
                .collect();
            metadata.push((
                format!("comfy.gguf.orig_shape.{name}"),
                gguf_file::Value::Array(original),
            ));
        }
        let candle_error = |source: candle_core::Error| Error::Gguf {
            path: path.clone(),
            tensor: name.clone(),
            source: Box::new(source),
        };
        let values = Tensor::from_vec(entry.def.float_values(seed), stored_shape, &Device::Cpu)
            .map_err(candle_error)?;
        let quantized = QTensor::quantize(&values, dtype).map_err(candle_error)?;
        tensors.push((name, quantized));
    }
    let metadata_refs: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let io_error = |source: std::io::Error| Error::Io {
        path: path.clone(),
        source,
    };
    let handle = File::create(&path).map_err(io_error)?;
    let mut writer = BufWriter::new(handle);
    gguf_file::write(&mut writer, &metadata_refs, &tensor_refs).map_err(|source| Error::Gguf {
        path: path.clone(),
        tensor: String::new(),
        source: Box::new(source),
    })?;
    writer.flush().map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_flat_tensors_stay_f32() {
        assert_eq!(
            tensor_type("a.bias", &[3072], GgufQuant::Q4_0, "flux").0,
            GgmlDType::F32
        );
        assert_eq!(
            tensor_type("a.weight", &[32, 32], GgufQuant::Q4_0, "flux").0,
            GgmlDType::F32
        );
    }

    #[test]
    fn shape_fix_reshapes_unet_convs() {
        let (dtype, shape) = tensor_type(
            "input_blocks.1.0.in_layers.2.weight",
            &[32, 32, 3, 3],
            GgufQuant::Q4_K_S,
            "sd1",
        );
        assert_eq!(shape, vec![36, 256]);
        assert_eq!(dtype, GgmlDType::Q4K);
    }

    #[test]
    fn incompatible_rows_fall_back_to_f16_and_ffn_down_steps_up() {
        assert_eq!(
            tensor_type("x.linear1.weight", &[448, 64], GgufQuant::Q4_K_S, "flux").0,
            GgmlDType::F16
        );
        assert_eq!(
            tensor_type("x.linear1.weight", &[448, 64], GgufQuant::Q4_0, "flux").0,
            GgmlDType::Q4_0
        );
        assert_eq!(
            tensor_type("b.ff.net.2.weight", &[64, 256], GgufQuant::Q4_0, "sdxl").0,
            GgmlDType::Q4_1
        );
    }

    #[test]
    fn t5_follows_stock_llama_cpp() {
        let t5 = LLAMA_CPP_ARCHITECTURE;
        // Rows of 96 cannot hold 256-element K blocks: llama.cpp's fallbacks, not F16.
        for (quant, want) in [
            (GgufQuant::Q4_K_S, GgmlDType::Q5_0),
            (GgufQuant::Q5_K_S, GgmlDType::Q5_1),
            (GgufQuant::Q6_K, GgmlDType::Q8_0),
            (GgufQuant::Q8_0, GgmlDType::Q8_0),
        ] {
            assert_eq!(
                tensor_type("enc.blk.0.attn_q.weight", &[96, 96], quant, t5).0,
                want,
                "{quant:?}"
            );
        }
        // A row of 256 takes the K-quant itself; no city96 step-up for `ffn_down`.
        assert_eq!(
            tensor_type(
                "enc.blk.0.ffn_down.weight",
                &[96, 256],
                GgufQuant::Q4_K_S,
                t5
            )
            .0,
            GgmlDType::Q4K
        );
        assert_eq!(
            tensor_type("enc.blk.0.ffn_down.weight", &[96, 256], GgufQuant::Q4_0, t5).0,
            GgmlDType::Q4_0
        );
        // The real relative bias (32 × 64 = 2048 elements) stays F32 too.
        assert_eq!(
            tensor_type(
                "enc.blk.0.attn_rel_b.weight",
                &[32, 64],
                GgufQuant::Q4_0,
                t5
            )
            .0,
            GgmlDType::F32
        );
        // A row that fits no fallback either ends as F16.
        assert_eq!(
            tensor_type("enc.blk.0.attn_q.weight", &[96, 48], GgufQuant::Q6_K, t5).0,
            GgmlDType::F16
        );
    }
}
