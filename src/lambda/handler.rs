//! The handler: payload in, response (or a typed error) out. Each object is handed to
//! [`object`], whose alerts go through [`publish`](super::publish). Generic over
//! the two ports, so the same code runs against the AWS SDK and in memory.

use std::ops::AddAssign;
use std::sync::Arc;

use serde_json::{json, Value};
use tracing::{error, info, info_span, Instrument};

use crate::alert::{Alert, AlertSource};
use crate::index::Scratch;
use crate::pattern::Delivered;
use crate::rules::RuleSet;

use super::config::LambdaConfig;
use super::input::{parse_payload, Delivery, InputError, ObjectRef, Payload};
use super::object::{self, ObjectError, ObjectOutcome};
use super::ports::{ObjectStore, Publisher};
use super::publish::{PublishError, Publishing};

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
}

impl HandlerError {
    pub fn retryable(&self) -> bool {
        match self {
            HandlerError::Input(_) => false,
            HandlerError::Objects { failures, .. } => failures.iter().any(DeliveryError::retryable),
        }
    }
}

/// Why the function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("rule {rule:?} asks for {grouping}: that needs a state store shared by the \
             function's invocations (STATE_TABLE), which this version of the function does not \
             have; the command line (`trail-alerts scan`) applies it, or remove its dedup/threshold")]
    NeedsStateStore { rule: String, grouping: String },
}

/// One delivery that failed: an object, or the alerts of an EventBridge event.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("{origin}: {error}")]
    Event { origin: String, error: PublishError },
}

