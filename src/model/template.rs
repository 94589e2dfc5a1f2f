//! A rule's own `summary:` template: text with `{record.path}` placeholders
//! (`{userIdentity.arn} deleted bucket {requestParameters.bucketName}`), checked when rules load
//! and filled from each record an alert is raised on. `{{` and `}}` stand for braces.

use serde_json::Value;

/// A checked summary template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A dotted path into the record.
    Field(Vec<String>),
}

impl SummaryTemplate {
    /// Checks a template: braces balanced, each placeholder a dotted path of non-empty keys.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut path = String::new();
                    let closed = loop {
                        match chars.next() {
                            Some((_, '}')) => break true,
                            Some((_, '{')) | None => break false,
                            Some((_, c)) => path.push(c),
                        }
                    };
                    if !closed {
                        return Err(format!(
                            "the placeholder opened at character {at} is not closed with '}}' \
                             (write '{{{{' for a literal brace)"
                        ));
                    }
                    let keys: Vec<String> = path.trim().split('.').map(str::to_owned).collect();
                    if keys
                        .iter()
                        .any(|k| k.is_empty() || k.chars().any(char::is_whitespace))
                    {
                        return Err(format!(
                            "{{{path}}} is not a record path: write dotted keys such as \
                             {{requestParameters.bucketName}}"
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(keys));
                }
                '}' => {
                    return Err(format!(
                        "a lone '}}' at character {at} (write '}}}}' for a literal brace)"
                    ))
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        if parts.is_empty() {
            return Err("the summary is empty".into());
        }
        Ok(SummaryTemplate { parts })
    }

    /// The template filled from a record: strings as they are, numbers and booleans printed,
    /// arrays and objects as compact JSON, and `?` where the record has nothing.
    pub fn render(&self, record: &Value) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(keys) => {
                    let value = keys.iter().try_fold(record, |v, k| v.get(k));
                    match value {
                        Some(Value::String(s)) => out.push_str(s),
                        Some(Value::Null) | None => out.push('?'),
                        Some(other) => out.push_str(&other.to_string()),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_fill_from_the_record() {
        let t = SummaryTemplate::parse(
            "{userIdentity.arn} deleted bucket {requestParameters.bucketName} ({{{errorCode}}})",
        )
        .unwrap();
        let record = json!({"userIdentity": {"arn": "arn:aws:iam::1:user/a"},
                            "requestParameters": {"bucketName": "logs"}});
        assert_eq!(
            t.render(&record),
            "arn:aws:iam::1:user/a deleted bucket logs ({?})"
        );
        let t = SummaryTemplate::parse("{readOnly} {resources}").unwrap();
        assert_eq!(
            t.render(&json!({"readOnly": false, "resources": [{"a": 1}]})),
            "false [{\"a\":1}]"
        );
    }

    #[test]
    fn bad_templates_are_refused_with_why() {
        for (bad, why) in [
            ("{userIdentity.arn", "not closed"),
            ("a } b", "lone '}'"),
            ("{}", "not a record path"),
            ("{a..b}", "not a record path"),
            ("{a b}", "not a record path"),
            ("", "empty"),
        ] {
            let e = SummaryTemplate::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
