//! The workflow templates the server embeds (`crates/server/src/templates/*.json`) convert to
//! API prompts with the real node schemas and pass validation, except that their model and
//! image names are absent from the empty folders here.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;

use kiln_graph::{workflow_to_prompt, ValidationErrorType, Validator};
use kiln_nodes::builtin_registry;
use serde_json::{json, Value as Json};

/// Inputs that name a file in a model or input folder; nothing is installed in the test.
const FILE_INPUTS: [&str; 3] = ["ckpt_name", "lora_name", "image"];

#[test]
fn every_embedded_template_converts_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src/templates");
    let registry = builtin_registry();
    let no_files = |_: &str| Vec::new();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let workflow: Json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let prompt = workflow_to_prompt(&workflow, &registry).unwrap();
        assert_eq!(prompt["9"]["class_type"], "SaveImage", "{name}");
        assert_eq!(
            prompt["9"]["inputs"]["filename_prefix"], "ComfyUI",
            "{name}"
        );
        assert_eq!(prompt["3"]["inputs"]["model"].as_array().unwrap().len(), 2);
        assert!(
            prompt["3"]["inputs"]["steps"].as_u64().unwrap() >= 20,
            "{name}"
        );
        let failure = match Validator::new(&registry, &no_files).validate(&prompt) {
            Ok(_) => panic!("{name}: the model combos cannot match empty folders"),
            Err(failure) => failure,
        };
        assert_eq!(
            failure.error.error_type,
            ValidationErrorType::PromptOutputsFailedValidation,
            "{name}: {failure}"
        );
        assert!(!failure.node_errors.is_empty());
        for (node, errors) in &failure.node_errors {
            for error in &errors.errors {
                let input = error.extra_info.get("input_name").cloned();
                assert!(
                    error.error_type == ValidationErrorType::ValueNotInList
                        && FILE_INPUTS.iter().any(|file| input == Some(json!(file))),
                    "{name}: node {node} ({}): {}",
                    errors.class_type,
                    error.to_json()
                );
            }
        }
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        ["default", "sd15_img2img", "sd15_lora", "sdxl_txt2img"]
    );
}
