//! Alerts: what one (record, rule) match tells the person on call — the rule, the event's
//! facts, a subject line and a one-line summary.
//!
//! # Files
//! - [`context`]: whose account it is (name, OU, tags), who did it, and links to look with.
//! - `native`: alerts on services' own EventBridge events (AWS Backup's, …) and trail-alerts'
//!   own (missing, silent, resolved).
//! - [`render`]: every form an alert is shown in (text, JSON, chat, jsonl, PagerDuty).

pub mod context;
mod native;
pub mod render;

pub use crate::model::SummaryTemplate;

use serde_json::Value;

use crate::json::{field, field_at};
use crate::model::{Rule, Severity};
use crate::pattern::{Event, Explanation};

/// The longest subject line: printable ASCII, no line breaks (email subjects stop at 100).
pub const MAX_SUBJECT_CHARS: usize = 99;

/// Where the record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertSource {
    File {
        path: String,
    },
    S3 {
        bucket: String,
        key: String,
    },
    /// An event EventBridge delivered to the function.
    EventBridge {
        id: String,
        source: String,
        detail_type: String,
    },
}

impl AlertSource {
    /// The file path or `s3://bucket/key`.
    pub fn display(&self) -> String {
        match self {
            AlertSource::File { path } => path.clone(),
            AlertSource::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
            AlertSource::EventBridge {
                id,
                source,
                detail_type,
            } => format!("EventBridge event {id} ({source} {detail_type})"),
        }
    }
}

/// The fields of a record that an alert shows, read leniently (any may be missing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventInfo {
    pub event_id: Option<String>,
    pub event_time: Option<String>,
    pub event_source: Option<String>,
    pub event_name: Option<String>,
    pub event_type: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
    pub principal: Option<String>,
    /// Who made the call, as a person reads it (`context::actor`).
    pub actor: Option<String>,
    pub source_ip: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// `serviceEventDetails.state` (or `.status`), for job events.
    pub state: Option<String>,
    /// For an Insights record: its type and the API it is about
    /// (`ApiCallRateInsight CreateUser`).
    pub insight: Option<String>,
}

impl EventInfo {
    pub fn from_record(record: &Value) -> Self {
        // The top-level fields read here, found in one walk over the record's fields rather
        // than a lookup each (serde_json's maps hash every key looked up with SipHash).
        const KEYS: [&str; 12] = [
            "eventID",
            "eventTime",
            "eventSource",
            "eventName",
            "eventType",
            "recipientAccountId",
            "awsRegion",
            "sourceIPAddress",
            "errorCode",
            "errorMessage",
            "serviceEventDetails",
            "insightDetails",
        ];
        let mut top: [Option<&Value>; 12] = [None; 12];
        if let Value::Object(map) = record {
            for (key, value) in map {
                if let Some(i) = KEYS.iter().position(|k| k == key) {
                    top[i] = Some(value);
                }
            }
        }
        let [id, time, source, name, kind, recipient, region, ip, code, message, details, insight] =
            top;
        EventInfo {
            event_id: text(id),
            event_time: text(time),
            event_source: text(source),
            event_name: text(name),
            event_type: text(kind),
            account: text(recipient)
                .or_else(|| text(field_at(record, &["userIdentity", "accountId"]))),
            region: text(region),
            principal: principal(record),
            actor: context::actor(record),
            source_ip: text(ip),
            error_code: text(code),
            error_message: text(message),
            state: details
                .and_then(|d| text(field(d, "state")).or_else(|| text(field(d, "status")))),
            insight: insight.map(|d| {
                let t = |k: &str| text(d.get(k)).unwrap_or_else(|| "?".into());
                format!("{} {}", t("insightType"), t("eventName"))
            }),
        }
    }
}

