//! Warnings when rules load: a rule that is valid but can never match a CloudTrail record — an
//! envelope `source` or `detail-type` CloudTrail never produces (a service's own EventBridge
//! event, say, which only the function sees, when EventBridge delivers it), or an
//! `eventSource` that is not an AWS service endpoint name. Not errors: the rule set still
//! loads, and every warning is listed at once. The built-in pack's rules for AWS Backup's own
//! events are meant for EventBridge delivery and are not warned about.

use std::fmt;

use crate::pattern::{detail_type_for, Form};

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
}
