//! ComfyUI's `validate_prompt` behaviour and error JSON, error type by error type.

mod common;

use kiln_graph::{PromptInput, ValidatedPrompt, ValidationFailure, Validator};
use serde_json::{json, Value as Json};

fn validate(prompt: Json) -> Result<ValidatedPrompt, ValidationFailure> {
    let registry = common::registry();
    Validator::new(&registry, &common::folders).validate(&prompt)
}

fn failure(prompt: Json) -> Json {
    validate(prompt).expect_err("prompt should fail").to_json()
}

#[test]
fn prompt_without_output_nodes() {
    assert_eq!(
        failure(json!({"1": {"class_type": "Constant", "inputs": {"value": 1}}})),
        json!({"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs",
                         "details": "", "extra_info": {}},
               "node_errors": {}})
    );
}

#[test]
fn unknown_class_type_is_missing_node_type() {
    assert_eq!(
        failure(json!({"5": {"class_type": "Nope", "inputs": {}, "_meta": {"title": "My Node"}}})),
        json!({"error": {"type": "missing_node_type",
                         "message": "Node 'My Node' not found. The custom node may not be installed.",
                         "details": "Node ID '#5'",
                         "extra_info": {"node_id": "5", "class_type": "Nope", "node_title": "My Node"}},
               "node_errors": {}})
    );
    let untitled = failure(json!({"5": {"class_type": "Nope", "inputs": {}}}));
    assert_eq!(
        untitled["error"]["message"],
        "Node 'Nope' not found. The custom node may not be installed."
    );
    assert_eq!(untitled["error"]["extra_info"]["node_title"], "Nope");
}

#[test]
fn missing_class_type_property() {
    assert_eq!(
        failure(json!({"2": {"class_type": "Show", "inputs": {}}, "7": {"inputs": {}}})),
        json!({"error": {"type": "missing_node_type",
                         "message": "Node 'ID #7' has no class_type. The workflow may be corrupted or a custom node is missing.",
                         "details": "Node ID '#7'",
                         "extra_info": {"node_id": "7", "class_type": null, "node_title": null}},
               "node_errors": {}})
    );
}

#[test]
fn non_object_prompt_and_inputs_are_invalid_prompt() {
    assert_eq!(failure(json!([1, 2]))["error"]["type"], "invalid_prompt");
    let bad_inputs = failure(json!({"2": {"class_type": "Show", "inputs": [1]}}));
    assert_eq!(bad_inputs["error"]["type"], "invalid_prompt");
    assert_eq!(bad_inputs["error"]["details"], "Node ID '#2'");
}

#[test]
fn required_input_missing_on_the_output_itself() {
    assert_eq!(
        failure(json!({"2": {"class_type": "Show", "inputs": {}}})),
        json!({"error": {"type": "prompt_outputs_failed_validation",
                         "message": "Prompt outputs failed validation",
                         "details": "Required input is missing: text", "extra_info": {}},
               "node_errors": {"2": {"errors": [{"type": "required_input_missing",
                                                 "message": "Required input is missing",
                                                 "details": "text",
                                                 "extra_info": {"input_name": "text"}}],
                                     "dependent_outputs": ["2"], "class_type": "Show"}}})
    );
}

#[test]
fn bad_linked_input() {
    let result = failure(json!({"2": {"class_type": "Show", "inputs": {"text": ["1"]}}}));
    assert_eq!(
        result["node_errors"]["2"]["errors"],
        json!([{"type": "bad_linked_input",
                "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                "details": "text",
                "extra_info": {"input_name": "text",
                               "input_config": ["STRING", {"default": "", "forceInput": true}],
                               "received_value": ["1"]}}])
    );
}

#[test]
fn return_type_mismatch() {
    let result = failure(json!({
        "1": {"class_type": "Constant", "inputs": {"value": 3}},
        "2": {"class_type": "Show", "inputs": {"text": ["1", 0]}}
    }));
    assert_eq!(
        result,
        json!({"error": {"type": "prompt_outputs_failed_validation",
                         "message": "Prompt outputs failed validation",
                         "details": "Return type mismatch between linked nodes: text, received_type(INT) mismatch input_type(STRING)",
                         "extra_info": {}},
               "node_errors": {"2": {"errors": [{
                   "type": "return_type_mismatch",
                   "message": "Return type mismatch between linked nodes",
                   "details": "text, received_type(INT) mismatch input_type(STRING)",
                   "extra_info": {"input_name": "text",
                                  "input_config": ["STRING", {"default": "", "forceInput": true}],
                                  "received_type": "INT", "linked_node": ["1", 0]}}],
                   "dependent_outputs": ["2"], "class_type": "Show"}}})
    );
}