/// One alert: a rule that fired on a record.
#[derive(Debug, Clone)]
pub struct Alert {
    pub rule_id: String,
    pub description: String,
    pub severity: Severity,
    pub topic: Option<String>,
    pub event: EventInfo,
    pub subject: String,
    pub summary: String,
    pub source: AlertSource,
    /// The record's index in its file.
    pub record_index: usize,
    pub record: Value,
    /// The record fields (dotted paths) and values that made the rule match; a field matched
    /// by its absence has `None`.
    pub matched: Vec<(String, Option<Value>)>,
    /// The alert's stable key: the rule and its key values (dedup, threshold, absence), or the
    /// rule and the eventID. Repeats, roll-ups and resolutions share it (chat threads, pager
    /// incidents).
    pub alert_key: String,
    /// The rule's runbook.
    pub runbook: Option<String>,
    /// A shadow rule's alert: never published.
    pub shadow: bool,
    /// The account's name, OU path and tags, where known ([`Alert::with_account`]).
    pub account_info: Option<context::AccountInfo>,
    /// The rule's provenance (tags, references, author, licence, Sigma id), for the document.
    pub rule_meta: Option<std::sync::Arc<crate::model::RuleMeta>>,
    /// IAM Identity Center shortcuts for the links ([`Alert::with_account`]).
    pub sso: Option<context::Sso>,
}

/// The stable key of a rule's alert on a record or event.
pub fn alert_key(rule: &Rule, record: &Value, event_id: Option<&str>) -> String {
    // trail-alerts' own events (silence, absence) carry theirs.
    if let Some(k) = field_at(record, &["detail", "alertKey"]).and_then(Value::as_str) {
        if field(record, "source").and_then(Value::as_str) == Some("trail-alerts") {
            return k.to_owned();
        }
    }
    let paths = rule
        .grouping
        .as_ref()
        .map(|g| g.key())
        .or(rule.absence.as_ref().map(|a| a.key.as_slice()));
    match paths {
        Some(paths) => format!(
            "{}|{}",
            rule.incident,
            crate::model::key_value(paths, record)
        ),
        None => format!("{}|{}", rule.incident, event_id.unwrap_or("-")),
    }
}

impl Alert {
    /// The alert with what is known of its account (name, OU path, tags): the subject names
    /// it; and, with IAM Identity Center shortcuts, each console link opens in that account.
    /// Alerts the tool tells about a rule (roll-ups, storms) keep their own subjects.
    pub fn with_account(
        mut self,
        info: Option<context::AccountInfo>,
        sso: Option<&context::Sso>,
    ) -> Self {
        if let Some(info) = info {
            // Only the subject built from the event names the account (not a roll-up's own).
            let plain = subject(self.severity, &self.rule_id, &self.event, None);
            if self.subject == plain {
                self.subject = subject(
                    self.severity,
                    &self.rule_id,
                    &self.event,
                    info.name.as_deref(),
                );
            }
            self.account_info = Some(info);
        }
        self.sso = sso.cloned();
        self
    }

    /// The CloudTrail event and the resource's console pages (`context::links`), made from the
    /// record when the alert is shown rather than for every match. Through IAM Identity
    /// Center each opens in the alert's account, with the permission set named (a plain
    /// console link opens in whatever account the reader happens to be signed in to).
    pub fn links(&self) -> Vec<context::Link> {
        let mut links = context::links(&self.record, self.event.region.as_deref());
        if let (Some(sso), Some(account)) = (&self.sso, &self.event.account) {
            for link in &mut links {
                link.url = sso.shortcut(account, &link.url);
            }
        }
        links
    }

