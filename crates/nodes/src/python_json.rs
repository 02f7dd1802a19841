//! [`python_json_dumps`]: JSON text exactly as Python's `json.dumps(value)` writes it with its
//! defaults — `", "` and `": "` separators, non-ASCII escaped as lowercase `\uXXXX` (surrogate
//! pairs above U+FFFF), floats in `repr` form — which is what ComfyUI puts in PNG text chunks.

use std::fmt::Write;

use serde_json::Value as Json;

/// `json.dumps(value)` with Python's default arguments. Object keys keep the value's order.
pub fn python_json_dumps(value: &Json) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Json) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Number(number) => write_number(out, number),
        Json::String(text) => write_string(out, text),
        Json::Array(items) => {
            out.push('[');
            for (at, item) in items.iter().enumerate() {
                if at > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Json::Object(map) => {
            out.push('{');
            for (at, (key, item)) in map.iter().enumerate() {
                if at > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, number: &serde_json::Number) {
    if let Some(int) = number.as_i64() {
        let _ = write!(out, "{int}");
    } else if let Some(int) = number.as_u64() {
        let _ = write!(out, "{int}");
    } else if let Some(float) = number.as_f64() {
        out.push_str(&python_float_repr(float));
    }
}

/// Python's `repr(float)` (also `json.dumps` of a float): the shortest round-trip digits, in
/// positional form when the decimal exponent is in `-4..16` (always with a fractional part),
/// otherwise as `d.ddde±XX`. Non-finite values are `NaN`/`Infinity`/`-Infinity` as `json.dumps`
/// writes them.
pub fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        }
        .to_owned();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
            out.push_str(&digits);
        } else {
            let point = point as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    }
    out
}

fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn separators_and_escapes_match_python() {
        // Expected strings are what CPython 3.12's json.dumps prints for the same values.
        let value: Json = serde_json::from_str(
            r#"{"b": [1, 2.5, null, true], "a": {"text": "caf\u00e9 \ud83d\ude00 \"q\" \\ \n\t\u0001\u007f"}, "e": {}, "l": []}"#,
        )
        .unwrap();
        assert_eq!(
            python_json_dumps(&value),
            r#"{"b": [1, 2.5, null, true], "a": {"text": "caf\u00e9 \ud83d\ude00 \"q\" \\ \n\t\u0001\u007f"}, "e": {}, "l": []}"#
        );
    }

    #[test]
    fn floats_use_python_repr() {
        for (value, python) in [
            (1.0, "1.0"),
            (8.0, "8.0"),
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456789012345.6, "123456789012345.6"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e22, "1.2345e+22"),
            (-2.5, "-2.5"),
            (0.30000000000000004, "0.30000000000000004"),
            (-0.0, "-0.0"),
            (1e300, "1e+300"),
        ] {
            assert_eq!(python_float_repr(value), python, "{value}");
        }
    }

    #[test]
    fn big_integers_stay_integers() {
        let value = json!({"seed": 18446744073709551615_u64, "n": -3});
        assert_eq!(
            python_json_dumps(&value),
            r#"{"seed": 18446744073709551615, "n": -3}"#
        );
    }
}
