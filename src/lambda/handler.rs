//! The handler: payload in, response (or a typed error) out. Each object is handed to
//! [`object`], whose alerts go through [`publish`](super::publish). Generic over
//! the two ports, so the same code runs against the AWS SDK and in memory.

use std::sync::Arc;

use serde_json::{json, Value};
use tracing::{error, info, info_span, Instrument};

use crate::alert::{Alert, AlertSource};
use crate::policy;

use super::state::{group_key, is_group, rollup_alert, watch, Store, StoreError};
use crate::index::Scratch;
use crate::pattern::BusEvent;
use crate::rules::RuleSet;

use super::counts::pages_json;
pub use super::counts::InvocationCounts;
use super::door::{Door, DoorError};
use super::metrics;
use super::pager::{Backlog, PageCounts, Paging};

use super::config::LambdaConfig;
use super::input::{parse_payload, Delivery, InputError, ObjectRef, Payload};
use super::object::{self, ObjectError, ObjectOutcome};
use super::ports::{ObjectStore, ObjectWriter, Publisher};
use super::publish::{PublishError, Publishing};
use super::shadow::Shadow;

/// A failed invocation.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("{} of {total} deliveries failed: {}", failures.len(), failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Objects {
        total: usize,
        failures: Vec<DeliveryError>,
    },
    #[error("sweep: {0}")]
    Sweep(DeliveryError),
    #[error("backfill: writing the findings to {object}: {error}")]
    Findings {
        object: String,
        error: super::ports::FetchError,
    },
    #[error("backfill: no object writer is configured")]
    NoWriter,
}

impl HandlerError {
    pub fn retryable(&self) -> bool {
        match self {
            HandlerError::Input(_) => false,
            HandlerError::Objects { failures, .. } => failures.iter().any(DeliveryError::retryable),
            HandlerError::Sweep(e) => e.retryable(),
            HandlerError::Findings { error, .. } => error.retryable(),
            HandlerError::NoWriter => false,
        }
    }
}

/// Why the function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(
        "rule {rule:?} asks for {grouping}: that needs the state store shared by the \
             function's invocations; set STATE_TABLE to its DynamoDB table (template.yaml creates \
             it), or remove the rule's dedup/threshold"
    )]
    NeedsStateStore { rule: String, grouping: String },
    #[error(
        "rule {rule:?} is an absence rule: the function keeps its heartbeats in the state \
             store; set STATE_TABLE (template.yaml creates it), or audit with `trail-alerts scan`"
    )]
    Absence { rule: String },
}

/// One delivery that failed: an object, or the alerts of an EventBridge event.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("{origin}: {error}")]
    Event { origin: String, error: PublishError },
    #[error("{origin}: {error}")]
    State { origin: String, error: StoreError },
    #[error("{origin}: {error}")]
    Door { origin: String, error: DoorError },
}

impl DeliveryError {
    pub fn retryable(&self) -> bool {
        match self {
            DeliveryError::Object(e) => e.retryable(),
            DeliveryError::Event { error, .. } => error.retryable(),
            DeliveryError::State { error, .. } => error.retryable,
            DeliveryError::Door { error, .. } => error.retryable(),
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: if e.retryable() {
                "TrailAlerts.Retryable".into()
            } else {
                "TrailAlerts.NonRetryable".into()
            },
            error_message: e.to_string(),
        }
    }
}

