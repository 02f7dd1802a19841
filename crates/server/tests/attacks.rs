//! Hostile requests: path traversal on every path-taking route, oversized and non-image
//! uploads, deeply nested JSON, cross-origin requests. Each is refused with its status and
//! nothing is written outside the server's folders.
#![allow(clippy::unwrap_used)] // tests: a failed step should fail the test

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{multipart, png_bytes, slow_prompt, Part, TestServer};
use serde_json::json;

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn view_refuses_traversal() {
    let server = TestServer::new();
    let secret = server.dir.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();
    for (uri, expected) in [
        (
            "/view?filename=..%2Fsecret.txt&type=output",
            StatusCode::BAD_REQUEST,
        ),
        ("/view?filename=%2Fetc%2Fpasswd", StatusCode::BAD_REQUEST),
        (
            "/view?filename=secret.txt&subfolder=..",
            StatusCode::FORBIDDEN,
        ),
        (
            "/view?filename=secret.txt&subfolder=%2E%2E",
            StatusCode::FORBIDDEN,
        ),
        (
            "/view?filename=passwd&subfolder=%2Fetc",
            StatusCode::FORBIDDEN,
        ),
        (
            "/view?filename=secret.txt&subfolder=..%5C..",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/view?filename=secret.txt&subfolder=a%2F..%2F..",
            StatusCode::FORBIDDEN,
        ),
        ("/view?filename=secret.txt&type=..", StatusCode::BAD_REQUEST),
        (
            "/api/view?filename=secret.txt%20%5Boutput%5D&subfolder=..",
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, body, _) = server
            .send(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, expected, "{uri}");
        assert!(
            !String::from_utf8_lossy(&body).contains("top secret"),
            "{uri}"
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_out_of_a_folder_are_refused() {
    let server = TestServer::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("s.png"), png_bytes(1, 1, 1)).unwrap();
    std::os::unix::fs::symlink(
        outside.path(),
        server.folders.output_directory().join("link"),
    )
    .unwrap();
    let (status, _, _) = server
        .send(
            Request::get("/view?filename=s.png&subfolder=link")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .upload(
            "/upload/image",
            &[
                Part::File("image", "x.png", &png_bytes(1, 1, 1)),
                Part::Text("type", "output"),
                Part::Text("subfolder", "link"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(files_under(outside.path()).len(), 1);

    // A userdata symlink pointing out of the user folder.
    let user = server.dir.path().join("user/default");
    std::fs::create_dir_all(&user).unwrap();
    std::os::unix::fs::symlink(outside.path(), user.join("escape")).unwrap();
    let (status, _) = server.get("/api/userdata/escape%2Fs.png").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .post_raw("/api/userdata/escape%2Fnew.json", b"{}".to_vec())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(files_under(outside.path()).len(), 1);
}

#[tokio::test]
async fn uploads_refuse_traversal_oversize_and_non_images() {
    let server = TestServer::with(|builder| builder.max_upload_size_mb(0.01));
    let image = png_bytes(2, 2, 255);
    for (name, subfolder, expected) in [
        ("x.png", "..", StatusCode::FORBIDDEN),
        ("x.png", "../../etc", StatusCode::FORBIDDEN),
        ("x.png", "/tmp", StatusCode::FORBIDDEN),
        ("../x.png", "", StatusCode::FORBIDDEN),
    ] {
        let (status, _) = server
            .upload(
                "/upload/image",
                &[
                    Part::File("image", name, &image),
                    Part::Text("subfolder", subfolder),
                ],
            )
            .await;
        assert_eq!(status, expected, "{name} in {subfolder}");
    }
    let (status, answer) = server
        .upload(
            "/upload/image",
            &[Part::File("image", "x.png", b"<?php evil(); ?>")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["type"], "not_an_image");
    let big = vec![0_u8; 64 * 1024];
    let (status, _) = server
        .upload("/upload/image", &[Part::File("image", "big.png", &big)])
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = server
        .upload(
            "/upload/image",
            &[
                Part::File("image", "x.png", &image),
                Part::Text("type", "models"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Nothing landed anywhere, and nothing outside the base folder changed.
    assert!(files_under(server.folders.input_directory()).is_empty());
    assert!(!server.dir.path().parent().unwrap().join("x.png").exists());
}

#[tokio::test]
async fn userdata_refuses_traversal() {
    let server = TestServer::new();
    std::fs::write(server.dir.path().join("user/secret.json"), "{}").ok();
    for uri in [
        "/api/userdata/..%2Fsecret.json",
        "/api/userdata/%2E%2E%2F%2E%2E%2Fsecret.json",
        "/api/userdata/%2Fetc%2Fpasswd",
    ] {
        let (status, _) = server.get(uri).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
        let (status, _) = server.post_raw(uri, b"{}".to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
    }
    let (status, _) = server.get("/api/userdata/..%5Csecret.json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.get("/api/userdata?dir=..").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server.get("/api/v2/userdata?path=..%2F..").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server
        .post_raw("/api/userdata/ok.json", b"{}".to_vec())
        .await;
    let (status, _) = server
        .post(
            "/api/userdata/ok.json/move/..%2F..%2Fmoved.json",
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!server.dir.path().join("moved.json").exists());
    let (status, _) = server
        .get("/api/view_metadata/checkpoints?filename=..%2F..%2Fx.safetensors")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let written: Vec<_> = files_under(server.dir.path())
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    assert!(written.iter().all(
        |path| path.starts_with(server.dir.path().join("user/default"))
            || path.ends_with("user/secret.json")
    ));
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_harm() {
    let server = TestServer::new();
    let nested = format!(
        "{{\"prompt\": {}1{}}}",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let (status, answer) = server.post_raw("/prompt", nested.into_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["type"], "json_too_deep");
    let object = format!("{}{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let (status, _) = server.post_raw("/api/settings", object.into_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The server still works.
    let prompt_id = server.submit(slow_prompt(1, 1, 0)).await;
    server.wait_for_history(&prompt_id).await;
}

#[tokio::test]
async fn cross_origin_requests_are_refused_unless_cors_is_on() {
    let server = TestServer::new();
    let body = json!({"prompt": slow_prompt(1, 1, 0)}).to_string();
    let request = |origin: &str, host: &str| {
        Request::post("/api/prompt")
            .header(header::HOST, host)
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let (status, _, _) = server
        .send(request("http://evil.example", "127.0.0.1:8188"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = server.send(request("null", "localhost:8188")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, history) = server.get("/history").await;
    let (_, queue) = server.get("/queue").await;
    assert_eq!(history, json!({}));
    assert_eq!(queue["queue_pending"], json!([]));
    assert_eq!(queue["queue_running"], json!([]));
    // Same origin passes.
    let (status, _, _) = server
        .send(request("http://127.0.0.1:8188", "127.0.0.1:8188"))
        .await;
    assert_eq!(status, StatusCode::OK);
    // A cross-site multipart upload is refused too.
    let (content_type, upload) = multipart(&[Part::File("image", "x.png", &png_bytes(1, 1, 1))]);
    let (status, _, _) = server
        .send(
            Request::post("/upload/image")
                .header(header::HOST, "localhost:8188")
                .header(header::ORIGIN, "https://evil.example")
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(upload))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(files_under(server.folders.input_directory()).is_empty());

    drop(server);
    let server = TestServer::with(|builder| builder.cors_origin(Some("*".to_owned())));
    let (status, _, headers) = server
        .send(request("http://evil.example", "127.0.0.1:8188"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["access-control-allow-origin"], "*");
    let (status, _, headers) = server
        .send(
            Request::options("/api/prompt")
                .header(header::ORIGIN, "http://evil.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
}
