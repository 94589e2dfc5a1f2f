//! The handler: payload in, objects read, alerts published, a response (or a typed error) out.
//! Generic over the two ports, so the same code runs against the AWS SDK and in memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio_util::io::SyncIoBridge;
use tracing::{error, info, info_span, warn, Instrument};

use crate::alert::{Alert, AlertSource};
use crate::keys::{classify, KeyKind};
use crate::reader::{ReadError, RecordError};
use crate::rules::RuleSet;
use crate::scan::{ObjectStats, Scanner};

use super::config::LambdaConfig;
use super::input::{parse_payload, Delivery, InputError, ObjectRef, Payload};
use super::message::{batches, OutMessage};
use super::ports::{EntryFailure, FetchError, ObjectStore, PublishCallError, Publisher};

/// Why an object could not be fully handled.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("s3://{bucket}/{key}: bucket {bucket:?} is not in ALLOWED_BUCKETS; refused")]
    BucketNotAllowed { bucket: String, key: String },
    #[error("s3://{bucket}/{key}: {source}")]
    Fetch {
        bucket: String,
        key: String,
        source: FetchError,
    },
    #[error("s3://{bucket}/{key}: {source}")]
    Read {
        bucket: String,
        key: String,
        source: ReadError,
    },
    #[error("s3://{bucket}/{key}: {source}")]
    Publish {
        bucket: String,
        key: String,
        source: PublishError,
    },
    #[error("s3://{bucket}/{key}: the reading task failed: {reason}")]
    Task {
        bucket: String,
        key: String,
        reason: String,
    },
}

impl ObjectError {
    /// Whether Lambda's retry can help.
    pub fn retryable(&self) -> bool {
        match self {
            ObjectError::BucketNotAllowed { .. } => false,
            ObjectError::Fetch { source, .. } => source.retryable(),
            ObjectError::Read { source, .. } => source.is_transient(),
            ObjectError::Publish { source, .. } => source.retryable(),
            ObjectError::Task { .. } => true,
        }
    }
}

/// Alerts that could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("PublishBatch to {topic} failed: {source}")]
    Call {
        topic: String,
        source: PublishCallError,
    },
    #[error(
        "{count} of the alerts to {topic} were refused by SNS after {attempts} attempts: {first}"
    )]
    Refused {
        topic: String,
        count: usize,
        attempts: u32,
        first: String,
        sender_fault: bool,
    },
    #[error("rule {rule:?} has no topic and ALERT_TOPIC_ARN is not set")]
    NoTopic { rule: String },
}

impl PublishError {
    pub fn retryable(&self) -> bool {
        match self {
            PublishError::Call { source, .. } => source.retryable,
            PublishError::Refused { sender_fault, .. } => !sender_fault,
            PublishError::NoTopic { .. } => false,
        }
    }
}

/// A failed invocation.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("{} of {total} objects failed: {}", failures.len(), failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Objects {
        total: usize,
        failures: Vec<ObjectError>,
    },
}

impl HandlerError {
    pub fn retryable(&self) -> bool {
        match self {
            HandlerError::Input(_) => false,
            HandlerError::Objects { failures, .. } => failures.iter().any(ObjectError::retryable),
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

/// What happened to one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectOutcome {
    /// Why it was not read, when it was skipped (a digest, a folder marker, an empty object…).
    pub skipped: Option<String>,
    pub stats: ObjectStats,
    pub published: u64,
}

/// Counts over one invocation (or one SQS message).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub objects: u64,
    pub skipped_objects: u64,
    pub ignored_notifications: u64,
    pub test_events: u64,
    pub records: u64,
    pub skipped_records: u64,
    pub alerts: u64,
    pub published: u64,
}

impl Totals {
    fn add(&mut self, o: &ObjectOutcome) {
        self.objects += 1;
        self.skipped_objects += u64::from(o.skipped.is_some());
        self.records += o.stats.records;
        self.skipped_records += o.stats.skipped;
        self.alerts += o.stats.alerts;
        self.published += o.published;
    }

