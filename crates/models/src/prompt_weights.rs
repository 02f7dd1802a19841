//! ComfyUI's prompt weighting syntax (`comfy/sd1_clip.py`: `escape_important`,
//! `parse_parentheses`, `token_weights`, `unescape_important`): `(text)` multiplies the weight by
//! 1.1 per level, `(text:1.3)` sets it, `\(` and `\)` are literal parentheses. Square brackets
//! mean nothing (ComfyUI has no `[text]` down-weighting; A1111 does).

use crate::error::{ModelError, Result};

/// Nesting deeper than this is refused (ComfyUI's recursive parser fails near Python's recursion
/// limit of 1000, and parsing is quadratic in the depth).
pub const MAX_PROMPT_NESTING: usize = 512;

/// Placeholders for escaped parentheses while the text is parsed (ComfyUI's own choice).
const ESCAPED_CLOSE: &str = "\0\u{1}";
const ESCAPED_OPEN: &str = "\0\u{2}";

/// `text` split into runs of equal weight, in order, escapes resolved: `a (b:1.5) c` →
/// `[("a ", 1.0), ("b", 1.5), (" c", 1.0)]`. Weights are f64 like Python floats, so `((b))` is
/// 1.1 × 1.1 = 1.2100000000000002 exactly as ComfyUI computes it.
pub fn parse_prompt_weights(text: &str) -> Result<Vec<(String, f64)>> {
    let escaped = text
        .replace("\\)", ESCAPED_CLOSE)
        .replace("\\(", ESCAPED_OPEN);
    Ok(token_weights(&escaped)?
        .into_iter()
        .map(|(segment, weight)| {
            let plain = segment
                .replace(ESCAPED_CLOSE, ")")
                .replace(ESCAPED_OPEN, "(");
            (plain, weight)
        })
        .collect())
}

