//! Writes a planned diffusion model as city96's ComfyUI-GGUF converter and patched
//! `llama-quantize` produce it, through candle's `gguf_file::write`:
//! - metadata `general.architecture` (`flux`, `sd1`, `sdxl`, `sd3`), `general.quantization_version`
//!   2 and `general.file_type` (llama.cpp's `LLAMA_FTYPE_MOSTLY_*`);
//! - 1-D tensors and tensors of at most 1024 elements stay F32;
//! - for `sd1`/`sdxl` (the converter's `shape_fix`), a tensor of ≥ 2 dims and ≥ 512 elements whose
//!   element count divides by 256 but whose last dim does not is stored reshaped to
//!   `[n / 256, 256]`, with its real shape in `comfy.gguf.orig_shape.<name>` (i32 array);
//! - `.ff.net.2.weight` tensors (llama.cpp's "ffn_down" rule) go one step up: Q4_0→Q4_1,
//!   Q5_0→Q5_1, Q4_K→Q5_K;
//! - a tensor whose row length does not divide by the type's block size falls back to F16.
//!
//! Upstream: <https://github.com/city96/ComfyUI-GGUF/blob/main/tools/convert.py> and
//! `tools/lcpp.patch` (`img_tensor_get_type`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::layout::{FilePlan, Format};
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

/// The GGML type one tensor gets, and the shape it is stored with.
pub(crate) fn tensor_type(
    name: &str,
    shape: &[usize],
    quant: GgufQuant,
    shape_fix: bool,
) -> (GgmlDType, Vec<usize>) {
    let numel: usize = shape.iter().product();
    if shape.len() <= 1 || numel <= QUANTIZATION_THRESHOLD {
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
        dtype = GgmlDType::F16;
    }
    (dtype, stored_shape)
}

/// Writes `file` under `dest_dir`.
pub(crate) fn write(file: &FilePlan, dest_dir: &Path, seed: u64) -> Result<(), Error> {
    let path = dest_dir.join(&file.path);
    let Format::Gguf {
        architecture,
        quant,
    } = file.format
    else {
        return Err(Error::Io {
            path,
            source: std::io::Error::other("not a GGUF plan"),
        });
    };
    let shape_fix = matches!(architecture, "sd1" | "sdxl");
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
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(file.entries.len());
    for entry in &file.entries {
        let name = entry.def.name.clone();
        let (dtype, stored_shape) = tensor_type(&name, &entry.def.shape, quant, shape_fix);
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
            tensor_type("a.bias", &[3072], GgufQuant::Q4_0, false).0,
            GgmlDType::F32
        );
        assert_eq!(
            tensor_type("a.weight", &[32, 32], GgufQuant::Q4_0, false).0,
            GgmlDType::F32
        );
    }

    #[test]
    fn shape_fix_reshapes_unet_convs() {
        let (dtype, shape) = tensor_type(
            "input_blocks.1.0.in_layers.2.weight",
            &[32, 32, 3, 3],
            GgufQuant::Q4_K_S,
            true,
        );
        assert_eq!(shape, vec![36, 256]);
        assert_eq!(dtype, GgmlDType::Q4K);
    }

    #[test]
    fn incompatible_rows_fall_back_to_f16_and_ffn_down_steps_up() {
        assert_eq!(
            tensor_type("x.linear1.weight", &[448, 64], GgufQuant::Q4_K_S, false).0,
            GgmlDType::F16
        );
        assert_eq!(
            tensor_type("x.linear1.weight", &[448, 64], GgufQuant::Q4_0, false).0,
            GgmlDType::Q4_0
        );
        assert_eq!(
            tensor_type("b.ff.net.2.weight", &[64, 256], GgufQuant::Q4_0, true).0,
            GgmlDType::Q4_1
        );
    }
}
