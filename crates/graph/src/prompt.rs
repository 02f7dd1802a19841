//! [`Prompt`]: an API-format prompt (`{"id": {"class_type", "inputs", "_meta"}}`) parsed into
//! nodes whose inputs are either links `[node_id, output_index]` or literal values.

use std::collections::HashMap;

use serde_json::{json, Map, Value as Json};

use crate::error::GraphError;

/// One input of a prompt node.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptInput {
    /// `[node_id, output_index]`.
    Link(Link),
    /// Any other value (`{"__value__": x}` already unwrapped to `x`).
    Literal(Json),
}

/// A link to another node's output.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Link {
    /// The source node's prompt id.
    pub node: String,
    /// The source output index.
    pub output: usize,
}

/// A node of a prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptNode {
    /// The prompt id (`"3"`, `"57:3"`).
    pub id: String,
    /// The class type.
    pub class_type: String,
    /// Inputs in the order they were given.
    pub inputs: Vec<(String, PromptInput)>,
    /// `_meta.title`, if given (the server ignores `_meta` otherwise).
    pub title: Option<String>,
}

impl PromptNode {
    /// The input called `name`.
    pub fn input(&self, name: &str) -> Option<&PromptInput> {
        self.inputs
            .iter()
            .find(|(input, _)| input == name)
            .map(|(_, value)| value)
    }

    /// The links among the inputs, with input names, in input order.
    pub fn links(&self) -> impl Iterator<Item = (&str, &Link)> {
        self.inputs.iter().filter_map(|(name, input)| match input {
            PromptInput::Link(link) => Some((name.as_str(), link)),
            PromptInput::Literal(_) => None,
        })
    }
}

/// A parsed API prompt, nodes in the order they were given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prompt {
    nodes: Vec<PromptNode>,
    index: HashMap<String, usize>,
}

/// ComfyUI's `is_link`: a list of exactly two items, a string then a number.
pub fn is_link(value: &Json) -> bool {
    link_of(value).is_some()
}

/// The link `value` denotes, if it is one (integral float indices are accepted, as ComfyUI's
/// `is_link` accepts floats).
pub(crate) fn link_of(value: &Json) -> Option<Link> {
    let items = value.as_array()?;
    let [node, output] = items.as_slice() else {
        return None;
    };
    let node = node.as_str()?;
    let output = match output.as_u64() {
        Some(index) => usize::try_from(index).ok()?,
        None => {
            let float = output.as_f64()?;
            if float.fract() != 0.0 || float < 0.0 || float > u32::MAX as f64 {
                return None;
            }
            // Checked integral and in range just above.
            float as usize
        }
    };
    Some(Link {
        node: node.to_owned(),
        output,
    })
}

/// Unwraps `{"__value__": x}` (how the frontend sends list widget values) to `x`.
pub(crate) fn unwrap_value(value: &Json) -> &Json {
    match value {
        Json::Object(map) => map.get("__value__").unwrap_or(value),
        other => other,
    }
}

impl Prompt {
    /// An empty prompt.
    pub fn new() -> Self {
        Prompt::default()
    }

    /// Parses an API prompt. Every node must be an object with a string `class_type`;
    /// `inputs` must be an object when present. Links follow ComfyUI's `is_link`; other
    /// lists stay literals.
    ///
    /// [`crate::Validator`] reports malformed prompts in ComfyUI's error format instead;
    /// use this for prompts that are already known to be well-formed.
    pub fn from_json(prompt: &Json) -> Result<Prompt, GraphError> {
        let nodes = prompt
            .as_object()
            .ok_or_else(|| GraphError::MalformedPrompt {
                node_id: String::new(),
                reason: "the prompt is not a JSON object".to_owned(),
            })?;
        let mut parsed = Prompt::new();
        for (id, node) in nodes {
            let malformed = |reason: &str| GraphError::MalformedPrompt {
                node_id: id.clone(),
                reason: reason.to_owned(),
            };
            let class_type = node
                .get("class_type")
                .and_then(Json::as_str)
                .ok_or_else(|| malformed("no string class_type"))?;
            let inputs = match node.get("inputs") {
                None => Vec::new(),
                Some(Json::Object(inputs)) => inputs
                    .iter()
                    .map(|(name, value)| (name.clone(), parse_input(value)))
                    .collect(),
                Some(_) => return Err(malformed("inputs is not an object")),
            };
            parsed.push(PromptNode {
                id: id.clone(),
                class_type: class_type.to_owned(),
                inputs,
                title: meta_title(node),
            })?;
        }
        Ok(parsed)
    }

