//! Writing images the way ComfyUI's `SaveImage` does: `clip(255·x, 0, 255)` truncated to
//! `u8`, RGB or RGBA (grey for one channel), optional `tEXt` chunks in the given order right
//! after `IHDR`, zlib at the given compress level. The file appears under its name only once it
//! is complete.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::NodesError;

/// `np.clip(255. * x, 0, 255).astype(np.uint8)`: the product in f32, truncated; NaN → 0.
pub fn to_u8(value: f32) -> u8 {
    let scaled = 255.0f32 * value;
    if scaled.is_nan() {
        0
    } else {
        // Clamped to 0..=255 first, so the cast truncates exactly as numpy's astype.
        scaled.clamp(0.0, 255.0) as u8
    }
}

/// One image's pixels, interleaved `height × width × channels` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pixels8 {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 (grey), 3 (RGB) or 4 (RGBA).
    pub channels: usize,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Writes `pixels` as a PNG at `path` with `text` chunks (`(keyword, text)`, Latin-1) in order.
/// `compress_level` is zlib's 0–9. The data goes to a hidden temporary file that is renamed
/// into place when complete, so a failure leaves nothing under `path`.
pub fn write_png(
    path: &Path,
    pixels: &Pixels8,
    text: &[(String, String)],
    compress_level: u8,
) -> Result<(), NodesError> {
    let encode_error = |reason: String| NodesError::PngEncode {
        path: path.to_path_buf(),
        reason,
    };
    let color = match pixels.channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        other => {
            return Err(encode_error(format!(
                "images must have 1, 3 or 4 channels, got {other}"
            )))
        }
    };
    let (width, height) = match (u32::try_from(pixels.width), u32::try_from(pixels.height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(encode_error(format!(
                "cannot save a {}x{} image",
                pixels.width, pixels.height
            )))
        }
    };
    let temporary = temporary_path(path);
    let result = (|| -> Result<(), NodesError> {
        let mut encoded = Vec::new();
        let mut encoder = png::Encoder::new(&mut encoded, width, height);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_deflate_compression(if compress_level == 0 {
            png::DeflateCompression::NoCompression
        } else {
            png::DeflateCompression::Level(compress_level.min(9))
        });
        for (keyword, value) in text {
            encoder
                .add_text_chunk(keyword.clone(), value.clone())
                .map_err(|e| encode_error(e.to_string()))?;
        }
        let mut writer = encoder
            .write_header()
            .map_err(|e| encode_error(e.to_string()))?;
        writer
            .write_image_data(&pixels.data)
            .map_err(|e| encode_error(e.to_string()))?;
        writer.finish().map_err(|e| encode_error(e.to_string()))?;
        let mut file = File::create(&temporary).map_err(|source| NodesError::Io {
            path: temporary.clone(),
            source,
        })?;
        file.write_all(&encoded)
            .and_then(|()| file.sync_all())
            .map_err(|source| NodesError::Io {
                path: temporary.clone(),
                source,
            })
    })();
    match result {
        Ok(()) => std::fs::rename(&temporary, path).map_err(|source| {
            let _ = std::fs::remove_file(&temporary);
            NodesError::Io {
                path: path.to_path_buf(),
                source,
            }
        }),
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            Err(error)
        }
    }
}

/// `.<name>.partial` next to `path`: hidden, and never matching a `<prefix>_<digits>_` scan.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

/// The `tEXt` chunks of a PNG file, in file order (for `kiln run` and tests).
pub fn read_png_text(path: &Path) -> Result<Vec<(String, String)>, NodesError> {
    let file = File::open(path).map_err(|source| NodesError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let reader = decoder.read_info().map_err(|e| NodesError::ImageDecode {
        input: "image".to_owned(),
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .map(|chunk| (chunk.keyword.clone(), chunk.text.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_truncates_like_numpy() {
        assert_eq!(to_u8(0.0), 0);
        assert_eq!(to_u8(1.0), 255);
        assert_eq!(to_u8(0.5), 127);
        assert_eq!(to_u8(0.999), 254);
        assert_eq!(to_u8(-3.0), 0);
        assert_eq!(to_u8(7.0), 255);
        assert_eq!(to_u8(f32::NAN), 0);
        // 255 * (1/255) in f32 is 1.0 exactly.
        assert_eq!(to_u8(1.0 / 255.0), 1);
    }

    #[test]
    fn chunks_follow_ihdr_in_order_and_failed_writes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        let pixels = Pixels8 {
            height: 2,
            width: 3,
            channels: 3,
            data: (0..18).collect(),
        };
        let text = vec![
            ("prompt".to_owned(), "{\"1\": 2}".to_owned()),
            ("workflow".to_owned(), "{}".to_owned()),
        ];
        write_png(&path, &pixels, &text, 4).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // Signature, IHDR (8 + 13 + 4 bytes), then the first tEXt chunk.
        assert_eq!(&bytes[33 + 4..33 + 8], b"tEXt");
        assert_eq!(read_png_text(&path).unwrap(), text);
        let bad = Pixels8 {
            channels: 2,
            ..pixels
        };
        let bad_path = dir.path().join("b.png");
        assert!(write_png(&bad_path, &bad, &[], 4).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
