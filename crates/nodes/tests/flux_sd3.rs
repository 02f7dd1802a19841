//! Flux and SD3 through the nodes on tiny checkpoints: all-in-one files in
//! CheckpointLoaderSimple, separate diffusion model + text encoders + VAE through UNETLoader,
//! the CLIP loaders and VAELoader; text encoding shapes and values (Flux: T5 states + CLIP-L
//! pooled; SD3: CLIP-L | CLIP-G padded to the T5 width, then T5 tokens); and the errors for a
//! CLIP in the T5 slot, a 16-channel latent given to a 4-channel VAE and scaled fp8 without
//! its scales.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod node_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_detect::{Architecture, ComponentKind};
use kiln_graph::{ExecutionContext, ExecutionEvent, InterruptFlag, NodeError, NodeInputs, Value};
use kiln_models::{
    ClipConfig, ClipTextEncoder, ClipTokenizer, ClipUsage, T5Encoder, T5Tokenizer, TokenizerConfig,
    Weights, FLUX_T5_MIN_LENGTH,
};
use kiln_nodes::{builtin_registry, Clip, Conditioning, Latent, Model, NodeServices, Vae};
use kiln_sampling::ModelSampling;
use kiln_test_checkpoints::{CheckpointSpec, Family, Packaging, Storage};
use kiln_weights::StorageDType;
use node_support::{cpu_services, max_abs, max_diff, write_model};
use serde_json::json;

struct Setup {
    base: tempfile::TempDir,
    services: NodeServices,
}

fn setup() -> Setup {
    let base = tempfile::tempdir().unwrap();
    let encoders = base.path().join("models").join("text_encoders");
    let tokenizer_dir = encoders.join("t5_tokenizer");
    std::fs::create_dir_all(&tokenizer_dir).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures/t5/tiny_tokenizer/tokenizer.json");
    std::fs::copy(fixture, tokenizer_dir.join("tokenizer.json")).unwrap();
    let services = cpu_services(base.path());
    Setup { base, services }
}

impl Setup {
    fn write(
        &self,
        folder: &str,
        family: Family,
        storage: Storage,
        packaging: Packaging,
    ) -> String {
        let spec = CheckpointSpec::new(family, storage, packaging);
        write_model(self.base.path(), folder, &spec)
    }

    /// An f32 standalone text encoder of `family` in `text_encoders`.
    fn text_encoder(&self, family: Family) -> String {
        self.write("text_encoders", family, Storage::F32, Packaging::Standalone)
    }

    fn path(&self, folder: &str, name: &str) -> PathBuf {
        self.base.path().join("models").join(folder).join(name)
    }

    fn run(&self, class: &str, inputs: Vec<(&str, Value)>) -> Result<Vec<Value>, NodeError> {
        let registry = builtin_registry();
        let node = registry.get(class).unwrap().node().clone();
        let mut node_inputs = NodeInputs::new();
        for (name, value) in inputs {
            node_inputs.insert(name, value);
        }
        let interrupt = InterruptFlag::new();
        let mut events: Vec<ExecutionEvent> = Vec::new();
        let mut ctx = ExecutionContext::standalone("1", &self.services, &interrupt, &mut events);
        node.execute(&node_inputs, &mut ctx).map(|out| out.values)
    }
}

fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

fn clip_of(values: &[Value]) -> Arc<Clip> {
    values[0].downcast("CLIP").unwrap()
}

fn kinds(clip: &Clip) -> Vec<ComponentKind> {
    clip.encoders.iter().map(|e| e.kind).collect()
}

fn encode(setup: &Setup, clip: &Arc<Clip>, prompt: &str) -> (Tensor, Tensor, Option<f64>) {
    let out = setup
        .run(
            "CLIPTextEncode",
            vec![
                ("text", text(prompt)),
                ("clip", clip.as_ref().clone().into_value()),
            ],
        )
        .unwrap();
    first_entry(&out)
}

fn first_entry(out: &[Value]) -> (Tensor, Tensor, Option<f64>) {
    let cond: Arc<Conditioning> = out[0].downcast("CONDITIONING").unwrap();
    let entry = &cond.entries[0];
    (
        entry.cond.clone(),
        entry.meta.pooled.clone().unwrap(),
        entry.meta.guidance,
    )
}

