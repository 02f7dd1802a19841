//! One real server on a loopback port 0, driven over real sockets: plain HTTP/1.1 for
//! `POST /prompt` and a WebSocket client for the events — the order of a prompt's events,
//! a cached re-run, interrupting mid-run, previews in both binary layouts, validation errors.
#![allow(clippy::unwrap_used)] // tests: a failed step should fail the test

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{registry, slow_prompt, TestServices};
use futures_util::{SinkExt, StreamExt};
use kiln_server::{Server, ServerConfig};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A minimal HTTP/1.1 POST over a fresh connection: (status, JSON body).
async fn post(address: SocketAddr, path: &str, body: &Json) -> (u16, Json) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text[9..12].parse().unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(body).unwrap_or(Json::Null))
}

async fn connect(address: SocketAddr, client_id: &str) -> Socket {
    let (socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{address}/ws?clientId={client_id}"))
            .await
            .unwrap();
    socket
}

/// The next frame: text as JSON, binary as `{"binary": type}` plus the raw bytes.
async fn next(socket: &mut Socket) -> (Json, Vec<u8>) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("no websocket message within 20 s")
            .unwrap()
            .unwrap();
        match message {
            Message::Text(text) => return (serde_json::from_str(&text).unwrap(), Vec::new()),
            Message::Binary(bytes) => {
                let kind = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                return (json!({"binary": kind}), bytes.to_vec());
            }
            _ => {}
        }
    }
}

/// Frames until `executing` with `node: null` for `prompt_id` (included).
async fn until_done(socket: &mut Socket, prompt_id: &str) -> Vec<Json> {
    let mut seen = Vec::new();
    loop {
        let (message, _) = next(socket).await;
        let done = message["type"] == "executing"
            && message["data"]["node"].is_null()
            && message["data"]["prompt_id"] == prompt_id;
        seen.push(message);
        if done {
            return seen;
        }
    }
}

fn kinds(messages: &[Json]) -> Vec<String> {
    messages
        .iter()
        .map(|message| match message.get("binary") {
            Some(kind) => format!("binary{kind}"),
            None => message["type"].as_str().unwrap().to_owned(),
        })
        .collect()
}

