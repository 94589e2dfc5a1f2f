//! SNS messages from alerts: the body in the configured format, the subject, the message
//! attributes subscribers filter on, FIFO group and deduplication ids, and batches that respect
//! SNS's limits (ten entries, 256 KiB in all).

use serde_json::{json, Value};

use crate::alert::Alert;

/// SNS's message size limit: body, subject and attributes together.
pub const SNS_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// `ALERT_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlertFormat {
    /// The JSON alert document.
    #[default]
    Json,
    /// The same as readable lines.
    Text,
    /// `MessageStructure=json`: the JSON document as `default`, the text as `email`.
    PerProtocol,
    /// Amazon Q Developer in chat applications' custom notification JSON.
    Chat,
}

impl AlertFormat {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "json" => AlertFormat::Json,
            "text" => AlertFormat::Text,
            "per-protocol" => AlertFormat::PerProtocol,
            "chat" => AlertFormat::Chat,
            _ => return None,
        })
    }
}

/// One SNS message, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// The batch entry id (unique within a batch).
    pub id: String,
    pub subject: String,
    pub body: String,
    /// `MessageStructure=json`.
    pub structured: bool,
    /// String attributes: name, value.
    pub attributes: Vec<(String, String)>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
}

/// Room kept for the subject and attributes when fitting a body under SNS's size limit.
const HEADROOM: usize = 4096;
pub const MAX_BATCH_ENTRIES: usize = 10;

impl OutMessage {
    pub fn new(id: String, alert: &Alert, format: AlertFormat, fifo: bool) -> Self {
        let limit = SNS_MAX_MESSAGE_BYTES - HEADROOM;
        let (body, structured) = match format {
            AlertFormat::Json => (alert.document_within(limit), false),
            AlertFormat::Text => (alert.text(limit), false),
            AlertFormat::Chat => (alert.chat().to_string(), false),
            AlertFormat::PerProtocol => {
                // Both renderings share the limit; the JSON one is escaped once more inside
                // the structure, so it gets a third of the room.
                let doc = alert.document_within(limit / 3);
                let text = alert.text(limit / 3);
                (json!({"default": doc, "email": text}).to_string(), true)
            }
        };
        let mut attributes = vec![
            ("rule".to_owned(), alert.rule_id.clone()),
            ("severity".to_owned(), alert.severity.as_str().to_owned()),
        ];
        let e = &alert.event;
        for (name, value) in [
            ("account", &e.account),
            ("region", &e.region),
            ("eventSource", &e.event_source),
            ("eventName", &e.event_name),
            ("eventID", &e.event_id),
            ("state", &e.state),
        ] {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                attributes.push((name.to_owned(), v.clone()));
            }
        }
        // The account's name, for subscriptions' filter policies (where it is known).
        if let Some(name) = alert
            .account_info
            .as_ref()
            .and_then(|i| i.name.as_ref())
            .filter(|n| !n.is_empty())
        {
            attributes.push(("accountName".to_owned(), name.clone()));
        }
        let (group_id, dedup_id) = if fifo {
            (Some(alert.rule_id.clone()), Some(dedup_id(alert)))
        } else {
            (None, None)
        };
        OutMessage {
            id,
            subject: alert.subject.clone(),
            body,
            structured,
            attributes,
            group_id,
            dedup_id,
        }
    }

    /// The bytes SNS counts against its 256 KiB: body, subject and attributes.
    pub fn size(&self) -> usize {
        self.body.len()
            + self.subject.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len() + "String".len())
                .sum::<usize>()
    }
}

/// `rule:eventID` (or `rule:source:record` when the record has no eventID), within SNS's 128
/// characters of letters, digits and punctuation.
fn dedup_id(alert: &Alert) -> String {
    let tail = alert
        .event
        .event_id
        .clone()
        .unwrap_or_else(|| format!("{}#{}", alert.source.display(), alert.record_index));
    let raw = format!("{}:{tail}", alert.rule_id);
    let clean: String = raw
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if clean.len() <= 128 {
        clean
    } else {
        // Keep the end, where the record's own identity is.
        clean[clean.len() - 128..].to_owned()
    }
}