#[test]
fn union_input_types_accept_any_member() {
    let validated = validate(json!({
        "1": {"class_type": "Constant", "inputs": {"value": 3}},
        "2": {"class_type": "Format", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {"text": ["2", 0]}}
    }))
    .unwrap();
    assert_eq!(validated.outputs, vec!["3"]);
    assert!(validated.node_errors.is_empty());
}

#[test]
fn invalid_input_type_blames_the_inner_node_only() {
    let result = failure(json!({
        "1": {"class_type": "Constant", "inputs": {"value": "abc"}},
        "2": {"class_type": "Format", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {"text": ["2", 0]}}
    }));
    assert_eq!(
        result,
        json!({"error": {"type": "prompt_outputs_failed_validation",
                         "message": "Prompt outputs failed validation", "details": "",
                         "extra_info": {}},
               "node_errors": {"1": {"errors": [{
                   "type": "invalid_input_type",
                   "message": "Failed to convert an input value to a INT value",
                   "details": "value, abc, invalid literal for int() with base 10: 'abc'",
                   "extra_info": {"input_name": "value",
                                  "input_config": ["INT", {"default": 0, "min": -1000, "max": 1000}],
                                  "received_value": "abc",
                                  "exception_message": "invalid literal for int() with base 10: 'abc'"}}],
                   "dependent_outputs": ["3"], "class_type": "Constant"}}})
    );
}

#[test]
fn value_smaller_than_min() {
    let result = failure(json!({
        "1": {"class_type": "Constant", "inputs": {"value": -5000}},
        "2": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}}
    }));
    assert_eq!(
        result["node_errors"]["1"]["errors"],
        json!([{"type": "value_smaller_than_min",
                "message": "Value -5000 smaller than min of -1000", "details": "value",
                "extra_info": {"input_name": "value",
                               "input_config": ["INT", {"default": 0, "min": -1000, "max": 1000}],
                               "received_value": -5000}}])
    );
}

#[test]
fn value_bigger_than_max_prints_python_floats() {
    let result = failure(json!({
        "1": {"class_type": "Constant", "inputs": {"value": 1}},
        "2": {"class_type": "Scale", "inputs": {"x": ["1", 0], "factor": 11}},
        "3": {"class_type": "Format", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "Show", "inputs": {"text": ["3", 0]}}
    }));
    assert_eq!(
        result["node_errors"]["2"]["errors"],
        json!([{"type": "value_bigger_than_max",
                "message": "Value 11.0 bigger than max of 10.0", "details": "factor",
                "extra_info": {"input_name": "factor",
                               "input_config": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.5}],
                               "received_value": 11.0}}])
    );
}

#[test]
fn seeds_accept_the_full_u64_range() {
    let prompt = json!({
        "1": {"class_type": "Seed", "inputs": {"seed": 18446744073709551615_u64}},
        "2": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}}
    });
    assert!(validate(prompt).is_ok());
    let negative = failure(json!({
        "1": {"class_type": "Seed", "inputs": {"seed": -1}},
        "2": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}}
    }));
    assert_eq!(
        negative["node_errors"]["1"]["errors"][0]["message"],
        "Value -1 smaller than min of 0"
    );
}

#[test]
fn value_not_in_list_short_and_long() {
    let result = failure(json!({
        "1": {"class_type": "Pick", "inputs": {"mode": "third"}},
        "2": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}}
    }));
    assert_eq!(
        result["node_errors"]["1"]["errors"],
        json!([{"type": "value_not_in_list", "message": "Value not in list",
                "details": "mode: 'third' not in ['first', 'second']",
                "extra_info": {"input_name": "mode",
                               "input_config": [["first", "second"], {"default": "first"}],
                               "received_value": "third"}}])
    );
    let dynamic = failure(json!({
        "1": {"class_type": "Pick", "inputs": {"mode": "first", "file": "z.png"}},
        "2": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}}
    }));
    assert_eq!(
        dynamic["node_errors"]["1"]["errors"][0]["details"],
        "file: 'z.png' not in ['a.png', 'b.png', 'sub/c.png']"
    );
}

#[test]
fn long_choice_lists_are_summarised() {
    let many = |key: &str| common::folders(if key == "files" { "many" } else { key });
    let registry = common::registry();
    let result = Validator::new(&registry, &many)
        .validate(&json!({
            "1": {"class_type": "Pick", "inputs": {"mode": "first", "file": "nope"}},
            "2": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}}
        }))
        .unwrap_err()
        .to_json();
    let error = &result["node_errors"]["1"]["errors"][0];
    assert_eq!(error["details"], "file: 'nope' not in (list of length 25)");
    assert_eq!(error["extra_info"]["input_config"], Json::Null);
}

