//! Warnings when rules load: a rule that is valid but can never match a CloudTrail record — an
//! envelope `source` or `detail-type` CloudTrail never produces (a service's own EventBridge
//! event, say, which only the function sees, when EventBridge delivers it), or an
//! `eventSource` that is not an AWS service endpoint name. Not errors: the rule set still
//! loads, and every warning is listed at once. The built-in pack's rules for AWS Backup's own
//! events are meant for EventBridge delivery and are not warned about.

use std::fmt;

use crate::pattern::{detail_type_for, Form};

use super::schema::{written_as_text, RECORD_FIELDS};
use super::Rule;

/// Something about a rule that is allowed but almost certainly wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleWarning {
    pub origin: String,
    pub rule: String,
    /// The JSON path in the rule (`$.pattern.detail-type`).
    pub path: String,
    pub message: String,
}

impl fmt::Display for RuleWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: rule {:?} at {}: {}",
            self.origin, self.rule, self.path, self.message
        )
    }
}

/// CloudTrail's detail-types on EventBridge, by `eventType`.
const EVENT_TYPES: [&str; 5] = [
    "AwsApiCall",
    "AwsServiceEvent",
    "AwsConsoleSignIn",
    "AwsConsoleAction",
    "AwsCloudTrailInsight",
];

/// AWS Backup's own EventBridge events, and the CloudTrail record that tells the same story.
const BACKUP_NATIVE: [(&str, &str); 4] = [
    ("Backup Job State Change", "BackupJobCompleted"),
    ("Copy Job State Change", "CopyJobCompleted"),
    ("Restore Job State Change", "RestoreCompleted"),
    ("Recovery Point State Change", "BackupJobCompleted"),
];

/// The warnings for one rule.
pub fn check(rule: &Rule) -> Vec<RuleWarning> {
    let mut out = Vec::new();
    let mut warn = |path: &str, message: String| {
        out.push(RuleWarning {
            origin: rule.origin.clone(),
            rule: rule.id.clone(),
            path: format!("$.pattern.{path}"),
            message,
        });
    };
    authoring(rule, &mut warn);
    let pattern = &rule.pattern;
    let builtin = rule.origin.starts_with("builtin:");
    let event_source_path: &[&str] = if pattern.form() == Form::Envelope && builtin {
        &["detail", "eventSource"]
    } else if pattern.form() == Form::Envelope {
        for source in pattern.strings_at(&["source"]) {
            if !source.starts_with("aws.") {
                warn(
                    "source",
                    format!(
                        "{source:?} is never the source of a CloudTrail record or of an AWS \
                         service's event (those are \"aws.<service>\", e.g. \"aws.backup\"); \
                         this rule can never match a CloudTrail log"
                    ),
                );
            }
        }
        for detail_type in pattern.strings_at(&["detail-type"]) {
            if EVENT_TYPES
                .iter()
                .any(|t| detail_type_for(t) == Some(detail_type.as_str()))
            {
                continue;
            }
            let known: Vec<String> = EVENT_TYPES
                .iter()
                .filter_map(|t| detail_type_for(t))
                .map(|d| format!("{d:?}"))
                .collect();
            let hint = match BACKUP_NATIVE
                .iter()
                .find(|(native, _)| *native == detail_type)
            {
                Some((_, record)) => format!(
                    "{detail_type:?} is AWS Backup's own EventBridge event, which is not a \
                     CloudTrail record: this rule matches only such events delivered to the \
                     function by EventBridge, never a CloudTrail log (from S3 or `scan`); to \
                     alert on it from CloudTrail, match eventName {record:?} with \
                     serviceEventDetails.state"
                ),
                None => format!(
                    "CloudTrail records never have detail-type {detail_type:?} (theirs are {}): \
                     this rule matches only events of that type delivered to the function by \
                     EventBridge, never a CloudTrail log (from S3 or `scan`)",
                    known.join(", ")
                ),
            };
            warn("detail-type", hint);
        }
        &["detail", "eventSource"]
    } else {
        &["eventSource"]
    };
    for source in pattern.strings_at(event_source_path) {
        if !is_endpoint_name(&source) {
            let suggestion = source.strip_prefix("aws.").unwrap_or(&source);
            let hint = if suggestion
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !suggestion.is_empty()
            {
                format!(
                    " (did you mean \"{}.amazonaws.com\"?)",
                    suggestion.to_ascii_lowercase()
                )
            } else {
                String::new()
            };
            warn(
                &event_source_path.join("."),
                format!(
                    "{source:?} is not an AWS service endpoint name, which is what CloudTrail \
                     writes in eventSource{hint}; this rule can never match"
                ),
            );
        }
    }
    out
}

