//! Public-API tests: every spec of `all_specs()` is written once into a shared temp dir, then each
//! file is reopened with an independent reader (the `safetensors` crate, the `zip` crate plus a
//! pickle byte check, candle's GGUF reader) and compared with `planned_files`, and the layouts are
//! spot-checked against names and dtype mixes of real releases.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use kiln_test_checkpoints::{
    all_specs, planned_files, reference_tensor, write, CheckpointSpec, ClipConfig, ClipVariant,
    Component, Error, Family, GgmlDType, GgufQuant, Packaging, Size, Storage, StoredDType,
    UnetConfig, UnetVariant,
};
use safetensors::{Dtype, SafeTensors};

struct Written {
    _dir: tempfile::TempDir,
    root: PathBuf,
    paths: Vec<(CheckpointSpec, PathBuf)>,
    elapsed: Duration,
}

fn written() -> &'static Written {
    static WRITTEN: OnceLock<Written> = OnceLock::new();
    WRITTEN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let start = Instant::now();
        let paths = all_specs()
            .into_iter()
            .map(|spec| (spec, write(&spec, &root).unwrap()))
            .collect();
        Written {
            _dir: dir,
            root,
            paths,
            elapsed: start.elapsed(),
        }
    })
}

fn path_of(spec: CheckpointSpec) -> PathBuf {
    written()
        .paths
        .iter()
        .find(|(s, _)| *s == spec)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("{spec} not in all_specs"))
}

fn stored(dtype: Dtype) -> StoredDType {
    match dtype {
        Dtype::F32 => StoredDType::F32,
        Dtype::F16 => StoredDType::F16,
        Dtype::BF16 => StoredDType::BF16,
        Dtype::F8_E4M3 => StoredDType::F8E4M3,
        Dtype::F8_E5M2 => StoredDType::F8E5M2,
        Dtype::I64 => StoredDType::I64,
        Dtype::I32 => StoredDType::I32,
        other => panic!("unexpected dtype {other:?}"),
    }
}

/// name → (dtype, shape) of a safetensors file, read back with the safetensors crate.
fn safetensors_layout(path: &Path) -> BTreeMap<String, (StoredDType, Vec<usize>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| (name, (stored(view.dtype()), view.shape().to_vec())))
        .collect()
}

fn f32_values(path: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let view = file
        .tensor(name)
        .unwrap_or_else(|_| panic!("{name} missing in {}", path.display()));
    let data = view.data();
    match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn raw_bytes(path: &Path, name: &str) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensor(name).unwrap().data().to_vec()
}

#[test]
fn all_specs_write_quickly_and_cover_every_family_and_packaging() {
    let written = written();
    assert!(
        written.elapsed < Duration::from_secs(40),
        "writing all specs took {:?}",
        written.elapsed
    );
    for family in Family::ALL {
        assert!(
            written.paths.iter().any(|(s, _)| s.family == family),
            "{family:?} never written"
        );
    }
    for packaging in [
        Packaging::SingleFile,
        Packaging::Standalone,
        Packaging::Diffusers,
        Packaging::TorchCkpt,
        Packaging::Gguf,
    ] {
        assert!(written.paths.iter().any(|(s, _)| s.packaging == packaging));
    }
    for storage in Storage::PLAIN {
        assert!(
            written.paths.iter().any(|(s, _)| s.storage == storage),
            "{storage:?}"
        );
    }
    for quant in GgufQuant::ALL {
        assert!(
            written
                .paths
                .iter()
                .any(|(s, _)| s.storage == Storage::Gguf(quant)),
            "{quant:?}"
        );
    }
    for (spec, path) in &written.paths {
        assert!(path.starts_with(&written.root));
        assert!(path.exists(), "{spec}: {} missing", path.display());
    }
}

