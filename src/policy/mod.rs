//! Alert management: what happens to a rule's match before anyone is paged — deduplication
//! within a window, thresholds, suppressions, and the roll-up that says what was held back.
//! Pure: windows, keys and verdicts; the command line keeps the state in memory
//! ([`memory::Engine`]); a store of state shared by the function's invocations is the next step
//! (see the README's limitations).
//!
//! Windows are fixed windows of *event time* (`eventTime`), aligned on the Unix epoch, so that
//! backfills, redeliveries and late deliveries count in the window the events belong to.

pub mod absence;
pub mod memory;

use std::fmt;

use serde_json::Value;

use crate::pattern::Pattern;
use crate::rules::id_matches;
use crate::time;

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

/// The fixed window of event time a match falls in: `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The window of `length` seconds holding `t` (aligned on the Unix epoch; `length` > 0).
    pub fn of(t: i64, length: u64) -> Self {
        let length = length.max(1) as i64;
        let start = t.div_euclid(length) * length;
        Window {
            start,
            end: start + length,
        }
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

/// `2026-12-31` (through the end of that day, UTC) or a timestamp.
pub fn parse_expiry(text: &str) -> Option<i64> {
    let t = time::parse_timestamp(text)?;
    Some(if text.len() == 10 { t + 86_400 } else { t })
}

/// The event time of a record (`eventTime`) or of an EventBridge event (`time`), in Unix seconds.
pub fn event_time(record: &Value) -> Option<i64> {
    record
        .get("eventTime")
        .or_else(|| record.get("time"))
        .and_then(Value::as_str)
        .and_then(time::parse_timestamp)
}

/// The wall clock, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The wall clock, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn windows_at_their_boundaries() {
        let h = 3600;
        // 2024-01-10T08:00:00Z starts an hour window; one second before is in the previous one.
        let t = 1_704_873_600;
        assert_eq!(
            Window::of(t, h),
            Window {
                start: t,
                end: t + 3600
            }
        );
        assert_eq!(
            Window::of(t + 3599, h),
            Window {
                start: t,
                end: t + 3600
            }
        );
        assert_eq!(
            Window::of(t - 1, h),
            Window {
                start: t - 3600,
                end: t
            }
        );
        assert_eq!(Window::of(t + 3600, h).start, t + 3600);
        // Before the epoch too.
        assert_eq!(Window::of(-1, 60), Window { start: -60, end: 0 });
        // A day window starts at midnight UTC.
        assert_eq!(Window::of(t, 86_400).start, 1_704_844_800);
        // 90 s windows are aligned on the epoch, not on the hour.
        assert_eq!(Window::of(t, 90).start % 90, 0);
    }

    #[test]
    fn key_values_from_records() {
        let paths: Vec<KeyPath> = [
            "recipientAccountId",
            "awsRegion",
            "serviceEventDetails.resourceArn",
        ]
        .iter()
        .map(|p| KeyPath::parse(p).unwrap())
        .collect();
        let record = json!({"recipientAccountId": "123456789012", "awsRegion": "us-east-1",
                            "serviceEventDetails": {"resourceArn": "arn:aws:ec2:::volume/v"}});
        assert_eq!(
            key_value(&paths, &record),
            r#"["123456789012","us-east-1","arn:aws:ec2:::volume/v"]"#
        );
        // Missing fields are null; arrays, numbers and objects keep their JSON.
        let record = json!({"recipientAccountId": 123456789012u64, "awsRegion": ["a", "b"],
                            "serviceEventDetails": {"resourceArn": {"x": 1}}});
        assert_eq!(
            key_value(&paths, &record),
            r#"[123456789012,["a","b"],{"x":1}]"#
        );
        assert_eq!(key_value(&paths, &json!({})), "[null,null,null]");
        assert_eq!(key_value(&[], &record), "[]");
        // A string "null" is not a missing field.
        assert_ne!(
            key_value(&paths[..1], &json!({"recipientAccountId": "null"})),
            key_value(&paths[..1], &json!({}))
        );
        for bad in ["", "a..b", ".a", "a b"] {
            assert!(KeyPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expiry_of_a_date_is_the_end_of_that_day() {
        assert_eq!(parse_expiry("2024-01-10"), Some(1_704_931_200));
        assert_eq!(parse_expiry("2024-01-10T08:00:00Z"), Some(1_704_873_600));
        assert_eq!(parse_expiry("soon"), None);
        assert_eq!(duration(3600), "1h");
        assert_eq!(duration(90), "90s");
        assert_eq!(duration(900), "15m");
        assert_eq!(duration(172_800), "2d");
    }
}
