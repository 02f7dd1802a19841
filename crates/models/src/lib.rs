//! `kiln-models`: the network architectures Kiln runs — CLIP text encoders, the SD1/SD2/SDXL
//! UNet, AutoencoderKL — and the attention kernels the planner chooses between.
//!
//! Models are built over [`Weights`], a prefix into a planner-loaded
//! [`kiln_runtime::WeightStore`]. Layers ([`Linear`], [`Conv2d`], …) hold weight *names* and
//! fetch (widen, stream) tensors when they run, so one model definition serves every storage
//! dtype. Field names follow the internal naming of `docs/architecture.md` (LDM for UNet and
//! VAE, transformers for CLIP), so `new()` documents the key layout.
#![deny(missing_docs)]

mod attention;
mod clip;
mod clip_tokenizer;
mod error;
mod flux;
mod layers;
mod mmdit;
mod prompt_weights;
mod t5;
mod t5_tokenizer;
#[cfg(test)]
mod test_support;
mod textual_inversion;
mod tiled;
mod unet;
mod vae;
mod weights;

pub use attention::{
    attention, attention_heads, Attention, AttentionKernel, AttentionTrace, MemoryBudget, SplitRule,
};
pub use clip::{
    concat_sdxl_text, ClipActivation, ClipConfig, ClipHidden, ClipLayer, ClipTextEncoder, ClipUsage,
};
pub use clip_tokenizer::{
    clip_token_ids, ClipToken, ClipTokenizer, TokenChunk, TokenizedPrompt, TokenizerConfig,
    WeightedToken, CLIP_MAX_LENGTH, END_TOKEN, START_TOKEN,
};
pub use error::{ModelError, Result};
pub use flux::{Flux, FluxConfig, FLUX_DEFAULT_GUIDANCE};
pub use layers::{Conv2d, Embedding, GroupNorm, LayerNorm, Linear, RmsNorm};
pub use mmdit::{Mmdit, MmditConfig, MMDIT_HEAD_DIM};
pub use prompt_weights::{parse_prompt_weights, MAX_PROMPT_NESTING};
pub use t5::{relative_position_bucket, T5Config, T5Encoder, T5Token, T5_END_TOKEN, T5_PAD_TOKEN};
pub use t5_tokenizer::{
    t5_tokenizer_search_dirs, T5Tokenizer, T5TokenizerError, FLUX_T5_MIN_LENGTH, SD3_T5_MIN_LENGTH,
    T5_TOKENIZER_FOLDER, T5_VOCAB_ROWS,
};
pub use textual_inversion::{read_embedding, EmbeddingFolder, EmbeddingSource, TextualInversion};
pub use tiled::{tiled_scale, TileGrid, TileScale};
pub use unet::{
    sdxl_adm, sdxl_refiner_adm, timestep_embedding, AttentionHeads, CfgDenoiser, CondBatching,
    DiffusionModel, GuidedCond, LatentArea, MiddleBlock, ModelConditioning, PromptKind,
    RefinerSize, SdxlSize, TransformerProjection, Unet, UnetConfig, SDXL_SIZE_EMBEDDING_WIDTH,
};
pub use vae::{AutoencoderKl, Tiling, VaeConfig};
pub use weights::{PackedSlot, Weights};
