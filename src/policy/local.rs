//! Alert management in memory: the command line's `scan` and the rules' own tests decide
//! through the function's decision layer (`policy::store::admit`, as `decide_all` over borrowed
//! alerts), over the in-memory store,
//! so that the two front ends cannot drift: dedup, thresholds, groups and their waits, each
//! match counted once. What stays here is what only the command line does: suppressions
//! judged per match, and the roll-ups told at the end of a scan, when every window counts as
//! closed.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::store::{block_on, decide_all, is_group, MemoryState, StateStore, DEFAULT_LATENESS};
use super::{event_time, Suppression, Window};
use crate::alert::Alert;
use crate::model::RuleBook;

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
    /// Distinct values of the roll-up fields among the window's matches, per field.
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

/// Suppressions, and the decision layer over the memory store.
pub struct LocalPolicy<'s> {
    rules: &'s dyn RuleBook,
    suppressions: &'s [Suppression],
    /// The wall clock, for suppressions' expiry.
    now: i64,
    store: MemoryState,
    /// Matches of a rule with dedup, a threshold or a group whose record has no readable event
    /// time: alerted, never held back.
    pub untimed: u64,
}

impl<'s> LocalPolicy<'s> {
    pub fn new(rules: &'s dyn RuleBook, suppressions: &'s [Suppression], now: i64) -> Self {
        LocalPolicy {
            rules,
            suppressions,
            now,
            store: MemoryState::default(),
            untimed: 0,
        }
    }

    /// Judges one alert (of a CloudTrail record or an EventBridge event): suppressions, then
    /// the function's admission — dedup or the threshold, then the rule's group — as one
    /// delivery of one match, its claim marked published as the function's door marks it once
    /// SNS took the alert. A group's first alert that would wait is shown at once (a scan tells
    /// everything by its end).
    pub fn judge(&mut self, alert: &Alert) -> Verdict {
        let Some(rule) = self.rules.rule(&alert.rule_id) else {
            return Verdict::Alert;
        };
        if let Some(s) = self
            .suppressions
            .iter()
            .find(|s| s.covers(&rule.id, &alert.record, self.now))
        {
            return Verdict::Suppressed(s.id.clone());
        }
        if rule.grouping.is_none() && rule.group.is_none() {
            return Verdict::Alert;
        }
        if event_time(&alert.record).is_none() {
            // No time, no window: never hold back what cannot be placed.
            self.untimed += 1;
            return Verdict::Alert;
        }
        let decided = block_on(decide_all(
            &self.store,
            self.rules,
            std::slice::from_ref(alert),
            DEFAULT_LATENESS,
            self.now,
        ));
        // The memory store fails only if a thread panicked while holding it: never hold back
        // what could not be decided.
        let Ok((going, admitted)) = decided else {
            return Verdict::Alert;
        };
        let _ = block_on(self.store.mark_all_published(&admitted.claims));
        if !going.is_empty() || admitted.waiting > 0 {
            Verdict::Alert
        } else if admitted.grouped > 0 {
            Verdict::Grouped
        } else {
            Verdict::Held
        }
    }

    /// The roll-ups of every window that held matches back after its alert, and the
    /// notifications of every group that gathered alerts after its first, in rule, window and
    /// key order (at the end of a scan every window counts as closed).
    pub fn rollups(&self) -> Vec<Rollup> {
        let mut out: Vec<Rollup> = self
            .store
            .windows()
            .into_iter()
            .filter_map(|w| {
                w.claimed_by.as_ref()?;
                let group = is_group(&w.id);
                let more = if group {
                    w.count.saturating_sub(1)
                } else {
                    w.count.saturating_sub(w.needed)
                };
                (more > 0).then(|| Rollup {
                    rule: w.rule.clone(),
                    key: w.key_value.clone(),
                    window: Window {
                        start: w.window_start,
                        end: w.window_end,
                    },
                    more,
                    first_time: w.first_time.clone(),
                    first_id: w.first_id.clone(),
                    last_time: w.last_time.clone(),
                    last_id: w.last_id.clone(),
                    values: per_field(&w.values),
                    group,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.rule, a.group, a.window, &a.key).cmp(&(&b.rule, b.group, b.window, &b.key))
        });
        out
    }
}

/// A window's `field=value` values as the distinct values of each field (at most
/// [`MAX_DISTINCT`] each, in order).
fn per_field(values: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut fields: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for v in values {
        let Some((field, value)) = v.split_once('=') else {
            continue;
        };
        let set = fields.entry(field.to_owned()).or_default();
        if set.len() < MAX_DISTINCT {
            set.insert(value.to_owned());
        }
    }
    fields
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
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
        let set = crate::rules::RuleSet::new(doc.rules).expect("set");
        let rule = &set.rules()[0];
        let source = crate::alert::AlertSource::File { path: "g".into() };
        let mut e = LocalPolicy::new(&set, &[], 0);
        let verdicts: Vec<Verdict> = [
            failed(1, "a", 1),
            failed(2, "b", 2),
            failed(3, "a", 3),
            failed(4, "c", 14),
            failed(5, "d", 16),
        ]
        .iter()
        .enumerate()
        .map(|(i, r)| e.judge(&Alert::new(rule, r, source.clone(), i)))
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
        let told = e.rollups();
        let group: Vec<&Rollup> = told.iter().filter(|r| r.group).collect();
        assert_eq!(group.len(), 1);
        assert_eq!(group[0].more, 2);
        // The group's matches' distinct values, its first alert's included.
        assert_eq!(group[0].values["resource"], ["a", "b", "c"]);
        let dedup: Vec<&Rollup> = told.iter().filter(|r| !r.group).collect();
        assert_eq!((dedup.len(), dedup[0].more), (1, 1));
    }
}
