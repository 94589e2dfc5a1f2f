//! The rule model: what a rule is and says — severity, pattern, the paths it keys on, dedup,
//! thresholds, groups, absence, suppressions, summary templates — below the modules that use
//! it. `rules` (documents, sources, the rule set over the index), `policy` (dedup, thresholds
//! and groups, absence audits) and `alert` (what a match tells) all import it, and it imports
//! none of them.
//!
//! # Files
//! - [`template`]: summary templates (`{record.path}` placeholders).

pub mod template;

use std::fmt;

use serde_json::Value;

use crate::pattern::{Event, Explanation, Pattern};
pub use template::SummaryTemplate;

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a rule id matches a pattern of ids, where `*` stands for any characters
/// (`backup-*`); without `*`, the id itself.
pub fn id_matches(pattern: &str, id: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = id.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// One alert rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub pattern: Pattern,
    pub enabled: bool,
    /// SNS topic for this rule's alerts; `None` means the function's default topic.
    pub topic: Option<String>,
    /// The rule's own summary line, filled from the record; `None`: the built-in summaries.
    pub summary: Option<SummaryTemplate>,
    /// Deduplication or threshold; `None`: every match is an alert.
    pub grouping: Option<Grouping>,
    /// The fields whose distinct values a roll-up lists.
    pub rollup_fields: Vec<KeyPath>,
    /// Grouping of the alerts dedup or the threshold let through (`group:`).
    pub group: Option<Group>,
    /// The incident the rule's alerts belong to (`incident:`; default its id): rules that
    /// share one share their dedup windows, groups and alert keys, so that one failure told by
    /// two paths (a CloudTrail record from S3, a service's own EventBridge event) is one alert
    /// and one PagerDuty incident, whichever arrived first, the other counted.
    pub incident: String,
    /// An absence rule: its matches are heartbeats, and silence past `every` is the alert.
    pub absence: Option<Absence>,
    /// What to do: text and links, one step a line (chat messages' next steps).
    pub runbook: Option<String>,
    /// A recovery rule: its matches are not alerts but the resolution of these rules' alerts
    /// with the same key (a completed backup resolves the failed one's incident).
    pub resolves: Vec<String>,
    /// `mode: shadow`: evaluated everywhere, its alerts never published (the function writes
    /// them to `SHADOW_PREFIX`; `scan` marks them).
    pub shadow: bool,
    pub tests: Vec<RuleTest>,
    /// Where the rule was read from (a path, `builtin:…`, or `s3://…`).
    pub origin: String,
    /// The `overrides:` that changed it (their documents and paths), in order.
    pub overridden_by: Vec<String>,
    /// Where the rule comes from and what it detects, shown in its alerts: `tags` (ATT&CK),
    /// `references`, `author`, `license`, and `sigma` (an imported Sigma rule's id and title).
    pub meta: Option<std::sync::Arc<RuleMeta>>,
}

/// A rule's provenance and classification (`tags:`, `references:`, `author:`, `license:`,
/// `sigma:`): carried into each alert's document, never used for matching.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleMeta {
    pub tags: Vec<String>,
    pub references: Vec<String>,
    pub author: Option<String>,
    pub license: Option<String>,
    /// An imported Sigma rule's own fields (`id`, `title`, `status`, `falsepositives`).
    pub sigma: Option<serde_json::Value>,
}

impl RuleMeta {
    /// The members the alert document's `rule` gets (absent ones left out).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if !self.tags.is_empty() {
            m.insert("tags".into(), serde_json::json!(self.tags));
        }
        if !self.references.is_empty() {
            m.insert("references".into(), serde_json::json!(self.references));
        }
        if let Some(a) = &self.author {
            m.insert("author".into(), serde_json::json!(a));
        }
        if let Some(l) = &self.license {
            m.insert("license".into(), serde_json::json!(l));
        }
        if let Some(s) = &self.sigma {
            m.insert("sigma".into(), s.clone());
        }
        m
    }
}

/// An embedded test: a record (or an EventBridge event) and whether the rule must fire on it.
#[derive(Debug, Clone)]
pub struct RuleTest {
    pub name: String,
    pub expect: bool,
    /// The CloudTrail record, or with `event` the EventBridge event.
    pub record: Value,
    /// `record` is a service's own EventBridge event (`event:` in the document), matched as the
    /// function matches events EventBridge delivers.
    pub event: bool,
    /// A sequence test: records in order and the alerts they must raise, with the rule's
    /// dedup or threshold and the suppressions in force (`record` is then unused).
    pub sequence: Option<(Vec<Value>, u64)>,
}

impl Rule {
    /// Why the rule fires on a test's record or event, or why not.
    pub fn explain_test(&self, test: &RuleTest) -> Explanation {
        if test.event {
            crate::pattern::explain_bus_event(&self.pattern, &test.record)
        } else {
            self.pattern.explain(&Event::record(&test.record))
        }
    }
}

