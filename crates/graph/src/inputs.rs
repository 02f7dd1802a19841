//! [`NodeInputs`]: the resolved inputs handed to a node, with typed getters whose errors name
//! the input.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::NodeError;
use crate::value::Value;

/// A node's inputs by name.
///
/// Getters come in two flavours: `int("steps")` fails with [`NodeError::MissingInput`] when the
/// input is absent; `opt_int("steps")` returns `Ok(None)` instead. Both fail with
/// [`NodeError::InputType`] when the value has another kind.
#[derive(Clone, Debug, Default)]
pub struct NodeInputs {
    values: BTreeMap<String, Value>,
}

impl NodeInputs {
    /// No inputs.
    pub fn new() -> Self {
        NodeInputs::default()
    }

    /// Sets an input (used by the executor, and by node tests).
    pub fn insert(&mut self, name: impl Into<String>, value: Value) {
        self.values.insert(name.into(), value);
    }

    /// Sets an input, builder style.
    pub fn with(mut self, name: impl Into<String>, value: Value) -> Self {
        self.insert(name, value);
        self
    }

    /// The input's value, if given.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// Whether the input was given.
    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// All inputs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values
            .iter()
            .map(|(name, value)| (name.as_str(), value))
    }

    /// The input's value, or [`NodeError::MissingInput`].
    pub fn value(&self, name: &str) -> Result<&Value, NodeError> {
        self.get(name).ok_or_else(|| NodeError::MissingInput {
            input: name.to_owned(),
        })
    }

    /// An `INT` input that fits `i64`.
    pub fn int(&self, name: &str) -> Result<i64, NodeError> {
        let wide = self.wide_int(name)?;
        i64::try_from(wide).map_err(|_| mismatch(name, "INT within i64", &Value::Int(wide)))
    }

    /// An `INT` input in `0..=u64::MAX` (seeds).
    pub fn uint(&self, name: &str) -> Result<u64, NodeError> {
        let wide = self.wide_int(name)?;
        u64::try_from(wide).map_err(|_| mismatch(name, "INT within u64", &Value::Int(wide)))
    }

    /// An `INT` input at full width.
    pub fn wide_int(&self, name: &str) -> Result<i128, NodeError> {
        match self.value(name)? {
            Value::Int(v) => Ok(*v),
            other => Err(mismatch(name, "INT", other)),
        }
    }

    /// A `FLOAT` input (an `INT` is widened).
    pub fn float(&self, name: &str) -> Result<f64, NodeError> {
        match self.value(name)? {
            Value::Float(v) => Ok(*v),
            // Integers above 2^53 lose precision, as Python's float(int) does.
            Value::Int(v) => Ok(*v as f64),
            other => Err(mismatch(name, "FLOAT", other)),
        }
    }

    /// A `STRING` or combo input.
    pub fn string(&self, name: &str) -> Result<&str, NodeError> {
        match self.value(name)? {
            Value::String(v) => Ok(v),
            other => Err(mismatch(name, "STRING", other)),
        }
    }

    /// A `BOOLEAN` input.
    pub fn bool(&self, name: &str) -> Result<bool, NodeError> {
        match self.value(name)? {
            Value::Bool(v) => Ok(*v),
            other => Err(mismatch(name, "BOOLEAN", other)),
        }
    }

    /// A list input.
    pub fn list(&self, name: &str) -> Result<&[Value], NodeError> {
        match self.value(name)? {
            Value::List(items) => Ok(items),
            other => Err(mismatch(name, "LIST", other)),
        }
    }

    /// A JSON input (hidden `PROMPT`/`EXTRA_PNGINFO`, literal objects).
    pub fn json(&self, name: &str) -> Result<&serde_json::Value, NodeError> {
        match self.value(name)? {
            Value::Json(v) => Ok(v),
            other => Err(mismatch(name, "JSON", other)),
        }
    }

    /// An object input downcast to `T`.
    pub fn object<T: Any + Send + Sync>(&self, name: &str) -> Result<Arc<T>, NodeError> {
        self.value(name)?.downcast::<T>(name)
    }

    /// [`Self::int`] for an optional input.
    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, NodeError> {
        self.optional(name, Self::int)
    }

    /// [`Self::uint`] for an optional input.
    pub fn opt_uint(&self, name: &str) -> Result<Option<u64>, NodeError> {
        self.optional(name, Self::uint)
    }

    /// [`Self::float`] for an optional input.
    pub fn opt_float(&self, name: &str) -> Result<Option<f64>, NodeError> {
        self.optional(name, Self::float)
    }

    /// [`Self::string`] for an optional input.
    pub fn opt_string(&self, name: &str) -> Result<Option<&str>, NodeError> {
        if self.contains(name) {
            self.string(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// [`Self::bool`] for an optional input.
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, NodeError> {
        self.optional(name, Self::bool)
    }

    /// [`Self::object`] for an optional input.
    pub fn opt_object<T: Any + Send + Sync>(
        &self,
        name: &str,
    ) -> Result<Option<Arc<T>>, NodeError> {
        self.optional(name, Self::object::<T>)
    }

    fn optional<T>(
        &self,
        name: &str,
        get: impl Fn(&Self, &str) -> Result<T, NodeError>,
    ) -> Result<Option<T>, NodeError> {
        if self.contains(name) {
            get(self, name).map(Some)
        } else {
            Ok(None)
        }
    }
}

fn mismatch(name: &str, expected: &str, found: &Value) -> NodeError {
    NodeError::InputType {
        input: name.to_owned(),
        expected: expected.to_owned(),
        found: found.kind_name().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getters_convert_and_name_the_input() {
        let inputs = NodeInputs::new()
            .with("steps", Value::Int(20))
            .with("seed", Value::Int(u64::MAX as i128))
            .with("cfg", Value::Int(7))
            .with("text", Value::String("a cat".into()))
            .with("model", Value::object("MODEL", 5_u8));
        assert_eq!(inputs.int("steps").unwrap(), 20);
        assert_eq!(inputs.uint("seed").unwrap(), u64::MAX);
        assert!(
            matches!(inputs.int("seed"), Err(NodeError::InputType { ref input, .. }) if input == "seed")
        );
        assert_eq!(inputs.float("cfg").unwrap(), 7.0);
        assert_eq!(inputs.string("text").unwrap(), "a cat");
        assert_eq!(*inputs.object::<u8>("model").unwrap(), 5);
        assert!(
            matches!(inputs.string("missing"), Err(NodeError::MissingInput { ref input }) if input == "missing")
        );
        assert_eq!(inputs.opt_float("missing").unwrap(), None);
        assert!(inputs.opt_bool("text").is_err());
        assert!(inputs.uint("steps").is_ok());
        let negative = NodeInputs::new().with("x", Value::Int(-1));
        assert!(negative.uint("x").is_err());
    }
}