/// The start's checks of a rule set against the configuration: refuses a rule set in which an
/// enabled rule would have no topic, an absence rule or a user's dedup or threshold without
/// `STATE_TABLE`; warns of what falls back.
fn check_rules(rules: &RuleSet, config: &LambdaConfig) -> Result<(), StartError> {
    if config.alert_topic_arn.is_none() {
        if let Some(rule) = rules
            .rules()
            .iter()
            .find(|r| r.enabled && r.topic.is_none())
        {
            return Err(StartError::Publish(PublishError::NoTopic {
                rule: rule.id.clone(),
            }));
        }
    }
    // Absence rules' matches are heartbeats, not alerts: until the function keeps them in
    // its state store, it refuses them rather than page on every successful backup.
    if let Some(rule) = rules
        .rules()
        .iter()
        .find(|r| r.enabled && r.absence.is_some() && config.state_table.is_none())
    {
        return Err(StartError::Absence {
            rule: rule.id.clone(),
        });
    }
    let grouped: Vec<&crate::rules::Rule> = rules
        .rules()
        .iter()
        .filter(|r| r.enabled && r.grouping.is_some())
        .collect();
    let stateless = config.state_table.is_none();
    if let Some(rule) = grouped
        .iter()
        .find(|r| stateless && !r.origin.starts_with("builtin:"))
    {
        return Err(StartError::NeedsStateStore {
            rule: rule.id.clone(),
            grouping: rule
                .grouping
                .as_ref()
                .map(|g| g.describe())
                .unwrap_or_default(),
        });
    }
    if stateless && !grouped.is_empty() {
        let ids: Vec<&str> = grouped.iter().map(|r| r.id.as_str()).collect();
        tracing::warn!(
            rules = %ids.join(", "),
            "STATE_TABLE is not set: the built-in pack's dedup defaults fall back to one \
             alert per match for these rules"
        );
    }
    let shadows: Vec<&str> = rules
        .rules()
        .iter()
        .filter(|r| r.enabled && r.shadow)
        .map(|r| r.id.as_str())
        .collect();
    if !shadows.is_empty() && config.shadow_prefix.is_none() {
        tracing::warn!(
            rules = %shadows.join(", "),
            "SHADOW_PREFIX is not set: these shadow rules' alerts go to the log only"
        );
    }
    Ok(())
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepCounts {
    pub due: u64,
    pub rollups: u64,
    /// Claims whose invocation was lost, published by the sweep.
    pub recovered: u64,
    /// First alerts of groups with a wait, told now that it is over.
    pub waited: u64,
    /// Silence and absence alerts raised.
    pub watched: u64,
    /// Pages of what the sweep told, and parked pages it sent.
    pub pages: PageCounts,
    /// Pages still parked after the sweep, and how long the oldest has waited (seconds).
    pub backlog: Option<Backlog>,
}

/// The function.
pub struct Handler<S, P> {
    /// The rule set in force: replaced when an instance on the last good rules loads the
    /// current ones again (`Handler::reload_rules`); each invocation takes one and keeps it.
    rules: std::sync::RwLock<Arc<RuleSet>>,
    store: S,
    publishing: Publishing<P>,
    config: LambdaConfig,
    /// Dedup and threshold windows, the trail's progress, absence heartbeats (`STATE_TABLE`).
    state: Option<Arc<dyn Store>>,
    /// The PagerDuty destination (`PAGERDUTY_ROUTING_KEY_SECRET`).
    paging: Option<Paging>,
    /// Where shadow rules' alerts are written (`SHADOW_PREFIX`).
    writer: Option<Arc<dyn ObjectWriter>>,
    /// The accounts' context added to what is told.
    context: super::accounts::Context,
    /// Why the current rule set did not load, when the instance alerts on the last good one.
    rules_fallback: std::sync::RwLock<Option<String>>,
    /// Loads the rule set as it is now (the sweep retries it while on the last good one).
    reloader: Option<Arc<dyn RuleLoader>>,
}

/// Loads the rule set as it is now (the rule documents read again).
#[async_trait::async_trait]
pub trait RuleLoader: Send + Sync {
    async fn load(&self) -> Result<RuleSet, String>;
}

impl<S: ObjectStore, P: Publisher> Handler<S, P> {
    /// Builds the handler; refuses a rule set in which an enabled rule would have no topic, or
    /// a rule of the user's uses dedup or a threshold while `STATE_TABLE` is not set (give the
    /// store with [`Handler::with_state`]). Without it, the built-in pack's own dedup defaults
    /// fall back to one alert per match, with one warning.
    pub fn new(
        rules: Arc<RuleSet>,
        store: S,
        publisher: P,
        config: LambdaConfig,
    ) -> Result<Self, StartError> {
        check_rules(&rules, &config)?;
        let publishing = Publishing {
            publisher,
            default_topic: config.alert_topic_arn.clone(),
            format: config.format,
            topic_formats: config.topic_formats.clone(),
            retries: config.publish_retries,
            backoff: config.publish_backoff,
        };
        let context = super::accounts::Context {
            directory: None,
            sso: config.sso.clone(),
        };
        Ok(Handler {
            rules: std::sync::RwLock::new(rules),
            store,
            publishing,
            config,
            state: None,
            paging: None,
            writer: None,
            context,
            rules_fallback: std::sync::RwLock::new(None),
            reloader: None,
        })
    }

    /// The instance alerts on the last rule set that loaded: `fault` is why the current one
    /// did not (every invocation's metrics say `RulesFallback`).
    pub fn with_rules_fallback(self, fault: String, reloader: Arc<dyn RuleLoader>) -> Self {
        *self
            .rules_fallback
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(fault);
        Handler {
            reloader: Some(reloader),
            ..self
        }
    }

    /// The rule set in force.
    fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// On the last good rules: loads the current ones again, and when they load and pass the
    /// start's checks, puts them in force. Returns whether the instance is back on them.
    pub async fn reload_rules(&self) -> bool {
        let fault = self
            .rules_fallback
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (Some(_), Some(reloader)) = (fault, &self.reloader) else {
            return false;
        };
        let loaded = match reloader.load().await {
            Ok(rules) => rules,
            Err(e) => {
                *self
                    .rules_fallback
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e);
                return false;
            }
        };
        let checked = check_rules(&loaded, &self.config)
            .map_err(|e| e.to_string())
            .and_then(|()| match &self.paging {
                Some(p) => p.covers(&loaded),
                None => super::pager::uncovered(&loaded, |_| false)
                    .map_err(|e| format!("{e}; this instance has no PagerDuty destination")),
            });
        if let Err(e) = checked {
            *self
                .rules_fallback
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(format!("rules: {e}"));
            return false;
        }
        info!(
            rules = loaded.rules().len(),
            "the rule documents load again: back on them"
        );
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        *self
            .rules_fallback
            .write()
            .unwrap_or_else(|p| p.into_inner()) = None;
        true
    }

    /// One EMF line for the invocation.
    fn emit(&self, counts: &InvocationCounts) {
        let mut t = counts.clone();
        let fallback = self
            .rules_fallback
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        t.rules_fallback = fallback.is_some();
        metrics::emit(&t, &self.config.function_name, policy::now_ms());
        if let Some(fault) = &fallback {
            tracing::error!(
                fault = %fault,
                "alerting on the last rule set that loaded: the current rule documents do not \
                 load; fix the fault named (trail-alerts rules test), and the next cold start \
                 loads them"
            );
        }
    }

    /// Learns accounts' names, OU paths and tags from this directory too (AWS Organizations).
    pub fn with_directory(mut self, directory: Arc<dyn super::accounts::AccountDirectory>) -> Self {
        self.context.directory = Some(directory);
        self
    }

    /// Writes shadow rules' alerts with this writer, to `SHADOW_PREFIX`.
    pub fn with_writer(mut self, writer: Arc<dyn ObjectWriter>) -> Self {
        self.writer = Some(writer);
        self
    }

    fn shadow(&self) -> Shadow<'_> {
        Shadow {
            writer: self.writer.as_deref(),
            prefix: self.config.shadow_prefix.as_ref(),
        }
    }

    /// The one door every path's alerts go through (`door.rs`), with the rule set in force.
    fn door<'a>(&'a self, rules: &'a RuleSet) -> Door<'a, P> {
        Door {
            rules,
            publishing: &self.publishing,
            paging: self.paging.as_ref(),
            shadow: self.shadow(),
            state: self.state.as_deref(),
            lateness: self.config.rollup_lateness,
            storm_limit: self.config.storm_limit,
            context: &self.context,
        }
    }

    /// Pages through PagerDuty too (triggers and resolves, after SNS; with the state store,
    /// what PagerDuty cannot take now is parked for the sweep).
    pub fn with_paging(mut self, paging: Paging) -> Self {
        self.paging = Some(paging);
        self
    }

    /// Keeps dedup and threshold windows in this store (the table `STATE_TABLE` names).
    pub fn with_state(mut self, state: Arc<dyn Store>) -> Self {
        self.state = Some(state);
        self
    }

    /// Handles one invocation. SQS batches answer with `batchItemFailures` (only the failed
    /// messages return to the queue); every other shape fails as a whole when any of its objects
    /// fails, so that Lambda's retry and on-failure destination take over.
    pub async fn handle(&self, payload: Value) -> Result<Value, HandlerError> {
        match parse_payload(&payload)? {
            Payload::Sweep => {
                // On the last good rules, every sweep (5 minutes) tries the current ones.
                self.reload_rules().await;
                let done = self
                    .sweep(policy::now())
                    .await
                    .map_err(HandlerError::Sweep)?;
                info!(
                    due = done.due,
                    rollups = done.rollups,
                    recovered = done.recovered,
                    waited = done.waited,
                    pages_sent = done.pages.sent,
                    pages_caught_up = done.pages.caught_up,
                    pages_parked = done.pages.parked,
                    "sweep done"
                );
                let counts = InvocationCounts {
                    pages: done.pages,
                    page_backlog: done.backlog,
                    ..InvocationCounts::default()
                };
                self.emit(&counts);
                Ok(
                    json!({"due": done.due, "rollups": done.rollups, "recovered": done.recovered,
                          "waited": done.waited,
                          "silenceAndAbsence": done.watched, "pages": pages_json(&done.pages),
                          "pagesWaiting": done.backlog.map(|b| b.waiting)}),
                )
            }
            Payload::Direct(deliveries) => self.deliver_together(&deliveries).await,
            Payload::Batch(batch) => match &batch.backfill {
                Some(out) => self.backfill(&batch.objects, out).await,
                None => {
                    // Replay: the objects as if just delivered.
                    let deliveries: Vec<Delivery> =
                        batch.objects.into_iter().map(Delivery::Object).collect();
                    self.deliver_together(&deliveries).await
                }
            },
            Payload::Sqs(messages) => {
                let mut failed = Vec::new();
                let mut counts = InvocationCounts::default();
                for m in messages {
                    match m.deliveries {
                        Err(e) => {
                            error!(message_id = %m.message_id, error = %e, "SQS message body is not a notification");
                            failed.push(m.message_id);
                        }
                        Ok(deliveries) => {
                            let (t, failures) = self.deliver(&deliveries).await;
                            counts += t;
                            if !failures.is_empty() {
                                for f in &failures {
                                    error!(message_id = %m.message_id, retryable = f.retryable(), error = %f, "object failed");
                                }
                                failed.push(m.message_id);
                            }
                        }
                    }
                }
                info!(failed_messages = failed.len(), ?counts, "SQS batch done");
                self.emit(&counts);
                Ok(json!({
                    "batchItemFailures": failed.iter().map(|id| json!({"itemIdentifier": id})).collect::<Vec<_>>()
                }))
            }
        }
    }

    /// A backfill batch: every object read with the rules in force, nothing published; the
    /// alerts (suppressions applied, shadow rules' marked) written as JSON lines to one object
    /// per batch, `<output prefix><run>/findings/<hash of the batch's keys>.jsonl`, so that a
    /// retried batch rewrites it. An object that fails in a way a retry can help fails the
    /// batch (the state machine retries it); any other failure is listed in the summary.
    pub async fn backfill(
        &self,
        objects: &[ObjectRef],
        out: &super::input::Backfill,
    ) -> Result<Value, HandlerError> {
        let writer = self.writer.as_deref().ok_or(HandlerError::NoWriter)?;
        let mut counts = InvocationCounts::default();
        let mut lines = Vec::new();
        let mut failed = Vec::new();
        for obj in objects {
            let span = info_span!("object", bucket = %obj.bucket, key = %obj.key);
            let rules = self.rules();
            let found = object::find(obj, &self.store, &rules, &self.config)
                .instrument(span)
                .await;
            counts.objects += 1;
            match found {
                Ok(object::Found::PassedOver) => counts.passed_over_objects += 1,
                Ok(object::Found::Read { stats, findings }) => {
                    counts.records += stats.records;
                    counts.unreadable_records += stats.unreadable;
                    counts.alerts += findings.alerts;
                    counts.suppressed += findings.suppressed;
                    counts.folded += findings.folded;
                    counts.newest_event = counts.newest_event.max(stats.newest_event);
                    counts.count_shadow(findings.shadow.iter().map(String::as_str));
                    lines.extend(findings.lines);
                }
                Err(e) if e.retryable() => {
                    error!(error = %e, "object failed; the batch fails for a retry");
                    return Err(HandlerError::Objects {
                        total: objects.len(),
                        failures: vec![e.into()],
                    });
                }
                Err(e) => {
                    error!(error = %e, "object failed; listed in the batch's summary");
                    failed.push(json!({"object": obj.to_string(), "error": e.kind.to_string()}));
                }
            }
        }
        let keys: Vec<String> = objects.iter().map(ToString::to_string).collect();
        let key = format!(
            "{}{}/findings/{:016x}.jsonl",
            out.output.key,
            out.run,
            super::state::stable_hash(keys.join("\n").as_bytes())
        );
        let findings = format!("s3://{}/{key}", out.output.bucket);
        if !lines.is_empty() {
            writer
                .put(&out.output.bucket, &key, lines)
                .await
                .map_err(|error| HandlerError::Findings {
                    object: findings.clone(),
                    error,
                })?;
        }
        self.emit(&counts);
        info!(
            objects = counts.objects,
            alerts = counts.alerts,
            failed = failed.len(),
            "backfill batch done"
        );
        Ok(json!({
            "mode": "backfill", "objects": counts.objects, "skippedObjects": counts.passed_over_objects,
            "records": counts.records, "skippedRecords": counts.unreadable_records,
            "alerts": counts.alerts, "suppressed": counts.suppressed, "shadow": counts.shadow,
            "folded": counts.folded,
            "findings": if counts.alerts > 0 { Value::String(findings) } else { Value::Null },
            "failed": failed,
        }))
    }

    /// Deliveries that succeed or fail together: the counts, or every failure.
    async fn deliver_together(&self, deliveries: &[Delivery]) -> Result<Value, HandlerError> {
        let (counts, failures) = self.deliver(deliveries).await;
        self.emit(&counts);
        if failures.is_empty() {
            Ok(counts.to_json())
        } else {
            Err(HandlerError::Objects {
                total: deliveries.len(),
                failures,
            })
        }
    }

    async fn deliver(&self, deliveries: &[Delivery]) -> (InvocationCounts, Vec<DeliveryError>) {
        let mut counts = InvocationCounts::default();
        let mut failures = Vec::new();
        for d in deliveries {
            match d {
                Delivery::Test => {
                    info!("s3:TestEvent acknowledged");
                    counts.test_events += 1;
                }
                Delivery::Ignored(what) => {
                    info!(notification = %what, "notification is not about a new object; ignored");
                    counts.ignored_notifications += 1;
                }
                Delivery::Object(obj) => match self.process_object(obj).await {
                    Ok(outcome) => counts += InvocationCounts::from(&outcome),
                    Err(e) => {
                        error!(bucket = %obj.bucket, key = %obj.key, retryable = e.retryable(), error = %e, "object failed");
                        failures.push(e.into());
                    }
                },
                Delivery::Event(event)
                    if expected_expiry(event, self.config.trail_log_expiry_days) =>
                {
                    info!(
                        key = event.pointer("/detail/object/key").and_then(serde_json::Value::as_str).unwrap_or(""),
                        "a trail log removed by the lifecycle expiry declared (TRAIL_LOG_EXPIRY_DAYS); expected"
                    );
                    counts.ignored_notifications += 1;
                }
                Delivery::Event(event) => match self.process_event(event).await {
                    Ok(t) => counts += t,
                    Err(e) => {
                        error!(retryable = e.retryable(), error = %e, "event failed");
                        failures.push(e);
                    }
                },
            }
        }
        (counts, failures)
    }

    /// Matches an event EventBridge delivered and publishes its alerts: a CloudTrail event's
    /// record as if read from S3, a service's own event with the envelope-form rules. An event
    /// no rule matches is acknowledged and counted.
    pub async fn process_event(&self, event: &Value) -> Result<InvocationCounts, DeliveryError> {
        let source = AlertSource::eventbridge(event);
        let origin = source.display();
        let span = info_span!("event", origin = %origin);
        async {
            let mut alerts = Vec::new();
            let mut scratch = Scratch::default();
            let rules = self.rules();
            rules.matching_bus_event(event, &mut scratch, |rule| {
                alerts.push(Alert::from_bus_event(rule, event));
            });
            let raised = alerts.len() as u64;
            let told = self
                .door(&rules)
                .tell(&origin, alerts, None, policy::now())
                .await
                .map_err(|error| DeliveryError::Door {
                    origin: origin.clone(),
                    error,
                })?;
            let published = told.published;
            let kind = match BusEvent::of(event) {
                BusEvent::CloudTrail(_) => "CloudTrail",
                BusEvent::Native(_) => "native",
            };
            info!(kind, alerts = raised, published, "event done");
            let mut t = InvocationCounts {
                events: 1,
                records: u64::from(kind == "CloudTrail"),
                alerts: raised,
                published,
                held: told.held,
                grouped: told.grouped,
                waiting: told.waiting,
                storms: told.storms,
                folded: told.folded,
                suppressed: told.suppressed,
                newest_event: policy::event_time(event),
                pages: told.pages,
                ..InvocationCounts::default()
            };
            t.count_shadow(told.shadow.iter().map(String::as_str));
            t.count_published(&told.sent);
            Ok(t)
        }
        .instrument(span)
        .await
    }

    /// The scheduled sweep: for every window due (its end plus the lateness allowance passed),
    /// publishes a claim its invocation never published, and one roll-up of the matches it held
    /// back and no roll-up told yet. Without a state store there is nothing to sweep.
    pub async fn sweep(&self, now: i64) -> Result<SweepCounts, DeliveryError> {
        let mut outcome = SweepCounts::default();
        let Some(state) = &self.state else {
            return Ok(outcome);
        };
        let origin = "sweep".to_owned();
        let rules = self.rules();
        let door = self.door(&rules);
        let store_err = |error| DeliveryError::State {
            origin: origin.clone(),
            error,
        };
        let door_err = |error| DeliveryError::Door {
            origin: origin.clone(),
            error,
        };
        let publish_err = |error| DeliveryError::Event {
            origin: origin.clone(),
            error,
        };
        let lateness = self.config.rollup_lateness as i64;
        for due in state.due(now).await.map_err(store_err)? {
            outcome.due += 1;
            let Some(w) = state.window(&due.window).await.map_err(store_err)? else {
                state.finish(&due).await.map_err(store_err)?;
                continue;
            };
            // The window's incident: the rule of that id, else the first that shares it.
            let rule = rules
                .rules()
                .iter()
                .filter(|r| r.incident == w.rule)
                .min_by_key(|r| r.id != w.rule);
            let source = w
                .source
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .and_then(|v: Value| AlertSource::from_json(&v))
                .unwrap_or(AlertSource::File {
                    path: "state store".into(),
                });
            // A claim whose invocation never got it out, past the lateness allowance; or the
            // first alert of a group with a wait, whose due entry (its wait over) is this one.
            if let (Some(by), false, Some(rule)) = (&w.claimed_by, w.published, rule) {
                let waited = is_group(&w.id) && rule.group.as_ref().is_some_and(|g| g.wait > 0);
                if let Some(record) = w
                    .record
                    .as_deref()
                    .and_then(|r| serde_json::from_str::<Value>(r).ok())
                {
                    if waited || now >= w.window_end + lateness {
                        let mut alert = match &source {
                            AlertSource::EventBridge { .. } => Alert::from_bus_event(rule, &record),
                            _ => Alert::new(rule, &record, source.clone(), 0),
                        };
                        if is_group(&w.id) {
                            alert.alert_key = group_key(&w.rule, &w.key_value);
                        }
                        let (_, pages) = door
                            .send(&origin, vec![alert], &[], &[], now)
                            .await
                            .map_err(door_err)?;
                        outcome.pages += pages;
                        state.mark_published(&w.id, by).await.map_err(store_err)?;
                        if waited {
                            outcome.waited += 1;
                        } else {
                            outcome.recovered += 1;
                        }
                    }
                }
            }
            let more = w.untold();
            if let (true, Some(rule)) = (more > 0 && w.claimed_by.is_some(), rule) {
                if state
                    .mark_rolled(&w.id, w.rolled, w.rolled + more)
                    .await
                    .map_err(store_err)?
                {
                    // A group's notification also pages (it updates the group's incident).
                    let alert = rollup_alert(rule, &w, more, source);
                    match door.send(&origin, vec![alert], &[], &[], now).await {
                        Ok((_, pages)) => outcome.pages += pages,
                        Err(DoorError::Publish(error)) => {
                            // Not told after all: undo the mark, so that the next sweep tries
                            // again.
                            let _ = state.mark_rolled(&w.id, w.rolled + more, w.rolled).await;
                            return Err(publish_err(error));
                        }
                        // Told; only its page could be neither sent nor parked.
                        Err(error) => return Err(door_err(error)),
                    }
                    outcome.rollups += 1;
                }
            }
            state.finish(&due).await.map_err(store_err)?;
        }
        // Trails gone silent, and keys of absence rules whose trail has passed their deadline.
        let watched = watch(state.as_ref(), rules.as_ref(), &self.config.silence, now)
            .await
            .map_err(store_err)?;
        outcome.watched = watched.len() as u64;
        let (_, pages) = door
            .send(&origin, watched, &[], &[], now)
            .await
            .map_err(door_err)?;
        outcome.pages += pages;
        // Pages parked by earlier invocations, as far as PagerDuty's budget allows.
        let (caught_up, backlog) = door.drain_pages(now).await.map_err(door_err)?;
        outcome.pages += caught_up;
        outcome.backlog = backlog;
        Ok(outcome)
    }

    /// Reads one object, matches its records and publishes the alerts.
    pub async fn process_object(&self, obj: &ObjectRef) -> Result<ObjectOutcome, ObjectError> {
        let span = info_span!("object", bucket = %obj.bucket, key = %obj.key);
        let rules = self.rules();
        object::process(obj, &self.store, &self.door(&rules), &rules, &self.config)
            .instrument(span)
            .await
    }
}