#[test]
fn dangling_link_in_an_inner_node() {
    let result = failure(json!({
        "2": {"class_type": "Format", "inputs": {"value": ["99", 0]}},
        "3": {"class_type": "Show", "inputs": {"text": ["2", 0]}}
    }));
    assert_eq!(
        result["node_errors"],
        json!({"2": {"errors": [{
            "type": "exception_during_inner_validation",
            "message": "Exception when validating inner node",
            "details": "'99'",
            "extra_info": {"input_name": "text",
                           "input_config": ["STRING", {"default": "", "forceInput": true}],
                           "exception_message": "'99'", "exception_type": "KeyError",
                           "traceback": [], "linked_node": ["2", 0]}}],
            "dependent_outputs": ["3"], "class_type": "Format"}})
    );
}

#[test]
fn dangling_link_on_the_output_node() {
    let result = failure(json!({"3": {"class_type": "Show", "inputs": {"text": ["99", 0]}}}));
    assert_eq!(
        result,
        json!({"error": {"type": "prompt_outputs_failed_validation",
                         "message": "Prompt outputs failed validation",
                         "details": "Exception when validating node: '99'", "extra_info": {}},
               "node_errors": {"3": {"errors": [{
                   "type": "exception_during_validation",
                   "message": "Exception when validating node", "details": "'99'",
                   "extra_info": {"exception_type": "KeyError", "traceback": []}}],
                   "dependent_outputs": ["3"], "class_type": "Show"}}})
    );
}

#[test]
fn output_index_out_of_range_is_an_index_error() {
    let result = failure(json!({
        "1": {"class_type": "Constant", "inputs": {"value": 1}},
        "2": {"class_type": "ShowInt", "inputs": {"value": ["1", 3]}}
    }));
    assert_eq!(
        result["node_errors"]["2"]["errors"][0]["extra_info"]["exception_type"],
        "IndexError"
    );
    assert_eq!(
        result["node_errors"]["2"]["errors"][0]["details"],
        "tuple index out of range"
    );
}

#[test]
fn cycles_are_reported_with_their_nodes() {
    let result = failure(json!({
        "1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": ["2", 0]}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["1", 0]}},
        "3": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}}
    }));
    let errors = &result["node_errors"]["2"]["errors"];
    assert_eq!(errors[0]["type"], "dependency_cycle");
    assert_eq!(errors[0]["details"], "a: 1 -> 2 -> 1");
    assert_eq!(errors[0]["extra_info"]["cycle_nodes"], json!(["1", "2"]));
    assert_eq!(
        result["node_errors"]["2"]["dependent_outputs"],
        json!(["3"])
    );
}

#[test]
fn one_failing_output_does_not_stop_the_others() {
    let validated = validate(json!({
        "1": {"class_type": "Constant", "inputs": {"value": 1}},
        "2": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {}}
    }))
    .unwrap();
    assert_eq!(validated.outputs, vec!["2"]);
    assert_eq!(
        validated.node_errors_json()["3"]["errors"][0]["type"],
        "required_input_missing"
    );
}

#[test]
fn partial_execution_targets_restrict_outputs() {
    let registry = common::registry();
    let prompt = json!({
        "1": {"class_type": "Constant", "inputs": {"value": 1}},
        "2": {"class_type": "ShowInt", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {}}
    });
    let validated = Validator::new(&registry, &common::folders)
        .partial_execution_targets(Some(vec!["2".into()]))
        .validate(&prompt)
        .unwrap();
    assert_eq!(validated.outputs, vec!["2"]);
    assert!(validated.node_errors.is_empty());
    let none = Validator::new(&registry, &common::folders)
        .partial_execution_targets(Some(vec!["1".into()]))
        .validate(&prompt)
        .unwrap_err();
    assert_eq!(none.to_json()["error"]["type"], "prompt_no_outputs");
}

#[test]
fn literals_are_coerced_and_unwrapped() {
    let validated = validate(json!({
        "1": {"class_type": "Constant", "inputs": {"value": "42"}},
        "2": {"class_type": "Scale", "inputs": {"x": ["1", 0], "factor": "0.5"}},
        "3": {"class_type": "Format", "inputs": {"value": ["2", 0], "prefix": {"__value__": 7},
                                                  "loud": 1}},
        "4": {"class_type": "Show", "inputs": {"text": ["3", 0]}},
        "9": {"class_type": "Constant", "inputs": {"value": "unreached"}}
    }))
    .unwrap();
    let prompt = &validated.prompt;
    let literal = |node: &str, input: &str| match prompt.get(node).unwrap().input(input) {
        Some(PromptInput::Literal(value)) => value.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(literal("1", "value"), json!(42));
    assert_eq!(literal("2", "factor"), json!(0.5));
    assert_eq!(literal("3", "prefix"), json!("7"));
    assert_eq!(literal("3", "loud"), json!(true));
    // Nodes no output needs are neither validated nor coerced.
    assert_eq!(literal("9", "value"), json!("unreached"));
}
