//! UI-format workflows converted to API prompts as the frontend's `graphToPrompt` does.
// Fixture helpers unwrap: a malformed fixture should fail the test.
#![allow(clippy::unwrap_used)]

use kiln_graph::{
    workflow_to_prompt, ComboInput, ExecutionContext, FloatInput, HiddenKind, InputSpec, IntInput,
    Node, NodeError, NodeInputs, NodeOutput, NodeRegistry, NodeSchema, OutputSpec, StringInput,
    Validator,
};
use serde_json::{json, Value as Json};

/// A node that only has a schema (the conversion never executes anything).
struct SchemaOnly(NodeSchema);

impl Node for SchemaOnly {
    fn schema(&self) -> NodeSchema {
        self.0.clone()
    }
    fn execute(
        &self,
        _: &NodeInputs,
        _: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        Err(NodeError::failed(
            "NotImplementedError",
            "schema-only test node",
        ))
    }
}

const MAX_RESOLUTION: i128 = 16384;

/// ComfyUI's core SD1.5 node interfaces (schemas as in `nodes.py`).
fn sd_registry() -> NodeRegistry {
    let schemas = vec![
        NodeSchema::new("CheckpointLoaderSimple")
            .display_name("Load Checkpoint")
            .category("loaders")
            .input(InputSpec::required(
                "ckpt_name",
                ComboInput::dynamic("checkpoints"),
            ))
            .output(OutputSpec::new("MODEL"))
            .output(OutputSpec::new("CLIP"))
            .output(OutputSpec::new("VAE")),
        NodeSchema::new("CLIPTextEncode")
            .display_name("CLIP Text Encode (Prompt)")
            .input(InputSpec::required("text", StringInput::prompt()))
            .input(InputSpec::required("clip", "CLIP"))
            .output(OutputSpec::new("CONDITIONING")),
        NodeSchema::new("KSampler")
            .input(InputSpec::required("model", "MODEL"))
            .input(InputSpec::required(
                "seed",
                IntInput::new(0, 0, u64::MAX as i128).control_after_generate(),
            ))
            .input(InputSpec::required("steps", IntInput::new(20, 1, 10000)))
            .input(InputSpec::required(
                "cfg",
                FloatInput::new(8.0, 0.0, 100.0).step(0.1).round(0.01),
            ))
            .input(InputSpec::required(
                "sampler_name",
                ComboInput::new(["euler", "euler_ancestral", "dpmpp_2m"]),
            ))
            .input(InputSpec::required(
                "scheduler",
                ComboInput::new(["simple", "normal", "karras"]),
            ))
            .input(InputSpec::required("positive", "CONDITIONING"))
            .input(InputSpec::required("negative", "CONDITIONING"))
            .input(InputSpec::required("latent_image", "LATENT"))
            .input(InputSpec::required(
                "denoise",
                FloatInput::new(1.0, 0.0, 1.0).step(0.01),
            ))
            .output(OutputSpec::new("LATENT")),
        NodeSchema::new("EmptyLatentImage")
            .display_name("Empty Latent Image")
            .input(InputSpec::required(
                "width",
                IntInput::new(512, 16, MAX_RESOLUTION).step(8),
            ))
            .input(InputSpec::required(
                "height",
                IntInput::new(512, 16, MAX_RESOLUTION).step(8),
            ))
            .input(InputSpec::required("batch_size", IntInput::new(1, 1, 4096)))
            .output(OutputSpec::new("LATENT")),
        NodeSchema::new("VAEDecode")
            .display_name("VAE Decode")
            .input(InputSpec::required("samples", "LATENT"))
            .input(InputSpec::required("vae", "VAE"))
            .output(OutputSpec::new("IMAGE")),
        NodeSchema::new("SaveImage")
            .display_name("Save Image")
            .input(InputSpec::required("images", "IMAGE"))
            .input(InputSpec::required(
                "filename_prefix",
                StringInput::new("ComfyUI"),
            ))
            .input(InputSpec::hidden("prompt", HiddenKind::Prompt))
            .input(InputSpec::hidden("extra_pnginfo", HiddenKind::ExtraPngInfo))
            .output_node(),
        NodeSchema::new("LoraLoader")
            .display_name("Load LoRA")
            .input(InputSpec::required("model", "MODEL"))
            .input(InputSpec::required("clip", "CLIP"))
            .input(InputSpec::required(
                "lora_name",
                ComboInput::dynamic("loras"),
            ))
            .input(InputSpec::required(
                "strength_model",
                FloatInput::new(1.0, -100.0, 100.0),
            ))
            .input(InputSpec::required(
                "strength_clip",
                FloatInput::new(1.0, -100.0, 100.0),
            ))
            .output(OutputSpec::new("MODEL"))
            .output(OutputSpec::new("CLIP")),
        NodeSchema::new("LoadImage")
            .display_name("Load Image")
            .input(
                InputSpec::required("image", ComboInput::dynamic("input"))
                    .option("image_upload", true),
            )
            .output(OutputSpec::new("IMAGE"))
            .output(OutputSpec::new("MASK")),
        NodeSchema::new("ImageBatchSizes")
            .input(InputSpec::required("sizes", StringInput::new("")))
            .input(InputSpec::optional("scale", FloatInput::new(1.0, 0.0, 4.0)))
            .output(OutputSpec::new("INT")),
    ];
    let mut registry = NodeRegistry::new();
    for schema in schemas {
        registry.register(SchemaOnly(schema)).unwrap();
    }
    registry
}