#[test]
fn safetensors_files_reopen_with_the_planned_names_shapes_and_dtypes() {
    let written = written();
    for (spec, _) in &written.paths {
        if matches!(spec.packaging, Packaging::TorchCkpt | Packaging::Gguf) {
            continue;
        }
        for planned in planned_files(spec).unwrap() {
            let layout = safetensors_layout(&written.root.join(&planned.relative_path));
            assert_eq!(
                layout.len(),
                planned.tensors.len(),
                "{spec}: {}",
                planned.relative_path.display()
            );
            for tensor in &planned.tensors {
                let Some((dtype, shape)) = layout.get(&tensor.name) else {
                    panic!("{spec}: {} missing", tensor.name)
                };
                assert_eq!(
                    (dtype, shape),
                    (&tensor.dtype, &tensor.shape),
                    "{spec}: {}",
                    tensor.name
                );
            }
        }
    }
}

#[test]
fn torch_checkpoints_are_torch_save_zips() {
    let written = written();
    for (spec, path) in written
        .paths
        .iter()
        .filter(|(s, _)| s.packaging == Packaging::TorchCkpt)
    {
        let planned = planned_files(spec).unwrap().remove(0);
        let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
        assert_eq!(archive.len(), planned.tensors.len() + 3, "{spec}");
        let mut pickle = Vec::new();
        archive
            .by_name("archive/data.pkl")
            .unwrap()
            .read_to_end(&mut pickle)
            .unwrap();
        assert_eq!(&pickle[..2], b"\x80\x02");
        assert_eq!(pickle.last(), Some(&b'.'));
        let needle = |s: &str| pickle.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(
            needle("state_dict")
                && needle("_rebuild_tensor_v2")
                && needle("collections\nOrderedDict")
        );
        for tensor in &planned.tensors {
            assert!(needle(&tensor.name), "{spec}: {} not pickled", tensor.name);
        }
        let mut version = String::new();
        archive
            .by_name("archive/version")
            .unwrap()
            .read_to_string(&mut version)
            .unwrap();
        assert_eq!(version, "3\n");
        for (index, tensor) in planned.tensors.iter().enumerate() {
            let record = archive.by_name(&format!("archive/data/{index}")).unwrap();
            let element = match tensor.dtype {
                StoredDType::F32 | StoredDType::I32 => 4,
                StoredDType::F16 | StoredDType::BF16 => 2,
                StoredDType::I64 => 8,
                other => panic!("{other:?} in a ckpt"),
            };
            assert_eq!(
                record.size() as usize,
                tensor.shape.iter().product::<usize>() * element,
                "{}",
                tensor.name
            );
            assert_eq!(
                record.data_start().unwrap_or(1) % 64,
                0,
                "{spec}: record {index} not 64-byte aligned"
            );
        }
    }
}

#[test]
fn gguf_files_reopen_with_candle() {
    let written = written();
    for (spec, path) in written
        .paths
        .iter()
        .filter(|(s, _)| s.packaging == Packaging::Gguf)
    {
        let planned = planned_files(spec).unwrap().remove(0);
        let mut reader = std::fs::File::open(path).unwrap();
        let content = gguf_file::Content::read(&mut reader).unwrap();
        let architecture = content
            .metadata
            .get("general.architecture")
            .unwrap()
            .to_string()
            .unwrap()
            .clone();
        assert_eq!(Some(architecture.as_str()), spec.family.gguf_architecture());
        assert_eq!(content.tensor_infos.len(), planned.tensors.len(), "{spec}");
        for tensor in &planned.tensors {
            let info = content
                .tensor_infos
                .get(&tensor.name)
                .unwrap_or_else(|| panic!("{spec}: {}", tensor.name));
            assert_eq!(
                StoredDType::Ggml(info.ggml_dtype),
                tensor.dtype,
                "{spec}: {}",
                tensor.name
            );
            if info.shape.dims() != tensor.shape.as_slice() {
                let key = format!("comfy.gguf.orig_shape.{}", tensor.name);
                let original = content
                    .metadata
                    .get(&key)
                    .unwrap_or_else(|| panic!("{spec}: {key}"));
                let dims: Vec<usize> = original
                    .to_vec()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_i32().unwrap() as usize)
                    .collect();
                assert_eq!(dims, tensor.shape);
            }
            if tensor.shape.len() == 1 {
                assert_eq!(info.ggml_dtype, GgmlDType::F32, "{}", tensor.name);
            }
            let _ = info
                .read(
                    &mut reader,
                    content.tensor_data_offset,
                    &candle_core::Device::Cpu,
                )
                .unwrap();
        }
    }
    let flux_q4 = planned_files(&CheckpointSpec::new(
        Family::FluxDev,
        Storage::Gguf(GgufQuant::Q4_0),
        Packaging::Gguf,
    ))
    .unwrap();
    assert!(flux_q4[0]
        .tensors
        .iter()
        .any(|t| t.dtype == StoredDType::Ggml(GgmlDType::Q4_0)));
    let sd1 = planned_files(&CheckpointSpec::new(
        Family::Sd1,
        Storage::Gguf(GgufQuant::Q4_K_S),
        Packaging::Gguf,
    ))
    .unwrap();
    assert!(sd1[0]
        .tensors
        .iter()
        .any(|t| t.dtype == StoredDType::Ggml(GgmlDType::Q4K)));
    assert!(sd1[0]
        .tensors
        .iter()
        .any(|t| t.name == "output_blocks.11.1.transformer_blocks.0.norm1.bias"));
}

