//! The PagerDuty destination (Events API v2): each alert of a paging severity is a `trigger`
//! whose `dedup_key` is the alert key, so that repeats join one incident; resolutions
//! (absence and silence resolved, and matches of rules that `resolves:` another rule's
//! alerts) are `resolve`s of the same key.
//!
//! Alerts page **services**: the default one (`PAGERDUTY_ROUTING_KEY_SECRET`) takes the alerts
//! no route decides; an alert a route decides pages the services its routes name
//! (`to: {pagerduty: [...]}`: where each routing key is kept, or `default`), and none when they
//! name none, the way its topics replace the default topic. A resolve goes to every service
//! where its incident is open. Each service has its own routing key, budget, parked events and
//! open incidents (keys prefixed with the service's tag, the default service's unprefixed).
//!
//! Paging stays within the provider's limit and never makes Lambda re-walk a delivery:
//! - a **budget** per routing key holds the events sent to at most PagerDuty's documented rate
//!   (120 events a minute per routing key by default; `PAGERDUTY_EVENTS_PER_MINUTE`) in *any*
//!   60 seconds — a sliding window of send times, not a token bucket, whose full bucket plus a
//!   minute's refill would let twice the rate through one window;
//! - a 429 is retried after its `Retry-After` when that is short, else the budget pauses until
//!   then; 5xx answers and network faults are retried with back-off;
//! - an event the budget or the provider cannot take now is **parked** in the state store, one
//!   per dedup key (a newer event of the key replaces the parked one: PagerDuty would fold them
//!   into one incident anyway), and sent by the next invocation or the sweep as the budget
//!   allows — oldest first. While anything is parked, new events queue behind it, so that a
//!   key's events are never sent out of order;
//! - an event PagerDuty refuses (another 4xx: the event itself is wrong) is logged as an error
//!   and counted (`PagesRefused`), never retried.
//!
//! Pages go out after SNS has the alerts (the door, `door.rs`): a PagerDuty outage delays pages,
//! never alerts. Routing keys are read at cold start from Secrets Manager or an SSM
//! SecureString (`aws.rs`), never from the environment, never logged, and never stored with a
//! parked event (a parked event names its service by where the key is kept; the key is added
//! when the event is sent).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use super::ports::pagerduty::HttpPager;
pub use super::ports::{Pager, PagerError};
use super::state::PageStore;
use crate::alert::Alert;
use crate::rules::routes::DEFAULT_SERVICE;
use crate::rules::Severity;

/// The Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's limits: a dedup key of 255 characters, a summary of 1,024.
pub const MAX_DEDUP_KEY: usize = 255;
pub const MAX_SUMMARY: usize = 1024;
/// PagerDuty's documented rate limit of the Events API v2, per routing key.
pub const DEFAULT_EVENTS_PER_MINUTE: usize = 120;
/// The longest `Retry-After` waited for inside one call; a longer one pauses the budget.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(2);
/// How long the budget pauses after PagerDuty failed (5xx or network) past the retries, when it
/// named no time: the rest of the invocation's events are parked rather than each waiting out
/// the retries again.
pub const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(60);

pub(crate) fn cut(s: &str, max: usize) -> String {
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
    let dedup_key = cut(&alert.alert_key, MAX_DEDUP_KEY);
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
                "principal": e.principal, "by": e.actor, "errorCode": e.error_code,
                "account": alert.context_json()["account"],
                "matched": alert.matched_json(), "runbook": alert.runbook,
                "source": alert.source.display(),
            },
        },
        "links": alert.links().iter().map(|l| json!({"href": l.url, "text": l.title})).collect::<Vec<_>>(),
    })
}

/// A `resolve` of the incident of `dedup_key`.
pub fn resolve(dedup_key: &str, routing_key: &str) -> Value {
    json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": cut(dedup_key, MAX_DEDUP_KEY)})
}

/// `Retry-After` in seconds (PagerDuty's form); an HTTP date is not honoured (the back-off is).
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Where the budget reads the time (tests move it on).
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    /// The wall clock in Unix milliseconds, for the budget instances share.
    fn unix_ms(&self) -> i64 {
        crate::policy::now_ms()
    }
}

/// The monotonic clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// At most `limit` sends in any `span` (a minute): the send times of the last span, and a pause
/// PagerDuty asked for.
#[derive(Debug, Clone)]
pub struct Budget {
    limit: usize,
    span: Duration,
    sent: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl Budget {
    pub fn new(limit: usize, span: Duration) -> Self {
        Budget {
            limit,
            span,
            sent: VecDeque::with_capacity(limit),
            paused_until: None,
        }
    }

    fn expire(&mut self, now: Instant) {
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.span)
        {
            self.sent.pop_front();
        }
    }

    /// How many sends the budget allows at `now`.
    pub fn available(&mut self, now: Instant) -> usize {
        if self.paused_until.is_some_and(|until| now < until) {
            return 0;
        }
        self.expire(now);
        self.limit.saturating_sub(self.sent.len())
    }

    /// Takes one send, if the budget allows it.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.available(now) == 0 {
            return false;
        }
        self.sent.push_back(now);
        true
    }

    /// No sends until `until`.
    pub fn pause(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
    }
}