impl DeliveryError {
    pub fn retryable(&self) -> bool {
        match self {
            DeliveryError::Object(e) => e.retryable(),
            DeliveryError::Event { error, .. } => error.retryable(),
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

/// Counts over one invocation (or one SQS message).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
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
}

impl From<&ObjectOutcome> for Totals {
    fn from(o: &ObjectOutcome) -> Self {
        match *o {
            ObjectOutcome::PassedOver(_) => Totals {
                objects: 1,
                passed_over_objects: 1,
                ..Totals::default()
            },
            ObjectOutcome::Read { stats, published } => Totals {
                objects: 1,
                records: stats.records,
                unreadable_records: stats.unreadable,
                alerts: stats.alerts,
                published,
                ..Totals::default()
            },
        }
    }
}

impl AddAssign for Totals {
    fn add_assign(&mut self, o: Totals) {
        self.objects += o.objects;
        self.passed_over_objects += o.passed_over_objects;
        self.ignored_notifications += o.ignored_notifications;
        self.test_events += o.test_events;
        self.events += o.events;
        self.records += o.records;
        self.unreadable_records += o.unreadable_records;
        self.alerts += o.alerts;
        self.published += o.published;
    }
}

impl Totals {
    fn to_json(self) -> Value {
        json!({
            "objects": self.objects, "skippedObjects": self.passed_over_objects,
            "ignoredNotifications": self.ignored_notifications, "testEvents": self.test_events,
            "events": self.events,
            "records": self.records, "skippedRecords": self.unreadable_records,
            "alerts": self.alerts, "published": self.published,
        })
    }
}

/// The function.
pub struct Handler<S, P> {
    rules: Arc<RuleSet>,
    store: S,
    publishing: Publishing<P>,
    config: LambdaConfig,
}

impl<S: ObjectStore, P: Publisher> Handler<S, P> {
    /// Builds the handler; refuses a rule set in which an enabled rule would have no topic, or
    /// a rule of the user's uses dedup or a threshold (they need a state store shared by the
    /// invocations, which the function does not have yet). The built-in pack's own dedup
    /// defaults fall back to one alert per match, with one warning.
    pub fn new(
        rules: Arc<RuleSet>,
        store: S,
        publisher: P,
        config: LambdaConfig,
    ) -> Result<Self, StartError> {
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
        let grouped: Vec<&crate::rules::Rule> = rules
            .rules()
            .iter()
            .filter(|r| r.enabled && r.grouping.is_some())
            .collect();
        if let Some(rule) = grouped.iter().find(|r| !r.origin.starts_with("builtin:")) {
            return Err(StartError::NeedsStateStore {
                rule: rule.id.clone(),
                grouping: rule
                    .grouping
                    .as_ref()
                    .map(|g| g.describe())
                    .unwrap_or_default(),
            });
        }
        if !grouped.is_empty() {
            let ids: Vec<&str> = grouped.iter().map(|r| r.id.as_str()).collect();
            tracing::warn!(
                rules = %ids.join(", "),
                "the built-in pack's dedup defaults need a state store, which this function does \
                 not have yet: these rules raise one alert per match"
            );
        }
        let publishing = Publishing {
            publisher,
            default_topic: config.alert_topic_arn.clone(),
            format: config.format,
            retries: config.publish_retries,
            backoff: config.publish_backoff,
        };
        Ok(Handler {
            rules,
            store,
            publishing,
            config,
        })
    }

    /// Handles one invocation. SQS batches answer with `batchItemFailures` (only the failed
    /// messages return to the queue); every other shape fails as a whole when any of its objects
    /// fails, so that Lambda's retry and on-failure destination take over.
    pub async fn handle(&self, payload: Value) -> Result<Value, HandlerError> {
        match parse_payload(&payload)? {
            Payload::Direct(deliveries) => {
                let (totals, failures) = self.deliver(&deliveries).await;
                if failures.is_empty() {
                    Ok(totals.to_json())
                } else {
                    Err(HandlerError::Objects {
                        total: deliveries.len(),
                        failures,
                    })
                }
            }
            Payload::Sqs(messages) => {
                let mut failed = Vec::new();
                let mut totals = Totals::default();
                for m in messages {
                    match m.deliveries {
                        Err(e) => {
                            error!(message_id = %m.message_id, error = %e, "SQS message body is not a notification");
                            failed.push(m.message_id);
                        }
                        Ok(deliveries) => {
                            let (t, failures) = self.deliver(&deliveries).await;
                            totals += t;
                            if !failures.is_empty() {
                                for f in &failures {
                                    error!(message_id = %m.message_id, retryable = f.retryable(), error = %f, "object failed");
                                }
                                failed.push(m.message_id);
                            }
                        }
                    }
                }
                info!(failed_messages = failed.len(), ?totals, "SQS batch done");
                Ok(json!({
                    "batchItemFailures": failed.iter().map(|id| json!({"itemIdentifier": id})).collect::<Vec<_>>()
                }))
            }
        }
    }

    async fn deliver(&self, deliveries: &[Delivery]) -> (Totals, Vec<DeliveryError>) {
        let mut totals = Totals::default();
        let mut failures = Vec::new();
        for d in deliveries {
            match d {
                Delivery::Test => {
                    info!("s3:TestEvent acknowledged");
                    totals.test_events += 1;
                }
                Delivery::Ignored(what) => {
                    info!(notification = %what, "notification is not about a new object; ignored");
                    totals.ignored_notifications += 1;
                }
                Delivery::Object(obj) => match self.process_object(obj).await {
                    Ok(outcome) => totals += Totals::from(&outcome),
                    Err(e) => {
                        error!(bucket = %obj.bucket, key = %obj.key, retryable = e.retryable(), error = %e, "object failed");
                        failures.push(e.into());
                    }
                },
                Delivery::Event(event) => match self.process_event(event).await {
                    Ok(t) => totals += t,
                    Err(e) => {
                        error!(retryable = e.retryable(), error = %e, "event failed");
                        failures.push(e);
                    }
                },
            }
        }
        (totals, failures)
    }

    /// Matches an event EventBridge delivered and publishes its alerts: a CloudTrail event's
    /// record as if read from S3, a service's own event with the envelope-form rules. An event
    /// no rule matches is acknowledged and counted.
    pub async fn process_event(&self, event: &Value) -> Result<Totals, DeliveryError> {
        let source = AlertSource::eventbridge(event);
        let origin = source.display();
        let span = info_span!("event", origin = %origin);
        async {
            let mut alerts = Vec::new();
            let mut scratch = Scratch::default();
            self.rules.matching_delivered(event, &mut scratch, |rule| {
                alerts.push(Alert::delivered(rule, event));
            });
            let suppressed = self.rules.suppress(&mut alerts);
            if suppressed > 0 {
                info!(suppressed, "alerts silenced by suppressions");
            }
            let raised = alerts.len() as u64;
            let published = self
                .publishing
                .publish(&origin, alerts)
                .await
                .map_err(|error| DeliveryError::Event {
                    origin: origin.clone(),
                    error,
                })?;
            let kind = match Delivered::of(event) {
                Delivered::CloudTrail(_) => "CloudTrail",
                Delivered::Native(_) => "native",
            };
            info!(kind, alerts = raised, published, "event done");
            Ok(Totals {
                events: 1,
                records: u64::from(kind == "CloudTrail"),
                alerts: raised,
                published,
                ..Totals::default()
            })
        }
        .instrument(span)
        .await
    }

    /// Reads one object, matches its records and publishes the alerts.
    pub async fn process_object(&self, obj: &ObjectRef) -> Result<ObjectOutcome, ObjectError> {
        let span = info_span!("object", bucket = %obj.bucket, key = %obj.key);
        object::process(
            obj,
            &self.store,
            &self.publishing,
            &self.rules,
            &self.config,
        )
        .instrument(span)
        .await
    }
}
