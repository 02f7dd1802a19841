//! Writes a planned file as `torch.save` does with its zip format: `archive/data.pkl` (the
//! protocol-2 pickle of `{"state_dict": OrderedDict}`), `archive/byteorder`, one uncompressed
//! `archive/data/<key>` record per tensor storage (64-byte aligned through a `FB` padding extra
//! field, as PyTorch's `inline_container` does) and `archive/version`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::encode::Encoder;
use crate::layout::FilePlan;
use crate::pickle::{state_dict_pickle, PickledTensor};
use crate::storage::{Encoding, FloatType};
use crate::Error;

/// PyTorch's record alignment.
const ALIGNMENT: u16 = 64;
/// The extra-field id PyTorch pads with: the bytes `F`, `B`.
const PADDING_HEADER_ID: u16 = u16::from_le_bytes(*b"FB");

fn storage_type(encoding: &Encoding) -> &'static str {
    match encoding {
        Encoding::Float(FloatType::F16) => "HalfStorage",
        Encoding::Float(FloatType::BF16) => "BFloat16Storage",
        Encoding::Int64 => "LongStorage",
        Encoding::Int32 => "IntStorage",
        _ => "FloatStorage",
    }
}

/// Writes `file` under `dest_dir`.
pub(crate) fn write(file: &FilePlan, dest_dir: &Path, seed: u64) -> Result<(), Error> {
    let path = dest_dir.join(&file.path);
    let zip_error = |source: zip::result::ZipError| Error::Zip {
        path: path.clone(),
        source,
    };
    let io_error = |source: std::io::Error| Error::Io {
        path: path.clone(),
        source,
    };

    let pickled: Vec<PickledTensor<'_>> = file
        .entries
        .iter()
        .enumerate()
        .map(|(index, entry)| PickledTensor {
            name: &entry.def.name,
            storage_type: storage_type(&entry.encoding),
            storage_key: index.to_string(),
            shape: &entry.def.shape,
        })
        .collect();
    let pickle = state_dict_pickle(&pickled);

    let handle = File::create(&path).map_err(io_error)?;
    let mut zip = ZipWriter::new(BufWriter::new(handle));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .with_alignment_and_header_id(ALIGNMENT, PADDING_HEADER_ID);
    zip.start_file("archive/data.pkl", options)
        .map_err(zip_error)?;
    zip.write_all(&pickle).map_err(io_error)?;
    zip.start_file("archive/byteorder", options)
        .map_err(zip_error)?;
    zip.write_all(b"little").map_err(io_error)?;
    let encoder = Encoder::new(seed, &file.entries);
    for (index, entry) in file.entries.iter().enumerate() {
        let large = entry.byte_len() as u64 >= u64::from(u32::MAX);
        zip.start_file(format!("archive/data/{index}"), options.large_file(large))
            .map_err(zip_error)?;
        zip.write_all(&encoder.bytes(entry)).map_err(io_error)?;
    }
    zip.start_file("archive/version", options)
        .map_err(zip_error)?;
    zip.write_all(b"3\n").map_err(io_error)?;
    let mut writer = zip.finish().map_err(zip_error)?;
    writer.flush().map_err(io_error)
}