    /// Appends a node; fails when its id is already taken.
    pub fn push(&mut self, node: PromptNode) -> Result<(), GraphError> {
        if self.index.contains_key(&node.id) {
            return Err(GraphError::MalformedPrompt {
                node_id: node.id,
                reason: "duplicate node id".to_owned(),
            });
        }
        self.index.insert(node.id.clone(), self.nodes.len());
        self.nodes.push(node);
        Ok(())
    }

    /// The node with prompt id `id`.
    pub fn get(&self, id: &str) -> Option<&PromptNode> {
        self.index.get(id).map(|&at| &self.nodes[at])
    }

    /// Whether a node has id `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Nodes in prompt order.
    pub fn nodes(&self) -> &[PromptNode] {
        &self.nodes
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the prompt has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Back to API JSON. Literal arrays are wrapped as `{"__value__": [...]}` so they cannot
    /// be read back as links; `_meta.title` is kept.
    pub fn to_json(&self) -> Json {
        let mut out = Map::new();
        for node in &self.nodes {
            let mut inputs = Map::new();
            for (name, input) in &node.inputs {
                let value = match input {
                    PromptInput::Link(link) => json!([link.node, link.output]),
                    PromptInput::Literal(value @ Json::Array(_)) => json!({"__value__": value}),
                    PromptInput::Literal(value) => value.clone(),
                };
                inputs.insert(name.clone(), value);
            }
            let mut entry = json!({"class_type": node.class_type, "inputs": inputs});
            if let (Some(title), Json::Object(map)) = (&node.title, &mut entry) {
                map.insert("_meta".to_owned(), json!({"title": title}));
            }
            out.insert(node.id.clone(), entry);
        }
        Json::Object(out)
    }
}

fn parse_input(value: &Json) -> PromptInput {
    match link_of(value) {
        Some(link) => PromptInput::Link(link),
        None => PromptInput::Literal(unwrap_value(value).clone()),
    }
}

/// `_meta.title` of a raw prompt node.
pub(crate) fn meta_title(node: &Json) -> Option<String> {
    node.get("_meta")
        .and_then(|meta| meta.get("title"))
        .and_then(Json::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_link_matches_comfyui() {
        assert!(is_link(&json!(["4", 0])));
        assert!(is_link(&json!(["4", 1.0])));
        assert!(!is_link(&json!([4, 0])));
        assert!(!is_link(&json!(["4", "0"])));
        assert!(!is_link(&json!(["4", 0, 1])));
        assert!(!is_link(&json!({"__value__": ["4", 0]})));
    }

    #[test]
    fn parses_links_literals_and_wrapped_values() {
        let prompt = Prompt::from_json(&json!({
            "3": {"class_type": "KSampler", "inputs": {
                "seed": 5, "model": ["4", 0], "sizes": {"__value__": ["4", 0]}},
                "_meta": {"title": "Sampler"}},
            "4": {"class_type": "Loader", "inputs": {}}
        }))
        .unwrap();
        let node = prompt.get("3").unwrap();
        assert_eq!(node.title.as_deref(), Some("Sampler"));
        assert_eq!(
            node.input("model"),
            Some(&PromptInput::Link(Link {
                node: "4".into(),
                output: 0
            }))
        );
        assert_eq!(
            node.input("sizes"),
            Some(&PromptInput::Literal(json!(["4", 0])))
        );
        assert_eq!(node.input("seed"), Some(&PromptInput::Literal(json!(5))));
        let round_trip = Prompt::from_json(&prompt.to_json()).unwrap();
        assert_eq!(round_trip, prompt);
    }

    #[test]
    fn rejects_malformed_nodes() {
        assert!(Prompt::from_json(&json!([])).is_err());
        let err = Prompt::from_json(&json!({"1": {"inputs": {}}})).unwrap_err();
        assert!(matches!(err, GraphError::MalformedPrompt { ref node_id, .. } if node_id == "1"));
        assert!(Prompt::from_json(&json!({"1": {"class_type": "A", "inputs": []}})).is_err());
    }
}