/// `eventName = "DeleteBackupVault", errorCode absent`.
pub fn describe_fields(fields: &[(String, Option<Value>)]) -> String {
    if fields.is_empty() {
        return "every record (the pattern names no field)".into();
    }
    fields
        .iter()
        .map(|(path, value)| match value {
            Some(v) => format!("{path} = {v}"),
            None => format!("{path} absent"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A dotted path into the record (`serviceEventDetails.backupVaultName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath(Vec<String>);

impl KeyPath {
    /// Parses `a.b.c`: non-empty keys without white space.
    pub fn parse(text: &str) -> Result<Self, String> {
        let keys: Vec<String> = text.split('.').map(str::to_owned).collect();
        if text.is_empty()
            || keys
                .iter()
                .any(|k| k.is_empty() || k.chars().any(char::is_whitespace))
        {
            return Err(format!(
                "{text:?} is not a record path: write dotted keys such as \
                 serviceEventDetails.backupVaultName"
            ));
        }
        Ok(KeyPath(keys))
    }

    /// The value at this path, if the record has one.
    pub fn get<'v>(&self, record: &'v Value) -> Option<&'v Value> {
        self.0.iter().try_fold(record, |v, k| v.get(k))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// What a rule does with its matches beyond raising an alert for each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// The first match for a key value in a window is an alert; the later ones are counted and
    /// told in a roll-up when the window closes.
    Dedup { key: Vec<KeyPath>, window: u64 },
    /// An alert only once `count` matches for a key value fall in the window; then as dedup for
    /// the rest of the window.
    Threshold {
        count: u64,
        within: u64,
        key: Vec<KeyPath>,
    },
}

impl Grouping {
    pub fn key(&self) -> &[KeyPath] {
        match self {
            Grouping::Dedup { key, .. } | Grouping::Threshold { key, .. } => key,
        }
    }

    /// The window length in seconds.
    pub fn window(&self) -> u64 {
        match self {
            Grouping::Dedup { window, .. } => *window,
            Grouping::Threshold { within, .. } => *within,
        }
    }

    /// The matches a key value needs in a window before it alerts (1 for dedup).
    pub fn count(&self) -> u64 {
        match self {
            Grouping::Dedup { .. } => 1,
            Grouping::Threshold { count, .. } => *count,
        }
    }

    /// `dedup per recipientAccountId, awsRegion for 1h`.
    pub fn describe(&self) -> String {
        let key = if self.key().is_empty() {
            "the rule".to_owned()
        } else {
            self.key()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Grouping::Dedup { window, .. } => {
                format!("one alert per {key} per {}", duration(*window))
            }
            Grouping::Threshold { count, within, .. } => {
                format!(
                    "an alert once {count} matches per {key} fall in {}",
                    duration(*within)
                )
            }
        }
    }
}

/// Grouping of a rule's alerts (`group: {by, wait, interval}`), after dedup and thresholds
/// decided which matches are new: the first alert of a group (the values at `by`, in a fixed
/// window of `interval` of event time) goes out at once, with the group's key, so that it opens
/// one PagerDuty incident and one chat thread; the group's later alerts in the window are
/// gathered into one grouped notification (count, distinct values, first and last) when the
/// window closes, which updates that incident. Every alert is told once: on its own, or in the
/// grouped notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub by: Vec<KeyPath>,
    /// How long the first alert waits for others (seconds); 0: it goes out at once.
    pub wait: u64,
    /// The group's window (seconds).
    pub interval: u64,
}

impl Group {
    /// `grouped per recipientAccountId, awsRegion within 15m`.
    pub fn describe(&self) -> String {
        let by = if self.by.is_empty() {
            "the rule".to_owned()
        } else {
            self.by
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!("grouped per {by} within {}", duration(self.interval))
    }
}

/// An absence rule: once a key value has matched, a match for it must arrive within `every`
/// (event time) of the last one; `expect` names key values that must report from the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Absence {
    pub key: Vec<KeyPath>,
    pub every: u64,
    /// Expected key values, as [`key_value`] writes them.
    pub expect: Vec<String>,
}

/// `90s`, `15m`, `1h`, `1d`: the largest unit that divides the seconds.
pub fn duration(secs: u64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= size && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// A rule file's suppression: matches of the rules it lists whose record also matches its
/// pattern raise nothing, until it expires.
#[derive(Debug, Clone)]
pub struct Suppression {
    pub id: String,
    /// Rule ids or `*` globs.
    pub rules: Vec<String>,
    pub pattern: Pattern,
    pub reason: String,
    pub owner: String,
    /// When it stops applying (Unix seconds; a date means the end of that day, UTC).
    pub expires: i64,
    /// The date or time as written.
    pub expires_text: String,
    pub origin: String,
}

impl Suppression {
    /// Whether it covers this rule's match of this record at wall-clock time `now`.
    pub fn covers(&self, rule_id: &str, record: &Value, now: i64) -> bool {
        now < self.expires
            && self.rules.iter().any(|r| id_matches(r, rule_id))
            && self.pattern.matches(&crate::pattern::Event::record(record))
    }

    pub fn expired(&self, now: i64) -> bool {
        now >= self.expires
    }
}

/// The key value of a match: the values at the key paths, as compact JSON (`null` where the
/// record has nothing), in a JSON array — `["123456789012","us-east-1",null]`. The rule id alone
/// (no paths) gives `[]`.
pub fn key_value(paths: &[KeyPath], record: &Value) -> String {
    let values: Vec<Value> = paths
        .iter()
        .map(|p| p.get(record).cloned().unwrap_or(Value::Null))
        .collect();
    Value::Array(values).to_string()
}

/// The rules a decision looks rules up in by id: the rule set (`rules::RuleSet`), without the
/// decision layer depending on how rules are loaded.
pub trait RuleBook: Sync {
    /// Every rule, disabled ones included, in the order loaded.
    fn all(&self) -> &[Rule];
    /// The rule of this id.
    fn rule(&self, id: &str) -> Option<&Rule> {
        self.all().iter().find(|r| r.id == id)
    }
}
