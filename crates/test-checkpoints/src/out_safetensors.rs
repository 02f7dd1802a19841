//! Writes a planned file with the `safetensors` crate's `serialize_to_file`, generating each
//! tensor's bytes only when the serializer asks for them.

use std::borrow::Cow;
use std::path::Path;

use safetensors::tensor::{Dtype, View};

use crate::encode::Encoder;
use crate::fp8::Fp8Kind;
use crate::layout::{Entry, FilePlan, Format};
use crate::storage::{Encoding, FloatType};
use crate::Error;

/// The safetensors dtype of an encoding.
pub(crate) fn dtype(encoding: &Encoding) -> Dtype {
    match encoding {
        Encoding::Float(FloatType::F32) | Encoding::ScaleOf(_) => Dtype::F32,
        Encoding::Float(FloatType::F16) => Dtype::F16,
        Encoding::Float(FloatType::BF16) => Dtype::BF16,
        Encoding::Fp8(Fp8Kind::E4M3)
        | Encoding::ScaledFp8(Fp8Kind::E4M3)
        | Encoding::Marker(Fp8Kind::E4M3) => Dtype::F8_E4M3,
        Encoding::Fp8(Fp8Kind::E5M2)
        | Encoding::ScaledFp8(Fp8Kind::E5M2)
        | Encoding::Marker(Fp8Kind::E5M2) => Dtype::F8_E5M2,
        Encoding::Int64 => Dtype::I64,
        Encoding::Int32 => Dtype::I32,
    }
}

/// A tensor whose bytes are produced when the serializer reads them.
struct LazyTensor<'a> {
    entry: &'a Entry,
    encoder: &'a Encoder<'a>,
}

impl View for LazyTensor<'_> {
    fn dtype(&self) -> Dtype {
        dtype(&self.entry.encoding)
    }

    fn shape(&self) -> &[usize] {
        &self.entry.def.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.encoder.bytes(self.entry))
    }

    fn data_len(&self) -> usize {
        self.entry.byte_len()
    }
}

/// Writes `file` under `dest_dir`.
pub(crate) fn write(file: &FilePlan, dest_dir: &Path, seed: u64) -> Result<(), Error> {
    let path = dest_dir.join(&file.path);
    let metadata = match &file.format {
        Format::Safetensors { metadata } => metadata.clone(),
        _ => None,
    };
    let encoder = Encoder::new(seed, &file.entries);
    let views = file.entries.iter().map(|entry| {
        (
            entry.def.name.as_str(),
            LazyTensor {
                entry,
                encoder: &encoder,
            },
        )
    });
    safetensors::serialize_to_file(views, metadata, &path)
        .map_err(|source| Error::Safetensors { path, source })
}
