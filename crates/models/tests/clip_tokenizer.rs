//! The CLIP tokenizer against reference outputs of Hugging Face `CLIPTokenizer` and ComfyUI's
//! `SDTokenizer.tokenize_with_weights` (`clip_tokenizer_cases.json`, provenance inside), plus
//! hand-checked cases of the window rules.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use kiln_models::{
    clip_token_ids, ClipToken, ClipTokenizer, EmbeddingFolder, EmbeddingSource, Result,
    TextualInversion, TokenizedPrompt, TokenizerConfig, END_TOKEN, START_TOKEN,
};
use serde_json::{json, Value};

fn cases() -> Value {
    let text = include_str!("clip_tokenizer_cases.json");
    serde_json::from_str(text).unwrap()
}

/// The fake embeddings the reference outputs were generated with.
struct FakeEmbeddings;

impl EmbeddingSource for FakeEmbeddings {
    fn load(&self, name: &str, _key: &str, _width: usize) -> Result<Option<TextualInversion>> {
        let values = match name {
            "two" => [vec![1.0; 4], vec![2.0; 4]].concat(),
            "one" => vec![3.0; 4],
            "big" => vec![5.0; 40],
            _ => return Ok(None),
        };
        Ok(Some(TextualInversion { values, width: 4 }))
    }
}

fn as_json(prompt: &TokenizedPrompt) -> Value {
    Value::Array(
        prompt
            .chunks
            .iter()
            .map(|chunk| {
                Value::Array(
                    chunk
                        .iter()
                        .map(|t| match &t.token {
                            ClipToken::Id(id) => json!([id, t.weight]),
                            ClipToken::Embedding(row) => json!(["emb", row[0] as f64, t.weight]),
                        })
                        .collect(),
                )
            })
            .collect(),
    )
}

fn ids(text: &str) -> Vec<u32> {
    let mut all = vec![START_TOKEN];
    all.extend(clip_token_ids(text));
    all.push(END_TOKEN);
    all
}

#[test]
fn token_ids_equal_hugging_face_on_tricky_text() {
    let cases = cases();
    let table: BTreeMap<String, Vec<u32>> = serde_json::from_value(cases["ids"].clone()).unwrap();
    assert!(table.len() >= 50);
    for (text, want) in &table {
        assert_eq!(&clip_token_ids(text), want, "{text:?}");
    }
}

#[test]
fn hand_checked_ids() {
    // From OpenAI's CLIP README / instant-clip-tokenizer docs and HF outputs checked by hand.
    assert_eq!(ids("Hi there"), [49406, 1883, 997, 49407]);
    assert_eq!(
        ids("a photo of a cat"),
        [49406, 320, 1125, 539, 320, 2368, 49407]
    );
    // Digits are single tokens; case and surrounding whitespace do not matter.
    assert_eq!(clip_token_ids("12345"), [272, 273, 274, 275, 276]);
    assert_eq!(
        clip_token_ids("  HELLO   World "),
        clip_token_ids("hello world")
    );
    // Special tokens inside text become the special ids, in any case.
    assert_eq!(clip_token_ids("x<|ENDOFTEXT|>y"), [343, 49407, 344]);
    // A zero-width space is a format character: dropped, so the words join.
    assert_eq!(clip_token_ids("A\u{200b}B"), clip_token_ids("ab"));
}

#[test]
fn windows_equal_comfyui_for_weights_embeddings_and_long_prompts() {
    let cases = cases();
    let windows = cases["windows"].as_object().unwrap();
    assert!(windows.len() >= 19);
    for (prompt, want) in windows {
        for (key, config) in [
            ("l", TokenizerConfig::clip_l()),
            ("g", TokenizerConfig::clip_g()),
        ] {
            let got = ClipTokenizer::new(config)
                .tokenize(prompt, Some(&FakeEmbeddings))
                .unwrap();
            assert_eq!(as_json(&got), want[key], "{key}: {prompt:?}");
        }
    }
}

