//! Python's `str()`/`repr()` of JSON values and floats, and Python's `int()`/`float()`/
//! `str()`/`bool()` conversions — ComfyUI's validation messages and literal coercion are
//! written in those terms, and clients compare the texts.

use serde_json::Value as Json;

/// Python `str(x)` of a JSON value as Python's `json` module would have loaded it.
pub(crate) fn py_str(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        other => py_repr(other),
    }
}

/// Python `repr(x)`.
pub(crate) fn py_repr(value: &Json) -> String {
    match value {
        Json::Null => "None".to_owned(),
        Json::Bool(true) => "True".to_owned(),
        Json::Bool(false) => "False".to_owned(),
        Json::Number(number) => {
            if let Some(int) = number.as_i64() {
                int.to_string()
            } else if let Some(int) = number.as_u64() {
                int.to_string()
            } else {
                py_float(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(text) => py_repr_str(text),
        Json::Array(items) => {
            let items: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Json::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(key, value)| format!("{}: {}", py_repr_str(key), py_repr(value)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// Python `repr(s)` of a string: single quotes unless the text holds a single quote and no
/// double quote.
pub(crate) fn py_repr_str(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python `repr(f)` of a float: shortest round-trip digits, decimal notation for exponents
/// in `-4..16`, else `1e-05` / `1.5e+16` style.
pub(crate) fn py_float(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        }
        .to_owned();
    }
    // Rust's `{:e}` prints the shortest round-trip digits: "-1.2345e-5".
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat(point.unsigned_abs() as usize), digits)
        } else {
            let point = point as usize;
            if digits.len() <= point {
                format!("{}{}.0", digits, "0".repeat(point - digits.len()))
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            }
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let mantissa = if rest.is_empty() {
            first.to_owned()
        } else {
            format!("{first}.{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.unsigned_abs())
    }
}

/// Python's name of a JSON value's type, as `int()` error messages print it.
fn py_type_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "NoneType",
        Json::Bool(_) => "bool",
        Json::Number(number) if number.is_f64() => "float",
        Json::Number(_) => "int",
        Json::String(_) => "str",
        Json::Array(_) => "list",
        Json::Object(_) => "dict",
    }
}

/// Python `int(x)`; the error is Python's message.
pub(crate) fn py_int(value: &Json) -> Result<i128, String> {
    match value {
        Json::Bool(flag) => Ok(i128::from(*flag)),
        Json::Number(number) => {
            if let Some(int) = number.as_i64() {
                Ok(i128::from(int))
            } else if let Some(int) = number.as_u64() {
                Ok(i128::from(int))
            } else {
                float_to_int(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(text) => parse_py_int(text).ok_or_else(|| {
            format!(
                "invalid literal for int() with base 10: {}",
                py_repr_str(text)
            )
        }),
        other => Err(format!(
            "int() argument must be a string, a bytes-like object or a real number, not '{}'",
            py_type_name(other)
        )),
    }
}

fn float_to_int(value: f64) -> Result<i128, String> {
    if value.is_nan() {
        Err("cannot convert float NaN to integer".to_owned())
    } else if value.is_infinite() {
        Err("cannot convert float infinity to integer".to_owned())
    } else if value.abs() >= 1.7e38 {
        Err(format!("integer {} out of range", py_float(value)))
    } else {
        // Truncation toward zero is Python's int(float); the range was checked above.
        Ok(value.trunc() as i128)
    }
}

/// Python's `int(str)` grammar: optional whitespace and sign, digits with single underscores
/// between them.
fn parse_py_int(text: &str) -> Option<i128> {
    let trimmed = text.trim();
    let (negative, digits) = match trimmed.as_bytes().first()? {
        b'-' => (true, &trimmed[1..]),
        b'+' => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let cleaned: String = digits.chars().filter(|c| *c != '_').collect();
    let magnitude: i128 = cleaned.parse().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Python `float(x)`; the error is Python's message.
pub(crate) fn py_float_of(value: &Json) -> Result<f64, String> {
    match value {
        Json::Bool(flag) => Ok(if *flag { 1.0 } else { 0.0 }),
        Json::Number(number) => Ok(number.as_f64().unwrap_or(f64::NAN)),
        Json::String(text) => parse_py_float(text)
            .ok_or_else(|| format!("could not convert string to float: {}", py_repr_str(text))),
        other => Err(format!(
            "float() argument must be a string or a real number, not '{}'",
            py_type_name(other)
        )),
    }
}

fn parse_py_float(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.contains("__") || trimmed.starts_with('_') {
        return None;
    }
    let cleaned: String = trimmed.chars().filter(|c| *c != '_').collect();
    let lower = cleaned.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    // Rust also accepts "infinity"/"inf"/"nan" case-insensitively, as Python does; anything
    // else must look like a decimal number.
    if !matches!(unsigned, "inf" | "infinity" | "nan")
        && !unsigned
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))
    {
        return None;
    }
    lower.parse::<f64>().ok()
}

/// Python `bool(x)` (truthiness).
pub(crate) fn py_bool(value: &Json) -> bool {
    match value {
        Json::Null => false,
        Json::Bool(flag) => *flag,
        Json::Number(number) => number.as_f64().is_some_and(|v| v != 0.0),
        Json::String(text) => !text.is_empty(),
        Json::Array(items) => !items.is_empty(),
        Json::Object(map) => !map.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_like_python_repr() {
        assert_eq!(py_float(100.0), "100.0");
        assert_eq!(py_float(0.01), "0.01");
        assert_eq!(py_float(0.0001), "0.0001");
        assert_eq!(py_float(0.00001), "1e-05");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(1.5e16), "1.5e+16");
        assert_eq!(py_float(123456.789), "123456.789");
        assert_eq!(py_float(-2.5), "-2.5");
        assert_eq!(py_float(1e15), "1000000000000000.0");
    }

    #[test]
    fn reprs_match_python() {
        assert_eq!(py_repr(&json!(["euler", "it's"])), "['euler', \"it's\"]");
        assert_eq!(
            py_repr(&json!({"a": [1, 2.0, null, true]})),
            "{'a': [1, 2.0, None, True]}"
        );
        assert_eq!(py_str(&json!("plain")), "plain");
        assert_eq!(py_repr_str("a\nb\\"), "'a\\nb\\\\'");
    }

    #[test]
    fn conversions_follow_python() {
        assert_eq!(py_int(&json!(" 12 ")), Ok(12));
        assert_eq!(py_int(&json!("1_000")), Ok(1000));
        assert_eq!(py_int(&json!(3.9)), Ok(3));
        assert_eq!(py_int(&json!(-3.9)), Ok(-3));
        assert_eq!(py_int(&json!(true)), Ok(1));
        assert_eq!(
            py_int(&json!("3.5")),
            Err("invalid literal for int() with base 10: '3.5'".to_owned())
        );
        assert_eq!(
            py_int(&json!(null)),
            Err("int() argument must be a string, a bytes-like object or a real number, not 'NoneType'".to_owned())
        );
        assert_eq!(py_float_of(&json!("1e3")), Ok(1000.0));
        assert!(py_float_of(&json!("nan")).unwrap().is_nan());
        assert_eq!(
            py_float_of(&json!("abc")),
            Err("could not convert string to float: 'abc'".to_owned())
        );
        assert!(py_bool(&json!("false")));
        assert!(!py_bool(&json!(0)));
        assert!(!py_bool(&json!("")));
    }
}