#[test]
fn diffusers_folders_have_configs_and_shard_indexes() {
    let written = written();
    for (spec, path) in written
        .paths
        .iter()
        .filter(|(s, _)| s.packaging == Packaging::Diffusers && !s.family.is_vae())
    {
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.join("model_index.json")).unwrap())
                .unwrap();
        let components: Vec<&String> = index
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !k.starts_with('_'))
            .collect();
        for component in [
            "unet",
            "transformer",
            "text_encoder",
            "text_encoder_2",
            "text_encoder_3",
            "vae",
        ] {
            if components.iter().any(|c| *c == component) {
                let config = path.join(component).join("config.json");
                let config: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
                assert!(config.is_object(), "{spec}: {component}");
            }
        }
        for entry in std::fs::read_dir(path).unwrap() {
            let folder = entry.unwrap().path();
            for file in std::fs::read_dir(&folder).into_iter().flatten() {
                let file = file.unwrap().path();
                if file.to_string_lossy().ends_with(".safetensors.index.json") {
                    let index: serde_json::Value =
                        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
                    let map = index["weight_map"].as_object().unwrap();
                    let mut shards: HashMap<String, usize> = HashMap::new();
                    for shard in map.values() {
                        *shards
                            .entry(shard.as_str().unwrap().to_string())
                            .or_default() += 1;
                    }
                    for (shard, count) in shards {
                        assert_eq!(safetensors_layout(&folder.join(shard)).len(), count);
                    }
                }
            }
        }
    }
    let flux = path_of(CheckpointSpec::new(
        Family::FluxDev,
        Storage::BF16,
        Packaging::Diffusers,
    ));
    assert!(flux
        .join("transformer/diffusion_pytorch_model-00003-of-00003.safetensors")
        .exists());
    assert!(flux
        .join("text_encoder_2/model-00002-of-00002.safetensors")
        .exists());
}

fn has_keys(spec: CheckpointSpec, file: &str, keys: &[&str]) {
    let root = path_of(spec);
    let path = if file.is_empty() {
        root
    } else {
        root.join(file)
    };
    let layout = safetensors_layout(&path);
    for key in keys {
        assert!(layout.contains_key(*key), "{spec}: {key} missing");
    }
}

