//! The one door after matching. Every path of the function — S3 objects, EventBridge events,
//! replays, the sweep — hands what it matched or decided here, so that the order and the
//! guarantees live in one place:
//!
//! 1. suppressions silence; recovery rules' matches become the keys they resolve; shadow
//!    rules' alerts are split off; past `STORM_LIMIT` alerts of one rule in the delivery, the
//!    rest are folded into one storm message (the storm guard);
//! 2. with the state store: absence rules' matches become heartbeats, the trail's progress is
//!    noted (objects), and dedup and thresholds admit (claims);
//! 3. shadow alerts are written (a failed write fails the delivery with nothing published);
//! 4. the alerts get their accounts' context (names, OU paths, tags, links; never held back
//!    for it), SNS gets them; then their claims are marked published;
//! 5. PagerDuty gets their triggers and resolves within its budget; what it cannot take now is
//!    parked in the state store for the sweep. A PagerDuty slowdown or outage therefore delays
//!    pages, never alerts, and never makes Lambda re-walk a delivery.
//!
//! A delivery is told whole (an event) or in parts (an object's alerts in bounded batches as
//! the read goes, so that memory does not grow with the matches): the storm guard counts over
//! the whole delivery, and its storm messages and the trail's progress are told at its end.
//! A fault before step 4 fails the delivery with nothing of that part told, so that the retry
//! starts the part clean (earlier parts' claims make the retry tell nothing twice); a fault in
//! step 4 fails it too (claims not marked are published by the retry, or by the sweep); from
//! step 5 on only a page that can be neither sent nor parked fails it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::json;
use tracing::{info, warn};

use crate::alert::{Alert, AlertSource, EventInfo};
use crate::rules::{Rule, RuleSet, Severity};

use super::pager::{backlog, resolutions, Backlog, PageCounts, Paging, PagingError};
use super::ports::{FetchError, Publisher};
use super::publish::{PublishError, Publishing};
use super::shadow::{self, Shadow};
use super::state::{
    admit, heartbeats, note_trail_progress, Admitted, Claim, Claimant, MatchRef, PageStore,
    StateStore, Store, StoreError, WindowRef, KEEP_AFTER_DUE,
};

/// What the door needs: the rules, the outputs and the store.
pub(super) struct Door<'a, P> {
    pub rules: &'a RuleSet,
    pub publishing: &'a Publishing<P>,
    pub paging: Option<&'a Paging>,
    pub shadow: Shadow<'a>,
    pub state: Option<&'a dyn Store>,
    /// How long after a window ends its roll-up waits (`ROLLUP_LATENESS`).
    pub lateness: u64,
    /// Alerts of one rule in one delivery past which the rest are folded (`STORM_LIMIT`).
    pub storm_limit: usize,
    /// What the alerts told are given of their accounts (`accounts.rs`).
    pub context: &'a super::accounts::Context,
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
    /// First alerts of groups with a wait (told by the sweep when it is over).
    pub waiting: u64,
    /// Alerts SNS accepted, and the rule and severity of each alert sent.
    pub published: u64,
    pub sent: Vec<(String, Severity)>,
    /// The rule of each shadow alert written.
    pub shadow: Vec<String>,
    pub pages: PageCounts,
    /// Rules that stormed (one folded message each), and the matches folded into them.
    pub storms: u64,
    pub folded: u64,
    /// Alerts of parts an earlier try of this delivery told (skipped by this one).
    pub told_before: u64,
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

/// One delivery being told, whole or in parts (an object's alerts in bounded batches as the
/// read goes): the storm guard's count over the whole delivery and what was told so far.
pub(super) struct Telling {
    guard: StormGuard,
    told: Told,
    parts: u64,
    /// An object's parts, with the state store: each part told is noted, so that a retry after
    /// a fault skips what an earlier try told.
    resume: Option<Resume>,
}

/// What a delivery's end adds: its claimed storm messages and the trail's progress.
#[derive(Default)]
struct End<'a> {
    storms: Vec<(Alert, Option<Claim>)>,
    progress: Option<Progress<'a>>,
}

/// Where an object told in parts resumes.
struct Resume {
    /// The rule set's fingerprint: parts noted under other rules are told again.
    fingerprint: u64,
    /// Parts an earlier try told (read with the first part that is noted).
    told_before: Option<u64>,
}

impl Told {
    fn add(&mut self, other: Told) {
        self.suppressed += other.suppressed;
        self.held += other.held;
        self.grouped += other.grouped;
        self.waiting += other.waiting;
        self.published += other.published;
        self.sent.extend(other.sent);
        self.shadow.extend(other.shadow);
        self.pages += other.pages;
        self.storms += other.storms;
        self.folded += other.folded;
        self.told_before += other.told_before;
    }
}