    /// The alert of a shadow rule (written, never published) when `shadow`.
    pub fn shadowed(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// An alert the tool tells about a rule (a roll-up, a group's notification, a storm
    /// message): the rule's description, severity, topic and runbook; the event, a subject
    /// (`[SEVERITY] <rule>: <what>`), summary, record and key of its own.
    pub fn about(
        rule: &Rule,
        event: EventInfo,
        what: &str,
        summary: &str,
        source: AlertSource,
        record: Value,
        key: String,
    ) -> Self {
        Alert {
            shadow: false,
            rule_meta: rule.meta.clone(),
            account_info: None,
            sso: None,
            rule_id: rule.id.clone(),
            description: rule.description.clone(),
            severity: rule.severity,
            topic: rule.topic.clone(),
            event,
            subject: sanitize_subject(&format!(
                "[{}] {}: {what}",
                rule.severity.as_str().to_ascii_uppercase(),
                rule.id
            )),
            summary: printable(summary),
            source,
            record_index: 0,
            record,
            matched: Vec::new(),
            alert_key: key,
            runbook: rule.runbook.clone(),
        }
    }

    pub fn new(rule: &Rule, record: &Value, source: AlertSource, record_index: usize) -> Self {
        Alert::of_record(rule, record.clone(), source, record_index)
    }

    /// [`Alert::new`] that keeps the record it is given rather than a copy: the pipeline hands
    /// the last alert of a record the record itself.
    pub fn of_record(rule: &Rule, record: Value, source: AlertSource, record_index: usize) -> Self {
        let event = EventInfo::from_record(&record);
        let matched = rule.pattern.explain(&Event::record(&record));
        let built_in = summary(&record, &event);
        Alert::build(rule, record, event, built_in, matched, source, record_index)
    }

    /// An alert of `rule` on `record` (a CloudTrail record or an EventBridge event), with its
    /// facts, the built-in summary (the rule's own template wins) and why it matched.
    fn build(
        rule: &Rule,
        record: Value,
        event: EventInfo,
        built_in_summary: String,
        explanation: Explanation,
        source: AlertSource,
        record_index: usize,
    ) -> Self {
        let matched = match explanation {
            Explanation::Matched(fields) => fields,
            Explanation::Missed(_) => Vec::new(),
        };
        let key = alert_key(rule, &record, event.event_id.as_deref());
        Alert {
            rule_meta: rule.meta.clone(),
            account_info: None,
            sso: None,
            alert_key: key,
            runbook: rule.runbook.clone(),
            shadow: rule.shadow,
            rule_id: rule.id.clone(),
            description: rule.description.clone(),
            severity: rule.severity,
            topic: rule.topic.clone(),
            subject: subject(rule.severity, &rule.id, &event, None),
            summary: match &rule.summary {
                Some(template) => printable(&template.render(&record)),
                None => printable(&built_in_summary),
            },
            event,
            source,
            record_index,
            record,
            matched,
        }
    }
}

/// `[HIGH] backup-job-failed: BackupJobCompleted FAILED in 123456789012/us-east-1`; with the
/// account's name where known, the place comes first, where a cut cannot reach it:
/// `[HIGH] backup-job-failed: payments-prod (481726354019) eu-west-1 BackupJobCompleted FAILED`.
/// Printable ASCII only, no line breaks, at most [`MAX_SUBJECT_CHARS`] characters (`...` where
/// cut).
fn subject(severity: Severity, rule_id: &str, event: &EventInfo, name: Option<&str>) -> String {
    let mut what = event
        .event_name
        .as_deref()
        .unwrap_or(if event.insight.is_some() {
            "Insight"
        } else {
            "event"
        })
        .to_owned();
    if let Some(insight) = &event.insight {
        what.push(' ');
        what.push_str(insight);
    }
    if let Some(state) = &event.state {
        what.push(' ');
        what.push_str(state);
    } else if let Some(code) = &event.error_code {
        what.push(' ');
        what.push_str(code);
    }
    let account = event.account.as_deref().unwrap_or("?");
    let region = event.region.as_deref().unwrap_or("?");
    // `[HIGH] rule:` and the rest pushed piece by piece (`format!` cost a microsecond an
    // alert here).
    let mut line = String::with_capacity(128);
    line.push('[');
    line.push_str(&severity.as_str().to_ascii_uppercase());
    line.push_str("] ");
    line.push_str(rule_id);
    line.push(':');
    let pieces: [&str; 6] = match &name.map(sanitize_subject).filter(|n| !n.is_empty()) {
        None => [" ", &what, " in ", account, "/", region],
        Some(name) => {
            line.push(' ');
            line.push_str(name);
            [" (", account, ") ", region, " ", &what]
        }
    };
    pieces.iter().for_each(|p| line.push_str(p));
    sanitize_subject(&line)
}

/// Printable ASCII, runs of white space folded to one space, cut to the limit with `...`.
pub fn sanitize_subject(raw: &str) -> String {
    // Printable ASCII with single spaces between words, the common case, is as it is (told
    // without stopping early, as `printable` does); the rest char by char.
    let bytes = raw.as_bytes();
    let plain = bytes
        .iter()
        .fold(true, |ok, &b| ok & (b.wrapping_sub(0x20) < 0x5f))
        && bytes.first() != Some(&b' ')
        && bytes.last() != Some(&b' ')
        && !raw.contains("  ");
    let mut out = if plain { raw.to_owned() } else { folded(raw) };
    if out.len() > MAX_SUBJECT_CHARS {
        out.truncate(MAX_SUBJECT_CHARS - 3);
        out.push_str("...");
    }
    out
}

/// Each run of white space one space (none at the ends), every other character not printable
/// ASCII `?`.
fn folded(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_SUBJECT_CHARS));
    let mut space = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(if c.is_ascii_graphic() { c } else { '?' });
    }
    out
}

