//! The UI ("litegraph") workflow format read leniently: nodes with their slots, modes and
//! widget values, and links in both saved forms — arrays `[id, origin_id, origin_slot,
//! target_id, target_slot, type]` (version 0.4) and objects (version 1, subgraph definitions).

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use crate::error::GraphError;

/// Node mode "never" (muted): the node and everything only it feeds are dropped.
pub(crate) const MODE_MUTED: i64 = 2;
/// Node mode "bypass": outputs are routed to the first input of a matching type.
pub(crate) const MODE_BYPASS: i64 = 4;
/// The id of a subgraph's input node inside its definition.
pub(crate) const SUBGRAPH_INPUT_NODE: &str = "-10";

/// One input slot of a UI node.
#[derive(Debug)]
pub(crate) struct UiInput {
    pub(crate) name: String,
    pub(crate) ty: String,
    pub(crate) link: Option<i64>,
}

/// One node of a UI graph.
#[derive(Debug)]
pub(crate) struct UiNode<'w> {
    pub(crate) id: String,
    pub(crate) node_type: String,
    pub(crate) mode: i64,
    pub(crate) title: Option<String>,
    pub(crate) inputs: Vec<UiInput>,
    pub(crate) output_types: Vec<String>,
    pub(crate) widgets_values: Option<&'w Json>,
    pub(crate) widgets_values_named: Option<&'w Map<String, Json>>,
}

/// One link of a UI graph.
#[derive(Clone, Debug)]
pub(crate) struct UiLink {
    pub(crate) origin_id: String,
    pub(crate) origin_slot: usize,
}

/// A subgraph boundary slot: its name and the interior links attached to it.
#[derive(Debug)]
pub(crate) struct UiBoundarySlot {
    pub(crate) name: String,
    pub(crate) link_ids: Vec<i64>,
}

/// A graph: the root workflow or one subgraph definition.
#[derive(Debug, Default)]
pub(crate) struct UiGraph<'w> {
    pub(crate) nodes: Vec<UiNode<'w>>,
    by_id: HashMap<String, usize>,
    links: HashMap<i64, UiLink>,
    /// Subgraph definitions only: the definition's inputs and outputs.
    pub(crate) inputs: Vec<UiBoundarySlot>,
    pub(crate) outputs: Vec<UiBoundarySlot>,
}

impl<'w> UiGraph<'w> {
    /// Reads `nodes` and `links` (and `inputs`/`outputs` of a subgraph definition).
    pub(crate) fn parse(graph: &'w Json, what: &str) -> Result<Self, GraphError> {
        let nodes =
            graph
                .get("nodes")
                .and_then(Json::as_array)
                .ok_or_else(|| GraphError::Workflow {
                    node_id: String::new(),
                    reason: format!("{what} has no nodes array"),
                })?;
        let mut parsed = UiGraph::default();
        for node in nodes {
            let node = parse_node(node)?;
            parsed.by_id.insert(node.id.clone(), parsed.nodes.len());
            parsed.nodes.push(node);
        }
        for link in graph
            .get("links")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if let Some((id, link)) = parse_link(link) {
                parsed.links.insert(id, link);
            }
        }
        parsed.inputs = boundary_slots(graph.get("inputs"));
        parsed.outputs = boundary_slots(graph.get("outputs"));
        Ok(parsed)
    }

    pub(crate) fn node(&self, id: &str) -> Option<&UiNode<'w>> {
        self.by_id.get(id).map(|&at| &self.nodes[at])
    }

    pub(crate) fn link(&self, id: i64) -> Option<&UiLink> {
        self.links.get(&id)
    }
}

/// A node id as text: litegraph ids are numbers, sometimes strings.
fn id_text(value: &Json) -> Option<String> {
    match value {
        Json::Number(number) => Some(number.to_string()),
        Json::String(text) => Some(text.clone()),
        _ => None,
    }
}

fn as_index(value: &Json) -> Option<usize> {
    value
        .as_u64()
        .and_then(|index| usize::try_from(index).ok())
        .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
}

fn parse_node(node: &Json) -> Result<UiNode<'_>, GraphError> {
    let id = node
        .get("id")
        .and_then(id_text)
        .ok_or_else(|| GraphError::Workflow {
            node_id: String::new(),
            reason: "a node has no id".to_owned(),
        })?;
    let node_type = node
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| GraphError::Workflow {
            node_id: id.clone(),
            reason: "the node has no type".to_owned(),
        })?
        .to_owned();
    let inputs = node
        .get("inputs")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(|input| UiInput {
            name: input
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned(),
            ty: slot_type(input),
            link: input.get("link").and_then(Json::as_i64),
        })
        .collect();
    let output_types = node
        .get("outputs")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(slot_type)
        .collect();
    Ok(UiNode {
        id,
        node_type,
        mode: node.get("mode").and_then(Json::as_i64).unwrap_or(0),
        title: node.get("title").and_then(Json::as_str).map(str::to_owned),
        inputs,
        output_types,
        widgets_values: node.get("widgets_values"),
        widgets_values_named: node.get("widgets_values_named").and_then(Json::as_object),
    })
}

/// A slot's type; litegraph writes `"*"` as `0` or `""` in some versions.
fn slot_type(slot: &Json) -> String {
    match slot.get("type") {
        Some(Json::String(text)) => text.clone(),
        _ => "*".to_owned(),
    }
}

fn parse_link(link: &Json) -> Option<(i64, UiLink)> {
    match link {
        Json::Array(fields) => Some((
            fields.first()?.as_i64()?,
            UiLink {
                origin_id: id_text(fields.get(1)?)?,
                origin_slot: as_index(fields.get(2)?)?,
            },
        )),
        Json::Object(fields) => Some((
            fields.get("id")?.as_i64()?,
            UiLink {
                origin_id: id_text(fields.get("origin_id")?)?,
                origin_slot: as_index(fields.get("origin_slot")?)?,
            },
        )),
        _ => None,
    }
}

fn boundary_slots(slots: Option<&Json>) -> Vec<UiBoundarySlot> {
    slots
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(|slot| UiBoundarySlot {
            name: slot
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned(),
            link_ids: slot
                .get("linkIds")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(Json::as_i64)
                .collect(),
        })
        .collect()
}

/// LiteGraph's `isValidConnection`: case-insensitive, `*`/empty match anything, and
/// comma-separated unions match when they share a member.
pub(crate) fn types_connect(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    if a == b || a.is_empty() || b.is_empty() || a == "*" || b == "*" {
        return true;
    }
    a.split(',')
        .map(str::trim)
        .any(|one| b.split(',').map(str::trim).any(|other| other == one))
}