#[test]
fn real_key_names_are_present() {
    use Packaging::{Diffusers, SingleFile, Standalone};
    has_keys(
        CheckpointSpec::new(Family::Sd1, Storage::F16, SingleFile),
        "",
        &[
            "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias",
            "model.diffusion_model.input_blocks.1.1.proj_in.weight",
            "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight",
            "cond_stage_model.transformer.text_model.embeddings.position_ids",
            "first_stage_model.decoder.mid.attn_1.q.weight",
            "first_stage_model.quant_conv.weight",
            "alphas_cumprod",
            "model_ema.num_updates",
        ],
    );
    has_keys(
        CheckpointSpec::new(Family::Sd2, Storage::F16, SingleFile),
        "",
        &[
            "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight",
            "cond_stage_model.model.transformer.resblocks.0.mlp.c_fc.weight",
            "cond_stage_model.model.token_embedding.weight",
            "cond_stage_model.model.positional_embedding",
            "cond_stage_model.model.ln_final.weight",
            "cond_stage_model.model.text_projection",
        ],
    );
    has_keys(CheckpointSpec::new(Family::Sdxl, Storage::F16, SingleFile), "", &[
        "model.diffusion_model.label_emb.0.0.weight",
        "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight",
        "conditioner.embedders.0.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight",
        "conditioner.embedders.1.model.transformer.resblocks.31.ln_2.bias",
        "conditioner.embedders.1.model.logit_scale",
    ]);
    has_keys(
        CheckpointSpec::new(Family::SdxlRefiner, Storage::F16, SingleFile),
        "",
        &[
            "conditioner.embedders.0.model.transformer.resblocks.31.attn.out_proj.weight",
            "model.diffusion_model.output_blocks.8.1.transformer_blocks.3.ff.net.2.weight",
        ],
    );
    has_keys(CheckpointSpec::new(Family::Sd3Medium, Storage::F16, SingleFile), "", &[
        "model.diffusion_model.joint_blocks.1.context_block.attn.qkv.weight",
        "model.diffusion_model.x_embedder.proj.weight",
        "model.diffusion_model.pos_embed",
        "text_encoders.clip_l.transformer.text_projection.weight",
        "text_encoders.clip_g.transformer.text_model.encoder.layers.31.mlp.fc1.weight",
        "text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        "text_encoders.t5xxl.transformer.encoder.block.23.layer.1.DenseReluDense.wi_1.weight",
        "first_stage_model.decoder.conv_in.weight",
    ]);
    has_keys(
        CheckpointSpec::new(Family::Sd35Medium, Storage::BF16, SingleFile),
        "",
        &[
            "model.diffusion_model.joint_blocks.0.x_block.attn2.qkv.weight",
            "model.diffusion_model.joint_blocks.0.x_block.attn.ln_q.weight",
        ],
    );
    has_keys(
        CheckpointSpec::new(Family::FluxDev, Storage::F8E4M3, SingleFile),
        "",
        &[
            "model.diffusion_model.double_blocks.18.img_attn.norm.key_norm.scale",
            "model.diffusion_model.single_blocks.37.linear2.weight",
            "model.diffusion_model.guidance_in.in_layer.weight",
            "text_encoders.clip_l.logit_scale",
            "text_encoders.t5xxl.transformer.shared.weight",
            "vae.decoder.up.3.upsample.conv.weight",
        ],
    );
    has_keys(
        CheckpointSpec::new(Family::FluxDev, Storage::BF16, Standalone),
        "",
        &["img_in.weight", "final_layer.adaLN_modulation.1.weight"],
    );
    has_keys(
        CheckpointSpec::new(Family::T5Xxl, Storage::F16, Standalone),
        "",
        &[
            "encoder.block.0.layer.0.SelfAttention.q.weight",
            "encoder.block.23.layer.1.layer_norm.weight",
            "encoder.final_layer_norm.weight",
            "shared.weight",
        ],
    );
    has_keys(
        CheckpointSpec::new(Family::ClipG, Storage::F16, Standalone),
        "",
        &[
            "text_model.encoder.layers.31.self_attn.k_proj.bias",
            "text_projection.weight",
        ],
    );
    has_keys(
        CheckpointSpec::new(Family::Vae16, Storage::BF16, Diffusers),
        "",
        &["decoder.mid_block.attentions.0.to_q.weight"],
    );
    has_keys(
        CheckpointSpec::new(Family::Vae4, Storage::F16, Diffusers),
        "",
        &["encoder.mid_block.attentions.0.query.weight"],
    );
    has_keys(
        CheckpointSpec::new(Family::Sd1, Storage::F16, Diffusers),
        "unet/diffusion_pytorch_model.safetensors",
        &[
            "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight",
            "up_blocks.3.attentions.2.proj_out.weight",
        ],
    );
    has_keys(
        CheckpointSpec::new(Family::Sdxl, Storage::F16, Diffusers),
        "text_encoder_2/model.safetensors",
        &["text_projection.weight"],
    );
    has_keys(
        CheckpointSpec::new(Family::Sd35Medium, Storage::BF16, Diffusers),
        "transformer/diffusion_pytorch_model.safetensors",
        &[
            "transformer_blocks.0.attn2.to_q.weight",
            "transformer_blocks.1.attn.norm_added_k.weight",
            "pos_embed.pos_embed",
            "norm_out.linear.weight",
        ],
    );

    let flux_schnell = safetensors_layout(&path_of(CheckpointSpec::new(
        Family::FluxSchnell,
        Storage::BF16,
        SingleFile,
    )));
    assert!(!flux_schnell.keys().any(|k| k.contains("guidance_in")));
    let flux_16ch = safetensors_layout(&path_of(CheckpointSpec::new(
        Family::Vae16,
        Storage::BF16,
        Standalone,
    )));
    assert!(!flux_16ch.keys().any(|k| k.contains("quant_conv")));
    assert_eq!(flux_16ch["decoder.conv_in.weight"].1[1], 16);
    let fill = safetensors_layout(&path_of(CheckpointSpec::new(
        Family::FluxFill,
        Storage::BF16,
        Standalone,
    )));
    assert_eq!(fill["img_in.weight"].1[1], 384);
}