/// Text from a record made safe for a terminal or an email: line breaks and tabs become
/// spaces, and every other control character (C0, DEL, C1: ESC and BEL among them) and every
/// bidirectional-override character is shown as an escape (`\x1b`, `\u{202e}`) instead of
/// acting on the reader's screen.
pub fn printable(s: &str) -> String {
    // Printable ASCII, the common case, is told byte by byte without stopping early (which
    // vectorises: a summary of a few hundred bytes costs tens of instructions, not thousands);
    // the rest char by char.
    if s.bytes()
        .fold(true, |ok, b| ok & (b.wrapping_sub(0x20) < 0x5f))
        || !s.chars().any(|c| c.is_control() || is_bidi_control(c))
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || is_bidi_control(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The characters that reorder text on screen (the "Trojan Source" characters).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One line a person on call understands at once (account, region and time are shown beside it).
fn summary(record: &Value, event: &EventInfo) -> String {
    let name = event.event_name.as_deref().unwrap_or("An event");
    let mut s = String::new();
    if let Some(job) =
        field(record, "serviceEventDetails").and_then(|d| job_summary(d, event.state.as_deref()))
    {
        s.push_str(&job);
    } else if let Some(insight) = field(record, "insightDetails") {
        s.push_str(&insight_summary(insight));
    } else if name == "ConsoleLogin" {
        s.push_str(&console_login_summary(record, event));
    } else {
        // Pushed piece by piece rather than `format!`ted: this is every alert's summary.
        s.push_str(name);
        if let Some(p) = &event.principal {
            s.push_str(" by ");
            s.push_str(p);
        }
        let subjects = subjects(record);
        if !subjects.is_empty() {
            s.push_str(" on ");
            s.push_str(&subjects.join(", "));
        }
        if let Some(ip) = &event.source_ip {
            if event.principal.as_deref() != Some(ip.as_str()) {
                s.push_str(" from ");
                s.push_str(ip);
            }
        }
        if let Some(code) = &event.error_code {
            s.push_str(" failed with ");
            s.push_str(code);
            if let Some(msg) = &event.error_message {
                s.push_str(": ");
                s.push_str(msg);
            }
        }
    }
    printable(&s)
}

/// `Backup job J for EBS resource R in vault V ended FAILED: message`: a job's story, from a
/// CloudTrail service event's `serviceEventDetails` or a native event's `detail` (both use
/// the same names); `None` when the details name no job.
pub(crate) fn job_summary(details: &Value, state: Option<&str>) -> Option<String> {
    let d = |key: &str| text(field(details, key));
    let (kind, id) = [
        "backupJobId",
        "copyJobId",
        "restoreJobId",
        "reportJobId",
        "scanJobId",
    ]
    .iter()
    .find_map(|k| d(k).map(|v| (*k, v)))?;
    let what = match kind {
        "copyJobId" => "Copy job",
        "restoreJobId" => "Restore job",
        "reportJobId" => "Report job",
        "scanJobId" => "Malware scan job",
        _ => "Backup job",
    };
    let mut s = format!("{what} {id}");
    let resource = d("resourceArn")
        .or_else(|| d("sourceResourceArn"))
        .or_else(|| d("createdResourceArn"))
        .or_else(|| d("recoveryPointArn"));
    match (d("resourceType"), resource) {
        (Some(t), Some(r)) => s.push_str(&format!(" for {t} resource {r}")),
        (Some(t), None) => s.push_str(&format!(" for {t}")),
        (None, Some(r)) => s.push_str(&format!(" for {r}")),
        (None, None) => {}
    }
    let vault = d("backupVaultName")
        .or_else(|| d("sourceBackupVaultArn").map(|a| vault_name(&a)))
        .or_else(|| d("backupVaultArn").map(|a| vault_name(&a)));
    if let Some(v) = vault {
        s.push_str(&format!(" in vault {v}"));
    }
    if let Some(dest) = d("destinationBackupVaultArn") {
        s.push_str(&format!(" to {dest}"));
    }
    if let Some(plan) = d("reportPlanArn") {
        s.push_str(&format!(" (report plan {plan})"));
    }
    let state = state.unwrap_or("in an unknown state");
    let ended = matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "ABORTED"
            | "EXPIRED"
            | "PARTIAL"
            | "COMPLETED_WITH_ISSUES"
            | "CANCELED"
            | "THREATS_FOUND"
            | "NO_THREATS_FOUND"
            | "in an unknown state"
    );
    s.push_str(&format!(" {} {state}", if ended { "ended" } else { "is" }));
    if let Some(result) = details
        .pointer("/scanResult/scanResultStatus")
        .and_then(Value::as_str)
    {
        if result != state {
            s.push_str(&format!(" ({result})"));
        }
    }
    // The statusMessage of AWS Backup's own events is sometimes wrapped in quotes.
    if let Some(msg) = d("statusMessage") {
        let msg = msg.trim_matches('"');
        if !msg.is_empty() {
            if state == "COMPLETED" && kind == "backupJobId" {
                s.push_str(" with issues");
            }
            s.push_str(&format!(": {msg}"));
        }
    }
    Some(s)
}

/// `Insight ApiCallRateInsight started: an unusual rate of CreateUser calls to iam.amazonaws.com`.
fn insight_summary(d: &Value) -> String {
    let t = |k: &str| text(d.get(k));
    let kind = t("insightType").unwrap_or_else(|| "Insight".into());
    let state = match t("state").as_deref() {
        Some("Start") => "started".to_owned(),
        Some("End") => "ended".to_owned(),
        Some(other) => other.to_owned(),
        None => "reported".to_owned(),
    };
    let what = if kind == "ApiErrorRateInsight" {
        "an unusual error rate"
    } else {
        "an unusual rate"
    };
    let mut s = format!(
        "Insight {kind} {state}: {what} of {} calls",
        t("eventName").unwrap_or_else(|| "API".into())
    );
    if let Some(source) = t("eventSource") {
        s.push_str(&format!(" to {source}"));
    }
    if let Some(code) = t("errorCode") {
        s.push_str(&format!(" failing with {code}"));
    }
    s
}

/// `Console sign-in by alice failed (Failed authentication) without MFA from 203.0.113.9`.
fn console_login_summary(record: &Value, event: &EventInfo) -> String {
    let who = text(record.pointer("/userIdentity/userName"))
        .or_else(|| event.principal.clone())
        .unwrap_or_else(|| "an unknown user".into());
    let outcome = text(record.pointer("/responseElements/ConsoleLogin"));
    let failed = outcome.as_deref() == Some("Failure") || event.error_message.is_some();
    let mut s = format!("Console sign-in by {who}");
    if failed {
        s.push_str(" failed");
        if let Some(msg) = &event.error_message {
            s.push_str(&format!(" ({msg})"));
        }
    } else if outcome.as_deref() == Some("Success") {
        s.push_str(" succeeded");
    }
    match text(record.pointer("/additionalEventData/MFAUsed")).as_deref() {
        Some("Yes") => s.push_str(" with MFA"),
        Some("No") => s.push_str(" without MFA"),
        _ => {}
    }
    if let Some(ip) = &event.source_ip {
        s.push_str(&format!(" from {ip}"));
    }
    s
}

/// What an API call acted on, in the words of its service: vaults, recovery points, plans,
/// outposts and sites; IAM users, roles, groups and policies; S3 buckets and objects; security
/// groups; KMS keys; trails.
fn subjects(record: &Value) -> Vec<String> {
    let service: &[(&str, &str)] = match field(record, "eventSource").and_then(Value::as_str) {
        Some("iam.amazonaws.com") => &[
            ("userName", "user"),
            ("roleName", "role"),
            ("groupName", "group"),
            ("policyArn", "policy"),
            ("policyName", "policy"),
            ("instanceProfileName", "instance profile"),
        ],
        Some("s3.amazonaws.com") => &[("bucketName", "bucket"), ("key", "object")],
        Some("ec2.amazonaws.com") => &[
            ("groupId", "security group"),
            ("groupName", "security group"),
        ],
        Some("kms.amazonaws.com") => &[("keyId", "key"), ("aliasName", "alias")],
        Some("cloudtrail.amazonaws.com") => &[("name", "trail"), ("trailName", "trail")],
        _ => &[],
    };
    const KEYS: [(&str, &str); 12] = [
        ("backupVaultName", "vault"),
        ("recoveryPointArn", "recovery point"),
        ("backupPlanId", "plan"),
        ("backupPlanName", "plan"),
        ("selectionId", "selection"),
        ("backupSelectionId", "selection"),
        ("backupJobId", "job"),
        ("OutpostId", "outpost"),
        ("outpostId", "outpost"),
        ("SiteId", "site"),
        ("siteId", "site"),
        ("OrderId", "order"),
    ];
    let mut out = Vec::new();
    for place in ["requestParameters", "serviceEventDetails"] {
        let Some(obj) = record.get(place) else {
            continue;
        };
        for (key, label) in service.iter().chain(KEYS.iter()).copied() {
            if let Some(v) = text(field(obj, key)) {
                let item = format!("{label} {v}");
                if !out.contains(&item) {
                    out.push(item);
                }
            }
        }
    }
    out
}

fn vault_name(arn: &str) -> String {
    arn.rsplit(':').next().unwrap_or(arn).to_owned()
}

/// Who made the call: the ARN, else the service that invoked it, else the principal id or type.
fn principal(record: &Value) -> Option<String> {
    let ui = field(record, "userIdentity")?;
    ["arn", "invokedBy", "principalId", "type"]
        .iter()
        .find_map(|k| text(field(ui, k)))
}

/// A scalar as text (strings as they are, numbers and booleans printed), else `None`.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{RuleSet, RuleSource};
    use serde_json::json;

    fn rule(id: &str) -> Rule {
        RuleSet::load(&[RuleSource::Builtin])
            .unwrap()
            .rules()
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .unwrap()
    }

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/docs/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        doc["record"].clone()
    }

    fn file() -> AlertSource {
        AlertSource::File {
            path: "f.json.gz".into(),
        }
    }

    #[test]
    fn backup_job_failure_subject_and_summary() {
        let mut record = fixture("BackupJobCompleted");
        record["serviceEventDetails"]["state"] = json!("FAILED");
        record["serviceEventDetails"]["statusMessage"] = json!("Insufficient privileges");
        let a = Alert::new(&rule("backup-job-failed"), &record, file(), 3);
        assert_eq!(
            a.subject,
            "[HIGH] backup-job-failed: BackupJobCompleted FAILED in 123456789012/us-east-1"
        );
        assert_eq!(
            a.summary,
            "Backup job 8A8E738B-A8C5-E058-8224-90FA323A3C0E for EBS resource \
             arn:aws:ec2:us-east-1:123456789012:volume/vol-06692095a6a421233 in vault BackupVault \
             ended FAILED: Insufficient privileges"
        );
        let doc = a.document();
        assert_eq!(doc["rule"]["severity"], "high");
        assert_eq!(doc["event"]["state"], "FAILED");
        assert_eq!(doc["event"]["principal"], "backup.amazonaws.com");
        assert_eq!(doc["source"]["file"], "f.json.gz");
        assert_eq!(doc["record"], record);
        assert_eq!(
            doc["matched"],
            json!({"eventSource": "backup.amazonaws.com", "eventName": "BackupJobCompleted",
                   "serviceEventDetails.state": "FAILED"})
        );
        assert!(a
            .text(256 * 1024)
            .contains("Matched:    eventSource = \"backup.amazonaws.com\", eventName = \"BackupJobCompleted\", serviceEventDetails.state = \"FAILED\"\n"));
        let line = a.json_line();
        assert_eq!(line["record"], 3);
        assert_eq!(line["eventID"], "2e7e4fcf-0c52-467f-9fd0-f61c2fcf7d17");
    }

    #[test]
    fn api_call_and_outposts_summaries() {
        let a = Alert::new(
            &rule("backup-destructive-call"),
            &fixture("DeleteRecoveryPoint"),
            file(),
            0,
        );
        assert_eq!(
            a.summary,
            "DeleteRecoveryPoint by arn:aws:iam::123456789012:root on vault Default, recovery point \
             arn:aws:ec2:us-east-1::snapshot/snap-05f426fd9daab3433 from 12.34.567.89"
        );
        let a = Alert::new(
            &rule("outposts-change"),
            &fixture("SetSiteAddress"),
            file(),
            0,
        );
        assert_eq!(
            a.subject,
            "[MEDIUM] outposts-change: SetSiteAddress in 111122223333/us-west-2"
        );
        assert!(a.summary.starts_with(
            "SetSiteAddress by arn:aws:sts::111122223333:assumed-role/example/jdoe on site os-123ab4c56789de01f"
        ), "{}", a.summary);
    }

    #[test]
    fn subjects_are_printable_ascii_within_99_characters() {
        assert_eq!(sanitize_subject("a\nb\t\tc  é"), "a b c ?");
        for s in [
            " a",
            "a ",
            "a  b",
            "a\u{7f}b",
            "a\u{a0}b",
            "plain [HIGH] x: y in 1/r",
            "",
        ] {
            assert_eq!(sanitize_subject(s), folded(s), "{s:?}");
        }
        let long = sanitize_subject(&"x".repeat(300));
        assert_eq!(long.len(), 99);
        assert!(long.ends_with("..."));
        let mut record = fixture("SetSiteAddress");
        record["eventName"] = json!("Ünïcode\nName".repeat(20));
        let a = Alert::new(&rule("outposts-change"), &record, file(), 0);
        assert!(a.subject.len() <= 99);
        assert!(a.subject.chars().all(|c| c.is_ascii_graphic() || c == ' '));
    }

    #[test]
    fn oversized_documents_are_cut_and_marked() {
        const LIMIT: usize = 256 * 1024;
        let mut record = fixture("StartBackupJob");
        record["requestParameters"]["backupOptions"] = json!({"blob": "x".repeat(300_000)});
        let a = Alert::new(&rule("backup-destructive-call"), &record, file(), 0);
        let text = a.document_within(LIMIT);
        assert!(text.len() <= LIMIT);
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc["truncated"],
            json!(["$.record.requestParameters.backupOptions.blob"])
        );
        assert!(doc["record"]["requestParameters"]["backupOptions"]["blob"]
            .as_str()
            .unwrap()
            .starts_with("[cut by trail-alerts: 300002 bytes]"));
        assert_eq!(doc["record"]["eventName"], "StartBackupJob");
        // A document that fits is left alone.
        assert_eq!(a.document_within(usize::MAX), a.document().to_string());
    }

    proptest::proptest! {
        /// The shortcut for plain subjects gives what folding char by char gives.
        #[test]
        fn subjects_are_folded_and_cut_alike(s in "[ -~\t\n\u{a0}é]{0,120}") {
            let mut want = folded(&s);
            if want.len() > MAX_SUBJECT_CHARS {
                want.truncate(MAX_SUBJECT_CHARS - 3);
                want.push_str("...");
            }
            proptest::prop_assert_eq!(sanitize_subject(&s), want);
        }
    }
}