/// T5 run directly over the CLIP's own weights with the fixture tokenizer.
fn direct_t5(setup: &Setup, clip: &Clip, prompt: &str, min_length: usize) -> Tensor {
    let weights = clip.encoder(ComponentKind::T5xxl).unwrap();
    let tokenizer = T5Tokenizer::from_file(
        setup
            .path("text_encoders", "t5_tokenizer")
            .join("tokenizer.json"),
    )
    .unwrap();
    let tokens = tokenizer.tokenize(prompt, min_length).unwrap();
    T5Encoder::new(Weights::new(weights.weights().unwrap()))
        .unwrap()
        .encode_weighted(&tokens)
        .unwrap()
}

/// A CLIP encoder of `clip` run directly with `usage`: `(hidden, pooled)`.
fn direct_clip(
    clip: &Clip,
    kind: ComponentKind,
    usage: ClipUsage,
    prompt: &str,
) -> (Tensor, Tensor) {
    let weights = Weights::new(clip.encoder(kind).unwrap().weights().unwrap());
    let config = ClipConfig::from_weights(&weights, kind).unwrap();
    let width = config.hidden_size;
    let encoder =
        ClipTextEncoder::new(weights, kind, config.with_heads(width / 16), usage).unwrap();
    let base = if kind == ComponentKind::ClipG {
        TokenizerConfig::clip_g()
    } else {
        TokenizerConfig::clip_l()
    };
    let tokenizer = ClipTokenizer::new(TokenizerConfig {
        embedding_width: width,
        ..base
    });
    let chunks = tokenizer.tokenize(prompt, None).unwrap().chunks;
    encoder.encode_chunks(&chunks, None).unwrap()
}

#[test]
fn flux_all_in_one_checkpoint_loads_and_encodes() {
    let setup = setup();
    let name = setup.write(
        "checkpoints",
        Family::FluxDev,
        Storage::F32,
        Packaging::SingleFile,
    );
    let out = setup
        .run("CheckpointLoaderSimple", vec![("ckpt_name", text(&name))])
        .unwrap();
    let model: Arc<Model> = out[0].downcast("MODEL").unwrap();
    let clip: Arc<Clip> = out[1].downcast("CLIP").unwrap();
    let vae: Arc<Vae> = out[2].downcast("VAE").unwrap();
    assert_eq!(model.architecture, Architecture::Flux);
    assert_eq!(
        model.sampling.schedule(),
        ModelSampling::flux_dev().schedule()
    );
    assert_eq!(clip.architecture, Architecture::Flux);
    assert_eq!(kinds(&clip), [ComponentKind::ClipL, ComponentKind::T5xxl]);
    assert_eq!(vae.latent_channels, 16);

    let prompt = "a (red:1.3) fox";
    let (cond, pooled, guidance) = encode(&setup, &clip, prompt);
    assert_eq!(cond.dims(), [1, FLUX_T5_MIN_LENGTH, 96]);
    assert_eq!(pooled.dims(), [1, 32]);
    assert_eq!(guidance, None);
    let expected = direct_t5(&setup, &clip, prompt, FLUX_T5_MIN_LENGTH);
    assert!(max_diff(&cond, &expected) < 1e-5);
    // FluxClipModel's CLIP-L: last layer, unprojected pooled.
    let (_, l_pooled) = direct_clip(
        &clip,
        ComponentKind::ClipL,
        ClipUsage::flux_clip_l(),
        prompt,
    );
    assert!(max_diff(&pooled, &l_pooled) < 1e-6);

    let flux = setup
        .run(
            "CLIPTextEncodeFlux",
            vec![
                ("clip", clip.as_ref().clone().into_value()),
                ("clip_l", text(prompt)),
                ("t5xxl", text("something else")),
                ("guidance", Value::Float(4.5)),
            ],
        )
        .unwrap();
    let (flux_cond, flux_pooled, flux_guidance) = first_entry(&flux);
    assert_eq!(flux_guidance, Some(4.5));
    assert!(
        max_diff(&flux_pooled, &pooled) < 1e-6,
        "pooled comes from the clip_l text"
    );
    let other = direct_t5(&setup, &clip, "something else", FLUX_T5_MIN_LENGTH);
    assert!(
        max_diff(&flux_cond, &other) < 1e-5,
        "cond comes from the t5xxl text"
    );
    assert!(max_diff(&flux_cond, &cond) > 1e-4);
}

