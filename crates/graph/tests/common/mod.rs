//! Tiny arithmetic nodes for testing the engine without any diffusion code.
#![allow(dead_code, clippy::unwrap_used)] // test support: a poisoned lock or bad fixture should fail the test

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;

use kiln_graph::{
    BooleanInput, ChangePolicy, ComboInput, ExecutionContext, FloatInput, HiddenKind, InputSpec,
    IntInput, InterruptFlag, Node, NodeError, NodeInputs, NodeOutput, NodeRegistry, NodeSchema,
    OutputSpec, StringInput, Value,
};
use serde_json::json;

/// What the test nodes share through `ExecutionContext::services`.
#[derive(Default)]
pub(crate) struct TestServices {
    /// Node ids in the order they executed.
    pub(crate) log: Mutex<Vec<String>>,
    /// Set by tests so `Slow` can interrupt mid-run.
    pub(crate) interrupt: Mutex<Option<InterruptFlag>>,
    /// `FileHash` fingerprints by name.
    pub(crate) hashes: Mutex<HashMap<String, String>>,
    /// `Random`'s counter.
    pub(crate) counter: Mutex<i128>,
}

impl TestServices {
    pub(crate) fn set_hash(&self, name: &str, hash: &str) {
        self.hashes
            .lock()
            .unwrap()
            .insert(name.to_owned(), hash.to_owned());
    }

    pub(crate) fn executed(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }
}

fn log<'a>(ctx: &ExecutionContext<'a>) -> Result<&'a TestServices, NodeError> {
    let services = ctx.services::<TestServices>()?;
    services.log.lock().unwrap().push(ctx.node_id().to_owned());
    Ok(services)
}

struct Constant;
impl Node for Constant {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Constant")
            .category("math")
            .input(InputSpec::required("value", IntInput::new(0, -1000, 1000)))
            .output(OutputSpec::new("INT"))
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        log(ctx)?;
        Ok(NodeOutput::new(vec![Value::Int(
            inputs.int("value")?.into(),
        )]))
    }
}

struct Add;
impl Node for Add {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Add")
            .category("math")
            .input(InputSpec::required("a", "INT"))
            .input(InputSpec::required("b", "INT"))
            .output(OutputSpec::new("INT"))
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        log(ctx)?;
        let sum = inputs.wide_int("a")? + inputs.wide_int("b")?;
        Ok(NodeOutput::new(vec![Value::Int(sum)]))
    }
}

struct Scale;
impl Node for Scale {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Scale")
            .input(InputSpec::required("x", "INT"))
            .input(InputSpec::required(
                "factor",
                FloatInput::new(1.0, 0.0, 10.0).step(0.5),
            ))
            .output(OutputSpec::new("FLOAT"))
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        log(ctx)?;
        Ok(NodeOutput::new(vec![Value::Float(
            inputs.float("x")? * inputs.float("factor")?,
        )]))
    }
}

/// Formats a number (INT or FLOAT socket) into a string.
struct Format;
impl Node for Format {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Format")
            .input(InputSpec::required("value", "INT,FLOAT"))
            .input(InputSpec::optional("prefix", StringInput::new("")))
            .input(InputSpec::optional("loud", BooleanInput::new(false)))
            .output(OutputSpec::new("STRING"))
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        log(ctx)?;
        let value = match inputs.value("value")? {
            Value::Int(v) => v.to_string(),
            Value::Float(v) => v.to_string(),
            other => other.kind_name().to_owned(),
        };
        let mut text = format!("{}{}", inputs.opt_string("prefix")?.unwrap_or(""), value);
        if inputs.opt_bool("loud")?.unwrap_or(false) {
            text.push('!');
        }
        Ok(NodeOutput::new(vec![Value::String(text)]))
    }
}

/// The output node: shows a string.
struct Show;
impl Node for Show {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Show")
            .display_name("Show Text")
            .input(InputSpec::required("text", StringInput::new("")).force_input())
            .input(InputSpec::hidden("prompt", HiddenKind::Prompt))
            .input(InputSpec::hidden("unique_id", HiddenKind::UniqueId))
            .output_node()
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        log(ctx)?;
        let text = inputs.string("text")?;
        let id = inputs.string("unique_id")?;
        Ok(NodeOutput::ui(json!({"text": [text], "id": [id]})))
    }
}

/// An output node that shows an INT directly.
struct ShowInt;
impl Node for ShowInt {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("ShowInt")
            .input(InputSpec::required("value", "INT"))
            .output_node()
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        log(ctx)?;
        Ok(NodeOutput::ui(
            json!({"value": [inputs.wide_int("value")?.to_string()]}),
        ))
    }
}

