//! Alert management in memory: the command line's scan and the rules' own tests keep their
//! windows here, with the same semantics the function will keep in its state store.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use super::{event_time, key_value, Grouping, KeyPath, Suppression, Window};
use crate::model::Rule;

/// What happens to one match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Raise the alert.
    Alert,
    /// Counted, not raised: a repeat within the window, or a match below the threshold.
    Held,
    /// New (dedup let it through), but a later alert of its group's window: told in the
    /// group's notification.
    Grouped,
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
    /// A group's notification (the alerts gathered after its first), not a dedup roll-up.
    pub group: bool,
}

impl Rollup {
    /// `backup-job-failed ["123456789012","us-east-1"]: 36 more from 2024-01-10T08:01:00Z to …`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} {}: {} more {}in {}..{} (first {} {}, last {} {})",
            self.rule,
            self.key,
            self.more,
            if self.group {
                "alerts of the group "
            } else {
                ""
            },
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
            "group": self.group,
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
    /// Groups' windows: the first alert goes out, the later ones are gathered.
    groups: HashMap<(String, String, Window), State>,
    /// Matches of a grouped rule whose record has no readable event time: alerted, ungrouped.
    pub untimed: u64,
}

impl<'s> Engine<'s> {
    pub fn new(suppressions: &'s [Suppression], now: i64) -> Self {
        Engine {
            suppressions,
            now,
            windows: HashMap::new(),
            groups: HashMap::new(),
            untimed: 0,
        }
    }

    /// Judges one match of `rule` on `record` (a CloudTrail record or an EventBridge event):
    /// suppressions, then dedup or the threshold, then the rule's group.
    pub fn judge(&mut self, rule: &Rule, record: &Value) -> Verdict {
        match self.judge_new(rule, record) {
            Verdict::Alert => self.group(rule, record),
            other => other,
        }
    }

    /// The group's verdict on an alert dedup let through.
    fn group(&mut self, rule: &Rule, record: &Value) -> Verdict {
        let Some(group) = &rule.group else {
            return Verdict::Alert;
        };
        let Some(t) = event_time(record) else {
            return Verdict::Alert;
        };
        let window = Window::of(t, group.interval);
        let key = key_value(&group.by, record);
        let state = self
            .groups
            .entry((rule.incident.clone(), key, window))
            .or_default();
        state.count += 1;
        note(state, record);
        if state.alerted {
            for path in group_fields(rule) {
                distinct(state, path, record);
            }
            return Verdict::Grouped;
        }
        state.alerted = true;
        Verdict::Alert
    }

    fn judge_new(&mut self, rule: &Rule, record: &Value) -> Verdict {
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
            .entry((rule.incident.clone(), key, window))
            .or_default();
        state.count += 1;
        note(state, record);
        if state.alerted {
            for path in rollup_fields(rule) {
                distinct(state, path, record);
            }
            return Verdict::Held;
        }
        if state.count >= grouping.count() {
            state.alerted = true;
            return Verdict::Alert;
        }
        Verdict::Held
    }

    /// The roll-ups of every window that held matches back after its alert, and the
    /// notifications of every group that gathered alerts after its first, in rule, window and
    /// key order (at the end of a scan every window counts as closed).
    pub fn rollups(&self, rules: &[Rule]) -> Vec<Rollup> {
        let told = |((rule, key, window), state): (&(String, String, Window), &State),
                    more: u64,
                    group: bool| Rollup {
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
            group,
        };
        let groups = self.groups.iter().filter_map(|entry| {
            let more = entry.1.count.checked_sub(1)?;
            (more > 0).then(|| told(entry, more, true))
        });
        let mut out: Vec<Rollup> = self
            .windows
            .iter()
            .filter_map(|entry| {
                let ((rule, _, _), state) = entry;
                let grouping = rules
                    .iter()
                    .find(|r| &r.incident == rule)?
                    .grouping
                    .as_ref()?;
                let more = state.count.checked_sub(grouping.count())?;
                (state.alerted && more > 0).then(|| told(entry, more, false))
            })
            .chain(groups)
            .collect();
        out.sort_by(|a, b| {
            (&a.rule, a.group, a.window, &a.key).cmp(&(&b.rule, b.group, b.window, &b.key))
        });
        out
    }
}

/// Notes a match as its window's first (if it is) and last, as the function's store keeps them.
fn note(state: &mut State, record: &Value) {
    let text = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_owned);
    let seen = (
        text("eventTime")
            .or_else(|| text("time"))
            .unwrap_or_default(),
        text("eventID").or_else(|| text("id")).unwrap_or_default(),
    );
    state.first.get_or_insert_with(|| seen.clone());
    state.last = Some(seen);
}

/// Keeps the record's value at `path` among the window's distinct values of it.
fn distinct(state: &mut State, path: &KeyPath, record: &Value) {
    let v = path.get(record).map_or("null".to_owned(), |v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let set = state.distinct.entry(path.to_string()).or_default();
    if set.len() < MAX_DISTINCT {
        set.insert(v);
    }
}

/// The fields a group's notification lists the distinct values of: what tells its alerts apart
/// (the dedup or threshold key), else the rule's roll-up fields.
pub fn group_fields(rule: &Rule) -> &[KeyPath] {
    match &rule.grouping {
        Some(g) if !g.key().is_empty() => g.key(),
        _ => &rule.rollup_fields,
    }
}

/// The fields whose distinct values a rule's roll-up lists.
fn rollup_fields(rule: &Rule) -> &[KeyPath] {
    match &rule.grouping {
        Some(Grouping::Dedup { .. } | Grouping::Threshold { .. }) => &rule.rollup_fields,
        None => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse_rule_document;

    fn failed(n: u32, volume: &str, minute: u32) -> Value {
        json!({"eventTime": format!("2024-08-01T02:{minute:02}:{:02}Z", n % 60),
               "eventID": format!("e{n}"), "recipientAccountId": "1", "awsRegion": "r",
               "eventName": "BackupJobCompleted", "resource": volume})
    }

    #[test]
    fn a_group_lets_its_first_new_alert_out_and_gathers_the_rest_of_its_window() {
        let doc = parse_rule_document(
            "g.yaml",
            "rules:\n  - id: g\n    description: d\n    severity: high\n    pattern: {eventName: [BackupJobCompleted]}\n    dedup: {key: [resource], window: 1h}\n    group: {by: [recipientAccountId, awsRegion], interval: 15m}\n",
        )
        .expect("rules");
        let rule = &doc.rules[0];
        let mut e = Engine::new(&[], 0);
        let verdicts: Vec<Verdict> = [
            failed(1, "a", 1),
            failed(2, "b", 2),
            failed(3, "a", 3),
            failed(4, "c", 14),
            failed(5, "d", 16),
        ]
        .iter()
        .map(|r| e.judge(rule, r))
        .collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Alert,   // the group's first
                Verdict::Grouped, // new (b), gathered
                Verdict::Held,    // a repeat of a: dedup holds it first
                Verdict::Grouped, // new (c), same window (02:00-02:15)
                Verdict::Alert,   // the next window's first
            ]
        );
        let told = e.rollups(&doc.rules);
        let group: Vec<&Rollup> = told.iter().filter(|r| r.group).collect();
        assert_eq!(group.len(), 1);
        assert_eq!(group[0].more, 2);
        assert_eq!(group[0].values["resource"], ["b", "c"]);
        let dedup: Vec<&Rollup> = told.iter().filter(|r| !r.group).collect();
        assert_eq!((dedup.len(), dedup[0].more), (1, 1));
    }
}
