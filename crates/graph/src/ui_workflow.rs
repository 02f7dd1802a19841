//! [`workflow_to_prompt`]: a UI-format workflow (what the frontend saves, and what PNGs carry
//! as `workflow`) converted to an API prompt the way the frontend's `graphToPrompt` does it.
//!
//! Widget values are mapped by position onto the schema's widget inputs (skipping the
//! `control_after_generate` and upload values the UI stores between them), links are resolved
//! through Reroutes, bypassed nodes and subgraph boundaries, PrimitiveNodes become literal
//! values, muted nodes and notes are dropped, and subgraph instances are expanded into
//! `"<instance>:<inner>"` node ids.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value as Json};

use crate::coerce::float_to_json;
use crate::error::GraphError;
use crate::registry::NodeRegistry;
use crate::schema::{ComboSource, InputKind, InputSpec, InputType, NodeSchema};
use crate::ui_graph::{
    types_connect, UiGraph, UiNode, MODE_BYPASS, MODE_MUTED, SUBGRAPH_INPUT_NODE,
};
use crate::value::int_to_json;

/// Subgraphs nested deeper than this are taken for a definition that contains itself.
const MAX_SUBGRAPH_NESTING: usize = 32;

/// Frontend-only node types that never reach the server.
const VIRTUAL_NODE_TYPES: [&str; 4] = ["Reroute", "PrimitiveNode", "Note", "MarkdownNote"];

/// Integer inputs with these names get a `control_after_generate` widget even when the
/// schema does not ask for one (the frontend's rule).
const SEED_INPUT_NAMES: [&str; 2] = ["seed", "noise_seed"];

/// Converts a UI-format workflow into an API prompt (`{"id": {"inputs", "class_type",
/// "_meta"}}`). Node classes are looked up in `registry` to name widget values; nodes of
/// unknown classes are kept with their links only, so validation reports them as missing.
pub fn workflow_to_prompt(workflow: &Json, registry: &NodeRegistry) -> Result<Json, GraphError> {
    let root = UiGraph::parse(workflow, "the workflow")?;
    let mut subgraphs = HashMap::new();
    let definitions = workflow
        .get("definitions")
        .and_then(|definitions| definitions.get("subgraphs"))
        .and_then(Json::as_array);
    for definition in definitions.into_iter().flatten() {
        let Some(id) = definition.get("id").and_then(Json::as_str) else {
            continue;
        };
        subgraphs.insert(
            id.to_owned(),
            UiGraph::parse(definition, "a subgraph definition")?,
        );
    }
    let mut converter = Converter {
        registry,
        root,
        subgraphs,
        scopes: vec![Scope {
            subgraph: None,
            prefix: String::new(),
            parent: None,
        }],
        children: HashMap::new(),
    };
    converter.build_scopes(0, 0)?;
    let mut output = Map::new();
    for scope in 0..converter.scopes.len() {
        converter.emit_scope(scope, &mut output)?;
    }
    drop_links_to_missing_nodes(&mut output);
    Ok(Json::Object(output))
}

/// A graph being converted: the root, or one subgraph instance's definition.
struct Scope {
    /// `None` for the root graph, else the subgraph definition id.
    subgraph: Option<String>,
    /// Prefix of node ids in this scope (`""`, `"57:"`, `"57:12:"`).
    prefix: String,
    /// The scope holding the instance node, and the instance's id there.
    parent: Option<(usize, String)>,
}

/// Where an input's value comes from.
enum Resolved {
    /// `[node_id, output_index]`.
    Link(String, usize),
    /// A literal (a PrimitiveNode's value).
    Value(Json),
}

type Visited = HashSet<(usize, String, char, usize)>;

struct Converter<'w, 'r> {
    registry: &'r NodeRegistry,
    root: UiGraph<'w>,
    subgraphs: HashMap<String, UiGraph<'w>>,
    scopes: Vec<Scope>,
    /// Child scope of each expanded instance: `(scope, instance id) → scope`.
    children: HashMap<(usize, String), usize>,
}

