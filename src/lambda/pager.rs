//! The PagerDuty destination (Events API v2): each alert of a paging severity is a `trigger`
//! whose `dedup_key` is the alert key, so that repeats join one incident; resolutions
//! (absence and silence resolved, and matches of rules that `resolves:` another rule's
//! alerts) are `resolve`s of the same key.
//!
//! 429 and 5xx answers are retried with back-off, then fail the invocation as retryable; any
//! other 4xx is a non-retryable error naming the cause. The routing key is read at cold start
//! from Secrets Manager or an SSM SecureString (`aws.rs`), never from the environment, and
//! never logged.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::alert::Alert;
use crate::rules::Severity;

/// The Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's limits: a dedup key of 255 characters, a summary of 1,024.
pub const MAX_DEDUP_KEY: usize = 255;
pub const MAX_SUMMARY: usize = 1024;

/// A PagerDuty call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PagerDuty: {message}")]
pub struct PagerError {
    pub message: String,
    /// 429, 5xx or a network fault: trying again can help.
    pub retryable: bool,
}

/// Sending one event to the Events API.
#[async_trait]
pub trait Pager: Send + Sync {
    async fn enqueue(&self, event: &Value) -> Result<(), PagerError>;
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// PagerDuty's severity for ours.
pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "info",
    }
}

/// The `trigger` event of an alert, or the `resolve` of a resolution (an own event whose
/// `detail.state` is `RESOLVED`).
pub fn event_for(alert: &Alert, routing_key: &str) -> Value {
    let dedup_key = cut(&alert.key, MAX_DEDUP_KEY);
    let resolved = alert
        .record
        .pointer("/detail/state")
        .and_then(Value::as_str)
        == Some("RESOLVED");
    if resolved {
        return resolve(&dedup_key, routing_key);
    }
    let e = &alert.event;
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": cut(&format!("{} — {}", alert.subject, alert.summary), MAX_SUMMARY),
            "source": format!("{}/{}", e.account.as_deref().unwrap_or("?"), e.region.as_deref().unwrap_or("?")),
            "severity": severity(alert.severity),
            "timestamp": e.event_time,
            "component": e.event_source,
            "group": e.account,
            "class": alert.rule_id,
            "custom_details": {
                "rule": alert.rule_id, "description": alert.description,
                "eventID": e.event_id, "eventName": e.event_name, "state": e.state,
                "principal": e.principal, "errorCode": e.error_code,
                "matched": alert.matched_json(), "runbook": alert.runbook,
                "source": alert.source.display(),
            },
        },
    })
}

/// A `resolve` of the incident of `dedup_key`.
pub fn resolve(dedup_key: &str, routing_key: &str) -> Value {
    json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": cut(dedup_key, MAX_DEDUP_KEY)})
}

/// The Events API over HTTPS (or HTTP, for a local stand-in), with retries.
pub struct HttpPager {
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    url: hyper::Uri,
    /// Attempts after the first, and the first back-off (doubling).
    pub retries: u32,
    pub backoff: Duration,
}

impl HttpPager {
    pub fn new(url: &str) -> Result<Self, String> {
        let url: hyper::Uri = url
            .parse()
            .map_err(|e| format!("PAGERDUTY_URL {url:?}: {e}"))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpPager {
            client: Client::builder(TokioExecutor::new()).build(https),
            url,
            retries: 3,
            backoff: Duration::from_millis(200),
        })
    }

    async fn post(&self, body: &str) -> Result<(u16, String), PagerError> {
        let request = hyper::Request::post(self.url.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| PagerError {
                message: e.to_string(),
                retryable: false,
            })?;
        let call = self.client.request(request);
        let response = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .map_err(|_| PagerError {
                message: "no answer within 10 s".into(),
                retryable: true,
            })?
            .map_err(|e| PagerError {
                message: crate::describe::chain(&e),
                retryable: true,
            })?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Ok((status, text))
    }
}

#[async_trait]
impl Pager for HttpPager {
    async fn enqueue(&self, event: &Value) -> Result<(), PagerError> {
        let body = event.to_string();
        let mut wait = self.backoff;
        let mut attempt = 0;
        loop {
            let outcome = self.post(&body).await;
            let retry = match &outcome {
                Ok((status, _)) if (200..300).contains(status) => return Ok(()),
                Ok((status, text)) if *status == 429 || *status >= 500 => PagerError {
                    message: format!("HTTP {status}: {}", cut(text, 300)),
                    retryable: true,
                },
                Ok((status, text)) => {
                    return Err(PagerError {
                        message: format!(
                            "HTTP {status}, the event was refused: {}",
                            cut(text, 300)
                        ),
                        retryable: false,
                    })
                }
                Err(e) if e.retryable => e.clone(),
                Err(e) => return Err(e.clone()),
            };
            if attempt >= self.retries {
                return Err(PagerError {
                    message: format!("{} (after {} attempts)", retry.message, attempt + 1),
                    retryable: true,
                });
            }
            attempt += 1;
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
}

/// Which alerts page, and with which routing key.
pub struct Paging {
    pub pager: Box<dyn Pager>,
    pub routing_key: String,
    /// Alerts below this severity do not page (resolutions always go).
    pub min_severity: Severity,
}

impl Paging {
    /// Sends the triggers and resolutions of these alerts, and the resolves of these keys;
    /// returns how many events went.
    pub async fn send(&self, alerts: &[Alert], resolves: &[String]) -> Result<u64, PagerError> {
        let mut sent = 0;
        for alert in alerts {
            let resolved = alert
                .record
                .pointer("/detail/state")
                .and_then(Value::as_str)
                == Some("RESOLVED");
            let rollup = alert.record.get("rollup") == Some(&Value::Bool(true));
            if rollup || (!resolved && alert.severity < self.min_severity) {
                continue;
            }
            self.pager
                .enqueue(&event_for(alert, &self.routing_key))
                .await?;
            sent += 1;
        }
        for key in resolves {
            self.pager.enqueue(&resolve(key, &self.routing_key)).await?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// Splits off the matches of recovery rules (`resolves:`): they are no alerts; each gives the
/// keys of the alerts it resolves (the target rule's key, computed on the same record).
pub fn resolutions(rules: &crate::rules::RuleSet, alerts: Vec<Alert>) -> (Vec<Alert>, Vec<String>) {
    let mut keep = Vec::with_capacity(alerts.len());
    let mut keys = Vec::new();
    for alert in alerts {
        let Some(rule) = rules.rules().iter().find(|r| r.id == alert.rule_id) else {
            keep.push(alert);
            continue;
        };
        if rule.resolves.is_empty() {
            keep.push(alert);
            continue;
        }
        for target in &rule.resolves {
            if let Some(t) = rules.rules().iter().find(|r| &r.id == target) {
                let key =
                    crate::alert::alert_key(t, &alert.record, alert.event.event_id.as_deref());
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    (keep, keys)
}
