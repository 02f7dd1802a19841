//! `/view`, `/view_metadata/{folder}`, `/upload/image`, `/upload/mask`: reading and writing
//! files in the input, output and temp folders.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json as Reply;
use kiln_folders::FoldersError;
use serde_json::{json, Value as Json};

use super::wire::QueryArgs;
use crate::error::{ApiResult, ServerError};
use crate::files::{save_upload, upload_directory, view_path};
use crate::images::{self, Channel};
use crate::security::{parse_json, PathError};
use crate::state::{blocking, AppState};

/// The largest safetensors header `/view_metadata` reads.
const MAX_SAFETENSORS_HEADER: u64 = 100 * 1024 * 1024;

/// `GET /view?filename=&type=&subfolder=&preview=&channel=`.
pub(crate) async fn view(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let query = QueryArgs(query);
    let filename = query
        .text("filename")
        .ok_or_else(|| ServerError::not_found("file"))?;
    let path = view_path(
        &state.config().folders,
        filename,
        query.text("type"),
        query.text("subfolder"),
    )?;
    let preview = query.text("preview").map(str::to_owned);
    let channel = query.text("channel").unwrap_or("").to_owned();
    blocking(move || view_file(path, preview.as_deref(), &channel)).await
}

fn view_file(path: PathBuf, preview: Option<&str>, channel: &str) -> ApiResult<Response> {
    if !path.is_file() {
        return Err(ServerError::not_found("file"));
    }
    let bytes = std::fs::read(&path).map_err(ServerError::io(&path))?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(preview) = preview {
        let mut parts = preview.split(';');
        let wants_jpeg = parts.next() == Some("jpeg") && !channel.contains('a');
        let quality = parts
            .next_back()
            .and_then(|q| q.trim().parse().ok())
            .unwrap_or(90);
        let image = images::decode(&bytes, &name)?;
        let (encoded, mime) = images::preview(&image, wants_jpeg, quality)?;
        return Ok(([(CONTENT_TYPE, mime.to_owned())], encoded).into_response());
    }
    let reduced = match channel {
        "rgb" => Some(Channel::Rgb),
        "a" => Some(Channel::Alpha),
        _ => None,
    };
    if let Some(channel) = reduced {
        let png = images::channel_png(&images::decode(&bytes, &name)?, channel)?;
        return Ok(([(CONTENT_TYPE, "image/png".to_owned())], png).into_response());
    }
    let mut mime = mime_guess::from_path(&path)
        .first_or_octet_stream()
        .essence_str()
        .to_owned();
    // ComfyUI never lets an output file run as a page or script in the server's origin.
    if matches!(
        mime.as_str(),
        "text/html"
            | "text/html-sandboxed"
            | "application/xhtml+xml"
            | "text/javascript"
            | "application/javascript"
            | "text/css"
            | "image/svg+xml"
    ) {
        mime = "application/octet-stream".to_owned();
    }
    let disposition = format!("filename=\"{}\"", header_safe(&name));
    Ok((
        [
            (CONTENT_TYPE, mime),
            (CONTENT_DISPOSITION, disposition),
            (CACHE_CONTROL, "no-cache".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

/// A file name fit for a quoted header parameter.
fn header_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() || !c.is_ascii() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// `GET /view_metadata/{folder}?filename=x.safetensors`: the file's `__metadata__`.
pub(crate) async fn view_metadata(
    State(state): State<AppState>,
    Path(folder): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Reply<Json>> {
    let query = QueryArgs(query);
    let filename = query
        .text("filename")
        .filter(|name| name.ends_with(".safetensors") || name.ends_with(".sft"))
        .ok_or_else(|| ServerError::not_found("safetensors file"))?
        .to_owned();
    let folders = state.config().folders.clone();
    blocking(move || {
        let path = folders
            .try_resolve(&folder, &filename)
            .map_err(|error| match error {
                FoldersError::UnsafeModelName { name, .. } => ServerError::Path {
                    field: "filename",
                    source: PathError::ParentComponent { path: name },
                },
                _ => ServerError::not_found(format!("{folder}/{filename}")),
            })?;
        safetensors_metadata(&path).map(Reply)
    })
    .await
}

fn safetensors_metadata(path: &std::path::Path) -> ApiResult<Json> {
    let mut file = std::fs::File::open(path).map_err(ServerError::io(path))?;
    let mut length = [0_u8; 8];
    file.read_exact(&mut length)
        .map_err(|_| ServerError::bad_request("not a safetensors file"))?;
    let length = u64::from_le_bytes(length);
    if length > MAX_SAFETENSORS_HEADER {
        return Err(ServerError::bad_request("safetensors header too large"));
    }
    let mut header = Vec::new();
    file.take(length)
        .read_to_end(&mut header)
        .map_err(ServerError::io(path))?;
    let header = parse_json(&header)?;
    Ok(header.get("__metadata__").cloned().unwrap_or(json!({})))
}

/// The fields of an upload form.
struct UploadForm {
    name: String,
    bytes: Vec<u8>,
    type_name: Option<String>,
    subfolder: String,
    overwrite: bool,
    original_ref: Option<Json>,
}

impl UploadForm {
    async fn read(multipart: Result<Multipart, MultipartRejection>) -> ApiResult<UploadForm> {
        let mut multipart =
            multipart.map_err(|rejection| ServerError::bad_request(rejection.body_text()))?;
        let mut image = None;
        let mut fields = HashMap::new();
        while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or("").to_owned();
            if name == "image" {
                let file_name = field.file_name().unwrap_or("").to_owned();
                let bytes = field.bytes().await.map_err(multipart_error)?;
                image = Some((file_name, bytes.to_vec()));
            } else {
                let text = field.text().await.map_err(multipart_error)?;
                fields.insert(name, text);
            }
        }
        let (name, bytes) = image.ok_or_else(|| ServerError::bad_request("no image part"))?;
        if name.is_empty() {
            return Err(ServerError::bad_request("the image part has no file name"));
        }
        let original_ref = fields
            .get("original_ref")
            .map(|text| parse_json(text.as_bytes()))
            .transpose()?;
        Ok(UploadForm {
            name,
            bytes,
            type_name: fields.get("type").filter(|t| !t.is_empty()).cloned(),
            subfolder: fields.remove("subfolder").unwrap_or_default(),
            overwrite: fields
                .get("overwrite")
                .is_some_and(|value| value == "true" || value == "1"),
            original_ref,
        })
    }

    fn answer(&self, saved_name: String) -> Reply<Json> {
        Reply(json!({
            "name": saved_name,
            "subfolder": self.subfolder,
            "type": self.type_name.as_deref().unwrap_or("input"),
        }))
    }
}

fn multipart_error(error: MultipartError) -> ServerError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ServerError::PayloadTooLarge
    } else {
        ServerError::bad_request(error.body_text())
    }
}

/// `POST /upload/image`: multipart `image`, `type`, `subfolder`, `overwrite`.
pub(crate) async fn upload_image(
    State(state): State<AppState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Reply<Json>> {
    let form = UploadForm::read(multipart).await?;
    let folders = state.config().folders.clone();
    blocking(move || {
        images::decode(&form.bytes, &form.name)?;
        let directory = upload_directory(&folders, form.type_name.as_deref(), &form.subfolder)?;
        let saved = save_upload(&directory, &form.name, &form.bytes, form.overwrite)?;
        Ok(form.answer(saved))
    })
    .await
}

/// `POST /upload/mask`: like an image upload plus `original_ref`; the upload's alpha is put
/// on the original image and saved under the uploaded name.
pub(crate) async fn upload_mask(
    State(state): State<AppState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Reply<Json>> {
    let form = UploadForm::read(multipart).await?;
    let reference = form
        .original_ref
        .clone()
        .ok_or_else(|| ServerError::bad_request("original_ref is required"))?;
    let text = |key: &str| reference.get(key).and_then(Json::as_str).map(str::to_owned);
    let original_name =
        text("filename").ok_or_else(|| ServerError::bad_request("original_ref.filename"))?;
    let original_type = text("type").unwrap_or_else(|| "output".to_owned());
    let original_subfolder = text("subfolder");
    let folders = state.config().folders.clone();
    blocking(move || {
        let original = view_path(
            &folders,
            &original_name,
            Some(&original_type),
            original_subfolder.as_deref(),
        )?;
        if !original.is_file() {
            return Err(ServerError::not_found("original image"));
        }
        let original_bytes = std::fs::read(&original).map_err(ServerError::io(&original))?;
        let merged = images::merge_mask(&original_bytes, &original_name, &form.bytes, &form.name)?;
        let directory = upload_directory(&folders, form.type_name.as_deref(), &form.subfolder)?;
        let saved = save_upload(&directory, &form.name, &merged, form.overwrite)?;
        Ok(form.answer(saved))
    })
    .await
}
