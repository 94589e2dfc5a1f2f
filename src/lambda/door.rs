//! The one door after matching. Every path of the function — S3 objects, EventBridge events,
//! replays, the sweep — hands what it matched or decided here, so that the order and the
//! guarantees live in one place:
//!
//! 1. suppressions silence; recovery rules' matches become the keys they resolve; shadow
//!    rules' alerts are split off;
//! 2. with the state store: absence rules' matches become heartbeats, the trail's progress is
//!    noted (objects), and dedup and thresholds admit (claims);
//! 3. shadow alerts are written (a failed write fails the delivery with nothing published);
//! 4. SNS gets the alerts; then their claims are marked published;
//! 5. PagerDuty gets their triggers and resolves within its budget; what it cannot take now is
//!    parked in the state store for the sweep. A PagerDuty slowdown or outage therefore delays
//!    pages, never alerts, and never makes Lambda re-walk a delivery.
//!
//! A fault before step 4 fails the delivery with nothing told, so that the retry starts clean;
//! a fault in step 4 fails it too (claims not marked are published by the retry, or by the
//! sweep); from step 5 on only a page that can be neither sent nor parked fails it.

use tracing::{info, warn};

use crate::alert::Alert;
use crate::rules::{RuleSet, Severity};

use super::pager::{backlog, resolutions, Backlog, PageReport, PageStore, Paging, PagingError};
use super::ports::{FetchError, Publisher};
use super::publish::{PublishError, Publishing};
use super::shadow::{self, Shadow};
use super::state::{admit, delivery, heartbeats, Admitted, Claim, StateStore, Store, StoreError};

/// What the door needs: the rules, the outputs and the store.
pub(super) struct Door<'a, P> {
    pub rules: &'a RuleSet,
    pub publishing: &'a Publishing<P>,
    pub paging: Option<&'a Paging>,
    pub shadow: Shadow<'a>,
    pub state: Option<&'a dyn Store>,
    /// How long after a window ends its roll-up waits (`ROLLUP_LATENESS`).
    pub lateness: u64,
}

/// A log object's progress, for the trail's watermark (objects only).
pub(super) struct Progress<'a> {
    pub key: &'a str,
    pub newest_event: Option<i64>,
}

/// What became of what was handed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Told {
    pub suppressed: u64,
    /// Held back by dedup or a threshold.
    pub held: u64,
    /// Gathered into their group's notification.
    pub grouped: u64,
    /// Alerts SNS accepted, and the rule and severity of each alert sent.
    pub published: u64,
    pub sent: Vec<(String, Severity)>,
    /// The rule of each shadow alert written.
    pub shadow: Vec<String>,
    pub pages: PageReport,
}

/// Why the door could not tell everything.
#[derive(Debug, thiserror::Error)]
pub enum DoorError {
    #[error(transparent)]
    State(StoreError),
    #[error("writing the shadow rules' alerts: {0}")]
    Shadow(FetchError),
    #[error(transparent)]
    Publish(PublishError),
    #[error(transparent)]
    Paging(PagingError),
}

impl DoorError {
    pub fn retryable(&self) -> bool {
        match self {
            DoorError::State(e) => e.retryable,
            DoorError::Shadow(e) => e.retryable(),
            DoorError::Publish(e) => e.retryable(),
            DoorError::Paging(e) => e.retryable(),
        }
    }
}