/// What the pattern says of each leaf path: its matchers as written.
fn leaves<'v>(
    value: &'v serde_json::Value,
    path: &str,
    out: &mut Vec<(String, &'v serde_json::Value)>,
) {
    let serde_json::Value::Object(map) = value else {
        return;
    };
    for (k, v) in map {
        if k == "$or" {
            if let serde_json::Value::Array(branches) = v {
                for b in branches {
                    leaves(b, path, out);
                }
            }
            continue;
        }
        let here = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match v {
            serde_json::Value::Object(_) => leaves(v, &here, out),
            serde_json::Value::Array(_) => out.push((here, v)),
            _ => {}
        }
    }
}

/// Whether a record has a value (or a null) at this dotted path, through lists.
fn reaches(record: &serde_json::Value, path: &str) -> bool {
    let mut current = vec![record];
    for part in path.split('.') {
        let mut next = Vec::new();
        for v in current {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(x) = m.get(part) {
                        next.push(x);
                    }
                }
                serde_json::Value::Array(items) => {
                    for i in items {
                        if let Some(x) = i.get(part) {
                            next.push(x);
                        }
                    }
                }
                _ => {}
            }
        }
        if next.is_empty() {
            return false;
        }
        current = next;
    }
    true
}

/// The closest known top-level field to a name (for "did you mean").
fn closest(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    RECORD_FIELDS
        .iter()
        .map(|f| (edits(&lower, &f.to_ascii_lowercase()), *f))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, f)| f)
}

