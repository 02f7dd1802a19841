//! The CLIP tokenizer as ComfyUI runs it (`comfy/sd1_clip.py: SDTokenizer`): prompt weights,
//! `embedding:name` textual inversions, Hugging Face `CLIPTokenizer` ids, and 77-token windows.
//!
//! Ids are those of `transformers`' (slow) `CLIPTokenizer` as ComfyUI loads it without `ftfy`:
//! BasicTokenizer clean-up (control characters dropped, whitespace collapsed, CJK ideographs
//! split, NFC, lower case), CLIP's word pattern, then byte-level BPE with OpenAI's merges (from
//! the `instant-clip-tokenizer` crate, whose vocabulary and merge order are OpenAI's).
//!
//! Windows: each weighted segment (or embedding) is a group; a group that does not fit in the
//! current window moves whole to the next one unless it has 8 or more tokens, in which case it is
//! split. Every window is `start, …, end` padded to 77 with the pad token: the end token for
//! CLIP-L, 0 for OpenCLIP ViT-H/bigG (ComfyUI `pad_with_end=False`).

use std::sync::{Arc, OnceLock};

use regex::Regex;
use unicode_general_category::{get_general_category, GeneralCategory};
use unicode_normalization::UnicodeNormalization;

use crate::error::Result;
use crate::prompt_weights::parse_prompt_weights;
use crate::textual_inversion::EmbeddingSource;

/// CLIP's `<|startoftext|>`.
pub const START_TOKEN: u32 = 49406;
/// CLIP's `<|endoftext|>`.
pub const END_TOKEN: u32 = 49407;
/// CLIP's context length.
pub const CLIP_MAX_LENGTH: usize = 77;

/// ComfyUI's `max_word_length`: groups this long may be split across windows.
const MAX_WORD_LENGTH: usize = 8;
/// ComfyUI's `embedding_identifier`.
const EMBEDDING_IDENTIFIER: &str = "embedding:";

/// One position of a window: a vocabulary id, or a textual-inversion vector spliced in place of
/// a token embedding.
#[derive(Debug, Clone, PartialEq)]
pub enum ClipToken {
    /// A vocabulary id.
    Id(u32),
    /// An embedding vector (one row of a textual inversion).
    Embedding(Arc<[f32]>),
}

/// A token and its prompt weight.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedToken {
    /// The token.
    pub token: ClipToken,
    /// Its weight (1.0 unless the prompt said otherwise).
    pub weight: f64,
}

impl WeightedToken {
    fn id(id: u32, weight: f64) -> Self {
        WeightedToken {
            token: ClipToken::Id(id),
            weight,
        }
    }
}

/// One window of tokens (77 for CLIP).
pub type TokenChunk = Vec<WeightedToken>;

/// A tokenized prompt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenizedPrompt {
    /// The windows, in order.
    pub chunks: Vec<TokenChunk>,
    /// Embeddings that were named but could not be used (ComfyUI logs and skips them).
    pub warnings: Vec<String>,
}

/// How a text encoder's prompts are cut into windows (ComfyUI `SDTokenizer` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerConfig {
    /// Window length.
    pub max_length: usize,
    /// Pad each window to `max_length`.
    pub pad_to_max_length: bool,
    /// Pad the last window to at least this length.
    pub min_length: Option<usize>,
    /// Extra padding after the last end token.
    pub min_padding: Option<usize>,
    /// Token opening each window.
    pub start_token: Option<u32>,
    /// Token closing each window.
    pub end_token: Option<u32>,
    /// Padding token.
    pub pad_token: u32,
    /// Which tensor of a multi-encoder embedding file is this encoder's (`clip_l`, `clip_g`, …).
    pub embedding_key: String,
    /// Width of this encoder's token embeddings.
    pub embedding_width: usize,
}

impl TokenizerConfig {
    /// CLIP-L (SD1.x, SDXL, SD3, Flux): pads with the end token.
    pub fn clip_l() -> Self {
        TokenizerConfig {
            max_length: CLIP_MAX_LENGTH,
            pad_to_max_length: true,
            min_length: None,
            min_padding: None,
            start_token: Some(START_TOKEN),
            end_token: Some(END_TOKEN),
            pad_token: END_TOKEN,
            embedding_key: "clip_l".to_string(),
            embedding_width: 768,
        }
    }

