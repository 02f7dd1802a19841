//! [`workflow_from_png`]: the `prompt` (API format) and `workflow` (UI format) text chunks
//! ComfyUI's SaveImage writes into its PNGs, read without decoding any pixels.

use std::io::Cursor;

use serde_json::Value as Json;

use crate::error::GraphError;

/// What a PNG carries about the workflow that made it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkflowSource {
    /// The `prompt` chunk: the API prompt that ran.
    pub prompt: Option<Json>,
    /// The `workflow` chunk: the UI graph (`extra_pnginfo.workflow`).
    pub workflow: Option<Json>,
}

/// Reads the `prompt` and `workflow` text chunks (`tEXt`, `zTXt` or `iTXt`) of a PNG.
///
/// Only chunks before the image data are read, which is where ComfyUI puts them. A chunk that
/// is not valid JSON is ignored (ComfyUI's loader ignores it too); a file that is not a PNG
/// is an error.
pub fn workflow_from_png(bytes: &[u8]) -> Result<WorkflowSource, GraphError> {
    let reader = png::Decoder::new(Cursor::new(bytes))
        .read_info()
        .map_err(|err| GraphError::Png {
            reason: err.to_string(),
        })?;
    let info = reader.info();
    let mut texts: Vec<(String, String)> = Vec::new();
    for chunk in &info.uncompressed_latin1_text {
        texts.push((chunk.keyword.clone(), chunk.text.clone()));
    }
    for chunk in &info.compressed_latin1_text {
        if let Ok(text) = chunk.get_text() {
            texts.push((chunk.keyword.clone(), text));
        }
    }
    for chunk in &info.utf8_text {
        if let Ok(text) = chunk.get_text() {
            texts.push((chunk.keyword.clone(), text));
        }
    }
    let mut source = WorkflowSource::default();
    for (keyword, text) in texts {
        let slot = match keyword.as_str() {
            "prompt" => &mut source.prompt,
            "workflow" => &mut source.workflow,
            _ => continue,
        };
        if slot.is_none() {
            *slot = serde_json::from_str(&text).ok();
        }
    }
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_with_text(chunks: &[(&str, &str, bool)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, 1, 1);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Eight);
            for (keyword, text, compressed) in chunks {
                if *compressed {
                    encoder
                        .add_ztxt_chunk((*keyword).to_owned(), (*text).to_owned())
                        .unwrap();
                } else {
                    encoder
                        .add_text_chunk((*keyword).to_owned(), (*text).to_owned())
                        .unwrap();
                }
            }
            let mut writer = encoder.write_header().unwrap();
            writer.write_image_data(&[0]).unwrap();
        }
        bytes
    }

    #[test]
    fn reads_prompt_and_workflow_chunks() {
        let bytes = png_with_text(&[
            ("parameters", "not json", false),
            (
                "prompt",
                r#"{"3": {"class_type": "KSampler", "inputs": {}}}"#,
                false,
            ),
            ("workflow", r#"{"nodes": [], "links": []}"#, true),
        ]);
        let source = workflow_from_png(&bytes).unwrap();
        assert_eq!(source.prompt.unwrap()["3"]["class_type"], "KSampler");
        assert_eq!(source.workflow.unwrap()["nodes"], serde_json::json!([]));
    }

    #[test]
    fn missing_or_broken_chunks_are_none_and_non_png_is_an_error() {
        let bytes = png_with_text(&[("prompt", "{broken", false)]);
        assert_eq!(
            workflow_from_png(&bytes).unwrap(),
            WorkflowSource::default()
        );
        assert!(matches!(
            workflow_from_png(b"GIF89a...."),
            Err(GraphError::Png { .. })
        ));
    }
}
