//! Publishing an object's alerts: each where its route sends it, else to its rule's topic (or
//! the default topic), as SNS
//! messages in the configured format, in batches within SNS's limits; entries SNS refuses are
//! retried alone with back-off, then reported, so that nothing is published twice by this loop
//! and nothing is dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{info, warn};

use crate::alert::Alert;

use super::message::{batches, AlertFormat, OutMessage};
use super::ports::{EntryFailure, PublishCallError, Publisher};

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

/// A publisher with the function's publishing policy.
pub(super) struct Publishing<P> {
    pub(super) publisher: P,
    /// `ALERT_TOPIC_ARN`: for rules without a topic of their own.
    pub(super) default_topic: Option<String>,
    pub(super) format: AlertFormat,
    /// Formats of topics that differ from `format` (`TOPIC_FORMATS`).
    pub(super) topic_formats: Vec<(String, AlertFormat)>,
    /// Attempts at refused entries after the first, and the first back-off (growing fourfold).
    pub(super) retries: u32,
    pub(super) backoff: Duration,
}

/// What routing knows of an alert: its account (and what the door learnt of it), rule,
/// severity and Region.
pub fn facts(alert: &Alert) -> crate::rules::routes::Facts<'_> {
    crate::rules::routes::Facts {
        account: alert.event.account.as_deref(),
        ou: alert.account_info.as_ref().and_then(|i| i.ou()),
        tags: alert.account_info.as_ref().map(|i| &i.tags),
        rule: &alert.rule_id,
        severity: Some(alert.severity),
        region: alert.event.region.as_deref(),
    }
}

impl<P: Publisher> Publishing<P> {
    /// Publishes alerts, grouped by topic, in batches; returns how many were published.
    /// An alert one of the rule files' `routes` takes goes where the route says; one no route
    /// takes, or whose routes only page, goes to its rule's topic or the default topic.
    pub(super) async fn publish(
        &self,
        origin: &str,
        alerts: Vec<Alert>,
        routes: &[crate::rules::routes::Route],
    ) -> Result<u64, PublishError> {
        let mut by_topic: BTreeMap<String, Vec<OutMessage>> = BTreeMap::new();
        let format_of = |topic: &str| {
            self.topic_formats
                .iter()
                .find(|(t, _)| t == topic)
                .map_or(self.format, |(_, f)| *f)
        };
        for (i, alert) in alerts.iter().enumerate() {
            let decision = crate::rules::routes::decide(routes, &facts(alert));
            // Every alert reaches a topic: a route that only pages (no topics, no chat topics)
            // leaves it on its default topic.
            let sends = !decision.topics.is_empty() || !decision.chat_topics.is_empty();
            let destinations: Vec<(String, AlertFormat)> = if decision.is_default() || !sends {
                let topic = alert
                    .topic
                    .clone()
                    .or_else(|| self.default_topic.clone())
                    .ok_or_else(|| PublishError::NoTopic {
                        rule: alert.rule_id.clone(),
                    })?;
                let format = format_of(&topic);
                vec![(topic, format)]
            } else {
                decision
                    .topics
                    .iter()
                    .map(|t| (t.clone(), format_of(t)))
                    .chain(
                        decision
                            .chat_topics
                            .iter()
                            .map(|t| (t.clone(), AlertFormat::Chat)),
                    )
                    .collect()
            };
            for (topic, format) in destinations {
                let fifo = topic.ends_with(".fifo");
                by_topic.entry(topic).or_default().push(OutMessage::new(
                    format!("alert-{i}"),
                    alert,
                    format,
                    fifo,
                ));
            }
        }
        let mut published = 0;
        for (topic, messages) in by_topic {
            for batch in batches(messages) {
                published += self.publish_batch(&topic, batch).await?;
            }
        }
        if published > 0 {
            info!(origin, published, "alerts published");
        }
        Ok(published)
    }

    /// One batch, its refused entries retried alone.
    async fn publish_batch(
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
            if !permanent.is_empty() || attempt > self.retries {
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
            let delay = self.backoff * 4u32.saturating_pow(attempt - 1);
            tokio::time::sleep(delay).await;
        }
    }
}