    fn merge(&mut self, o: &Totals) {
        self.objects += o.objects;
        self.skipped_objects += o.skipped_objects;
        self.ignored_notifications += o.ignored_notifications;
        self.test_events += o.test_events;
        self.records += o.records;
        self.skipped_records += o.skipped_records;
        self.alerts += o.alerts;
        self.published += o.published;
    }

    fn to_json(self) -> Value {
        json!({
            "objects": self.objects, "skippedObjects": self.skipped_objects,
            "ignoredNotifications": self.ignored_notifications, "testEvents": self.test_events,
            "records": self.records, "skippedRecords": self.skipped_records,
            "alerts": self.alerts, "published": self.published,
        })
    }
}

/// The function.
pub struct Handler<S, P> {
    rules: Arc<RuleSet>,
    store: S,
    publisher: P,
    config: LambdaConfig,
}

impl<S: ObjectStore, P: Publisher> Handler<S, P> {
    /// Builds the handler; refuses a rule set in which an enabled rule would have no topic.
    pub fn new(
        rules: Arc<RuleSet>,
        store: S,
        publisher: P,
        config: LambdaConfig,
    ) -> Result<Self, PublishError> {
        if config.alert_topic_arn.is_none() {
            if let Some(rule) = rules
                .rules()
                .iter()
                .find(|r| r.enabled && r.topic.is_none())
            {
                return Err(PublishError::NoTopic {
                    rule: rule.id.clone(),
                });
            }
        }
        Ok(Handler {
            rules,
            store,
            publisher,
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
                            totals.merge(&t);
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

    async fn deliver(&self, deliveries: &[Delivery]) -> (Totals, Vec<ObjectError>) {
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
                    Ok(outcome) => totals.add(&outcome),
                    Err(e) => {
                        error!(bucket = %obj.bucket, key = %obj.key, retryable = e.retryable(), error = %e, "object failed");
                        failures.push(e);
                    }
                },
            }
        }
        (totals, failures)
    }

    /// Reads one object, matches its records and publishes the alerts.
    pub async fn process_object(&self, obj: &ObjectRef) -> Result<ObjectOutcome, ObjectError> {
        let span = info_span!("object", bucket = %obj.bucket, key = %obj.key);
        self.process_object_inner(obj).instrument(span).await
    }

    async fn process_object_inner(&self, obj: &ObjectRef) -> Result<ObjectOutcome, ObjectError> {
        if !self.config.bucket_allowed(&obj.bucket) {
            error!("bucket is not in ALLOWED_BUCKETS; object refused");
            return Err(ObjectError::BucketNotAllowed {
                bucket: obj.bucket.clone(),
                key: obj.key.clone(),
            });
        }
        let kind = classify(&obj.key);
        if !kind.has_records() {
            let why = match kind {
                KeyKind::Digest => "a CloudTrail digest file",
                _ if obj.key.ends_with('/') => "a folder marker",
                _ => "not a CloudTrail log file",
            };
            info!(reason = why, "object skipped");
            return Ok(ObjectOutcome {
                skipped: Some(why.into()),
                ..ObjectOutcome::default()
            });
        }
        let body = self
            .store
            .open(obj)
            .await
            .map_err(|source| ObjectError::Fetch {
                bucket: obj.bucket.clone(),
                key: obj.key.clone(),
                source,
            })?;
        let (stats, alerts, skipped) = self.scan_body(obj, body).await?;
        for e in &skipped {
            warn!(record = e.index, offset = e.offset, error = %e, "record skipped");
        }
        let mut outcome = match stats {
            Ok(stats) => ObjectOutcome {
                skipped: None,
                stats,
                published: 0,
            },
            Err(ReadError::Empty) => {
                info!(reason = "empty object", "object skipped");
                return Ok(ObjectOutcome {
                    skipped: Some("an empty object".into()),
                    ..ObjectOutcome::default()
                });
            }
            Err(source) => {
                // Alerts raised before the fault are published: a retry re-raises them, and
                // FIFO topics deduplicate them; losing them is worse.
                if !alerts.is_empty() {
                    if let Err(e) = self.publish(obj, alerts).await {
                        error!(error = %e, "alerts raised before the read fault could not be published");
                    }
                }
                return Err(ObjectError::Read {
                    bucket: obj.bucket.clone(),
                    key: obj.key.clone(),
                    source,
                });
            }
        };
        outcome.published =
            self.publish(obj, alerts)
                .await
                .map_err(|source| ObjectError::Publish {
                    bucket: obj.bucket.clone(),
                    key: obj.key.clone(),
                    source,
                })?;
        info!(
            records = outcome.stats.records,
            skipped = outcome.stats.skipped,
            alerts = outcome.stats.alerts,
            duplicates = outcome.stats.duplicates,
            published = outcome.published,
            bytes = outcome.stats.bytes,
            "object done"
        );
        Ok(outcome)
    }

