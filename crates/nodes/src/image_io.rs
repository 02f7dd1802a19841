//! Reading images as `LoadImage`/`LoadImageMask` do (Pillow `open` + `exif_transpose` +
//! `convert`): 8-bit RGB pixels in 0..1 and the alpha channel; the input-folder listing their
//! combos show; and the file fingerprint (`IS_CHANGED` = sha256).

use std::path::Path;

use image::{DynamicImage, ImageDecoder};
use sha2::{Digest, Sha256};

use crate::error::NodesError;

/// Extensions Python's `mimetypes` maps to `image/*` (ComfyUI's `filter_files_content_types`).
const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "jpe", "gif", "bmp", "webp", "tif", "tiff", "ico", "svg", "avif", "heic",
    "heif", "pbm", "pgm", "ppm", "pnm", "ras", "rgb", "xbm", "xpm", "xwd", "ief",
];

/// The plain files directly in `dir` (not in subfolders), sorted; with `images_only`, those
/// whose extension is an image type.
pub fn list_input_files(dir: &Path, images_only: bool) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !images_only || is_image_name(name))
        .collect();
    names.sort();
    names
}

fn is_image_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// `hashlib.sha256(file bytes).hexdigest()`.
pub fn file_sha256(path: &Path) -> Result<String, NodesError> {
    let bytes = std::fs::read(path).map_err(|source| NodesError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// One decoded, EXIF-rotated image in 8 bits per channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedImage {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `height × width × 3` RGB bytes as Pillow's `convert("RGB")` gives them.
    pub rgb: Vec<u8>,
    /// `height × width` alpha bytes, when the image has an alpha channel.
    pub alpha: Option<Vec<u8>>,
}

/// Opens `path` (named by input `input`), applies its EXIF orientation and converts it to RGB
/// plus alpha as Pillow would: 16-bit colour keeps the high byte, 16-bit grey is clipped to
/// 255 (Pillow's `I;16` → `RGB`), grey is replicated.
pub fn decode_image(path: &Path, input: &str) -> Result<DecodedImage, NodesError> {
    let decode_error = |reason: String| NodesError::ImageDecode {
        input: input.to_owned(),
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(NodesError::FileNotFound {
            input: input.to_owned(),
            path: path.to_path_buf(),
        });
    }
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| decode_error(e.to_string()))?;
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decode_error(e.to_string()))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut decoded =
        DynamicImage::from_decoder(decoder).map_err(|e| decode_error(e.to_string()))?;
    decoded.apply_orientation(orientation);
    Ok(convert(&decoded))
}

fn convert(decoded: &DynamicImage) -> DecodedImage {
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    let pixels = width * height;
    let mut rgb = Vec::with_capacity(pixels * 3);
    let mut alpha = None;
    match decoded {
        DynamicImage::ImageLuma8(img) => {
            rgb.extend(img.as_raw().iter().flat_map(|&v| [v, v, v]));
        }
        DynamicImage::ImageLumaA8(img) => {
            let raw = img.as_raw();
            rgb.extend(raw.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]));
            alpha = Some(raw.chunks_exact(2).map(|p| p[1]).collect());
        }
        DynamicImage::ImageRgb8(img) => rgb.extend_from_slice(img.as_raw()),
        DynamicImage::ImageRgba8(img) => {
            let raw = img.as_raw();
            rgb.extend(raw.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]));
            alpha = Some(raw.chunks_exact(4).map(|p| p[3]).collect());
        }
        DynamicImage::ImageLuma16(img) => {
            rgb.extend(img.as_raw().iter().flat_map(|&v| {
                let clipped = v.min(255) as u8;
                [clipped, clipped, clipped]
            }));
        }
        DynamicImage::ImageLumaA16(img) => {
            let raw = img.as_raw();
            rgb.extend(raw.chunks_exact(2).flat_map(|p| {
                let v = (p[0] >> 8) as u8;
                [v, v, v]
            }));
            alpha = Some(raw.chunks_exact(2).map(|p| (p[1] >> 8) as u8).collect());
        }
        DynamicImage::ImageRgb16(img) => {
            rgb.extend(img.as_raw().iter().map(|&v| (v >> 8) as u8));
        }
        DynamicImage::ImageRgba16(img) => {
            let raw = img.as_raw();
            rgb.extend(
                raw.chunks_exact(4)
                    .flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]),
            );
            alpha = Some(raw.chunks_exact(4).map(|p| (p[3] >> 8) as u8).collect());
        }
        other => {
            let rgba = other.to_rgba8();
            let raw = rgba.as_raw();
            rgb.extend(raw.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]));
            if other.color().has_alpha() {
                alpha = Some(raw.chunks_exact(4).map(|p| p[3]).collect());
            }
        }
    }
    DecodedImage {
        width,
        height,
        rgb,
        alpha,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_is_sorted_plain_files_filtered_by_type() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.png", "a.JPG", "notes.txt"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.png")).unwrap();
        assert_eq!(list_input_files(dir.path(), true), ["a.JPG", "b.png"]);
        assert_eq!(
            list_input_files(dir.path(), false),
            ["a.JPG", "b.png", "notes.txt"]
        );
    }

    #[test]
    fn sha256_is_hex_of_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            file_sha256(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rgba_png_splits_colour_and_alpha_and_garbage_is_a_decode_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        let img = image::RgbaImage::from_raw(2, 1, vec![10, 20, 30, 255, 40, 50, 60, 0]).unwrap();
        img.save(&path).unwrap();
        let decoded = decode_image(&path, "image").unwrap();
        assert_eq!(decoded.rgb, [10, 20, 30, 40, 50, 60]);
        assert_eq!(decoded.alpha, Some(vec![255, 0]));
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"not an image").unwrap();
        assert!(matches!(
            decode_image(&bad, "image"),
            Err(NodesError::ImageDecode { ref input, .. }) if input == "image"
        ));
        assert!(matches!(
            decode_image(&dir.path().join("missing.png"), "image"),
            Err(NodesError::FileNotFound { .. })
        ));
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 2x1 JPEG is lossy, so use a PNG with an eXIf chunk: orientation 6 (rotate 90° CW)
        // turns 2 wide × 1 high into 1 wide × 2 high.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rot.png");
        let file = std::fs::File::create(&path).unwrap();
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), 2, 1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        // Big-endian TIFF header, one IFD entry: tag 0x0112 (Orientation), SHORT, 1, value 6.
        let exif: Vec<u8> = vec![
            b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0,
            0,
        ];
        writer.write_chunk(png::chunk::eXIf, &exif).unwrap();
        writer.write_image_data(&[255, 0, 0, 0, 0, 255]).unwrap();
        writer.finish().unwrap();
        let decoded = decode_image(&path, "image").unwrap();
        assert_eq!((decoded.width, decoded.height), (1, 2));
        assert_eq!(decoded.rgb, [255, 0, 0, 0, 0, 255]);
    }
}