fn dtype_histogram(spec: CheckpointSpec, prefix: &str) -> BTreeMap<String, usize> {
    let mut histogram = BTreeMap::new();
    for (name, (dtype, _)) in safetensors_layout(&path_of(spec)) {
        if name.starts_with(prefix) {
            *histogram.entry(format!("{dtype:?}")).or_default() += 1;
        }
    }
    histogram
}

#[test]
fn fp8_checkpoint_has_the_dtype_mix_of_comfy_orgs_flux1_dev_fp8() {
    // ComfyUI reports for flux1-dev-fp8.safetensors: model.diffusion_model. {fp8: 780},
    // text_encoders. {f16: 198, fp8: 168, f32: 52}, vae. {bf16: 244}.
    let spec = CheckpointSpec::new(Family::FluxDev, Storage::F8E4M3, Packaging::SingleFile);
    let counts = |pairs: &[(&str, usize)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        dtype_histogram(spec, "model.diffusion_model."),
        counts(&[("F8E4M3", 780)])
    );
    assert_eq!(
        dtype_histogram(spec, "text_encoders."),
        counts(&[("F16", 198), ("F8E4M3", 168), ("F32", 52)])
    );
    assert_eq!(dtype_histogram(spec, "vae."), counts(&[("BF16", 244)]));
}

