//! Image work behind the file routes: checking that an upload is an image, `/view`'s
//! `preview=` re-encoding and `channel=` extraction, and `/upload/mask`'s alpha merge that
//! keeps the original PNG's text chunks.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbaImage};

use crate::error::ServerError;

/// The largest side an uploaded or served image may have.
const MAX_SIDE: u32 = 16_384;
/// The most memory one decode may allocate.
const MAX_DECODE_BYTES: u64 = 1 << 30;

/// Decodes `bytes` (PNG, JPEG or WebP), bounded in size and memory.
pub(crate) fn decode(bytes: &[u8], name: &str) -> Result<DynamicImage, ServerError> {
    let not_an_image = |reason: String| ServerError::NotAnImage {
        name: name.to_owned(),
        reason,
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|error| not_an_image(error.to_string()))?;
    if reader.format().is_none() {
        return Err(not_an_image("unknown image format".to_owned()));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader
        .decode()
        .map_err(|error| not_an_image(error.to_string()))
}

/// `/view`'s `channel=` values other than the default `rgba`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Channel {
    /// The colour channels only.
    Rgb,
    /// Black with the image's alpha.
    Alpha,
}

/// The image reduced to `channel`, as PNG.
pub(crate) fn channel_png(image: &DynamicImage, channel: Channel) -> Result<Vec<u8>, ServerError> {
    let reduced = match channel {
        Channel::Rgb => DynamicImage::ImageRgb8(image.to_rgb8()),
        Channel::Alpha => {
            let rgba = image.to_rgba8();
            let alpha = RgbaImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                image::Rgba([0, 0, 0, rgba.get_pixel(x, y)[3]])
            });
            DynamicImage::ImageRgba8(alpha)
        }
    };
    encode(&reduced, ImageFormat::Png, "channel image")
}

/// `/view`'s `preview=FORMAT;QUALITY`: JPEG at that quality, or WebP (lossless: the image
/// crate has no lossy WebP encoder) for `webp` and for images with alpha wanted.
pub(crate) fn preview(
    image: &DynamicImage,
    wants_jpeg: bool,
    quality: u8,
) -> Result<(Vec<u8>, &'static str), ServerError> {
    if wants_jpeg {
        let rgb = image.to_rgb8();
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100))
            .encode_image(&rgb)
            .map_err(|error| ServerError::Encode {
                what: "JPEG preview".to_owned(),
                reason: error.to_string(),
            })?;
        Ok((bytes, "image/jpeg"))
    } else {
        let rgba = DynamicImage::ImageRgba8(image.to_rgba8());
        Ok((
            encode(&rgba, ImageFormat::WebP, "WebP preview")?,
            "image/webp",
        ))
    }
}

fn encode(image: &DynamicImage, format: ImageFormat, what: &str) -> Result<Vec<u8>, ServerError> {
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, format)
        .map_err(|error| ServerError::Encode {
            what: what.to_owned(),
            reason: error.to_string(),
        })?;
    Ok(bytes.into_inner())
}

/// `/upload/mask`: the original image with the mask's alpha channel, as PNG, keeping the
/// original's `tEXt` chunks (the workflow and prompt ComfyUI stored there).
pub(crate) fn merge_mask(
    original_bytes: &[u8],
    original_name: &str,
    mask_bytes: &[u8],
    mask_name: &str,
) -> Result<Vec<u8>, ServerError> {
    let original = decode(original_bytes, original_name)?;
    let mask = decode(mask_bytes, mask_name)?.to_rgba8();
    let mut merged = original.to_rgba8();
    if merged.dimensions() != mask.dimensions() {
        return Err(ServerError::bad_request(format!(
            "mask is {}x{}, the image {}x{}",
            mask.width(),
            mask.height(),
            merged.width(),
            merged.height()
        )));
    }
    for (pixel, mask_pixel) in merged.pixels_mut().zip(mask.pixels()) {
        pixel[3] = mask_pixel[3];
    }
    let texts = png_text_chunks(original_bytes);
    write_png(&merged, &texts)
}

/// The `tEXt` chunks of a PNG (none for other formats or unreadable files).
fn png_text_chunks(bytes: &[u8]) -> Vec<(String, String)> {
    let decoder = png::Decoder::new(Cursor::new(bytes));
    match decoder.read_info() {
        Ok(reader) => reader
            .info()
            .uncompressed_latin1_text
            .iter()
            .map(|chunk| (chunk.keyword.clone(), chunk.text.clone()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn write_png(image: &RgbaImage, texts: &[(String, String)]) -> Result<Vec<u8>, ServerError> {
    let failed = |error: png::EncodingError| ServerError::Encode {
        what: "masked PNG".to_owned(),
        reason: error.to_string(),
    };
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, image.width(), image.height());
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        for (keyword, text) in texts {
            encoder
                .add_text_chunk(keyword.clone(), text.clone())
                .map_err(failed)?;
        }
        let mut writer = encoder.write_header().map_err(failed)?;
        writer.write_image_data(image.as_raw()).map_err(failed)?;
        writer.finish().map_err(failed)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_with_text(alpha: u8) -> Vec<u8> {
        let image = RgbaImage::from_pixel(4, 3, image::Rgba([200, 100, 50, alpha]));
        write_png(&image, &[("prompt".to_owned(), "{\"1\": {}}".to_owned())]).unwrap()
    }

    #[test]
    fn garbage_is_not_an_image() {
        assert!(matches!(
            decode(b"<html>not an image</html>", "x.png"),
            Err(ServerError::NotAnImage { .. })
        ));
        assert!(decode(&png_with_text(255), "x.png").is_ok());
    }

    #[test]
    fn mask_alpha_lands_on_the_original_with_its_text() {
        let merged = merge_mask(&png_with_text(255), "o.png", &png_with_text(7), "m.png").unwrap();
        let image = decode(&merged, "merged.png").unwrap().to_rgba8();
        assert_eq!(image.get_pixel(1, 1).0, [200, 100, 50, 7]);
        assert_eq!(
            png_text_chunks(&merged),
            vec![("prompt".to_owned(), "{\"1\": {}}".to_owned())]
        );
        let small = write_png(&RgbaImage::new(2, 2), &[]).unwrap();
        assert!(matches!(
            merge_mask(&png_with_text(255), "o.png", &small, "m.png"),
            Err(ServerError::BadRequest { .. })
        ));
    }

    #[test]
    fn channels_and_previews_encode() {
        let image = decode(&png_with_text(9), "x.png").unwrap();
        let alpha = decode(&channel_png(&image, Channel::Alpha).unwrap(), "a").unwrap();
        assert_eq!(alpha.to_rgba8().get_pixel(0, 0).0, [0, 0, 0, 9]);
        let rgb = decode(&channel_png(&image, Channel::Rgb).unwrap(), "rgb").unwrap();
        assert!(!rgb.color().has_alpha());
        let (jpeg, mime) = preview(&image, true, 90).unwrap();
        assert_eq!(mime, "image/jpeg");
        assert!(jpeg.starts_with(&[0xFF, 0xD8]));
        let (webp, mime) = preview(&image, false, 90).unwrap();
        assert_eq!(mime, "image/webp");
        assert!(webp.starts_with(b"RIFF"));
    }
}
