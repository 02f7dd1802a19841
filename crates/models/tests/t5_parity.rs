//! T5 parity with ComfyUI (`tests/fixtures/t5/`, written by `scripts/reference/t5_fixtures.py`):
//! Flux and SD3 `T5XXLTokenizer` ids and weights with a tiny Unigram vocabulary (and with the
//! real one when `KILN_T5_TOKENIZER` names it), tokenizer discovery and rejection, and the tiny
//! T5 encoder's hidden states and weighted conditioning in f32, from f32, fp8 and scaled-fp8
//! standalone files.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_detect::ComponentKind;
use kiln_models::{
    T5Encoder, T5Token, T5Tokenizer, T5TokenizerError, Weights, FLUX_T5_MIN_LENGTH,
    SD3_T5_MIN_LENGTH,
};
use kiln_test_checkpoints::{CheckpointSpec, Family, Packaging, Storage};
use serde_json::Value;
use support::{load_component, max_abs, max_abs_diff};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/t5")
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

fn tiny_tokenizer_path() -> PathBuf {
    fixtures().join("tiny_tokenizer/tokenizer.json")
}

fn min_length(variant: &str) -> usize {
    match variant {
        "flux" => FLUX_T5_MIN_LENGTH,
        "sd3" => SD3_T5_MIN_LENGTH,
        other => panic!("unknown tokenizer variant {other}"),
    }
}

fn tokens_of(pairs: &Value) -> Vec<T5Token> {
    pairs
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| T5Token {
            id: u32::try_from(pair[0].as_u64().unwrap()).unwrap(),
            weight: pair[1].as_f64().unwrap(),
        })
        .collect()
}

#[test]
fn tiny_vocabulary_tokens_equal_comfyui() {
    let reference = json("tokens.json");
    let tokenizer = T5Tokenizer::from_file(tiny_tokenizer_path()).unwrap();
    let mut compared = 0;
    for (variant, prompts) in reference["tiny"].as_object().unwrap() {
        for (name, want) in prompts.as_object().unwrap() {
            let text = reference["prompts"][name].as_str().unwrap();
            let got = tokenizer.tokenize(text, min_length(variant)).unwrap();
            assert_eq!(got, tokens_of(want), "{variant}/{name}: {text:?}");
            compared += 1;
        }
    }
    assert_eq!(
        compared,
        2 * reference["prompts"].as_object().unwrap().len()
    );
    // The long prompt runs past Flux's 256 without being cut or padded.
    let long = &reference["tiny"]["flux"]["long"];
    assert!(long.as_array().unwrap().len() > FLUX_T5_MIN_LENGTH);
}

/// Runs only where `KILN_T5_TOKENIZER` names the real `tokenizer.json` (ComfyUI's
/// `comfy/text_encoders/t5_tokenizer/tokenizer.json`), which is not part of the repository.
#[test]
fn real_vocabulary_ids_equal_comfyui() {
    let Some(path) = std::env::var_os("KILN_T5_TOKENIZER") else {
        eprintln!("KILN_T5_TOKENIZER not set: real-vocabulary comparison skipped");
        return;
    };
    let reference = json("tokens.json");
    let tokenizer = T5Tokenizer::from_file(PathBuf::from(path)).unwrap();
    for (name, want) in reference["real_flux_ids"].as_object().unwrap() {
        let text = reference["prompts"][name].as_str().unwrap();
        let got: Vec<u64> = tokenizer
            .tokenize(text, FLUX_T5_MIN_LENGTH)
            .unwrap()
            .iter()
            .map(|t| u64::from(t.id))
            .collect();
        let want: Vec<u64> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "{name}: {text:?}");
    }
}

