//! The embedded workflow templates: the core `/templates/` index and files the official
//! frontend reads (and a templates folder laid over them), the custom-module route
//! `/workflow_templates/kiln/`, and `/global_subgraphs`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::TestServer;
use serde_json::{json, Value as Json};

const NAMES: [&str; 4] = ["default", "sd15_img2img", "sd15_lora", "sdxl_txt2img"];

/// Status, body and content type of a GET.
async fn fetch(server: &TestServer, uri: &str) -> (StatusCode, Vec<u8>, String) {
    let (status, body, headers) = server
        .send(Request::get(uri).body(Body::empty()).unwrap())
        .await;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, body, content_type)
}

/// The widget values of the node of class `class_type`.
fn widgets_of<'a>(workflow: &'a Json, class_type: &str) -> &'a Json {
    let node = workflow["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["type"] == class_type)
        .unwrap_or_else(|| panic!("no {class_type} node"));
    &node["widgets_values"]
}

#[tokio::test]
async fn the_core_index_lists_every_template_with_a_thumbnail() {
    let server = TestServer::new();
    let (status, body, content_type) = fetch(&server, "/templates/index.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    let index: Json = serde_json::from_slice(&body).unwrap();
    let category = &index[0];
    assert_eq!(category["moduleName"], "default");
    assert_eq!(category["type"], "image");
    let templates = category["templates"].as_array().unwrap();
    let names: Vec<&str> = templates
        .iter()
        .map(|template| template["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, NAMES);
    for template in templates {
        for field in ["title", "description", "mediaType", "mediaSubtype"] {
            assert!(template[field].is_string(), "{template}: {field}");
        }
        assert!(template["tags"].is_array() && template["models"].is_array());
        // The dialog shows `/templates/<name>-1.<mediaSubtype>`; it must exist.
        let thumbnail = format!(
            "/templates/{}-1.{}",
            template["name"].as_str().unwrap(),
            template["mediaSubtype"].as_str().unwrap()
        );
        let (status, body, content_type) = fetch(&server, &thumbnail).await;
        assert_eq!(status, StatusCode::OK, "{thumbnail}");
        assert_eq!(content_type, "image/webp");
        assert!(image::load_from_memory(&body).is_ok(), "{thumbnail}");
    }
    let (status, body, content_type) = fetch(&server, "/templates/index_logo.json").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/json")
    );
    assert_eq!(serde_json::from_slice::<Json>(&body).unwrap(), json!({}));
}

#[tokio::test]
async fn every_template_is_a_ui_workflow_that_converts() {
    let server = TestServer::new();
    let registry = common::registry();
    for name in NAMES {
        let (status, body, content_type) = fetch(&server, &format!("/templates/{name}.json")).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(content_type, "application/json");
        let workflow: Json = serde_json::from_slice(&body).unwrap();
        assert_eq!(workflow["version"], json!(0.4), "{name}");
        assert!(workflow["links"].as_array().is_some_and(|l| !l.is_empty()));
        // The test registry knows none of these classes, so only links are emitted: enough to
        // check the graph is wired as ComfyUI's (sampler ← checkpoint, decode ← sampler).
        let prompt = kiln_graph::workflow_to_prompt(&workflow, &registry).unwrap();
        assert_eq!(prompt["3"]["class_type"], "KSampler", "{name}");
        assert_eq!(prompt["3"]["inputs"]["positive"], json!(["6", 0]), "{name}");
        assert_eq!(prompt["8"]["inputs"]["samples"], json!(["3", 0]), "{name}");
        assert_eq!(prompt["9"]["inputs"]["images"], json!(["8", 0]), "{name}");
        // The same file through the custom-module route.
        let (status, module_body, _) = fetch(
            &server,
            &format!("/api/workflow_templates/kiln/{name}.json"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(module_body, body);
        let (status, _, content_type) =
            fetch(&server, &format!("/api/workflow_templates/kiln/{name}.jpg")).await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::OK, "image/jpeg")
        );
    }
}

#[tokio::test]
async fn the_default_template_is_comfyuis_classic_graph() {
    let server = TestServer::new();
    let (_, body, _) = fetch(&server, "/templates/default.json").await;
    let workflow: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        widgets_of(&workflow, "CheckpointLoaderSimple"),
        &json!(["v1-5-pruned-emaonly-fp16.safetensors"])
    );
    assert_eq!(
        widgets_of(&workflow, "EmptyLatentImage"),
        &json!([512, 512, 1])
    );
    let sampler = widgets_of(&workflow, "KSampler");
    assert!(sampler[0].is_u64());
    assert_eq!(
        sampler.as_array().unwrap()[1..],
        json!(["randomize", 20, 8, "euler", "normal", 1])
            .as_array()
            .unwrap()[..]
    );
    let prompts: Vec<&Json> = workflow["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|node| node["type"] == "CLIPTextEncode")
        .map(|node| &node["widgets_values"][0])
        .collect();
    assert_eq!(
        prompts,
        [
            "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
            "text, watermark"
        ]
    );
    assert_eq!(widgets_of(&workflow, "SaveImage"), &json!(["ComfyUI"]));
    let (_, body, _) = fetch(&server, "/templates/sdxl_txt2img.json").await;
    let sdxl: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        widgets_of(&sdxl, "CheckpointLoaderSimple"),
        &json!(["sd_xl_base_1.0.safetensors"])
    );
    assert_eq!(
        widgets_of(&sdxl, "EmptyLatentImage"),
        &json!([1024, 1024, 1])
    );
}

#[tokio::test]
async fn unknown_names_and_parent_paths_are_not_found() {
    let server = TestServer::new();
    for uri in [
        "/templates/nope.json",
        "/templates/default.jpg",
        "/templates/../default.json",
        "/templates/%2E%2E/default.json",
        "/templates/x/../default.json",
        "/api/workflow_templates/kiln/nope.json",
        "/api/workflow_templates/kiln/default-1.webp",
        "/api/workflow_templates/other/default.json",
        "/api/workflow_templates/kiln/..%2Fdefault.json",
    ] {
        assert_eq!(fetch(&server, uri).await.0, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn a_templates_folder_overrides_the_embedded_files() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.json"), "{\"secret\":1}").unwrap();
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("default.json"), "{\"mine\":true}").unwrap();
    std::fs::write(folder.path().join("extra.json"), "{\"extra\":true}").unwrap();
    let dir = folder.path().to_owned();
    let server = TestServer::with(move |builder| builder.templates_dir(Some(dir)));
    let json_of = |body: Vec<u8>| serde_json::from_slice::<Json>(&body).unwrap();
    let (status, body, content_type) = fetch(&server, "/templates/default.json").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/json")
    );
    assert_eq!(json_of(body), json!({"mine": true}));
    assert_eq!(
        json_of(fetch(&server, "/templates/extra.json").await.1),
        json!({"extra": true})
    );
    // Files the folder lacks still come from the binary.
    let (status, body, _) = fetch(&server, "/templates/sd15_lora.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(body)["version"], json!(0.4));
    assert_eq!(
        fetch(&server, "/templates/index.json").await.0,
        StatusCode::OK
    );
    let escape = format!(
        "/templates/../{}/secret.json",
        outside.path().file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(fetch(&server, &escape).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        fetch(&server, "/templates/nope.json").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn module_list_and_global_subgraphs_answer_as_comfyui() {
    let server = TestServer::new();
    for prefix in ["", "/api"] {
        let (status, list) = server.get(&format!("{prefix}/workflow_templates")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list, json!({"kiln": NAMES}));
        let (status, subgraphs) = server.get(&format!("{prefix}/global_subgraphs")).await;
        assert_eq!((status, subgraphs), (StatusCode::OK, json!({})));
    }
}
