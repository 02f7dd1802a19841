//! Execution order, events, caching across prompts, interruption and failures.

mod common;

use std::sync::Arc;

use common::TestServices;
use kiln_graph::{
    ExecutionEvent, ExecutionFailure, ExecutionOutcome, ExecutionRequest, Executor, GraphError,
    NodeError, Prompt, Validator,
};
use serde_json::{json, Value as Json};

struct Harness {
    executor: Executor,
    services: Arc<TestServices>,
}

impl Harness {
    fn new() -> Self {
        let services = Arc::new(TestServices::default());
        let executor = Executor::new(Arc::new(common::registry()), services.clone());
        *services.interrupt.lock().expect("lock") = Some(executor.interrupt_flag());
        Harness { executor, services }
    }

    fn request(&self, prompt_id: &str, prompt: &Json) -> ExecutionRequest {
        let validated = Validator::new(self.executor.registry(), &common::folders)
            .validate(prompt)
            .expect("test prompts are valid");
        ExecutionRequest::new(prompt_id, validated).extra_data(json!({"client_id": "c1"}))
    }

    fn run(
        &mut self,
        prompt_id: &str,
        prompt: &Json,
    ) -> (
        Result<ExecutionOutcome, Box<ExecutionFailure>>,
        Vec<ExecutionEvent>,
    ) {
        let request = self.request(prompt_id, prompt);
        self.services.clear_log();
        let mut events = Vec::new();
        let result = self.executor.execute(&request, &mut events);
        (result, events)
    }
}

fn executing_nodes(events: &[ExecutionEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            ExecutionEvent::Executing {
                node: Some(node), ..
            } => Some(node.clone()),
            _ => None,
        })
        .collect()
}

fn cached_nodes(events: &[ExecutionEvent]) -> Vec<String> {
    events
        .iter()
        .find_map(|event| match event {
            ExecutionEvent::ExecutionCached { nodes, .. } => Some(nodes.clone()),
            _ => None,
        })
        .expect("execution_cached is always sent")
}

fn event_types(events: &[ExecutionEvent]) -> Vec<&'static str> {
    events.iter().map(ExecutionEvent::event_type).collect()
}

/// 1 ─┐
///    ├─ 3 Add ─ 4 Format ─ 5 Show
/// 2 ─┘
fn sum_prompt(a: i64, b: i64) -> Json {
    json!({
        "1": {"class_type": "Constant", "inputs": {"value": a}},
        "2": {"class_type": "Constant", "inputs": {"value": b}},
        "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
        "4": {"class_type": "Format", "inputs": {"value": ["3", 0], "prefix": "sum="}},
        "5": {"class_type": "Show", "inputs": {"text": ["4", 0]}}
    })
}

