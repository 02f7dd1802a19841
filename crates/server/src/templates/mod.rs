//! The workflow templates embedded in the binary (ComfyUI's classic SD1.5 default graph,
//! img2img, LoRA and SDXL, in the frontend's UI format) and the two ways the official
//! frontend finds them: the core `/templates/` overlay (`index.json`, `<name>.json`,
//! `<name>-1.webp`; a configured templates folder wins file by file) and the custom-module
//! route `/workflow_templates/kiln/<name>.json` (`<name>.jpg` thumbnails).

use axum::extract::Path;
use axum::http::header::CONTENT_TYPE;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Json as Reply;
use serde_json::{json, Value as Json};

use crate::error::ServerError;

/// The module name the custom-template route lists Kiln's templates under.
pub(crate) const MODULE_NAME: &str = "kiln";

/// Bytes of `v1-5-pruned-emaonly-fp16.safetensors`, shown as the download size.
const SD15_CHECKPOINT_BYTES: u64 = 2_132_625_894;
/// Bytes of `sd_xl_base_1.0.safetensors`.
const SDXL_CHECKPOINT_BYTES: u64 = 6_938_078_334;

/// One embedded template: its index entry and its files.
struct EmbeddedTemplate {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    tags: &'static [&'static str],
    model: &'static str,
    model_bytes: u64,
    workflow: &'static str,
    /// The core thumbnail, `<name>-1.webp`.
    thumbnail_webp: &'static [u8],
    /// The custom-module thumbnail, `<name>.jpg`.
    thumbnail_jpg: &'static [u8],
}

/// Every embedded template, in the order the dialog shows them; `default` is what
/// `/?template=default` opens.
const TEMPLATES: [EmbeddedTemplate; 4] = [
    EmbeddedTemplate {
        name: "default",
        title: "Image Generation (SD1.5)",
        description: "ComfyUI's classic default graph: text to image with Stable Diffusion 1.5.",
        tags: &["Text to Image", "Image"],
        model: "SD1.5",
        model_bytes: SD15_CHECKPOINT_BYTES,
        workflow: include_str!("default.json"),
        thumbnail_webp: include_bytes!("default-1.webp"),
        thumbnail_jpg: include_bytes!("default.jpg"),
    },
    EmbeddedTemplate {
        name: "sd15_img2img",
        title: "Image to Image (SD1.5)",
        description:
            "Redraw an input image from a prompt with Stable Diffusion 1.5 (denoise 0.87).",
        tags: &["Image to Image", "Image"],
        model: "SD1.5",
        model_bytes: SD15_CHECKPOINT_BYTES,
        workflow: include_str!("sd15_img2img.json"),
        thumbnail_webp: include_bytes!("sd15_img2img-1.webp"),
        thumbnail_jpg: include_bytes!("sd15_img2img.jpg"),
    },
    EmbeddedTemplate {
        name: "sd15_lora",
        title: "LoRA (SD1.5)",
        description:
            "Text to image with Stable Diffusion 1.5 and one LoRA applied to the model and CLIP.",
        tags: &["Text to Image", "LoRA", "Image"],
        model: "SD1.5",
        model_bytes: SD15_CHECKPOINT_BYTES,
        workflow: include_str!("sd15_lora.json"),
        thumbnail_webp: include_bytes!("sd15_lora-1.webp"),
        thumbnail_jpg: include_bytes!("sd15_lora.jpg"),
    },
    EmbeddedTemplate {
        name: "sdxl_txt2img",
        title: "Image Generation (SDXL)",
        description: "Text to image at 1024×1024 with the SDXL 1.0 base model.",
        tags: &["Text to Image", "Image"],
        model: "SDXL",
        model_bytes: SDXL_CHECKPOINT_BYTES,
        workflow: include_str!("sdxl_txt2img.json"),
        thumbnail_webp: include_bytes!("sdxl_txt2img-1.webp"),
        thumbnail_jpg: include_bytes!("sdxl_txt2img.jpg"),
    },
];

/// The names of the embedded templates.
pub(crate) fn names() -> Vec<&'static str> {
    TEMPLATES.iter().map(|template| template.name).collect()
}