impl<'w> Converter<'w, '_> {
    fn graph(&self, scope: usize) -> &UiGraph<'w> {
        match &self.scopes[scope].subgraph {
            Some(id) => self.subgraphs.get(id).unwrap_or(&self.root),
            None => &self.root,
        }
    }

    fn is_subgraph(&self, node: &UiNode<'_>) -> bool {
        self.subgraphs.contains_key(&node.node_type)
    }

    /// Creates a scope for every live subgraph instance, depth first.
    fn build_scopes(&mut self, scope: usize, depth: usize) -> Result<(), GraphError> {
        let instances: Vec<(String, String)> = self
            .graph(scope)
            .nodes
            .iter()
            .filter(|node| self.is_subgraph(node) && !matches!(node.mode, MODE_MUTED | MODE_BYPASS))
            .map(|node| (node.id.clone(), node.node_type.clone()))
            .collect();
        for (instance_id, subgraph) in instances {
            let prefix = format!("{}{}:", self.scopes[scope].prefix, instance_id);
            if depth >= MAX_SUBGRAPH_NESTING {
                return Err(GraphError::Workflow {
                    node_id: prefix,
                    reason: "subgraphs are nested too deeply (a subgraph contains itself?)"
                        .to_owned(),
                });
            }
            let child = self.scopes.len();
            self.scopes.push(Scope {
                subgraph: Some(subgraph),
                prefix,
                parent: Some((scope, instance_id.clone())),
            });
            self.children.insert((scope, instance_id), child);
            self.build_scopes(child, depth + 1)?;
        }
        Ok(())
    }

    fn emit_scope(&self, scope: usize, output: &mut Map<String, Json>) -> Result<(), GraphError> {
        for node in &self.graph(scope).nodes {
            let skipped = matches!(node.mode, MODE_MUTED | MODE_BYPASS)
                || VIRTUAL_NODE_TYPES.contains(&node.node_type.as_str())
                || self.is_subgraph(node);
            if skipped {
                continue;
            }
            let id = format!("{}{}", self.scopes[scope].prefix, node.id);
            let schema = self.registry.schema(&node.node_type);
            let mut inputs = widget_inputs(node, schema);
            for (slot, input) in node.inputs.iter().enumerate() {
                let mut visited = Visited::new();
                match self.resolve_input(scope, node, slot, None, &mut visited)? {
                    Some(Resolved::Link(origin, origin_slot)) => {
                        inputs.insert(input.name.clone(), json!([origin, origin_slot]));
                    }
                    Some(Resolved::Value(value)) => {
                        inputs.insert(input.name.clone(), wrap_list(value));
                    }
                    None => {}
                }
            }
            let title = node
                .title
                .clone()
                .or_else(|| schema.map(|schema| schema.display_name.clone()))
                .unwrap_or_else(|| node.node_type.clone());
            output.insert(
                id,
                json!({"inputs": inputs, "class_type": node.node_type, "_meta": {"title": title}}),
            );
        }
        Ok(())
    }

    /// Where input `slot` of `node` gets its value (`None`: unconnected, keep the widget).
    fn resolve_input(
        &self,
        scope: usize,
        node: &UiNode<'_>,
        slot: usize,
        type_override: Option<&str>,
        visited: &mut Visited,
    ) -> Result<Option<Resolved>, GraphError> {
        self.visit(visited, scope, node, 'I', slot)?;
        let Some(input) = node.inputs.get(slot) else {
            return Ok(None);
        };
        let Some(link) = input.link.and_then(|link| self.graph(scope).link(link)) else {
            return Ok(None);
        };
        if link.origin_id == SUBGRAPH_INPUT_NODE {
            return self.resolve_subgraph_input(scope, link.origin_slot, visited);
        }
        let Some(origin) = self.graph(scope).node(&link.origin_id) else {
            tracing::warn!(node = %node.id, input = %input.name, "link from a missing node");
            return Ok(None);
        };
        let ty = type_override.unwrap_or(&input.ty);
        self.resolve_output(scope, origin, link.origin_slot, ty, visited)
    }

    /// A link from a subgraph's input node: whatever feeds the instance's input of the same
    /// name (saved instances drop unconnected widget slots, so indices do not line up).
    fn resolve_subgraph_input(
        &self,
        scope: usize,
        definition_slot: usize,
        visited: &mut Visited,
    ) -> Result<Option<Resolved>, GraphError> {
        let Some((parent, instance_id)) = &self.scopes[scope].parent else {
            return Ok(None);
        };
        let Some(name) = self
            .graph(scope)
            .inputs
            .get(definition_slot)
            .map(|slot| slot.name.as_str())
        else {
            return Ok(None);
        };
        let Some(instance) = self.graph(*parent).node(instance_id) else {
            return Ok(None);
        };
        match instance.inputs.iter().position(|input| input.name == name) {
            Some(index) => self.resolve_input(*parent, instance, index, None, visited),
            None => Ok(None),
        }
    }

    /// What a link from output `slot` of `node` really points at.
    fn resolve_output(
        &self,
        scope: usize,
        node: &UiNode<'_>,
        slot: usize,
        ty: &str,
        visited: &mut Visited,
    ) -> Result<Option<Resolved>, GraphError> {
        self.visit(visited, scope, node, 'O', slot)?;
        if node.mode == MODE_BYPASS {
            return match bypass_input(node, slot, ty) {
                Some(index) => self.resolve_input(scope, node, index, None, visited),
                None => Ok(None),
            };
        }
        if self.is_subgraph(node) {
            return self.resolve_subgraph_output(scope, node, slot, ty, visited);
        }
        match node.node_type.as_str() {
            "Reroute" => {
                if node.inputs.get(slot).is_some() {
                    self.resolve_input(scope, node, slot, Some(ty), visited)
                } else {
                    Ok(None)
                }
            }
            "PrimitiveNode" => Ok(node
                .widgets_values
                .and_then(Json::as_array)
                .and_then(|values| values.first())
                .map(|value| Resolved::Value(value.clone()))),
            "Note" | "MarkdownNote" => Ok(None),
            _ => Ok(Some(Resolved::Link(
                format!("{}{}", self.scopes[scope].prefix, node.id),
                slot,
            ))),
        }
    }

    /// Output `slot` of a subgraph instance: the interior link feeding the definition's
    /// output node at that slot.
    fn resolve_subgraph_output(
        &self,
        scope: usize,
        instance: &UiNode<'_>,
        slot: usize,
        ty: &str,
        visited: &mut Visited,
    ) -> Result<Option<Resolved>, GraphError> {
        let Some(&child) = self.children.get(&(scope, instance.id.clone())) else {
            // A muted instance: the link is dropped with the nodes it pointed at.
            return Ok(Some(Resolved::Link(
                format!("{}{}", self.scopes[scope].prefix, instance.id),
                slot,
            )));
        };
        let graph = self.graph(child);
        let link = graph
            .outputs
            .get(slot)
            .and_then(|output| output.link_ids.first())
            .and_then(|link| graph.link(*link));
        let Some(link) = link else {
            return Ok(None);
        };
        if link.origin_id == SUBGRAPH_INPUT_NODE {
            return self.resolve_subgraph_input(child, link.origin_slot, visited);
        }
        match graph.node(&link.origin_id) {
            Some(origin) => self.resolve_output(child, origin, link.origin_slot, ty, visited),
            None => Ok(None),
        }
    }

    fn visit(
        &self,
        visited: &mut Visited,
        scope: usize,
        node: &UiNode<'_>,
        direction: char,
        slot: usize,
    ) -> Result<(), GraphError> {
        if visited.insert((scope, node.id.clone(), direction, slot)) {
            Ok(())
        } else {
            Err(GraphError::Workflow {
                node_id: format!("{}{}", self.scopes[scope].prefix, node.id),
                reason: format!("circular reference while resolving slot {slot}"),
            })
        }
    }
}

