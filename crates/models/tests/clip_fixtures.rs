//! Parity with ComfyUI reference fixtures (`tests/fixtures/`, see its README): tokenizer windows
//! for the SD1, SD2 and SDXL tokenizers, and CLIPTextEncode conditioning and pooled outputs of
//! the tiny SD1, SD2-v, SDXL and SDXL-refiner text encoders, within 1e-4 in f32.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use kiln_detect::ComponentKind;
use kiln_models::{
    concat_sdxl_text, ClipConfig, ClipTextEncoder, ClipToken, ClipTokenizer, ClipUsage,
    EmbeddingFolder, TokenizerConfig, Weights,
};
use kiln_test_checkpoints::{CheckpointSpec, Family, Packaging, Storage};
use serde_json::Value;
use support::{load_component, max_abs, max_abs_diff};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

fn tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(name), &Device::Cpu).unwrap()
}

fn embeddings() -> EmbeddingFolder {
    EmbeddingFolder::new([fixtures().join("embeddings")])
}

fn tokenizer_for(tower: &str, sdxl: bool) -> TokenizerConfig {
    match tower {
        "l" => TokenizerConfig::clip_l(),
        "h" => TokenizerConfig::clip_h(),
        "g" if sdxl => TokenizerConfig::clip_g(),
        other => panic!("unknown tower {other}"),
    }
}

