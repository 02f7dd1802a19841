//! `kiln-weights` opens checkpoint files and hands out their tensors, knowing nothing of model
//! architectures.
//!
//! Supported containers, detected from content (never from the extension):
//!
//! * **safetensors**, read by Kiln's own validating parser (duplicate names, overlapping or
//!   out-of-range tensors and lying header lengths are typed errors naming file and tensor);
//! * **PyTorch** `torch.save` zip archives (`.ckpt/.pt/.pth/.bin`) and the legacy pre-1.6 format,
//!   through a pickle interpreter that never executes code and refuses any global outside a
//!   short allow-list;
//! * **GGUF**, through candle's reader after a bounds-checking pre-scan.
//!
//! Files are memory-mapped; a tensor keeps its *storage* dtype ([`StorageDType`]: including fp8
//! e4m3fn/e5m2 and GGUF block quantisations) until a caller decides how to load it:
//! [`WeightFile::raw_bytes`] (zero-copy), [`WeightFile::to_f32_vec`], [`WeightFile::load`]
//! (converted on the host, then moved), [`WeightFile::load_stored`], [`WeightFile::load_raw_u8`]
//! or [`WeightFile::load_quantized`]. The [`fp8`](e4m3fn_to_f32) decoders and 256-entry tables are
//! public for device-side widening.
//!
//! ```no_run
//! use kiln_weights::{FileFormat, WeightFile};
//!
//! # fn main() -> Result<(), kiln_weights::WeightsError> {
//! let file = WeightFile::open("models/checkpoints/sd15.safetensors")?;
//! assert_eq!(file.format(), FileFormat::Safetensors);
//! for tensor in file.tensors() {
//!     println!("{} {} {:?}", tensor.name, tensor.dtype, tensor.shape);
//! }
//! let bias = file.to_f32_vec("model.diffusion_model.out.2.bias")?;
//! # let _ = bias;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod decode;
mod dtype;
mod error;
mod file;
mod fp8;
mod gguf;
mod pickle;
mod safetensors;
mod source;
mod torch;

pub use dtype::{GgufType, StorageDType};
pub use error::WeightsError;
pub use file::{FileFormat, MappedTensor, TensorInfo, WeightFile};
pub use fp8::{
    e4m3fn_to_f32, e5m2_to_f32, f32_to_e4m3fn, f32_to_e4m3fn_saturating, f32_to_e5m2,
    f32_to_e5m2_saturating, E4M3FN_TABLE, E5M2_TABLE,
};
pub use safetensors::MAX_HEADER_LEN;
