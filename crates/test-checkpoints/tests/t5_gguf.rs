//! T5-XXL encoders as llama.cpp GGUF (city96's `t5-v1_1-xxl-encoder-Q8_0.gguf` family), every
//! quantisation: file names, `t5encoder` metadata, llama.cpp tensor names in torch-order shapes,
//! which tensors stay F32, and dequantised values close to the canonical ones.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use candle_core::quantized::gguf_file;
use candle_core::Device;
use kiln_test_checkpoints::{
    planned_files, reference_tensor, write, CheckpointSpec, Component, Family, GgmlDType,
    GgufQuant, Packaging, Size, Storage, StoredDType,
};

fn spec(quant: GgufQuant) -> CheckpointSpec {
    CheckpointSpec::new(Family::T5Xxl, Storage::Gguf(quant), Packaging::Gguf)
}

/// Transformers name of a llama.cpp T5 name, spelled out independently of the writer's table
/// (ComfyUI-GGUF's `T5_SD_MAP`).
fn transformers_name(llama_cpp: &str) -> String {
    let mut name = llama_cpp.to_string();
    for (from, to) in [
        ("enc.", "encoder."),
        (".blk.", ".block."),
        ("token_embd", "shared"),
        ("output_norm", "final_layer_norm"),
        ("attn_q", "layer.0.SelfAttention.q"),
        ("attn_k", "layer.0.SelfAttention.k"),
        ("attn_v", "layer.0.SelfAttention.v"),
        ("attn_o", "layer.0.SelfAttention.o"),
        ("attn_norm", "layer.0.layer_norm"),
        (
            "attn_rel_b",
            "layer.0.SelfAttention.relative_attention_bias",
        ),
        ("ffn_up", "layer.1.DenseReluDense.wi_1"),
        ("ffn_down", "layer.1.DenseReluDense.wo"),
        ("ffn_gate", "layer.1.DenseReluDense.wi_0"),
        ("ffn_norm", "layer.1.layer_norm"),
    ] {
        name = name.replace(from, to);
    }
    name
}

/// Largest `|got − want|` over the largest `|want|`.
fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    let peak = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / peak
}

#[test]
fn names_follow_city96s_t5_encoder_files() {
    assert_eq!(
        spec(GgufQuant::Q8_0).relative_path().to_str(),
        Some("t5-v1_1-xxl-encoder-Q8_0.gguf")
    );
    assert_eq!(
        spec(GgufQuant::Q4_K_S)
            .with_seed(3)
            .relative_path()
            .to_str(),
        Some("t5-v1_1-xxl-encoder-Q4_K_S-seed3.gguf")
    );
    // The safetensors forms keep ComfyUI's names.
    assert_eq!(
        CheckpointSpec::new(Family::T5Xxl, Storage::F16, Packaging::Standalone)
            .relative_path()
            .to_str(),
        Some("t5xxl_fp16.safetensors")
    );
    assert_eq!(Family::T5Xxl.gguf_architecture(), Some("t5encoder"));
    for unsupported in [
        CheckpointSpec::new(Family::T5Xxl, Storage::F16, Packaging::Gguf),
        spec(GgufQuant::Q8_0).with_size(Size::Real),
        CheckpointSpec::new(
            Family::ClipL,
            Storage::Gguf(GgufQuant::Q8_0),
            Packaging::Gguf,
        ),
    ] {
        assert!(!unsupported.is_supported(), "{unsupported}");
    }
}

