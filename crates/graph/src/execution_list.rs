//! The demand-driven execution order of ComfyUI's `ExecutionList`: nodes are pulled in from the
//! outputs through links to nodes whose results are not available yet, and among the nodes
//! ready to run, outputs (and nodes one or two links before an output) go first so previews
//! show as early as possible.

use std::collections::{HashMap, HashSet};

use crate::prompt::Prompt;
use crate::registry::NodeRegistry;

/// A link from a node to one that is missing in the prompt.
#[derive(Debug)]
pub(crate) struct MissingNode {
    pub(crate) node_id: String,
    pub(crate) referenced_by: Option<String>,
}

pub(crate) struct ExecutionList<'p> {
    prompt: &'p Prompt,
    registry: &'p NodeRegistry,
    /// Pending nodes in insertion order (ComfyUI's dict order decides ties).
    pending: Vec<String>,
    block_count: HashMap<String, usize>,
    /// For each pending node, the nodes it blocks, in insertion order.
    blocking: HashMap<String, Vec<String>>,
}

impl<'p> ExecutionList<'p> {
    pub(crate) fn new(prompt: &'p Prompt, registry: &'p NodeRegistry) -> Self {
        ExecutionList {
            prompt,
            registry,
            pending: Vec::new(),
            block_count: HashMap::new(),
            blocking: HashMap::new(),
        }
    }

    /// Adds `node_id` and every ancestor whose result is not `available`.
    pub(crate) fn add_node(
        &mut self,
        node_id: &str,
        available: &HashSet<String>,
    ) -> Result<(), MissingNode> {
        let mut stack: Vec<(String, Option<String>)> = vec![(node_id.to_owned(), None)];
        let mut links: Vec<(String, String)> = Vec::new();
        while let Some((id, referenced_by)) = stack.pop() {
            if self.block_count.contains_key(&id) {
                continue;
            }
            let Some(node) = self.prompt.get(&id) else {
                return Err(MissingNode {
                    node_id: id,
                    referenced_by,
                });
            };
            self.pending.push(id.clone());
            self.block_count.insert(id.clone(), 0);
            self.blocking.insert(id.clone(), Vec::new());
            for (_, link) in node.links() {
                if !available.contains(&link.node) {
                    stack.push((link.node.clone(), Some(id.clone())));
                    links.push((link.node.clone(), id.clone()));
                }
            }
        }
        for (from, to) in links {
            self.add_strong_link(&from, &to, available)?;
        }
        Ok(())
    }

    fn add_strong_link(
        &mut self,
        from: &str,
        to: &str,
        available: &HashSet<String>,
    ) -> Result<(), MissingNode> {
        if available.contains(from) {
            return Ok(());
        }
        self.add_node(from, available)?;
        let blocked = self.blocking.entry(from.to_owned()).or_default();
        if !blocked.iter().any(|node| node == to) {
            blocked.push(to.to_owned());
            *self.block_count.entry(to.to_owned()).or_default() += 1;
        }
        Ok(())
    }

    fn ready(&self) -> Vec<&String> {
        self.pending
            .iter()
            .filter(|id| self.block_count.get(*id).copied().unwrap_or(0) == 0)
            .collect()
    }

    fn is_output(&self, node_id: &str) -> bool {
        self.prompt
            .get(node_id)
            .and_then(|node| self.registry.schema(&node.class_type))
            .is_some_and(|schema| schema.output_node)
    }

    fn blocked_by(&self, node_id: &str) -> &[String] {
        self.blocking.get(node_id).map_or(&[], Vec::as_slice)
    }

    /// The next node to run, or `Err` with the nodes left in a cycle.
    pub(crate) fn next(&self) -> Result<Option<String>, Vec<String>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let ready = self.ready();
        if ready.is_empty() {
            return Err(self.nodes_in_cycle());
        }
        let pick = ready
            .iter()
            .find(|id| self.is_output(id))
            .or_else(|| {
                ready.iter().find(|id| {
                    self.blocked_by(id)
                        .iter()
                        .any(|blocked| self.is_output(blocked))
                })
            })
            .or_else(|| {
                ready.iter().find(|id| {
                    self.blocked_by(id).iter().any(|blocked| {
                        self.blocked_by(blocked)
                            .iter()
                            .any(|further| self.is_output(further))
                    })
                })
            })
            .unwrap_or(&ready[0]);
        Ok(Some((*pick).clone()))
    }

    /// Marks `node_id` done, unblocking what waited on it.
    pub(crate) fn complete(&mut self, node_id: &str) {
        self.pending.retain(|id| id != node_id);
        self.block_count.remove(node_id);
        for blocked in self.blocking.remove(node_id).unwrap_or_default() {
            if let Some(count) = self.block_count.get_mut(&blocked) {
                *count = count.saturating_sub(1);
            }
        }
    }

    /// Dissolves nodes that wait on nothing until only cycle members (and what they block)
    /// remain, in pending order.
    fn nodes_in_cycle(&self) -> Vec<String> {
        let mut waits_on: HashMap<&str, HashSet<&str>> = self
            .pending
            .iter()
            .map(|id| (id.as_str(), HashSet::new()))
            .collect();
        for (from, blocked) in &self.blocking {
            for to in blocked {
                if let Some(set) = waits_on.get_mut(to.as_str()) {
                    set.insert(from.as_str());
                }
            }
        }
        loop {
            let free: Vec<&str> = waits_on
                .iter()
                .filter(|(_, set)| set.is_empty())
                .map(|(id, _)| *id)
                .collect();
            if free.is_empty() {
                break;
            }
            for id in free {
                waits_on.remove(id);
                for set in waits_on.values_mut() {
                    set.remove(id);
                }
            }
        }
        self.pending
            .iter()
            .filter(|id| waits_on.contains_key(id.as_str()))
            .cloned()
            .collect()
    }
}
