//! What one invocation (or one SQS message) did, counted: the handler's response and the
//! metrics' one EMF line are both made from it.

use std::collections::BTreeMap;
use std::ops::AddAssign;

use serde_json::{json, Value};

use super::object::ObjectOutcome;
use super::pager::PageCounts;
use crate::rules::Severity;

/// Counts over one invocation (or one SQS message).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvocationCounts {
    pub objects: u64,
    /// Objects passed over without being read (not logs, empty): `skippedObjects` in the
    /// response.
    pub passed_over_objects: u64,
    pub ignored_notifications: u64,
    pub test_events: u64,
    /// EventBridge events matched as they are (CloudTrail events and services' own).
    pub events: u64,
    pub records: u64,
    /// Records that could not be read: `skippedRecords` in the response.
    pub unreadable_records: u64,
    pub alerts: u64,
    pub published: u64,
    /// Matches dedup or a threshold held back, and alerts a suppression silenced.
    pub held: u64,
    /// Alerts gathered into their group's notification.
    pub grouped: u64,
    /// First alerts of groups with a wait, told by the sweep when it is over.
    pub waiting: u64,
    pub suppressed: u64,
    /// Alerts published, per rule and per severity.
    pub per_rule: BTreeMap<String, u64>,
    pub per_severity: BTreeMap<String, u64>,
    /// The newest eventTime read (of records, and of EventBridge events): the delivery lag's
    /// end.
    pub newest_event: Option<i64>,
    /// Shadow rules' alerts (written, never published), in all and per rule.
    pub shadow: u64,
    pub shadow_per_rule: BTreeMap<String, u64>,
    /// What paging did: sent, parked, refused, parked ones caught up.
    pub pages: PageCounts,
    /// Pages left parked after a sweep (the sweep's metrics only).
    pub page_backlog: Option<super::pager::Backlog>,
    /// Rules that stormed in a delivery (one folded message each), and matches folded.
    pub storms: u64,
    pub folded: u64,
    /// The instance alerts on the last rule set that loaded, the current one having failed to
    /// (`RulesFallback`, set per invocation, not added up).
    pub rules_fallback: bool,
}

impl From<&ObjectOutcome> for InvocationCounts {
    fn from(o: &ObjectOutcome) -> Self {
        match o {
            ObjectOutcome::PassedOver(_) => InvocationCounts {
                objects: 1,
                passed_over_objects: 1,
                ..InvocationCounts::default()
            },
            ObjectOutcome::Read {
                stats,
                published,
                report,
            } => {
                let mut t = InvocationCounts {
                    objects: 1,
                    records: stats.records,
                    unreadable_records: stats.unreadable,
                    alerts: stats.alerts,
                    published: *published,
                    held: report.held,
                    grouped: report.grouped,
                    waiting: report.waiting,
                    storms: report.storms,
                    folded: report.folded,
                    suppressed: report.suppressed,
                    newest_event: report.newest_event,
                    pages: report.pages,
                    ..InvocationCounts::default()
                };
                t.count_published(&report.published);
                t.count_shadow(report.shadow.iter().map(String::as_str));
                t
            }
        }
    }
}

impl AddAssign for InvocationCounts {
    fn add_assign(&mut self, o: InvocationCounts) {
        self.objects += o.objects;
        self.passed_over_objects += o.passed_over_objects;
        self.ignored_notifications += o.ignored_notifications;
        self.test_events += o.test_events;
        self.events += o.events;
        self.records += o.records;
        self.unreadable_records += o.unreadable_records;
        self.alerts += o.alerts;
        self.published += o.published;
        self.held += o.held;
        self.grouped += o.grouped;
        self.waiting += o.waiting;
        self.suppressed += o.suppressed;
        for (k, v) in o.per_rule {
            *self.per_rule.entry(k).or_default() += v;
        }
        for (k, v) in o.per_severity {
            *self.per_severity.entry(k).or_default() += v;
        }
        self.newest_event = self.newest_event.max(o.newest_event);
        self.shadow += o.shadow;
        self.pages += o.pages;
        self.storms += o.storms;
        self.folded += o.folded;
        for (k, v) in o.shadow_per_rule {
            *self.shadow_per_rule.entry(k).or_default() += v;
        }
    }
}

impl InvocationCounts {
    /// Counts shadow alerts per rule.
    pub fn count_shadow<'r>(&mut self, rules: impl Iterator<Item = &'r str>) {
        for rule in rules {
            self.shadow += 1;
            *self.shadow_per_rule.entry(rule.to_owned()).or_default() += 1;
        }
    }

    /// Counts published alerts per rule and severity.
    pub fn count_published(&mut self, published: &[(String, Severity)]) {
        for (rule, severity) in published {
            *self.per_rule.entry(rule.clone()).or_default() += 1;
            *self
                .per_severity
                .entry(severity.as_str().to_owned())
                .or_default() += 1;
        }
    }

    pub(super) fn to_json(&self) -> Value {
        let mut v = json!({
            "objects": self.objects, "skippedObjects": self.passed_over_objects,
            "ignoredNotifications": self.ignored_notifications, "testEvents": self.test_events,
            "events": self.events,
            "records": self.records, "skippedRecords": self.unreadable_records,
            "alerts": self.alerts, "published": self.published,
        });
        if self.shadow > 0 {
            v["shadow"] = json!(self.shadow);
        }
        if self.held > 0 || self.suppressed > 0 || self.grouped > 0 || self.waiting > 0 {
            v["held"] = json!(self.held);
            v["grouped"] = json!(self.grouped);
            v["suppressed"] = json!(self.suppressed);
        }
        if self.waiting > 0 {
            v["waiting"] = json!(self.waiting);
        }
        if self.storms > 0 {
            v["storms"] = json!(self.storms);
            v["folded"] = json!(self.folded);
        }
        if self.pages != PageCounts::default() {
            v["pages"] = pages_json(&self.pages);
        }
        v
    }
}

/// What paging did, in a response.
pub(super) fn pages_json(p: &PageCounts) -> Value {
    let mut v =
        json!({"sent": p.sent, "parked": p.parked, "refused": p.refused, "caughtUp": p.caught_up});
    if p.not_open > 0 {
        v["resolvesNotOpen"] = json!(p.not_open);
    }
    v
}