#[test]
fn every_quantisation_reopens_as_a_llama_cpp_t5_encoder() {
    let dir = tempfile::tempdir().unwrap();
    for quant in GgufQuant::ALL {
        let spec = spec(quant);
        let path = write(&spec, dir.path()).unwrap();
        let planned = planned_files(&spec).unwrap().remove(0);
        let mut reader = std::fs::File::open(&path).unwrap();
        let content = gguf_file::Content::read(&mut reader).unwrap();
        let meta_u32 = |key: &str| content.metadata[key].to_u32().unwrap();
        assert_eq!(
            content.metadata["general.architecture"]
                .to_string()
                .unwrap(),
            "t5encoder"
        );
        assert_eq!(meta_u32("general.file_type"), quant.file_type());
        assert_eq!(meta_u32("t5encoder.block_count"), 24);
        assert_eq!(meta_u32("t5encoder.embedding_length"), 96);
        assert_eq!(meta_u32("t5encoder.feed_forward_length"), 256);
        assert_eq!(meta_u32("t5encoder.attention.head_count"), 6);
        assert_eq!(meta_u32("t5encoder.attention.key_length"), 16);
        assert_eq!(meta_u32("t5encoder.attention.relative_buckets_count"), 32);

        let names: BTreeSet<&str> = content.tensor_infos.keys().map(String::as_str).collect();
        assert_eq!(names.len(), 219, "{spec}");
        assert_eq!(planned.tensors.len(), 219);
        for required in [
            "token_embd.weight",
            "enc.blk.0.attn_rel_b.weight",
            "enc.blk.23.ffn_gate.weight",
            "enc.output_norm.weight",
        ] {
            assert!(names.contains(required), "{spec}: {required}");
        }
        assert!(!names.iter().any(|n| n.starts_with("encoder.")), "{spec}");

        let mut quantised = 0;
        for tensor in &planned.tensors {
            let info = &content.tensor_infos[&tensor.name];
            // candle reverses GGUF's ggml dimension order: the logical torch shape comes back.
            assert_eq!(info.shape.dims(), tensor.shape.as_slice(), "{spec}");
            assert_eq!(StoredDType::Ggml(info.ggml_dtype), tensor.dtype, "{spec}");
            let plain = tensor.shape.len() == 1 || tensor.name.contains("attn_rel_b");
            if plain {
                assert_eq!(info.ggml_dtype, GgmlDType::F32, "{spec}: {}", tensor.name);
            } else if !matches!(info.ggml_dtype, GgmlDType::F16 | GgmlDType::F32) {
                quantised += 1;
            }
            // Every stored value is the canonical weight of its transformers name.
            let internal = transformers_name(&tensor.name);
            let reference = reference_tensor(&spec, Component::T5Xxl, &internal)
                .unwrap_or_else(|| panic!("{spec}: no `{internal}`"));
            assert_eq!(reference.shape, tensor.shape, "{internal}");
            if tensor.name.ends_with("attn_q.weight") || tensor.name == "token_embd.weight" {
                let values = info
                    .read(&mut reader, content.tensor_data_offset, &Device::Cpu)
                    .unwrap()
                    .dequantize(&Device::Cpu)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let error = relative_error(&values, &reference.values);
                // Q4 blocks of 32 keep about 3 bits of the row's range; Q8_0 about 7.
                let limit = match quant {
                    GgufQuant::F16 => 1e-3,
                    GgufQuant::Q8_0 => 0.02,
                    _ => 0.2,
                };
                assert!(error < limit, "{spec}: {} error {error}", tensor.name);
            }
        }
        // Every matrix but the relative bias is quantised (F16: none).
        let want = if quant == GgufQuant::F16 {
            0
        } else {
            24 * 7 + 1
        };
        assert_eq!(quantised, want, "{spec}");
    }
}

#[test]
fn k_quants_mix_in_llama_cpps_fallbacks_for_short_rows() {
    let types = |quant| -> BTreeSet<String> {
        planned_files(&spec(quant)).unwrap()[0]
            .tensors
            .iter()
            .map(|t| format!("{:?}", t.dtype))
            .collect()
    };
    // q/k/v/o, wi_0/wi_1 and the token table have rows of 96: Q5_0; `wo` rows of 256 take Q4_K.
    assert_eq!(
        types(GgufQuant::Q4_K_S),
        ["Ggml(F32)", "Ggml(Q4K)", "Ggml(Q5_0)"]
            .map(String::from)
            .into()
    );
    assert!(types(GgufQuant::Q6_K).contains("Ggml(Q8_0)"));
    assert!(types(GgufQuant::Q5_K_S).contains("Ggml(Q5_1)"));
}
