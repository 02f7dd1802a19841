//! Same image as ComfyUI: UI-format workflows saved as ComfyUI's frontend saves them
//! (`tests/workflows/*.json`) are converted, validated and executed in-process on the tiny
//! checkpoints ComfyUI ran, and compared with ComfyUI's own results (`kiln-models`' fixtures):
//! every sampler × scheduler of the SD1.5 txt2img graph, SD2-v, SDXL and the refiner, img2img at
//! denoise 0.6, KSamplerAdvanced windows, cfg 1, and the LoRA graph. Images must reach 40 dB
//! PSNR and final latents `max|Δ| ≤ 1e-3·max|ref|`; every run's figures are printed
//! (`--nocapture`) with the minimum PSNR of each group.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

mod parity_support;

use std::collections::{BTreeSet, HashMap};

use candle_core::Tensor;
use kiln_graph::{NodeInputs, TypedObject, Value};
use kiln_models::{Attention, CfgDenoiser, GuidedCond, Unet, Weights};
use kiln_nodes::{to_u8, Conditioning, Image, Latent, Model, Vae};
use kiln_sampling::samplers::Denoiser;
use parity_support::{
    load_workflow, node_id_of, relative_max_diff, report, set_widget, set_widget_of, widget_names,
    workflows_dir, Comparison, Engine, Fixture, LORAS,
};
use serde_json::{json, Value as Json};

/// UI ids shared by every workflow file (ComfyUI's default graph numbering).
const SAMPLER_NODE: u64 = 3;
const CHECKPOINT_NODE: u64 = 4;
const EMPTY_LATENT_NODE: u64 = 5;
const POSITIVE_NODE: u64 = 6;
const NEGATIVE_NODE: u64 = 7;
const VAE_ENCODE_NODE: u64 = 11;
const LORA_NODE: u64 = 10;

