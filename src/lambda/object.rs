//! One S3 object: the policy on what is read (allowed buckets, keys that are not logs, empty
//! objects), the streamed read through the pipeline on a blocking thread, and its alerts handed
//! to publishing.

use std::sync::Arc;

use tokio_util::io::SyncIoBridge;
use tracing::{error, info, warn};

use crate::alert::{Alert, AlertSource};
use crate::keys::{classify, KeyKind};
use crate::pipeline::{Mode, Pipeline, ReadCounts, ReadOutcome};
use crate::reader::{Limits, ReadError};
use crate::rules::RuleSet;

use super::config::LambdaConfig;
use super::door::{Door, DoorError, Progress, StormGuard};
use super::input::ObjectRef;
use super::pager::{resolutions, PageCounts};
use super::ports::{FetchError, ObjectBody, ObjectStore, Publisher};
use crate::policy;

/// Why an object could not be fully handled.
#[derive(Debug, thiserror::Error)]
#[error("{object}: {kind}")]
pub struct ObjectError {
    pub object: ObjectRef,
    pub kind: ObjectErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectErrorKind {
    #[error("bucket {0:?} is not in ALLOWED_BUCKETS; refused")]
    BucketNotAllowed(String),
    #[error(transparent)]
    Fetch(FetchError),
    #[error(transparent)]
    Read(ReadError),
    #[error("the reading task failed: {0}")]
    Task(String),
    /// Deciding and telling what the object raised (`door.rs`).
    #[error(transparent)]
    Door(DoorError),
}

impl ObjectError {
    /// Whether Lambda's retry can help.
    pub fn retryable(&self) -> bool {
        match &self.kind {
            ObjectErrorKind::BucketNotAllowed(_) => false,
            ObjectErrorKind::Fetch(e) => e.retryable(),
            ObjectErrorKind::Read(e) => e.is_transient(),
            ObjectErrorKind::Task(_) => true,
            ObjectErrorKind::Door(e) => e.retryable(),
        }
    }
}

/// What happened to one object that did not fail.
/// What an object's alerts became, for the invocation's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoorCounts {
    /// Held back by dedup or a threshold; silenced by a suppression.
    pub held: u64,
    /// Gathered into their group's notification.
    pub grouped: u64,
    /// First alerts of groups with a wait (told by the sweep when it is over).
    pub waiting: u64,
    /// Rules that stormed, and matches folded into their storm messages.
    pub storms: u64,
    pub folded: u64,
    pub suppressed: u64,
    /// The rule and severity of each alert published.
    pub published: Vec<(String, crate::rules::Severity)>,
    /// The newest eventTime read (Unix seconds).
    pub newest_event: Option<i64>,
    /// The rule of each shadow alert (written, not published).
    pub shadow: Vec<String>,
    /// What paging did.
    pub pages: PageCounts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOutcome {
    /// Passed over, and why: a digest, a folder marker, an empty object…
    PassedOver(&'static str),
    /// Read; its alerts were published.
    Read {
        stats: ReadCounts,
        published: u64,
        report: DoorCounts,
    },
}

/// Reads one object, matches its records and hands the alerts to the door.
pub(super) async fn process<S: ObjectStore, P: Publisher>(
    object: &ObjectRef,
    store: &S,
    door: &Door<'_, P>,
    rules: &Arc<RuleSet>,
    config: &LambdaConfig,
) -> Result<ObjectOutcome, ObjectError> {
    let fail = |kind| ObjectError {
        object: object.clone(),
        kind,
    };
    let body = match open(object, store, config).await? {
        Ok(body) => body,
        Err(why) => return Ok(ObjectOutcome::PassedOver(why)),
    };
    let origin = object.to_string();
    let now = policy::now();
    // The read hands its alerts over in parts of at most PART as it goes; each is told before
    // the next is taken, so that memory holds a bounded number of alerts however many records
    // match.
    let (mut parts, reading) = scan_in_parts(object, body, rules, config.limits);
    let mut telling = door.begin(true);
    let mut failed = None;
    while let Some(part) = parts.recv().await {
        if let Err(e) = door
            .tell_part(&mut telling, &origin, part, false, now)
            .await
        {
            // The read stops handing over; the delivery fails as the door says.
            parts.close();
            failed = Some(e);
            break;
        }
    }
    let (rest, outcome) = reading.await.map_err(|e| fail(ObjectErrorKind::Task(e)))?;
    if let Some(e) = failed {
        return Err(fail(ObjectErrorKind::Door(e)));
    }
    for e in &outcome.unreadable {
        warn!(record = e.index, offset = e.offset, error = %e, "record skipped");
    }
    match outcome.fault {
        None => {}
        Some(ReadError::Empty) => {
            info!(reason = "empty object", "object skipped");
            return Ok(ObjectOutcome::PassedOver("an empty object"));
        }
        Some(fault) => {
            // What was read before the fault is told (claimed, with the state store, so that
            // the retry does not tell it twice); the trail's progress is not noted.
            let told = async {
                door.tell_part(&mut telling, &origin, rest, true, now)
                    .await?;
                door.finish(telling, &origin, None, now).await
            };
            if let Err(e) = told.await {
                error!(error = %e, "alerts raised before the read fault could not all be told");
            }
            return Err(fail(ObjectErrorKind::Read(fault)));
        }
    }
    let stats = outcome.stats;
    let progress = Progress {
        key: &object.key,
        newest_event: stats.newest_event,
    };
    let told = async {
        door.tell_part(&mut telling, &origin, rest, true, now)
            .await?;
        door.finish(telling, &origin, Some(progress), now).await
    };
    let told = told.await.map_err(|e| fail(ObjectErrorKind::Door(e)))?;
    info!(
        records = stats.records,
        skipped = stats.unreadable,
        alerts = stats.alerts,
        duplicates = stats.duplicates,
        published = told.published,
        told_before = told.told_before,
        bytes = stats.bytes,
        "object done"
    );
    let report = DoorCounts {
        held: told.held,
        grouped: told.grouped,
        waiting: told.waiting,
        storms: told.storms,
        folded: told.folded,
        suppressed: told.suppressed,
        published: told.sent,
        newest_event: stats.newest_event,
        shadow: told.shadow,
        pages: told.pages,
    };
    Ok(ObjectOutcome::Read {
        stats,
        published: told.published,
        report,
    })
}

/// What a backfill found in one object, or why it was passed over.
pub(super) enum Found {
    /// Passed over (the reason is logged).
    PassedOver,
    Read {
        stats: ReadCounts,
        findings: Findings,
    },
}

/// A backfill's findings in one object: suppressions applied, recovery rules' matches left out,
/// shadow rules' marked, and past `STORM_LIMIT` alerts of one rule the rest folded into one
/// storm finding, as the function would have told them.
#[derive(Default)]
pub(super) struct Findings {
    /// Their JSON lines (the `--format jsonl` line of each).
    pub lines: Vec<u8>,
    /// Alerts found (folded ones included), and silenced by suppressions.
    pub alerts: u64,
    pub suppressed: u64,
    /// Matches folded into storm findings.
    pub folded: u64,
    /// The rule of each shadow alert found.
    pub shadow: Vec<String>,
}

impl Findings {
    fn add(&mut self, rules: &RuleSet, guard: &mut StormGuard, mut alerts: Vec<Alert>) {
        self.suppressed += rules.suppress(&mut alerts);
        let (alerts, _) = resolutions(rules, alerts);
        self.alerts += alerts.len() as u64;
        let kept = guard.pass(alerts);
        self.shadow
            .extend(kept.iter().filter(|a| a.shadow).map(|a| a.rule_id.clone()));
        self.lines.extend(super::shadow::lines(&kept));
    }
}

/// Reads one object for a backfill: the same policy and pipeline as [`process`], in the same
/// bounded parts, but nothing is published, paged or kept in the state store: only the
/// findings' lines (at most `STORM_LIMIT` per rule) are kept.
pub(super) async fn find<S: ObjectStore>(
    object: &ObjectRef,
    store: &S,
    rules: &Arc<RuleSet>,
    config: &LambdaConfig,
) -> Result<Found, ObjectError> {
    let fail = |kind| ObjectError {
        object: object.clone(),
        kind,
    };
    let body = match open(object, store, config).await? {
        Ok(body) => body,
        Err(_) => return Ok(Found::PassedOver),
    };
    let (mut parts, reading) = scan_in_parts(object, body, rules, config.limits);
    let mut guard = StormGuard::new(config.storm_limit);
    let mut findings = Findings::default();
    while let Some(part) = parts.recv().await {
        findings.add(rules, &mut guard, part);
    }
    let (rest, outcome) = reading.await.map_err(|e| fail(ObjectErrorKind::Task(e)))?;
    for e in &outcome.unreadable {
        warn!(record = e.index, offset = e.offset, error = %e, "record skipped");
    }
    match outcome.fault {
        None => {}
        Some(ReadError::Empty) => {
            info!(reason = "empty object", "object skipped");
            return Ok(Found::PassedOver);
        }
        Some(fault) => return Err(fail(ObjectErrorKind::Read(fault))),
    }
    findings.add(rules, &mut guard, rest);
    let (storms, folded) = guard.finish(rules, &object.to_string());
    findings.folded = folded;
    findings.lines.extend(super::shadow::lines(&storms));
    Ok(Found::Read {
        stats: outcome.stats,
        findings,
    })
}

/// The policy on what is read (allowed buckets, keys that name no log), then the object's
/// body, or why the object was passed over (`Ok(Err(why))`).
async fn open<S: ObjectStore>(
    object: &ObjectRef,
    store: &S,
    config: &LambdaConfig,
) -> Result<Result<ObjectBody, &'static str>, ObjectError> {
    let fail = |kind| ObjectError {
        object: object.clone(),
        kind,
    };
    if !config.bucket_allowed(&object.bucket) {
        error!("bucket is not in ALLOWED_BUCKETS; object refused");
        return Err(fail(ObjectErrorKind::BucketNotAllowed(
            object.bucket.clone(),
        )));
    }
    if let Some(why) = passed_over(&object.key) {
        info!(reason = why, "object skipped");
        return Ok(Err(why));
    }
    store
        .open(object)
        .await
        .map(Ok)
        .map_err(|e| fail(ObjectErrorKind::Fetch(e)))
}

/// Why a key is passed over without being read (it names no log), if it is.
fn passed_over(key: &str) -> Option<&'static str> {
    match classify(key) {
        kind if kind.has_records() => None,
        KeyKind::Digest => Some("a CloudTrail digest file"),
        _ if key.ends_with('/') => Some("a folder marker"),
        _ => Some("not a CloudTrail log file"),
    }
}