#[test]
fn runs_in_comfyui_order_and_reports_every_step() {
    let mut harness = Harness::new();
    let (result, events) = harness.run("p1", &sum_prompt(2, 3));
    let outcome = result.unwrap();
    // ComfyUI's stack-based discovery makes the last-linked input run first.
    assert_eq!(executing_nodes(&events), ["2", "1", "3", "4", "5"]);
    assert_eq!(harness.services.executed(), ["2", "1", "3", "4", "5"]);
    assert_eq!(outcome.executed, ["2", "1", "3", "4", "5"]);
    assert_eq!(
        outcome.outputs_json(),
        json!({"5": {"text": ["sum=5"], "id": ["5"]}})
    );
    assert_eq!(
        outcome.meta_json(),
        json!({"5": {"node_id": "5", "display_node": "5", "parent_node": null, "real_node_id": "5"}})
    );

    let types = event_types(&events);
    assert_eq!(types[..2], ["execution_start", "execution_cached"]);
    assert_eq!(types[types.len() - 2..], ["execution_success", "executing"]);
    assert!(events.last().unwrap().is_final());
    // Per node: progress_state (running), executing, [executed], progress_state (finished).
    assert_eq!(
        types[2..6],
        [
            "progress_state",
            "executing",
            "progress_state",
            "progress_state"
        ]
    );
    let executed = events
        .iter()
        .find(|event| event.event_type() == "executed")
        .unwrap();
    assert_eq!(
        executed.to_ws_json().unwrap(),
        json!({"type": "executed", "data": {"node": "5", "display_node": "5",
               "output": {"text": ["sum=5"], "id": ["5"]}, "prompt_id": "p1"}})
    );
    let start = events[0].to_ws_json().unwrap();
    assert_eq!(start["data"]["prompt_id"], "p1");
    assert!(start["data"]["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
}

#[test]
fn output_nodes_and_their_feeders_go_first() {
    let mut harness = Harness::new();
    let mut prompt = sum_prompt(2, 3);
    prompt["6"] = json!({"class_type": "ShowInt", "inputs": {"value": ["1", 0]}});
    let (result, events) = harness.run("p1", &prompt);
    result.unwrap();
    assert_eq!(executing_nodes(&events), ["1", "6", "2", "3", "4", "5"]);
}

#[test]
fn unchanged_nodes_are_served_from_cache_and_changes_run_downstream_only() {
    let mut harness = Harness::new();
    harness.run("p1", &sum_prompt(2, 3)).0.unwrap();

    let (result, events) = harness.run("p2", &sum_prompt(2, 4));
    let outcome = result.unwrap();
    assert_eq!(cached_nodes(&events), ["1"]);
    assert_eq!(harness.services.executed(), ["2", "3", "4", "5"]);
    assert_eq!(
        outcome.outputs["5"],
        json!({"text": ["sum=6"], "id": ["5"]})
    );

    let (result, events) = harness.run("p3", &sum_prompt(2, 4));
    let outcome = result.unwrap();
    assert_eq!(cached_nodes(&events), ["1", "2", "3", "4", "5"]);
    assert!(harness.services.executed().is_empty());
    assert!(executing_nodes(&events).is_empty());
    // The cached output node is reported again, and stays in the history outputs.
    let executed: Vec<&ExecutionEvent> = events
        .iter()
        .filter(|event| event.event_type() == "executed")
        .collect();
    assert_eq!(executed.len(), 1);
    assert_eq!(
        outcome.outputs["5"],
        json!({"text": ["sum=6"], "id": ["5"]})
    );
    assert_eq!(outcome.cached, ["1", "2", "3", "4", "5"]);
}

#[test]
fn a_changed_literal_downstream_leaves_upstream_cached() {
    let mut harness = Harness::new();
    harness.run("p1", &sum_prompt(2, 3)).0.unwrap();
    let mut prompt = sum_prompt(2, 3);
    prompt["4"]["inputs"]["prefix"] = json!("total=");
    let (result, events) = harness.run("p2", &prompt);
    assert_eq!(result.unwrap().outputs["5"]["text"], json!(["total=5"]));
    assert_eq!(cached_nodes(&events), ["1", "2", "3"]);
    assert_eq!(harness.services.executed(), ["4", "5"]);
}

#[test]
fn the_cache_keeps_only_the_latest_prompt() {
    let mut harness = Harness::new();
    harness.run("p1", &sum_prompt(2, 3)).0.unwrap();
    harness.run("p2", &sum_prompt(7, 8)).0.unwrap();
    let (_, events) = harness.run("p3", &sum_prompt(2, 3));
    assert!(cached_nodes(&events).is_empty());
    assert_eq!(harness.services.executed().len(), 5);
}

#[test]
fn always_nodes_rerun_with_everything_downstream() {
    let mut harness = Harness::new();
    let prompt = json!({
        "1": {"class_type": "Random", "inputs": {}},
        "2": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Constant", "inputs": {"value": 9}},
        "4": {"class_type": "ShowInt", "inputs": {"value": ["3", 0]}}
    });
    let first = harness.run("p1", &prompt).0.unwrap();
    assert_eq!(first.outputs["2"], json!({"value": ["1"]}));
    let (result, events) = harness.run("p2", &prompt);
    assert_eq!(result.unwrap().outputs["2"], json!({"value": ["2"]}));
    assert_eq!(cached_nodes(&events), ["3", "4"]);
    assert_eq!(harness.services.executed(), ["1", "2"]);
}

#[test]
fn fingerprinted_nodes_rerun_when_the_fingerprint_changes() {
    let mut harness = Harness::new();
    harness.services.set_hash("fingerprint-test.txt", "h1");
    let prompt = json!({
        "1": {"class_type": "FileHash", "inputs": {"name": "fingerprint-test.txt"}},
        "2": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}}
    });
    harness.run("p1", &prompt).0.unwrap();
    let (_, events) = harness.run("p2", &prompt);
    assert_eq!(cached_nodes(&events), ["1", "2"]);
    harness.services.set_hash("fingerprint-test.txt", "h2");
    let (_, events) = harness.run("p3", &prompt);
    assert!(cached_nodes(&events).is_empty());
    assert_eq!(harness.services.executed(), ["1", "2"]);

    // No fingerprint at all: treated as always changed.
    let unknown = json!({
        "1": {"class_type": "FileHash", "inputs": {"name": "no-fingerprint.txt"}},
        "2": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}}
    });
    harness.run("p4", &unknown).0.unwrap();
    let (_, events) = harness.run("p5", &unknown);
    assert!(cached_nodes(&events).is_empty());
}

