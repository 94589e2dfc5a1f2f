//! Metrics without API calls: one CloudWatch Embedded Metric Format line per invocation on
//! standard output, which Lambda's log stream carries to CloudWatch Logs and CloudWatch turns
//! into metrics — namespace `TrailAlerts`, dimension `FunctionName`.
//!
//! Metrics (all `Count` but the lag): `Objects`, `ObjectsSkipped`, `Events`, `Records`,
//! `RecordsSkipped`, `Matches`, `AlertsPublished`, `Deduplicated`, `Grouped` (alerts gathered
//! into their group's notification), `Storms` and `StormFolded` (rules past `STORM_LIMIT` in a
//! delivery, and the matches folded into their storm messages), `Suppressed`,
//! `ShadowAlerts` (and `Shadow.<rule id>` per shadow rule that fired), `PagesSent`,
//! `PagesParked` (PagerDuty's budget spent or PagerDuty unavailable: sent later by the sweep),
//! `PagesRefused` (events PagerDuty refused as wrong), `PagesCaughtUp` (parked pages sent) and,
//! from the sweep when PagerDuty is configured, `PagesWaiting` and `OldestParkedPage` (seconds),
//! one
//! `Alerts.<severity>` per severity and one `Alerts.<rule id>` per rule that published, and
//! `DeliveryLag` (seconds: now minus the newest eventTime read, of records and of events), and
//! `RulesFallback` (1) in every invocation of an instance that alerts on the last rule set that
//! loaded because the current one does not. The EMF rules kept: at most
//! 100 metrics per directive (more are split across directives), every metric and dimension a
//! top-level member, `Timestamp` in milliseconds.

use serde_json::{json, Map, Value};

use super::counts::InvocationCounts;

pub const NAMESPACE: &str = "TrailAlerts";
/// EMF's limit of metrics per directive.
pub const MAX_METRICS_PER_DIRECTIVE: usize = 100;