#[test]
fn non_t5_tokenizers_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let bpe = dir.path().join("bpe.json");
    std::fs::write(
        &bpe,
        r#"{"version":"1.0","model":{"type":"BPE","vocab":{"a":0},"merges":[]}}"#,
    )
    .unwrap();
    let error = T5Tokenizer::from_file(&bpe).unwrap_err();
    assert!(matches!(error, T5TokenizerError::NotT5 { .. }), "{error}");
    assert!(error.to_string().contains("Unigram"), "{error}");

    // A Unigram vocabulary whose specials sit elsewhere than T5's 0/1/2.
    let mut tiny: Value =
        serde_json::from_str(&std::fs::read_to_string(tiny_tokenizer_path()).unwrap()).unwrap();
    tiny["model"]["vocab"].as_array_mut().unwrap().swap(0, 3);
    let shuffled = dir.path().join("shuffled.json");
    std::fs::write(&shuffled, tiny.to_string()).unwrap();
    let error = T5Tokenizer::from_file(&shuffled).unwrap_err();
    assert!(matches!(error, T5TokenizerError::NotT5 { .. }), "{error}");

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "not json").unwrap();
    assert!(matches!(
        T5Tokenizer::from_file(&garbage).unwrap_err(),
        T5TokenizerError::Parse { .. }
    ));
    assert!(matches!(
        T5Tokenizer::from_file(dir.path().join("missing.json")).unwrap_err(),
        T5TokenizerError::Read { .. }
    ));
}

#[test]
fn locate_searches_in_order_and_explains_failure() {
    let root = tempfile::tempdir().unwrap();
    let empty = root.path().join("empty");
    let clip_dir = root.path().join("clip_tokenizer");
    let flat = root.path().join("flat");
    let nested = root.path().join("text_encoders");
    for dir in [&empty, &clip_dir, &flat, &nested.join("t5_tokenizer")] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(
        clip_dir.join("tokenizer.json"),
        r#"{"version":"1.0","model":{"type":"BPE","vocab":{"a":0},"merges":[]}}"#,
    )
    .unwrap();
    std::fs::copy(tiny_tokenizer_path(), flat.join("tokenizer.json")).unwrap();
    std::fs::copy(
        tiny_tokenizer_path(),
        nested.join("t5_tokenizer/tokenizer.json"),
    )
    .unwrap();

    let found = T5Tokenizer::locate(&[
        empty.clone(),
        clip_dir.clone(),
        nested.clone(),
        flat.clone(),
    ])
    .unwrap();
    assert_eq!(found, nested.join("t5_tokenizer/tokenizer.json"));
    let found = T5Tokenizer::locate(&[clip_dir.clone(), flat.clone(), nested.clone()]).unwrap();
    assert_eq!(found, flat.join("tokenizer.json"));

    let error = T5Tokenizer::locate(&[empty.clone(), clip_dir.clone()]).unwrap_err();
    let T5TokenizerError::NotFound {
        searched, rejected, ..
    } = &error
    else {
        panic!("expected NotFound, got {error}");
    };
    assert_eq!(
        searched,
        &[
            empty.join("t5_tokenizer/tokenizer.json"),
            empty.join("tokenizer.json"),
            clip_dir.join("t5_tokenizer/tokenizer.json"),
            clip_dir.join("tokenizer.json"),
        ]
    );
    assert_eq!(rejected.len(), 1);
    let message = error.to_string();
    assert!(message.contains(&empty.join("tokenizer.json").display().to_string()));
    assert!(message.contains("comfy/text_encoders/t5_tokenizer/tokenizer.json"));
    assert!(message.contains(
        &empty
            .join("t5_tokenizer/tokenizer.json")
            .display()
            .to_string()
    ));
}

fn encoder(storage: Storage) -> T5Encoder {
    let spec = CheckpointSpec::new(Family::T5Xxl, storage, Packaging::Standalone);
    let (store, attention) = load_component(&spec, ComponentKind::T5xxl, "cpu");
    T5Encoder::new(Weights::new(Arc::new(store)))
        .unwrap()
        .with_attention(attention)
}

fn reference_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("encoder.safetensors"), &Device::Cpu).unwrap()
}

fn relative_error(got: &Tensor, want: &Tensor) -> f32 {
    max_abs_diff(got, want) / max_abs(want)
}

