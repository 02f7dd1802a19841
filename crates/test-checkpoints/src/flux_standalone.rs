//! A standalone Flux transformer (ComfyUI's `models/unet` form: BFL naming, no prefix) written
//! from an explicit [`FluxConfig`] rather than a [`crate::CheckpointSpec`] preset, so benchmarks
//! can write the real widths with fewer blocks. Safetensors for the plain storages; city96's GGUF
//! for [`Storage::Gguf`], which holds every quantised tensor in memory while writing (fine for a
//! few real-width blocks, not for the full 12B model).

use std::path::{Path, PathBuf};

use crate::flux::{FluxConfig, FluxVariant};
use crate::layout::{plain_entries, Assembler, FilePlan, Format, Plan};
use crate::storage::{Part, Placement};
use crate::{Error, Storage};

/// The GGUF `general.architecture` of a Flux transformer.
const FLUX_GGUF_ARCHITECTURE: &str = "flux";

/// File name [`write_flux_model`] uses for `config` in `storage`:
/// `flux1-schnell-bf16-h3072-1x2blocks.safetensors`, `flux1-dev-Q8_0-h64-2x3blocks-seed7.gguf`.
pub fn flux_model_file_name(config: &FluxConfig, storage: Storage, seed: u64) -> String {
    let variant = match config.variant {
        FluxVariant::Dev => "dev",
        FluxVariant::Schnell => "schnell",
        FluxVariant::Fill => "fill-dev",
    };
    let seed = if seed == 0 {
        String::new()
    } else {
        format!("-seed{seed}")
    };
    let extension = match storage {
        Storage::Gguf(_) => "gguf",
        _ => "safetensors",
    };
    format!(
        "flux1-{variant}-{}-h{}-{}x{}blocks{seed}.{extension}",
        storage.tag(),
        config.hidden_size,
        config.depth,
        config.depth_single_blocks,
    )
}

/// Writes the Flux transformer `config` describes, every tensor stored as `storage` stores a
/// standalone diffusion model, values from `seed`, to `dest_dir` (created if missing) under
/// [`flux_model_file_name`]; returns the file's path. An existing file is replaced.
pub fn write_flux_model(
    config: &FluxConfig,
    storage: Storage,
    dest_dir: &Path,
    seed: u64,
) -> Result<PathBuf, Error> {
    let path = PathBuf::from(flux_model_file_name(config, storage, seed));
    let (format, entries) = match storage {
        Storage::Gguf(quant) => (
            Format::Gguf {
                architecture: FLUX_GGUF_ARCHITECTURE,
                quant,
                hparams: Vec::new(),
            },
            // city96's converter reads a float model; the quantiser decides per tensor.
            plain_entries(Storage::F32, Part::DiffusionModel, config.tensors()),
        ),
        plain => {
            let mut file = Assembler::new(plain, Placement::Alone);
            file.add(Part::DiffusionModel, "", config.tensors());
            (Format::Safetensors { metadata: None }, file.into_entries())
        }
    };
    let plan = Plan {
        files: vec![FilePlan {
            path: path.clone(),
            format,
            entries,
        }],
        json: Vec::new(),
        result: path,
    };
    crate::write_plan(&plan, dest_dir, seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GgufQuant, Size};

    #[test]
    fn names_say_storage_width_and_depth() {
        let config = FluxConfig::new(FluxVariant::Schnell, Size::Real).with_blocks(1, 2);
        assert_eq!(
            flux_model_file_name(&config, Storage::BF16, 0),
            "flux1-schnell-bf16-h3072-1x2blocks.safetensors"
        );
        assert_eq!(
            flux_model_file_name(&config, Storage::Gguf(GgufQuant::Q8_0), 7),
            "flux1-schnell-Q8_0-h3072-1x2blocks-seed7.gguf"
        );
    }

    #[test]
    fn fewer_blocks_keep_the_widths() {
        let full = FluxConfig::new(FluxVariant::Schnell, Size::Real);
        let reduced = full.clone().with_blocks(1, 2);
        let shapes = reduced.tensor_shapes();
        assert!(shapes
            .iter()
            .any(|(n, _)| n == "single_blocks.1.linear1.weight"));
        assert!(!shapes
            .iter()
            .any(|(n, _)| n.starts_with("double_blocks.1.")));
        assert!(!shapes
            .iter()
            .any(|(n, _)| n.starts_with("single_blocks.2.")));
        let width = |config: &FluxConfig| {
            config
                .tensor_shapes()
                .into_iter()
                .find(|(n, _)| n == "double_blocks.0.img_mlp.0.weight")
                .map(|(_, shape)| shape)
        };
        assert_eq!(width(&reduced), width(&full));
        assert!(reduced.parameter_count() < full.parameter_count() / 10);
    }
}