#[test]
fn flux_from_separate_files_with_fp8_weight_dtype() {
    let setup = setup();
    let unet = setup.write(
        "diffusion_models",
        Family::FluxSchnell,
        Storage::F16,
        Packaging::Standalone,
    );
    let clip_l = setup.text_encoder(Family::ClipL);
    let t5 = setup.text_encoder(Family::T5Xxl);
    let ae = setup.write("vae", Family::Vae16, Storage::F32, Packaging::Standalone);

    let load = |dtype: &str| -> Arc<Model> {
        let out = setup
            .run(
                "UNETLoader",
                vec![("unet_name", text(&unet)), ("weight_dtype", text(dtype))],
            )
            .unwrap();
        out[0].downcast("MODEL").unwrap()
    };
    let default = load("default");
    assert_eq!(default.architecture, Architecture::Flux);
    assert_eq!(
        default.sampling.schedule(),
        ModelSampling::flux_schnell().schedule()
    );
    assert_ne!(default.plan.storage_dtype, StorageDType::F8E4M3);
    let fp8 = load("fp8_e4m3fn");
    assert_eq!(fp8.plan.storage_dtype, StorageDType::F8E4M3);
    let e5m2 = load("fp8_e5m2");
    assert_eq!(e5m2.plan.storage_dtype, StorageDType::F8E5M2);

    let out = setup
        .run(
            "DualCLIPLoader",
            vec![
                ("clip_name1", text(&t5)),
                ("clip_name2", text(&clip_l)),
                ("type", text("flux")),
            ],
        )
        .unwrap();
    let clip = clip_of(&out);
    assert_eq!(clip.architecture, Architecture::Flux);
    assert_eq!(kinds(&clip), [ComponentKind::ClipL, ComponentKind::T5xxl]);
    let (cond, pooled, _) = encode(&setup, &clip, "a cat");
    assert_eq!(cond.dims(), [1, FLUX_T5_MIN_LENGTH, 96]);
    assert_eq!(pooled.dims(), [1, 32]);

    let vae = setup
        .run("VAELoader", vec![("vae_name", text(&ae))])
        .unwrap();
    let vae: Arc<Vae> = vae[0].downcast("VAE").unwrap();
    assert_eq!(vae.latent_channels, 16);
}

