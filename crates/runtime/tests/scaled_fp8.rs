//! Scaled-fp8 checkpoints: a file whose fp8 weight lost its `scale_weight` is refused, naming
//! the file and the tensor, before any weight is loaded; an intact one loads with its scales.
#![allow(clippy::unwrap_used)]

use candle_core::Device;
use kiln_detect::{Checkpoint, ComponentKind};
use kiln_runtime::{simulated, PlanOptions, Planner, RuntimeError, WeightStore, Widening};
use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};

/// Renames tensor `from` to `to` (same length) in a safetensors header, so the file no longer
/// holds `from` and every offset stays valid.
fn rename_tensor(path: &std::path::Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = &mut bytes[8..8 + header_len];
    let needle = format!("\"{from}\"");
    let at = header
        .windows(needle.len())
        .position(|window| window == needle.as_bytes())
        .unwrap();
    header[at + 1..at + 1 + to.len()].copy_from_slice(to.as_bytes());
    std::fs::write(path, bytes).unwrap();
}

fn load_unet(checkpoint: &Checkpoint) -> Result<WeightStore, RuntimeError> {
    let m3 = simulated("metal-m3").unwrap();
    let plan = Planner::new(PlanOptions::default(), m3.clone())
        .plan(checkpoint.detection())
        .unwrap();
    let unet = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(unet.widening, Widening::ScaledFp8);
    WeightStore::load(checkpoint, unet, &m3, &Device::Cpu)
}

#[test]
fn a_missing_scale_names_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(
        Family::Sd35Large,
        Storage::ScaledF8E4M3,
        Packaging::SingleFile,
    );
    let path = write(&spec, dir.path()).unwrap();
    let intact = load_unet(&Checkpoint::open(&path).unwrap()).unwrap();
    let qkv = "joint_blocks.0.x_block.attn.qkv.weight";
    assert!(intact.held(qkv).unwrap().scale().is_some());

    let weight = format!("model.diffusion_model.{qkv}");
    let scale = weight.replace(".weight", ".scale_weight");
    rename_tensor(
        &path,
        &scale,
        &scale.replace("scale_weight", "scale_wexght"),
    );
    let checkpoint = Checkpoint::open(&path).unwrap();
    match load_unet(&checkpoint) {
        Err(RuntimeError::ScaleMissing {
            file,
            tensor,
            scale: missing,
        }) => {
            assert_eq!(file, path);
            assert_eq!(tensor, weight);
            assert_eq!(missing, scale);
        }
        other => panic!("expected ScaleMissing, got {other:?}"),
    }
    let message = load_unet(&checkpoint).unwrap_err().to_string();
    assert!(message.contains(&weight), "{message}");
    assert!(message.contains("sd3.5"), "{message}");
}