/// Whether an event is S3 removing a trail log by the lifecycle expiry the user declared
/// (`TRAIL_LOG_EXPIRY_DAYS`): a lifecycle deletion of a log whose key's day is at least that
/// many days before the deletion. A shorter expiry (one an intruder set) is not expected.
pub fn expected_expiry(event: &serde_json::Value, days: Option<u32>) -> bool {
    let Some(days) = days else {
        return false;
    };
    if event.get("source").and_then(serde_json::Value::as_str) != Some("aws.s3")
        || event.get("detail-type").and_then(serde_json::Value::as_str) != Some("Object Deleted")
        || event
            .pointer("/detail/reason")
            .and_then(serde_json::Value::as_str)
            != Some("Lifecycle Expiration")
    {
        return false;
    }
    let (Some(key), Some(at)) = (
        event
            .pointer("/detail/object/key")
            .and_then(serde_json::Value::as_str),
        event
            .get("time")
            .and_then(serde_json::Value::as_str)
            .and_then(crate::time::parse_timestamp),
    ) else {
        return false;
    };
    // …/CloudTrail/<region>/YYYY/MM/DD/<file>: the log's day.
    let parts: Vec<&str> = key.split('/').collect();
    let day = parts.windows(4).find_map(|w| {
        let ok = w[0].len() == 4 && w[1].len() == 2 && w[2].len() == 2;
        ok.then(|| crate::time::parse_timestamp(&format!("{}-{}-{}T00:00:00Z", w[0], w[1], w[2])))
            .flatten()
    });
    day.is_some_and(|d| at - d >= i64::from(days) * 86_400)
}
