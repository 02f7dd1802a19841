//! Shared by the `kiln run` parity tests: reading a uint8 fixture tensor without a tensor
//! library, PSNR, and decoding the PNG the binary wrote.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use serde_json::Value;

/// The uint8 tensor `name` of a safetensors file, read by hand (the binary's crate has no
/// tensor library).
pub(crate) fn safetensors_u8(path: &Path, name: &str) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let entry = &header[name];
    assert_eq!(entry["dtype"], "U8", "{name}");
    let offsets = entry["data_offsets"].as_array().unwrap();
    let start = 8 + header_len + offsets[0].as_u64().unwrap() as usize;
    let end = 8 + header_len + offsets[1].as_u64().unwrap() as usize;
    bytes[start..end].to_vec()
}

pub(crate) fn psnr(got: &[u8], reference: &[u8]) -> f64 {
    assert_eq!(got.len(), reference.len());
    let squared: f64 = got
        .iter()
        .zip(reference)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    let mse = squared / got.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// The RGB pixels and text chunks of a PNG.
pub(crate) fn read_png(path: &Path) -> (Vec<u8>, Vec<(String, String)>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let chunks = reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .map(|c| (c.keyword.clone(), c.text.clone()))
        .collect();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buffer).unwrap();
    assert_eq!((frame.width, frame.height), (64, 64));
    assert_eq!(frame.color_type, png::ColorType::Rgb);
    buffer.truncate(frame.buffer_size());
    (buffer, chunks)
}