/// The row a fixture token names in an embedding file.
fn embedding_row(file: &str, key: &str, row: usize) -> Vec<f32> {
    let all = tensors(&format!("embeddings/{file}"));
    all[key].get(row).unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn tokenizer_windows_equal_comfyui() {
    let reference = json("tokenizer.json");
    let folder = embeddings();
    let mut compared = 0;
    for (tokenizer, prompts) in reference["tokens"].as_object().unwrap() {
        for (prompt_name, towers) in prompts.as_object().unwrap() {
            let text = reference["prompts"][prompt_name].as_str().unwrap();
            for (tower, want_chunks) in towers.as_object().unwrap() {
                let config = tokenizer_for(tower, tokenizer == "sdxl");
                let got = ClipTokenizer::new(config)
                    .tokenize(text, Some(&folder))
                    .unwrap();
                let want_chunks = want_chunks.as_array().unwrap();
                assert_eq!(
                    got.chunks.len(),
                    want_chunks.len(),
                    "{tokenizer}/{tower}/{prompt_name}"
                );
                for (got_chunk, want_chunk) in got.chunks.iter().zip(want_chunks) {
                    let want_chunk = want_chunk.as_array().unwrap();
                    assert_eq!(got_chunk.len(), want_chunk.len());
                    for (i, (got_token, want)) in got_chunk.iter().zip(want_chunk).enumerate() {
                        let context = format!("{tokenizer}/{tower}/{prompt_name} position {i}");
                        assert_eq!(got_token.weight, want[1].as_f64().unwrap(), "{context}");
                        match (&got_token.token, &want[0]) {
                            (ClipToken::Id(id), Value::Number(n)) => {
                                assert_eq!(u64::from(*id), n.as_u64().unwrap(), "{context}")
                            }
                            (ClipToken::Embedding(row), Value::Object(source)) => {
                                let want_row = embedding_row(
                                    source["embedding_file"].as_str().unwrap(),
                                    source["key"].as_str().unwrap(),
                                    source["row"].as_u64().unwrap() as usize,
                                );
                                assert_eq!(&row[..], &want_row[..], "{context}");
                            }
                            (got, want) => panic!("{context}: {got:?} vs {want}"),
                        }
                        compared += 1;
                    }
                }
            }
        }
    }
    assert!(compared > 3000, "{compared}");
}

fn load(spec: CheckpointSpec, kind: ComponentKind) -> Weights {
    Weights::new(Arc::new(load_component(&spec, kind, "cpu").0))
}

/// The fixtures fix CLIP heads at width / 16.
fn encoder(weights: Weights, kind: ComponentKind, usage: ClipUsage) -> ClipTextEncoder {
    let config = ClipConfig::from_weights(&weights, kind).unwrap();
    let heads = config.hidden_size / 16;
    ClipTextEncoder::new(weights, kind, config.with_heads(heads), usage).unwrap()
}

fn assert_close(got: &Tensor, want: &Tensor, context: &str) {
    assert_eq!(got.dims(), want.dims(), "{context}");
    let want_max = max_abs(want);
    let diff = max_abs_diff(got, want);
    assert!(
        diff <= 1e-4 * want_max.max(1.0),
        "{context}: max |diff| {diff} (max |ref| {want_max})"
    );
}

/// One text encoder with its tokenizer.
struct Tower {
    encoder: ClipTextEncoder,
    tokenizer: ClipTokenizer,
}

impl Tower {
    fn encode(&self, text: &str, clip_skip: Option<i32>) -> (Tensor, Tensor) {
        let folder = embeddings();
        let tokens = self.tokenizer.tokenize(text, Some(&folder)).unwrap();
        self.encoder
            .encode_chunks(&tokens.chunks, clip_skip)
            .unwrap()
    }
}

/// Text → (cond, pooled) for a CLIPSetLastLayer value.
type Encode<'a> = &'a dyn Fn(&str, Option<i32>) -> (Tensor, Tensor);

fn check_prompts(fixture: &str, variant: &str, clip_skip: Option<i32>, encode: Encode<'_>) {
    let meta = json(&format!("{fixture}.json"));
    let reference = tensors(&format!("{fixture}.safetensors"));
    let prompts = meta["prompts"].as_object().unwrap();
    assert_eq!(prompts.len(), 5);
    for (name, text) in prompts {
        let (cond, pooled) = encode(text.as_str().unwrap(), clip_skip);
        let key = format!("{variant}.{name}");
        assert_close(
            &cond,
            &reference[&format!("{key}.cond")],
            &format!("{fixture} {key}.cond"),
        );
        assert_close(
            &pooled,
            &reference[&format!("{key}.pooled")],
            &format!("{fixture} {key}.pooled"),
        );
    }
}

#[test]
fn sd1_text_encoder_equals_comfyui_with_and_without_clip_skip() {
    // The fixtures' own checkpoint: the SD1 single file.
    let weights = load(
        CheckpointSpec::new(Family::Sd1, Storage::F32, Packaging::SingleFile),
        ComponentKind::ClipL,
    );
    let tower = Tower {
        encoder: encoder(weights, ComponentKind::ClipL, ClipUsage::sd1_clip_l()),
        tokenizer: ClipTokenizer::new(TokenizerConfig::clip_l()),
    };
    let encode = |text: &str, skip: Option<i32>| tower.encode(text, skip);
    check_prompts("text_encoder_sd1", "default", None, &encode);
    check_prompts("text_encoder_sd1", "clip_skip_2", Some(-2), &encode);
}

#[test]
fn sd2_text_encoder_equals_comfyui() {
    // The fixtures' own checkpoint, whose ViT-H is stored in open_clip layout (fused
    // `in_proj_weight`), split into q/k/v by the key map.
    let weights = load(
        CheckpointSpec::new(Family::Sd2V, Storage::F32, Packaging::SingleFile),
        ComponentKind::OpenClipH,
    );
    let tower = Tower {
        encoder: encoder(weights, ComponentKind::OpenClipH, ClipUsage::sd2_clip_h()),
        tokenizer: ClipTokenizer::new(TokenizerConfig::clip_h()),
    };
    check_prompts("text_encoder_sd2v", "default", None, &|t, s| {
        tower.encode(t, s)
    });
}

#[test]
fn sdxl_and_refiner_text_encoders_equal_comfyui() {
    // Values depend only on (seed, component, name), so the standalone files hold the SDXL
    // checkpoint's text encoders (and load faster than the whole f32 checkpoint).
    let l = Tower {
        encoder: encoder(
            load(
                CheckpointSpec::new(Family::ClipL, Storage::F32, Packaging::Standalone),
                ComponentKind::ClipL,
            ),
            ComponentKind::ClipL,
            ClipUsage::sdxl_clip_l(),
        ),
        tokenizer: ClipTokenizer::new(TokenizerConfig::clip_l()),
    };
    let g = Tower {
        encoder: encoder(
            load(
                CheckpointSpec::new(Family::ClipG, Storage::F32, Packaging::Standalone),
                ComponentKind::ClipG,
            ),
            ComponentKind::ClipG,
            ClipUsage::sdxl_clip_g(),
        ),
        tokenizer: ClipTokenizer::new(TokenizerConfig::clip_g()),
    };
    let sdxl = |text: &str, skip: Option<i32>| {
        let (l_cond, _) = l.encode(text, skip);
        let (g_cond, g_pooled) = g.encode(text, skip);
        (concat_sdxl_text(&l_cond, &g_cond).unwrap(), g_pooled)
    };
    check_prompts("text_encoder_sdxl", "default", None, &sdxl);
    check_prompts("text_encoder_sdxl_refiner", "default", None, &|t, s| {
        g.encode(t, s)
    });
}
