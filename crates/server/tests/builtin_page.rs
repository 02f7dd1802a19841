//! The built-in page through `app().oneshot(request)`: served at `/` with its element ids and
//! security headers when no `--front-end-root` is given, its script and stylesheet with their
//! MIME types, replaced by the frontend's index when a root is given; when node is installed,
//! its script parsed by `node --check` and run against a stand-in DOM (the prompt it sends, the
//! errors it shows, the states it goes through).
#![allow(clippy::unwrap_used)] // tests: a failed step should fail the test

mod common;

use std::process::Command;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use common::TestServer;
use serde_json::{json, Value as Json};

/// The ids browser tests drive; renaming one breaks them.
const CONTRACT_IDS: [&str; 16] = [
    "checkpoint",
    "prompt",
    "negative",
    "width",
    "height",
    "steps",
    "sampler",
    "scheduler",
    "cfg",
    "seed",
    "batch",
    "generate",
    "progress",
    "preview",
    "gallery",
    "queue",
];

async fn fetch(server: &TestServer, uri: &str) -> (StatusCode, String, HeaderMap) {
    let (status, body, headers) = server
        .send(Request::get(uri).body(Body::empty()).unwrap())
        .await;
    (status, String::from_utf8(body).unwrap(), headers)
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// Every value of `attribute="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let marker = format!(" {attribute}=\"");
    html.match_indices(&marker)
        .filter_map(|(at, _)| {
            let rest = &html[at + marker.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// The page's script and stylesheet URLs, as its HTML names them.
fn asset_urls(html: &str) -> (Vec<&str>, Vec<&str>) {
    let scripts = attribute_values(html, "src")
        .into_iter()
        .filter(|url| url.ends_with(".js"))
        .collect();
    let styles = attribute_values(html, "href")
        .into_iter()
        .filter(|url| url.ends_with(".css"))
        .collect();
    (scripts, styles)
}

async fn page_script(server: &TestServer) -> String {
    let (_, html, _) = fetch(server, "/").await;
    let (scripts, _) = asset_urls(&html);
    assert_eq!(scripts.len(), 1, "one script: {scripts:?}");
    let (status, script, _) = fetch(server, scripts[0]).await;
    assert_eq!(status, StatusCode::OK);
    script
}

#[tokio::test]
async fn the_root_serves_the_builtin_page_with_its_element_ids() {
    let server = TestServer::new();
    let (status, html, headers) = fetch(&server, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(header_text(&headers, header::CONTENT_TYPE).starts_with("text/html"));
    assert_eq!(header_text(&headers, header::CACHE_CONTROL), "no-cache");
    assert_eq!(
        header_text(&headers, header::X_CONTENT_TYPE_OPTIONS),
        "nosniff"
    );
    let policy = header_text(&headers, header::CONTENT_SECURITY_POLICY);
    for directive in [
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} missing: {policy}");
    }
    assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));

    let ids = attribute_values(&html, "id");
    for id in CONTRACT_IDS {
        assert_eq!(
            ids.iter().filter(|found| **found == id).count(),
            1,
            "id {id} once"
        );
    }
    assert!(html.contains("<body data-state=\"idle\""));
    assert_eq!(html, kiln_server::builtin_page().0);

    // `/api/` is the API's prefix, not another copy of the page.
    let (status, _, _) = fetch(&server, "/api/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_page_assets_are_served_with_their_mime_types() {
    let server = TestServer::new();
    let (_, html, _) = fetch(&server, "/").await;
    let (scripts, styles) = asset_urls(&html);
    assert_eq!(
        (scripts.len(), styles.len()),
        (1, 1),
        "{scripts:?} {styles:?}"
    );
    for (url, mime) in [(scripts[0], "text/javascript"), (styles[0], "text/css")] {
        let (status, body, headers) = fetch(&server, url).await;
        assert_eq!(status, StatusCode::OK, "{url}");
        assert!(!body.is_empty(), "{url}");
        assert!(
            header_text(&headers, header::CONTENT_TYPE).starts_with(mime),
            "{url}: {headers:?}"
        );
        assert_eq!(header_text(&headers, header::CACHE_CONTROL), "no-cache");
        assert_eq!(
            header_text(&headers, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
    }
    let (status, _, _) = fetch(&server, "/page/missing.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_page_needs_no_inline_code_and_no_outside_resources() {
    let server = TestServer::new();
    let (_, html, _) = fetch(&server, "/").await;
    // The policy forbids inline script and style, so the page must not rely on them.
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=").count()
    );
    assert!(!html.contains("<style") && !html.contains(" style=\""));
    let inline_handlers: Vec<&str> = html
        .match_indices(" on")
        .map(|(at, _)| &html[at + 1..])
        .filter_map(|rest| rest.split_once("=\"").map(|(name, _)| name))
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase()))
        .collect();
    assert!(inline_handlers.is_empty(), "{inline_handlers:?}");
    for url in attribute_values(&html, "src")
        .into_iter()
        .chain(attribute_values(&html, "href"))
    {
        assert!(
            url.starts_with('/') && !url.starts_with("//") || url.starts_with("data:"),
            "{url} is not this server's"
        );
    }
    let script = page_script(&server).await;
    assert!(!script.contains("http://") && !script.contains("https://"));
}

#[tokio::test]
async fn every_element_the_script_looks_up_is_in_the_page() {
    let server = TestServer::new();
    let (_, html, _) = fetch(&server, "/").await;
    let ids = attribute_values(&html, "id");
    let script = page_script(&server).await;
    let looked_up: Vec<&str> = script
        .match_indices("$('")
        .filter_map(|(at, _)| {
            let rest = &script[at + 3..];
            rest.find('\'').map(|end| &rest[..end])
        })
        .collect();
    assert!(looked_up.len() > 10, "{looked_up:?}");
    for id in looked_up {
        assert!(
            ids.contains(&id),
            "the script looks up #{id}, the page has none"
        );
    }
}

#[tokio::test]
async fn the_script_speaks_the_routes_the_server_answers() {
    let server = TestServer::new();
    let script = page_script(&server).await;
    for route in [
        "/object_info/CheckpointLoaderSimple",
        "/object_info/KSampler",
        "'/prompt'",
        "/ws?clientId=",
        "'/queue'",
        "'/interrupt'",
        "/history?max_items=",
        "/view?",
        "supports_preview_metadata",
    ] {
        assert!(script.contains(route), "{route} missing from the script");
    }
    for (uri, expected) in [
        ("/object_info/CheckpointLoaderSimple", StatusCode::OK),
        ("/object_info/KSampler", StatusCode::OK),
        ("/queue", StatusCode::OK),
        ("/history?max_items=24", StatusCode::OK),
    ] {
        assert_eq!(fetch(&server, uri).await.0, expected, "{uri}");
    }
}

#[tokio::test]
async fn a_front_end_root_replaces_the_builtin_page() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<html>frontend</html>").unwrap();
    let root = site.path().to_owned();
    let server = TestServer::with(move |builder| builder.front_end_root(Some(root)));
    let (status, body, headers) = fetch(&server, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "<html>frontend</html>");
    assert!(headers.get(header::CONTENT_SECURITY_POLICY).is_none());
    let (status, _, _) = fetch(&server, "/page/app.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = fetch(&server, "/page/style.css").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// `node ARGS...` in `dir`: its output, or `None` (with a note) when node is not installed.
/// In CI (env `CI` set) a missing node fails the test instead.
fn run_node(dir: &std::path::Path, args: &[&str]) -> Option<std::process::Output> {
    match Command::new("node").args(args).current_dir(dir).output() {
        Ok(output) => Some(output),
        Err(error) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "node is required in CI to check the page script: {error}"
            );
            eprintln!("note: node not found ({error}); the page script is not checked");
            None
        }
    }
}

#[tokio::test]
async fn the_page_script_parses() {
    let server = TestServer::new();
    let script = page_script(&server).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.js"), script).unwrap();
    let Some(checked) = run_node(dir.path(), &["--check", "app.js"]) else {
        return;
    };
    assert!(
        checked.status.success(),
        "node --check failed:\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// Runs the page script in node against a stand-in DOM, `fetch` and `WebSocket`: load, a
/// refused submission, an accepted one, then progress, a preview frame and success events.
/// Prints what the page showed as JSON.
const SCRIPT_HARNESS: &str = r##"// Runs the page script against a stand-in DOM, fetch and WebSocket, drives one refused and
// one accepted submission and the events of a run, and prints what it saw as JSON.
'use strict';
const source = require('fs').readFileSync(process.argv[2], 'utf8');

class FakeElement {
  constructor(tag, id) {
    Object.assign(this, { tag, id, value: '', checked: false, hidden: false, disabled: false,
      textContent: '', className: '', dataset: {}, attributes: {}, children: [], listeners: {} });
  }
  addEventListener(type, listener) { (this.listeners[type] ||= []).push(listener); }
  dispatch(type, event) { for (const listener of this.listeners[type] || []) listener(event); }
  setAttribute(name, value) { this.attributes[name] = String(value); }
  removeAttribute(name) { delete this.attributes[name]; }
  append(...nodes) { this.children.push(...nodes); }
  prepend(...nodes) { this.children.unshift(...nodes); }
  replaceChildren(...nodes) { this.children = nodes; }
  querySelector() { return null; }
  get lastElementChild() { return this.children[this.children.length - 1]; }
  get text() { return [this.textContent, ...this.children.map((child) => child.text)].join(' ').trim(); }
}
class FakeSelect extends FakeElement {
  get options() { return this.children; }
  replaceChildren(...nodes) { super.replaceChildren(...nodes); this.value = nodes.length ? nodes[0].value : ''; }
}
const SELECTS = ['checkpoint', 'sampler', 'scheduler'];
const elements = new Map();
const body = new FakeElement('body', null);
globalThis.HTMLSelectElement = FakeSelect;
globalThis.document = {
  body,
  getElementById(id) {
    if (!elements.has(id)) elements.set(id, SELECTS.includes(id) ? new FakeSelect('select', id) : new FakeElement('x', id));
    return elements.get(id);
  },
  createElement: (tag) => new FakeElement(tag, null),
};
const stored = new Map();
globalThis.localStorage = { getItem: (k) => stored.get(k) ?? null, setItem: (k, v) => stored.set(k, String(v)) };
globalThis.location = { protocol: 'http:', host: '127.0.0.1:8188' };

const objectInfo = {
  '/object_info/CheckpointLoaderSimple': { CheckpointLoaderSimple: { input: { required: { ckpt_name: [['a.safetensors', 'b.safetensors'], {}] } } } },
  '/object_info/KSampler': { KSampler: { input: { required: {
    seed: ['INT', { default: 0, min: 0, max: 18446744073709551615 }],
    steps: ['INT', { default: 20, min: 1, max: 10000 }],
    cfg: ['FLOAT', { default: 8.0, min: 0, max: 100, step: 0.1 }],
    sampler_name: [['euler', 'dpmpp_2m'], {}],
    scheduler: ['COMBO', { options: ['simple', 'normal', 'karras'] }],
  } } } },
  '/object_info/EmptyLatentImage': { EmptyLatentImage: { input: { required: {
    width: ['INT', { default: 512, min: 16, max: 16384, step: 8 }],
    height: ['INT', { default: 512, min: 16, max: 16384, step: 8 }],
    batch_size: ['INT', { default: 1, min: 1, max: 4096 }],
  } } } },
  '/history?max_items=24': {},
  '/queue': { queue_running: [], queue_pending: [] },
};
const posts = [];
const history = {};
let refuseNext = false;
const answer = (status, value) => ({ ok: status < 300, status, json: async () => value, text: async () => JSON.stringify(value) });
globalThis.fetch = async (url, init = {}) => {
  if (init.method === 'POST') {
    posts.push({ url, body: init.body });
    if (url !== '/prompt') return answer(200, {});
    if (refuseNext) {
      refuseNext = false;
      return answer(400, { error: { type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details: '' },
        node_errors: { 3: { class_type: 'KSampler', errors: [{ type: 'value_smaller_than_min', message: 'Value 0 smaller than min of 1', details: 'steps', extra_info: { input_name: 'steps' } }] } } });
    }
    return answer(200, { prompt_id: JSON.parse(init.body).prompt_id, number: 1, node_errors: {} });
  }
  if (url in objectInfo) return answer(200, objectInfo[url]);
  if (url.startsWith('/history/')) {
    const id = decodeURIComponent(url.slice('/history/'.length));
    return answer(200, history[id] ? { [id]: history[id] } : {});
  }
  return answer(404, {});
};
const sockets = [];
globalThis.WebSocket = class extends FakeElement {
  constructor(url) { super('ws', null); this.url = url; this.sent = []; sockets.push(this); }
  send(text) { this.sent.push(text); }
};

const $ = (id) => document.getElementById(id);
const until = async (check) => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 2));
  if (!check()) throw new Error(`timed out in state ${body.dataset.state}`);
};
const submit = () => $('form').dispatch('submit', { preventDefault() {} });
const event = (type, data) => sockets[0].dispatch('message', { data: JSON.stringify({ type, data }) });

(async () => {
  new Function(source)();
  await until(() => body.dataset.ready === 'true');
  const seen = { ready: { checkpoint: $('checkpoint').value, sampler: $('sampler').value,
    scheduler: $('scheduler').value, steps: $('steps').value, width: $('width').value } };
  sockets[0].dispatch('open', {});
  seen.wsUrl = sockets[0].url;
  seen.wsFirst = sockets[0].sent[0];

  Object.assign($('steps'), { value: '0' });
  refuseNext = true;
  submit();
  await until(() => body.dataset.state === 'error');
  seen.refused = { state: body.dataset.state, errors: $('errors').text, hidden: $('errors').hidden, stepsInvalid: $('steps').attributes['aria-invalid'] };

  const values = { checkpoint: 'b.safetensors', prompt: 'a cat', negative: 'a dog', width: '640', height: '448',
    steps: '25', cfg: '6.5', seed: '18446744073709551615', batch: '3', sampler: 'dpmpp_2m', scheduler: 'karras' };
  for (const [id, value] of Object.entries(values)) $(id).value = value;
  submit();
  await until(() => posts.length === 2);
  const promptId = JSON.parse(posts[1].body.replace(/"seed":\d+/, '"seed":0')).prompt_id;
  seen.body = posts[1].body;
  await until(() => body.dataset.state === 'running');
  seen.running = body.dataset.state;
  seen.errorsClearedOnSubmit = $('errors').hidden;
  seen.settings = JSON.parse(stored.get('kiln.page.settings.v1'));

  event('executing', { node: '3', display_node: '3', prompt_id: promptId });
  event('progress', { value: 5, max: 25, node: '3', prompt_id: promptId });
  seen.progress = { value: $('progress').value, max: $('progress').max, text: $('progress-text').textContent, node: $('running-node').textContent };
  const meta = new TextEncoder().encode(JSON.stringify({ node_id: '3', prompt_id: promptId, image_type: 'image/png' }));
  const frame = new Uint8Array(8 + meta.length + 4);
  new DataView(frame.buffer).setUint32(0, 4);
  new DataView(frame.buffer).setUint32(4, meta.length);
  frame.set(meta, 8);
  sockets[0].dispatch('message', { data: frame.buffer });
  seen.preview = { source: $('preview').dataset.source, src: $('preview').src.slice(0, 5), hidden: $('preview').hidden };

  history[promptId] = { prompt: [1, promptId, JSON.parse(seen.body.replace(/"seed":(\d+)/, '"seed":"$1"')).prompt, {}, ['9']],
    outputs: { 9: { images: [{ filename: 'Kiln_00001_.png', subfolder: '', type: 'output' }] } },
    status: { status_str: 'success', completed: true, messages: [] } };
  event('execution_success', { prompt_id: promptId });
  await until(() => body.dataset.state === 'done');
  const card = $('gallery').children[0];
  seen.done = { state: body.dataset.state, cardPrompt: card && card.dataset.promptId === promptId,
    caption: card && card.text, preview: $('preview').src, previewSource: $('preview').dataset.source };
  process.stdout.write(JSON.stringify(seen));
})().catch((error) => { console.error(error); process.exit(1); });
"##;

#[tokio::test]
async fn the_script_builds_the_default_graph_and_follows_a_run() {
    let server = TestServer::new();
    let script = page_script(&server).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.js"), script).unwrap();
    std::fs::write(dir.path().join("harness.js"), SCRIPT_HARNESS).unwrap();
    let Some(run) = run_node(dir.path(), &["harness.js", "app.js"]) else {
        return;
    };
    assert!(
        run.status.success(),
        "harness failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: Json = serde_json::from_slice(&run.stdout).unwrap();

    // Combos from both object_info shapes; without a declared default, ComfyUI's choices.
    assert_eq!(
        seen["ready"],
        json!({"checkpoint": "a.safetensors", "sampler": "euler", "scheduler": "normal",
               "steps": "20", "width": "512"})
    );
    assert_eq!(
        seen["wsFirst"].as_str().unwrap(),
        r#"{"type":"feature_flags","data":{"supports_preview_metadata":true}}"#
    );

    // A 400 answer: the node error named by field, the field marked.
    assert_eq!(seen["refused"]["state"], "error");
    assert_eq!(seen["refused"]["hidden"], false);
    assert_eq!(seen["refused"]["stepsInvalid"], "true");
    let errors = seen["refused"]["errors"].as_str().unwrap();
    assert!(
        errors.contains("Steps (#3 KSampler.steps): Value 0 smaller than min of 1"),
        "{errors}"
    );

    // The request: ComfyUI's default txt2img graph with its node ids, the exact seed.
    let body: Json = serde_json::from_str(seen["body"].as_str().unwrap()).unwrap();
    let prompt = &body["prompt"];
    let classes: Vec<(&str, &str)> = prompt
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, node)| (id.as_str(), node["class_type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        classes,
        [
            ("3", "KSampler"),
            ("4", "CheckpointLoaderSimple"),
            ("5", "EmptyLatentImage"),
            ("6", "CLIPTextEncode"),
            ("7", "CLIPTextEncode"),
            ("8", "VAEDecode"),
            ("9", "SaveImage"),
        ]
    );
    assert_eq!(
        prompt["3"]["inputs"],
        json!({"seed": u64::MAX, "steps": 25, "cfg": 6.5, "sampler_name": "dpmpp_2m",
               "scheduler": "karras", "denoise": 1, "model": ["4", 0], "positive": ["6", 0],
               "negative": ["7", 0], "latent_image": ["5", 0]})
    );
    assert_eq!(prompt["4"]["inputs"], json!({"ckpt_name": "b.safetensors"}));
    assert_eq!(
        prompt["5"]["inputs"],
        json!({"width": 640, "height": 448, "batch_size": 3})
    );
    assert_eq!(
        prompt["6"]["inputs"],
        json!({"text": "a cat", "clip": ["4", 1]})
    );
    assert_eq!(
        prompt["7"]["inputs"],
        json!({"text": "a dog", "clip": ["4", 1]})
    );
    assert_eq!(
        prompt["8"]["inputs"],
        json!({"samples": ["3", 0], "vae": ["4", 2]})
    );
    assert_eq!(prompt["9"]["inputs"]["images"], json!(["8", 0]));
    let client_id = body["client_id"].as_str().unwrap();
    assert_eq!(
        seen["wsUrl"].as_str().unwrap(),
        format!("ws://127.0.0.1:8188/ws?clientId={client_id}")
    );
    let prompt_id = body["prompt_id"].as_str().unwrap();
    let dashes: Vec<usize> = prompt_id.match_indices('-').map(|(at, _)| at).collect();
    assert_eq!((prompt_id.len(), dashes), (36, vec![8, 13, 18, 23]));

    assert_eq!(seen["running"], "running");
    assert_eq!(seen["errorsClearedOnSubmit"], true);
    assert_eq!(seen["settings"]["prompt"], "a cat");
    assert_eq!(seen["settings"]["seed"], "18446744073709551615");

    // Progress, the running node, a type-4 preview, then the result in the gallery.
    assert_eq!(
        seen["progress"],
        json!({"value": 5, "max": 25, "text": "5/25", "node": "Running KSampler (#3)"})
    );
    assert_eq!(
        seen["preview"],
        json!({"source": "live", "src": "blob:", "hidden": false})
    );
    let done = &seen["done"];
    assert_eq!(done["state"], "done");
    assert_eq!(done["cardPrompt"], true);
    let caption = done["caption"].as_str().unwrap();
    for fact in [
        "a cat",
        "Negative: a dog",
        "b.safetensors",
        "640×448",
        "25 steps",
        "dpmpp_2m/karras",
        "CFG 6.5",
        "seed 18446744073709551615",
        "batch 3",
    ] {
        assert!(caption.contains(fact), "{fact} missing from {caption}");
    }
    assert_eq!(
        done["preview"],
        "/view?filename=Kiln_00001_.png&subfolder=&type=output"
    );
    assert_eq!(done["previewSource"], "result");
}
