//! Absence: what did not happen. An absence rule's matches are heartbeats (a backup that
//! completed); once a key value has matched, the next match must arrive within `every` of the
//! last one. Whether a deadline has passed is judged against the trail's own progress — the
//! newest event time read for the key's account and Region (its watermark) — never the wall
//! clock alone, so that a delayed trail raises no false "missed" alert (the silence of the trail
//! is a different alert).
//!
//! [`Audit`] is the command line's: it keeps every heartbeat of a scan and tells every gap, the
//! ones that ended (resolved) and the one still open at the end of the scanned range, decided
//! through the function's progress store (`policy::store`) over memory.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::store::{block_on, Beat, MemoryProgress, ProgressStore, StoreError};
use super::{event_time, key_value, Absence};
pub use super::{overdue, place_of};
use crate::model::Rule;
use crate::time::format_timestamp;

/// How far the trail has got: per account and Region, the first and the newest event time read.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    places: BTreeMap<(String, String), (i64, i64)>,
}

impl Progress {
    pub fn see(&mut self, account: &str, region: &str, t: i64) {
        let entry = self
            .places
            .entry((account.to_owned(), region.to_owned()))
            .or_insert((t, t));
        entry.0 = entry.0.min(t);
        entry.1 = entry.1.max(t);
    }

    /// The watermark of a place; for `*` (a key that names no place), the newest of all.
    pub fn watermark(&self, account: &str, region: &str) -> Option<i64> {
        if let Some((_, newest)) = self.places.get(&(account.to_owned(), region.to_owned())) {
            return Some(*newest);
        }
        if account == "*" || region == "*" {
            return self
                .places
                .iter()
                .filter(|((a, r), _)| {
                    (account == "*" || a == account) && (region == "*" || r == region)
                })
                .map(|(_, (_, newest))| *newest)
                .max();
        }
        None
    }

    /// The first event time read anywhere: where expected keys start being expected.
    pub fn start(&self) -> Option<i64> {
        self.places.values().map(|(first, _)| *first).min()
    }
}

/// A gap in a key's heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub rule: String,
    pub key: String,
    pub account: String,
    pub region: String,
    /// The last heartbeat before the gap (`None`: an expected key never seen).
    pub last_seen: Option<i64>,
    /// When the key became overdue.
    pub deadline: i64,
    /// The heartbeat that ended the gap, if one did (resolved).
    pub resumed: Option<i64>,
    /// Still open: the watermark the deadline was judged against.
    pub watermark: Option<i64>,
}

impl Gap {
    /// `backup-missed ["…","vol-a"]: no match since 2024-01-10T08:00:00Z (due by …); …`.
    pub fn line(&self) -> String {
        let since = self.last_seen.map_or(
            "the start (expected, never seen)".to_owned(),
            format_timestamp,
        );
        match (self.resumed, self.watermark) {
            (Some(back), _) => format!(
                "{} {}: missing from {} (last seen {since}) until {}, {} late (resolved)",
                self.rule,
                self.key,
                format_timestamp(self.deadline),
                format_timestamp(back),
                super::duration((back - self.deadline).max(0) as u64)
            ),
            (None, wm) => format!(
                "{} {}: no match since {since}, overdue since {}; the trail has reached {} in {}/{}",
                self.rule,
                self.key,
                format_timestamp(self.deadline),
                wm.map_or("?".to_owned(), format_timestamp),
                self.account,
                self.region
            ),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "absence": true,
            "rule": self.rule,
            "key": serde_json::from_str::<Value>(&self.key).unwrap_or(Value::String(self.key.clone())),
            "account": self.account,
            "region": self.region,
            "lastSeen": self.last_seen.map(format_timestamp),
            "overdueSince": format_timestamp(self.deadline),
            "resolvedAt": self.resumed.map(format_timestamp),
            "watermark": self.watermark.map(format_timestamp),
        })
    }
}

/// Every heartbeat of a scan, per rule and key.
#[derive(Debug, Default)]
pub struct Audit {
    beats: BTreeMap<(String, String), (String, String, Vec<i64>)>,
}

