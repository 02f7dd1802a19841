//! What `SaveImage` and `PreviewImage` share: naming each image of a batch, converting it to
//! 8 bits, adding the `prompt` and `extra_pnginfo` text chunks unless metadata is disabled, and
//! the UI result `{"images": [{"filename", "subfolder", "type"}]}`.

use std::path::Path;

use kiln_graph::{NodeInputs, Value};
use serde_json::{json, Value as Json};

use crate::error::NodesError;
use crate::png_output::{to_u8, write_png, Pixels8};
use crate::python_json::python_json_dumps;
use crate::resample::Planes;
use crate::save_path::{save_image_path, LocalTime};
use crate::types::Image;

/// Where and how a batch is saved.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SaveOptions<'a> {
    /// The folder prefixes are relative to (output or temp).
    pub(crate) folder: &'a Path,
    /// `"output"` or `"temp"`, reported as the UI `type`.
    pub(crate) kind: &'static str,
    /// zlib level (4 for SaveImage, 1 for PreviewImage).
    pub(crate) compress_level: u8,
    /// Whether text chunks are written (`--disable-metadata` clears it).
    pub(crate) metadata: bool,
}

/// The text chunks ComfyUI writes: `prompt` = `json.dumps(prompt)` when a prompt is given,
/// then one chunk per key of `extra_pnginfo` in its order.
pub fn metadata_chunks(
    prompt: Option<&Json>,
    extra_pnginfo: Option<&Json>,
) -> Vec<(String, String)> {
    let mut chunks = Vec::new();
    if let Some(prompt) = prompt.filter(|p| !p.is_null()) {
        chunks.push(("prompt".to_owned(), python_json_dumps(prompt)));
    }
    if let Some(Json::Object(extra)) = extra_pnginfo {
        for (key, value) in extra {
            chunks.push((key.clone(), python_json_dumps(value)));
        }
    }
    chunks
}

/// The hidden `prompt`/`extra_pnginfo` inputs, if present and JSON.
pub(crate) fn hidden_json<'a>(inputs: &'a NodeInputs, name: &str) -> Option<&'a Json> {
    match inputs.get(name) {
        Some(Value::Json(json)) => Some(json),
        _ => None,
    }
}

/// Saves every image of `images` under `filename_prefix` and returns the UI result.
pub(crate) fn save_images(
    images: &Image,
    filename_prefix: &str,
    chunks: &[(String, String)],
    options: SaveOptions<'_>,
) -> Result<Json, NodesError> {
    let (batch, height, width, channels) = images.dims4("images")?;
    let planes = Planes::from_nhwc(&images.pixels)?;
    let target = save_image_path(
        filename_prefix,
        options.folder,
        width,
        height,
        &LocalTime::now(),
    )?;
    let mut results = Vec::with_capacity(batch);
    let text: &[(String, String)] = if options.metadata { chunks } else { &[] };
    for b in 0..batch {
        let mut data = Vec::with_capacity(height * width * channels);
        for y in 0..height {
            for x in 0..width {
                for c in 0..channels {
                    data.push(to_u8(planes.at(b, c, y, x)));
                }
            }
        }
        let pixels = Pixels8 {
            height,
            width,
            channels,
            data,
        };
        let file = target.file_name(b);
        write_png(
            &target.folder.join(&file),
            &pixels,
            text,
            options.compress_level,
        )?;
        results.push(json!({
            "filename": file,
            "subfolder": target.subfolder,
            "type": options.kind,
        }));
    }
    Ok(json!({ "images": results }))
}