/// What paging did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCounts {
    /// Events PagerDuty accepted, of this call's own.
    pub sent: u64,
    /// Events parked for later (budget spent, PagerDuty unavailable, or a backlog ahead).
    pub parked: u64,
    /// Events PagerDuty refused as wrong (never retried).
    pub refused: u64,
    /// Parked events sent.
    pub caught_up: u64,
    /// Resolves not sent: no trigger of theirs opened an incident.
    pub not_open: u64,
}

impl std::ops::AddAssign for PageCounts {
    fn add_assign(&mut self, o: PageCounts) {
        self.sent += o.sent;
        self.parked += o.parked;
        self.refused += o.refused;
        self.caught_up += o.caught_up;
        self.not_open += o.not_open;
    }
}

/// The parked pages left: how many, and how long the oldest has waited (seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub waiting: u64,
    pub oldest_age: i64,
}

/// What is parked at `now`.
pub async fn backlog(park: &dyn PageStore, now: i64) -> Result<Backlog, PagingError> {
    let pages = park.parked(usize::MAX).await.map_err(PagingError::Park)?;
    Ok(Backlog {
        waiting: pages.len() as u64,
        oldest_age: pages
            .iter()
            .map(|p| (now - p.parked_at).max(0))
            .max()
            .unwrap_or(0),
    })
}

/// A page that could not be sent and could not be parked either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    /// No store to park in: the caller must fail so that a retry sends it.
    #[error(transparent)]
    Pager(PagerError),
    #[error("parking a page for later: {0}")]
    Park(super::state::StoreError),
}

impl PagingError {
    pub fn retryable(&self) -> bool {
        match self {
            PagingError::Pager(e) => e.retryable,
            PagingError::Park(e) => e.retryable,
        }
    }
}

/// One PagerDuty service: where its routing key was read, the key, and its budget (PagerDuty's
/// limit is per routing key).
struct Service {
    /// Where the key was read: `PAGERDUTY_ROUTING_KEY_SECRET`'s value (or `default`) for the
    /// default service, a route's `pagerduty:` item for the others. Not secret: parked events
    /// keep it to know their service.
    spec: String,
    /// What its dedup keys are prefixed with in the park and among open incidents: nothing for
    /// the default service (what it parked and opened before routes existed stays its),
    /// `pd:<hash of spec>|` for the others, so that one alert paging two services is two
    /// parked events and two open incidents.
    tag: String,
    routing_key: String,
    budget: Mutex<Budget>,
    /// The shared budget's key: a hash of the routing key (never stored itself).
    shared_key: String,
}

impl Service {
    fn new(spec: &str, tag: String, routing_key: String, per_minute: usize) -> Self {
        Service {
            spec: spec.to_owned(),
            tag,
            shared_key: format!("{:016x}", crate::hash::stable_hash(routing_key.as_bytes())),
            routing_key,
            budget: Mutex::new(Budget::new(per_minute, Duration::from_secs(60))),
        }
    }

    fn with_budget<T>(&self, now: Instant, f: impl FnOnce(&mut Budget, Instant) -> T) -> T {
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut budget, now)
    }

    /// The key an event of this service has in the park and among open incidents.
    fn key(&self, dedup_key: &str) -> String {
        format!("{}{dedup_key}", self.tag)
    }
}

/// Which alerts page, to which services, within which budgets: the default service
/// (`PAGERDUTY_ROUTING_KEY_SECRET`) takes the alerts no route decides; the routes' `pagerduty:`
/// services take the alerts of their routes.
pub struct Paging {
    pub pager: Box<dyn Pager>,
    /// Alerts below this severity do not page (resolutions always go).
    pub min_severity: Severity,
    default: Option<Service>,
    routed: Vec<Service>,
    /// Events a minute per routing key (the local and the shared budget's limit).
    per_minute: usize,
    clock: Arc<dyn Clock>,
}

/// How long an incident is remembered as open for its resolve (the item's TTL).
const OPEN_FOR: i64 = 30 * 86_400;

/// The shared budget's window: a minute and a second, so that a send granted at the end of one
/// window and sent a little later is still inside it when PagerDuty counts.
const SHARED_SPAN_MS: i64 = 61_000;

impl Paging {
    /// Pages the default service, with this routing key.
    pub fn new(pager: Box<dyn Pager>, routing_key: String, min_severity: Severity) -> Self {
        Paging {
            default: Some(Service::new(
                DEFAULT_SERVICE,
                String::new(),
                routing_key,
                DEFAULT_EVENTS_PER_MINUTE,
            )),
            ..Paging::routed_only(pager, min_severity)
        }
    }

    /// Pages only the services routes name ([`Paging::with_service`]); alerts no route decides
    /// do not page.
    pub fn routed_only(pager: Box<dyn Pager>, min_severity: Severity) -> Self {
        Paging {
            pager,
            min_severity,
            default: None,
            routed: Vec::new(),
            per_minute: DEFAULT_EVENTS_PER_MINUTE,
            clock: Arc::new(SystemClock),
        }
    }

    /// Where the default service's key was read (`PAGERDUTY_ROUTING_KEY_SECRET`): a route that
    /// names the same place pages the default service.
    pub fn default_spec(mut self, spec: &str) -> Self {
        if let Some(d) = &mut self.default {
            d.spec = spec.to_owned();
        }
        self
    }

