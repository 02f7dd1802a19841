//! The between-prompt output cache with ComfyUI's "classic" semantics: node outputs keyed by
//! an input signature (class, change fingerprint, literal inputs and, recursively, the
//! signatures of linked nodes); only the latest prompt's entries are kept.
//!
//! Signatures are interned: a node's immediate signature is a JSON text in which each link
//! names its source's signature *id*, so keys stay small however deep the graph is, and two
//! equal texts always get the same id. Nodes that must re-run (`ChangePolicy::Always`, a
//! fingerprint of `None`, dangling links, cycles) get a fresh id that nothing else shares,
//! which also changes every downstream signature — as ComfyUI's NaN does.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value as Json};

use crate::coerce::literal_to_value;
use crate::inputs::NodeInputs;
use crate::prompt::{Prompt, PromptInput, PromptNode};
use crate::registry::NodeRegistry;
use crate::schema::{ChangePolicy, HiddenKind, InputKind};
use crate::value::Value;

/// A cached node result.
#[derive(Clone, Debug)]
pub(crate) struct CachedResult {
    pub(crate) values: Arc<Vec<Value>>,
    pub(crate) ui: Option<Json>,
}

/// Node results by signature id, plus the interning table.
#[derive(Default)]
pub(crate) struct OutputCache {
    interned: HashMap<String, u64>,
    next_id: u64,
    results: HashMap<u64, CachedResult>,
}

impl OutputCache {
    /// Signature ids of every node of `prompt`. Entries (and interned texts) that this prompt
    /// does not use are evicted, as the classic cache keeps only the latest prompt.
    pub(crate) fn set_prompt(
        &mut self,
        prompt: &Prompt,
        registry: &NodeRegistry,
        services: &(dyn Any + Send + Sync),
    ) -> HashMap<String, u64> {
        let graph = Graph {
            prompt,
            registry,
            services,
        };
        let mut walk = KeyWalk::default();
        for node in prompt.nodes() {
            self.signature(&node.id, &graph, &mut walk);
        }
        let used_ids: HashSet<u64> = walk.keys.values().copied().collect();
        self.results.retain(|id, _| used_ids.contains(id));
        self.interned
            .retain(|text, _| walk.used_texts.contains(text));
        walk.keys
    }

    pub(crate) fn get(&self, key: u64) -> Option<&CachedResult> {
        self.results.get(&key)
    }

    pub(crate) fn insert(&mut self, key: u64, result: CachedResult) {
        self.results.insert(key, result);
    }

    /// Drops every entry (`POST /free` with `free_memory`).
    pub(crate) fn clear(&mut self) {
        self.results.clear();
        self.interned.clear();
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn intern(&mut self, text: String, used_texts: &mut HashSet<String>) -> u64 {
        let id = match self.interned.get(&text) {
            Some(&id) => id,
            None => {
                let id = self.fresh_id();
                self.interned.insert(text.clone(), id);
                id
            }
        };
        used_texts.insert(text);
        id
    }

    fn signature(&mut self, node_id: &str, graph: &Graph<'_>, walk: &mut KeyWalk) -> u64 {
        if let Some(&key) = walk.keys.get(node_id) {
            return key;
        }
        let Some(node) = graph.prompt.get(node_id) else {
            return self.fresh_id();
        };
        if !walk.in_progress.insert(node_id.to_owned()) {
            // A cycle: uncacheable; execution reports it.
            return self.fresh_id();
        }
        let key = match self.immediate_text(node, graph, walk) {
            Some(text) => self.intern(text, &mut walk.used_texts),
            None => self.fresh_id(),
        };
        walk.in_progress.remove(node_id);
        walk.keys.insert(node_id.to_owned(), key);
        key
    }

    /// `[class_type, change_marker, node_id_or_null, [[input, ["V", literal] | ["L", id,
    /// socket]], ...]]` with inputs sorted by name; `None` when the node must always run.
    fn immediate_text(
        &mut self,
        node: &PromptNode,
        graph: &Graph<'_>,
        walk: &mut KeyWalk,
    ) -> Option<String> {
        let registered = graph.registry.get(&node.class_type)?;
        let schema = registered.schema();
        let change_marker = match schema.change_policy {
            ChangePolicy::Cached => Json::Null,
            ChangePolicy::Always => return None,
            ChangePolicy::Fingerprint => {
                let literals = literal_inputs(node, graph.registry);
                let fingerprint = registered
                    .node()
                    .fingerprint_with_services(&literals, graph.services)?;
                Json::String(fingerprint)
            }
        };
        let keyed_by_id = schema.not_idempotent
            || schema
                .inputs
                .iter()
                .any(|input| input.kind == InputKind::Hidden(HiddenKind::UniqueId));
        let mut inputs: Vec<&(String, PromptInput)> = node.inputs.iter().collect();
        inputs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rendered = Vec::with_capacity(inputs.len());
        for (name, input) in inputs {
            let entry = match input {
                PromptInput::Literal(value) => json!([name, ["V", value]]),
                PromptInput::Link(link) => {
                    let source = self.signature(&link.node, graph, walk);
                    json!([name, ["L", source, link.output]])
                }
            };
            rendered.push(entry);
        }
        let node_id = if keyed_by_id {
            Json::String(node.id.clone())
        } else {
            Json::Null
        };
        Some(json!([node.class_type, change_marker, node_id, rendered]).to_string())
    }
}

/// What signatures are computed from.
struct Graph<'a> {
    prompt: &'a Prompt,
    registry: &'a NodeRegistry,
    services: &'a (dyn Any + Send + Sync),
}

/// The state of one signature pass.
#[derive(Default)]
struct KeyWalk {
    keys: HashMap<String, u64>,
    used_texts: HashSet<String>,
    in_progress: HashSet<String>,
}

/// The literal inputs of `node` as its schema types them, plus `UNIQUE_ID` — what ComfyUI's
/// `IS_CHANGED` sees.
pub(crate) fn literal_inputs(node: &PromptNode, registry: &NodeRegistry) -> NodeInputs {
    let schema = registry.schema(&node.class_type);
    let mut inputs = NodeInputs::new();
    for (name, input) in &node.inputs {
        if let PromptInput::Literal(value) = input {
            let ty = schema
                .and_then(|schema| schema.input_named(name))
                .map(|spec| &spec.ty);
            inputs.insert(name.clone(), literal_to_value(ty, value));
        }
    }
    if let Some(schema) = schema {
        for spec in &schema.inputs {
            if spec.kind == InputKind::Hidden(HiddenKind::UniqueId) {
                inputs.insert(spec.name.clone(), Value::String(node.id.clone()));
            }
        }
    }
    inputs
}
