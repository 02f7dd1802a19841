//! [`NodeRegistry`]: the list of node classes, registered once at startup; the source of
//! `/object_info`, validation and execution lookups.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::error::GraphError;
use crate::node::Node;
use crate::schema::{InputKind, NodeSchema};

/// A registered class: the node and its schema, computed once.
#[derive(Clone)]
pub struct RegisteredNode {
    node: Arc<dyn Node>,
    schema: Arc<NodeSchema>,
}

impl RegisteredNode {
    /// The node implementation.
    pub fn node(&self) -> &Arc<dyn Node> {
        &self.node
    }

    /// Its schema.
    pub fn schema(&self) -> &NodeSchema {
        &self.schema
    }
}

/// Node classes by class type, in registration order.
#[derive(Clone, Default)]
pub struct NodeRegistry {
    entries: Vec<RegisteredNode>,
    index: HashMap<String, usize>,
}

impl NodeRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        NodeRegistry::default()
    }

    /// Adds a node class. Fails on a duplicate class type or an inconsistent schema
    /// (empty class type, duplicate input names).
    pub fn register(&mut self, node: impl Node + 'static) -> Result<(), GraphError> {
        self.register_arc(Arc::new(node))
    }

    /// [`Self::register`] for an already shared node.
    pub fn register_arc(&mut self, node: Arc<dyn Node>) -> Result<(), GraphError> {
        let schema = node.schema();
        check_schema(&schema)?;
        if self.index.contains_key(&schema.class_type) {
            return Err(GraphError::DuplicateNode {
                class_type: schema.class_type,
            });
        }
        self.index
            .insert(schema.class_type.clone(), self.entries.len());
        self.entries.push(RegisteredNode {
            node,
            schema: Arc::new(schema),
        });
        Ok(())
    }

    /// The class registered as `class_type`.
    pub fn get(&self, class_type: &str) -> Option<&RegisteredNode> {
        self.index.get(class_type).map(|&at| &self.entries[at])
    }

    /// The schema of `class_type`.
    pub fn schema(&self, class_type: &str) -> Option<&NodeSchema> {
        self.get(class_type).map(RegisteredNode::schema)
    }

    /// Whether `class_type` is registered.
    pub fn contains(&self, class_type: &str) -> bool {
        self.index.contains_key(class_type)
    }

    /// All classes in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &RegisteredNode> {
        self.entries.iter()
    }

    /// The number of classes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no class is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The whole `/object_info` answer: `{class_type: info}` for every class.
    pub fn object_info(&self, resolve_combo: &dyn Fn(&str) -> Vec<String>) -> Json {
        let map: Map<String, Json> = self
            .entries
            .iter()
            .map(|entry| {
                (
                    entry.schema.class_type.clone(),
                    entry.schema.to_object_info(resolve_combo),
                )
            })
            .collect();
        Json::Object(map)
    }
}

fn check_schema(schema: &NodeSchema) -> Result<(), GraphError> {
    let invalid = |reason: String| GraphError::InvalidSchema {
        class_type: schema.class_type.clone(),
        reason,
    };
    if schema.class_type.is_empty() {
        return Err(invalid("the class type is empty".to_owned()));
    }
    for (at, input) in schema.inputs.iter().enumerate() {
        if input.name.is_empty() {
            return Err(invalid(format!("input {at} has no name")));
        }
        if schema.inputs[..at]
            .iter()
            .any(|prior| prior.name == input.name)
        {
            return Err(invalid(format!("input '{}' is declared twice", input.name)));
        }
        if let (InputKind::Hidden(_), true) = (input.kind, input.force_input) {
            return Err(invalid(format!(
                "hidden input '{}' cannot be forced",
                input.name
            )));
        }
    }
    Ok(())
}