/// The core index (`/templates/index.json`): one "Image" category, as the template packages
/// lay theirs out.
fn index() -> Json {
    let templates: Vec<Json> = TEMPLATES
        .iter()
        .map(|template| {
            json!({
                "name": template.name,
                "title": template.title,
                "description": template.description,
                "mediaType": "image",
                "mediaSubtype": "webp",
                "tags": template.tags,
                "models": [template.model],
                "date": "2025-01-01",
                "size": template.model_bytes,
                "vram": 0,
                "openSource": true,
                "usage": 0,
                "searchRank": 0,
                "logos": [],
            })
        })
        .collect();
    json!([{
        "moduleName": "default",
        "category": "Foundation",
        "title": "Image",
        "icon": "icon-[lucide--image]",
        "type": "image",
        "isEssential": true,
        "templates": templates,
    }])
}

/// The embedded file named `file` under `/templates/`, with its content type.
fn core_file(file: &str) -> Option<(&'static str, Vec<u8>)> {
    match file {
        "index.json" => return Some(("application/json", index().to_string().into_bytes())),
        "index_logo.json" => return Some(("application/json", b"{}".to_vec())),
        _ => {}
    }
    TEMPLATES.iter().find_map(|template| {
        if file.strip_suffix(".json") == Some(template.name) {
            Some(("application/json", template.workflow.as_bytes().to_vec()))
        } else if file.strip_suffix("-1.webp") == Some(template.name) {
            Some(("image/webp", template.thumbnail_webp.to_vec()))
        } else {
            None
        }
    })
}

/// The embedded file named `file` under `/workflow_templates/kiln/`.
fn module_file(file: &str) -> Option<(&'static str, Vec<u8>)> {
    TEMPLATES.iter().find_map(|template| {
        if file.strip_suffix(".json") == Some(template.name) {
            Some(("application/json", template.workflow.as_bytes().to_vec()))
        } else if file.strip_suffix(".jpg") == Some(template.name) {
            Some(("image/jpeg", template.thumbnail_jpg.to_vec()))
        } else {
            None
        }
    })
}

/// The embedded `/templates/` files as a service: nested at `/templates` alone, or as the
/// fallback of the templates folder so that folder's files win. Names are matched exactly,
/// so `..` and every other path outside the table is a 404.
pub(crate) fn embedded_core_service() -> MethodRouter {
    get(|uri: Uri| async move {
        let file = uri.path().trim_start_matches('/');
        match core_file(file) {
            Some((content_type, body)) => ([(CONTENT_TYPE, content_type)], body).into_response(),
            None => ServerError::not_found(format!("template file {file}")).into_response(),
        }
    })
}

/// `GET /workflow_templates`: `{"kiln": [names]}`.
pub(crate) async fn module_list() -> Reply<Json> {
    Reply(json!({ MODULE_NAME: names() }))
}

/// `GET /workflow_templates/{module}/{file}`: a template (`<name>.json`) or its thumbnail
/// (`<name>.jpg`) of the `kiln` module.
pub(crate) async fn module_asset(
    Path((module, file)): Path<(String, String)>,
) -> Result<Response, ServerError> {
    let found = (module == MODULE_NAME)
        .then(|| module_file(&file))
        .flatten()
        .ok_or_else(|| ServerError::not_found(format!("workflow template {module}/{file}")))?;
    let (content_type, body) = found;
    Ok(([(CONTENT_TYPE, content_type)], body).into_response())
}

/// `GET /global_subgraphs`: no blueprint subgraphs (ComfyUI answers `{}` without custom nodes).
pub(crate) async fn global_subgraphs() -> Reply<Json> {
    Reply(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_a_ui_workflow_with_its_thumbnails() {
        for template in &TEMPLATES {
            let workflow: Json = serde_json::from_str(template.workflow).unwrap();
            assert_eq!(workflow["version"], json!(0.4), "{}", template.name);
            assert!(workflow["nodes"].as_array().is_some_and(|n| !n.is_empty()));
            assert!(template.thumbnail_webp.starts_with(b"RIFF"));
            assert!(template.thumbnail_jpg.starts_with(&[0xFF, 0xD8]));
        }
    }

    #[test]
    fn lookups_match_exact_names_only() {
        assert!(core_file("default.json").is_some());
        assert!(core_file("default-1.webp").is_some());
        assert!(core_file("default.jpg").is_none());
        assert!(core_file("../default.json").is_none());
        assert!(core_file("nope.json").is_none());
        assert!(module_file("sdxl_txt2img.jpg").is_some());
        assert!(module_file("default-1.webp").is_none());
    }
}