#[test]
fn sd3_checkpoint_and_triple_clip_encode_like_comfyui() {
    let setup = setup();
    let name = setup.write(
        "checkpoints",
        Family::Sd35Large,
        Storage::F32,
        Packaging::SingleFile,
    );
    let out = setup
        .run("CheckpointLoaderSimple", vec![("ckpt_name", text(&name))])
        .unwrap();
    let model: Arc<Model> = out[0].downcast("MODEL").unwrap();
    let clip: Arc<Clip> = out[1].downcast("CLIP").unwrap();
    let vae: Arc<Vae> = out[2].downcast("VAE").unwrap();
    assert_eq!(model.architecture, Architecture::Sd3);
    assert_eq!(model.sampling.schedule(), ModelSampling::sd3().schedule());
    assert_eq!(
        kinds(&clip),
        [
            ComponentKind::ClipL,
            ComponentKind::ClipG,
            ComponentKind::T5xxl
        ]
    );
    assert_eq!(vae.latent_channels, 16);

    let prompt = "a castle on a hill";
    let (cond, pooled, _) = encode(&setup, &clip, prompt);
    // 77 CLIP tokens (L 32 + G 64 wide, padded to T5's 96) followed by 77 T5 tokens.
    assert_eq!(cond.dims(), [1, 77 + 77, 96]);
    assert_eq!(pooled.dims(), [1, 32 + 64]);
    let t5 = direct_t5(&setup, &clip, prompt, 77);
    assert!(max_diff(&cond.narrow(1, 77, 77).unwrap(), &t5) < 1e-5);
    // SD3ClipModel: CLIP-L penultimate without the final norm and unprojected pooled; CLIP-G
    // penultimate without the final norm and projected pooled.
    let sd3_l = ClipUsage {
        projected_pooled: false,
        ..ClipUsage::sdxl_clip_l()
    };
    let (l_hidden, l_pool) = direct_clip(&clip, ComponentKind::ClipL, sd3_l, prompt);
    let (g_hidden, g_pool) = direct_clip(
        &clip,
        ComponentKind::ClipG,
        ClipUsage::sdxl_clip_g(),
        prompt,
    );
    let lg = cond.narrow(1, 0, 77).unwrap();
    assert!(max_diff(&lg.narrow(2, 0, 32).unwrap(), &l_hidden) < 1e-5);
    assert!(max_diff(&lg.narrow(2, 32, 64).unwrap(), &g_hidden) < 1e-5);
    let expected_pooled = Tensor::cat(&[&l_pool, &g_pool], 1).unwrap();
    assert!(max_diff(&pooled, &expected_pooled) < 1e-6);

    // Separate files: CLIP-L only (type sd3) gives the same first 32 features, zeros after
    // them, and zeros for CLIP-G's 1280-wide pooled part.
    let clip_l = setup.text_encoder(Family::ClipLWithProjection);
    let clip_g = setup.text_encoder(Family::ClipG);
    let t5_file = setup.text_encoder(Family::T5Xxl);
    let only_l = clip_of(
        &setup
            .run(
                "CLIPLoader",
                vec![("clip_name", text(&clip_l)), ("type", text("sd3"))],
            )
            .unwrap(),
    );
    assert_eq!(only_l.architecture, Architecture::Sd3);
    let (l_cond, l_pooled, _) = encode(&setup, &only_l, prompt);
    assert_eq!(l_cond.dims(), [1, 77, 4096]);
    assert_eq!(l_pooled.dims(), [1, 32 + 1280]);
    assert_eq!(max_abs(&l_cond.narrow(2, 32, 4096 - 32).unwrap()), 0.0);
    assert_eq!(max_abs(&l_pooled.narrow(1, 32, 1280).unwrap()), 0.0);

    let triple = clip_of(
        &setup
            .run(
                "TripleCLIPLoader",
                vec![
                    ("clip_name1", text(&clip_l)),
                    ("clip_name2", text(&clip_g)),
                    ("clip_name3", text(&t5_file)),
                ],
            )
            .unwrap(),
    );
    assert_eq!(
        kinds(&triple),
        [
            ComponentKind::ClipL,
            ComponentKind::ClipG,
            ComponentKind::T5xxl
        ]
    );
    let (t_cond, t_pooled, _) = encode(&setup, &triple, prompt);
    assert_eq!(t_cond.dims(), [1, 154, 96]);
    assert!(
        max_diff(
            &t_cond.narrow(2, 0, 32).unwrap().narrow(1, 0, 77).unwrap(),
            &l_cond.narrow(2, 0, 32).unwrap()
        ) < 1e-5
    );
    assert!(
        max_diff(
            &t_pooled.narrow(1, 0, 32).unwrap(),
            &l_pooled.narrow(1, 0, 32).unwrap()
        ) < 1e-6
    );

    // CLIPTextEncodeSD3 with every prompt empty and no padding: ComfyUI's zeros.
    let empty = setup
        .run(
            "CLIPTextEncodeSD3",
            vec![
                ("clip", triple.as_ref().clone().into_value()),
                ("clip_l", text("")),
                ("clip_g", text("")),
                ("t5xxl", text("")),
                ("empty_padding", text("none")),
            ],
        )
        .unwrap();
    let (e_cond, e_pooled, _) = first_entry(&empty);
    // T5 still encodes its empty token list (just `</s>`).
    assert_eq!(e_cond.dims(), [1, 1, 96]);
    assert_eq!(e_pooled.dims(), [1, 768 + 1280]);
    assert_eq!(max_abs(&e_pooled), 0.0);
    // empty_prompt padding equals CLIPTextEncode of "".
    let padded = setup
        .run(
            "CLIPTextEncodeSD3",
            vec![
                ("clip", triple.as_ref().clone().into_value()),
                ("clip_l", text("")),
                ("clip_g", text("")),
                ("t5xxl", text("")),
                ("empty_padding", text("empty_prompt")),
            ],
        )
        .unwrap();
    let (p_cond, _, _) = first_entry(&padded);
    let (blank, _, _) = encode(&setup, &triple, "");
    assert!(max_diff(&p_cond, &blank) < 1e-6);
}

