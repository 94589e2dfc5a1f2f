//! Alert management in memory: the command line's scan and the rules' own tests keep their
//! windows here, with the same semantics the function will keep in its state store.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use super::{event_time, key_value, Grouping, KeyPath, Suppression, Window};
use crate::rules::Rule;

/// What happens to one match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Raise the alert.
    Alert,
    /// Counted, not raised: a repeat within the window, or a match below the threshold.
    Held,
    /// Raised nothing: a suppression (its id) covers it.
    Suppressed(String),
}

/// One key value's window.
#[derive(Debug, Clone, Default)]
struct State {
    count: u64,
    alerted: bool,
    first: Option<(String, String)>,
    last: Option<(String, String)>,
    /// Distinct values of the roll-up fields (at most [`MAX_DISTINCT`] each).
    distinct: BTreeMap<String, BTreeSet<String>>,
}

/// The distinct values a roll-up lists per field.
pub const MAX_DISTINCT: usize = 10;

/// What a closed window held back: one message says how many more there were.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    pub rule: String,
    pub key: String,
    pub window: Window,
    /// Matches after the alert (dedup) or after the threshold was crossed.
    pub more: u64,
    /// The window's first and last matches (the alert's included).
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    /// Distinct values of the roll-up fields, per field.
    pub values: BTreeMap<String, Vec<String>>,
}

impl Rollup {
    /// `backup-job-failed ["123456789012","us-east-1"]: 36 more from 2024-01-10T08:01:00Z to …`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} {}: {} more in {}..{} (first {} {}, last {} {})",
            self.rule,
            self.key,
            self.more,
            crate::time::format_timestamp(self.window.start),
            crate::time::format_timestamp(self.window.end),
            self.first_time.as_deref().unwrap_or("?"),
            self.first_id.as_deref().unwrap_or("?"),
            self.last_time.as_deref().unwrap_or("?"),
            self.last_id.as_deref().unwrap_or("?"),
        );
        for (field, values) in &self.values {
            s.push_str(&format!("; {field}: {}", values.join(", ")));
        }
        s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "rollup": true,
            "rule": self.rule,
            "key": serde_json::from_str::<Value>(&self.key).unwrap_or(Value::String(self.key.clone())),
            "windowStart": crate::time::format_timestamp(self.window.start),
            "windowEnd": crate::time::format_timestamp(self.window.end),
            "more": self.more,
            "firstEventTime": self.first_time,
            "lastEventTime": self.last_time,
            "firstEventID": self.first_id,
            "lastEventID": self.last_id,
            "values": self.values,
        })
    }
}

/// Windows and suppressions, in memory.
pub struct Engine<'s> {
    suppressions: &'s [Suppression],
    /// The wall clock, for suppressions' expiry.
    now: i64,
    windows: HashMap<(String, String, Window), State>,
    /// Matches of a grouped rule whose record has no readable event time: alerted, ungrouped.
    pub untimed: u64,
}

impl<'s> Engine<'s> {
    pub fn new(suppressions: &'s [Suppression], now: i64) -> Self {
        Engine {
            suppressions,
            now,
            windows: HashMap::new(),
            untimed: 0,
        }
    }

    /// Judges one match of `rule` on `record` (a CloudTrail record or an EventBridge event).
    pub fn judge(&mut self, rule: &Rule, record: &Value) -> Verdict {
        if let Some(s) = self
            .suppressions
            .iter()
            .find(|s| s.covers(&rule.id, record, self.now))
        {
            return Verdict::Suppressed(s.id.clone());
        }
        let Some(grouping) = &rule.grouping else {
            return Verdict::Alert;
        };
        let Some(t) = event_time(record) else {
            // No time, no window: never hold back what cannot be placed.
            self.untimed += 1;
            return Verdict::Alert;
        };
        let window = Window::of(t, grouping.window());
        let key = key_value(grouping.key(), record);
        let state = self
            .windows
            .entry((rule.id.clone(), key, window))
            .or_default();
        state.count += 1;
        let text = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_owned);
        let seen = (
            text("eventTime")
                .or_else(|| text("time"))
                .unwrap_or_default(),
            text("eventID").or_else(|| text("id")).unwrap_or_default(),
        );
        // The window's first and last matches, as the function's state store keeps them.
        state.first.get_or_insert_with(|| seen.clone());
        state.last = Some(seen);
        if state.alerted {
            for path in rollup_fields(rule) {
                let v = path.get(record).map_or("null".to_owned(), |v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                let set = state.distinct.entry(path.to_string()).or_default();
                if set.len() < MAX_DISTINCT {
                    set.insert(v);
                }
            }
            return Verdict::Held;
        }
        if state.count >= grouping.count() {
            state.alerted = true;
            return Verdict::Alert;
        }
        Verdict::Held
    }

    /// The roll-ups of every window that held matches back after its alert, in rule, window and
    /// key order (at the end of a scan every window counts as closed).
    pub fn rollups(&self, rules: &[Rule]) -> Vec<Rollup> {
        let mut out: Vec<Rollup> = self
            .windows
            .iter()
            .filter_map(|((rule, key, window), state)| {
                let grouping = rules.iter().find(|r| &r.id == rule)?.grouping.as_ref()?;
                let more = state.count.checked_sub(grouping.count())?;
                (state.alerted && more > 0).then(|| Rollup {
                    rule: rule.clone(),
                    key: key.clone(),
                    window: *window,
                    more,
                    first_time: state.first.as_ref().map(|f| f.0.clone()),
                    first_id: state.first.as_ref().map(|f| f.1.clone()),
                    last_time: state.last.as_ref().map(|l| l.0.clone()),
                    last_id: state.last.as_ref().map(|l| l.1.clone()),
                    values: state
                        .distinct
                        .iter()
                        .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
                        .collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.rule, a.window, &a.key).cmp(&(&b.rule, b.window, &b.key)));
        out
    }
}

/// The fields whose distinct values a rule's roll-up lists.
fn rollup_fields(rule: &Rule) -> &[KeyPath] {
    match &rule.grouping {
        Some(Grouping::Dedup { .. } | Grouping::Threshold { .. }) => &rule.rollup_fields,
        None => &[],
    }
}