struct Seed;
impl Node for Seed {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Seed")
            .input(InputSpec::required(
                "seed",
                IntInput::new(0, 0, u64::MAX as i128).control_after_generate(),
            ))
            .output(OutputSpec::new("INT"))
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        log(ctx)?;
        Ok(NodeOutput::new(vec![Value::Int(
            inputs.uint("seed")?.into(),
        )]))
    }
}

struct Pick;
impl Node for Pick {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Pick")
            .input(InputSpec::required(
                "mode",
                ComboInput::new(["first", "second"]).default("first"),
            ))
            .input(InputSpec::optional("file", ComboInput::dynamic("files")))
            .output(OutputSpec::new("INT"))
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        log(ctx)?;
        let picked = if inputs.string("mode")? == "first" {
            1
        } else {
            2
        };
        Ok(NodeOutput::new(vec![Value::Int(picked)]))
    }
}

/// Always re-runs (IS_CHANGED = NaN).
struct Random;
impl Node for Random {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Random")
            .change_policy(ChangePolicy::Always)
            .output(OutputSpec::new("INT"))
    }
    fn execute(
        &self,
        _inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = log(ctx)?;
        let mut counter = services.counter.lock().unwrap();
        *counter += 1;
        Ok(NodeOutput::new(vec![Value::Int(*counter)]))
    }
}

/// Re-runs when its "file" hash changes.
struct FileHash;
impl Node for FileHash {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("FileHash")
            .change_policy(ChangePolicy::Fingerprint)
            .input(InputSpec::required("name", StringInput::new("a.txt")))
            .output(OutputSpec::new("INT"))
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        log(ctx)?;
        Ok(NodeOutput::new(vec![Value::Int(
            inputs.string("name")?.len() as i128,
        )]))
    }
    fn fingerprint_with_services(
        &self,
        inputs: &NodeInputs,
        services: &(dyn Any + Send + Sync),
    ) -> Option<String> {
        let services = services.downcast_ref::<TestServices>()?;
        let name = inputs.string("name").ok()?;
        services.hashes.lock().unwrap().get(name).cloned()
    }
}

struct Fail;
impl Node for Fail {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Fail")
            .input(InputSpec::required("x", "INT"))
            .output(OutputSpec::new("INT"))
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        log(ctx)?;
        let x = inputs.int("x")?;
        Err(NodeError::failed(
            "ValueError",
            format!("cannot handle {x}"),
        ))
    }
}

/// Reports progress for `steps` steps; interrupts itself at step `stop_at` when set.
struct Slow;
impl Node for Slow {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("Slow")
            .input(InputSpec::required("x", "INT"))
            .input(InputSpec::required("steps", IntInput::new(3, 1, 100)))
            .input(InputSpec::optional("stop_at", IntInput::new(0, 0, 100)))
            .output(OutputSpec::new("INT"))
    }
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = log(ctx)?;
        let steps = inputs.uint("steps")?;
        let stop_at = inputs.opt_uint("stop_at")?.unwrap_or(0);
        let flag = services.interrupt.lock().unwrap().clone();
        for step in 1..=steps {
            if step == stop_at {
                if let Some(flag) = &flag {
                    flag.interrupt();
                }
            }
            ctx.check_interrupted()?;
            ctx.progress(step, steps, None);
        }
        Ok(NodeOutput::new(vec![Value::Int(inputs.wide_int("x")?)]))
    }
}

/// Every test node, registered once.
pub(crate) fn registry() -> NodeRegistry {
    let mut registry = NodeRegistry::new();
    registry.register(Constant).unwrap();
    registry.register(Add).unwrap();
    registry.register(Scale).unwrap();
    registry.register(Format).unwrap();
    registry.register(Show).unwrap();
    registry.register(ShowInt).unwrap();
    registry.register(Seed).unwrap();
    registry.register(Pick).unwrap();
    registry.register(Random).unwrap();
    registry.register(FileHash).unwrap();
    registry.register(Fail).unwrap();
    registry.register(Slow).unwrap();
    registry
}

/// Dynamic combo lists for tests: `files` has three entries, `many` has 25.
pub(crate) fn folders(key: &str) -> Vec<String> {
    match key {
        "files" => vec!["a.png".into(), "b.png".into(), "sub/c.png".into()],
        "many" => (0..25).map(|i| format!("f{i}")).collect(),
        _ => Vec::new(),
    }
}
