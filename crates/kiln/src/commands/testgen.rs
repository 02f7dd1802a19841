//! `kiln testgen DIR`: writes Kiln's small deterministic test checkpoints (every family, layout
//! and storage dtype of `kiln-test-checkpoints`) under `DIR/models/…` in ComfyUI's folder layout,
//! so `kiln --base-directory DIR` sees them as a user's models.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use kiln_test_checkpoints::{all_specs, write, CheckpointSpec, Packaging};

use crate::flags::TestgenArgs;

/// Runs `kiln testgen`.
pub fn testgen(args: &TestgenArgs) -> anyhow::Result<ExitCode> {
    let specs = all_specs();
    for spec in &specs {
        let folder = args.dir.join("models").join(model_folder(spec));
        let written = write(spec, &folder)
            .with_context(|| format!("cannot write the test checkpoint {spec}"))?;
        println!("{}", relative_to(&written, &args.dir).display());
    }
    eprintln!(
        "wrote {} test checkpoints under {}",
        specs.len(),
        args.dir.join("models").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The ComfyUI model folder a user would put this file in.
fn model_folder(spec: &CheckpointSpec) -> &'static str {
    let family = spec.family;
    match spec.packaging {
        Packaging::SingleFile | Packaging::TorchCkpt => "checkpoints",
        Packaging::Diffusers => "diffusers",
        Packaging::Gguf if family.is_text_encoder() => "text_encoders",
        Packaging::Gguf => "diffusion_models",
        Packaging::Standalone if family.is_text_encoder() => "text_encoders",
        Packaging::Standalone if family.is_vae() => "vae",
        Packaging::Standalone => "diffusion_models",
    }
}

fn relative_to(path: &Path, base: &Path) -> PathBuf {
    path.strip_prefix(base)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}
