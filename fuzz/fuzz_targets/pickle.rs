//! Fuzzes the pickle interpreter: odd first bytes put the rest behind the legacy `torch.save`
//! magic (reaching the interpreter directly); even ones store it as `archive/data.pkl` in a zip.
#![no_main]

use std::io::{Cursor, Write};

use libfuzzer_sys::fuzz_target;
use zip::write::SimpleFileOptions;

mod exercise;

const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
];

fn zipped(pickle: &[u8]) -> Option<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).ok()?;
    zip.write_all(pickle).ok()?;
    zip.start_file("archive/data/0", stored).ok()?;
    zip.write_all(&[0u8; 64]).ok()?;
    Some(zip.finish().ok()?.into_inner())
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 1 {
        let mut bytes = LEGACY_MAGIC.to_vec();
        bytes.extend_from_slice(rest);
        bytes
    } else {
        let Some(bytes) = zipped(rest) else { return };
        bytes
    };
    exercise::exercise("fuzz.pt", bytes);
});