#[test]
fn scaled_fp8_has_marker_and_per_linear_scales_that_dequantise() {
    let spec = CheckpointSpec::new(Family::T5Xxl, Storage::ScaledF8E4M3, Packaging::Standalone);
    let path = path_of(spec);
    let layout = safetensors_layout(&path);
    assert_eq!(layout["scaled_fp8"], (StoredDType::F8E4M3, vec![0]));
    let name = "encoder.block.3.layer.1.DenseReluDense.wo";
    assert_eq!(layout[&format!("{name}.weight")].0, StoredDType::F8E4M3);
    assert_eq!(
        layout[&format!("{name}.scale_weight")],
        (StoredDType::F32, vec![])
    );
    assert_eq!(
        layout["encoder.block.3.layer.1.layer_norm.weight"].0,
        StoredDType::BF16
    );
    let linear_count = layout
        .keys()
        .filter(|k| k.ends_with(".weight") && layout[*k].0 == StoredDType::F8E4M3)
        .count();
    assert_eq!(
        linear_count,
        layout
            .keys()
            .filter(|k| k.ends_with(".scale_weight"))
            .count()
    );

    let scale = f32::from_le_bytes(
        raw_bytes(&path, &format!("{name}.scale_weight"))
            .try_into()
            .unwrap(),
    );
    let stored = raw_bytes(&path, &format!("{name}.weight"));
    let reference = reference_tensor(&spec, Component::T5Xxl, &format!("{name}.weight")).unwrap();
    let amax = reference.values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!((scale - amax / 448.0).abs() <= scale * 1e-6);
    for (byte, expected) in stored.iter().zip(&reference.values) {
        let decoded = decode_e4m3(*byte) * scale;
        // e4m3 has 3 mantissa bits: relative error ≤ 1/16 for normals; absolute for subnormals.
        assert!(
            (decoded - expected).abs() <= expected.abs() / 16.0 + scale * 2f32.powi(-10),
            "{decoded} vs {expected}"
        );
    }
    let unet = safetensors_layout(&path_of(CheckpointSpec::new(
        Family::Sd35Large,
        Storage::ScaledF8E4M3,
        Packaging::SingleFile,
    )));
    assert_eq!(
        unet["model.diffusion_model.scaled_fp8"],
        (StoredDType::F8E4M3, vec![0])
    );
    assert!(unet.contains_key("model.diffusion_model.joint_blocks.0.x_block.mlp.fc1.scale_weight"));
    assert_eq!(
        unet["model.diffusion_model.x_embedder.proj.weight"].0,
        StoredDType::BF16
    );
}

fn decode_e4m3(byte: u8) -> f32 {
    let sign = if byte & 0x80 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((byte >> 3) & 0x0F);
    let mantissa = f32::from(byte & 0x07);
    if exponent == 0 {
        sign * mantissa / 8.0 * 2f32.powi(-6)
    } else {
        sign * (1.0 + mantissa / 8.0) * 2f32.powi(exponent - 7)
    }
}

#[test]
fn values_are_shared_across_layouts() {
    // Same canonical weight in LDM single file and diffusers folder: identical f16 bytes.
    let single = path_of(CheckpointSpec::new(
        Family::Sd1,
        Storage::F16,
        Packaging::SingleFile,
    ));
    let folder = path_of(CheckpointSpec::new(
        Family::Sd1,
        Storage::F16,
        Packaging::Diffusers,
    ));
    assert_eq!(
        raw_bytes(
            &single,
            "model.diffusion_model.output_blocks.5.1.transformer_blocks.0.attn2.to_v.weight"
        ),
        raw_bytes(
            &folder.join("unet/diffusion_pytorch_model.safetensors"),
            "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_v.weight"
        ),
    );
    // f32 standalone files hold the reference values exactly.
    let spec = CheckpointSpec::new(Family::FluxDev, Storage::F32, Packaging::Standalone);
    let reference = reference_tensor(
        &spec,
        Component::DiffusionModel,
        "double_blocks.4.txt_attn.qkv.weight",
    )
    .unwrap();
    assert_eq!(
        f32_values(&path_of(spec), "double_blocks.4.txt_attn.qkv.weight"),
        reference.values
    );
    // diffusers' split q/k/v are row slices of BFL's fused qkv.
    let diffusers = path_of(CheckpointSpec::new(
        Family::FluxDev,
        Storage::BF16,
        Packaging::Diffusers,
    ))
    .join("transformer");
    let shard = std::fs::read_dir(&diffusers)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "safetensors")
                && safetensors_layout(p).contains_key("transformer_blocks.4.attn.add_k_proj.weight")
        })
        .unwrap();
    let add_k = f32_values(&shard, "transformer_blocks.4.attn.add_k_proj.weight");
    let hidden = add_k.len().isqrt();
    let expected: Vec<f32> = reference.values[hidden * hidden..2 * hidden * hidden]
        .iter()
        .map(|v| half::bf16::from_f32(*v).to_f32())
        .collect();
    assert_eq!(add_k, expected);
    // open_clip's fused in_proj (SD2 checkpoint) is q, k, v of the HF layout.
    let sd2 = CheckpointSpec::new(Family::Sd2, Storage::F16, Packaging::SingleFile);
    let fused = f32_values(
        &path_of(sd2),
        "cond_stage_model.model.transformer.resblocks.5.attn.in_proj_weight",
    );
    let v = reference_tensor(
        &sd2,
        Component::OpenClipH,
        "text_model.encoder.layers.5.self_attn.v_proj.weight",
    )
    .unwrap();
    let v16: Vec<f32> = v
        .values
        .iter()
        .map(|x| half::f16::from_f32(*x).to_f32())
        .collect();
    assert_eq!(&fused[2 * v16.len()..], &v16[..]);
}