    /// OpenCLIP ViT-bigG (SDXL, SD3): pads with 0 (`SDXLClipGTokenizer`).
    pub fn clip_g() -> Self {
        TokenizerConfig {
            pad_token: 0,
            embedding_key: "clip_g".to_string(),
            embedding_width: 1280,
            ..TokenizerConfig::clip_l()
        }
    }

    /// OpenCLIP ViT-H (SD2.x): pads with 0 (`SD2ClipHTokenizer`).
    pub fn clip_h() -> Self {
        TokenizerConfig {
            pad_token: 0,
            embedding_key: "clip_h".to_string(),
            embedding_width: 1024,
            ..TokenizerConfig::clip_l()
        }
    }
}

/// Byte-level BPE with OpenAI's CLIP vocabulary, built once per process.
fn bpe() -> &'static instant_clip_tokenizer::Tokenizer {
    static BPE: OnceLock<instant_clip_tokenizer::Tokenizer> = OnceLock::new();
    BPE.get_or_init(instant_clip_tokenizer::Tokenizer::new)
}

/// CLIP's word pattern (`transformers` `CLIPTokenizer.pat`), special tokens first.
fn word_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        // A fixed pattern: it compiles or the crate's own tests fail.
        Regex::new(
            r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        )
        .unwrap_or_else(|_| unreachable!("the CLIP word pattern is valid"))
    })
}

/// `transformers`' `BasicTokenizer(strip_accents=False, do_split_on_punc=False)` followed by
/// `lower()`: what `CLIPTokenizer` does to text when `ftfy` is not installed.
fn basic_clean(text: &str) -> String {
    let mut cleaned = String::with_capacity(text.len());
    for c in text.chars() {
        let cp = c as u32;
        if cp == 0 || cp == 0xFFFD || is_control(c) {
            continue;
        }
        if is_whitespace(c) {
            cleaned.push(' ');
        } else if is_cjk_ideograph(cp) {
            cleaned.push(' ');
            cleaned.push(c);
            cleaned.push(' ');
        } else {
            cleaned.push(c);
        }
    }
    let normalized: String = cleaned.nfc().collect();
    let words: Vec<String> = normalized
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    words.join(" ")
}

/// `transformers` `_is_control`: any `C*` category except tab, newline, carriage return.
fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
    )
}

/// `transformers` `_is_whitespace`.
fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
        || get_general_category(c) == GeneralCategory::SpaceSeparator
}

