//! The MMDiT of SD3 medium, SD3.5 medium (MMDiT-X) and SD3.5 large, in SAI naming
//! (`joint_blocks.0.x_block.attn.qkv.weight`), matching ComfyUI's
//! `comfy/ldm/modules/diffusionmodules/mmdit.py` (`OpenAISignatureMMDITWrapper`) as
//! `model_base.SD3` runs it.

mod block;
mod config;
mod embedders;
mod final_layer;
mod model;
mod self_attention;

pub use config::{MmditConfig, MMDIT_HEAD_DIM};
pub use model::Mmdit;