impl Audit {
    /// Notes a match of an absence rule (a record without a readable time is ignored).
    pub fn heartbeat(&mut self, rule: &Rule, absence: &Absence, record: &Value) {
        let Some(t) = event_time(record) else { return };
        let (account, region) = place_of(record);
        let key = key_value(&absence.key, record);
        self.beats
            .entry((rule.id.clone(), key))
            .or_insert_with(|| (account, region, Vec::new()))
            .2
            .push(t);
    }

    /// Every gap: between heartbeats more than `every` apart (resolved), after the last one when
    /// the watermark of its place has passed the deadline, and for expected keys never seen
    /// once the trail has progressed past its start plus `every`.
    ///
    /// Decided as the function decides, through its progress store's port over memory
    /// (`policy::store::MemoryProgress`): the scan's heartbeats of a key are replayed in time
    /// order, each one a trail that has reached its time; a key whose deadline that passed
    /// takes its absence alert (`mark_missing`), and the heartbeat that ends it reports the
    /// alert it resolves (`heartbeat`), as the sweep and the function's heartbeats do live.
    pub fn gaps(&self, rules: &[Rule], progress: &Progress) -> Vec<Gap> {
        let store = MemoryProgress::default();
        // The memory store fails only if a thread panicked holding it.
        block_on(self.replay(&store, rules, progress)).unwrap_or_default()
    }

