//! The state store: dedup and threshold windows shared by every invocation of the function, so
//! that the first alert of a window is published exactly once however many invocations race on
//! it, and what the window held back is told in one roll-up by the scheduled sweep.
//!
//! The protocol, for each match of a rule with dedup or a threshold:
//! 1. **count** it in its window, once per eventID (a retried invocation counts nothing twice),
//!    and note the window as due for the sweep at its end plus the lateness allowance;
//! 2. when the window has reached the rule's count and nobody holds its alert, **claim** it for
//!    this event (a conditional write: one claim wins);
//! 3. publish, and only once SNS accepted the message **mark** the claim published. A retried
//!    invocation whose claim was never marked publishes it again: a crash between claim and
//!    publish loses nothing. The sweep also publishes a claim left unpublished past the lateness
//!    allowance (its invocation's retries were lost), from the record stored with the claim.
//!
//! [`StateStore`] is the port; `lambda/aws.rs` implements it on DynamoDB, [`MemoryState`] in
//! memory. [`admit`] is the one decision layer: the function runs it over DynamoDB, the command
//! line (`policy::local::LocalPolicy`) over [`MemoryState`], and `tests/stores.rs` runs one suite of
//! decisions against both stores.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::alert::{Alert, AlertSource, EventInfo};
use crate::model::{Rule, RuleBook};
use crate::policy::{event_time, key_value, Window};

/// How long after a window ends (in event time) its roll-up waits for late deliveries.
pub const DEFAULT_LATENESS: u64 = 15 * 60;
/// Event ids a window remembers for idempotent counting; past them, counting is best effort.
pub const MAX_IDS: usize = 500;
/// Distinct values a window keeps for its roll-up.
pub const MAX_VALUES: usize = 50;
/// The largest record kept with a claim (so that the sweep can publish a lost claim).
pub const MAX_STORED_RECORD: usize = 200 << 10;
/// How long the store keeps a window after it is due (DynamoDB TTL).
pub const KEEP_AFTER_DUE: i64 = 7 * 86_400;

pub use crate::hash::stable_hash;

/// One rule's window for one key value: a dedup or threshold window, or a group's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRef {
    pub rule: String,
    /// The key value, as JSON (`["123456789012","us-east-1"]`).
    pub key_value: String,
    pub window: Window,
    /// A group's window (`group:`), whose first alert goes out and whose later ones are told in
    /// its notification.
    pub group: bool,
}

impl WindowRef {
    /// The store's id of the window: `w#<rule>#<window start>#<hash of the key value>`, or
    /// `g#…` for a group's.
    pub fn id(&self) -> String {
        format!(
            "{}#{}#{}#{:016x}",
            if self.group { "g" } else { "w" },
            self.rule,
            self.window.start,
            stable_hash(self.key_value.as_bytes())
        )
    }
}

/// The match a window is claimed for, with what the sweep needs to publish it if the
/// invocation is lost.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    pub event_id: &'a str,
    pub record: Option<&'a str>,
    pub source: &'a str,
    pub now: i64,
    /// The window's claim is told by other means (its rule's group counts the match and tells
    /// it): the window is marked published at once, so that the sweep never publishes it on
    /// its own.
    pub told: bool,
}

/// A window to create with its first matches ([`StateStore::create_many`]).
#[derive(Debug, Clone, Copy)]
pub struct NewWindow<'a> {
    pub w: &'a WindowRef,
    pub matches: &'a [MatchRef],
    pub needed: u64,
    pub claimant: Option<Claimant<'a>>,
    pub members: &'a [String],
}

/// An item admission writes besides the windows: a window's due entry for the sweep, or a
/// group member's index entry (which group an alert key joined, for its recovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    Due {
        window: String,
        due_at: i64,
    },
    Member {
        member: String,
        group: String,
        expires: i64,
    },
}

/// An event waiting for PagerDuty: the newest of its dedup key, without the routing key.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedPage {
    pub dedup_key: String,
    pub event: Value,
    /// When it was parked (Unix seconds), and the token that tells this parking from a later
    /// one of the same key.
    pub parked_at: i64,
    pub version: String,
}

/// Where pages wait (the state store: [`MemoryState`] in memory, `lambda/aws.rs` on DynamoDB).
#[async_trait]
pub trait PageStore: Send + Sync {
    /// Parks an event under its dedup key, replacing what was parked for the key.
    async fn park(&self, dedup_key: &str, event: &Value, now: i64) -> Result<(), StoreError>;
    /// Up to `limit` parked events, oldest first.
    async fn parked(&self, limit: usize) -> Result<Vec<ParkedPage>, StoreError>;
    /// Removes a parked event once sent — unless a later one of its key replaced it.
    async fn unpark(&self, page: &ParkedPage) -> Result<(), StoreError>;
    /// Takes up to `wanted` sends from the budget every instance shares for `key` (a hash of
    /// the routing key): at most `limit` in any `span_ms`, a sliding window over the send times
    /// the store keeps. Returns how many were granted (0 when racing instances kept taking the
    /// budget first: the events wait for the sweep, nothing is lost).
    async fn take_shared(
        &self,
        key: &str,
        wanted: usize,
        limit: usize,
        span_ms: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError>;
    /// Notes that these dedup keys' incidents are open (a trigger was sent or parked), until
    /// `expires`.
    async fn note_open(&self, keys: &[String], expires: i64) -> Result<(), StoreError>;
    /// Which of these dedup keys have an open incident noted (read consistently).
    async fn open_of(&self, keys: &[String]) -> Result<Vec<String>, StoreError>;
    /// Forgets these keys' incidents: their resolves were sent or parked.
    async fn close_open(&self, keys: &[String]) -> Result<(), StoreError>;
}

/// Whether a window id is a group's.
pub fn is_group(id: &str) -> bool {
    id.starts_with("g#")
}

/// The alert key of a group: the PagerDuty dedup key and chat thread of its alerts.
pub fn group_key(rule: &str, key: &str) -> String {
    format!("{rule}|group|{key}")
}

/// One match, as the store needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchRef {
    pub event_id: String,
    pub event_time: String,
    /// `field=value` of the rule's roll-up fields.
    pub values: Vec<String>,
}

/// What the store knows of a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowState {
    pub id: String,
    pub rule: String,
    pub key_value: String,
    pub window_start: i64,
    pub window_end: i64,
    /// Matches counted.
    pub count: u64,
    /// Matches the window needs before it alerts (1 for dedup).
    pub needed: u64,
    /// The event whose alert the window's is.
    pub claimed_by: Option<String>,
    pub published: bool,
    /// Held-back matches already told in roll-ups.
    pub rolled: u64,
    pub first_time: Option<String>,
    pub first_id: Option<String>,
    pub last_time: Option<String>,
    pub last_id: Option<String>,
    /// `field=value`, at most [`MAX_VALUES`].
    pub values: Vec<String>,
    /// The claimed match's record (JSON) and source (JSON), when small enough to keep.
    pub record: Option<String>,
    pub source: Option<String>,
}

