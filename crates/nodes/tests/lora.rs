//! LoraLoader on a tiny SD1 checkpoint: kohya keys in diffusers naming (UNet) and transformers
//! naming (text encoder) merge as `W + strength · (up @ down) · alpha / rank`; weights the LoRA
//! does not name stay shared; a LoRA for another architecture is a clear error.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod node_support;

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_graph::{ExecutionContext, ExecutionEvent, InterruptFlag, NodeInputs, Value};
use kiln_nodes::{builtin_registry, load_checkpoint, Clip, Model};
use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use node_support::{cpu_services, max_abs};

fn write_lora(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.to_string(), shape.clone(), raw)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(name, shape, raw)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), raw)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    let data = safetensors::serialize(views, None).unwrap();
    std::fs::write(path, data).unwrap();
}

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| ((i % 7) as f32 - 3.0) * scale).collect()
}

fn weight(store: &kiln_runtime::WeightStore, name: &str) -> Tensor {
    store.get(name).unwrap().to_dtype(DType::F32).unwrap()
}

#[test]
fn kohya_lora_merges_into_unet_and_clip() {
    let base = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F32, Packaging::SingleFile);
    let ckpt = write(&spec, &base.path().join("models").join("checkpoints")).unwrap();
    let loras = base.path().join("models").join("loras");
    std::fs::create_dir_all(&loras).unwrap();
    let services = cpu_services(base.path());
    let loaded = load_checkpoint(&services, &ckpt).unwrap();
    let model = loaded.model.clone().unwrap();
    let clip = loaded.clip.clone().unwrap();

    let unet_name = "input_blocks.1.1.proj_in.weight";
    let unet_shape = model
        .weights
        .held(unet_name)
        .unwrap()
        .shape()
        .dims()
        .to_vec();
    let channels = unet_shape[0];
    let clip_name = "text_model.encoder.layers.0.self_attn.q_proj.weight";
    let width = clip.encoders[0]
        .weights()
        .unwrap()
        .held(clip_name)
        .unwrap()
        .shape()
        .dims()[0];
    let rank = 2;
    let mut conv_down_shape = vec![rank, channels];
    let mut conv_up_shape = vec![channels, rank];
    if unet_shape.len() == 4 {
        conv_down_shape.extend([1, 1]);
        conv_up_shape.extend([1, 1]);
    }
    let lora_path = loras.join("style.safetensors");
    let unet_down = ramp(rank * channels, 0.01);
    let unet_up = ramp(channels * rank, 0.02);
    let te_down = ramp(rank * width, 0.03);
    let te_up = ramp(width * rank, 0.01);
    write_lora(
        &lora_path,
        &[
            (
                "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
                conv_down_shape,
                unet_down.clone(),
            ),
            (
                "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight",
                conv_up_shape,
                unet_up.clone(),
            ),
            (
                "lora_unet_down_blocks_0_attentions_0_proj_in.alpha",
                vec![],
                vec![1.0],
            ),
            (
                "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
                vec![rank, width],
                te_down.clone(),
            ),
            (
                "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight",
                vec![width, rank],
                te_up.clone(),
            ),
        ],
    );

    let registry = builtin_registry();
    let node = registry.get("LoraLoader").unwrap().node().clone();
    let inputs = NodeInputs::new()
        .with("model", model.clone().into_value())
        .with("clip", clip.clone().into_value())
        .with("lora_name", Value::String("style.safetensors".into()))
        .with("strength_model", Value::Float(0.5))
        .with("strength_clip", Value::Float(2.0));
    let interrupt = InterruptFlag::new();
    let mut events: Vec<ExecutionEvent> = Vec::new();
    let mut ctx = ExecutionContext::standalone("1", &services, &interrupt, &mut events);
    let out = node.execute(&inputs, &mut ctx).unwrap();
    let new_model: Arc<Model> = out.values[0].downcast("MODEL").unwrap();
    let new_clip: Arc<Clip> = out.values[1].downcast("CLIP").unwrap();

    let cpu = Device::Cpu;
    // UNet: alpha 1 / rank 2 = 0.5, strength 0.5.
    let up = Tensor::from_vec(unet_up, (channels, rank), &cpu).unwrap();
    let down = Tensor::from_vec(unet_down, (rank, channels), &cpu).unwrap();
    let expected = (up.matmul(&down).unwrap() * 0.25)
        .unwrap()
        .reshape(unet_shape.as_slice())
        .unwrap();
    let delta =
        (weight(&new_model.weights, unet_name) - weight(&model.weights, unet_name)).unwrap();
    assert!(max_abs(&(delta - expected).unwrap()) < 1e-6);
    // Text encoder: no alpha (scale 1), strength 2.
    let up = Tensor::from_vec(te_up, (width, rank), &cpu).unwrap();
    let down = Tensor::from_vec(te_down, (rank, width), &cpu).unwrap();
    let expected = (up.matmul(&down).unwrap() * 2.0).unwrap();
    let delta = (weight(&new_clip.encoders[0].weights().unwrap(), clip_name)
        - weight(&clip.encoders[0].weights().unwrap(), clip_name))
    .unwrap();
    assert!(max_abs(&(delta - expected).unwrap()) < 1e-6);
    // Untouched weights are unchanged.
    let other = "input_blocks.1.0.in_layers.2.weight";
    let same = (weight(&new_model.weights, other) - weight(&model.weights, other)).unwrap();
    assert_eq!(max_abs(&same), 0.0);
    assert_eq!(new_model.loras.len(), 1);

    // A Flux LoRA matches nothing in an SD1 model.
    write_lora(
        &loras.join("flux.safetensors"),
        &[
            (
                "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight",
                vec![2, 8],
                vec![0.0; 16],
            ),
            (
                "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight",
                vec![8, 2],
                vec![0.0; 16],
            ),
        ],
    );
    let inputs = inputs.with("lora_name", Value::String("flux.safetensors".into()));
    let err = node.execute(&inputs, &mut ctx).unwrap_err().to_string();
    assert!(
        err.contains("LoraLoader") && err.contains("flux.safetensors"),
        "{err}"
    );
    assert!(err.contains("match"), "{err}");
}
