//! `/object_info` rendering of a [`NodeSchema`], in the V1 shape ComfyUI's `server.py:
//! node_info` produces (combos as a list of choices in the type position).

use serde_json::{json, Map, Value as Json};

use crate::schema::{InputKind, InputSpec, InputType, NodeSchema};
use crate::value::int_to_json;

impl NodeSchema {
    /// This node's `/object_info` entry. `resolve_combo` lists the choices of dynamic combos
    /// (model folders) at request time.
    ///
    /// Shape: `input.{required,optional}: {name: [TYPE, {options}]}` (options omitted when
    /// empty; combos put the list of choices in the `TYPE` position), `input.hidden:
    /// {name: "PROMPT"}`, `input_order` per present section, `output`, `output_is_list`,
    /// `output_name`, `name`, `display_name`, `description`, `python_module`, `category`,
    /// `output_node`, and `output_tooltips`/`deprecated`/`experimental` when set.
    pub fn to_object_info(&self, resolve_combo: &dyn Fn(&str) -> Vec<String>) -> Json {
        let mut input = Map::new();
        let mut input_order = Map::new();
        for (section, wanted) in [
            ("required", Section::Required),
            ("optional", Section::Optional),
        ] {
            let specs: Vec<&InputSpec> = self
                .inputs
                .iter()
                .filter(|spec| wanted.holds(spec.kind))
                .collect();
            if specs.is_empty() && section == "optional" {
                continue;
            }
            let mut entries = Map::new();
            for spec in &specs {
                entries.insert(spec.name.clone(), input_entry(spec, resolve_combo, false));
            }
            input.insert(section.to_owned(), Json::Object(entries));
            input_order.insert(
                section.to_owned(),
                specs
                    .iter()
                    .map(|spec| Json::from(spec.name.as_str()))
                    .collect(),
            );
        }
        let hidden: Vec<(&str, &str)> = self
            .inputs
            .iter()
            .filter_map(|spec| match spec.kind {
                InputKind::Hidden(kind) => Some((spec.name.as_str(), kind.type_name())),
                _ => None,
            })
            .collect();
        if !hidden.is_empty() {
            let entries: Map<String, Json> = hidden
                .iter()
                .map(|(name, ty)| ((*name).to_owned(), Json::from(*ty)))
                .collect();
            input.insert("hidden".to_owned(), Json::Object(entries));
            input_order.insert(
                "hidden".to_owned(),
                hidden.iter().map(|(name, _)| Json::from(*name)).collect(),
            );
        }

        let mut info = json!({
            "input": input,
            "input_order": input_order,
            "output": self.outputs.iter().map(|o| o.ty.as_str()).collect::<Vec<_>>(),
            "output_is_list": self.outputs.iter().map(|o| o.is_list).collect::<Vec<_>>(),
            "output_name": self.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            "name": self.class_type,
            "display_name": self.display_name,
            "description": self.description,
            "python_module": self.python_module,
            "category": self.category,
            "output_node": self.output_node,
        });
        if let Json::Object(map) = &mut info {
            if self.outputs.iter().any(|o| o.tooltip.is_some()) {
                let tooltips: Vec<&str> = self
                    .outputs
                    .iter()
                    .map(|o| o.tooltip.as_deref().unwrap_or(""))
                    .collect();
                map.insert("output_tooltips".to_owned(), json!(tooltips));
            }
            if self.deprecated {
                map.insert("deprecated".to_owned(), Json::Bool(true));
            }
            if self.experimental {
                map.insert("experimental".to_owned(), Json::Bool(true));
            }
        }
        info
    }
}

#[derive(Clone, Copy)]
enum Section {
    Required,
    Optional,
}

impl Section {
    fn holds(self, kind: InputKind) -> bool {
        matches!(
            (self, kind),
            (Section::Required, InputKind::Required) | (Section::Optional, InputKind::Optional)
        )
    }
}

/// `[TYPE, {options}]` for one input; `keep_empty_options` keeps `{}` (validation's
/// `input_config` always has two elements).
pub(crate) fn input_entry(
    spec: &InputSpec,
    resolve_combo: &dyn Fn(&str) -> Vec<String>,
    keep_empty_options: bool,
) -> Json {
    let mut options = Map::new();
    let type_position = match &spec.ty {
        InputType::Int(int) => {
            insert_opt(&mut options, "default", int.default.map(int_to_json));
            insert_opt(&mut options, "min", int.min.map(int_to_json));
            insert_opt(&mut options, "max", int.max.map(int_to_json));
            insert_opt(&mut options, "step", int.step.map(int_to_json));
            if int.control_after_generate {
                options.insert("control_after_generate".to_owned(), Json::Bool(true));
            }
            Json::from("INT")
        }
        InputType::Float(float) => {
            insert_opt(&mut options, "default", float.default.map(Json::from));
            insert_opt(&mut options, "min", float.min.map(Json::from));
            insert_opt(&mut options, "max", float.max.map(Json::from));
            insert_opt(&mut options, "step", float.step.map(Json::from));
            insert_opt(&mut options, "round", float.round.map(Json::from));
            Json::from("FLOAT")
        }
        InputType::String(string) => {
            insert_opt(
                &mut options,
                "default",
                string.default.clone().map(Json::from),
            );
            if string.multiline {
                options.insert("multiline".to_owned(), Json::Bool(true));
            }
            if string.dynamic_prompts {
                options.insert("dynamicPrompts".to_owned(), Json::Bool(true));
            }
            Json::from("STRING")
        }
        InputType::Boolean(boolean) => {
            insert_opt(&mut options, "default", boolean.default.map(Json::from));
            Json::from("BOOLEAN")
        }
        InputType::Combo(combo) => {
            insert_opt(
                &mut options,
                "default",
                combo.default.clone().map(Json::from),
            );
            Json::from(combo.resolve(resolve_combo))
        }
        InputType::Link(name) => Json::from(name.as_str()),
    };
    if spec.force_input {
        options.insert("forceInput".to_owned(), Json::Bool(true));
    }
    insert_opt(
        &mut options,
        "tooltip",
        spec.tooltip.clone().map(Json::from),
    );
    for (key, value) in &spec.extra {
        options.insert(key.clone(), value.clone());
    }
    if options.is_empty() && !keep_empty_options {
        json!([type_position])
    } else {
        json!([type_position, options])
    }
}