#[test]
fn progress_is_reported_between_executing_and_executed() {
    let mut harness = Harness::new();
    let prompt = json!({
        "1": {"class_type": "Constant", "inputs": {"value": 4}},
        "2": {"class_type": "Slow", "inputs": {"x": ["1", 0], "steps": 2}},
        "3": {"class_type": "ShowInt", "inputs": {"value": ["2", 0]}}
    });
    let (result, events) = harness.run("p1", &prompt);
    result.unwrap();
    let progress: Vec<Json> = events
        .iter()
        .filter(|event| event.event_type() == "progress")
        .map(|event| event.to_ws_json().unwrap())
        .collect();
    assert_eq!(
        progress,
        [
            json!({"type": "progress", "data": {"value": 1, "max": 2, "prompt_id": "p1", "node": "2"}}),
            json!({"type": "progress", "data": {"value": 2, "max": 2, "prompt_id": "p1", "node": "2"}}),
        ]
    );
    let state = events
        .iter()
        .rev()
        .find(|event| event.event_type() == "progress_state")
        .unwrap()
        .to_ws_json()
        .unwrap();
    assert_eq!(state["data"]["nodes"]["2"]["state"], "finished");
    assert_eq!(state["data"]["nodes"]["2"]["value"], json!(2.0));
}

#[test]
fn interruption_inside_a_node_stops_the_prompt() {
    let mut harness = Harness::new();
    let prompt = json!({
        "1": {"class_type": "Constant", "inputs": {"value": 4}},
        "2": {"class_type": "Slow", "inputs": {"x": ["1", 0], "steps": 5, "stop_at": 3}},
        "3": {"class_type": "ShowInt", "inputs": {"value": ["2", 0]}}
    });
    let (result, events) = harness.run("p1", &prompt);
    let failure = result.unwrap_err();
    assert!(matches!(failure.error, GraphError::Interrupted { ref node_id } if node_id == "2"));
    assert_eq!(failure.outcome.executed, ["1"]);
    let types = event_types(&events);
    assert!(!types.contains(&"execution_success"));
    assert_eq!(
        types[types.len() - 2..],
        ["execution_interrupted", "executing"]
    );
    let interrupted = events[events.len() - 2].to_ws_json().unwrap();
    assert_eq!(interrupted["data"]["node_id"], "2");
    assert_eq!(interrupted["data"]["node_type"], "Slow");
    assert_eq!(interrupted["data"]["executed"], json!(["1"]));
    assert!(events[events.len() - 2].broadcast_without_client());

    // The next prompt starts with the flag cleared; the finished node is cached.
    let mut rerun = prompt.clone();
    rerun["2"]["inputs"]["stop_at"] = json!(0);
    let (result, events) = harness.run("p2", &rerun);
    result.unwrap();
    assert_eq!(cached_nodes(&events), ["1"]);
}

#[test]
fn interruption_between_nodes_skips_the_rest() {
    let mut harness = Harness::new();
    let request = harness.request("p1", &sum_prompt(1, 2));
    let flag = harness.executor.interrupt_flag();
    let mut events = Vec::new();
    let mut observer = |event: ExecutionEvent| {
        if matches!(&event, ExecutionEvent::Executing { node: Some(node), .. } if node == "3") {
            flag.interrupt();
        }
        events.push(event);
    };
    let failure = harness
        .executor
        .execute(&request, &mut observer)
        .unwrap_err();
    assert!(matches!(failure.error, GraphError::Interrupted { ref node_id } if node_id == "3"));
    assert_eq!(executing_nodes(&events), ["2", "1", "3"]);
    assert_eq!(harness.services.executed(), ["2", "1"]);
    assert_eq!(events.last().unwrap().event_type(), "executing");
}

