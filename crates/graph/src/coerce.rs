//! Literal inputs converted to their declared type, as ComfyUI's validation does with
//! `int()`/`float()`/`str()`/`bool()`, and literal JSON turned into [`Value`]s for execution.

use serde_json::Value as Json;

use crate::pyfmt::{py_bool, py_float_of, py_int, py_str};
use crate::schema::InputType;
use crate::value::{int_to_json, Value};

/// The literal converted to the input's declared type (widgets only; combos and sockets are
/// left as given). The error is Python's conversion message.
pub(crate) fn coerce_literal(ty: &InputType, value: &Json) -> Result<Json, String> {
    match ty {
        InputType::Int(_) => py_int(value).map(int_to_json),
        InputType::Float(_) => py_float_of(value).map(float_to_json),
        InputType::String(_) => Ok(Json::String(py_str(value))),
        InputType::Boolean(_) => Ok(Json::Bool(py_bool(value))),
        InputType::Combo(_) | InputType::Link(_) => Ok(value.clone()),
    }
}

/// JSON for a float; NaN and infinities (which `float("nan")` lets through) as Python's text.
pub(crate) fn float_to_json(value: f64) -> Json {
    serde_json::Number::from_f64(value)
        .map(Json::Number)
        .unwrap_or_else(|| Json::String(crate::pyfmt::py_float(value)))
}

/// The value a node receives for a literal input of type `ty`.
pub(crate) fn literal_to_value(ty: Option<&InputType>, value: &Json) -> Value {
    match ty {
        Some(InputType::Int(_)) => py_int(value).map_or_else(|_| json_to_value(value), Value::Int),
        Some(InputType::Float(_)) => {
            py_float_of(value).map_or_else(|_| json_to_value(value), Value::Float)
        }
        Some(InputType::String(_)) => Value::String(py_str(value)),
        Some(InputType::Boolean(_)) => Value::Bool(py_bool(value)),
        Some(InputType::Combo(_)) | Some(InputType::Link(_)) | None => json_to_value(value),
    }
}

/// A JSON literal as a [`Value`] without a declared type.
pub(crate) fn json_to_value(value: &Json) -> Value {
    match value {
        Json::Bool(flag) => Value::Bool(*flag),
        Json::Number(number) => {
            if let Some(int) = number.as_i64() {
                Value::Int(i128::from(int))
            } else if let Some(int) = number.as_u64() {
                Value::Int(i128::from(int))
            } else {
                Value::Float(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(text) => Value::String(text.clone()),
        Json::Array(items) => Value::List(items.iter().map(json_to_value).collect()),
        Json::Null | Json::Object(_) => Value::Json(value.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{BooleanInput, FloatInput, IntInput, StringInput};
    use serde_json::json;

    #[test]
    fn widgets_are_coerced_like_python() {
        let int = InputType::from(IntInput::unbounded());
        assert_eq!(coerce_literal(&int, &json!("42")), Ok(json!(42)));
        assert_eq!(coerce_literal(&int, &json!(7.9)), Ok(json!(7)));
        assert!(coerce_literal(&int, &json!("x")).is_err());
        let float = InputType::from(FloatInput::new(1.0, 0.0, 2.0));
        assert_eq!(coerce_literal(&float, &json!(1)), Ok(json!(1.0)));
        assert_eq!(coerce_literal(&float, &json!("nan")), Ok(json!("nan")));
        let string = InputType::from(StringInput::new(""));
        assert_eq!(coerce_literal(&string, &json!(3)), Ok(json!("3")));
        assert_eq!(coerce_literal(&string, &json!(true)), Ok(json!("True")));
        let boolean = InputType::from(BooleanInput::new(false));
        assert_eq!(coerce_literal(&boolean, &json!("false")), Ok(json!(true)));
    }

    #[test]
    fn literal_values_follow_the_declared_type() {
        let float = InputType::from(FloatInput::new(1.0, 0.0, 2.0));
        assert!(
            matches!(literal_to_value(Some(&float), &json!("nan")), Value::Float(v) if v.is_nan())
        );
        assert!(
            matches!(literal_to_value(None, &json!([1, "a"])), Value::List(ref items) if items.len() == 2)
        );
        assert!(matches!(
            literal_to_value(None, &json!(null)),
            Value::Json(Json::Null)
        ));
    }
}
