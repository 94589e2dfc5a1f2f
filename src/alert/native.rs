//! Alerts from events EventBridge delivered: a CloudTrail event is its record, as if read from
//! S3; a service's own event (AWS Backup's job, recovery point, vault, plan, Region setting and
//! scan events, or any other service's) gets its facts from the envelope (`id`, `time`,
//! `source`, `detail-type`, `account`, `region`) and its state from `detail.state` or
//! `detail.status` — AWS Backup uses both.

use serde_json::Value;

use super::{job_summary, text, vault_name, Alert, AlertSource, EventInfo};
use crate::model::Rule;
use crate::pattern::{explain_bus_event, BusEvent};

impl AlertSource {
    /// Where an event EventBridge delivered came from.
    pub fn eventbridge(event: &Value) -> Self {
        let s = |k: &str| {
            event
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        AlertSource::EventBridge {
            id: s("id"),
            source: s("source"),
            detail_type: s("detail-type"),
        }
    }
}

impl Alert {
    /// The alert a rule raises on an event EventBridge delivered.
    pub fn from_bus_event(rule: &Rule, event: &Value) -> Self {
        let source = AlertSource::eventbridge(event);
        match BusEvent::of(event) {
            BusEvent::CloudTrail(record) => Alert::new(rule, record, source, 0),
            BusEvent::Native(event) => {
                let info = native_info(event);
                let summary = native_summary(event, &info);
                let matched = explain_bus_event(&rule.pattern, event);
                Alert::build(rule, event.clone(), info, summary, matched, source, 0)
            }
        }
    }
}

/// The facts of a service's own event.
fn native_info(event: &Value) -> EventInfo {
    let s = |k: &str| text(event.get(k));
    let detail = event.get("detail");
    let d = |k: &str| detail.and_then(|d| text(d.get(k)));
    // A malware scan that found threats says so in its result, not its state.
    let threats = detail
        .and_then(|d| d.pointer("/scanResult/scanResultStatus"))
        .and_then(Value::as_str)
        .filter(|r| *r == "THREATS_FOUND")
        .map(str::to_owned);
    EventInfo {
        event_id: s("id"),
        event_time: s("time"),
        event_source: s("source"),
        event_name: s("detail-type"),
        event_type: None,
        account: s("account"),
        region: s("region"),
        principal: None,
        actor: None,
        source_ip: None,
        error_code: None,
        error_message: None,
        state: threats
            .or_else(|| d("state"))
            .or_else(|| d("status"))
            .or_else(|| d("indexStatus")),
        insight: None,
    }
}

/// One line for a service's own event: jobs as CloudTrail's job events are told; recovery
/// points, vaults, plans and Region settings in their own words; anything else by its
/// detail-type and state.
fn native_summary(event: &Value, info: &EventInfo) -> String {
    let empty = Value::Null;
    let detail = event.get("detail").unwrap_or(&empty);
    let d = |k: &str| text(detail.get(k));
    let state = info.state.as_deref();
    if let Some(job) = job_summary(detail, state) {
        return job;
    }
    let detail_type = info.event_name.as_deref().unwrap_or("An event");
    let state_text = state.unwrap_or("changed");
    let own = event.get("source").and_then(Value::as_str) == Some("trail-alerts");
    match detail_type {
        "Trail Silent" if own => format!(
            "No CloudTrail delivery read for {}/{} for {} (allowed {}); the last was at {}, its newest event {}{}",
            info.account.as_deref().unwrap_or("?"),
            info.region.as_deref().unwrap_or("?"),
            d("silentFor").unwrap_or_default(),
            d("allowed").unwrap_or_default(),
            d("lastDelivery").unwrap_or_default(),
            d("newestEvent").unwrap_or_default(),
            if detail.get("wholePipeline") == Some(&Value::Bool(true)) {
                "; nothing at all has been read for that long: the whole pipeline may have stopped"
            } else {
                ""
            }
        ),
        "Trail Silent Resolved" if own => format!(
            "Deliveries resumed for {}/{} (a delivery read at {}, its newest event {})",
            info.account.as_deref().unwrap_or("?"),
            info.region.as_deref().unwrap_or("?"),
            d("deliveryAt").unwrap_or_default(),
            d("newestEvent").unwrap_or_default()
        ),
        "Heartbeat Missing" if own => format!(
            "No {} match for {} since {} (expected every {}); overdue since {}, the trail has reached {}",
            d("rule").unwrap_or_default(),
            d("key").unwrap_or_default(),
            d("lastSeen").unwrap_or_default(),
            d("every").unwrap_or_default(),
            d("overdueSince").unwrap_or_default(),
            d("watermark").unwrap_or_default()
        ),
        "Heartbeat Resolved" if own => format!(
            "{} is back for {}: seen again at {} after the match of {}, {} late",
            d("rule").unwrap_or_default(),
            d("key").unwrap_or_default(),
            d("seenAgain").unwrap_or_default(),
            d("lastSeen").unwrap_or_default(),
            d("missingFor").unwrap_or_default()
        ),
        "Recovery Point State Change" | "Recovery Point Change" => {
            let mut s = "Recovery point".to_owned();
            match (d("resourceType"), d("resourceArn")) {
                (Some(t), Some(r)) => s.push_str(&format!(" of {t} resource {r}")),
                (None, Some(r)) => s.push_str(&format!(" of {r}")),
                (Some(t), None) => s.push_str(&format!(" of {t}")),
                (None, None) => {}
            }
            if let Some(v) =
                d("backupVaultName").or_else(|| d("backupVaultArn").map(|a| vault_name(&a)))
            {
                s.push_str(&format!(" in vault {v}"));
            }
            s.push_str(&format!(" is {state_text}"));
            if let Some(msg) = d("statusMessage") {
                s.push_str(&format!(": {}", msg.trim_matches('"')));
            }
            s
        }
        "Recovery Point Index State Change" => {
            let mut s = format!(
                "Index of recovery point {} is {state_text}",
                d("recoveryPointArn").unwrap_or_else(|| "?".into())
            );
            if let Some(msg) = d("indexStatusMessage") {
                s.push_str(&format!(": {msg}"));
            }
            s
        }
        "Backup Vault State Change" => {
            let mut s = format!(
                "Vault {} {state_text}",
                d("backupVaultName").unwrap_or_else(|| "?".into())
            );
            match d("isLocked").as_deref() {
                Some("true") => s.push_str(" (vault lock on)"),
                Some("false") => s.push_str(" (vault lock OFF)"),
                _ => {}
            }
            s
        }
        "Backup Plan State Change" => format!(
            "Backup plan {} {state_text}",
            d("backupPlanId").unwrap_or_else(|| "?".into())
        ),
        "Region Setting State Change" => {
            let prefs = detail
                .get("ResourceTypeOptInPreference")
                .and_then(Value::as_object);
            let list = |on: bool| -> Vec<String> {
                prefs
                    .into_iter()
                    .flatten()
                    .filter(|(_, v)| opted(v) == Some(on))
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            let (off, on) = (list(false), list(true));
            let mut s = format!("Region settings {state_text}");
            if !off.is_empty() {
                s.push_str(&format!(": no longer backed up: {}", off.join(", ")));
            }
            if !on.is_empty() {
                s.push_str(&format!("; opted in: {}", on.join(", ")));
            }
            s
        }
        other => {
            let mut s = format!(
                "{other} from {}",
                info.event_source.as_deref().unwrap_or("an unknown source")
            );
            if let Some(state) = state {
                s.push_str(&format!(": {state}"));
            }
            s
        }
    }
}

/// A Region opt-in preference: `true`/`false`, as JSON booleans or strings.
fn opted(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}