#[test]
fn a_failing_node_reports_execution_error() {
    let mut harness = Harness::new();
    let prompt = json!({
        "1": {"class_type": "Constant", "inputs": {"value": 5}},
        "2": {"class_type": "Fail", "inputs": {"x": ["1", 0]}},
        "3": {"class_type": "ShowInt", "inputs": {"value": ["2", 0]}}
    });
    let (result, events) = harness.run("p1", &prompt);
    let failure = result.unwrap_err();
    match &failure.error {
        GraphError::NodeFailed {
            node_id,
            class_type,
            source: NodeError::Failed { exception_type, .. },
        } => {
            assert_eq!(node_id, "2");
            assert_eq!(class_type, "Fail");
            assert_eq!(exception_type, "ValueError");
        }
        other => panic!("unexpected {other:?}"),
    }
    let error = events
        .iter()
        .find(|event| event.event_type() == "execution_error")
        .unwrap()
        .to_ws_json()
        .unwrap();
    let mut data = error["data"].clone();
    assert!(data["timestamp"].is_u64());
    data.as_object_mut().unwrap().remove("timestamp");
    assert_eq!(
        data,
        json!({"prompt_id": "p1", "node_id": "2", "node_type": "Fail", "executed": ["1"],
               "exception_message": "cannot handle 5\n", "exception_type": "ValueError",
               "traceback": ["  Node 2 (Fail)\n"], "current_inputs": {"x": [5]},
               "current_outputs": ["1", "2", "3"]})
    );
    let types = event_types(&events);
    assert!(!types.contains(&"execution_success"));
    assert!(events.last().unwrap().is_final());
}

#[test]
fn cycles_in_unvalidated_prompts_fail_at_execution() {
    let mut harness = Harness::new();
    let prompt = Prompt::from_json(&json!({
        "1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": ["2", 0]}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["1", 0]}},
        "3": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}}
    }))
    .unwrap();
    let request = ExecutionRequest {
        prompt_id: "p1".into(),
        prompt,
        outputs: vec!["3".into()],
        extra_data: json!({}),
    };
    let mut events = Vec::new();
    let failure = harness.executor.execute(&request, &mut events).unwrap_err();
    assert!(
        matches!(failure.error, GraphError::DependencyCycle { ref nodes } if nodes.contains(&"1".to_owned()) && nodes.contains(&"2".to_owned()))
    );
    let error = events
        .iter()
        .find(|event| event.event_type() == "execution_error")
        .unwrap()
        .data()
        .unwrap();
    assert_eq!(error["exception_type"], "graph.DependencyCycleError");
    assert_eq!(error["exception_message"], "Dependency cycle detected");
    assert_eq!(error["current_inputs"], json!([]));
}

#[test]
fn unknown_classes_and_dangling_links_fail_at_execution() {
    let mut harness = Harness::new();
    let unknown = ExecutionRequest {
        prompt_id: "p1".into(),
        prompt: Prompt::from_json(&json!({"1": {"class_type": "Ghost", "inputs": {}}})).unwrap(),
        outputs: vec!["1".into()],
        extra_data: Json::Null,
    };
    let failure = harness
        .executor
        .execute(&unknown, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(failure.error, GraphError::NodeNotFound { ref node_id, .. } if node_id == "1")
    );

    let dangling = ExecutionRequest {
        prompt_id: "p2".into(),
        prompt: Prompt::from_json(
            &json!({"1": {"class_type": "ShowInt", "inputs": {"value": ["9", 0]}}}),
        )
        .unwrap(),
        outputs: vec!["1".into()],
        extra_data: Json::Null,
    };
    let failure = harness
        .executor
        .execute(&dangling, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(failure.error, GraphError::NodeNotFound { ref node_id, .. } if node_id == "1")
    );
}

#[test]
fn wrong_services_type_is_a_node_error() {
    let mut executor = Executor::new(Arc::new(common::registry()), Arc::new(0_u8));
    let validated = Validator::new(executor.registry(), &common::folders)
        .validate(&sum_prompt(1, 2))
        .unwrap();
    let failure = executor
        .execute(&ExecutionRequest::new("p", validated), &mut Vec::new())
        .unwrap_err();
    assert!(matches!(
        failure.error,
        GraphError::NodeFailed {
            source: NodeError::Services { .. },
            ..
        }
    ));
}

#[test]
fn identical_nodes_share_one_result_within_a_prompt() {
    // As ComfyUI: two nodes with equal signatures share a cache entry, so the second is
    // served from the first's result (reported as `executed` without `executing`).
    let mut harness = Harness::new();
    let (result, events) = harness.run("p1", &sum_prompt(1, 1));
    assert_eq!(result.unwrap().outputs["5"]["text"], json!(["sum=2"]));
    assert_eq!(harness.services.executed(), ["2", "3", "4", "5"]);
    assert_eq!(executing_nodes(&events), ["2", "3", "4", "5"]);
}

#[test]
fn clearing_the_cache_reruns_everything() {
    let mut harness = Harness::new();
    harness.run("p1", &sum_prompt(2, 3)).0.unwrap();
    harness.executor.clear_cache();
    let (_, events) = harness.run("p2", &sum_prompt(2, 3));
    assert!(cached_nodes(&events).is_empty());
}