#[test]
fn v_prediction_is_visible_in_the_norm1_bias_spread() {
    let std = |family| {
        let path = path_of(CheckpointSpec::new(
            family,
            Storage::F16,
            Packaging::SingleFile,
        ));
        let values = f32_values(
            &path,
            "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias",
        );
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32).sqrt()
    };
    assert!(std(Family::Sd2V) > 0.09, "{}", std(Family::Sd2V));
    assert!(std(Family::Sd2) < 0.09, "{}", std(Family::Sd2));
}

#[test]
fn norm_weights_sit_near_one_and_weights_near_zero() {
    let spec = CheckpointSpec::new(Family::T5Xxl, Storage::F32, Packaging::Standalone);
    let norm = f32_values(&path_of(spec), "encoder.block.2.layer.0.layer_norm.weight");
    assert!(norm.iter().all(|v| (v - 1.0).abs() < 0.15));
    let weight = f32_values(
        &path_of(spec),
        "encoder.block.2.layer.1.DenseReluDense.wi_0.weight",
    );
    let std = (weight.iter().map(|v| v * v).sum::<f32>() / weight.len() as f32).sqrt();
    assert!((std - 0.02).abs() < 0.002, "{std}");
}

#[test]
fn writing_is_deterministic_and_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::ClipL, Storage::F8E5M2, Packaging::Standalone);
    let first = std::fs::read(write(&spec, dir.path()).unwrap()).unwrap();
    let again = std::fs::read(write(&spec, dir.path()).unwrap()).unwrap();
    assert_eq!(first, again);
    let other = std::fs::read(write(&spec.with_seed(7), dir.path()).unwrap()).unwrap();
    assert_ne!(first, other);
    assert_eq!(first.len(), other.len());
}

#[test]
fn unsupported_combinations_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for spec in [
        CheckpointSpec::new(Family::Vae4, Storage::F8E4M3, Packaging::Standalone),
        CheckpointSpec::new(Family::ClipL, Storage::F16, Packaging::SingleFile),
        CheckpointSpec::new(Family::FluxDev, Storage::F16, Packaging::Gguf),
        CheckpointSpec::new(
            Family::FluxDev,
            Storage::Gguf(GgufQuant::Q8_0),
            Packaging::SingleFile,
        ),
        CheckpointSpec::new(Family::Sdxl, Storage::F16, Packaging::TorchCkpt),
        CheckpointSpec::new(Family::Sd1, Storage::F8E4M3, Packaging::Diffusers),
    ] {
        assert!(!spec.is_supported());
        assert!(
            matches!(
                write(&spec, dir.path()),
                Err(Error::UnsupportedCombination { .. })
            ),
            "{spec}"
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn real_presets_match_published_parameter_counts() {
    assert_eq!(
        UnetConfig::real(UnetVariant::Sd1).parameter_count(),
        859_520_964
    );
    assert_eq!(
        UnetConfig::real(UnetVariant::Sdxl).parameter_count(),
        2_567_463_684
    );
    assert_eq!(
        ClipConfig::real(ClipVariant::L).parameter_count(),
        123_060_480
    );
    let real_sd1 = planned_files(
        &CheckpointSpec::new(Family::Sd1, Storage::F16, Packaging::SingleFile)
            .with_size(Size::Real),
    )
    .unwrap();
    // v1-5-pruned-emaonly: 686 UNet + 248 VAE + 197 CLIP + 12 schedule buffers + 2 EMA counters.
    assert_eq!(real_sd1[0].tensors.len(), 1145);
}