#[test]
fn short_groups_move_to_the_next_window_whole() {
    // 74 single-token words fill 75 slots with BOS; the 3-token weighted phrase does not fit the
    // one remaining slot and moves whole, so the first window is padded after its end token.
    let prompt = format!("{}(short phrase here:1.1)", "a ".repeat(74));
    let got = ClipTokenizer::new(TokenizerConfig::clip_l())
        .tokenize(&prompt, None)
        .unwrap();
    assert_eq!(got.chunks.len(), 2);
    for chunk in &got.chunks {
        assert_eq!(chunk.len(), 77);
        assert_eq!(chunk[0].token, ClipToken::Id(START_TOKEN));
    }
    assert_eq!(got.chunks[0][75].token, ClipToken::Id(END_TOKEN));
    assert_eq!(got.chunks[0][76].token, ClipToken::Id(END_TOKEN));
    let weighted: Vec<f64> = got.chunks[1][1..4].iter().map(|t| t.weight).collect();
    assert_eq!(weighted, [1.1, 1.1, 1.1]);
}

#[test]
fn open_clip_pads_with_zero_and_clip_l_with_the_end_token() {
    let l = ClipTokenizer::new(TokenizerConfig::clip_l())
        .tokenize("cat", None)
        .unwrap();
    let g = ClipTokenizer::new(TokenizerConfig::clip_g())
        .tokenize("cat", None)
        .unwrap();
    assert_eq!(l.chunks[0][3].token, ClipToken::Id(END_TOKEN));
    assert_eq!(g.chunks[0][2].token, ClipToken::Id(END_TOKEN));
    assert_eq!(g.chunks[0][3].token, ClipToken::Id(0));
    assert_eq!(g.chunks[0][76].token, ClipToken::Id(0));
}

#[test]
fn missing_embeddings_warn_and_without_a_source_are_text() {
    let tokenizer = ClipTokenizer::new(TokenizerConfig::clip_l());
    let got = tokenizer
        .tokenize("embedding:nothing here", Some(&FakeEmbeddings))
        .unwrap();
    assert_eq!(got.warnings.len(), 1);
    // ComfyUI drops the missing name and keeps the words after it.
    assert_eq!(
        got.chunks[0][1].token,
        ClipToken::Id(clip_token_ids("here")[0])
    );
    let as_text = tokenizer.tokenize("embedding:two", None).unwrap();
    let want = clip_token_ids("embedding:two");
    let got_ids: Vec<ClipToken> = as_text.chunks[0][1..=want.len()]
        .iter()
        .map(|t| t.token.clone())
        .collect();
    assert_eq!(
        got_ids,
        want.into_iter().map(ClipToken::Id).collect::<Vec<_>>()
    );
    // ComfyUI raises on a bare `embedding:`; Kiln warns and goes on.
    let bare = tokenizer
        .tokenize("embedding:", Some(&FakeEmbeddings))
        .unwrap();
    assert_eq!(bare.warnings.len(), 1);
}

#[test]
fn embedding_files_are_read_from_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let rows =
        candle_core::Tensor::from_vec(vec![0.5f32; 2 * 768], (2, 768), &candle_core::Device::Cpu)
            .unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("emb_params".to_string(), rows)]),
        dir.path().join("style.safetensors"),
    )
    .unwrap();
    let folder = EmbeddingFolder::new([dir.path().to_path_buf()]);
    let got = ClipTokenizer::new(TokenizerConfig::clip_l())
        .tokenize("a (embedding:style:1.2) b", Some(&folder))
        .unwrap();
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    let spliced: Vec<&kiln_models::WeightedToken> = got.chunks[0]
        .iter()
        .filter(|t| matches!(t.token, ClipToken::Embedding(_)))
        .collect();
    assert_eq!(spliced.len(), 2);
    assert!(spliced.iter().all(|t| t.weight == 1.2));
    match &spliced[0].token {
        ClipToken::Embedding(row) => assert_eq!(row.len(), 768),
        ClipToken::Id(_) => unreachable!(),
    }
}