fn position(kinds: &[String], wanted: &str) -> usize {
    kinds
        .iter()
        .position(|kind| kind == wanted)
        .unwrap_or_else(|| panic!("no {wanted} in {kinds:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_over_real_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let folders = common::folders(dir.path());
    let services = std::sync::Arc::new(TestServices {
        output_dir: folders.output_directory().to_path_buf(),
        unloads: Default::default(),
    });
    let config = ServerConfig::builder(folders, registry(), services)
        .listen("127.0.0.1")
        .port(0)
        .build()
        .unwrap();
    let server = Server::start(config).unwrap().bind().await.unwrap();
    let address = server.local_addrs()[0];
    assert_ne!(address.port(), 0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_until(async {
        let _ = stopped.await;
    }));

    // Greeting, then the feature flag exchange.
    let mut socket = connect(address, "client-a").await;
    let (greeting, _) = next(&mut socket).await;
    assert_eq!(
        greeting,
        json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                          "sid": "client-a"}})
    );
    socket
        .send(Message::text(
            json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}})
                .to_string(),
        ))
        .await
        .unwrap();
    // Status broadcasts may come at any time (the engine announces the queue when it starts).
    let flags = loop {
        let (message, _) = next(&mut socket).await;
        if message["type"] != "status" {
            break message;
        }
    };
    assert_eq!(flags["type"], "feature_flags");
    assert_eq!(flags["data"]["supports_preview_metadata"], true);
    assert!(flags["data"]["max_upload_size"].is_u64());

    // A second socket that never negotiates metadata, and a third for another client.
    let mut plain = connect(address, "client-b").await;
    next(&mut plain).await;

    // 1. A fresh run: the full event order.
    let (status, answer) = post(
        address,
        "/prompt",
        &json!({"prompt": slow_prompt(5, 3, 1), "client_id": "client-a"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let prompt_id = answer["prompt_id"].as_str().unwrap().to_owned();
    let messages = until_done(&mut socket, &prompt_id).await;
    let order = kinds(&messages);
    let ours: Vec<&Json> = messages
        .iter()
        .filter(|message| message["data"]["prompt_id"] == prompt_id.as_str())
        .collect();
    assert_eq!(ours[0]["type"], "execution_start", "{order:?}");
    assert_eq!(ours[1]["type"], "execution_cached");
    assert_eq!(ours[1]["data"]["nodes"], json!([]));
    let executing: Vec<&Json> = ours
        .iter()
        .filter(|message| message["type"] == "executing")
        .map(|message| &message["data"]["node"])
        .collect();
    assert_eq!(
        executing,
        [&json!("1"), &json!("2"), &json!("3"), &Json::Null]
    );
    let start = position(&order, "execution_start");
    let progress = position(&order, "progress");
    let preview = position(&order, "binary4");
    let executed = position(&order, "executed");
    let success = position(&order, "execution_success");
    assert!(start < preview && preview < progress && progress < executed && executed < success);
    assert!(order.contains(&"progress_state".to_owned()));
    let progress_message = &messages[progress];
    assert_eq!(progress_message["data"]["node"], "2");
    assert_eq!(progress_message["data"]["max"], 3);
    assert_eq!(
        messages[executed]["data"]["output"]["images"][0]["type"],
        "output"
    );
    // The history entry exists by the time the final `executing` arrives.
    let (status_after, _) = next(&mut socket).await;
    assert_eq!(status_after["type"], "status");
    assert_eq!(
        status_after["data"]["status"]["exec_info"]["queue_remaining"],
        0
    );

    // 2. The same prompt again: everything cached, the output re-reported, no progress.
    let (_, answer) = post(
        address,
        "/api/prompt",
        &json!({"prompt": slow_prompt(5, 3, 1), "client_id": "client-a"}),
    )
    .await;
    let cached_id = answer["prompt_id"].as_str().unwrap().to_owned();
    let messages = until_done(&mut socket, &cached_id).await;
    let order = kinds(&messages);
    let cached = messages
        .iter()
        .find(|message| message["type"] == "execution_cached")
        .unwrap();
    assert_eq!(cached["data"]["nodes"], json!(["1", "2", "3"]));
    assert!(!order.contains(&"progress".to_owned()), "{order:?}");
    assert!(order.contains(&"executed".to_owned()));
    assert!(order.contains(&"execution_success".to_owned()));

    // 3. Interrupt mid-run.
    let (_, answer) = post(
        address,
        "/prompt",
        &json!({"prompt": slow_prompt(6, 6000, 5), "client_id": "client-a"}),
    )
    .await;
    let slow_id = answer["prompt_id"].as_str().unwrap().to_owned();
    loop {
        let (message, _) = next(&mut socket).await;
        if message["type"] == "progress" && message["data"]["prompt_id"] == slow_id.as_str() {
            break;
        }
    }
    let (status, _) = post(address, "/interrupt", &json!({"prompt_id": slow_id})).await;
    assert_eq!(status, 200);
    let messages = until_done(&mut socket, &slow_id).await;
    let order = kinds(&messages);
    let interrupted = position(&order, "execution_interrupted");
    assert_eq!(messages[interrupted]["data"]["node_id"], "2");
    assert_eq!(messages[interrupted]["data"]["node_type"], "Slow");
    assert!(!order.contains(&"execution_success".to_owned()));

    // 4. A prompt without a client: previews go to every socket; `executing` to none.
    let (_, answer) = post(address, "/prompt", &json!({"prompt": slow_prompt(7, 2, 1)})).await;
    let anonymous = answer["prompt_id"].as_str().unwrap().to_owned();
    let mut saw_plain_preview = false;
    loop {
        let (message, bytes) = next(&mut plain).await;
        assert_ne!(
            message["type"], "executing",
            "client-b got another prompt's executing"
        );
        if message["binary"] == 1 {
            // [u32 1][u32 format = 2 (PNG)][PNG bytes]
            assert_eq!(&bytes[4..8], &[0, 0, 0, 2]);
            assert_eq!(&bytes[8..12], b"\x89PNG");
            saw_plain_preview = true;
        }
        if message["type"] == "progress" && message["data"]["prompt_id"] == anonymous.as_str() {
            let max = message["data"]["max"].as_u64().unwrap();
            if message["data"]["value"].as_u64() == Some(max) {
                break;
            }
        }
    }
    assert!(saw_plain_preview);

    // 5. Validation errors over the wire.
    let (status, answer) = post(
        address,
        "/prompt",
        &json!({"prompt": {"1": {"class_type": "SaveNumber", "inputs": {}}}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["type"], "prompt_outputs_failed_validation");
    assert_eq!(
        answer["node_errors"]["1"]["errors"][0]["type"],
        "required_input_missing"
    );

    // A reconnect with the same id replaces the old socket.
    let mut again = connect(address, "client-a").await;
    let (greeting, _) = next(&mut again).await;
    assert_eq!(greeting["data"]["sid"], "client-a");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the replaced socket stayed open");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), serving)
        .await
        .expect("server did not stop")
        .unwrap()
        .unwrap();
}
