//! The queue survives load and restarts: 200 concurrent submissions all reach history, and
//! prompts pending (or running) when the engine stops all run after a restart on the same
//! database.
#![allow(clippy::unwrap_used)] // tests: a failed step should fail the test

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{slow_prompt, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_prompts_all_reach_history() {
    let server = std::sync::Arc::new(TestServer::new());
    let mut tasks = Vec::new();
    for value in 0..200 {
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let (status, answer) = server
                .post("/api/prompt", json!({"prompt": slow_prompt(value, 1, 0)}))
                .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            (
                answer["prompt_id"].as_str().unwrap().to_owned(),
                answer["number"].as_i64().unwrap(),
            )
        }));
    }
    let mut ids = HashSet::new();
    let mut numbers = HashSet::new();
    for task in tasks {
        let (id, number) = task.await.unwrap();
        ids.insert(id);
        numbers.insert(number);
    }
    assert_eq!(ids.len(), 200);
    assert_eq!(numbers.len(), 200, "every prompt got its own number");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, history) = server.get("/history").await;
        let done = history.as_object().unwrap();
        if done.len() == 200 {
            assert!(ids
                .iter()
                .all(|id| done[id]["status"]["status_str"] == "success"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of 200 finished",
            done.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, jobs) = server.get("/api/jobs?status=completed&limit=10").await;
    assert_eq!(jobs["pagination"]["total"], 200);
    assert_eq!(jobs["pagination"]["has_more"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_prompts_survive_a_restart() {
    let first = TestServer::new();
    let mut ids = Vec::new();
    for value in 0..20 {
        ids.push(first.submit(slow_prompt(value, 5, 10)).await);
    }
    let (_, queue) = first.get("/queue").await;
    assert!(!queue["queue_pending"].as_array().unwrap().is_empty());
    // Stop with prompts pending and one running: the running one is re-queued at the front.
    let dir = first.stop();

    let second = TestServer::in_dir(dir, |builder| builder);
    for id in &ids {
        let entry = second.wait_for_history(id).await;
        assert_eq!(entry["status"]["status_str"], "success", "{id}");
    }
    let (_, history) = second.get("/history").await;
    assert_eq!(history.as_object().unwrap().len(), 20);
    let (_, queue) = second.get("/queue").await;
    assert_eq!(queue, json!({"queue_running": [], "queue_pending": []}));

    // And history itself persists.
    let dir = second.stop();
    let third = TestServer::in_dir(dir, |builder| builder);
    let (_, history) = third.get("/history").await;
    assert_eq!(history.as_object().unwrap().len(), 20);
    let outputs = &history[&ids[0]]["outputs"]["3"]["images"][0]["filename"];
    assert!(outputs.is_string());
}