/// Splits messages into batches of at most ten entries and 256 KiB in all.
pub fn batches(messages: Vec<OutMessage>) -> Vec<Vec<OutMessage>> {
    let mut out: Vec<Vec<OutMessage>> = Vec::new();
    let mut size = 0;
    for m in messages {
        let s = m.size();
        let fits = out
            .last()
            .is_some_and(|b| b.len() < MAX_BATCH_ENTRIES && size + s <= SNS_MAX_MESSAGE_BYTES);
        if !fits {
            out.push(Vec::new());
            size = 0;
        }
        size += s;
        if let Some(b) = out.last_mut() {
            b.push(m);
        }
    }
    out
}

/// The attributes as a JSON object, for tests and logs.
pub fn attributes_json(m: &OutMessage) -> Value {
    Value::Object(
        m.attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertSource;
    use crate::rules::{RuleSet, RuleSource};

    fn alert(state: &str) -> Alert {
        let set = RuleSet::load(&[RuleSource::Builtin]).unwrap();
        let rule = set
            .rules()
            .iter()
            .find(|r| r.id == "backup-job-failed")
            .unwrap();
        let record = json!({
            "eventID": "2e7e4fcf-0c52-467f-9fd0-f61c2fcf7d17", "eventName": "BackupJobCompleted",
            "eventSource": "backup.amazonaws.com", "eventType": "AwsServiceEvent",
            "recipientAccountId": "123456789012", "awsRegion": "us-east-1",
            "serviceEventDetails": {"state": state, "backupJobId": "J1", "backupVaultName": "V"}
        });
        Alert::new(
            rule,
            &record,
            AlertSource::S3 {
                bucket: "b".into(),
                key: "k".into(),
            },
            7,
        )
    }

    #[test]
    fn json_messages_carry_attributes_and_the_document() {
        let m = OutMessage::new("a0".into(), &alert("FAILED"), AlertFormat::Json, false);
        assert!(!m.structured);
        assert_eq!(
            m.subject,
            "[HIGH] backup-job-failed: BackupJobCompleted FAILED in 123456789012/us-east-1"
        );
        let doc: Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(doc["source"], json!({"bucket": "b", "key": "k"}));
        assert_eq!(
            attributes_json(&m),
            json!({"rule": "backup-job-failed", "severity": "high", "account": "123456789012",
                   "region": "us-east-1", "eventSource": "backup.amazonaws.com",
                   "eventName": "BackupJobCompleted", "eventID": "2e7e4fcf-0c52-467f-9fd0-f61c2fcf7d17",
                   "state": "FAILED"})
        );
        assert_eq!((m.group_id, m.dedup_id), (None, None));
    }

    #[test]
    fn fifo_ids_derive_from_rule_and_event() {
        let m = OutMessage::new("a0".into(), &alert("FAILED"), AlertFormat::Json, true);
        assert_eq!(m.group_id.as_deref(), Some("backup-job-failed"));
        assert_eq!(
            m.dedup_id.as_deref(),
            Some("backup-job-failed:2e7e4fcf-0c52-467f-9fd0-f61c2fcf7d17")
        );
    }

    #[test]
    fn text_and_per_protocol_formats() {
        let m = OutMessage::new("a0".into(), &alert("ABORTED"), AlertFormat::Text, false);
        assert!(m.body.starts_with("[HIGH] backup-job-failed: BackupJobCompleted ABORTED in 123456789012/us-east-1\n\nBackup job J1 in vault V ended ABORTED"));
        assert!(m.body.contains("Log:        s3://b/k (record 7)"));
        let m = OutMessage::new(
            "a0".into(),
            &alert("ABORTED"),
            AlertFormat::PerProtocol,
            false,
        );
        assert!(m.structured);
        let s: Value = serde_json::from_str(&m.body).unwrap();
        let doc: Value = serde_json::from_str(s["default"].as_str().unwrap()).unwrap();
        assert_eq!(doc["rule"]["id"], "backup-job-failed");
        assert!(s["email"].as_str().unwrap().contains("Backup job J1"));
    }

    /// The chat format, field by field: a title and description within their limits even for
    /// long non-ASCII text, next steps from the runbook, the alert key as the thread.
    #[test]
    fn chat_messages_are_custom_notifications() {
        let doc = "rules:\n  - id: vault-failure\n    description: Sauvegarde échouée — coffre « principal »\n    severity: critical\n    pattern: {eventName: [BackupJobCompleted]}\n    dedup: {key: [serviceEventDetails.backupVaultName], window: 1h}\n    runbook: |\n      Check the vault's access policy: https://console.aws.amazon.com/backup\n      Re-run the job\n";
        let rule = crate::rules::parse_document("c.yaml", doc)
            .unwrap()
            .remove(0);
        let record = json!({
            "eventID": "e-1", "eventName": "BackupJobCompleted", "eventTime": "2024-01-10T08:00:00Z",
            "eventSource": "backup.amazonaws.com", "recipientAccountId": "123456789012", "awsRegion": "eu-west-3",
            "serviceEventDetails": {"state": "FAILED", "backupJobId": "J1", "backupVaultName": "coffre-é",
                                    "resourceArn": "arn:aws:ec2:eu-west-3:123456789012:volume/vol-1",
                                    "statusMessage": "Échec: ".repeat(2000)}
        });
        let a = Alert::new(
            &rule,
            &record,
            AlertSource::S3 {
                bucket: "b".into(),
                key: "k".into(),
            },
            0,
        );
        let m = OutMessage::new("a0".into(), &a, AlertFormat::Chat, false);
        let c: Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(
            (c["version"].as_str(), c["source"].as_str()),
            (Some("1.0"), Some("custom"))
        );
        assert_eq!(c["content"]["textType"], "client-markdown");
        let title = c["content"]["title"].as_str().unwrap();
        assert_eq!(
            title,
            ":rotating_light: [CRITICAL] vault-failure — 123456789012/eu-west-3"
        );
        let description = c["content"]["description"].as_str().unwrap();
        assert_eq!(
            description.chars().count(),
            crate::alert::render::CHAT_MAX_DESCRIPTION
        );
        assert!(description.ends_with('…') && description.starts_with("Backup job J1 for arn:aws:ec2:eu-west-3:123456789012:volume/vol-1 in vault coffre-é ended FAILED: Échec"), "{description}");
        assert_eq!(
            c["content"]["nextSteps"],
            json!([
                "Check the vault's access policy: https://console.aws.amazon.com/backup",
                "Re-run the job"
            ])
        );
        assert_eq!(
            c["content"]["keywords"],
            json!([
                "critical",
                "vault-failure",
                "123456789012",
                "eu-west-3",
                "FAILED"
            ])
        );
        assert_eq!(c["metadata"]["threadId"], r#"vault-failure|["coffre-é"]"#);
        assert_eq!(c["metadata"]["eventType"], "vault-failure");
        assert_eq!(
            c["metadata"]["relatedResources"],
            json!(["arn:aws:ec2:eu-west-3:123456789012:volume/vol-1"])
        );
        assert_eq!(c["metadata"]["summary"], m.subject);
        // A title at its limit.
        let long = "rules:\n  - id: x\n    description: d\n    severity: low\n    pattern: {eventName: [X]}\n";
        let rule = crate::rules::parse_document("l.yaml", long)
            .unwrap()
            .remove(0);
        let mut r =
            json!({"eventName": "X", "recipientAccountId": "9".repeat(300), "awsRegion": "r"});
        r["eventID"] = json!("e");
        let a = Alert::new(&rule, &r, AlertSource::File { path: "f".into() }, 0);
        let c = a.chat();
        let title = c["content"]["title"].as_str().unwrap();
        assert_eq!(title.chars().count(), crate::alert::render::CHAT_MAX_TITLE);
        assert!(title.ends_with('…'));
        assert_eq!(
            c["metadata"]["threadId"], "x|e",
            "a rule without a key threads on the event"
        );
        assert!(c["content"].get("nextSteps").is_none());
    }

    #[test]
    fn batches_respect_count_and_size() {
        let small: Vec<OutMessage> = (0..23)
            .map(|i| OutMessage::new(format!("a{i}"), &alert("FAILED"), AlertFormat::Json, false))
            .collect();
        let sizes: Vec<usize> = batches(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);
        let mut big = OutMessage::new("x".into(), &alert("FAILED"), AlertFormat::Json, false);
        big.body = "x".repeat(100 * 1024);
        let sizes: Vec<usize> = batches(vec![big.clone(), big.clone(), big.clone()])
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [2, 1]);
    }
}