/// ComfyUI `parse_parentheses`: top-level `(...)` groups and the text between them. Unbalanced
/// parentheses are kept as text exactly as ComfyUI keeps them.
fn parse_parentheses(text: &str) -> Vec<String> {
    let mut result = Vec::new();
    let mut current = String::new();
    let mut nesting: i64 = 0;
    for c in text.chars() {
        match c {
            '(' => {
                if nesting == 0 {
                    if !current.is_empty() {
                        result.push(std::mem::take(&mut current));
                    }
                    current.push('(');
                } else {
                    current.push(c);
                }
                nesting += 1;
            }
            ')' => {
                nesting -= 1;
                if nesting == 0 {
                    current.push(')');
                    result.push(std::mem::take(&mut current));
                } else {
                    current.push(c);
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        result.push(current);
    }
    result
}

/// One step of ComfyUI's recursive `token_weights`, run on an explicit stack so deep nesting
/// cannot overflow ours.
enum Work {
    Parse {
        text: String,
        weight: f64,
        depth: usize,
    },
    Emit {
        text: String,
        weight: f64,
    },
}

/// ComfyUI `token_weights(text, 1.0)`.
fn token_weights(text: &str) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    let mut stack = vec![Work::Parse {
        text: text.to_string(),
        weight: 1.0,
        depth: 0,
    }];
    while let Some(work) = stack.pop() {
        match work {
            Work::Emit { text, weight } => out.push((text, weight)),
            Work::Parse {
                text,
                weight: current,
                depth,
            } => {
                if depth > MAX_PROMPT_NESTING {
                    return Err(ModelError::Input {
                        model: "clip tokenizer",
                        input: "text",
                        problem: format!(
                            "parentheses nest deeper than {MAX_PROMPT_NESTING} levels"
                        ),
                    });
                }
                let mut items = Vec::new();
                for item in parse_parentheses(&text) {
                    if item.len() >= 2 && item.starts_with('(') && item.ends_with(')') {
                        let inner = &item[1..item.len() - 1];
                        let mut weight = current * 1.1;
                        let mut inner = inner.to_string();
                        if let Some(colon) = inner.rfind(':').filter(|&at| at > 0) {
                            if let Some(explicit) = python_float(&inner[colon + 1..]) {
                                weight = explicit;
                                inner.truncate(colon);
                            }
                        }
                        items.push(Work::Parse {
                            text: inner,
                            weight,
                            depth: depth + 1,
                        });
                    } else {
                        items.push(Work::Emit {
                            text: item,
                            weight: current,
                        });
                    }
                }
                stack.extend(items.into_iter().rev());
            }
        }
    }
    Ok(out)
}

/// Python's `float(text)` for the forms prompts use: surrounding whitespace, sign, digits with
/// single underscores between them, fraction, exponent, `inf`/`infinity`/`nan`.
fn python_float(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    let chars: Vec<char> = trimmed.chars().collect();
    let mut cleaned = String::with_capacity(trimmed.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            let between_digits = i > 0
                && chars[i - 1].is_ascii_digit()
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
            if !between_digits {
                return None;
            }
        } else {
            cleaned.push(c);
        }
    }
    cleaned.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<(String, f64)> {
        parse_prompt_weights(text).unwrap()
    }

    fn pair(text: &str, weight: f64) -> (String, f64) {
        (text.to_string(), weight)
    }

    #[test]
    fn plain_text_is_one_run() {
        assert_eq!(parsed("a photo of a cat"), [pair("a photo of a cat", 1.0)]);
        assert_eq!(parsed(""), Vec::<(String, f64)>::new());
    }

    #[test]
    fn nesting_multiplies_and_explicit_weights_replace() {
        assert_eq!(
            parsed("a (b) ((c)) (d:1.5)"),
            [
                pair("a ", 1.0),
                pair("b", 1.1),
                pair(" ", 1.0),
                pair("c", 1.1 * 1.1),
                pair(" ", 1.0),
                pair("d", 1.5),
            ]
        );
        // The explicit weight replaces the outer 1.1 rather than multiplying it.
        assert_eq!(parsed("((x:0.5))"), [pair("x", 0.5)]);
        assert_eq!(
            parsed("(a (b:2) c)"),
            [pair("a ", 1.1), pair("b", 2.0), pair(" c", 1.1)]
        );
    }

    #[test]
    fn brackets_are_plain_text() {
        assert_eq!(parsed("[low] (hi)"), [pair("[low] ", 1.0), pair("hi", 1.1)]);
    }

    #[test]
    fn escapes_are_literal_parentheses() {
        assert_eq!(parsed(r"a \(b\) c"), [pair("a (b) c", 1.0)]);
        assert_eq!(parsed(r"(a \(b\):1.2)"), [pair("a (b)", 1.2)]);
    }

    #[test]
    fn colons_that_are_not_weights_stay_text() {
        assert_eq!(parsed("(a:b)"), [pair("a:b", 1.1)]);
        assert_eq!(parsed("(:1.5)"), [pair(":1.5", 1.1)]);
        assert_eq!(parsed("(a: 1.5 )"), [pair("a", 1.5)]);
        assert_eq!(parsed("(a:1_0)"), [pair("a", 10.0)]);
        assert_eq!(parsed("(a:1__0)"), [pair("a:1__0", 1.1)]);
        assert_eq!(parsed("(a:b:2)"), [pair("a:b", 2.0)]);
    }

    #[test]
    fn unbalanced_parentheses_follow_comfyui() {
        assert_eq!(parsed("a (b"), [pair("a ", 1.0), pair("(b", 1.0)]);
        assert_eq!(parsed("a) b"), [pair("a) b", 1.0)]);
        assert_eq!(parsed("()"), Vec::<(String, f64)>::new());
        assert_eq!(parsed("a ((b) c"), [pair("a ", 1.0), pair("((b) c", 1.0)]);
        assert_eq!(parsed("x)(y"), [pair("x)(y", 1.0)]);
        assert_eq!(
            parsed("((a)(b:1.3))c)d("),
            [pair("a", 1.1 * 1.1), pair("b", 1.3), pair("c)d(", 1.0)]
        );
    }

    #[test]
    fn absurd_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}x{}", "(".repeat(5000), ")".repeat(5000));
        assert!(parse_prompt_weights(&deep).is_err());
        let fine = format!("{}x{}", "(".repeat(10), ")".repeat(10));
        let got = parsed(&fine);
        assert_eq!(got.len(), 1);
        assert!((got[0].1 - 1.1f64.powi(10)).abs() < 1e-12);
    }
}