/// `BasicTokenizer._is_chinese_char`: the CJK Unified Ideograph blocks.
fn is_cjk_ideograph(cp: u32) -> bool {
    matches!(cp,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// Hugging Face `CLIPTokenizer(text)["input_ids"]` without the start and end tokens.
pub fn clip_token_ids(text: &str) -> Vec<u32> {
    let cleaned = basic_clean(text);
    let bpe = bpe();
    let mut ids = Vec::new();
    let mut pieces = Vec::new();
    for word in word_pattern().find_iter(&cleaned) {
        match word.as_str() {
            "<|startoftext|>" => ids.push(START_TOKEN),
            "<|endoftext|>" => ids.push(END_TOKEN),
            word => {
                pieces.clear();
                bpe.encode(word, &mut pieces);
                ids.extend(pieces.iter().map(|t| u32::from(t.to_u16())));
            }
        }
    }
    ids
}

/// A group of tokens kept together in one window when it fits.
type Group = Vec<WeightedToken>;

/// ComfyUI's `SDTokenizer` for one text encoder.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    config: TokenizerConfig,
}

impl ClipTokenizer {
    /// A tokenizer cutting windows as `config` says.
    pub fn new(config: TokenizerConfig) -> Self {
        ClipTokenizer { config }
    }

    /// Its configuration.
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// `text` as weighted windows (ComfyUI `tokenize_with_weights`). Without `embeddings`,
    /// `embedding:name` is ordinary text, as in ComfyUI without an embeddings folder.
    pub fn tokenize(
        &self,
        text: &str,
        embeddings: Option<&dyn EmbeddingSource>,
    ) -> Result<TokenizedPrompt> {
        let mut warnings = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        for (segment, weight) in parse_prompt_weights(text)? {
            for word in split_embeddings(&segment) {
                let text_part = match (word.strip_prefix(EMBEDDING_IDENTIFIER), embeddings) {
                    (Some(rest), Some(source)) => {
                        let name = rest.trim_matches('\n');
                        let (found, leftover) = self.try_embedding(name, source, &mut warnings);
                        if let Some(group) = found {
                            groups.push(
                                group
                                    .into_iter()
                                    .map(|row| WeightedToken {
                                        token: ClipToken::Embedding(row),
                                        weight,
                                    })
                                    .collect(),
                            );
                        }
                        if leftover.is_empty() {
                            continue;
                        }
                        leftover
                    }
                    _ => word.to_string(),
                };
                groups.push(
                    clip_token_ids(&text_part)
                        .into_iter()
                        .map(|id| WeightedToken::id(id, weight))
                        .collect(),
                );
            }
        }
        Ok(TokenizedPrompt {
            chunks: self.windows(groups),
            warnings,
        })
    }

    /// ComfyUI `_try_get_embedding`: the first whitespace-separated word names the embedding,
    /// the rest is text to tokenize; a name with trailing commas is retried without them.
    fn try_embedding(
        &self,
        name: &str,
        source: &dyn EmbeddingSource,
        warnings: &mut Vec<String>,
    ) -> (Option<Vec<Arc<[f32]>>>, String) {
        let mut words = name.split_whitespace();
        let Some(first) = words.next() else {
            // ComfyUI raises on `embedding:` with no name; nothing to look up here.
            warnings.push("`embedding:` without a name".to_string());
            return (None, String::new());
        };
        let mut leftover = words.collect::<Vec<_>>().join(" ");
        let mut found = self.load_embedding(first, source, warnings);
        if found.is_none() {
            let stripped = first.trim_matches(',');
            if stripped.len() < first.len() {
                found = self.load_embedding(stripped, source, warnings);
                // ComfyUI keeps `first[len(stripped):]`, the name's tail by length.
                let tail: String = first.chars().skip(stripped.chars().count()).collect();
                leftover = format!("{tail} {leftover}");
            }
        }
        if found.is_none() {
            warnings.push(format!("embedding:{first} does not exist, ignoring"));
        }
        (found, leftover)
    }

    fn load_embedding(
        &self,
        name: &str,
        source: &dyn EmbeddingSource,
        warnings: &mut Vec<String>,
    ) -> Option<Vec<Arc<[f32]>>> {
        match source.load(
            name,
            &self.config.embedding_key,
            self.config.embedding_width,
        ) {
            Ok(Some(embedding)) => {
                let rows: Vec<Arc<[f32]>> = (0..embedding.rows())
                    .filter_map(|i| embedding.row(i).map(Arc::from))
                    .collect();
                (!rows.is_empty()).then_some(rows)
            }
            Ok(None) => None,
            Err(error) => {
                warnings.push(format!("error loading embedding {name}: {error}"));
                None
            }
        }
    }

    /// ComfyUI's window filling: groups move whole to the next window unless they are long.
    fn windows(&self, groups: Vec<Group>) -> Vec<TokenChunk> {
        let config = &self.config;
        let has_end = usize::from(config.end_token.is_some());
        let has_start = usize::from(config.start_token.is_some());
        // A window must hold at least one token besides start and end, or filling never ends.
        let max_length = config.max_length.max(has_start + has_end + 1);
        let pad = || WeightedToken::id(config.pad_token, 1.0);
        let new_window = || -> TokenChunk {
            let mut window = Vec::with_capacity(config.max_length);
            if let Some(start) = config.start_token {
                window.push(WeightedToken::id(start, 1.0));
            }
            window
        };
        let mut windows = Vec::new();
        let mut window = new_window();
        for mut group in groups {
            let is_large = group.len() >= MAX_WORD_LENGTH;
            while !group.is_empty() {
                if group.len() + window.len() > max_length - has_end {
                    let remaining = max_length
                        .saturating_sub(window.len())
                        .saturating_sub(has_end);
                    // ComfyUI loops forever on a short group that no window can hold (only
                    // possible with short custom windows); Kiln splits it like a long one.
                    let fresh = window.len() == has_start;
                    if is_large || fresh {
                        let rest = group.split_off(remaining.min(group.len()));
                        window.append(&mut group);
                        group = rest;
                        if let Some(end) = config.end_token {
                            window.push(WeightedToken::id(end, 1.0));
                        }
                    } else {
                        if let Some(end) = config.end_token {
                            window.push(WeightedToken::id(end, 1.0));
                        }
                        if config.pad_to_max_length {
                            window.extend(std::iter::repeat_with(pad).take(remaining));
                        }
                    }
                    windows.push(std::mem::replace(&mut window, new_window()));
                } else {
                    window.append(&mut group);
                }
            }
        }
        if let Some(end) = config.end_token {
            window.push(WeightedToken::id(end, 1.0));
        }
        if let Some(extra) = config.min_padding {
            window.extend(std::iter::repeat_with(pad).take(extra));
        }
        if config.pad_to_max_length && window.len() < max_length {
            let missing = max_length - window.len();
            window.extend(std::iter::repeat_with(pad).take(missing));
        }
        if let Some(min) = config.min_length {
            if window.len() < min {
                let missing = min - window.len();
                window.extend(std::iter::repeat_with(pad).take(missing));
            }
        }
        windows.push(window);
        windows
    }
}

/// ComfyUI's `re.split(' embedding:|\nembedding:')` with the identifier put back on every piece
/// after the first, empty pieces dropped (the T5 tokenizer splits the same way).
pub(crate) fn split_embeddings(segment: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = segment;
    let mut first = true;
    loop {
        let next = [" ", "\n"]
            .iter()
            .filter_map(|sep| {
                rest.match_indices(&format!("{sep}{EMBEDDING_IDENTIFIER}"))
                    .next()
                    .map(|(at, _)| at)
            })
            .min();
        let (piece, tail) = match next {
            Some(at) => (
                &rest[..at],
                Some(&rest[at + 1 + EMBEDDING_IDENTIFIER.len()..]),
            ),
            None => (rest, None),
        };
        let piece = if first {
            piece.to_string()
        } else {
            format!("{EMBEDDING_IDENTIFIER}{piece}")
        };
        if !piece.is_empty() {
            pieces.push(piece);
        }
        first = false;
        match tail {
            Some(tail) => rest = tail,
            None => break,
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_embeddings_matches_python_re_split() {
        assert_eq!(split_embeddings("a embedding:x b"), ["a", "embedding:x b"]);
        assert_eq!(split_embeddings("embedding:x"), ["embedding:x"]);
        assert_eq!(
            split_embeddings(" embedding:x\nembedding:y"),
            ["embedding:x", "embedding:y"]
        );
        assert_eq!(split_embeddings(""), Vec::<String>::new());
        assert_eq!(split_embeddings("aembedding:x"), ["aembedding:x"]);
    }

    #[test]
    fn tiny_custom_windows_still_terminate() {
        let config = TokenizerConfig {
            max_length: 1,
            ..TokenizerConfig::clip_l()
        };
        let got = ClipTokenizer::new(config)
            .tokenize("one two three four five six seven", None)
            .unwrap();
        assert_eq!(got.chunks.len(), 7);
        assert!(got.chunks.iter().all(|c| c.len() == 3));
    }

    #[test]
    fn basic_clean_follows_transformers() {
        assert_eq!(basic_clean("  Hello\tWORLD\u{200b}!\n"), "hello world!");
        assert_eq!(basic_clean("中文"), "中 文");
        assert_eq!(basic_clean("a\u{00a0}b"), "a b");
    }
}