/// The frontend's bypass rule: the input at the same index if its type fits both the output
/// and the final target, else the first input of exactly the target type, else the first
/// input that fits both.
fn bypass_input(node: &UiNode<'_>, slot: usize, ty: &str) -> Option<usize> {
    if ty == "*" || ty.is_empty() {
        return if node.inputs.len() > slot {
            Some(slot)
        } else if node.inputs.is_empty() {
            None
        } else {
            Some(0)
        };
    }
    let output_type = node.output_types.get(slot).map_or("*", String::as_str);
    if let Some(opposite) = node.inputs.get(slot) {
        if types_connect(&opposite.ty, output_type) && types_connect(&opposite.ty, ty) {
            return Some(slot);
        }
    }
    node.inputs
        .iter()
        .position(|input| input.ty == ty)
        .or_else(|| {
            node.inputs.iter().position(|input| {
                types_connect(&input.ty, output_type) && types_connect(&input.ty, ty)
            })
        })
}

/// One position in a node's saved `widgets_values`.
enum WidgetSlot<'s> {
    /// The value of this input.
    Input(&'s InputSpec),
    /// A UI-only value (`control_after_generate`, the upload button).
    Extra,
}

/// The positions of `widgets_values` for a schema: required widgets, the upload button after
/// them (the frontend appends it to the required inputs), then optional widgets; a
/// `control_after_generate` value follows seed-like integers and combos that ask for one.
fn widget_slots(schema: &NodeSchema) -> Vec<WidgetSlot<'_>> {
    let mut slots = Vec::new();
    for kind in [InputKind::Required, InputKind::Optional] {
        let mut upload = false;
        for spec in schema.inputs.iter().filter(|spec| spec.kind == kind) {
            if !spec.is_widget() {
                continue;
            }
            slots.push(WidgetSlot::Input(spec));
            if has_control_after_generate(spec) {
                slots.push(WidgetSlot::Extra);
            }
            upload |= ["image_upload", "video_upload", "audio_upload"]
                .iter()
                .any(|key| spec.extra.get(*key).and_then(Json::as_bool) == Some(true));
        }
        if upload && kind == InputKind::Required {
            slots.push(WidgetSlot::Extra);
        }
    }
    slots
}