/// The EMF document of one invocation.
pub fn emf(counts: &InvocationCounts, function: &str, now_ms: i64) -> Value {
    let mut values: Vec<(String, f64, &str)> = vec![
        ("Objects".into(), counts.objects as f64, "Count"),
        (
            "ObjectsSkipped".into(),
            counts.passed_over_objects as f64,
            "Count",
        ),
        ("Events".into(), counts.events as f64, "Count"),
        ("Records".into(), counts.records as f64, "Count"),
        (
            "RecordsSkipped".into(),
            counts.unreadable_records as f64,
            "Count",
        ),
        ("Matches".into(), counts.alerts as f64, "Count"),
        ("AlertsPublished".into(), counts.published as f64, "Count"),
        ("Deduplicated".into(), counts.held as f64, "Count"),
        ("Grouped".into(), counts.grouped as f64, "Count"),
        ("GroupWaiting".into(), counts.waiting as f64, "Count"),
        ("Storms".into(), counts.storms as f64, "Count"),
        ("StormFolded".into(), counts.folded as f64, "Count"),
        ("Suppressed".into(), counts.suppressed as f64, "Count"),
        ("ShadowAlerts".into(), counts.shadow as f64, "Count"),
        ("PagesSent".into(), counts.pages.sent as f64, "Count"),
        ("PagesParked".into(), counts.pages.parked as f64, "Count"),
        ("PagesRefused".into(), counts.pages.refused as f64, "Count"),
        (
            "PagesCaughtUp".into(),
            counts.pages.caught_up as f64,
            "Count",
        ),
    ];
    if counts.rules_fallback {
        values.push(("RulesFallback".into(), 1.0, "Count"));
    }
    for (severity, n) in &counts.per_severity {
        values.push((format!("Alerts.{severity}"), *n as f64, "Count"));
    }
    for (rule, n) in &counts.per_rule {
        values.push((format!("Alerts.{rule}"), *n as f64, "Count"));
    }
    for (rule, n) in &counts.shadow_per_rule {
        values.push((format!("Shadow.{rule}"), *n as f64, "Count"));
    }
    if let Some(backlog) = counts.page_backlog {
        values.push(("PagesWaiting".into(), backlog.waiting as f64, "Count"));
        values.push((
            "OldestParkedPage".into(),
            backlog.oldest_age as f64,
            "Seconds",
        ));
    }
    if let Some(newest) = counts.newest_event {
        let lag = (now_ms / 1000 - newest).max(0);
        values.push(("DeliveryLag".into(), lag as f64, "Seconds"));
    }
    let mut doc = Map::new();
    doc.insert("FunctionName".into(), json!(function));
    let directives: Vec<Value> = values
        .chunks(MAX_METRICS_PER_DIRECTIVE)
        .map(|chunk| {
            json!({
                "Namespace": NAMESPACE,
                "Dimensions": [["FunctionName"]],
                "Metrics": chunk.iter().map(|(name, _, unit)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            })
        })
        .collect();
    for (name, value, _) in values {
        doc.insert(name, json!(value));
    }
    doc.insert(
        "_aws".into(),
        json!({"Timestamp": now_ms, "CloudWatchMetrics": directives}),
    );
    Value::Object(doc)
}

/// Writes the invocation's EMF line to standard output (one line, nothing else on it).
pub fn emit(counts: &InvocationCounts, function: &str, now_ms: i64) {
    println!("{}", emf(counts, function, now_ms));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a document against the EMF specification's rules.
    pub fn valid_emf(doc: &Value) -> Result<(), String> {
        let aws = doc.get("_aws").ok_or("no _aws")?;
        let ts = aws["Timestamp"]
            .as_i64()
            .ok_or("Timestamp is not an integer")?;
        if ts < 1_000_000_000_000 {
            return Err("Timestamp is not in milliseconds".into());
        }
        let directives = aws["CloudWatchMetrics"]
            .as_array()
            .ok_or("no CloudWatchMetrics")?;
        for d in directives {
            if d["Namespace"].as_str().is_none_or(str::is_empty) {
                return Err("a directive without Namespace".into());
            }
            let metrics = d["Metrics"].as_array().ok_or("no Metrics")?;
            if metrics.len() > MAX_METRICS_PER_DIRECTIVE {
                return Err(format!("{} metrics in one directive", metrics.len()));
            }
            for m in metrics {
                let name = m["Name"].as_str().ok_or("a metric without Name")?;
                if !doc[name].is_number() {
                    return Err(format!("metric {name} has no numeric top-level value"));
                }
                if name.is_empty() || name.len() > 255 {
                    return Err(format!("metric name {name:?} is not 1-255 characters"));
                }
            }
            for set in d["Dimensions"].as_array().ok_or("no Dimensions")? {
                let set = set.as_array().ok_or("a dimension set is not a list")?;
                if set.len() > 30 {
                    return Err("more than 30 dimensions in a set".into());
                }
                for dim in set {
                    let dim = dim.as_str().ok_or("a dimension is not a string")?;
                    if !doc[dim].is_string() {
                        return Err(format!("dimension {dim} has no string top-level value"));
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn one_valid_emf_line_per_invocation() {
        let mut t = InvocationCounts {
            objects: 3,
            records: 1200,
            alerts: 5,
            published: 3,
            held: 2,
            newest_event: Some(1_704_873_600),
            ..InvocationCounts::default()
        };
        t.per_rule.insert("backup-job-failed".into(), 3);
        t.per_severity.insert("high".into(), 3);
        let doc = emf(&t, "trail-alerts-fn", 1_704_873_900_000);
        valid_emf(&doc).unwrap();
        assert_eq!(doc["FunctionName"], "trail-alerts-fn");
        assert_eq!(doc["Records"], 1200.0);
        assert_eq!(doc["Deduplicated"], 2.0);
        assert!(doc.get("RulesFallback").is_none());
        let fallback = emf(
            &InvocationCounts {
                rules_fallback: true,
                ..t.clone()
            },
            "trail-alerts-fn",
            1_704_873_900_000,
        );
        valid_emf(&fallback).unwrap();
        assert_eq!(fallback["RulesFallback"], 1.0);
        assert_eq!(doc["Alerts.backup-job-failed"], 3.0);
        assert_eq!(doc["Alerts.high"], 3.0);
        assert_eq!(doc["DeliveryLag"], 300.0);
        assert_eq!(doc["PagesSent"], 0.0);
        assert!(doc.get("PagesWaiting").is_none(), "only the sweep says it");
        let swept = InvocationCounts {
            pages: crate::lambda::pager::PageCounts {
                caught_up: 7,
                ..Default::default()
            },
            page_backlog: Some(crate::lambda::pager::Backlog {
                waiting: 4,
                oldest_age: 1200,
            }),
            ..InvocationCounts::default()
        };
        let doc = emf(&swept, "f", 1_704_873_900_000);
        valid_emf(&doc).unwrap();
        assert_eq!(
            (
                &doc["PagesCaughtUp"],
                &doc["PagesWaiting"],
                &doc["OldestParkedPage"]
            ),
            (&json!(7.0), &json!(4.0), &json!(1200.0))
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "TrailAlerts"
        );
        assert!(!doc.to_string().contains('\n'));
        // 150 rules that published: split across directives of at most 100.
        for i in 0..150 {
            t.per_rule.insert(format!("rule-{i:03}"), 1);
        }
        let doc = emf(&t, "f", 1_704_873_900_000);
        valid_emf(&doc).unwrap();
        let n: Vec<usize> = doc["_aws"]["CloudWatchMetrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["Metrics"].as_array().unwrap().len())
            .collect();
        assert_eq!(n, [100, 71]);
    }
}
