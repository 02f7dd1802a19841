//! Small helpers every node file uses: ComfyUI's `MAX_RESOLUTION`, reading size inputs as
//! `usize`, and object outputs.

use std::sync::Arc;

use kiln_graph::{NodeError, NodeInputs};

use crate::error::NodesError;

/// ComfyUI's `nodes.MAX_RESOLUTION`.
pub(crate) const MAX_RESOLUTION: i128 = 16384;

/// An `INT` input that must be a non-negative size or count.
pub(crate) fn size_input(inputs: &NodeInputs, name: &str) -> Result<usize, NodeError> {
    let value = inputs.int(name)?;
    usize::try_from(value)
        .map_err(|_| NodesError::input(name, format!("must not be negative, got {value}")).into())
}

/// An object input shared as `Arc<T>`.
pub(crate) fn object<T: std::any::Any + Send + Sync>(
    inputs: &NodeInputs,
    name: &str,
) -> Result<Arc<T>, NodeError> {
    inputs.object::<T>(name)
}