#[test]
fn clip_in_the_t5_slot_is_named() {
    let setup = setup();
    let clip_l = setup.text_encoder(Family::ClipL);
    let not_t5 = setup.text_encoder(Family::ClipG);
    let err = setup
        .run(
            "DualCLIPLoader",
            vec![
                ("clip_name1", text(&clip_l)),
                ("clip_name2", text(&not_t5)),
                ("type", text("flux")),
            ],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("clip_name2"), "{err}");
    assert!(err.contains(&not_t5), "{err}");
    assert!(err.contains("CLIP-G"), "{err}");
    assert!(err.contains("T5-XXL"), "{err}");
}

#[test]
fn flux_latent_with_sd1_vae_names_the_channel_mismatch() {
    let setup = setup();
    let vae4 = setup.write("vae", Family::Vae4, Storage::F32, Packaging::Standalone);
    let vae = setup
        .run("VAELoader", vec![("vae_name", text(&vae4))])
        .unwrap();
    let latent = Latent::new(Tensor::zeros((1, 16, 8, 8), DType::F32, &Device::Cpu).unwrap());
    let err = setup
        .run(
            "VAEDecode",
            vec![("samples", latent.into_value()), ("vae", vae[0].clone())],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("latent channel mismatch"), "{err}");
    assert!(err.contains("16 channels"), "{err}");
    assert!(err.contains(&vae4), "{err}");
}

#[test]
fn scaled_fp8_without_scales_names_file_and_tensor() {
    let setup = setup();
    let name = setup.write(
        "text_encoders",
        Family::T5Xxl,
        Storage::ScaledF8E4M3,
        Packaging::Standalone,
    );
    let path = setup.path("text_encoders", &name);
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let dropped = file
        .names()
        .into_iter()
        .filter(|n| n.ends_with("scale_weight"))
        .min()
        .unwrap()
        .to_owned();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| *n != dropped)
        .collect();
    let rewritten = safetensors::serialize(kept, None).unwrap();
    let broken = setup.path("text_encoders", "t5_broken.safetensors");
    std::fs::write(&broken, rewritten).unwrap();
    let clip_l = setup.text_encoder(Family::ClipL);
    let err = setup
        .run(
            "DualCLIPLoader",
            vec![
                ("clip_name1", text(&clip_l)),
                ("clip_name2", text("t5_broken.safetensors")),
                ("type", text("flux")),
            ],
        )
        .unwrap_err()
        .to_string();
    let weight = dropped.strip_suffix("scale_weight").unwrap().to_owned() + "weight";
    assert!(err.contains("t5_broken.safetensors"), "{err}");
    assert!(err.contains(&weight), "{err}");
    assert!(err.contains("scale"), "{err}");
}

#[test]
fn schemas_match_comfyui() {
    let info = builtin_registry().object_info(&|_| vec!["a.safetensors".to_owned()]);
    assert_eq!(
        info["UNETLoader"]["input"]["required"]["weight_dtype"][0],
        json!(["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"])
    );
    assert_eq!(info["UNETLoader"]["display_name"], "Load Diffusion Model");
    assert_eq!(info["UNETLoader"]["python_module"], "nodes");
    assert_eq!(
        info["CLIPTextEncodeFlux"]["python_module"],
        "comfy_extras.nodes_flux"
    );
    assert_eq!(
        info["TripleCLIPLoader"]["python_module"],
        "comfy_extras.nodes_sd3"
    );
    assert_eq!(
        info["CLIPTextEncodeSD3"]["category"],
        "advanced/conditioning"
    );
    assert_eq!(
        info["DualCLIPLoader"]["input"]["required"]["type"][0],
        json!([
            "sdxl",
            "sd3",
            "flux",
            "hunyuan_video",
            "hidream",
            "hunyuan_image"
        ])
    );
    assert_eq!(
        info["CLIPLoader"]["input"]["optional"]["device"],
        json!([["default", "cpu"], {"advanced": true}])
    );
    assert_eq!(
        info["TripleCLIPLoader"]["input_order"]["required"],
        json!(["clip_name1", "clip_name2", "clip_name3"])
    );
    assert_eq!(
        info["CLIPTextEncodeFlux"]["input"]["required"]["guidance"],
        json!(["FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1}])
    );
    assert_eq!(
        info["CLIPTextEncodeSD3"]["input"]["required"]["empty_padding"][0],
        json!(["none", "empty_prompt"])
    );
}

/// A txt2img prompt through the validator and executor: loaders → text encoders →
/// `EmptySD3LatentImage` → one `KSampler` step → `VAEDecode` → `PreviewImage`-free `SaveImage`.
/// `links` are the `[node, output]` links of the MODEL, CLIP and VAE.
fn run_prompt(
    setup: &Setup,
    loaders: serde_json::Value,
    links: [serde_json::Value; 3],
    positive: serde_json::Value,
) -> PathBuf {
    let [model, clip, vae] = links;
    use kiln_graph::{ExecutionRequest, Executor, Validator};
    let mut prompt = json!({
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
        "6": positive,
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": clip}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 1, "cfg": 2.0,
              "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
              "model": model, "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": vae}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "dit", "images": ["8", 0]}}
    });
    for (id, node) in loaders.as_object().unwrap() {
        prompt[id] = node.clone();
    }
    let services = Arc::new(cpu_services(setup.base.path()));
    let registry = Arc::new(builtin_registry());
    let resolve = |key: &str| services.combo_options(key);
    let validated = Validator::new(&registry, &resolve)
        .validate(&prompt)
        .unwrap();
    let mut executor = Executor::new(registry.clone(), services.clone());
    let mut events: Vec<ExecutionEvent> = Vec::new();
    let outcome = executor
        .execute(&ExecutionRequest::new("p", validated), &mut events)
        .unwrap();
    let file = outcome.outputs["9"]["images"][0]["filename"]
        .as_str()
        .unwrap()
        .to_owned();
    services.output_directory().join(file)
}