    /// Also pages the service whose key is at `spec` (a route's `pagerduty:` item), with this
    /// routing key.
    pub fn with_service(mut self, spec: &str, routing_key: String) -> Self {
        if self.service_for(spec).is_none() {
            let tag = format!("pd:{:016x}|", crate::hash::stable_hash(spec.as_bytes()));
            self.routed
                .push(Service::new(spec, tag, routing_key, self.per_minute));
        }
        self
    }

    /// At most `n` events a minute to each routing key (`PAGERDUTY_EVENTS_PER_MINUTE`).
    pub fn per_minute(mut self, n: usize) -> Self {
        self.per_minute = n.max(1);
        for s in self.default.iter_mut().chain(self.routed.iter_mut()) {
            s.budget = Mutex::new(Budget::new(self.per_minute, Duration::from_secs(60)));
        }
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn services(&self) -> impl Iterator<Item = &Service> {
        self.default.iter().chain(self.routed.iter())
    }

    /// The service a route's `pagerduty:` item names.
    fn service_for(&self, spec: &str) -> Option<&Service> {
        match &self.default {
            Some(d) if spec == DEFAULT_SERVICE || spec == d.spec => Some(d),
            _ => self.routed.iter().find(|s| s.spec == spec),
        }
    }

    /// The service an event goes to (by its routing key: events are made here).
    fn service_of(&self, event: &Value) -> Option<&Service> {
        let key = event["routing_key"].as_str()?;
        self.services().find(|s| s.routing_key == key)
    }

    /// Whether every PagerDuty service the rules' routes name has its routing key here; else
    /// which route names one that has not (it was not read at cold start).
    pub fn covers(&self, rules: &crate::rules::RuleSet) -> Result<(), String> {
        uncovered(rules, |spec| self.service_for(spec).is_some())
    }

    async fn take_shared(
        &self,
        park: &dyn PageStore,
        service: &Service,
        wanted: usize,
    ) -> Result<usize, PagingError> {
        park.take_shared(
            &service.shared_key,
            wanted,
            self.per_minute,
            SHARED_SPAN_MS,
            self.clock.unix_ms(),
        )
        .await
        .map_err(PagingError::Park)
    }

    fn take(&self, service: &Service) -> bool {
        service.with_budget(self.clock.now(), |b, now| b.take(now))
    }

    fn available(&self, service: &Service) -> usize {
        service.with_budget(self.clock.now(), |b, now| b.available(now))
    }

    fn pause(&self, service: &Service, e: &PagerError) {
        let wait = e.retry_after.unwrap_or(PAUSE_AFTER_FAILURE);
        service.with_budget(self.clock.now(), |b, now| b.pause(now + wait));
    }

    /// The events of these alerts (those at or above the minimum severity, and resolutions;
    /// not roll-ups: their alert already paged) and of these resolved keys, each addressed to
    /// its services: the routes' `pagerduty:` services for an alert a route decides, the
    /// default service for one no route decides; a resolved key to every service (only those
    /// where its incident is open are sent).
    pub fn events(
        &self,
        alerts: &[Alert],
        resolves: &[String],
        routes: &[crate::rules::routes::Route],
    ) -> Vec<Value> {
        let mut out = Vec::new();
        for alert in alerts {
            let resolved = alert
                .record
                .pointer("/detail/state")
                .and_then(Value::as_str)
                == Some("RESOLVED");
            // A roll-up tells of matches whose alert already paged; a group's notification
            // is its incident.
            let rollup = alert.record.get("rollup") == Some(&Value::Bool(true))
                && alert.record.get("group") != Some(&Value::Bool(true));
            if rollup || (!resolved && alert.severity < self.min_severity) {
                continue;
            }
            let decision = if routes.is_empty() {
                crate::rules::routes::Decision::default()
            } else {
                crate::rules::routes::decide(routes, &super::publish::facts(alert))
            };
            if decision.is_default() {
                if let Some(d) = &self.default {
                    out.push(event_for(alert, &d.routing_key));
                }
                continue;
            }
            for spec in &decision.pagerduty {
                match self.service_for(spec) {
                    Some(s) => out.push(event_for(alert, &s.routing_key)),
                    // Refused at cold start and at a rules reload (`covers`).
                    None => tracing::error!(
                        service = %spec,
                        rule = %alert.rule_id,
                        "a route pages a PagerDuty service whose routing key was not read"
                    ),
                }
            }
        }
        for key in resolves {
            for s in self.services() {
                out.push(resolve(key, &s.routing_key));
            }
        }
        out
    }

    /// Sends the events for these alerts and resolved keys (see [`Paging::send_events`]).
    pub async fn send(
        &self,
        alerts: &[Alert],
        resolves: &[String],
        routes: &[crate::rules::routes::Route],
        park: Option<&dyn PageStore>,
        now: i64,
    ) -> Result<PageCounts, PagingError> {
        self.send_events(self.events(alerts, resolves, routes), park, now)
            .await
    }

    /// Sends events within each service's budget. With a store, what a budget or PagerDuty
    /// cannot take now is parked (and the backlog, when there is one, is sent first as far as
    /// the budgets allow); resolves of incidents never opened are dropped. Without one, a
    /// retryable failure is returned (the invocation fails and Lambda retries it).
    pub async fn send_events(
        &self,
        events: Vec<Value>,
        park: Option<&dyn PageStore>,
        now: i64,
    ) -> Result<PageCounts, PagingError> {
        let mut report = PageCounts::default();
        if events.is_empty() {
            return Ok(report);
        }
        let Some(park) = park else {
            for event in &events {
                match self.pager.enqueue(event).await {
                    Ok(()) => report.sent += 1,
                    Err(e) if e.retryable => return Err(PagingError::Pager(e)),
                    Err(e) => {
                        tracing::error!(error = %e, "PagerDuty refused an event; it is not sent again");
                        report.refused += 1;
                    }
                }
            }
            return Ok(report);
        };
        let events: Vec<(&Service, Value)> = events
            .into_iter()
            .filter_map(|e| match self.service_of(&e) {
                Some(s) => Some((s, e)),
                None => {
                    tracing::error!("an event for a routing key no service has; it is not sent");
                    report.refused += 1;
                    None
                }
            })
            .collect();
        let (events, closing, not_open) = self.only_open(park, events, now).await?;
        report.not_open = not_open;
        // While anything is parked, new events queue behind it (a key's events in order).
        let backlog = !park.parked(1).await.map_err(PagingError::Park)?.is_empty();
        // Each service's grant from the budget every instance shares, taken once.
        let mut shared: Vec<usize> = Vec::new();
        let services: Vec<&Service> = self.services().collect();
        for s in &services {
            let wanted = if backlog {
                0
            } else {
                let mine = events.iter().filter(|(e, _)| std::ptr::eq(*e, *s)).count();
                mine.min(self.available(s))
            };
            shared.push(self.take_shared(park, s, wanted).await?);
        }
        for (service, event) in events {
            let i = slot(&services, service);
            if shared[i] > 0 && self.take(service) {
                shared[i] -= 1;
                match self.pager.enqueue(&event).await {
                    Ok(()) => {
                        report.sent += 1;
                        continue;
                    }
                    Err(e) if e.retryable => {
                        tracing::warn!(service = %service.spec, error = %e, "PagerDuty is not taking events: they are parked for the sweep");
                        // The budget pauses: this service's next events are parked at once.
                        self.pause(service, &e);
                    }
                    Err(e) => {
                        tracing::error!(service = %service.spec, error = %e, "PagerDuty refused an event; it is not sent again");
                        report.refused += 1;
                        continue;
                    }
                }
            }
            Self::park_one(park, service, &event, now).await?;
            report.parked += 1;
        }
        if report.parked > 0 {
            tracing::warn!(
                parked = report.parked,
                "pages parked (PagerDuty's budget spent or PagerDuty unavailable); the sweep sends them"
            );
        }
        if backlog {
            report += self.drain(park).await?;
        }
        // Resolves sent or parked: their incidents are no longer open here.
        park.close_open(&closing).await.map_err(PagingError::Park)?;
        Ok(report)
    }

    /// Notes the triggers' incidents as open, and drops resolves of incidents never opened
    /// here (PagerDuty would ignore them, and they would spend the budget); returns the events
    /// left, the keys whose incidents the resolves close, and how many resolves were dropped.
    async fn only_open<'s>(
        &self,
        park: &dyn PageStore,
        events: Vec<(&'s Service, Value)>,
        now: i64,
    ) -> Result<(Vec<(&'s Service, Value)>, Vec<String>, u64), PagingError> {
        let key = |(s, e): &(&Service, Value)| s.key(e["dedup_key"].as_str().unwrap_or_default());
        let is = |(_, e): &(&Service, Value), action: &str| e["event_action"] == action;
        let triggers: Vec<String> = events
            .iter()
            .filter(|e| is(e, "trigger"))
            .map(key)
            .collect();
        if !triggers.is_empty() {
            park.note_open(&triggers, now + OPEN_FOR)
                .await
                .map_err(PagingError::Park)?;
        }
        let resolves: Vec<String> = events
            .iter()
            .filter(|e| is(e, "resolve"))
            .map(key)
            .collect();
        if resolves.is_empty() {
            return Ok((events, Vec::new(), 0));
        }
        let open: std::collections::HashSet<String> = park
            .open_of(&resolves)
            .await
            .map_err(PagingError::Park)?
            .into_iter()
            .collect();
        let mut not_open = 0;
        let events = events
            .into_iter()
            .filter(|e| {
                let left = is(e, "resolve") && !open.contains(&key(e));
                not_open += u64::from(left);
                !left
            })
            .collect();
        if not_open > 0 {
            tracing::info!(
                not_open,
                "resolves of incidents never opened here are not sent (they would spend the budget)"
            );
        }
        Ok((events, open.into_iter().collect(), not_open))
    }

    /// Parks an event under its service's key, without the routing key and naming the service
    /// when it is not the default one.
    async fn park_one(
        park: &dyn PageStore,
        service: &Service,
        event: &Value,
        now: i64,
    ) -> Result<(), PagingError> {
        let mut stored = event.clone();
        if let Some(o) = stored.as_object_mut() {
            o.remove("routing_key");
            if !service.tag.is_empty() {
                o.insert("service".into(), Value::String(service.spec.clone()));
            }
        }
        let key = service.key(event["dedup_key"].as_str().unwrap_or_default());
        park.park(&key, &stored, now)
            .await
            .map_err(PagingError::Park)
    }

    /// Sends parked events, oldest first, each service's as far as its budget allows: one
    /// service's backlog never holds another's back. A parked event of a service no longer
    /// configured goes to the default service (with a warning), else it is dropped as refused
    /// (with an error naming it).
    pub async fn drain(&self, park: &dyn PageStore) -> Result<PageCounts, PagingError> {
        let mut report = PageCounts::default();
        let pages = park.parked(usize::MAX).await.map_err(PagingError::Park)?;
        if pages.is_empty() {
            return Ok(report);
        }
        let services: Vec<&Service> = self.services().collect();
        let mut queues: Vec<Vec<&super::state::ParkedPage>> = vec![Vec::new(); services.len()];
        for page in &pages {
            let spec = page.event.get("service").and_then(Value::as_str);
            let found = match spec {
                None => self.default.as_ref(),
                Some(spec) => self.service_for(spec),
            };
            let service = match (found, spec, &self.default) {
                (Some(s), _, _) => s,
                (None, Some(spec), Some(default)) => {
                    tracing::warn!(service = %spec, dedup_key = %page.dedup_key, "a parked page's PagerDuty service is no longer configured: it goes to the default service");
                    default
                }
                (None, spec, _) => {
                    tracing::error!(service = spec.unwrap_or(DEFAULT_SERVICE), dedup_key = %page.dedup_key, "a parked page's PagerDuty service is no longer configured and there is no default service: it is dropped");
                    report.refused += 1;
                    park.unpark(page).await.map_err(PagingError::Park)?;
                    continue;
                }
            };
            queues[slot(&services, service)].push(page);
        }
        for (service, queue) in services.iter().zip(queues) {
            let room = self.available(service).min(queue.len());
            if room == 0 {
                continue;
            }
            let mut shared = self.take_shared(park, service, room).await?;
            for page in queue {
                if shared == 0 || !self.take(service) {
                    break;
                }
                shared -= 1;
                let mut event = page.event.clone();
                if let Some(o) = event.as_object_mut() {
                    o.remove("service");
                }
                event["routing_key"] = Value::String(service.routing_key.clone());
                match self.pager.enqueue(&event).await {
                    Ok(()) => report.caught_up += 1,
                    Err(e) if e.retryable => {
                        tracing::warn!(service = %service.spec, error = %e, "PagerDuty is not taking events: parked pages wait");
                        self.pause(service, &e);
                        break;
                    }
                    Err(e) => {
                        tracing::error!(service = %service.spec, error = %e, dedup_key = %page.dedup_key, "PagerDuty refused a parked event; it is dropped");
                        report.refused += 1;
                    }
                }
                park.unpark(page).await.map_err(PagingError::Park)?;
            }
        }
        if report.caught_up > 0 {
            tracing::info!(caught_up = report.caught_up, "parked pages sent");
        }
        Ok(report)
    }
}

/// Where a service stands in the list of services (they are told apart by identity: two
/// services may share nothing but a routing key).
fn slot(services: &[&Service], service: &Service) -> usize {
    services
        .iter()
        .position(|s| std::ptr::eq(*s, service))
        .unwrap_or_default()
}

/// The PagerDuty services the rules' routes name, each with the first route naming it (`default`
/// included).
pub fn services_named(rules: &crate::rules::RuleSet) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for route in rules.routes() {
        for spec in &route.pagerduty {
            if !out.iter().any(|(s, _)| s == spec) {
                out.push((spec.clone(), route.origin.clone()));
            }
        }
    }
    out
}

/// The first route naming a service `has` says is missing, as a start fault.
pub fn uncovered(rules: &crate::rules::RuleSet, has: impl Fn(&str) -> bool) -> Result<(), String> {
    match services_named(rules).into_iter().find(|(s, _)| !has(s)) {
        None => Ok(()),
        Some((spec, origin)) if spec == DEFAULT_SERVICE => Err(format!(
            "{origin} pages the default PagerDuty service, but PAGERDUTY_ROUTING_KEY_SECRET is not set"
        )),
        Some((spec, origin)) => Err(format!(
            "{origin} pages the PagerDuty service whose routing key is at {spec}, which this \
             instance did not read at its start (a new cold start reads every service the routes name)"
        )),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::state::{MemoryState, ParkedPage};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock the test moves on.
    struct TestClock {
        base: Instant,
        secs: AtomicU64,
    }

    impl TestClock {
        fn new() -> Arc<Self> {
            Arc::new(TestClock {
                base: Instant::now(),
                secs: AtomicU64::new(0),
            })
        }
        fn advance(&self, secs: u64) {
            self.secs.fetch_add(secs, Ordering::SeqCst);
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Instant {
            self.base + Duration::from_secs(self.secs.load(Ordering::SeqCst))
        }
        fn unix_ms(&self) -> i64 {
            1_700_000_000_000 + 1000 * self.secs.load(Ordering::SeqCst) as i64
        }
    }

    /// Answers from a script (then success), and keeps what it accepted.
    #[derive(Default)]
    struct Scripted {
        script: Mutex<VecDeque<PagerError>>,
        accepted: Mutex<Vec<Value>>,
    }

    #[async_trait::async_trait]
    impl Pager for Arc<Scripted> {
        async fn enqueue(&self, event: &Value) -> Result<(), PagerError> {
            if let Some(e) = self.script.lock().expect("lock").pop_front() {
                return Err(e);
            }
            self.accepted.lock().expect("lock").push(event.clone());
            Ok(())
        }
    }

    fn down(retry_after: Option<u64>) -> PagerError {
        PagerError {
            message: "HTTP 503".into(),
            retryable: true,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    fn trigger(key: &str, n: u32) -> Value {
        json!({"routing_key": "RK", "event_action": "trigger", "dedup_key": key, "payload": {"n": n}})
    }

    fn paging(limit: usize) -> (Paging, Arc<Scripted>, Arc<TestClock>) {
        let pager = Arc::new(Scripted::default());
        let clock = TestClock::new();
        let p = Paging::new(Box::new(Arc::clone(&pager)), "RK".into(), Severity::High)
            .per_minute(limit)
            .with_clock(clock.clone());
        (p, pager, clock)
    }

    fn keys(events: &[Value]) -> Vec<String> {
        events
            .iter()
            .map(|e| e["dedup_key"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn the_budget_allows_the_limit_in_any_span_not_twice_it() {
        let t0 = Instant::now();
        let mut b = Budget::new(3, Duration::from_secs(60));
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(
            !b.take(t0 + Duration::from_secs(59)),
            "a full minute's budget spent"
        );
        // One minute after the first three, all three come back; a token bucket of 3 refilled
        // at 3 a minute would have let one through at 20 s, and 6 through the first minute.
        assert_eq!(b.available(t0 + Duration::from_secs(60)), 3);
        let t1 = t0 + Duration::from_secs(60);
        assert!(b.take(t1));
        b.pause(t1 + Duration::from_secs(30));
        assert_eq!(b.available(t1 + Duration::from_secs(29)), 0, "paused");
        assert_eq!(b.available(t1 + Duration::from_secs(30)), 2);
        // A shorter pause does not shorten a longer one.
        b.pause(t1 + Duration::from_secs(100));
        b.pause(t1 + Duration::from_secs(40));
        assert_eq!(b.available(t1 + Duration::from_secs(50)), 0);
    }

    #[tokio::test]
    async fn beyond_the_budget_pages_are_parked_and_caught_up_a_minute_later() {
        let (p, pager, clock) = paging(3);
        let store = MemoryState::default();
        let events: Vec<Value> = (0..5).map(|i| trigger(&format!("k{i}"), i)).collect();
        let r = p
            .send_events(events, Some(&store), 1000)
            .await
            .expect("send");
        assert_eq!((r.sent, r.parked, r.caught_up), (3, 2, 0));
        assert_eq!(keys(&pager.accepted.lock().unwrap()), ["k0", "k1", "k2"]);
        // The routing key is not kept with a parked event.
        let parked = store.parked(10).await.expect("parked");
        assert_eq!(parked.len(), 2);
        assert!(parked.iter().all(|p| p.event.get("routing_key").is_none()));
        // Within the minute nothing more goes; nor at the minute, within the shared budget's
        // second of margin.
        clock.advance(59);
        assert_eq!(p.drain(&store).await.expect("drain").caught_up, 0);
        clock.advance(1);
        assert_eq!(p.drain(&store).await.expect("drain").caught_up, 0);
        clock.advance(1);
        let r = p.drain(&store).await.expect("drain");
        assert_eq!(r.caught_up, 2);
        let accepted = pager.accepted.lock().unwrap().clone();
        assert_eq!(keys(&accepted), ["k0", "k1", "k2", "k3", "k4"]);
        assert!(accepted.iter().all(|e| e["routing_key"] == "RK"));
        assert!(store.parked(10).await.expect("parked").is_empty());
    }

    #[tokio::test]
    async fn an_outage_parks_the_rest_and_new_pages_queue_behind_the_backlog() {
        let (p, pager, clock) = paging(120);
        let store = MemoryState::default();
        pager.script.lock().unwrap().push_back(down(None));
        let events: Vec<Value> = (0..4).map(|i| trigger(&format!("k{i}"), i)).collect();
        let r = p
            .send_events(events, Some(&store), 1000)
            .await
            .expect("send");
        // The first failed; the budget paused, so the other three were not tried.
        assert_eq!((r.sent, r.parked), (0, 4));
        assert!(pager.accepted.lock().unwrap().is_empty());
        // A newer event of a parked key replaces it; a new key queues behind the backlog.
        clock.advance(10);
        let r = p
            .send_events(
                vec![trigger("k1", 11), trigger("k9", 9)],
                Some(&store),
                1010,
            )
            .await
            .expect("send");
        assert_eq!((r.sent, r.parked, r.caught_up), (0, 2, 0), "still paused");
        assert_eq!(store.parked(10).await.expect("parked").len(), 5);
        clock.advance(PAUSE_AFTER_FAILURE.as_secs());
        let r = p.drain(&store).await.expect("drain");
        assert_eq!(r.caught_up, 5);
        let accepted = pager.accepted.lock().unwrap().clone();
        let mut got = keys(&accepted);
        got.sort();
        assert_eq!(got, ["k0", "k1", "k2", "k3", "k9"], "each key once");
        let k1 = accepted.iter().find(|e| e["dedup_key"] == "k1").unwrap();
        assert_eq!(k1["payload"]["n"], 11, "the newest event of the key");
    }

    #[tokio::test]
    async fn retry_after_pauses_for_as_long_as_pagerduty_asks() {
        let (p, pager, clock) = paging(120);
        let store = MemoryState::default();
        pager.script.lock().unwrap().push_back(down(Some(300)));
        let r = p
            .send_events(vec![trigger("a", 1)], Some(&store), 0)
            .await
            .expect("send");
        assert_eq!(r.parked, 1);
        clock.advance(299);
        assert_eq!(p.drain(&store).await.expect("drain").caught_up, 0);
        clock.advance(1);
        assert_eq!(p.drain(&store).await.expect("drain").caught_up, 1);
    }

    #[tokio::test]
    async fn a_refused_event_is_counted_never_parked_and_without_a_store_a_failure_is_returned() {
        let (p, pager, _clock) = paging(120);
        let store = MemoryState::default();
        pager.script.lock().unwrap().push_back(PagerError {
            message: "HTTP 400".into(),
            retryable: false,
            retry_after: None,
        });
        let r = p
            .send_events(vec![trigger("a", 1), trigger("b", 2)], Some(&store), 0)
            .await
            .expect("send");
        assert_eq!((r.sent, r.refused, r.parked), (1, 1, 0));
        pager.script.lock().unwrap().push_back(down(None));
        let e = p
            .send_events(vec![trigger("c", 3)], None, 0)
            .await
            .expect_err("no store to park in");
        assert!(e.retryable(), "{e}");
    }

    #[tokio::test]
    async fn unparking_leaves_a_later_parking_of_the_key() {
        let store = MemoryState::default();
        store.park("k", &json!({"n": 1}), 1).await.expect("park");
        let first = store.parked(10).await.expect("parked").remove(0);
        store.park("k", &json!({"n": 2}), 2).await.expect("park");
        store.unpark(&first).await.expect("unpark");
        let left = store.parked(10).await.expect("parked");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].event["n"], 2);
    }

    fn to(routing_key: &str, key: &str, n: u32) -> Value {
        json!({"routing_key": routing_key, "event_action": "trigger", "dedup_key": key, "payload": {"n": n}})
    }

    fn failed_backup(account: &str) -> Alert {
        let set = crate::rules::RuleSet::load(&[crate::rules::RuleSource::Builtin]).unwrap();
        let rule = set.rule("backup-job-failed").unwrap();
        let record = json!({
            "eventID": format!("e-{account}"), "eventName": "BackupJobCompleted",
            "eventSource": "backup.amazonaws.com", "eventType": "AwsServiceEvent",
            "recipientAccountId": account, "awsRegion": "eu-west-1",
            "serviceEventDetails": {"state": "FAILED", "backupJobId": format!("J-{account}"), "backupVaultName": "V"}
        });
        let source = crate::alert::AlertSource::S3 {
            bucket: "b".into(),
            key: "k".into(),
        };
        Alert::new(rule, &record, source, 0)
    }

    #[test]
    fn an_alert_pages_its_routes_services_and_one_no_route_decides_the_default() {
        let routes = crate::rules::routes::parse(
            &json!([
                {"match": {"accounts": ["111111111111"]}, "to": {"pagerduty": ["ssm:/team-a"]}},
                {"match": {"accounts": ["222222222222"]}, "to": {"topics": ["arn:aws:sns:eu-west-1:999999999999:chat"]}},
                {"match": {"accounts": ["444444444444"]}, "to": {"pagerduty": ["default", "ssm:/team-a"]}},
            ]),
            "r.yaml",
            "$.routes",
        )
        .expect("routes");
        let (p, _pager, _clock) = paging(120);
        let p = p.with_service("ssm:/team-a", "RKA".into());
        let alerts: Vec<Alert> = [
            "111111111111",
            "222222222222",
            "333333333333",
            "444444444444",
        ]
        .iter()
        .map(|a| failed_backup(a))
        .collect();
        let events = p.events(&alerts, &[], &routes);
        let sent: Vec<(String, String)> = events
            .iter()
            .map(|e| {
                let account = e["payload"]["group"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                (
                    account,
                    e["routing_key"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            sent,
            [
                ("111111111111".to_owned(), "RKA".to_owned()),
                // 222…: its route names topics only: no page.
                ("333333333333".to_owned(), "RK".to_owned()),
                ("444444444444".to_owned(), "RK".to_owned()),
                ("444444444444".to_owned(), "RKA".to_owned()),
            ]
        );
        // A resolved key goes to every service (only_open keeps those where it is open).
        let resolves = p.events(&[], &["k".to_owned()], &routes);
        assert_eq!(resolves.len(), 2);
        // Without the team's key, the rules are refused, naming the route.
        let (bare, _, _) = paging(120);
        let rules = crate::rules::RuleSet::load(&[crate::rules::RuleSource::Builtin])
            .unwrap()
            .with_routes(routes);
        let why = bare.covers(&rules).expect_err("ssm:/team-a not read");
        assert!(
            why.contains("r.yaml $.routes[0]") && why.contains("ssm:/team-a"),
            "{why}"
        );
        assert_eq!(p.covers(&rules), Ok(()));
    }

    #[tokio::test]
    async fn each_service_has_its_own_budget_and_one_backlog_holds_no_other_back() {
        let (p, pager, clock) = paging(3);
        let p = p.with_service("ssm:/team-a", "RKA".into());
        let store = MemoryState::default();
        let mut events: Vec<Value> = (0..5).map(|i| to("RK", &format!("k{i}"), i)).collect();
        events.push(to("RKA", "k0", 100));
        events.push(to("RKA", "a1", 101));
        let r = p
            .send_events(events, Some(&store), 1000)
            .await
            .expect("send");
        assert_eq!((r.sent, r.parked), (5, 2), "3 to the default, 2 to team A");
        let parked = store.parked(10).await.expect("parked");
        assert_eq!(
            keys(&parked.iter().map(|p| p.event.clone()).collect::<Vec<_>>()),
            ["k3", "k4"]
        );
        assert!(parked.iter().all(|p| p.event.get("service").is_none()));
        // The default service's backlog: team A's new event queues behind it, and the drain
        // sends it within team A's budget at once.
        let r = p
            .send_events(vec![to("RKA", "a2", 102)], Some(&store), 1001)
            .await
            .expect("send");
        assert_eq!((r.sent, r.parked, r.caught_up), (0, 1, 1));
        let accepted = pager.accepted.lock().unwrap().clone();
        let last = accepted.last().unwrap();
        assert_eq!(
            (last["dedup_key"].as_str(), last["routing_key"].as_str()),
            (Some("a2"), Some("RKA"))
        );
        assert!(
            last.get("service").is_none(),
            "the service's name is not sent"
        );
        // Team A's budget is spent now too; the same dedup key parks once per service.
        let r = p
            .send_events(vec![to("RKA", "k3", 103)], Some(&store), 1002)
            .await
            .expect("send");
        assert_eq!((r.parked, r.caught_up), (1, 0));
        let parked = store.parked(10).await.expect("parked");
        assert_eq!(parked.len(), 3);
        let team: Vec<&ParkedPage> = parked
            .iter()
            .filter(|p| p.event.get("service").is_some())
            .collect();
        assert_eq!(team.len(), 1);
        assert_eq!(team[0].event["service"], "ssm:/team-a");
        assert!(team[0].dedup_key.starts_with("pd:") && team[0].dedup_key.ends_with("|k3"));
        assert!(parked.iter().all(|p| p.event.get("routing_key").is_none()));
        clock.advance(61);
        let r = p.drain(&store).await.expect("drain");
        assert_eq!(r.caught_up, 3);
        let accepted = pager.accepted.lock().unwrap().clone();
        let tail: Vec<(String, String)> = accepted[accepted.len() - 3..]
            .iter()
            .map(|e| {
                (
                    e["dedup_key"].as_str().unwrap().to_owned(),
                    e["routing_key"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert!(
            tail.contains(&("k3".into(), "RK".into()))
                && tail.contains(&("k3".into(), "RKA".into())),
            "{tail:?}"
        );
        assert!(store.parked(10).await.expect("parked").is_empty());
    }

    #[tokio::test]
    async fn a_resolve_is_sent_only_where_its_incident_was_opened() {
        let (p, pager, _clock) = paging(120);
        let p = p.with_service("ssm:/team-a", "RKA".into());
        let store = MemoryState::default();
        p.send_events(vec![to("RKA", "k", 1)], Some(&store), 0)
            .await
            .expect("send");
        let resolves = vec![resolve("k", "RK"), resolve("k", "RKA")];
        let r = p
            .send_events(resolves, Some(&store), 1)
            .await
            .expect("send");
        assert_eq!((r.sent, r.not_open), (1, 1));
        let accepted = pager.accepted.lock().unwrap().clone();
        assert_eq!(accepted[1]["event_action"], "resolve");
        assert_eq!(accepted[1]["routing_key"], "RKA");
    }

    #[tokio::test]
    async fn a_parked_page_of_a_service_gone_goes_to_the_default_one_else_is_dropped_and_counted() {
        let (p, pager, _clock) = paging(120);
        let p = p.with_service("ssm:/team-a", "RKA".into());
        let store = MemoryState::default();
        pager.script.lock().unwrap().push_back(down(Some(600)));
        let r = p
            .send_events(vec![to("RKA", "a", 1)], Some(&store), 0)
            .await
            .expect("send");
        assert_eq!(r.parked, 1);
        // The routes changed: the next instance has the default service only.
        let (next, next_pager, _) = paging(120);
        assert_eq!(next.drain(&store).await.expect("drain").caught_up, 1);
        let sent = next_pager.accepted.lock().unwrap().clone();
        assert_eq!(
            (
                sent[0]["dedup_key"].as_str(),
                sent[0]["routing_key"].as_str()
            ),
            (Some("a"), Some("RK"))
        );
        // Without a default service it cannot go anywhere: counted as refused, not kept forever.
        // (team A's budget is still paused for PagerDuty's Retry-After: parked at once)
        let r = p
            .send_events(vec![to("RKA", "b", 2)], Some(&store), 5)
            .await
            .expect("send");
        assert_eq!(r.parked, 1);
        let routed_only =
            Paging::routed_only(Box::new(Arc::new(Scripted::default())), Severity::High)
                .with_service("ssm:/team-b", "RKB".into());
        let r = routed_only.drain(&store).await.expect("drain");
        assert_eq!((r.caught_up, r.refused), (0, 1));
        assert!(store.parked(10).await.expect("parked").is_empty());
    }
}