    async fn replay(
        &self,
        store: &dyn ProgressStore,
        rules: &[Rule],
        progress: &Progress,
    ) -> Result<Vec<Gap>, StoreError> {
        let mut out = Vec::new();
        for rule in rules.iter().filter(|r| r.enabled) {
            let Some(absence) = &rule.absence else {
                continue;
            };
            let every = absence.every as i64;
            for ((rid, key), (account, region, times)) in &self.beats {
                if rid != &rule.id {
                    continue;
                }
                let mut times = times.clone();
                times.sort_unstable();
                let beat = |last_seen: i64| Beat {
                    key_value: key.clone(),
                    account: account.clone(),
                    region: region.clone(),
                    last_seen,
                    alerted_for: None,
                };
                let gap = |last: i64, resumed: Option<i64>, watermark: Option<i64>| Gap {
                    rule: rid.clone(),
                    key: key.clone(),
                    account: account.clone(),
                    region: region.clone(),
                    last_seen: Some(last),
                    deadline: last + every,
                    resumed,
                    watermark,
                };
                let mut last: Option<i64> = None;
                for t in times {
                    // A heartbeat at t: the trail has reached t.
                    if let Some(l) = last.filter(|l| overdue(*l, absence.every, t)) {
                        store.mark_missing(&rule.id, &beat(l)).await?;
                    }
                    if let Some(before) = store.heartbeat(&rule.id, &beat(t)).await? {
                        out.push(gap(before.last_seen, Some(t), None));
                    }
                    last = Some(t);
                }
                if let Some(last) = last {
                    let watermark = progress.watermark(account, region);
                    if watermark.is_some_and(|wm| overdue(last, absence.every, wm))
                        && store.mark_missing(&rule.id, &beat(last)).await?
                    {
                        out.push(gap(last, None, watermark));
                    }
                }
            }
            for key in &absence.expect {
                if self.beats.contains_key(&(rule.id.clone(), key.clone())) {
                    continue;
                }
                let (Some(start), Some(watermark)) =
                    (progress.start(), progress.watermark("*", "*"))
                else {
                    continue;
                };
                let never = Beat {
                    key_value: key.clone(),
                    account: "*".into(),
                    region: "*".into(),
                    last_seen: start,
                    alerted_for: None,
                };
                if overdue(start, absence.every, watermark)
                    && store.mark_missing(&rule.id, &never).await?
                {
                    out.push(Gap {
                        rule: rule.id.clone(),
                        key: key.clone(),
                        account: "*".into(),
                        region: "*".into(),
                        last_seen: None,
                        deadline: start + every,
                        resumed: None,
                        watermark: Some(watermark),
                    });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse_document;
    use serde_json::json;

    fn rule(expect: &str) -> Rule {
        let doc = format!(
            "rules:\n  - id: backup-missed\n    description: d\n    severity: high\n    pattern: {{eventName: [BackupJobCompleted]}}\n    absence: {{key: [serviceEventDetails.resourceArn], every: 26h{expect}}}\n"
        );
        parse_document("a.yaml", &doc).expect("rule").remove(0)
    }

    fn beat(t: &str, resource: &str) -> Value {
        json!({"eventName": "BackupJobCompleted", "eventTime": t, "recipientAccountId": "111111111111",
               "awsRegion": "us-east-1", "serviceEventDetails": {"resourceArn": resource}})
    }

    fn gaps(rule: &Rule, beats: &[Value], progress: &[(&str, &str, &str)]) -> Vec<Gap> {
        let mut audit = Audit::default();
        for b in beats {
            audit.heartbeat(rule, rule.absence.as_ref().expect("absence"), b);
        }
        let mut p = Progress::default();
        for (a, r, t) in progress {
            p.see(a, r, crate::time::parse_timestamp(t).expect("time"));
        }
        audit.gaps(std::slice::from_ref(rule), &p)
    }

    #[test]
    fn a_key_is_missing_only_once_the_trail_has_passed_its_deadline() {
        let r = rule("");
        let beats = [beat("2024-01-01T02:00:00Z", "vol-a")];
        // The trail reached 26 h after the backup, not past it: not overdue.
        assert!(gaps(
            &r,
            &beats,
            &[("111111111111", "us-east-1", "2024-01-02T04:00:00Z")]
        )
        .is_empty());
        // Past it: overdue since 04:00 on the 2nd.
        let g = gaps(
            &r,
            &beats,
            &[("111111111111", "us-east-1", "2024-01-02T04:00:01Z")],
        );
        assert_eq!(g.len(), 1);
        assert_eq!(format_timestamp(g[0].deadline), "2024-01-02T04:00:00Z");
        assert_eq!(g[0].resumed, None);
        // A delayed trail: the wall clock is long past, but this account/Region's logs stop
        // before the deadline — no missed backup (another place's progress does not count).
        assert!(gaps(
            &r,
            &beats,
            &[
                ("111111111111", "us-east-1", "2024-01-01T23:00:00Z"),
                ("222222222222", "us-east-1", "2024-02-01T00:00:00Z")
            ]
        )
        .is_empty());
    }

    #[test]
    fn gaps_between_heartbeats_are_resolved_and_order_does_not_matter() {
        let r = rule("");
        // BusEvent out of order; one gap of 3 days between the 2nd and the 5th.
        let beats = [
            beat("2024-01-05T02:00:00Z", "vol-a"),
            beat("2024-01-01T02:00:00Z", "vol-a"),
            beat("2024-01-02T02:00:00Z", "vol-a"),
            beat("2024-01-06T02:00:00Z", "vol-a"),
        ];
        let g = gaps(
            &r,
            &beats,
            &[("111111111111", "us-east-1", "2024-01-06T10:00:00Z")],
        );
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(
            format_timestamp(g[0].last_seen.expect("seen")),
            "2024-01-02T02:00:00Z"
        );
        assert_eq!(
            format_timestamp(g[0].resumed.expect("resolved")),
            "2024-01-05T02:00:00Z"
        );
        assert!(g[0].line().contains("(resolved)"), "{}", g[0].line());
        // A key seen once and never again, once the trail passed its deadline.
        let g = gaps(
            &r,
            &[beat("2024-01-01T02:00:00Z", "vol-b")],
            &[("111111111111", "us-east-1", "2024-01-10T00:00:00Z")],
        );
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].key, r#"["vol-b"]"#);
    }

    #[test]
    fn declared_keys_are_expected_from_the_start() {
        let r = rule(", expect: [vol-a, vol-never]");
        let beats = [
            beat("2024-01-01T02:00:00Z", "vol-a"),
            beat("2024-01-02T01:00:00Z", "vol-a"),
        ];
        let progress = [
            ("111111111111", "us-east-1", "2024-01-01T00:00:00Z"),
            ("111111111111", "us-east-1", "2024-01-02T03:00:00Z"),
        ];
        let g = gaps(&r, &beats, &progress);
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(g[0].key, r#"["vol-never"]"#);
        assert_eq!(g[0].last_seen, None);
        assert_eq!(format_timestamp(g[0].deadline), "2024-01-02T02:00:00Z");
        // Not yet overdue when the trail has not reached start + every.
        assert!(gaps(&r, &beats, &progress[..1]).is_empty());
    }
}