fn folders(key: &str) -> Vec<String> {
    match key {
        "checkpoints" => vec!["v1-5-pruned-emaonly.safetensors".into()],
        "loras" => vec!["detail.safetensors".into()],
        "input" => vec!["example.png".into()],
        _ => Vec::new(),
    }
}

fn default_workflow() -> Json {
    serde_json::from_str(include_str!("fixtures/default_sd15_workflow.json")).unwrap()
}

fn convert(workflow: &Json) -> Json {
    workflow_to_prompt(workflow, &sd_registry()).unwrap()
}

/// The API prompt without `_meta`, for comparisons with hand-written prompts.
fn without_meta(mut prompt: Json) -> Json {
    for node in prompt.as_object_mut().unwrap().values_mut() {
        node.as_object_mut().unwrap().remove("_meta");
    }
    prompt
}

#[test]
fn default_graph_converts_to_the_known_api_prompt() {
    let prompt = convert(&default_workflow());
    assert_eq!(
        prompt,
        json!({
            "3": {"class_type": "KSampler", "_meta": {"title": "KSampler"},
                  "inputs": {"seed": 156680208700286_u64, "steps": 20, "cfg": 8,
                             "sampler_name": "euler", "scheduler": "normal", "denoise": 1,
                             "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                             "latent_image": ["5", 0]}},
            "4": {"class_type": "CheckpointLoaderSimple", "_meta": {"title": "Load Checkpoint"},
                  "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
            "5": {"class_type": "EmptyLatentImage", "_meta": {"title": "Empty Latent Image"},
                  "inputs": {"width": 512, "height": 512, "batch_size": 1}},
            "6": {"class_type": "CLIPTextEncode", "_meta": {"title": "CLIP Text Encode (Prompt)"},
                  "inputs": {"text": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
                             "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "_meta": {"title": "CLIP Text Encode (Prompt)"},
                  "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
            "8": {"class_type": "VAEDecode", "_meta": {"title": "VAE Decode"},
                  "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "_meta": {"title": "Save Image"},
                  "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
        })
    );
    let registry = sd_registry();
    let validated = Validator::new(&registry, &folders)
        .validate(&prompt)
        .unwrap();
    assert_eq!(validated.outputs, vec!["9"]);
}

#[test]
fn default_graph_matches_comfyuis_api_example() {
    // ComfyUI's script_examples/basic_api_example.py prompt, from the same graph with its
    // texts and seed.
    let mut workflow = default_workflow();
    let nodes = workflow["nodes"].as_array_mut().unwrap();
    for node in nodes.iter_mut() {
        match node["id"].as_i64().unwrap() {
            6 => node["widgets_values"] = json!(["masterpiece best quality girl"]),
            7 => node["widgets_values"] = json!(["bad hands"]),
            3 => node["widgets_values"] = json!([8566257, true, 20, 8, "euler", "normal", 1]),
            _ => {}
        }
    }
    let expected = json!({
        "3": {"class_type": "KSampler", "inputs": {"cfg": 8, "denoise": 1,
              "latent_image": ["5", 0], "model": ["4", 0], "negative": ["7", 0],
              "positive": ["6", 0], "sampler_name": "euler", "scheduler": "normal",
              "seed": 8566257, "steps": 20}},
        "4": {"class_type": "CheckpointLoaderSimple",
              "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"batch_size": 1, "height": 512, "width": 512}},
        "6": {"class_type": "CLIPTextEncode",
              "inputs": {"clip": ["4", 1], "text": "masterpiece best quality girl"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "bad hands"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
    });
    assert_eq!(without_meta(convert(&workflow)), expected);
}

fn node_mut(workflow: &mut Json, id: i64) -> &mut Json {
    workflow["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|node| node["id"] == id)
        .unwrap()
}

fn push_node(workflow: &mut Json, node: Json) {
    workflow["nodes"].as_array_mut().unwrap().push(node);
}

/// Points link `id` at a new origin.
fn relink(workflow: &mut Json, id: i64, origin: i64, origin_slot: i64) {
    for link in workflow["links"].as_array_mut().unwrap() {
        if link[0] == id {
            link[1] = json!(origin);
            link[2] = json!(origin_slot);
        }
    }
}

fn push_link(workflow: &mut Json, link: Json) {
    workflow["links"].as_array_mut().unwrap().push(link);
}

#[test]
fn reroutes_are_resolved_through() {
    let mut workflow = default_workflow();
    // VAE → Reroute(20) → Reroute(21) → VAEDecode.vae
    push_node(
        &mut workflow,
        json!({"id": 20, "type": "Reroute", "mode": 0,
        "inputs": [{"name": "", "type": "*", "link": 30}],
        "outputs": [{"name": "", "type": "VAE", "links": [31]}]}),
    );
    push_node(
        &mut workflow,
        json!({"id": 21, "type": "Reroute", "mode": 0,
        "inputs": [{"name": "", "type": "*", "link": 31}],
        "outputs": [{"name": "", "type": "VAE", "links": [8]}]}),
    );
    push_link(&mut workflow, json!([30, 4, 2, 20, 0, "VAE"]));
    push_link(&mut workflow, json!([31, 20, 0, 21, 0, "VAE"]));
    relink(&mut workflow, 8, 21, 0);
    let prompt = convert(&workflow);
    assert_eq!(prompt["8"]["inputs"]["vae"], json!(["4", 2]));
    assert!(prompt.get("20").is_none() && prompt.get("21").is_none());
}

#[test]
fn primitive_nodes_push_their_value_into_the_target() {
    let mut workflow = default_workflow();
    push_node(
        &mut workflow,
        json!({"id": 30, "type": "PrimitiveNode", "mode": 0,
        "outputs": [{"name": "INT", "type": "INT", "links": [40],
                     "widget": {"name": "seed"}}],
        "widgets_values": [42, "fixed"]}),
    );
    push_link(&mut workflow, json!([40, 30, 0, 3, 4, "INT"]));
    let ksampler = node_mut(&mut workflow, 3);
    ksampler["inputs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "seed", "type": "INT", "link": 40, "widget": {"name": "seed"}}));
    let prompt = convert(&workflow);
    assert_eq!(prompt["3"]["inputs"]["seed"], json!(42));
    assert!(prompt.get("30").is_none());
}

#[test]
fn muted_nodes_and_notes_are_dropped_with_their_links() {
    let mut workflow = default_workflow();
    node_mut(&mut workflow, 7)["mode"] = json!(2);
    push_node(
        &mut workflow,
        json!({"id": 40, "type": "Note", "mode": 0,
        "widgets_values": ["remember to pick a model"]}),
    );
    push_node(
        &mut workflow,
        json!({"id": 41, "type": "MarkdownNote", "mode": 0,
        "widgets_values": ["# hi"]}),
    );
    let prompt = convert(&workflow);
    assert!(prompt.get("7").is_none());
    assert!(prompt.get("40").is_none() && prompt.get("41").is_none());
    assert!(prompt["3"]["inputs"].get("negative").is_none());
    assert_eq!(prompt["3"]["inputs"]["positive"], json!(["6", 0]));
    // Validation then reports the missing input, as ComfyUI would.
    let registry = sd_registry();
    let failure = Validator::new(&registry, &folders)
        .validate(&prompt)
        .unwrap_err();
    assert_eq!(
        failure.to_json()["node_errors"]["3"]["errors"][0]["type"],
        "required_input_missing"
    );
}

/// The default graph with a LoRA loader (id 10) between the checkpoint and its users.
fn with_lora(mode: i64) -> Json {
    let mut workflow = default_workflow();
    push_node(
        &mut workflow,
        json!({"id": 10, "type": "LoraLoader", "mode": mode,
        "inputs": [{"name": "model", "type": "MODEL", "link": 50},
                   {"name": "clip", "type": "CLIP", "link": 51}],
        "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]},
                    {"name": "CLIP", "type": "CLIP", "links": [3, 5]}],
        "widgets_values": ["detail.safetensors", 0.8, 0.6]}),
    );
    push_link(&mut workflow, json!([50, 4, 0, 10, 0, "MODEL"]));
    push_link(&mut workflow, json!([51, 4, 1, 10, 1, "CLIP"]));
    relink(&mut workflow, 1, 10, 0);
    relink(&mut workflow, 3, 10, 1);
    relink(&mut workflow, 5, 10, 1);
    workflow
}

#[test]
fn active_lora_is_wired_in() {
    let prompt = convert(&with_lora(0));
    assert_eq!(
        prompt["10"]["inputs"],
        json!({"model": ["4", 0], "clip": ["4", 1], "lora_name": "detail.safetensors",
               "strength_model": 0.8, "strength_clip": 0.6})
    );
    assert_eq!(prompt["3"]["inputs"]["model"], json!(["10", 0]));
    assert_eq!(prompt["6"]["inputs"]["clip"], json!(["10", 1]));
}

#[test]
fn bypassed_nodes_route_each_output_to_the_matching_input() {
    let prompt = convert(&with_lora(4));
    assert!(prompt.get("10").is_none());
    assert_eq!(prompt["3"]["inputs"]["model"], json!(["4", 0]));
    assert_eq!(prompt["6"]["inputs"]["clip"], json!(["4", 1]));
    assert_eq!(prompt["7"]["inputs"]["clip"], json!(["4", 1]));
}

#[test]
fn muted_lora_cuts_its_consumers_off() {
    let prompt = convert(&with_lora(2));
    assert!(prompt.get("10").is_none());
    assert!(prompt["3"]["inputs"].get("model").is_none());
    assert!(prompt["6"]["inputs"].get("clip").is_none());
}

/// Root: checkpoint 4 → instance 10 (subgraph "enc") → KSampler 3 positive. The "enc"
/// definition holds an instance 5 of "inner", which holds the CLIPTextEncode 3 that does the
/// work; both definitions pass `clip` in and `CONDITIONING` out.
fn subgraph_workflow() -> Json {
    let mut workflow = default_workflow();
    let nodes = workflow["nodes"].as_array_mut().unwrap();
    nodes.retain(|node| node["id"] != 6);
    nodes.push(json!({"id": 10, "type": "enc", "mode": 0,
        "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
        "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4]}],
        "widgets_values": []}));
    relink(&mut workflow, 4, 10, 0);
    workflow["definitions"] = json!({"subgraphs": [
        {"id": "enc", "version": 1, "name": "Encoder",
         "inputNode": {"id": -10}, "outputNode": {"id": -20},
         "inputs": [{"id": "a", "name": "clip", "type": "CLIP", "linkIds": [1]}],
         "outputs": [{"id": "b", "name": "CONDITIONING", "type": "CONDITIONING", "linkIds": [2]}],
         "nodes": [{"id": 5, "type": "inner", "mode": 0,
                    "inputs": [{"name": "clip", "type": "CLIP", "link": 1}],
                    "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [2]}]}],
         "links": [
            {"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 5, "target_slot": 0, "type": "CLIP"},
            {"id": 2, "origin_id": 5, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "CONDITIONING"}
         ]},
        {"id": "inner", "version": 1, "name": "Inner",
         "inputNode": {"id": -10}, "outputNode": {"id": -20},
         "inputs": [{"id": "c", "name": "clip", "type": "CLIP", "linkIds": [7]}],
         "outputs": [{"id": "d", "name": "CONDITIONING", "type": "CONDITIONING", "linkIds": [8]}],
         "nodes": [{"id": 3, "type": "CLIPTextEncode", "mode": 0, "title": "Inner prompt",
                    "inputs": [{"name": "clip", "type": "CLIP", "link": 7}],
                    "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [8]}],
                    "widgets_values": ["a red fox"]}],
         "links": [
            {"id": 7, "origin_id": -10, "origin_slot": 0, "target_id": 3, "target_slot": 0, "type": "CLIP"},
            {"id": 8, "origin_id": 3, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "CONDITIONING"}
         ]}
    ]});
    workflow
}

#[test]
fn nested_subgraphs_expand_with_path_ids() {
    let prompt = convert(&subgraph_workflow());
    assert_eq!(
        prompt["10:5:3"],
        json!({"class_type": "CLIPTextEncode", "_meta": {"title": "Inner prompt"},
               "inputs": {"text": "a red fox", "clip": ["4", 1]}})
    );
    assert_eq!(prompt["3"]["inputs"]["positive"], json!(["10:5:3", 0]));
    assert!(prompt.get("10").is_none() && prompt.get("10:5").is_none());
    let registry = sd_registry();
    assert!(Validator::new(&registry, &folders)
        .validate(&prompt)
        .is_ok());
}

#[test]
fn named_widget_values_win_and_ui_only_values_are_skipped() {
    let mut workflow = default_workflow();
    node_mut(&mut workflow, 3)["widgets_values_named"] = json!({
        "seed": 7, "control_after_generate": "fixed", "steps": 4, "cfg": 1.5,
        "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 0.5});
    let prompt = convert(&workflow);
    assert_eq!(
        prompt["3"]["inputs"],
        json!({"seed": 7, "steps": 4, "cfg": 1.5, "sampler_name": "dpmpp_2m",
               "scheduler": "karras", "denoise": 0.5, "model": ["4", 0],
               "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]})
    );
}

#[test]
fn upload_values_short_lists_and_list_values() {
    let workflow = json!({
        "nodes": [
            {"id": 1, "type": "LoadImage", "mode": 0, "widgets_values": ["example.png", "image"],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}]},
            {"id": 2, "type": "EmptyLatentImage", "mode": 0, "widgets_values": [768]},
            {"id": 3, "type": "ImageBatchSizes", "mode": 0, "widgets_values": [[1, 2], 2.0, "extra"]}
        ],
        "links": [], "version": 0.4
    });
    let prompt = convert(&workflow);
    assert_eq!(prompt["1"]["inputs"], json!({"image": "example.png"}));
    assert_eq!(
        prompt["2"]["inputs"],
        json!({"width": 768, "height": 512, "batch_size": 1})
    );
    assert_eq!(
        prompt["3"]["inputs"],
        json!({"sizes": {"__value__": [1, 2]}, "scale": 2.0})
    );
}

#[test]
fn version_one_object_links_are_read() {
    let mut workflow = default_workflow();
    let links: Vec<Json> = workflow["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|link| {
            json!({"id": link[0], "origin_id": link[1], "origin_slot": link[2],
                           "target_id": link[3], "target_slot": link[4], "type": link[5]})
        })
        .collect();
    workflow["links"] = json!(links);
    workflow["version"] = json!(1);
    assert_eq!(convert(&workflow), convert(&default_workflow()));
}

#[test]
fn unknown_node_types_are_kept_for_validation_to_report() {
    let mut workflow = default_workflow();
    node_mut(&mut workflow, 8)["type"] = json!("FancyDecode");
    let prompt = convert(&workflow);
    assert_eq!(
        prompt["8"],
        json!({"class_type": "FancyDecode", "_meta": {"title": "FancyDecode"},
               "inputs": {"samples": ["3", 0], "vae": ["4", 2]}})
    );
    let registry = sd_registry();
    let failure = Validator::new(&registry, &folders)
        .validate(&prompt)
        .unwrap_err();
    assert_eq!(failure.to_json()["error"]["type"], "missing_node_type");
}

#[test]
fn malformed_workflows_are_errors() {
    let registry = sd_registry();
    assert!(workflow_to_prompt(&json!({"links": []}), &registry).is_err());
    assert!(workflow_to_prompt(&json!({"nodes": [{"type": "KSampler"}]}), &registry).is_err());
    // A reroute feeding itself.
    let looped = json!({"nodes": [
        {"id": 1, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 1}],
         "outputs": [{"name": "", "type": "*", "links": [1, 2]}]},
        {"id": 2, "type": "VAEDecode", "mode": 0,
         "inputs": [{"name": "samples", "type": "LATENT", "link": 2}]}],
        "links": [[1, 1, 0, 1, 0, "*"], [2, 1, 0, 2, 0, "LATENT"]]});
    assert!(workflow_to_prompt(&looped, &registry).is_err());
}
