//! How faults describe what they found: the kind of a JSON value ("a string", "an object") and
//! an error with its chain of causes on one line. Every error message in the crate words these
//! the same way.

use serde_json::Value;

/// "a string", "an object", …: what a JSON value is, in the words of JSON (logs, patterns).
pub(crate) fn json_kind(v: &Value) -> &'static str {
    kind(v, Words::Json)
}

/// "a string", "a mapping", …: what a value is, in the words of YAML (rule documents, which are
/// YAML to their authors).
pub(crate) fn yaml_kind(v: &Value) -> &'static str {
    kind(v, Words::Yaml)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Words {
    Json,
    Yaml,
}

fn kind(v: &Value, words: Words) -> &'static str {
    match (v, words) {
        (Value::Null, _) => "null",
        (Value::Bool(_), _) => "a boolean",
        (Value::Number(_), _) => "a number",
        (Value::String(_), _) => "a string",
        (Value::Array(_), Words::Json) => "an array",
        (Value::Array(_), Words::Yaml) => "a list",
        (Value::Object(_), Words::Json) => "an object",
        (Value::Object(_), Words::Yaml) => "a mapping",
    }
}

/// The error and its causes on one line, each cause once ("streaming error" says little; what
/// caused it does).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_in_both_vocabularies() {
        assert_eq!(json_kind(&json!([])), "an array");
        assert_eq!(yaml_kind(&json!([])), "a list");
        assert_eq!(json_kind(&json!({})), "an object");
        assert_eq!(yaml_kind(&json!({})), "a mapping");
        assert_eq!(yaml_kind(&json!(null)), "null");
    }

    #[test]
    fn causes_are_listed_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("streaming error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("connection reset"));
        assert_eq!(chain(&e), "streaming error: connection reset");
    }
}