/// Whether the UI adds a `control_after_generate` widget after this input.
fn has_control_after_generate(spec: &InputSpec) -> bool {
    match &spec.ty {
        InputType::Int(int) => {
            int.control_after_generate || SEED_INPUT_NAMES.contains(&spec.name.as_str())
        }
        InputType::Combo(_) => spec
            .extra
            .get("control_after_generate")
            .is_some_and(|flag| flag.as_bool().unwrap_or(true)),
        _ => false,
    }
}

/// The widget values of a node by input name.
fn widget_inputs(node: &UiNode<'_>, schema: Option<&NodeSchema>) -> Map<String, Json> {
    let mut inputs = Map::new();
    let named = node
        .widgets_values_named
        .or_else(|| node.widgets_values.and_then(Json::as_object));
    if let Some(named) = named {
        for (name, value) in named {
            let ui_only = name.starts_with("control_after_generate")
                || name == "upload"
                || name.contains('.');
            let known = schema.is_none_or(|schema| schema.input_named(name).is_some());
            if !ui_only && known {
                inputs.insert(name.clone(), wrap_list(value.clone()));
            }
        }
        return inputs;
    }
    let Some(schema) = schema else {
        return inputs;
    };
    let values = node
        .widgets_values
        .and_then(Json::as_array)
        .map_or(&[][..], Vec::as_slice);
    for (at, slot) in widget_slots(schema).into_iter().enumerate() {
        let WidgetSlot::Input(spec) = slot else {
            continue;
        };
        let value = match values.get(at) {
            Some(value) => Some(value.clone()),
            None => default_value(spec),
        };
        if let Some(value) = value {
            inputs.insert(spec.name.clone(), wrap_list(value));
        }
    }
    inputs
}

/// What the frontend fills in for a widget missing from an older save.
fn default_value(spec: &InputSpec) -> Option<Json> {
    match &spec.ty {
        InputType::Int(int) => Some(int_to_json(int.default.unwrap_or(0))),
        InputType::Float(float) => Some(float_to_json(float.default.unwrap_or(0.0))),
        InputType::String(string) => Some(Json::String(string.default.clone().unwrap_or_default())),
        InputType::Boolean(boolean) => Some(Json::Bool(boolean.default.unwrap_or(false))),
        InputType::Combo(combo) => combo
            .default
            .clone()
            .map(Json::String)
            .or_else(|| match &combo.options {
                ComboSource::Static(options) => options.first().cloned().map(Json::String),
                ComboSource::Dynamic(_) => None,
            }),
        InputType::Link(_) => None,
    }
}

/// Lists are sent as `{"__value__": [...]}` so they cannot be mistaken for links.
fn wrap_list(value: Json) -> Json {
    match value {
        Json::Array(_) => json!({"__value__": value}),
        other => other,
    }
}

/// The frontend's last step: links to nodes that were not emitted (muted, missing) go.
fn drop_links_to_missing_nodes(output: &mut Map<String, Json>) {
    let ids: HashSet<String> = output.keys().cloned().collect();
    for node in output.values_mut() {
        if let Some(Json::Object(inputs)) = node.get_mut("inputs") {
            inputs.retain(|_, value| match value.as_array().map(Vec::as_slice) {
                Some([Json::String(origin), _]) => ids.contains(origin),
                _ => true,
            });
        }
    }
}