#[test]
fn flux_and_sd3_sample_end_to_end() {
    let setup = setup();
    let unet = setup.write(
        "diffusion_models",
        Family::FluxDev,
        Storage::F16,
        Packaging::Standalone,
    );
    let clip_l = setup.text_encoder(Family::ClipL);
    let t5 = setup.text_encoder(Family::T5Xxl);
    let ae = setup.write("vae", Family::Vae16, Storage::F32, Packaging::Standalone);
    let flux = run_prompt(
        &setup,
        json!({
            "1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "fp8_e4m3fn"}},
            "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": clip_l, "clip_name2": t5, "type": "flux"}},
            "4": {"class_type": "VAELoader", "inputs": {"vae_name": ae}}
        }),
        [json!(["1", 0]), json!(["2", 0]), json!(["4", 0])],
        json!({"class_type": "CLIPTextEncodeFlux", "inputs": {
            "clip": ["2", 0], "clip_l": "a cat", "t5xxl": "a cat on a mat", "guidance": 3.5}}),
    );
    assert!(flux.is_file());

    let sd3 = setup.write(
        "checkpoints",
        Family::Sd3Medium,
        Storage::F16,
        Packaging::SingleFile,
    );
    let image = run_prompt(
        &setup,
        json!({
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": sd3}}
        }),
        [json!(["1", 0]), json!(["1", 1]), json!(["1", 2])],
        json!({"class_type": "CLIPTextEncodeSD3", "inputs": {
            "clip": ["1", 1], "clip_l": "a dog", "clip_g": "a dog", "t5xxl": "a dog in snow",
            "empty_padding": "none"}}),
    );
    assert!(image.is_file());
}

#[test]
fn missing_t5_tokenizer_says_where_to_put_it() {
    let setup = setup();
    let folder = setup.path("text_encoders", "t5_tokenizer");
    std::fs::remove_dir_all(&folder).unwrap();
    let clip_l = setup.text_encoder(Family::ClipL);
    let t5 = setup.text_encoder(Family::T5Xxl);
    let clip = clip_of(
        &setup
            .run(
                "DualCLIPLoader",
                vec![
                    ("clip_name1", text(&clip_l)),
                    ("clip_name2", text(&t5)),
                    ("type", text("flux")),
                ],
            )
            .unwrap(),
    );
    let result = setup.run(
        "CLIPTextEncode",
        vec![
            ("text", text("a cat")),
            ("clip", clip.as_ref().clone().into_value()),
        ],
    );
    let home_cache = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/huggingface/hub"))
        .filter(|hub| hub.join("models--black-forest-labs--FLUX.1-dev").exists());
    if std::env::var_os("HF_HUB_CACHE").is_some()
        || std::env::var_os("HF_HOME").is_some()
        || home_cache.is_some()
    {
        return; // a Hugging Face cache may legitimately hold the tokenizer
    }
    let err = result.unwrap_err().to_string();
    assert!(err.contains(&t5), "{err}");
    assert!(
        err.contains(&folder.join("tokenizer.json").display().to_string()),
        "{err}"
    );
}