/// The widget value of node `id` named `widget`.
fn widget(workflow: &Json, id: u64, widget: &str) -> Json {
    let node = workflow["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["id"] == id)
        .unwrap();
    let class_type = node["type"].as_str().unwrap();
    let index = widget_names(class_type)
        .iter()
        .position(|name| *name == widget)
        .unwrap();
    node["widgets_values"][index].clone()
}

/// Numbers compare as f64 (the frontend saves `1`, a fixture may say `1.0`).
fn same_value(a: &Json, b: &Json) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Checks that a saved workflow already carries the fixture's prompts, checkpoint and latent
/// size (`EmptyLatentImage(64, 64, 1)`, where the graph has one), so the files reproduce
/// ComfyUI's run as saved.
fn assert_fixture_settings(name: &str, workflow: &Json, checkpoint: &Json, settings: &Json) {
    let expect = |id: u64, key: &str, value: &Json| {
        let saved = widget(workflow, id, key);
        assert!(
            same_value(&saved, value),
            "{name}: node {id} widget {key} is {saved}, the fixture ran {value}"
        );
    };
    expect(CHECKPOINT_NODE, "ckpt_name", &checkpoint["file"]);
    expect(POSITIVE_NODE, "text", &settings["positive"]);
    expect(NEGATIVE_NODE, "text", &settings["negative"]);
    let has_empty_latent = workflow["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|node| node["id"] == EMPTY_LATENT_NODE);
    if has_empty_latent {
        for key in ["width", "height"] {
            expect(EMPTY_LATENT_NODE, key, &json!(64));
        }
        expect(EMPTY_LATENT_NODE, "batch_size", &json!(1));
    }
}

/// The workflow file that builds a `ksampler_cases` case, with the case's varying settings
/// (sampler, scheduler, cfg, KSamplerAdvanced switches) set as a user would, after checking
/// that the fixed ones (seed, steps, denoise, window) are already saved in it.
fn case_workflow(case: &Json) -> (String, Json) {
    let family = case["family"].as_str().unwrap();
    let encoded = case["latent_source"] == "encoded";
    let advanced = case["advanced"] == true;
    let file = match (family, advanced, encoded) {
        ("sd1", false, false) => "sd15_txt2img",
        ("sd1", false, true) => "sd15_img2img",
        ("sd1", true, false) => "sd15_ksampler_advanced",
        ("sd1", true, true) => "sd15_ksampler_advanced_img2img",
        ("sd2v", false, false) => "sd2_v_txt2img",
        ("sdxl", false, false) => "sdxl_txt2img",
        ("sdxl", false, true) => "sdxl_img2img",
        ("sdxl_refiner", false, false) => "sdxl_refiner_txt2img",
        other => panic!("no workflow for case {other:?}"),
    };
    let mut workflow = load_workflow(file);
    let class = if advanced {
        "KSamplerAdvanced"
    } else {
        "KSampler"
    };
    assert_eq!(node_id_of(&workflow, class), SAMPLER_NODE);
    let saved = |key: &str| widget(&workflow, SAMPLER_NODE, key);
    let seed_widget = if advanced { "noise_seed" } else { "seed" };
    let mut fixed = vec![
        (seed_widget, case["seed"].clone()),
        ("steps", case["steps"].clone()),
    ];
    if advanced {
        fixed.push(("start_at_step", case["start_at_step"].clone()));
        fixed.push(("end_at_step", case["end_at_step"].clone()));
    } else {
        fixed.push((
            "denoise",
            case.get("denoise").cloned().unwrap_or(json!(1.0)),
        ));
    }
    for (key, value) in fixed {
        assert!(
            same_value(&saved(key), &value),
            "{file}: {key} saved as {}, case {} ran {value}",
            saved(key),
            case["name"]
        );
    }
    set_widget(
        &mut workflow,
        class,
        "sampler_name",
        case["sampler"].clone(),
    );
    set_widget(&mut workflow, class, "scheduler", case["scheduler"].clone());
    set_widget(&mut workflow, class, "cfg", case["cfg"].clone());
    if advanced {
        set_widget(&mut workflow, class, "add_noise", case["add_noise"].clone());
        set_widget(
            &mut workflow,
            class,
            "return_with_leftover_noise",
            case["return_with_leftover_noise"].clone(),
        );
    }
    (file.to_owned(), workflow)
}

/// Runs every `ksampler_cases` case `select` accepts through its workflow and reports.
///
/// Cases that start from an encoded image load it as the 8-bit PNG a user has, while ComfyUI
/// encoded the float image: for them the graph's sampler is also replayed on ComfyUI's own
/// encoded latent (same model, conditionings and widgets), with the same bounds, and Kiln's
/// VAEEncode of the float image must match ComfyUI's. With `add_noise: disable` nothing
/// masks the PNG's ±0.5-level rounding, which the tiny random VAE and UNet amplify into a
/// different image; those graph runs are printed, not asserted (the replay is).
fn run_cases(group: &str, select: impl Fn(&Json) -> bool) {
    let fixture = Fixture::load("ksampler_cases");
    let settings = json!({"positive": "a photo of a cat", "negative": ""});
    let float_image = Image::new(fixture.tensor("input.image").clone());
    let mut engine = Engine::new();
    let mut comparisons = Vec::new();
    let mut notes = Vec::new();
    let mut float_latents: HashMap<String, Tensor> = HashMap::new();
    for case in fixture.meta["cases"].as_array().unwrap() {
        if !select(case) {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let family = case["family"].as_str().unwrap();
        let (file, workflow) = case_workflow(case);
        assert_fixture_settings(
            &file,
            &workflow,
            &fixture.meta["models"][family]["checkpoint"],
            &settings,
        );
        let encoded = case["latent_source"] == "encoded";
        let mut probe = vec![("samples", SAMPLER_NODE, 0)];
        if encoded {
            probe.extend([
                ("encoded", VAE_ENCODE_NODE, 0),
                ("model", CHECKPOINT_NODE, 0),
                ("vae", CHECKPOINT_NODE, 2),
                ("positive", POSITIVE_NODE, 0),
                ("negative", NEGATIVE_NODE, 0),
            ]);
        }
        let run = engine.run(&workflow, &probe);
        let mut comparison = Comparison::of(&format!("{name} ({file})"), &run, &fixture, name);
        if !encoded {
            comparisons.push(comparison);
            continue;
        }

        let reference_latent = fixture.tensor(&format!("input.encoded_latent.{family}"));
        let float_latent = float_latents.entry(family.to_owned()).or_insert_with(|| {
            let vae = run.probed.vae.clone().unwrap();
            let float_encode = NodeInputs::new()
                .with("pixels", float_image.clone().into_value())
                .with("vae", Value::Object(TypedObject::from_arc(Vae::TYPE, vae)));
            engine.run_node("VAEEncode", &float_encode).values[0]
                .downcast::<Latent>("LATENT")
                .unwrap()
                .samples
                .clone()
        });
        let float_diff = relative_max_diff(float_latent, reference_latent);
        let png_latent = &run.probed.encoded.as_ref().unwrap().samples;
        notes.push(format!(
            "{name}: VAEEncode vs ComfyUI's encoded latent, max|Δ|/max|ref|: float image \
             {float_diff:.2e}, 8-bit PNG through LoadImage {:.2e}",
            relative_max_diff(png_latent, reference_latent)
        ));
        assert!(
            float_diff <= 1e-4,
            "{name}: VAEEncode of the float image differs from ComfyUI's: {float_diff:.2e}"
        );

        let class = if case["advanced"] == true {
            "KSamplerAdvanced"
        } else {
            "KSampler"
        };
        let (image, latent) = replay_on_latent(&engine, &run, class, reference_latent);
        comparisons.push(Comparison::with(
            &format!("{name} [{class} replayed on ComfyUI's latent]"),
            &image,
            Some(&latent),
            &fixture,
            name,
        ));
        if case["add_noise"] == "disable" {
            comparison.not_asserted = Some("noise-free start from the 8-bit PNG");
        }
        comparisons.push(comparison);
    }
    for note in &notes {
        println!("{note}");
    }
    assert!(!comparisons.is_empty(), "{group}: no case selected");
    report(group, &comparisons);
}

/// Runs the workflow's sampler node (its literal widgets from the converted prompt, its model
/// and conditionings from the probe) directly on `latent`, then VAEDecode with the probed VAE:
/// the same graph fed the latent ComfyUI encoded from the float image, which no 8-bit PNG
/// can reproduce.
fn replay_on_latent(
    engine: &Engine,
    run: &parity_support::RunResult,
    class: &str,
    latent: &Tensor,
) -> (Vec<u8>, Tensor) {
    let probed = &run.probed;
    let shared = |ty: &str, v: Option<Value>| v.unwrap_or_else(|| panic!("no {ty} probed"));
    let mut inputs = NodeInputs::new()
        .with(
            "model",
            shared(
                Model::TYPE,
                probed
                    .model
                    .clone()
                    .map(|m| Value::Object(TypedObject::from_arc(Model::TYPE, m))),
            ),
        )
        .with(
            "positive",
            shared(
                Conditioning::TYPE,
                probed
                    .positive
                    .clone()
                    .map(|c| Value::Object(TypedObject::from_arc(Conditioning::TYPE, c))),
            ),
        )
        .with(
            "negative",
            shared(
                Conditioning::TYPE,
                probed
                    .negative
                    .clone()
                    .map(|c| Value::Object(TypedObject::from_arc(Conditioning::TYPE, c))),
            ),
        )
        .with("latent_image", Latent::new(latent.clone()).into_value());
    let sampler = &run.prompt[SAMPLER_NODE.to_string()];
    assert_eq!(sampler["class_type"], class);
    for (key, value) in sampler["inputs"].as_object().unwrap() {
        let literal = match value {
            Json::String(text) => Value::String(text.clone()),
            Json::Number(number) if key == "cfg" || key == "denoise" => {
                Value::Float(number.as_f64().unwrap())
            }
            Json::Number(number) => Value::Int(i128::from(number.as_i64().unwrap())),
            _ => continue,
        };
        inputs = inputs.with(key.clone(), literal);
    }
    let sampled = engine.run_node(class, &inputs).values[0]
        .downcast::<Latent>("LATENT")
        .unwrap();
    let decode = NodeInputs::new()
        .with("samples", Latent::new(sampled.samples.clone()).into_value())
        .with(
            "vae",
            Value::Object(TypedObject::from_arc(
                Vae::TYPE,
                probed.vae.clone().unwrap(),
            )),
        );
    let image = engine.run_node("VAEDecode", &decode).values[0]
        .downcast::<Image>("IMAGE")
        .unwrap();
    let bytes = image
        .pixels
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(to_u8)
        .collect();
    (bytes, sampled.samples.clone())
}

#[test]
fn sd15_txt2img_every_sampler_and_scheduler_matches_comfyui() {
    let fixture = Fixture::load("ksampler_sd1");
    let settings = &fixture.meta["settings"];
    let workflow = load_workflow("sd15_txt2img");
    assert_fixture_settings(
        "sd15_txt2img",
        &workflow,
        &fixture.meta["model"]["checkpoint"],
        settings,
    );
    for (key, value) in [
        ("seed", &settings["seed"]),
        ("steps", &settings["steps"]),
        ("cfg", &settings["cfg"]),
        ("denoise", &settings["denoise"]),
    ] {
        assert!(
            same_value(&widget(&workflow, SAMPLER_NODE, key), value),
            "{key}"
        );
    }
    let samplers = settings["samplers"].as_array().unwrap();
    let schedulers = settings["schedulers"].as_array().unwrap();
    assert_eq!((samplers.len(), schedulers.len()), (14, 7));

    // Two engines on two threads: the tiny models leave candle's own threads mostly idle.
    let halves: Vec<&[Json]> = samplers.chunks(samplers.len().div_ceil(2)).collect();
    let comparisons: Vec<Comparison> = std::thread::scope(|scope| {
        let workers: Vec<_> = halves
            .into_iter()
            .map(|share| {
                let (workflow, fixture) = (&workflow, &fixture);
                scope.spawn(move || {
                    let mut engine = Engine::new();
                    let mut comparisons = Vec::new();
                    for sampler in share {
                        for scheduler in schedulers {
                            let mut run_workflow = workflow.clone();
                            set_widget(
                                &mut run_workflow,
                                "KSampler",
                                "sampler_name",
                                sampler.clone(),
                            );
                            set_widget(
                                &mut run_workflow,
                                "KSampler",
                                "scheduler",
                                scheduler.clone(),
                            );
                            let run = engine.run(&run_workflow, &[("samples", SAMPLER_NODE, 0)]);
                            let key = format!(
                                "{}.{}",
                                sampler.as_str().unwrap(),
                                scheduler.as_str().unwrap()
                            );
                            comparisons.push(Comparison::of(&key, &run, fixture, &key));
                        }
                    }
                    comparisons
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    assert_eq!(comparisons.len(), 98);
    report(
        "SD1.5 txt2img (sd15_txt2img.json), 14 samplers × 7 schedulers",
        &comparisons,
    );
}

#[test]
fn sd2_v_sdxl_and_refiner_txt2img_match_comfyui() {
    run_cases("SD2-v / SDXL / SDXL refiner txt2img", |case| {
        case["family"] != "sd1" && case["latent_source"].is_null() && case["cfg"] != 1.0
    });
}

#[test]
fn img2img_at_denoise_0_6_matches_comfyui() {
    run_cases(
        "img2img (LoadImage → VAEEncode → KSampler denoise 0.6)",
        |case| case["name"].as_str().unwrap().contains(".img2img_0.6."),
    );
}

#[test]
fn ksampler_advanced_windows_match_comfyui() {
    run_cases("KSamplerAdvanced steps 1..3 of 4", |case| {
        case["advanced"] == true
    });
}

#[test]
fn cfg_one_matches_comfyui() {
    run_cases("cfg 1 (no unconditional pass)", |case| {
        case["name"].as_str().unwrap().contains(".cfg1.")
    });
}

/// Forward-pass checks of one LoRA run: what, `max|Δ|/max|ref|`, the bound.
struct ForwardChecks {
    lora: &'static str,
    rows: Vec<(String, f64, f64)>,
}

impl ForwardChecks {
    /// `max|got − reference| ≤ 1e-4 · max(|reference|, 1)`: the README's forward tolerance.
    fn check(&mut self, what: String, got: &Tensor, reference: &Tensor) {
        let difference = relative_max_diff(got, reference);
        let scale = f64::from(
            reference
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        );
        self.rows
            .push((what, difference, 1e-4 * scale.max(1.0) / scale));
    }

    /// Prints every row, then fails naming each one out of bounds.
    fn report(self) {
        let mut failed = Vec::new();
        println!("{}:", self.lora);
        for (what, difference, bound) in &self.rows {
            let verdict = if difference <= bound {
                ""
            } else {
                failed.push(what.clone());
                "  <-- MISMATCH"
            };
            println!("  {what:<90} max|Δ|/max|ref| {difference:.2e} (bound {bound:.1e}){verdict}");
        }
        assert!(
            failed.is_empty(),
            "{}: {} of {} checks differ from ComfyUI: {failed:#?}",
            self.lora,
            failed.len(),
            self.rows.len()
        );
    }
}

/// `sd15_lora.json` with `lora`: LoraLoader(strength 0.8 / 0.6) between the checkpoint and the
/// rest. ComfyUI recorded the patched weights, the patched text encoder's output for two
/// prompts and the patched UNet's output on the UNet fixture's inputs (no image); each is
/// compared with what the graph's LoraLoader produced.
fn check_lora_workflow(lora: &'static str) {
    let results = Fixture::load("lora_results_sd1");
    let texts = Fixture::load("text_encoder_sd1").meta["prompts"].clone();
    let unet_fixture = Fixture::load("unet_sd1");
    let mut workflow = load_workflow("sd15_lora");
    assert_fixture_settings(
        "sd15_lora",
        &workflow,
        &results.meta["model"]["checkpoint"],
        &json!({"positive": texts["plain"], "negative": texts["empty"]}),
    );
    for (key, value) in [
        ("strength_model", &results.meta["strength_model"]),
        ("strength_clip", &results.meta["strength_clip"]),
    ] {
        assert!(
            same_value(&widget(&workflow, LORA_NODE, key), value),
            "{key}"
        );
    }
    set_widget(
        &mut workflow,
        "LoraLoader",
        "lora_name",
        json!(format!("{lora}.safetensors")),
    );
    let mut engine = Engine::new();
    let probe = [
        ("model", LORA_NODE, 0),
        ("clip", LORA_NODE, 1),
        ("positive", POSITIVE_NODE, 0),
    ];
    let run = engine.run(&workflow, &probe);
    let model = run.probed.model.clone().unwrap();
    let clip = run.probed.clip.clone().unwrap();
    let mut checks = ForwardChecks {
        lora,
        rows: Vec::new(),
    };

    let prefix = format!("{lora}.weight.");
    let mut patched: Vec<&String> = results
        .tensors
        .keys()
        .filter(|name| name.starts_with(&prefix))
        .collect();
    patched.sort();
    assert!(!patched.is_empty());
    for name in patched {
        let key = &name[prefix.len()..];
        let got = if let Some(internal) = key.strip_prefix("diffusion_model.") {
            model.weights.get(internal).unwrap()
        } else if let Some(internal) = key.strip_prefix("clip_l.transformer.") {
            clip.encoders[0].weights().unwrap().get(internal).unwrap()
        } else {
            panic!("unexpected patched key {key}")
        };
        checks.check(format!("patched weight {key}"), &got, results.tensor(name));
    }

    for prompt in ["plain", "weights"] {
        let conditioning = if prompt == "plain" {
            run.probed.positive.clone().unwrap()
        } else {
            let mut weighted = workflow.clone();
            set_widget_of(&mut weighted, POSITIVE_NODE, "text", texts[prompt].clone());
            let rerun = engine.run(&weighted, &[("positive", POSITIVE_NODE, 0)]);
            rerun.probed.positive.unwrap()
        };
        let entry = &conditioning.entries[0];
        checks.check(
            format!("CLIPTextEncode({prompt:?}) cond"),
            &entry.cond,
            results.tensor(&format!("{lora}.{prompt}.cond")),
        );
        checks.check(
            format!("CLIPTextEncode({prompt:?}) pooled"),
            entry.meta.pooled.as_ref().unwrap(),
            results.tensor(&format!("{lora}.{prompt}.pooled")),
        );
    }

    let unet = Unet::from_weights(
        &Weights::new(model.weights.clone()),
        Attention::from_plan(&model.plan),
    )
    .unwrap();
    let context = unet_fixture.tensor("context");
    for i in 0..2 {
        let output = unet
            .forward(
                unet_fixture.tensor(&format!("x_in.{i}")),
                unet_fixture.tensor(&format!("timestep.{i}")),
                context,
                None,
            )
            .unwrap();
        checks.check(
            format!("patched UNet model_output.{i}"),
            &output,
            results.tensor(&format!("{lora}.model_output.{i}")),
        );
        let sigma = unet_fixture
            .tensor(&format!("sigma.{i}"))
            .to_vec1::<f32>()
            .unwrap()[0];
        let mut denoiser = CfgDenoiser::new(
            &unet,
            model.sampling.clone(),
            vec![GuidedCond::new(context.clone(), None)],
            vec![],
            1.0,
        )
        .unwrap();
        let denoised = denoiser
            .denoise(unet_fixture.tensor("x"), f64::from(sigma))
            .unwrap();
        checks.check(
            format!("patched UNet denoised.{i}"),
            &denoised,
            results.tensor(&format!("{lora}.denoised.{i}")),
        );
    }

    // ComfyUI recorded no LoRA image: the graph's image must at least differ from the same
    // graph's without the LoRA (the LoraLoader outputs really feed the sampler).
    let plain = Fixture::load("ksampler_sd1").image("image.euler.normal");
    let psnr = parity_support::psnr(&run.image, &plain);
    println!("{lora}: image vs the same graph without the LoRA: PSNR {psnr:.2} dB");
    checks.report();
    assert!(psnr.is_finite(), "{lora} left the image unchanged");
}

#[test]
fn lora_workflow_with_kohya_lora_matches_comfyui() {
    check_lora_workflow(LORAS[0]);
}

#[test]
fn lora_workflow_with_diffusers_lora_matches_comfyui() {
    check_lora_workflow(LORAS[1]);
}

/// Every workflow file is a consistent UI graph as the frontend saves it: links agree with the
/// nodes' `inputs[].link` / `outputs[].links`, widget inputs carry `widget` markers, and
/// `widgets_values` has one value per widget (plus `control_after_generate`).
#[test]
fn workflow_files_are_consistent_ui_graphs() {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(workflows_dir()).unwrap() {
        let path = entry.unwrap().path();
        // `flow/` holds API-format prompts (flow_workflow_parity.rs).
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let workflow = load_workflow(&name);
        assert_eq!(workflow["version"], json!(0.4), "{name}");
        for key in ["groups", "config", "extra", "links", "nodes"] {
            assert!(!workflow[key].is_null(), "{name}: no {key}");
        }
        let nodes = workflow["nodes"].as_array().unwrap();
        let find = |id: &Json| nodes.iter().find(|n| &n["id"] == id).unwrap();
        let links = workflow["links"].as_array().unwrap();
        for link in links {
            let [id, from, from_slot, to, to_slot, ty] = link.as_array().unwrap().as_slice() else {
                panic!("{name}: link {link} is not [id, from, slot, to, slot, type]");
            };
            let output = &find(from)["outputs"][from_slot.as_u64().unwrap() as usize];
            let input = &find(to)["inputs"][to_slot.as_u64().unwrap() as usize];
            assert!(
                output["links"].as_array().unwrap().contains(id),
                "{name}: link {id}"
            );
            assert_eq!(&input["link"], id, "{name}: link {id}");
            assert_eq!(&output["type"], ty, "{name}: link {id}");
            assert_eq!(&input["type"], ty, "{name}: link {id}");
        }
        let max_link = links.iter().map(|l| l[0].as_u64().unwrap()).max().unwrap();
        assert_eq!(workflow["last_link_id"], json!(max_link), "{name}");
        let max_node = nodes
            .iter()
            .map(|n| n["id"].as_u64().unwrap())
            .max()
            .unwrap();
        assert_eq!(workflow["last_node_id"], json!(max_node), "{name}");
        let mut orders = BTreeSet::new();
        for node in nodes {
            let class_type = node["type"].as_str().unwrap();
            for key in ["pos", "size", "flags", "order", "mode", "inputs", "outputs"] {
                assert!(
                    !node[key].is_null(),
                    "{name}: node {} has no {key}",
                    node["id"]
                );
            }
            assert!(
                orders.insert(node["order"].as_u64().unwrap()),
                "{name}: order"
            );
            assert_eq!(node["mode"], 0, "{name}");
            assert_eq!(
                node["properties"]["Node name for S&R"], class_type,
                "{name}"
            );
            let widgets: Vec<&str> = node["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|input| !input["widget"].is_null())
                .map(|input| {
                    assert_eq!(input["widget"]["name"], input["name"], "{name}");
                    input["name"].as_str().unwrap()
                })
                .collect();
            let expected: Vec<&str> = widget_names(class_type)
                .iter()
                .copied()
                .filter(|w| *w != "control_after_generate")
                .collect();
            assert_eq!(widgets, expected, "{name}: {class_type} widget inputs");
            assert_eq!(
                node["widgets_values"].as_array().unwrap().len(),
                widget_names(class_type).len(),
                "{name}: {class_type} widgets_values"
            );
        }
        names.insert(name);
    }
    let expected: BTreeSet<String> = [
        "sd15_txt2img",
        "sd15_img2img",
        "sd15_lora",
        "sd15_ksampler_advanced",
        "sd15_ksampler_advanced_img2img",
        "sd2_v_txt2img",
        "sdxl_txt2img",
        "sdxl_img2img",
        "sdxl_refiner_txt2img",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(names, expected);
}

/// The default graph converts to the API prompt ComfyUI's frontend queues for it.
#[test]
fn default_graph_converts_to_the_frontends_api_prompt() {
    let registry = kiln_nodes::builtin_registry();
    let prompt = kiln_graph::workflow_to_prompt(&load_workflow("sd15_txt2img"), &registry).unwrap();
    let expected = json!({
        "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 4, "cfg": 7.5,
              "sampler_name": "euler", "scheduler": "normal", "denoise": 1,
              "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
              "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple",
              "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp32.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
    });
    let got_ids: BTreeSet<&String> = prompt.as_object().unwrap().keys().collect();
    let want_ids: BTreeSet<&String> = expected.as_object().unwrap().keys().collect();
    assert_eq!(got_ids, want_ids);
    for (id, node) in expected.as_object().unwrap() {
        assert_eq!(prompt[id]["class_type"], node["class_type"], "node {id}");
        let got = prompt[id]["inputs"].as_object().unwrap();
        let want = node["inputs"].as_object().unwrap();
        assert_eq!(
            got.keys().collect::<BTreeSet<_>>(),
            want.keys().collect::<BTreeSet<_>>(),
            "node {id}"
        );
        for (key, value) in want {
            assert!(
                same_value(&got[key], value),
                "node {id} {key}: {}",
                got[key]
            );
        }
    }
}