#[test]
fn encoder_equals_comfyui_in_f32() {
    let meta = json("encoder.json");
    let tensors = reference_tensors();
    let t5 = encoder(Storage::F32);
    let config = t5.config();
    assert_eq!(
        (
            config.d_model,
            config.heads,
            config.d_kv,
            config.d_ff,
            config.layers
        ),
        (96, 6, 16, 256, 24)
    );
    for index in 0..meta["forward"].as_array().unwrap().len() {
        let ids = tensors[&format!("forward.{index}.ids")]
            .to_dtype(DType::U32)
            .unwrap();
        let want = &tensors[&format!("forward.{index}.hidden")];
        let got = t5.forward(&ids).unwrap();
        let error = relative_error(&got, want);
        eprintln!(
            "forward {index}: relative error {error} (max |want| {})",
            max_abs(want)
        );
        assert!(error < 1e-5, "forward {index}: relative error {error}");
    }
    for (index, case) in meta["weighted"].as_array().unwrap().iter().enumerate() {
        let tokens = tokens_of(&case["tokens"]);
        let want = &tensors[&format!("weighted.{index}.out")];
        let got = t5.encode_weighted(&tokens).unwrap();
        assert_eq!(got.dtype(), DType::F32);
        let error = relative_error(&got, want);
        eprintln!("weighted {index}: relative error {error}");
        assert!(
            error < 1e-5,
            "weighted {index} ({}): relative error {error}",
            case["prompt"]
        );
    }
}

#[test]
fn weighting_moves_only_weighted_positions() {
    let t5 = encoder(Storage::F32);
    let tokenizer = T5Tokenizer::from_file(tiny_tokenizer_path()).unwrap();
    let plain = tokenizer.tokenize("a red cat", SD3_T5_MIN_LENGTH).unwrap();
    let weighted = tokenizer
        .tokenize("a (red:1.5) cat", SD3_T5_MIN_LENGTH)
        .unwrap();
    assert_eq!(
        plain.iter().map(|t| t.id).collect::<Vec<_>>(),
        weighted.iter().map(|t| t.id).collect::<Vec<_>>()
    );
    let base = t5.encode_weighted(&plain).unwrap();
    let moved = t5.encode_weighted(&weighted).unwrap();
    for (position, token) in weighted.iter().enumerate() {
        let difference = max_abs_diff(
            &base.narrow(1, position, 1).unwrap(),
            &moved.narrow(1, position, 1).unwrap(),
        );
        if token.weight == 1.0 {
            assert_eq!(difference, 0.0, "position {position} changed");
        } else {
            assert!(difference > 0.0, "weighted position {position} unchanged");
        }
    }
}

#[test]
fn fp8_storages_run_close_to_f32() {
    let meta = json("encoder.json");
    let tensors = reference_tensors();
    let ids = tensors["forward.1.ids"].to_dtype(DType::U32).unwrap();
    let want = &tensors["forward.1.hidden"];
    assert_eq!(meta["forward"][1]["ids"][0].as_array().unwrap().len(), 12);
    for storage in [Storage::F8E4M3, Storage::ScaledF8E4M3] {
        let got = encoder(storage).forward(&ids).unwrap();
        assert_eq!(got.dtype(), DType::F32);
        assert!(max_abs(&got).is_finite(), "{storage:?}");
        let error = relative_error(&got, want);
        eprintln!("{storage:?}: relative error {error}");
        assert!(error < 0.25, "{storage:?}: relative error {error}");
    }
}

#[test]
fn forward_rejects_bad_ids() {
    let t5 = encoder(Storage::F32);
    let too_large = Tensor::new(&[[5u32, 32128]], &Device::Cpu).unwrap();
    assert!(t5.forward(&too_large).is_err());
    let flat = Tensor::new(&[5u32, 6], &Device::Cpu).unwrap();
    assert!(t5.forward(&flat).is_err());
    assert!(t5.encode_weighted(&[]).is_err());
}