/// A non-empty 4-channel latent (an all-zero one is widened to 16 channels, as ComfyUI's
/// `fix_empty_latent_channels` does) sampled with Flux fails naming both channel counts.
#[test]
fn flux_model_with_a_four_channel_latent_names_the_mismatch() {
    let setup = setup();
    let unet = setup.write(
        "diffusion_models",
        Family::FluxSchnell,
        Storage::F32,
        Packaging::Standalone,
    );
    let model = setup
        .run(
            "UNETLoader",
            vec![
                ("unet_name", text(&unet)),
                ("weight_dtype", text("default")),
            ],
        )
        .unwrap();
    let cond = Conditioning::single(
        Tensor::zeros((1, 256, 96), DType::F32, &Device::Cpu).unwrap(),
        kiln_nodes::CondMeta {
            pooled: Some(Tensor::zeros((1, 32), DType::F32, &Device::Cpu).unwrap()),
            ..kiln_nodes::CondMeta::default()
        },
    );
    let latent = Latent::new(Tensor::ones((1, 4, 4, 4), DType::F32, &Device::Cpu).unwrap());
    let err = setup
        .run(
            "KSampler",
            vec![
                ("model", model[0].clone()),
                ("seed", Value::Int(0)),
                ("steps", Value::Int(1)),
                ("cfg", Value::Float(1.0)),
                ("sampler_name", text("euler")),
                ("scheduler", text("simple")),
                ("positive", cond.clone().into_value()),
                ("negative", cond.into_value()),
                ("latent_image", latent.into_value()),
                ("denoise", Value::Float(1.0)),
            ],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("has 4 channels"), "{err}");
    assert!(err.contains("reads 16"), "{err}");
}

#[test]
fn clip_loader_types_pick_comfyui_families() {
    let setup = setup();
    let clip_l = setup.text_encoder(Family::ClipL);
    let clip_g = setup.text_encoder(Family::ClipG);
    let t5 = setup.text_encoder(Family::T5Xxl);
    let single = |name: &str, kind: &str| {
        setup.run(
            "CLIPLoader",
            vec![("clip_name", text(name)), ("type", text(kind))],
        )
    };
    let sd1 = clip_of(&single(&clip_l, "stable_diffusion").unwrap());
    assert_eq!(sd1.architecture, Architecture::Sd1);
    let refiner = clip_of(&single(&clip_g, "stable_diffusion").unwrap());
    assert_eq!(refiner.architecture, Architecture::SdxlRefiner);
    let t5_only = clip_of(&single(&t5, "sd3").unwrap());
    assert_eq!(t5_only.architecture, Architecture::Sd3);
    assert_eq!(kinds(&t5_only), [ComponentKind::T5xxl]);
    let (cond, pooled, _) = encode(&setup, &t5_only, "a cat");
    assert_eq!(cond.dims(), [1, 77, 96]);
    assert_eq!(pooled.dims(), [1, 768 + 1280]);
    assert_eq!(max_abs(&pooled), 0.0);
    let err = single(&t5, "stable_diffusion").unwrap_err().to_string();
    assert!(err.contains("T5-XXL"), "{err}");
    let err = single(&clip_l, "wan").unwrap_err().to_string();
    assert!(err.contains("'wan' is not supported"), "{err}");

    let sdxl = clip_of(
        &setup
            .run(
                "DualCLIPLoader",
                vec![
                    ("clip_name1", text(&clip_g)),
                    ("clip_name2", text(&clip_l)),
                    ("type", text("sdxl")),
                ],
            )
            .unwrap(),
    );
    assert_eq!(sdxl.architecture, Architecture::Sdxl);
    assert_eq!(kinds(&sdxl), [ComponentKind::ClipL, ComponentKind::ClipG]);
    let (cond, _, _) = encode(&setup, &sdxl, "a cat");
    assert_eq!(cond.dims(), [1, 77, 32 + 64]);
    let err = setup
        .run(
            "DualCLIPLoader",
            vec![
                ("clip_name1", text(&clip_l)),
                ("clip_name2", text(&clip_l)),
                ("type", text("sd3")),
            ],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("both hold a CLIP-L"), "{err}");
}
