//! Route tests through `app().oneshot(request)`: prompts, queue, history, jobs, files,
//! uploads, introspection, users and userdata, static pages — with fake nodes, no diffusion.
#![allow(clippy::unwrap_used)] // tests: a failed step should fail the test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{png_bytes, slow_prompt, Part, TestServer};
use serde_json::{json, Value as Json};

#[tokio::test]
async fn a_prompt_runs_and_lands_in_history_with_its_image() {
    let server = TestServer::new();
    let (status, answer) = server
        .post(
            "/prompt",
            json!({"prompt": slow_prompt(7, 2, 1), "client_id": "abc",
                                 "extra_data": {"api_key_comfy_org": "secret"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["node_errors"], json!({}));
    assert!(answer["number"].is_i64());
    let prompt_id = answer["prompt_id"].as_str().unwrap();
    let entry = server.wait_for_history(prompt_id).await;
    assert_eq!(entry["status"]["status_str"], "success");
    assert_eq!(entry["status"]["completed"], true);
    let messages: Vec<&str> = entry["status"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message[0].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["execution_start", "execution_cached", "execution_success"]
    );
    // The queue tuple: [number, id, prompt, extra_data, outputs]; credentials stripped.
    assert_eq!(entry["prompt"][1], prompt_id);
    assert_eq!(entry["prompt"][3]["client_id"], "abc");
    assert!(entry["prompt"][3].get("api_key_comfy_org").is_none());
    assert_eq!(entry["prompt"][4], json!(["3"]));
    let image = &entry["outputs"]["3"]["images"][0];
    assert_eq!(image["type"], "output");
    assert_eq!(entry["meta"]["3"]["node_id"], "3");

    let filename = image["filename"].as_str().unwrap();
    let (status, bytes, headers) = server
        .send(
            Request::get(format!(
                "/api/view?filename={filename}&type=output&subfolder="
            ))
            .body(Body::empty())
            .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        format!("filename=\"{filename}\"")
    );
    assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 3);

    // Whole history, last N, and the same under /api.
    let (_, all) = server.get("/history").await;
    assert!(all.get(prompt_id).is_some());
    let (_, last) = server.get("/api/history?max_items=1").await;
    assert_eq!(last.as_object().unwrap().len(), 1);
    let (_, none) = server.get("/history/unknown").await;
    assert_eq!(none, json!({}));
}

#[tokio::test]
async fn validation_errors_use_comfyui_shapes() {
    let server = TestServer::new();
    let (status, answer) = server.post("/prompt", json!({"client_id": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["type"], "no_prompt");
    assert_eq!(answer["error"]["message"], "No prompt provided");
    assert_eq!(answer["node_errors"], json!({}));

    let (status, answer) = server
        .post(
            "/prompt",
            json!({"prompt": {"1": {"class_type": "Number", "inputs": {"value": 1}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["type"], "prompt_no_outputs");

    let mut bad = slow_prompt(5, 1, 0);
    bad["1"]["inputs"]["value"] = json!(5_000_000);
    let (status, answer) = server.post("/api/prompt", json!({"prompt": bad})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["type"], "prompt_outputs_failed_validation");
    let error = &answer["node_errors"]["1"]["errors"][0];
    assert_eq!(error["type"], "value_bigger_than_max");
    assert_eq!(error["extra_info"]["input_name"], "value");
    assert_eq!(
        answer["node_errors"]["1"]["dependent_outputs"],
        json!(["3"])
    );
    assert_eq!(answer["node_errors"]["1"]["class_type"], "Number");

    let (status, answer) = server
        .post(
            "/prompt",
            json!({"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["type"], "missing_node_type");

    let (status, answer) = server.post_raw("/prompt", b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["type"], "invalid_json");
    // Nothing was queued by any of these.
    let (_, queue) = server.get("/queue").await;
    assert_eq!(queue, json!({"queue_running": [], "queue_pending": []}));
}

#[tokio::test]
async fn the_queue_orders_deletes_and_clears() {
    let server = TestServer::new();
    // A long prompt occupies the executor; the rest wait.
    // Long enough to still be running under a loaded CI machine; it is interrupted below.
    let running = server.submit(slow_prompt(1, 6000, 10)).await;
    let mut pending = Vec::new();
    for value in 2..=4 {
        pending.push(server.submit(slow_prompt(value, 1, 0)).await);
    }
    let (_, front) = server
        .post(
            "/prompt",
            json!({"prompt": slow_prompt(9, 1, 0), "front": true}),
        )
        .await;
    assert!(front["number"].as_i64().unwrap() < 0);
    let (_, explicit) = server
        .post(
            "/prompt",
            json!({"prompt": slow_prompt(10, 1, 0), "number": 2.5}),
        )
        .await;
    assert_eq!(explicit["number"], json!(2.5));

    let (_, queue) = server.get("/queue").await;
    assert_eq!(queue["queue_running"][0][1], running.as_str());
    let order: Vec<&str> = queue["queue_pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[1].as_str().unwrap())
        .collect();
    assert_eq!(order[0], front["prompt_id"]);
    assert_eq!(order.len(), 5);
    assert_eq!(queue["queue_pending"][0].as_array().unwrap().len(), 5);
    let (_, info) = server.get("/prompt").await;
    assert_eq!(info["exec_info"]["queue_remaining"], 6);

    let (status, _) = server.post("/queue", json!({"delete": [pending[0]]})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, queue) = server.get("/queue").await;
    assert_eq!(queue["queue_pending"].as_array().unwrap().len(), 4);

    // Jobs: pending and running with the frontend's pagination keys.
    let (_, jobs) = server
        .get("/api/jobs?status=in_progress,pending&limit=200&offset=0")
        .await;
    assert_eq!(jobs["pagination"]["total"], 5);
    assert_eq!(jobs["pagination"]["has_more"], false);
    assert!(jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|job| job["create_time"].is_u64() && job["id"].is_string()));
    let (_, page) = server.get("/jobs?status=pending&limit=2&offset=0").await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(page["pagination"]["has_more"], true);

    // Cancel a pending job, then clear the rest and interrupt the running one.
    let (status, _) = server
        .post(&format!("/api/jobs/{}/cancel", pending[1]), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post("/queue", json!({"clear": true})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, queue) = server.get("/queue").await;
    assert_eq!(queue["queue_pending"], json!([]));
    let (status, _) = server
        .post("/interrupt", json!({"prompt_id": running}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let entry = server.wait_for_history(&running).await;
    assert_eq!(entry["status"]["status_str"], "error");
    let (_, cancelled) = server.get("/jobs?status=cancelled").await;
    assert_eq!(cancelled["jobs"][0]["id"], running.as_str());
    let (_, detail) = server.get(&format!("/jobs/{running}")).await;
    assert_eq!(detail["status"], "cancelled");
    assert!(detail["workflow"]["prompt"].is_object());

    let (status, _) = server.post("/history", json!({"clear": true})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, history) = server.get("/history").await;
    assert_eq!(history, json!({}));
}

#[tokio::test]
async fn failures_are_recorded_and_free_reaches_the_executor() {
    let server = TestServer::new();
    let prompt_id = server
        .submit(json!({
            "1": {"class_type": "Number", "inputs": {"value": 3}},
            "2": {"class_type": "Fail", "inputs": {"value": ["1", 0]}},
        }))
        .await;
    let entry = server.wait_for_history(&prompt_id).await;
    assert_eq!(entry["status"]["status_str"], "error");
    let last = entry["status"]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(last[0], "execution_error");
    assert_eq!(last[1]["node_type"], "Fail");
    let (_, failed) = server.get("/jobs?status=failed").await;
    assert_eq!(
        failed["jobs"][0]["execution_error"]["exception_type"],
        "ValueError"
    );

    let (status, _) = server
        .post(
            "/free",
            json!({"unload_models": true, "free_memory": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while server
        .services
        .unloads
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "unload hook never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn view_converts_previews_and_channels_and_honours_annotations() {
    let server = TestServer::new();
    std::fs::create_dir_all(server.folders.temp_directory().join("sub")).unwrap();
    std::fs::write(
        server.folders.temp_directory().join("sub/p.png"),
        png_bytes(4, 4, 77),
    )
    .unwrap();
    let get = |uri: &'static str| {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        server.send(request)
    };
    let (status, bytes, headers) =
        get("/view?filename=p.png%20%5Btemp%5D&type=output&subfolder=sub&preview=jpeg;50").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/jpeg");
    assert!(bytes.starts_with(&[0xFF, 0xD8]));
    let (_, bytes, headers) =
        get("/view?filename=p.png&type=temp&subfolder=sub&preview=webp;90").await;
    assert_eq!(headers[header::CONTENT_TYPE], "image/webp");
    assert!(bytes.starts_with(b"RIFF"));
    let (_, bytes, _) = get("/view?filename=p.png&type=temp&subfolder=sub&channel=a").await;
    let alpha = image::load_from_memory(&bytes).unwrap().to_rgba8();
    assert_eq!(alpha.get_pixel(0, 0).0, [0, 0, 0, 77]);
    let (_, bytes, _) = get("/view?filename=p.png&type=temp&subfolder=sub&channel=rgb").await;
    assert!(!image::load_from_memory(&bytes).unwrap().color().has_alpha());
    let (status, _, _) = get("/view?filename=missing.png&type=temp").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get("/view?filename=p.png&type=models").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Scripts never run from the output folder.
    std::fs::write(server.folders.output_directory().join("x.html"), "<script>").unwrap();
    let (_, _, headers) = get("/view?filename=x.html").await;
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
}

#[tokio::test]
async fn uploads_rename_duplicates_and_masks_merge_alpha() {
    let server = TestServer::new();
    let first = png_bytes(4, 4, 255);
    let (status, answer) = server
        .upload("/upload/image", &[Part::File("image", "a.png", &first)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        json!({"name": "a.png", "subfolder": "", "type": "input"})
    );
    // Same content: reused. Different content: renamed.
    let (_, answer) = server
        .upload("/upload/image", &[Part::File("image", "a.png", &first)])
        .await;
    assert_eq!(answer["name"], "a.png");
    let other = png_bytes(4, 4, 10);
    let (_, answer) = server
        .upload(
            "/api/upload/image",
            &[
                Part::File("image", "a.png", &other),
                Part::Text("subfolder", ""),
            ],
        )
        .await;
    assert_eq!(answer["name"], "a (1).png");
    let (_, answer) = server
        .upload(
            "/upload/image",
            &[
                Part::File("image", "a.png", &other),
                Part::Text("overwrite", "true"),
                Part::Text("type", "temp"),
                Part::Text("subfolder", "clip"),
            ],
        )
        .await;
    assert_eq!(
        answer,
        json!({"name": "a.png", "subfolder": "clip", "type": "temp"})
    );
    assert!(server.folders.temp_directory().join("clip/a.png").is_file());

    // Mask: the original (in input) gets the mask's alpha.
    let mask = png_bytes(4, 4, 33);
    let reference = json!({"filename": "a.png", "subfolder": "", "type": "input"}).to_string();
    let (status, answer) = server
        .upload(
            "/upload/mask",
            &[
                Part::File("image", "a-mask.png", &mask),
                Part::Text("original_ref", &reference),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let merged = std::fs::read(server.folders.input_directory().join("a-mask.png")).unwrap();
    let merged = image::load_from_memory(&merged).unwrap().to_rgba8();
    assert_eq!(merged.get_pixel(2, 2).0, [10, 20, 30, 33]);

    let (_, files) = server.get("/internal/files/input").await;
    assert_eq!(files.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn introspection_routes_answer_what_the_frontend_expects() {
    let server = TestServer::new();
    std::fs::create_dir_all(server.folders.models_directory().join("checkpoints/sd")).unwrap();
    std::fs::write(
        server
            .folders
            .models_directory()
            .join("checkpoints/sd/m.safetensors"),
        b"x",
    )
    .unwrap();
    let (_, info) = server.get("/api/object_info").await;
    assert_eq!(info["Slow"]["input"]["required"]["steps"][0], "INT");
    assert_eq!(info["SaveNumber"]["output_node"], true);
    let (_, one) = server.get("/object_info/Number").await;
    assert_eq!(one.as_object().unwrap().len(), 1);
    let (_, none) = server.get("/object_info/Nope").await;
    assert_eq!(none, json!({}));

    let (_, stats) = server.get("/system_stats").await;
    assert!(stats["system"]["ram_total"].as_u64().unwrap() > 0);
    assert!(stats["devices"][0]["vram_total"].is_u64());
    let (_, features) = server.get("/api/features").await;
    assert_eq!(features["supports_preview_metadata"], true);
    assert_eq!(features["max_upload_size"], 100 * 1024 * 1024);
    assert_eq!(server.get("/api/extensions").await.1, json!([]));
    assert_eq!(server.get("/api/i18n").await.1, json!({}));
    assert!(server.get("/api/workflow_templates").await.1["kiln"].is_array());
    assert_eq!(server.get("/api/embeddings").await.1, json!([]));

    let (_, keys) = server.get("/models").await;
    assert!(keys.as_array().unwrap().contains(&json!("checkpoints")));
    let (_, checkpoints) = server.get("/api/models/checkpoints").await;
    assert_eq!(checkpoints, json!(["sd/m.safetensors"]));
    assert_eq!(server.get("/models/nope").await.0, StatusCode::NOT_FOUND);
    let (_, library) = server.get("/api/experiment/models").await;
    assert!(library
        .as_array()
        .unwrap()
        .iter()
        .all(|entry| entry["name"] != "configs"));
    let (_, files) = server.get("/api/experiment/models/checkpoints").await;
    assert_eq!(files[0]["name"], "sd/m.safetensors");
    assert_eq!(files[0]["pathIndex"], 0);

    let (_, paths) = server.get("/internal/folder_paths").await;
    assert!(paths["checkpoints"].is_array());
    let (status, raw) = server.get("/internal/logs/raw").await;
    assert_eq!(status, StatusCode::OK);
    assert!(raw["entries"].is_array());
    // `/internal` is not duplicated under `/api`.
    assert_eq!(
        server.get("/api/internal/folder_paths").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn users_settings_and_userdata_round_trip() {
    let server = TestServer::new();
    assert_eq!(
        server.get("/api/users").await.1,
        json!({"storage": "server", "migrated": true})
    );
    assert_eq!(server.get("/api/settings").await.1, json!({}));
    // Settings arrive without a content type.
    let (status, _, _) = server
        .send(
            Request::post("/api/settings/Comfy.InstalledVersion")
                .body(Body::from("\"1.58.1\""))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.post("/api/settings", json!({"A": 1})).await;
    assert_eq!(
        server.get("/api/settings").await.1,
        json!({"Comfy.InstalledVersion": "1.58.1", "A": 1})
    );
    assert_eq!(server.get("/api/settings/A").await.1, json!(1));
    let (status, _, _) = server
        .send(
            Request::post("/api/settings/A")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.get("/api/settings/A").await.1, Json::Null);
    assert!(server
        .dir
        .path()
        .join("user/default/comfy.settings.json")
        .is_file());

    let (status, _) = server
        .get("/api/userdata?dir=workflows&recurse=true&split=false&full_info=true")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = server
        .post_raw(
            "/api/userdata/workflows%2Fmy%20flow.json?overwrite=false&full_info=true",
            b"{\"nodes\": []}".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["path"], "workflows/my flow.json");
    let (status, _) = server
        .post_raw(
            "/api/userdata/workflows%2Fmy%20flow.json?overwrite=false",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, listing) = server
        .get("/api/userdata?dir=workflows&recurse=true&split=false&full_info=true")
        .await;
    assert_eq!(listing[0]["path"], "my flow.json");
    assert!(listing[0]["modified"].as_u64().unwrap() > 1_600_000_000_000);
    let (_, content) = server.get("/api/userdata/workflows%2Fmy%20flow.json").await;
    assert_eq!(content, json!({"nodes": []}));
    let (status, moved) = server
        .post(
            "/api/userdata/workflows%2Fmy%20flow.json/move/workflows%2Frenamed.json",
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(moved, json!("workflows/renamed.json"));
    let (_, v2) = server.get("/api/v2/userdata?path=workflows").await;
    assert_eq!(v2[0]["name"], "renamed.json");
    let (status, _, _) = server
        .send(
            Request::delete("/api/userdata/workflows%2Frenamed.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        server.get("/api/userdata/workflows%2Frenamed.json").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, id) = server.post("/users", json!({"username": "ada"})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(id.as_str().unwrap().starts_with("ada_"));
    let (status, _) = server.post("/users", json!({"username": "ada"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_web_root_serves_the_frontend_or_the_builtin_page() {
    let server = TestServer::new();
    let (status, body, headers) = server
        .send(Request::get("/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("id=\"generate\""));
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    drop(server);

    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("assets")).unwrap();
    std::fs::write(site.path().join("index.html"), "<html>frontend</html>").unwrap();
    std::fs::write(site.path().join("assets/index-1.js"), "export {}").unwrap();
    std::fs::write(site.path().join("assets/a.woff2"), b"wOF2").unwrap();
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(templates.path().join("index.json"), "[]").unwrap();
    let (root, template_dir) = (site.path().to_owned(), templates.path().to_owned());
    let server = TestServer::with(move |builder| {
        builder
            .front_end_root(Some(root))
            .templates_dir(Some(template_dir))
    });
    let fetch = |uri: &'static str| server.send(Request::get(uri).body(Body::empty()).unwrap());
    let (status, body, headers) = fetch("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"<html>frontend</html>");
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    let (_, _, headers) = fetch("/assets/index-1.js").await;
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .contains("javascript"));
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    let (_, _, headers) = fetch("/assets/a.woff2").await;
    assert_eq!(headers[header::CONTENT_TYPE], "font/woff2");
    assert!(headers.get(header::CACHE_CONTROL).is_none());
    let (_, _, headers) = fetch("/templates/index.json").await;
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    // API routes win over the static fallback.
    let (status, body, _) = fetch("/api/extensions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"[]");
}