fn insert_opt(options: &mut Map<String, Json>, key: &str, value: Option<Json>) {
    if let Some(value) = value {
        options.insert(key.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ComboInput, FloatInput, HiddenKind, IntInput, OutputSpec, StringInput};

    fn no_combos(_: &str) -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn ksampler_like_schema_renders_comfyui_shape() {
        let schema = NodeSchema::new("KSampler")
            .category("sampling")
            .description("Denoises.")
            .input(InputSpec::required("model", "MODEL").tooltip("The model."))
            .input(InputSpec::required(
                "seed",
                IntInput::new(0, 0, u64::MAX as i128).control_after_generate(),
            ))
            .input(InputSpec::required(
                "cfg",
                FloatInput::new(8.0, 0.0, 100.0).step(0.1).round(0.01),
            ))
            .input(InputSpec::required(
                "sampler_name",
                ComboInput::new(["euler", "dpmpp_2m"]),
            ))
            .input(InputSpec::required(
                "ckpt_name",
                ComboInput::dynamic("checkpoints"),
            ))
            .input(InputSpec::required("latent_image", "LATENT"))
            .output(OutputSpec::new("LATENT").tooltip("The denoised latent."));
        let resolve = |key: &str| vec![format!("{key}/a.safetensors")];
        let info = schema.to_object_info(&resolve);
        assert_eq!(
            info,
            json!({
                "input": {"required": {
                    "model": ["MODEL", {"tooltip": "The model."}],
                    "seed": ["INT", {"default": 0, "min": 0, "max": 18446744073709551615_u64,
                                     "control_after_generate": true}],
                    "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1,
                                      "round": 0.01}],
                    "sampler_name": [["euler", "dpmpp_2m"]],
                    "ckpt_name": [["checkpoints/a.safetensors"]],
                    "latent_image": ["LATENT"]}},
                "input_order": {"required": ["model", "seed", "cfg", "sampler_name",
                                             "ckpt_name", "latent_image"]},
                "output": ["LATENT"], "output_is_list": [false], "output_name": ["LATENT"],
                "output_tooltips": ["The denoised latent."],
                "name": "KSampler", "display_name": "KSampler", "description": "Denoises.",
                "python_module": "nodes", "category": "sampling", "output_node": false
            })
        );
    }

    #[test]
    fn optional_and_hidden_sections_appear_only_when_declared() {
        let schema = NodeSchema::new("SaveImage")
            .display_name("Save Image")
            .input(InputSpec::required("images", "IMAGE"))
            .input(InputSpec::required(
                "filename_prefix",
                StringInput::new("ComfyUI"),
            ))
            .input(InputSpec::optional("note", StringInput::prompt()))
            .input(InputSpec::hidden("prompt", HiddenKind::Prompt))
            .input(InputSpec::hidden("extra_pnginfo", HiddenKind::ExtraPngInfo))
            .output_node();
        let info = schema.to_object_info(&no_combos);
        assert_eq!(
            info["input"],
            json!({
                "required": {"images": ["IMAGE"],
                             "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
                "optional": {"note": ["STRING", {"multiline": true, "dynamicPrompts": true}]},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
            })
        );
        assert_eq!(
            info["input_order"],
            json!({"required": ["images", "filename_prefix"], "optional": ["note"],
                   "hidden": ["prompt", "extra_pnginfo"]})
        );
        assert_eq!(info["output"], json!([]));
        assert_eq!(info["output_node"], json!(true));
        assert_eq!(info["display_name"], json!("Save Image"));
        assert!(info.get("output_tooltips").is_none());
    }

    #[test]
    fn extra_options_and_force_input_pass_through() {
        let schema = NodeSchema::new("LoadImage").input(
            InputSpec::required("image", ComboInput::dynamic("input")).option("image_upload", true),
        );
        let info = schema.to_object_info(&|_| vec!["x.png".to_owned()]);
        assert_eq!(
            info["input"]["required"]["image"],
            json!([["x.png"], {"image_upload": true}])
        );
        let forced = NodeSchema::new("N")
            .input(InputSpec::required("v", IntInput::unbounded()).force_input());
        assert_eq!(
            forced.to_object_info(&no_combos)["input"]["required"]["v"],
            json!(["INT", {"forceInput": true}])
        );
    }
}