/// Levenshtein distance.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The mistakes a rule author makes that load silently (a record-form pattern): numbers or
/// booleans for fields CloudTrail writes as text (an unquoted account id, perhaps with its
/// leading zero lost to YAML), top-level fields no CloudTrail record has, and paths under a
/// known field that none of the rule's own test records has.
fn authoring(rule: &Rule, warn: &mut dyn FnMut(&str, String)) {
    if rule.pattern.form() != Form::Record {
        return;
    }
    let mut found = Vec::new();
    leaves(rule.pattern.source(), "", &mut found);
    let records: Vec<&serde_json::Value> = rule
        .tests
        .iter()
        .filter(|t| !t.event)
        .flat_map(|t| match &t.sequence {
            Some((records, _)) => records.iter().collect::<Vec<_>>(),
            None => vec![&t.record],
        })
        .collect();
    let mut said = std::collections::BTreeSet::new();
    for (path, matchers) in found {
        let top = path.split('.').next().unwrap_or_default();
        if !RECORD_FIELDS.contains(&top) && said.insert(top.to_owned()) {
            let hint = closest(top).map_or_else(String::new, |f| format!(" (did you mean {f:?}?)"));
            warn(
                top,
                format!(
                    "no CloudTrail record has a top-level field {top:?}{hint}: this part of the \
                     pattern can never hold"
                ),
            );
            continue;
        }
        let serde_json::Value::Array(items) = matchers else {
            continue;
        };
        for (i, m) in items.iter().enumerate() {
            let typed = match m {
                // YAML reads 012345678901 as 12345678901.0: say it as the digits written.
                serde_json::Value::Number(n) => Some(match n.as_f64() {
                    Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => {
                        format!("{f:.0}")
                    }
                    _ => n.to_string(),
                }),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            let Some(text) = typed.filter(|_| written_as_text(&path)) else {
                continue;
            };
            let lost_zero = path
                .rsplit('.')
                .next()
                .is_some_and(|l| l.ends_with("ccountId"))
                && text.len() < 12
                && text.bytes().all(|b| b.is_ascii_digit());
            let zero = if lost_zero {
                format!(
                    "; it has {} digits, so YAML also dropped its leading zero{} (write \"{:0>12}\")",
                    text.len(),
                    if text.len() < 11 { "s" } else { "" },
                    text
                )
            } else {
                format!(" (write \"{text}\")")
            };
            warn(
                &format!("{path}[{i}]"),
                format!(
                    "{text} is a {} but CloudTrail writes {path} as text, and patterns compare \
                     types: it never matches{zero}",
                    if matches!(m, serde_json::Value::Bool(_)) {
                        "boolean"
                    } else {
                        "number"
                    }
                ),
            );
        }
        // A path under a known field that none of the rule's own records has: a misspelt field
        // loads and matches nothing. Only said when the rule has test records to tell by, and
        // not of a path the pattern wants absent.
        let wants_absent = items
            .iter()
            .any(|m| m.get("exists") == Some(&serde_json::Value::Bool(false)));
        if path.contains('.')
            && !records.is_empty()
            && !wants_absent
            && !records.iter().any(|r| reaches(r, &path))
        {
            warn(
                &path,
                format!(
                    "none of the rule's test records has {path}: if it is misspelt, the rule \
                     matches nothing (add a test record with the field as CloudTrail writes it)"
                ),
            );
        }
    }
}

/// `backup.amazonaws.com`, `s3-outposts.amazonaws.com`: what CloudTrail writes in eventSource.
fn is_endpoint_name(s: &str) -> bool {
    let Some(service) = s.strip_suffix(".amazonaws.com") else {
        return false;
    };
    !service.is_empty()
        && service.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse_document;

    fn warnings(pattern: &str) -> Vec<String> {
        let doc = format!(
            "rules:\n  - id: r\n    description: d\n    severity: low\n    pattern: {pattern}\n"
        );
        let rules = parse_document("w.yaml", &doc).expect("loads");
        check(&rules[0]).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn rules_that_can_never_match_a_cloudtrail_record_are_warned_about() {
        let w = warnings(
            r#"{source: [aws.backup], detail-type: [Backup Job State Change], detail: {state: [FAILED]}}"#,
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("w.yaml: rule \"r\" at $.pattern.detail-type: \"Backup Job State Change\" is AWS Backup's own EventBridge event"), "{}", w[0]);
        assert!(
            w[0].contains("match eventName \"BackupJobCompleted\" with serviceEventDetails.state")
        );

        let w = warnings(
            r#"{source: [com.mycompany], detail-type: [Something], detail: {eventSource: [backup]}}"#,
        );
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("at $.pattern.source"));
        assert!(w[1].contains("theirs are \"AWS API Call via CloudTrail\""));
        assert!(w[2].contains(
            "at $.pattern.detail.eventSource: \"backup\" is not an AWS service endpoint name"
        ));
        assert!(w[2].contains("did you mean \"backup.amazonaws.com\"?"));

        let w = warnings(r#"{eventSource: [aws.backup, backup.amazonaws.com]}"#);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("at $.pattern.eventSource: \"aws.backup\""));

        // $or branches are looked into too.
        let w = warnings(
            r#"{$or: [{eventSource: [outposts.amazonaws.com]}, {eventSource: [Outposts]}]}"#,
        );
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn rules_that_can_match_are_not_warned_about() {
        for pattern in [
            r#"{source: [aws.backup], detail-type: [AWS Service Event via CloudTrail], detail: {eventName: [BackupJobCompleted]}}"#,
            r#"{eventSource: [s3-outposts.amazonaws.com, signin.amazonaws.com, {prefix: backup}]}"#,
            r#"{detail-type: [AWS Console Sign In via CloudTrail]}"#,
        ] {
            assert!(warnings(pattern).is_empty(), "{pattern}");
        }
        assert!(
            crate::rules::RuleSet::load(&[crate::rules::RuleSource::Builtin])
                .expect("builtin")
                .warnings()
                .is_empty()
        );
    }

    #[test]
    fn the_mistakes_a_new_author_makes_are_said_when_rules_load() {
        // Unquoted account ids: numbers, one with its leading zero lost to YAML.
        let w = warnings("{recipientAccountId: [123456789012, 012345678901]}");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("$.pattern.recipientAccountId[0]: 123456789012 is a number"),
            "{w:?}"
        );
        assert!(w[0].contains("(write \"123456789012\")"), "{w:?}");
        assert!(
            w[1].contains(
                "11 digits, so YAML also dropped its leading zero (write \"012345678901\")"
            ),
            "{w:?}"
        );
        // A misspelt top-level field, with the field meant.
        let w = warnings(
            "{eventSource: [backup.amazonaws.com], serviceEventDetail: {jobState: [FAILED]}}",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("no CloudTrail record has a top-level field \"serviceEventDetail\" (did you mean \"serviceEventDetails\"?)"), "{w:?}");
        // A misspelt nested field that the rule's own test records never have.
        let doc = "rules:\n  - id: r\n    description: d\n    severity: low\n    pattern: {serviceEventDetails: {jobState: [FAILED]}}\n    tests: [{name: t, expect: false, record: {serviceEventDetails: {state: FAILED}}}]\n";
        let rules = parse_document("w.yaml", doc).expect("loads");
        let w: Vec<String> = check(&rules[0]).iter().map(ToString::to_string).collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("none of the rule's test records has serviceEventDetails.jobState"),
            "{w:?}"
        );
        // Quoted ids, known fields and fields the tests have: nothing to say.
        assert!(warnings("{recipientAccountId: [\"012345678901\"], readOnly: [false], requestParameters: {maxResults: [5]}}").is_empty());
    }

    #[test]
    fn every_fault_of_a_rule_is_reported_at_once() {
        let doc = "rules:\n  - id: r\n    descripton: d\n    severity: urgent\n    pattern: {eventName: [{prefix: 1}]}\n";
        let e = parse_document("w.yaml", doc)
            .expect_err("faulty")
            .to_string();
        assert!(e.starts_with("4 faults in the rules:"), "{e}");
        for says in [
            "$.rules[0].descripton: unknown key",
            "$.rules[0].description: missing",
            "\"urgent\" is not one of",
            "$.rules[0].pattern.eventName[0].prefix",
        ] {
            assert!(e.contains(says), "{says}: {e}");
        }
    }
}