/// Alerts an object's read hands over at a time ([`scan_in_parts`]). An alert holds its
/// record (about 2–10 KiB in memory), so two parts in flight stay within a few tens of MiB.
pub const PART: usize = 1000;

/// What the read leaves: its last part and its outcome, or why the reading task failed.
type ReadResult = Result<(Vec<Alert>, ReadOutcome), String>;

/// Streams the body through the pipeline on a blocking thread (memory bounded by the record,
/// not the object), handing its alerts over in parts of [`PART`] as it reads: the parts, and the read,
/// which ends with the last part (fewer than `PART`) and the outcome. The read waits while a
/// part is being told (one part waits in the channel), so at most three parts are in memory.
/// Once the receiver is closed the read goes on to its end without keeping alerts.
fn scan_in_parts(
    object: &ObjectRef,
    body: ObjectBody,
    rules: &Arc<RuleSet>,
    limits: Limits,
) -> (
    tokio::sync::mpsc::Receiver<Vec<Alert>>,
    impl std::future::Future<Output = ReadResult>,
) {
    let rules = Arc::clone(rules);
    let source = AlertSource::S3 {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
    };
    let size = body.size;
    let reader = SyncIoBridge::new(body.stream);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let task = tokio::task::spawn_blocking(move || {
        let mut part = Vec::new();
        let mut open = true;
        let mut pipeline = Pipeline::new(&rules, limits);
        let outcome = pipeline.run_sized(reader, size, &source, Mode::Threaded, |a| {
            if !open {
                return;
            }
            part.push(a);
            if part.len() >= PART {
                open = tx.blocking_send(std::mem::take(&mut part)).is_ok();
            }
        });
        (part, outcome)
    });
    (rx, async move { task.await.map_err(|e| e.to_string()) })
}
