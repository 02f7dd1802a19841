//! Test support: tiny fake nodes (numbers, an image writer, a slow stepper with previews, a
//! failing node) and a harness that starts a server on a temp folder and sends requests
//! through `oneshot` or a real socket.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // test support: failures should fail the test

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use kiln_folders::FolderPaths;
use kiln_graph::{
    ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput, NodeRegistry,
    NodeSchema, OutputSpec, PreviewFormat, PreviewImage, StringInput, Value,
};
use kiln_server::{Server, ServerConfig, ServerConfigBuilder};
use serde_json::{json, Value as Json};
use tower::ServiceExt;

/// What the fake nodes share.
pub struct TestServices {
    pub output_dir: PathBuf,
    pub unloads: AtomicUsize,
}

fn services<'a>(ctx: &ExecutionContext<'a>) -> Result<&'a TestServices, NodeError> {
    ctx.services::<TestServices>()
}

/// `Number(value) -> INT`.
struct Number;
impl Node for Number {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Number")
            .input(InputSpec::required(
                "value",
                IntInput::new(0, -1000, 1_000_000),
            ))
            .output(OutputSpec::new("INT"))
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        _: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        Ok(NodeOutput::new(vec![Value::Int(
            inputs.int("value")?.into(),
        )]))
    }
}

/// `Slow(value, steps, step_ms) -> INT`: steps with progress, a preview on the first step,
/// checking for interrupts.
struct Slow;
impl Node for Slow {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Slow")
            .input(InputSpec::required("value", "INT"))
            .input(InputSpec::required("steps", IntInput::new(3, 1, 10_000)))
            .input(InputSpec::required("step_ms", IntInput::new(1, 0, 10_000)))
            .output(OutputSpec::new("INT"))
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let steps = inputs.uint("steps")?;
        let pause = Duration::from_millis(inputs.uint("step_ms")?);
        for step in 1..=steps {
            ctx.check_interrupted()?;
            std::thread::sleep(pause);
            let preview = (step == 1).then(|| PreviewImage {
                format: PreviewFormat::Png,
                bytes: png_bytes(2, 2, 255),
            });
            ctx.progress(step, steps, preview);
        }
        Ok(NodeOutput::new(vec![Value::Int(
            inputs.int("value")?.into(),
        )]))
    }
}

/// `SaveNumber(value, filename_prefix)`: an output node writing a PNG into the output folder.
struct SaveNumber;
impl Node for SaveNumber {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("SaveNumber")
            .input(InputSpec::required("value", "INT"))
            .input(InputSpec::required(
                "filename_prefix",
                StringInput::new("Kiln"),
            ))
            .output_node()
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = services(ctx)?;
        let value = inputs.int("value")?;
        let prefix = inputs.string("filename_prefix")?;
        let filename = format!("{prefix}_{value}_{}.png", ctx.prompt_id());
        std::fs::create_dir_all(&services.output_dir).unwrap();
        std::fs::write(services.output_dir.join(&filename), png_bytes(3, 2, 200)).unwrap();
        Ok(NodeOutput::ui(
            json!({"images": [{"filename": filename, "subfolder": "", "type": "output"}]}),
        ))
    }
}

/// `Fail(value)`: always fails.
struct Fail;
impl Node for Fail {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Fail")
            .input(InputSpec::required("value", "INT"))
            .output_node()
    }
    fn execute(
        &self,
        _: &NodeInputs,
        _: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        Err(NodeError::failed("ValueError", "this node always fails"))
    }
}

pub fn registry() -> Arc<NodeRegistry> {
    let mut registry = NodeRegistry::new();
    registry.register(Number).unwrap();
    registry.register(Slow).unwrap();
    registry.register(SaveNumber).unwrap();
    registry.register(Fail).unwrap();
    Arc::new(registry)
}

