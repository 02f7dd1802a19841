//! Test helpers: running one node outside an executor, with or without services.

use kiln_graph::{
    ExecutionContext, ExecutionEvent, InterruptFlag, Node, NodeError, NodeInputs, NodeOutput,
};
use kiln_runtime::{detect_host, PlanOptions, Planner};

use crate::services::NodeServices;

/// Runs `node` with no services.
pub(crate) fn run_node(node: &dyn Node, inputs: &NodeInputs) -> Result<NodeOutput, NodeError> {
    let services = ();
    let interrupt = InterruptFlag::new();
    let mut events: Vec<ExecutionEvent> = Vec::new();
    let mut ctx = ExecutionContext::standalone("1", &services, &interrupt, &mut events);
    node.execute(inputs, &mut ctx)
}

/// Runs `node` with `services`.
pub(crate) fn run_with(
    node: &dyn Node,
    inputs: &NodeInputs,
    services: &NodeServices,
) -> Result<NodeOutput, NodeError> {
    let interrupt = InterruptFlag::new();
    let mut events: Vec<ExecutionEvent> = Vec::new();
    let mut ctx = ExecutionContext::standalone("1", services, &interrupt, &mut events);
    node.execute(inputs, &mut ctx)
}

/// Services over a fresh base directory, planning for this CPU.
pub(crate) fn services(base: &std::path::Path) -> NodeServices {
    let folders = kiln_folders::FolderPaths::new(base).unwrap();
    let planner = Planner::new(
        PlanOptions {
            cpu: true,
            ..PlanOptions::default()
        },
        detect_host(),
    );
    NodeServices::builder(folders, planner).build()
}
