//! [`Value`]: what flows along links and literal inputs between nodes, and [`TypedObject`], the
//! type-erased carrier for engine objects (`MODEL`, `LATENT`, `IMAGE`, ...).

use std::any::{type_name, Any};
use std::fmt;
use std::sync::Arc;

use crate::error::NodeError;

/// A value passed into or out of a node.
///
/// Widget literals arrive as `Int`/`Float`/`String`/`Bool` (after validation coerced them to
/// the input's declared type); combos arrive as `String`. Everything a node produces for other
/// nodes (models, latents, images, conditioning) is an [`TypedObject`].
#[derive(Clone, Debug)]
pub enum Value {
    /// An integer. Wide enough for ComfyUI seeds (`0..=u64::MAX`) and negative values.
    Int(i128),
    /// A float.
    Float(f64),
    /// A string (also every combo value).
    String(String),
    /// A boolean.
    Bool(bool),
    /// A list: a literal `{"__value__": [...]}` input, or an output declared `is_list`.
    List(Vec<Value>),
    /// Any other JSON literal (objects, null) and the hidden `PROMPT`/`EXTRA_PNGINFO` inputs.
    Json(serde_json::Value),
    /// An engine object, tagged with its ComfyUI type name.
    Object(TypedObject),
}

impl Value {
    /// A short name of the value's kind for error messages (`INT`, `FLOAT`, the object type).
    pub fn kind_name(&self) -> &str {
        match self {
            Value::Int(_) => "INT",
            Value::Float(_) => "FLOAT",
            Value::String(_) => "STRING",
            Value::Bool(_) => "BOOLEAN",
            Value::List(_) => "LIST",
            Value::Json(_) => "JSON",
            Value::Object(object) => object.type_name(),
        }
    }

    /// Wraps `value` as an object of ComfyUI type `type_name` (`"MODEL"`, `"LATENT"`, ...).
    pub fn object<T: Any + Send + Sync>(type_name: impl Into<String>, value: T) -> Self {
        Value::Object(TypedObject::new(type_name, value))
    }

    /// The object inside as `T`, or an error naming `input` when this is not a `T`.
    pub fn downcast<T: Any + Send + Sync>(&self, input: &str) -> Result<Arc<T>, NodeError> {
        match self {
            Value::Object(object) => object.downcast::<T>().ok_or_else(|| NodeError::InputType {
                input: input.to_owned(),
                expected: type_name::<T>().to_owned(),
                found: object.type_name().to_owned(),
            }),
            other => Err(NodeError::InputType {
                input: input.to_owned(),
                expected: type_name::<T>().to_owned(),
                found: other.kind_name().to_owned(),
            }),
        }
    }

    /// A JSON rendering for signatures, error reports (`current_inputs`) and hidden inputs;
    /// objects render as `"<TYPE object>"`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Int(v) => int_to_json(*v),
            Value::Float(v) => serde_json::Number::from_f64(*v)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(v.to_string())),
            Value::String(v) => serde_json::Value::String(v.clone()),
            Value::Bool(v) => serde_json::Value::Bool(*v),
            Value::List(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Json(v) => v.clone(),
            Value::Object(object) => {
                serde_json::Value::String(format!("<{} object>", object.type_name()))
            }
        }
    }
}

/// JSON for an integer: exact where JSON numbers can hold it, else a decimal string.
pub(crate) fn int_to_json(v: i128) -> serde_json::Value {
    if let Ok(small) = i64::try_from(v) {
        serde_json::Value::from(small)
    } else if let Ok(big) = u64::try_from(v) {
        serde_json::Value::from(big)
    } else {
        serde_json::Value::String(v.to_string())
    }
}

/// A type-erased engine object shared between nodes, tagged with its ComfyUI type name.
///
/// Cloning is cheap (an `Arc`), and the cache hands the same object to every consumer, so
/// nodes treat objects as immutable and build new ones (ComfyUI's ModelPatcher clones).
#[derive(Clone)]
pub struct TypedObject {
    type_name: Arc<str>,
    value: Arc<dyn Any + Send + Sync>,
}

impl TypedObject {
    /// Wraps `value` under the ComfyUI type name `type_name` (`"MODEL"`, `"IMAGE"`, ...).
    pub fn new<T: Any + Send + Sync>(type_name: impl Into<String>, value: T) -> Self {
        Self::from_arc(type_name, Arc::new(value))
    }

    /// Wraps an already shared value.
    pub fn from_arc<T: Any + Send + Sync>(type_name: impl Into<String>, value: Arc<T>) -> Self {
        let type_name: String = type_name.into();
        TypedObject {
            type_name: Arc::from(type_name),
            value,
        }
    }

    /// The ComfyUI type name this object was tagged with.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The object as `T`, if it is one.
    pub fn downcast<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        Arc::clone(&self.value).downcast::<T>().ok()
    }
}

impl fmt::Debug for TypedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypedObject({})", self.type_name)
    }
}

/// Everything a node returns.
#[derive(Clone, Debug, Default)]
pub struct NodeOutput {
    /// One value per declared output, in order.
    pub values: Vec<Value>,
    /// What the `executed` event and the history's `outputs` report for this node, e.g.
    /// `{"images": [{"filename": ..., "subfolder": ..., "type": "output"}]}`.
    pub ui: Option<serde_json::Value>,
}

impl NodeOutput {
    /// Output values without a UI part.
    pub fn new(values: Vec<Value>) -> Self {
        NodeOutput { values, ui: None }
    }

    /// Only a UI part (output nodes such as SaveImage have no output values).
    pub fn ui(ui: serde_json::Value) -> Self {
        NodeOutput {
            values: Vec::new(),
            ui: Some(ui),
        }
    }

    /// Adds a UI part.
    pub fn with_ui(mut self, ui: serde_json::Value) -> Self {
        self.ui = Some(ui);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downcast_names_the_input_on_mismatch() {
        let value = Value::object("MODEL", 7_u32);
        assert_eq!(*value.downcast::<u32>("model").unwrap(), 7);
        let err = value.downcast::<String>("model").unwrap_err();
        assert!(
            matches!(err, NodeError::InputType { ref input, ref found, .. }
            if input == "model" && found == "MODEL")
        );
        let err = Value::Int(3).downcast::<u32>("steps").unwrap_err();
        assert!(matches!(err, NodeError::InputType { ref found, .. } if found == "INT"));
    }

    #[test]
    fn wide_ints_render_exactly() {
        assert_eq!(
            Value::Int(u64::MAX as i128).to_json(),
            serde_json::json!(u64::MAX)
        );
        assert_eq!(Value::Int(-5).to_json(), serde_json::json!(-5));
        assert_eq!(
            Value::object("VAE", ()).to_json(),
            serde_json::json!("<VAE object>")
        );
    }
}