/// An RGBA PNG filled with one colour.
pub fn png_bytes(width: u32, height: u32, alpha: u8) -> Vec<u8> {
    let image = image::RgbaImage::from_pixel(width, height, image::Rgba([10, 20, 30, alpha]));
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

/// A prompt: Number(value) → Slow(steps) → SaveNumber.
pub fn slow_prompt(value: i64, steps: u64, step_ms: u64) -> Json {
    json!({
        "1": {"class_type": "Number", "inputs": {"value": value}},
        "2": {"class_type": "Slow", "inputs": {"value": ["1", 0], "steps": steps, "step_ms": step_ms}},
        "3": {"class_type": "SaveNumber", "inputs": {"value": ["2", 0], "filename_prefix": "Kiln"}},
    })
}

/// A server on a temp base folder.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub server: Option<Server>,
    pub router: Router,
    pub folders: FolderPaths,
    pub services: Arc<TestServices>,
}

impl TestServer {
    pub fn new() -> TestServer {
        TestServer::with(|builder| builder)
    }

    pub fn with(configure: impl FnOnce(ServerConfigBuilder) -> ServerConfigBuilder) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        TestServer::in_dir(dir, configure)
    }

    pub fn in_dir(
        dir: tempfile::TempDir,
        configure: impl FnOnce(ServerConfigBuilder) -> ServerConfigBuilder,
    ) -> TestServer {
        let folders = folders(dir.path());
        for folder in [
            folders.input_directory(),
            folders.output_directory(),
            folders.temp_directory(),
        ] {
            std::fs::create_dir_all(folder).unwrap();
        }
        let services = Arc::new(TestServices {
            output_dir: folders.output_directory().to_path_buf(),
            unloads: AtomicUsize::new(0),
        });
        let unload_counter = Arc::clone(&services);
        let builder = ServerConfig::builder(folders.clone(), registry(), services.clone())
            .port(0)
            .unload_models(Arc::new(move || {
                unload_counter.unloads.fetch_add(1, Ordering::SeqCst);
            }));
        let server = Server::start(configure(builder).build().unwrap()).unwrap();
        let router = server.router();
        TestServer {
            dir,
            server: Some(server),
            router,
            folders,
            services,
        }
    }

    /// Stops the engine and gives back the folder.
    pub fn stop(mut self) -> tempfile::TempDir {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub async fn send(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, Vec<u8>, axum::http::HeaderMap) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, body.to_vec(), headers)
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, Json) {
        let (status, body, _) = self
            .send(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        (status, serde_json::from_slice(&body).unwrap_or(Json::Null))
    }

    pub async fn post(&self, uri: &str, body: Json) -> (StatusCode, Json) {
        self.post_raw(uri, body.to_string().into_bytes()).await
    }

    pub async fn post_raw(&self, uri: &str, body: Vec<u8>) -> (StatusCode, Json) {
        let (status, body, _) = self
            .send(
                Request::post(uri)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        (status, serde_json::from_slice(&body).unwrap_or(Json::Null))
    }

    /// Submits and returns the prompt id.
    pub async fn submit(&self, prompt: Json) -> String {
        let (status, answer) = self.post("/prompt", json!({"prompt": prompt})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["prompt_id"].as_str().unwrap().to_owned()
    }

    /// Waits for the history entry of `prompt_id`.
    pub async fn wait_for_history(&self, prompt_id: &str) -> Json {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, history) = self.get(&format!("/history/{prompt_id}")).await;
            if let Some(entry) = history.get(prompt_id) {
                return entry.clone();
            }
            assert!(
                Instant::now() < deadline,
                "prompt {prompt_id} never finished"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn upload(&self, uri: &str, parts: &[Part<'_>]) -> (StatusCode, Json) {
        let (content_type, body) = multipart(parts);
        let (status, body, _) = self
            .send(
                Request::post(uri)
                    .header(header::CONTENT_TYPE, content_type)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        (status, serde_json::from_slice(&body).unwrap_or(Json::Null))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

pub fn folders(base: &Path) -> FolderPaths {
    FolderPaths::builder()
        .base_directory(base)
        .load_base_extra_model_paths(false)
        .build()
        .unwrap()
}

/// A multipart form part: a text field or a file.
pub enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a str, &'a [u8]),
}

pub fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "kiln-test-boundary-7d1e";
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                        .as_bytes(),
                );
            }
            Part::File(name, file_name, bytes) => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
                body.extend_from_slice(b"\r\n");
            }
        }
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