impl<P: Publisher> Door<'_, P> {
    /// Matches of one delivery (`origin` names it in logs and shadow keys), through steps 1–5.
    pub async fn tell(
        &self,
        origin: &str,
        alerts: Vec<Alert>,
        progress: Option<Progress<'_>>,
        now: i64,
    ) -> Result<Told, DoorError> {
        let mut telling = self.begin(false);
        self.tell_part(&mut telling, origin, alerts, true, now)
            .await?;
        self.finish(telling, origin, progress, now).await
    }

    /// A delivery to be told in parts: [`Door::tell_part`] for each, then [`Door::finish`].
    /// With `resumable` (an object, which a retry reads again whole) and the state store, each
    /// part told is noted, and a retry skips the parts an earlier try told.
    pub fn begin(&self, resumable: bool) -> Telling {
        Telling {
            guard: StormGuard::new(self.storm_limit),
            told: Told::default(),
            parts: 0,
            resume: (resumable && self.state.is_some()).then(|| Resume {
                fingerprint: self.rules.fingerprint(),
                told_before: None,
            }),
        }
    }

    /// One part of a delivery's matches (`last`: no part follows), through steps 1–5: told
    /// when this returns, so that the caller holds no more than a part in memory. A fault fails
    /// the delivery; the parts told before it are noted (resumable deliveries with the state
    /// store), so that the retry, which reads the same parts again, skips them. A delivery of
    /// one part needs no note: its claims are its record.
    pub async fn tell_part(
        &self,
        telling: &mut Telling,
        origin: &str,
        mut alerts: Vec<Alert>,
        last: bool,
        now: i64,
    ) -> Result<(), DoorError> {
        let part = telling.parts;
        telling.parts += 1;
        // Shadow findings of later parts go to objects of their own.
        let part_origin = match part {
            0 => origin.to_owned(),
            n => format!("{origin}#part{n}"),
        };
        let suppressed = self.rules.suppress(&mut alerts);
        if suppressed > 0 {
            info!(suppressed, "alerts silenced by suppressions");
        }
        let (alerts, resolves) = resolutions(self.rules, alerts);
        let (alerts, shadowed) = shadow::split(alerts);
        // The guard counts every part, skipped or not, so that a retry folds the same matches.
        let alerts = telling.guard.pass(alerts);
        let noted = match (&mut telling.resume, self.state) {
            (Some(resume), Some(state)) if !(last && part == 0) => {
                let before = match resume.told_before {
                    Some(n) => n,
                    None => {
                        let n = match state.parts_told(origin).await.map_err(DoorError::State)? {
                            Some((n, fingerprint)) if fingerprint == resume.fingerprint => n,
                            Some((n, _)) => {
                                warn!(parts = n, "an earlier try told parts of this object under other rules: all are told again");
                                0
                            }
                            None => 0,
                        };
                        resume.told_before = Some(n);
                        n
                    }
                };
                if part < before {
                    telling.told.told_before += (alerts.len() + shadowed.len()) as u64;
                    return Ok(());
                }
                Some((state, resume.fingerprint))
            }
            _ => None,
        };
        let told = self
            .decide_and_send(
                &part_origin,
                alerts,
                resolves,
                shadowed,
                End::default(),
                now,
            )
            .await?;
        telling.told.suppressed += suppressed;
        telling.told.add(told);
        if let Some((state, fingerprint)) = noted {
            let expires = now + KEEP_AFTER_DUE;
            state
                .note_parts_told(origin, part + 1, fingerprint, expires)
                .await
                .map_err(DoorError::State)?;
        }
        Ok(())
    }

    /// The end of a delivery: its storm messages, and the trail's progress (objects).
    pub async fn finish(
        &self,
        mut telling: Telling,
        origin: &str,
        progress: Option<Progress<'_>>,
        now: i64,
    ) -> Result<Told, DoorError> {
        let (storms, folded) = telling.guard.finish(self.rules, origin);
        if folded > 0 {
            warn!(
                storms = storms.len(),
                folded,
                limit = self.storm_limit,
                "rules storming: matches past the limit folded into one message per rule"
            );
        }
        let storms = self.claim_storms(storms, now).await?;
        // Counted when told: a redelivery whose storm message went out before folds again
        // but tells (and counts) nothing.
        telling.told.storms += storms.len() as u64;
        telling.told.folded += storms
            .iter()
            .filter_map(|(a, _)| a.record["more"].as_u64())
            .sum::<u64>();
        let told = self
            .decide_and_send(
                origin,
                Vec::new(),
                Vec::new(),
                Vec::new(),
                End { storms, progress },
                now,
            )
            .await?;
        telling.told.add(told);
        Ok(telling.told)
    }

    /// Steps 2–5 for alerts the guard kept (and, at a delivery's end, its claimed storm
    /// messages and its progress).
    async fn decide_and_send(
        &self,
        origin: &str,
        alerts: Vec<Alert>,
        mut resolves: Vec<String>,
        shadowed: Vec<Alert>,
        end: End<'_>,
        now: i64,
    ) -> Result<Told, DoorError> {
        let End { storms, progress } = end;
        if alerts.is_empty()
            && resolves.is_empty()
            && shadowed.is_empty()
            && storms.is_empty()
            && progress.is_none()
        {
            return Ok(Told::default());
        }
        let admitted = match self.state {
            Some(state) => {
                let mut alerts = heartbeats(state, self.rules, alerts, now)
                    .await
                    .map_err(DoorError::State)?;
                if let Some(p) = progress {
                    if let Some(resolved) =
                        note_trail_progress(state, self.rules, p.key, p.newest_event, now)
                            .await
                            .map_err(DoorError::State)?
                    {
                        alerts.push(resolved);
                    }
                }
                // A resolved alert leaves its groups; a group left with no open member
                // resolves too (its incident), as Alertmanager resolves a group. Only keys of
                // grouped incidents can be members: the others cost no lookup.
                let grouped = |key: &str| {
                    let incident = key.split('|').next().unwrap_or_default();
                    self.rules
                        .rules()
                        .iter()
                        .any(|r| r.group.is_some() && r.incident == incident)
                };
                let mut emptied = Vec::new();
                for key in resolves.iter().filter(|k| grouped(k)) {
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
            mut alerts,
            mut claims,
            held,
            grouped,
            waiting,
        } = admitted;
        for (alert, claim) in storms {
            alerts.push(alert);
            claims.extend(claim);
        }
        if held > 0 || grouped > 0 || waiting > 0 {
            info!(
                held,
                grouped,
                waiting,
                "alerts held back by dedup or threshold, gathered into groups, or waiting for their group"
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
            held,
            grouped,
            waiting,
            published,
            sent,
            shadow: shadowed.iter().map(|a| a.rule_id.clone()).collect(),
            pages,
            ..Told::default()
        })
    }

    /// A storm message is told once per delivery and rule: with the state store it claims a
    /// window of its own (so that a redelivery does not tell it again); without, it goes out.
    async fn claim_storms(
        &self,
        storms: Vec<Alert>,
        now: i64,
    ) -> Result<Vec<(Alert, Option<Claim>)>, DoorError> {
        let Some(state) = self.state else {
            return Ok(storms.into_iter().map(|a| (a, None)).collect());
        };
        let mut out = Vec::new();
        for alert in storms {
            let id = alert.event.event_id.clone().unwrap_or_default();
            let w = WindowRef {
                rule: format!("{}#storm", alert.rule_id),
                key_value: id.clone(),
                window: crate::policy::Window { start: 0, end: 0 },
                group: false,
            };
            let m = MatchRef {
                event_id: id.clone(),
                event_time: alert.event.event_time.clone().unwrap_or_default(),
                values: Vec::new(),
            };
            let source = alert.source.to_json().to_string();
            let claimant = Claimant {
                event_id: &id,
                record: None,
                source: &source,
                now,
                told: false,
            };
            let counted = state
                .count_many(&w, std::slice::from_ref(&m), 1, Some(claimant), &[])
                .await
                .map_err(DoorError::State)?;
            // Counted before: a redelivery; told unless its first try marked it published.
            let window = match counted {
                Some(w) => w,
                None => state
                    .window(&w.id())
                    .await
                    .map_err(DoorError::State)?
                    .unwrap_or_default(),
            };
            if window.claimed_by.as_deref() == Some(id.as_str()) && !window.published {
                out.push((
                    alert,
                    Some(Claim {
                        window: w.id(),
                        event_id: id,
                    }),
                ));
            }
        }
        Ok(out)
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
    ) -> Result<(u64, PageCounts), DoorError> {
        // Their accounts' names, OU paths and tags, and links: never holds an alert back.
        let alerts = self.context.enrich(alerts, self.rules.accounts()).await;
        // Paged after SNS has them; the events are made before the alerts move into publishing.
        let events = self
            .paging
            .map(|p| p.events(&alerts, resolves, self.rules.routes()))
            .unwrap_or_default();
        let published = if alerts.is_empty() {
            0
        } else {
            self.publishing
                .publish(origin, alerts, self.rules.routes())
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
            None => PageCounts::default(),
        };
        Ok((published, pages))
    }

    /// Sends parked pages as far as the budget allows (the sweep); what is left parked.
    pub async fn drain_pages(&self, now: i64) -> Result<(PageCounts, Option<Backlog>), DoorError> {
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
            _ => Ok((PageCounts::default(), None)),
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

/// The storm guard of one delivery, told whole or in parts: past `limit` alerts of one rule,
/// the rest of that rule's matches are folded into one message that says the rule is storming
/// (how many, first and last, the distinct eventNames, accounts and Regions), instead of one
/// alert each. The count runs over the whole delivery, however many parts it is told in.
pub struct StormGuard {
    limit: usize,
    seen: HashMap<String, usize>,
    folded: BTreeMap<String, Storm>,
}

impl StormGuard {
    pub fn new(limit: usize) -> Self {
        StormGuard {
            limit,
            seen: HashMap::new(),
            folded: BTreeMap::new(),
        }
    }

    /// The alerts kept; the others are folded into their rule's storm.
    pub fn pass(&mut self, alerts: Vec<Alert>) -> Vec<Alert> {
        let mut kept = Vec::with_capacity(alerts.len());
        for a in alerts {
            let n = match self.seen.get_mut(&a.rule_id) {
                Some(n) => n,
                None => self.seen.entry(a.rule_id.clone()).or_default(),
            };
            *n += 1;
            if *n <= self.limit {
                kept.push(a);
            } else {
                self.folded.entry(a.rule_id.clone()).or_default().add(&a);
            }
        }
        kept
    }

    /// The storm messages (one per rule that stormed), and how many matches they fold.
    pub fn finish(self, rules: &RuleSet, origin: &str) -> (Vec<Alert>, u64) {
        let mut told = 0;
        let limit = self.limit;
        let storms = self
            .folded
            .into_iter()
            .filter_map(|(rule_id, storm)| {
                let rule = rules.rules().iter().find(|r| r.id == rule_id)?;
                told += storm.more;
                Some(storm.alert(rule, limit, origin))
            })
            .collect();
        (storms, told)
    }
}

/// The storm guard over one delivery told whole: the alerts kept, the storm messages, and how
/// many matches were folded.
pub fn storm_guard(
    alerts: Vec<Alert>,
    limit: usize,
    rules: &RuleSet,
    origin: &str,
) -> (Vec<Alert>, Vec<Alert>, u64) {
    let mut guard = StormGuard::new(limit);
    let kept = guard.pass(alerts);
    let (storms, folded) = guard.finish(rules, origin);
    (kept, storms, folded)
}

/// What a storming rule's folded matches were.
#[derive(Default)]
struct Storm {
    more: u64,
    first: Option<(String, String)>,
    last: Option<(String, String)>,
    names: BTreeSet<String>,
    places: BTreeSet<String>,
    source: Option<AlertSource>,
}

/// Distinct values a storm message lists per field.
const STORM_VALUES: usize = 10;

impl Storm {
    fn add(&mut self, a: &Alert) {
        self.more += 1;
        let seen = (
            a.event.event_time.clone().unwrap_or_default(),
            a.event.event_id.clone().unwrap_or_default(),
        );
        self.first.get_or_insert_with(|| seen.clone());
        self.last = Some(seen);
        if self.names.len() < STORM_VALUES {
            self.names
                .insert(a.event.event_name.clone().unwrap_or_default());
        }
        if self.places.len() < STORM_VALUES {
            self.places.insert(format!(
                "{}/{}",
                a.event.account.as_deref().unwrap_or("?"),
                a.event.region.as_deref().unwrap_or("?")
            ));
        }
        self.source.get_or_insert_with(|| a.source.clone());
    }

    fn alert(self, rule: &Rule, limit: usize, origin: &str) -> Alert {
        let (first, last) = (
            self.first.unwrap_or_default(),
            self.last.unwrap_or_default(),
        );
        let names: Vec<String> = self.names.into_iter().collect();
        let places: Vec<String> = self.places.into_iter().collect();
        let summary = format!(
            "rule {} is storming: {} more matches in one delivery after its first {limit} \
             alerts, folded into this message (first {} at {}, last {} at {}); eventNames: {}; \
             accounts/Regions: {}",
            rule.id,
            self.more,
            first.1,
            first.0,
            last.1,
            last.0,
            names.join(", "),
            places.join(", ")
        );
        let id = format!(
            "storm-{}-{:016x}",
            rule.id,
            super::state::stable_hash(origin.as_bytes())
        );
        Alert::about(
            rule,
            EventInfo {
                event_id: Some(id.clone()),
                event_time: Some(last.0.clone()),
                event_name: Some("storm".into()),
                ..EventInfo::default()
            },
            &format!("storming, {} more matches folded (storm guard)", self.more),
            &summary,
            self.source.unwrap_or(AlertSource::File {
                path: origin.into(),
            }),
            json!({"storm": true, "rule": rule.id, "limit": limit, "more": self.more,
                   "firstEventTime": first.0, "firstEventID": first.1,
                   "lastEventTime": last.0, "lastEventID": last.1,
                   "eventNames": names, "places": places, "delivery": origin}),
            format!("{}|storm", rule.id),
        )
        .shadowed(rule.shadow)
    }
}