impl<P: Publisher> Door<'_, P> {
    /// Matches of one delivery (`origin` names it in logs and shadow keys), through steps 1–5.
    pub async fn tell(
        &self,
        origin: &str,
        mut alerts: Vec<Alert>,
        progress: Option<Progress<'_>>,
        now: i64,
    ) -> Result<Told, DoorError> {
        let suppressed = self.rules.suppress(&mut alerts);
        if suppressed > 0 {
            info!(suppressed, "alerts silenced by suppressions");
        }
        let (alerts, mut resolves) = resolutions(self.rules, alerts);
        let (alerts, shadowed) = shadow::split(alerts);
        let admitted = match self.state {
            Some(state) => {
                let mut alerts = heartbeats(state, self.rules, alerts, now)
                    .await
                    .map_err(DoorError::State)?;
                if let Some(p) = progress {
                    if let Some(resolved) = delivery(state, self.rules, p.key, p.newest_event, now)
                        .await
                        .map_err(DoorError::State)?
                    {
                        alerts.push(resolved);
                    }
                }
                // A resolved alert leaves its groups; a group left with no open member
                // resolves too (its incident), as Alertmanager resolves a group.
                let mut emptied = Vec::new();
                for key in &resolves {
                    emptied.extend(state.leave(key).await.map_err(DoorError::State)?);
                }
                resolves.extend(emptied);
                admit(state, self.rules, alerts, self.lateness, now)
                    .await
                    .map_err(DoorError::State)?
            }
            None => Admitted {
                alerts,
                ..Admitted::default()
            },
        };
        let Admitted {
            alerts,
            claims,
            held,
            grouped,
        } = admitted;
        if held > 0 || grouped > 0 {
            info!(
                held,
                grouped, "alerts held back by dedup or threshold, or gathered into groups"
            );
        }
        self.shadow
            .write(origin, &shadowed)
            .await
            .map_err(DoorError::Shadow)?;
        let sent = alerts
            .iter()
            .map(|a| (a.rule_id.clone(), a.severity))
            .collect();
        let (published, pages) = self.send(origin, alerts, &resolves, &claims, now).await?;
        Ok(Told {
            suppressed,
            held,
            grouped,
            published,
            sent,
            shadow: shadowed.iter().map(|a| a.rule_id.clone()).collect(),
            pages,
        })
    }

    /// Alerts already decided (the sweep's recovered claims, roll-ups, silences and absences):
    /// steps 4 and 5. Returns how many SNS accepted, and what paging did.
    pub async fn send(
        &self,
        origin: &str,
        alerts: Vec<Alert>,
        resolves: &[String],
        claims: &[Claim],
        now: i64,
    ) -> Result<(u64, PageReport), DoorError> {
        // Paged after SNS has them; the events are made before the alerts move into publishing.
        let events = self
            .paging
            .map(|p| p.events(&alerts, resolves))
            .unwrap_or_default();
        let published = if alerts.is_empty() {
            0
        } else {
            self.publishing
                .publish(origin, alerts)
                .await
                .map_err(DoorError::Publish)?
        };
        if let Some(state) = self.state {
            mark_published(state, claims).await;
        }
        let pages = match self.paging {
            Some(paging) => paging
                .send_events(events, self.state.map(|s| s as &dyn PageStore), now)
                .await
                .map_err(DoorError::Paging)?,
            None => PageReport::default(),
        };
        Ok((published, pages))
    }

    /// What a delivery raised before its read failed: told to SNS at once (suppressions
    /// applied, recovery and shadow rules' matches left to the retry), since losing them is
    /// worse than a retry telling them again (FIFO topics deduplicate).
    pub async fn salvage(&self, origin: &str, mut alerts: Vec<Alert>) {
        self.rules.suppress(&mut alerts);
        let (alerts, _) = resolutions(self.rules, alerts);
        let (alerts, _) = shadow::split(alerts);
        if alerts.is_empty() {
            return;
        }
        if let Err(e) = self.publishing.publish(origin, alerts).await {
            tracing::error!(error = %e, "alerts raised before the read fault could not be published");
        }
    }

    /// Sends parked pages as far as the budget allows (the sweep); what is left parked.
    pub async fn drain_pages(&self, now: i64) -> Result<(PageReport, Option<Backlog>), DoorError> {
        match (self.paging, self.state) {
            (Some(paging), Some(state)) => {
                let park = state as &dyn PageStore;
                let report = paging.drain(park).await.map_err(DoorError::Paging)?;
                let left = backlog(park, now).await.map_err(DoorError::Paging)?;
                if left.waiting > 0 {
                    warn!(
                        waiting = left.waiting,
                        oldest_seconds = left.oldest_age,
                        "pages are waiting for PagerDuty (alerts went to SNS)"
                    );
                }
                Ok((report, Some(left)))
            }
            _ => Ok((PageReport::default(), None)),
        }
    }
}

/// Marks claims published once SNS accepted their alerts (or their group's notification will
/// tell them), in as few writes as the store allows, else one by one. A failure here is logged,
/// not raised: the alert is out, and the worst that follows is the sweep publishing it once
/// more.
pub(super) async fn mark_published(state: &dyn StateStore, claims: &[Claim]) {
    if claims.is_empty() || state.mark_all_published(claims).await.is_ok() {
        return;
    }
    for c in claims {
        if let Err(e) = state.mark_published(&c.window, &c.event_id).await {
            warn!(window = %c.window, error = %e, "could not mark a published alert; the sweep may publish it again");
        }
    }
}