    /// Streams the body through the reader on a blocking thread: memory stays bounded by the
    /// record, not the object.
    async fn scan_body(
        &self,
        obj: &ObjectRef,
        body: super::ports::ObjectBody,
    ) -> Result<(Result<ObjectStats, ReadError>, Vec<Alert>, Vec<RecordError>), ObjectError> {
        let rules = Arc::clone(&self.rules);
        let limits = self.config.limits;
        let source = AlertSource::S3 {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
        };
        let reader = SyncIoBridge::new(body);
        tokio::task::spawn_blocking(move || {
            let mut scanner = Scanner::new(&rules, limits);
            let mut alerts = Vec::new();
            let mut skipped = Vec::new();
            let stats = scanner.scan_owned(
                reader,
                &source,
                |a| alerts.push(a),
                |e| skipped.push(e.clone()),
            );
            (stats, alerts, skipped)
        })
        .await
        .map_err(|e| ObjectError::Task {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            reason: e.to_string(),
        })
    }

    /// Publishes alerts, grouped by topic, in batches; entries SNS refuses are retried with
    /// back-off (only those, so nothing is published twice by this loop), then reported.
    async fn publish(&self, obj: &ObjectRef, alerts: Vec<Alert>) -> Result<u64, PublishError> {
        let mut by_topic: BTreeMap<String, Vec<OutMessage>> = BTreeMap::new();
        for (i, alert) in alerts.iter().enumerate() {
            let topic = alert
                .topic
                .clone()
                .or_else(|| self.config.alert_topic_arn.clone())
                .ok_or_else(|| PublishError::NoTopic {
                    rule: alert.rule_id.clone(),
                })?;
            let fifo = topic.ends_with(".fifo");
            by_topic.entry(topic).or_default().push(OutMessage::new(
                format!("alert-{i}"),
                alert,
                self.config.format,
                fifo,
            ));
        }
        let mut published = 0;
        for (topic, messages) in by_topic {
            for batch in batches(messages) {
                published += self.publish_batch_with_retries(&topic, batch).await?;
            }
        }
        if published > 0 {
            info!(bucket = %obj.bucket, key = %obj.key, published, "alerts published");
        }
        Ok(published)
    }

    async fn publish_batch_with_retries(
        &self,
        topic: &str,
        batch: Vec<OutMessage>,
    ) -> Result<u64, PublishError> {
        let total = batch.len() as u64;
        let mut pending = batch;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failures = self
                .publisher
                .publish_batch(topic, &pending)
                .await
                .map_err(|source| PublishError::Call {
                    topic: topic.to_owned(),
                    source,
                })?;
            if failures.is_empty() {
                return Ok(total);
            }
            let permanent: Vec<&EntryFailure> =
                failures.iter().filter(|f| f.sender_fault).collect();
            let describe = |f: &EntryFailure| format!("{}: {} ({})", f.id, f.code, f.message);
            if !permanent.is_empty() || attempt > self.config.publish_retries {
                let worst = permanent.first().copied().unwrap_or(&failures[0]);
                return Err(PublishError::Refused {
                    topic: topic.to_owned(),
                    count: failures.len(),
                    attempts: attempt,
                    first: describe(worst),
                    sender_fault: !permanent.is_empty(),
                });
            }
            warn!(topic, attempt, refused = failures.len(), first = %describe(&failures[0]), "SNS refused entries; retrying them");
            pending.retain(|m| failures.iter().any(|f| f.id == m.id));
            let delay = self.config.publish_backoff * 4u32.saturating_pow(attempt - 1);
            tokio::time::sleep(delay).await;
        }
    }
}