impl WindowState {
    /// Held-back matches not yet told in a roll-up.
    pub fn untold(&self) -> u64 {
        self.count
            .saturating_sub(self.needed)
            .saturating_sub(self.rolled)
    }
}

/// A window due for the sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The due entry's own key.
    pub entry: String,
    pub window: String,
}

/// A store call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state store: {message}")]
pub struct StoreError {
    pub message: String,
    /// Throttling, a 5xx, a network fault: trying again can help.
    pub retryable: bool,
}

/// The windows, shared by the function's invocations.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Counts a match in its window, once per event id, and notes the window due at `due_at`;
    /// returns the window after it.
    async fn count(
        &self,
        w: &WindowRef,
        m: &MatchRef,
        needed: u64,
        due_at: i64,
    ) -> Result<WindowState, StoreError>;

    /// Claims the window's alert for this event, with what the sweep needs to publish it if
    /// the invocation is lost; `true` when the claim is this event's.
    async fn claim(
        &self,
        w: &WindowRef,
        event_id: &str,
        record: Option<&str>,
        source: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Marks the claimed alert published (only the claiming event's).
    async fn mark_published(&self, window: &str, event_id: &str) -> Result<(), StoreError>;

    /// Marks these claims published; the DynamoDB adapter writes up to 100 in one transaction.
    async fn mark_all_published(&self, claims: &[Claim]) -> Result<(), StoreError> {
        for c in claims {
            self.mark_published(&c.window, &c.event_id).await?;
        }
        Ok(())
    }

    /// The windows due at `now` that the sweep has not finished.
    async fn due(&self, now: i64) -> Result<Vec<Due>, StoreError>;

    async fn window(&self, id: &str) -> Result<Option<WindowState>, StoreError>;

    /// Records that roll-ups told the held-back matches up to `to` (from `from`); `false` when
    /// another sweep did it first.
    async fn mark_rolled(&self, window: &str, from: u64, to: u64) -> Result<bool, StoreError>;

    /// Marks a due entry finished.
    async fn finish(&self, due: &Due) -> Result<(), StoreError>;

    /// Counts one delivery's matches of a window in one write, each once, with the window's
    /// first and last and the matches' values; with a claimant (dedup and groups, whose windows
    /// alert at their first match), claims the window for it unless it is claimed; `members`
    /// (alerts' own keys) join a group's open members. `Ok(None)` when a match was counted
    /// before (a retried delivery) or the window remembers too many ids to tell: the caller
    /// counts them one by one with [`StateStore::count`] instead. The window's due entry and
    /// the members' index are left to [`StateStore::put_markers`].
    async fn count_many(
        &self,
        w: &WindowRef,
        matches: &[MatchRef],
        needed: u64,
        claimant: Option<Claimant<'_>>,
        members: &[String],
    ) -> Result<Option<WindowState>, StoreError>;

    /// Creates windows new to the store, each with this delivery's matches counted (and
    /// claimed for its claimant) as [`StateStore::count_many`] would: the state of each window
    /// created, `None` for one that exists already (or that could not be created now), which
    /// `count_many` then counts. The DynamoDB adapter creates up to 100 in one transaction, so
    /// that a storm of new keys costs a write per hundred windows, not one per window; stores
    /// that gain nothing from it create none.
    async fn create_many(
        &self,
        new: &[NewWindow<'_>],
    ) -> Result<Vec<Option<WindowState>>, StoreError> {
        Ok(vec![None; new.len()])
    }

    /// Writes due entries and group members' index items, in batches.
    async fn put_markers(&self, markers: &[Marker]) -> Result<(), StoreError>;

    /// Resolves `member` in every group it joined; returns the keys ([`group_key`]) of the
    /// groups it left with no open member.
    async fn leave(&self, member: &str) -> Result<Vec<String>, StoreError>;
}

/// The window of a grouped rule's alert, and the match it is; `None` when the rule has no
/// dedup or threshold, or the record has no readable event time (never held back).
pub fn window_of(rule: &Rule, alert: &Alert) -> Option<(WindowRef, MatchRef)> {
    let grouping = rule.grouping.as_ref()?;
    let t = event_time(&alert.record)?;
    Some((
        WindowRef {
            rule: rule.incident.clone(),
            key_value: key_value(grouping.key(), &alert.record),
            window: Window::of(t, grouping.window()),
            group: false,
        },
        match_of(alert, &rule.rollup_fields),
    ))
}

/// The match an alert is, with the values of `fields` (`field=value`) for the roll-up.
fn match_of(alert: &Alert, fields: &[crate::policy::KeyPath]) -> MatchRef {
    let values = fields
        .iter()
        .map(|p| {
            let v = p.get(&alert.record).map_or("null".to_owned(), |v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            format!("{p}={v}")
        })
        .collect();
    MatchRef {
        event_id: alert
            .event
            .event_id
            .clone()
            .unwrap_or_else(|| format!("{}#{}", alert.source.display(), alert.record_index)),
        event_time: alert.event.event_time.clone().unwrap_or_default(),
        values,
    }
}

/// A claim to mark published once its alert is out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub window: String,
    pub event_id: String,
}

/// What admission decided for one delivery's alerts.
#[derive(Debug, Default)]
pub struct Admitted {
    /// The alerts that go out now.
    pub alerts: Vec<Alert>,
    /// Claims to mark once the alerts are published (and claims of alerts told in a group's
    /// notification instead).
    pub claims: Vec<Claim>,
    /// Matches held back by dedup or a threshold (told in the window's roll-up).
    pub held: u64,
    /// New alerts gathered into their group (told in the group's notification).
    pub grouped: u64,
    /// First alerts of groups with a wait: claimed, told by the sweep once the wait is over.
    pub waiting: u64,
}

/// Decides which alerts go out: those of rules without dedup, threshold or group, the claimed
/// first alerts of windows, and of those the first of each group (which goes out with the
/// group's key). Returns them with the claims to mark once they are published, and how many
/// were held back or gathered into groups.
///
/// The store is asked per window, not per match: one delivery's matches of a window are
/// counted (and the window claimed) in one write ([`StateStore::count_many`]), and the due
/// entries and group members' index go in batches at the end — before anything is published,
/// so that a fault leaves nothing told and the retry starts clean. A retried delivery, whose
/// matches were counted before, is counted match by match, each once.
pub async fn admit(
    store: &dyn StateStore,
    rules: &dyn RuleBook,
    alerts: Vec<Alert>,
    lateness: u64,
    now: i64,
) -> Result<Admitted, StoreError> {
    let (mut going, out) = decide_all(store, rules, &alerts, lateness, now).await?;
    let alerts = alerts
        .into_iter()
        .enumerate()
        .filter_map(|(i, mut alert)| {
            let key = going.remove(&i)?;
            if let Some(key) = key {
                alert.alert_key = key;
            }
            Some(alert)
        })
        .collect();
    Ok(Admitted { alerts, ..out })
}

/// [`admit`]'s decisions over borrowed alerts: which go out (by index, with the group key the
/// first of a group goes out with), and the rest of what [`Admitted`] says (its `alerts`
/// left empty). The command line decides through this, without copying an alert.
pub async fn decide_all(
    store: &dyn StateStore,
    rules: &dyn RuleBook,
    alerts: &[Alert],
    lateness: u64,
    now: i64,
) -> Result<(HashMap<usize, Option<String>>, Admitted), StoreError> {
    let mut out = Admitted::default();
    let mut markers = Vec::new();
    // Dedup and thresholds: which alerts are new.
    let mut windows: Vec<Bucket> = Vec::new();
    let mut passed: Vec<(usize, Option<Claim>)> = Vec::new();
    for (i, alert) in alerts.iter().enumerate() {
        match rules
            .rule(alert.rule_id.as_str())
            .and_then(|rule| window_of(rule, alert).map(|wm| (rule, wm)))
        {
            Some((rule, (w, m))) => {
                let needed = rule.grouping.as_ref().map_or(1, |g| g.count());
                bucket(&mut windows, w, needed, rule.group.is_some(), i, m);
            }
            None => passed.push((i, None)),
        }
    }
    // Many windows at once (a storm of new keys): those new to the store are created in
    // batches; the others are counted a few at a time (in order of their first match).
    let created = if windows.len() >= CREATE_IN_BATCHES {
        create_windows(store, alerts, &windows, now).await?
    } else {
        vec![None; windows.len()]
    };
    let pending: Vec<_> = windows
        .iter()
        .zip(created)
        .map(|(b, created)| decide_window(store, alerts, b, &[], created, lateness, now))
        .collect();
    let decided: Vec<_> = futures_util::stream::iter(pending)
        .buffered(CONCURRENT_WINDOWS)
        .collect()
        .await;
    for (b, decided) in windows.iter().zip(decided) {
        let (admitted, held) = decided?;
        markers.push(Marker::Due {
            window: b.w.id(),
            due_at: b.w.window.end + lateness as i64,
        });
        out.held += held;
        passed.extend(admitted.into_iter().map(|(i, c)| (i, Some(c))));
    }
    passed.sort_by_key(|(i, _)| *i);
    // Groups: the first new alert of each goes out with the group's key.
    let mut groups: Vec<Bucket> = Vec::new();
    let mut going: Vec<(usize, Option<String>)> = Vec::new();
    for (i, claim) in passed {
        let alert = &alerts[i];
        match rules
            .rule(alert.rule_id.as_str())
            .and_then(|rule| group_of(rule, alert))
        {
            Some((gw, gm)) => {
                // A grouped rule's own window claim is settled (told) already: the group
                // tells the alert, as its first or in its notification.
                drop(claim);
                bucket(&mut groups, gw, 1, false, i, gm);
            }
            None => {
                out.claims.extend(claim);
                going.push((i, None));
            }
        }
    }
    for g in &groups {
        let members: Vec<String> = g
            .matches
            .iter()
            .map(|(i, _)| alerts[*i].alert_key.clone())
            .collect();
        let expires = g.w.window.end + lateness as i64 + KEEP_AFTER_DUE;
        markers.push(Marker::Due {
            window: g.w.id(),
            due_at: g.w.window.end + lateness as i64,
        });
        markers.extend(members.iter().map(|m| Marker::Member {
            member: m.clone(),
            group: g.w.id(),
            expires,
        }));
        let (admitted, gathered) =
            decide_window(store, alerts, g, &members, None, lateness, now).await?;
        out.grouped += gathered;
        for (i, claim) in admitted {
            // A group with a wait: its first alert stays claimed, unpublished, and the sweep
            // tells it once the wait is over, with what the group gathered meanwhile (a
            // record too large to keep with the claim goes out at once instead).
            let wait = rules
                .rule(alerts[i].rule_id.as_str())
                .and_then(|r| r.group.as_ref())
                .map_or(0, |g| g.wait);
            if wait > 0 && stored_record(&alerts[i]).is_some() {
                markers.push(Marker::Due {
                    window: g.w.id(),
                    due_at: now + wait as i64,
                });
                out.waiting += 1;
                continue;
            }
            out.claims.push(claim);
            going.push((i, Some(group_key(&g.w.rule, &g.w.key_value))));
        }
    }
    store.put_markers(&markers).await?;
    Ok((going.into_iter().collect(), out))
}

/// Windows of one delivery written to the store at once.
pub const CONCURRENT_WINDOWS: usize = 8;

/// Windows in one delivery from which those new to the store are created in batches
/// ([`StateStore::create_many`]): fewer are counted one write each, since a batch that finds
/// its windows existing costs a write more.
pub const CREATE_IN_BATCHES: usize = 8;

/// Creates the delivery's windows that are new to the store: for each bucket, its state when
/// created.
async fn create_windows(
    store: &dyn StateStore,
    alerts: &[Alert],
    windows: &[Bucket],
    now: i64,
) -> Result<Vec<Option<WindowState>>, StoreError> {
    let refs: Vec<Vec<MatchRef>> = windows
        .iter()
        .map(|b| b.matches.iter().map(|(_, m)| m.clone()).collect())
        .collect();
    let records: Vec<Option<String>> = windows
        .iter()
        .map(|b| stored_record(&alerts[b.matches[0].0]))
        .collect();
    let sources: Vec<String> = windows
        .iter()
        .map(|b| alerts[b.matches[0].0].source.to_json().to_string())
        .collect();
    let new: Vec<NewWindow<'_>> = windows
        .iter()
        .enumerate()
        .map(|(k, b)| NewWindow {
            w: &b.w,
            matches: &refs[k],
            needed: b.needed,
            claimant: (b.needed == 1).then_some(Claimant {
                event_id: &b.matches[0].1.event_id,
                record: records[k].as_deref(),
                source: &sources[k],
                now,
                told: b.grouped,
            }),
            members: &[],
        })
        .collect();
    store.create_many(&new).await
}

/// One window's matches in one delivery: the alerts' indices and matches, in record order.
struct Bucket {
    w: WindowRef,
    id: String,
    needed: u64,
    /// A grouped rule's dedup or threshold window: its claim is told by the group.
    grouped: bool,
    matches: Vec<(usize, MatchRef)>,
}

fn bucket(
    buckets: &mut Vec<Bucket>,
    w: WindowRef,
    needed: u64,
    grouped: bool,
    i: usize,
    m: MatchRef,
) {
    let id = w.id();
    match buckets.iter_mut().find(|b| b.id == id) {
        Some(b) => b.matches.push((i, m)),
        None => buckets.push(Bucket {
            w,
            id,
            needed,
            grouped,
            matches: vec![(i, m)],
        }),
    }
}

/// Counts a window's matches of this delivery and claims it when it alerts: the alerts that go
/// out (with their claims), and how many were held.
async fn decide_window(
    store: &dyn StateStore,
    alerts: &[Alert],
    b: &Bucket,
    members: &[String],
    created: Option<WindowState>,
    lateness: u64,
    now: i64,
) -> Result<(Vec<(usize, Claim)>, u64), StoreError> {
    let counted = match created {
        Some(state) => Some(state),
        None => {
            let matches: Vec<MatchRef> = b.matches.iter().map(|(_, m)| m.clone()).collect();
            let (first, first_match) = &b.matches[0];
            let record = stored_record(&alerts[*first]);
            let source = alerts[*first].source.to_json().to_string();
            let claimant = (b.needed == 1).then_some(Claimant {
                event_id: &first_match.event_id,
                record: record.as_deref(),
                source: &source,
                now,
                told: b.grouped,
            });
            store
                .count_many(&b.w, &matches, b.needed, claimant, members)
                .await?
        }
    };
    let Some(mut state) = counted else {
        // Counted before (a retry): match by match, each once.
        let mut admitted = Vec::new();
        for (i, m) in &b.matches {
            if let Some(claim) = decide(
                store,
                &alerts[*i],
                &b.w,
                m,
                b.needed,
                b.grouped,
                lateness,
                now,
            )
            .await?
            {
                admitted.push((*i, claim));
            }
        }
        let held = b.matches.len() as u64 - admitted.len() as u64;
        return Ok((admitted, held));
    };
    // A threshold reached in this delivery: claimed for the match that reached it.
    if state.claimed_by.is_none() && b.needed > 1 && state.count >= b.needed {
        let before = state.count - b.matches.len() as u64;
        let reached = (b.needed.saturating_sub(before + 1) as usize).min(b.matches.len() - 1);
        let (i, m) = &b.matches[reached];
        let record = stored_record(&alerts[*i]);
        let source = alerts[*i].source.to_json().to_string();
        if store
            .claim(&b.w, &m.event_id, record.as_deref(), &source, now)
            .await?
        {
            state.claimed_by = Some(m.event_id.clone());
            if b.grouped {
                store.mark_published(&b.id, &m.event_id).await?;
                state.published = true;
            }
        }
    }
    let mut admitted = Vec::new();
    // A grouped rule's claim is admitted to the group stage whether or not it is marked
    // (the group decides, once per event, what is told).
    if let (Some(by), false) = (&state.claimed_by, state.published && !b.grouped) {
        if let Some((i, m)) = b.matches.iter().find(|(_, m)| &m.event_id == by) {
            admitted.push((
                *i,
                Claim {
                    window: b.w.id(),
                    event_id: m.event_id.clone(),
                },
            ));
        }
    }
    let held = b.matches.len() as u64 - admitted.len() as u64;
    Ok((admitted, held))
}

/// The record kept with a claim, when small enough.
fn stored_record(alert: &Alert) -> Option<String> {
    let record = alert.record.to_string();
    (record.len() <= MAX_STORED_RECORD).then_some(record)
}

/// Counts a match in a window and, when the window has reached its count and nobody holds its
/// alert, claims it: the claim when this match's alert goes out, `None` when it is held.
#[allow(clippy::too_many_arguments)]
async fn decide(
    store: &dyn StateStore,
    alert: &Alert,
    w: &WindowRef,
    m: &MatchRef,
    needed: u64,
    grouped: bool,
    lateness: u64,
    now: i64,
) -> Result<Option<Claim>, StoreError> {
    let due_at = w.window.end + lateness as i64;
    let state = store.count(w, m, needed, due_at).await?;
    let publish = match &state.claimed_by {
        // This event's own claim, from a try that did not get to mark it published (a grouped
        // rule's: the group decides again, once per event).
        Some(by) if *by == m.event_id => grouped || !state.published,
        Some(_) => false,
        None if state.count >= needed => {
            let record = stored_record(alert);
            let source = alert.source.to_json().to_string();
            let claimed = store
                .claim(w, &m.event_id, record.as_deref(), &source, now)
                .await?;
            if claimed && grouped {
                store.mark_published(&w.id(), &m.event_id).await?;
            }
            claimed
        }
        None => false,
    };
    Ok(publish.then(|| Claim {
        window: w.id(),
        event_id: m.event_id.clone(),
    }))
}

/// The group window of an alert of a rule with `group:`, and the match it is; `None` without
/// a group or a readable event time (never gathered).
pub fn group_of(rule: &Rule, alert: &Alert) -> Option<(WindowRef, MatchRef)> {
    let group = rule.group.as_ref()?;
    let t = event_time(&alert.record)?;
    Some((
        WindowRef {
            rule: rule.incident.clone(),
            key_value: key_value(&group.by, &alert.record),
            window: Window::of(t, group.interval),
            group: true,
        },
        match_of(alert, group_fields(rule)),
    ))
}

/// The fields a group's notification lists the distinct values of: what tells its alerts apart
/// (the dedup or threshold key), else the rule's roll-up fields.
pub fn group_fields(rule: &Rule) -> &[crate::policy::KeyPath] {
    match &rule.grouping {
        Some(g) if !g.key().is_empty() => g.key(),
        _ => &rule.rollup_fields,
    }
}

/// The alert that tells what a window held back.
pub fn rollup_alert(rule: &Rule, state: &WindowState, more: u64, source: AlertSource) -> Alert {
    let span = format!(
        "{}..{}",
        crate::time::format_timestamp(state.window_start),
        crate::time::format_timestamp(state.window_end)
    );
    let group = is_group(&state.id);
    let mut summary = format!(
        "{more} more {} of {} for {} in {span} (the window's first {} at {}, last {} at {})",
        match (group, more == 1) {
            (true, true) => "alert of the group",
            (true, false) => "alerts of the group",
            (false, true) => "match",
            (false, false) => "matches",
        },
        rule.id,
        state.key_value,
        state.first_id.as_deref().unwrap_or("?"),
        state.first_time.as_deref().unwrap_or("?"),
        state.last_id.as_deref().unwrap_or("?"),
        state.last_time.as_deref().unwrap_or("?"),
    );
    if !state.values.is_empty() {
        summary.push_str(&format!("; {}", state.values.join(", ")));
    }
    let rollup = json!({
        "rollup": true, "group": group, "rule": rule.id,
        "key": serde_json::from_str::<Value>(&state.key_value).unwrap_or(Value::String(state.key_value.clone())),
        "windowStart": crate::time::format_timestamp(state.window_start),
        "windowEnd": crate::time::format_timestamp(state.window_end),
        "more": more, "matches": state.count,
        "firstEventTime": state.first_time, "firstEventID": state.first_id,
        "lastEventTime": state.last_time, "lastEventID": state.last_id,
        "values": state.values,
    });
    Alert::about(
        rule,
        EventInfo {
            event_id: Some(format!("rollup-{}-{}", state.id, state.rolled + more)),
            event_time: state.last_time.clone(),
            event_name: Some("roll-up".into()),
            ..EventInfo::default()
        },
        &format!(
            "{more} more in {span} ({})",
            if group { "group" } else { "roll-up" }
        ),
        &summary,
        source,
        rollup,
        if group {
            group_key(&state.rule, &state.key_value)
        } else {
            format!("{}|{}", state.rule, state.key_value)
        },
    )
}

/// In memory: for the handler's unit tests, with the same semantics as the DynamoDB adapter.
#[derive(Default)]
pub struct MemoryState {
    /// Windows by id, with the eventIDs each counted (at most [`MAX_IDS`], as DynamoDB's).
    windows: Mutex<BTreeMap<String, (WindowState, HashSet<String>)>>,
    due: Mutex<BTreeMap<String, (String, bool)>>,
    progress_store: MemoryProgress,
    /// Parked pages by dedup key, and the number of parkings (their versions).
    pages: Mutex<(BTreeMap<String, ParkedPage>, u64)>,
    /// Groups' open members: group window id → (group key, member keys).
    groups: Mutex<BTreeMap<String, (String, BTreeSet<String>)>>,
    /// The shared paging budgets: send times per routing key's hash.
    budgets: Mutex<BTreeMap<String, Vec<i64>>>,
    /// Dedup keys whose incidents are open.
    open: Mutex<BTreeSet<String>>,
}

impl MemoryState {
    /// Every window kept (the command line's roll-ups at the end of a scan).
    pub fn windows(&self) -> Vec<WindowState> {
        self.windows
            .lock()
            .map(|w| w.values().map(|(state, _)| state.clone()).collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl PageStore for MemoryState {
    async fn park(&self, dedup_key: &str, event: &Value, now: i64) -> Result<(), StoreError> {
        let mut pages = self.pages.lock().map_err(|_| poisoned())?;
        pages.1 += 1;
        let version = pages.1.to_string();
        pages.0.insert(
            dedup_key.to_owned(),
            ParkedPage {
                dedup_key: dedup_key.to_owned(),
                event: event.clone(),
                parked_at: now,
                version,
            },
        );
        Ok(())
    }

    async fn parked(&self, limit: usize) -> Result<Vec<ParkedPage>, StoreError> {
        let pages = self.pages.lock().map_err(|_| poisoned())?;
        let mut all: Vec<ParkedPage> = pages.0.values().cloned().collect();
        all.sort_by_key(|p| (p.parked_at, p.version.parse::<u64>().unwrap_or(0)));
        all.truncate(limit);
        Ok(all)
    }

    async fn unpark(&self, page: &ParkedPage) -> Result<(), StoreError> {
        let mut pages = self.pages.lock().map_err(|_| poisoned())?;
        if pages
            .0
            .get(&page.dedup_key)
            .is_some_and(|p| p.version == page.version)
        {
            pages.0.remove(&page.dedup_key);
        }
        Ok(())
    }

    async fn take_shared(
        &self,
        key: &str,
        wanted: usize,
        limit: usize,
        span_ms: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut budgets = self.budgets.lock().map_err(|_| poisoned())?;
        let sent = budgets.entry(key.to_owned()).or_default();
        sent.retain(|t| now_ms - t < span_ms);
        let granted = wanted.min(limit.saturating_sub(sent.len()));
        sent.extend(std::iter::repeat_n(now_ms, granted));
        Ok(granted)
    }

    async fn note_open(&self, keys: &[String], _expires: i64) -> Result<(), StoreError> {
        let mut open = self.open.lock().map_err(|_| poisoned())?;
        open.extend(keys.iter().cloned());
        Ok(())
    }

    async fn open_of(&self, keys: &[String]) -> Result<Vec<String>, StoreError> {
        let open = self.open.lock().map_err(|_| poisoned())?;
        Ok(keys.iter().filter(|k| open.contains(*k)).cloned().collect())
    }

    async fn close_open(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut open = self.open.lock().map_err(|_| poisoned())?;
        for k in keys {
            open.remove(k);
        }
        Ok(())
    }
}

fn poisoned() -> StoreError {
    StoreError {
        message: "memory store poisoned".into(),
        retryable: false,
    }
}

impl WindowState {
    /// Counts one match (in memory): the count, the first and last, the roll-up's values.
    fn counted(&mut self, m: &MatchRef) {
        self.count += 1;
        self.first_time.get_or_insert_with(|| m.event_time.clone());
        self.first_id.get_or_insert_with(|| m.event_id.clone());
        self.last_time = Some(m.event_time.clone());
        self.last_id = Some(m.event_id.clone());
        for v in &m.values {
            if self.values.len() < MAX_VALUES && !self.values.contains(v) {
                self.values.push(v.clone());
            }
        }
    }
}

/// A window the store has not seen yet.
fn new_window(w: &WindowRef, needed: u64) -> WindowState {
    WindowState {
        id: w.id(),
        rule: w.rule.clone(),
        key_value: w.key_value.clone(),
        window_start: w.window.start,
        window_end: w.window.end,
        needed,
        ..WindowState::default()
    }
}

#[async_trait]
impl StateStore for MemoryState {
    async fn count(
        &self,
        w: &WindowRef,
        m: &MatchRef,
        needed: u64,
        due_at: i64,
    ) -> Result<WindowState, StoreError> {
        let id = w.id();
        let mut windows = self.windows.lock().map_err(|_| poisoned())?;
        let (state, ids) = windows
            .entry(id.clone())
            .or_insert_with(|| (new_window(w, needed), HashSet::new()));
        if !ids.contains(&m.event_id) {
            if ids.len() < MAX_IDS {
                ids.insert(m.event_id.clone());
            }
            state.counted(m);
        }
        let state = state.clone();
        drop(windows);
        self.due
            .lock()
            .map_err(|_| poisoned())?
            .insert(format!("{due_at:012}#{id}"), (id, false));
        Ok(state)
    }

    async fn claim(
        &self,
        w: &WindowRef,
        event_id: &str,
        record: Option<&str>,
        source: &str,
        _now: i64,
    ) -> Result<bool, StoreError> {
        let mut windows = self.windows.lock().map_err(|_| poisoned())?;
        let Some((state, _)) = windows.get_mut(&w.id()) else {
            return Ok(false);
        };
        match &state.claimed_by {
            Some(by) => Ok(by == event_id),
            None => {
                state.claimed_by = Some(event_id.to_owned());
                state.record = record.map(str::to_owned);
                state.source = Some(source.to_owned());
                Ok(true)
            }
        }
    }

    async fn mark_published(&self, window: &str, event_id: &str) -> Result<(), StoreError> {
        let mut windows = self.windows.lock().map_err(|_| poisoned())?;
        if let Some((state, _)) = windows.get_mut(window) {
            if state.claimed_by.as_deref() == Some(event_id) {
                state.published = true;
            }
        }
        Ok(())
    }

    async fn due(&self, now: i64) -> Result<Vec<Due>, StoreError> {
        let upto = format!("{now:012}~");
        Ok(self
            .due
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .filter(|(entry, (_, done))| entry.as_str() <= upto.as_str() && !done)
            .map(|(entry, (window, _))| Due {
                entry: entry.clone(),
                window: window.clone(),
            })
            .collect())
    }

    async fn window(&self, id: &str) -> Result<Option<WindowState>, StoreError> {
        Ok(self
            .windows
            .lock()
            .map_err(|_| poisoned())?
            .get(id)
            .map(|(s, _)| s.clone()))
    }

    async fn mark_rolled(&self, window: &str, from: u64, to: u64) -> Result<bool, StoreError> {
        let mut windows = self.windows.lock().map_err(|_| poisoned())?;
        match windows.get_mut(window) {
            Some((state, _)) if state.rolled == from => {
                state.rolled = to;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn finish(&self, due: &Due) -> Result<(), StoreError> {
        if let Some(entry) = self.due.lock().map_err(|_| poisoned())?.get_mut(&due.entry) {
            entry.1 = true;
        }
        Ok(())
    }

    async fn count_many(
        &self,
        w: &WindowRef,
        matches: &[MatchRef],
        needed: u64,
        claimant: Option<Claimant<'_>>,
        members: &[String],
    ) -> Result<Option<WindowState>, StoreError> {
        let id = w.id();
        let mut windows = self.windows.lock().map_err(|_| poisoned())?;
        let (state, ids) = windows
            .entry(id.clone())
            .or_insert_with(|| (new_window(w, needed), HashSet::new()));
        if matches.iter().any(|m| ids.contains(&m.event_id)) || ids.len() + matches.len() > MAX_IDS
        {
            return Ok(None);
        }
        for m in matches {
            ids.insert(m.event_id.clone());
            state.counted(m);
        }
        if let (Some(c), None) = (claimant, &state.claimed_by) {
            state.claimed_by = Some(c.event_id.to_owned());
            state.record = c.record.map(str::to_owned);
            state.source = Some(c.source.to_owned());
        }
        if claimant.is_some_and(|c| c.told) {
            state.published = true;
        }
        let state = state.clone();
        drop(windows);
        if !members.is_empty() {
            let mut groups = self.groups.lock().map_err(|_| poisoned())?;
            let entry = groups
                .entry(id)
                .or_insert_with(|| (group_key(&w.rule, &w.key_value), BTreeSet::new()));
            entry.1.extend(members.iter().cloned());
        }
        Ok(Some(state))
    }

    async fn put_markers(&self, markers: &[Marker]) -> Result<(), StoreError> {
        let mut due = self.due.lock().map_err(|_| poisoned())?;
        for m in markers {
            // Members need no index here: `leave` looks through the groups themselves.
            if let Marker::Due { window, due_at } = m {
                due.insert(format!("{due_at:012}#{window}"), (window.clone(), false));
            }
        }
        Ok(())
    }

    async fn leave(&self, member: &str) -> Result<Vec<String>, StoreError> {
        let mut groups = self.groups.lock().map_err(|_| poisoned())?;
        let mut emptied = Vec::new();
        for (key, open) in groups.values_mut() {
            if open.remove(member) && open.is_empty() {
                emptied.push(key.clone());
            }
        }
        Ok(emptied)
    }
}

/// How far one account and Region's trail has got, as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    pub account: String,
    pub region: String,
    /// The first and newest eventTime read (the trail's progress; a log's delivery time when
    /// none of its records had one).
    pub first: i64,
    pub newest: i64,
    /// When the function last read a delivery of this place (wall clock).
    pub last_delivery: i64,
    /// Set when a silence alert went out for the delivery gap after `last_delivery`.
    pub silent_alerted: bool,
}

/// An absence rule's key, as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Beat {
    pub key_value: String,
    pub account: String,
    pub region: String,
    pub last_seen: i64,
    /// The `last_seen` an absence alert was raised for (`None`: not missing).
    pub alerted_for: Option<i64>,
}

/// The trail's progress and the absence rules' heartbeats (issue "Alert on what did not
/// happen"), in the same store as the windows.
#[async_trait]
pub trait ProgressStore: Send + Sync {
    /// Notes a delivery read at `now` whose newest eventTime is `newest`; returns whether a silence
    /// alert was out for this place (the delivery ends it).
    async fn progress(
        &self,
        account: &str,
        region: &str,
        newest: i64,
        now: i64,
    ) -> Result<bool, StoreError>;
    async fn places(&self) -> Result<Vec<Place>, StoreError>;
    /// Takes the silence alert of a place whose last delivery is `last_delivery`; `true` once.
    async fn mark_silent(
        &self,
        account: &str,
        region: &str,
        last_delivery: i64,
    ) -> Result<bool, StoreError>;
    /// Notes a heartbeat at `t`; returns the key as it was before when it had an absence alert
    /// out (the heartbeat resolves it).
    async fn heartbeat(&self, rule: &str, beat: &Beat) -> Result<Option<Beat>, StoreError>;
    async fn heartbeats(&self, rule: &str) -> Result<Vec<Beat>, StoreError>;
    /// Takes the absence alert of a key last seen at `beat.last_seen` (creating the key when it
    /// is an expected one never seen); `true` once.
    async fn mark_missing(&self, rule: &str, beat: &Beat) -> Result<bool, StoreError>;
    /// How many parts of an object's alerts an earlier try told, and under which rule set's
    /// fingerprint (read consistently: the retry must see its failed try's note).
    async fn parts_told(&self, object: &str) -> Result<Option<(u64, u64)>, StoreError>;
    /// Notes that the first `parts` parts of an object's alerts are told; kept until `expires`.
    async fn note_parts_told(
        &self,
        object: &str,
        parts: u64,
        fingerprint: u64,
        expires: i64,
    ) -> Result<(), StoreError>;
}

#[derive(Default)]
pub struct MemoryProgress {
    places: Mutex<BTreeMap<(String, String), Place>>,
    beats: Mutex<BTreeMap<(String, String), Beat>>,
    /// Objects told in parts: parts told and the rule set's fingerprint.
    parts: Mutex<BTreeMap<String, (u64, u64)>>,
}

#[async_trait]
impl ProgressStore for MemoryState {
    async fn progress(
        &self,
        account: &str,
        region: &str,
        newest: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.progress_store
            .progress(account, region, newest, now)
            .await
    }
    async fn places(&self) -> Result<Vec<Place>, StoreError> {
        self.progress_store.places().await
    }
    async fn mark_silent(
        &self,
        account: &str,
        region: &str,
        last_delivery: i64,
    ) -> Result<bool, StoreError> {
        self.progress_store
            .mark_silent(account, region, last_delivery)
            .await
    }
    async fn heartbeat(&self, rule: &str, beat: &Beat) -> Result<Option<Beat>, StoreError> {
        self.progress_store.heartbeat(rule, beat).await
    }
    async fn heartbeats(&self, rule: &str) -> Result<Vec<Beat>, StoreError> {
        self.progress_store.heartbeats(rule).await
    }
    async fn mark_missing(&self, rule: &str, beat: &Beat) -> Result<bool, StoreError> {
        self.progress_store.mark_missing(rule, beat).await
    }
    async fn parts_told(&self, object: &str) -> Result<Option<(u64, u64)>, StoreError> {
        self.progress_store.parts_told(object).await
    }
    async fn note_parts_told(
        &self,
        object: &str,
        parts: u64,
        fingerprint: u64,
        expires: i64,
    ) -> Result<(), StoreError> {
        self.progress_store
            .note_parts_told(object, parts, fingerprint, expires)
            .await
    }
}

#[async_trait]
impl ProgressStore for MemoryProgress {
    async fn progress(
        &self,
        account: &str,
        region: &str,
        newest: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut places = self.places.lock().map_err(|_| poisoned())?;
        let p = places
            .entry((account.to_owned(), region.to_owned()))
            .or_insert_with(|| Place {
                account: account.to_owned(),
                region: region.to_owned(),
                first: newest,
                newest,
                ..Place::default()
            });
        p.first = p.first.min(newest);
        p.newest = p.newest.max(newest);
        p.last_delivery = p.last_delivery.max(now);
        Ok(std::mem::take(&mut p.silent_alerted))
    }

    async fn places(&self) -> Result<Vec<Place>, StoreError> {
        Ok(self
            .places
            .lock()
            .map_err(|_| poisoned())?
            .values()
            .cloned()
            .collect())
    }

    async fn mark_silent(
        &self,
        account: &str,
        region: &str,
        last_delivery: i64,
    ) -> Result<bool, StoreError> {
        let mut places = self.places.lock().map_err(|_| poisoned())?;
        match places.get_mut(&(account.to_owned(), region.to_owned())) {
            Some(p) if p.last_delivery == last_delivery && !p.silent_alerted => {
                p.silent_alerted = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn heartbeat(&self, rule: &str, beat: &Beat) -> Result<Option<Beat>, StoreError> {
        let mut beats = self.beats.lock().map_err(|_| poisoned())?;
        let entry = beats
            .entry((rule.to_owned(), beat.key_value.clone()))
            .or_insert_with(|| Beat {
                alerted_for: None,
                ..beat.clone()
            });
        let before = entry.clone();
        entry.last_seen = entry.last_seen.max(beat.last_seen);
        entry.alerted_for = None;
        Ok(before.alerted_for.is_some().then_some(before))
    }

    async fn heartbeats(&self, rule: &str) -> Result<Vec<Beat>, StoreError> {
        Ok(self
            .beats
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .filter(|((r, _), _)| r == rule)
            .map(|(_, b)| b.clone())
            .collect())
    }

    async fn mark_missing(&self, rule: &str, beat: &Beat) -> Result<bool, StoreError> {
        let mut beats = self.beats.lock().map_err(|_| poisoned())?;
        let entry = beats
            .entry((rule.to_owned(), beat.key_value.clone()))
            .or_insert_with(|| beat.clone());
        if entry.last_seen == beat.last_seen && entry.alerted_for.is_none() {
            entry.alerted_for = Some(beat.last_seen);
            Ok(true)
        } else {
            Ok(false)
        }
    }
    async fn parts_told(&self, object: &str) -> Result<Option<(u64, u64)>, StoreError> {
        Ok(self
            .parts
            .lock()
            .map_err(|_| poisoned())?
            .get(object)
            .copied())
    }
    async fn note_parts_told(
        &self,
        object: &str,
        parts: u64,
        fingerprint: u64,
        _expires: i64,
    ) -> Result<(), StoreError> {
        self.parts
            .lock()
            .map_err(|_| poisoned())?
            .insert(object.to_owned(), (parts, fingerprint));
        Ok(())
    }
}

/// Runs a future of the memory stores ([`MemoryState`], [`MemoryProgress`]) to its end, for
/// the command line, which has no runtime. Their futures never wait (the store is a few
/// maps behind a lock), so one poll with a waker that does nothing finishes them; the loop is
/// for the form's sake.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

/// Everything the function keeps: windows, progress and heartbeats, parked pages.
pub trait Store: StateStore + ProgressStore + PageStore {}
impl<T: StateStore + ProgressStore + PageStore + ?Sized> Store for T {}

/// The source of the events trail-alerts makes itself (silence, absence).
pub const SELF_SOURCE: &str = "trail-alerts";

/// An event of trail-alerts' own, shaped as EventBridge events are, so that alerts, envelope
/// rules and subscribers treat it like any other: `detail-type` `Trail Silent`, `Trail
/// Silent Resolved`, `Heartbeat Missing` or `Heartbeat Resolved`. `detail.alertKey` pairs an
/// alert with its resolution.
pub fn own_event(
    detail_type: &str,
    id: String,
    account: &str,
    region: &str,
    now: i64,
    detail: Value,
) -> Value {
    json!({
        "version": "0", "id": id, "detail-type": detail_type, "source": SELF_SOURCE,
        "account": account, "region": region, "time": crate::time::format_timestamp(now),
        "resources": [], "detail": detail,
    })
}

/// The stable key pairing an absence or silence alert with its resolution.
fn alert_key(rule: &str, key: &str) -> String {
    format!("{rule}|{key}")
}

/// Absence rules' matches become heartbeats, not alerts: each is noted in the store, and a
/// heartbeat of a key whose absence alert was out yields that alert's resolution. The other
/// alerts pass through.
pub async fn heartbeats(
    store: &dyn Store,
    rules: &dyn RuleBook,
    alerts: Vec<Alert>,
    now: i64,
) -> Result<Vec<Alert>, StoreError> {
    let mut out = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let Some((rule, absence)) = rules
            .rule(alert.rule_id.as_str())
            .and_then(|r| r.absence.as_ref().map(|a| (r, a)))
        else {
            out.push(alert);
            continue;
        };
        let Some(t) = event_time(&alert.record) else {
            continue;
        };
        let (account, region) = crate::policy::place_of(&alert.record);
        let beat = Beat {
            key_value: key_value(&absence.key, &alert.record),
            account,
            region,
            last_seen: t,
            alerted_for: None,
        };
        if let Some(before) = store.heartbeat(&rule.id, &beat).await? {
            let overdue_since = before.last_seen + absence.every as i64;
            let event = own_event(
                "Heartbeat Resolved",
                format!(
                    "absence-resolved-{}-{}-{}",
                    rule.id,
                    stable_hash(beat.key_value.as_bytes()),
                    t
                ),
                &beat.account,
                &beat.region,
                now,
                json!({"state": "RESOLVED", "alertKey": alert_key(&rule.id, &beat.key_value),
                       "rule": rule.id, "key": beat.key_value, "lastSeen": crate::time::format_timestamp(before.last_seen),
                       "seenAgain": crate::time::format_timestamp(t),
                       "overdueSince": crate::time::format_timestamp(overdue_since),
                       "missingFor": crate::policy::duration((t - overdue_since).max(0) as u64)}),
            );
            out.push(Alert::from_bus_event(rule, &event));
        }
    }
    Ok(out)
}

/// Notes how far a log object's trail has got (from its name); when the place's silence alert
/// was out, the trail-silent rule's resolution.
pub async fn note_trail_progress(
    store: &dyn Store,
    rules: &dyn RuleBook,
    key: &str,
    newest_event: Option<i64>,
    now: i64,
) -> Result<Option<Alert>, StoreError> {
    let Some((account, region, delivered)) = crate::keys::log_name_parts(key) else {
        return Ok(None);
    };
    // The watermark: the newest eventTime read; the delivery time of the log's name when no
    // record had one.
    let t = newest_event.unwrap_or(delivered);
    if !store.progress(&account, &region, t, now).await? {
        return Ok(None);
    }
    let Some(rule) = rules
        .all()
        .iter()
        .find(|r| r.id == TRAIL_SILENT && r.enabled)
    else {
        return Ok(None);
    };
    let event = own_event(
        "Trail Silent Resolved",
        format!("trail-silent-resolved-{account}-{region}-{now}"),
        &account,
        &region,
        now,
        json!({"state": "RESOLVED", "alertKey": alert_key(TRAIL_SILENT, &format!("{account}/{region}")),
               "deliveryAt": crate::time::format_timestamp(now), "newestEvent": crate::time::format_timestamp(t)}),
    );
    Ok(Some(Alert::from_bus_event(rule, &event)))
}

/// The built-in rule of silence alerts.
pub const TRAIL_SILENT: &str = "trail-silent";

/// How long an account and Region may deliver nothing: `TRAIL_SILENCE_AFTER` (`6h`, or
/// `6h,123456789012/us-east-1=24h,*/eu-*=12h`: a default and `account/region` globs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    pub default: u64,
    pub overrides: Vec<(String, u64)>,
}

impl Default for Silence {
    fn default() -> Self {
        Silence {
            default: 6 * 3600,
            overrides: Vec::new(),
        }
    }
}

impl Silence {
    pub fn parse(text: &str) -> Option<Self> {
        let mut out = Silence {
            default: 0,
            overrides: Vec::new(),
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((place, d)) => out.overrides.push((
                    place.trim().to_owned(),
                    crate::time::parse_duration(d.trim())?,
                )),
                None => out.default = crate::time::parse_duration(part)?,
            }
        }
        (out.default > 0).then_some(out)
    }

    pub fn after(&self, account: &str, region: &str) -> u64 {
        let place = format!("{account}/{region}");
        self.overrides
            .iter()
            .find(|(glob, _)| crate::rules::id_matches(glob, &place))
            .map_or(self.default, |(_, d)| *d)
    }
}

/// The sweep's silence and absence pass: `(silence alerts, absence alerts)` to publish.
pub async fn watch(
    store: &dyn Store,
    rules: &dyn RuleBook,
    silence: &Silence,
    now: i64,
) -> Result<Vec<Alert>, StoreError> {
    let mut out = Vec::new();
    let places = store.places().await?;
    if let Some(rule) = rules
        .all()
        .iter()
        .find(|r| r.id == TRAIL_SILENT && r.enabled)
    {
        for p in &places {
            let after = silence.after(&p.account, &p.region) as i64;
            if p.silent_alerted || now - p.last_delivery <= after {
                continue;
            }
            if store
                .mark_silent(&p.account, &p.region, p.last_delivery)
                .await?
            {
                let event = own_event(
                    "Trail Silent",
                    format!(
                        "trail-silent-{}-{}-{}",
                        p.account, p.region, p.last_delivery
                    ),
                    &p.account,
                    &p.region,
                    now,
                    json!({"state": "SILENT", "alertKey": alert_key(TRAIL_SILENT, &format!("{}/{}", p.account, p.region)),
                           "lastDelivery": crate::time::format_timestamp(p.last_delivery),
                           "newestEvent": crate::time::format_timestamp(p.newest),
                           "silentFor": crate::policy::duration((now - p.last_delivery) as u64),
                           "allowed": crate::policy::duration(after as u64),
                           "wholePipeline": places.iter().all(|q| now - q.last_delivery > silence.after(&q.account, &q.region) as i64)}),
                );
                out.push(Alert::from_bus_event(rule, &event));
            }
        }
    }
    let newest_anywhere = places.iter().map(|p| p.newest).max();
    let start = places.iter().map(|p| p.first).min();
    for rule in rules.all().iter().filter(|r| r.enabled) {
        let Some(absence) = &rule.absence else {
            continue;
        };
        let mut beats = store.heartbeats(&rule.id).await?;
        // Expected keys never seen are due from the trail's start.
        if let Some(start) = start {
            for key in &absence.expect {
                if !beats.iter().any(|b| &b.key_value == key) {
                    beats.push(Beat {
                        key_value: key.clone(),
                        account: "*".into(),
                        region: "*".into(),
                        last_seen: start,
                        alerted_for: None,
                    });
                }
            }
        }
        for beat in beats {
            if beat.alerted_for.is_some() {
                continue;
            }
            let watermark = places
                .iter()
                .find(|p| p.account == beat.account && p.region == beat.region)
                .map(|p| p.newest)
                .or(if beat.account == "*" || beat.region == "*" {
                    newest_anywhere
                } else {
                    None
                });
            let Some(watermark) = watermark else { continue };
            if !crate::policy::overdue(beat.last_seen, absence.every, watermark) {
                continue;
            }
            if store.mark_missing(&rule.id, &beat).await? {
                let event = own_event(
                    "Heartbeat Missing",
                    format!(
                        "absence-{}-{}-{}",
                        rule.id,
                        stable_hash(beat.key_value.as_bytes()),
                        beat.last_seen
                    ),
                    &beat.account,
                    &beat.region,
                    now,
                    json!({"state": "MISSING", "alertKey": alert_key(&rule.id, &beat.key_value),
                           "rule": rule.id, "key": beat.key_value,
                           "lastSeen": crate::time::format_timestamp(beat.last_seen),
                           "overdueSince": crate::time::format_timestamp(beat.last_seen + absence.every as i64),
                           "watermark": crate::time::format_timestamp(watermark),
                           "every": crate::policy::duration(absence.every)}),
                );
                out.push(Alert::from_bus_event(rule, &event));
            }
        }
    }
    Ok(out)
}
