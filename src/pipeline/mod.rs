//! From a CloudTrail log stream to the alerts its records raise: the one pipeline the command
//! line runs per file and the Lambda function runs per S3 object.
//!
//! Bytes are decoded and split by the [`reader`](crate::reader), which peeks at the paths the
//! rule [`index`](crate::index) names; the index says from those raw values whether any rule
//! could match the record. Records it wants are built and matched, and raise [`Alert`]s; the
//! others are only checked, so that unreadable records are reported exactly as if every record
//! had been built ([`Mode::Reference`] builds every record, and the tests hold the modes to the
//! same answers).
//!
//! # Files
//! - [`events`]: files of EventBridge events, matched as the function matches them.
//! - `worker`: the matching thread of [`Mode::Threaded`].

pub mod events;
mod worker;

use std::collections::HashSet;
use std::io::Read;
use std::ops::AddAssign;
use std::sync::Arc;

use serde_json::Value;

use crate::alert::{Alert, AlertSource};
use crate::index::Scratch;
use crate::reader::{
    Leaf, Limits, LogReader, Parsed, PeekPaths, Peeked, RawRecord, ReadError, RecordError, Shapes,
    Split,
};
use crate::rules::RuleSet;

/// How a log is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything on the caller's thread.
    Inline,
    /// Gzip inflated on a thread of its own, overlapping with splitting, peeking and matching
    /// on the caller's; when some pattern has no anchor (every record is built), records are
    /// built and matched on a third thread: what the command line and the function use on
    /// more than one core.
    Threaded,
    /// Every record built and matched, on the caller's thread: the reference the other modes
    /// are tested against.
    Reference,
}

/// The mode for reading a log with `cores` CPUs at hand: threads pay only when they run at
/// the same time; on one core (`taskset`, or a Lambda function given a share of one vCPU, which
/// `std::thread::available_parallelism` reads from the cgroup's CPU quota) they only add
/// switching and hand-offs, and two threads started per file.
pub fn mode_for(cores: usize) -> Mode {
    if cores > 1 {
        Mode::Threaded
    } else {
        Mode::Inline
    }
}

/// What reading one log object gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// Records read and matched.
    pub records: u64,
    /// Records that could not be read (listed in [`ReadOutcome::unreadable`]).
    pub unreadable: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Records that a rule matched but whose `eventID` an earlier record of the same object,
    /// matched by the same rule, already had: CloudTrail can deliver an event twice, and each
    /// rule alerts on it once. Whether a record counts here never depends on the other rules.
    pub duplicates: u64,
    /// Decompressed bytes read.
    pub bytes: u64,
    /// The newest `eventTime` of the records read (Unix seconds), whether or not they were
    /// built: the trail's progress and the delivery lag's end.
    pub newest_event: Option<i64>,
}

impl AddAssign for ReadCounts {
    fn add_assign(&mut self, o: Self) {
        self.records += o.records;
        self.unreadable += o.unreadable;
        self.alerts += o.alerts;
        self.duplicates += o.duplicates;
        self.bytes += o.bytes;
        self.newest_event = self.newest_event.max(o.newest_event);
    }
}

/// What one run of the pipeline over a log gave.
#[derive(Debug, Default)]
#[must_use = "a log that failed part-way says so in `fault`"]
pub struct ReadOutcome {
    pub stats: ReadCounts,
    /// The records that could not be read, in index order.
    pub unreadable: Vec<RecordError>,
    /// The fault that ended the log early, if one did; the alerts raised before it were handed
    /// out, and the records read before it are counted.
    pub fault: Option<ReadError>,
}

/// Matches logs against a rule set, reusing its scratch space from one log to the next.
pub struct Pipeline<'r> {
    rules: &'r RuleSet,
    limits: Limits,
    shapes: Shapes,
    /// Shared by the logs this pipeline reads: the index's paths and `eventTime`.
    peek: Arc<PeekPaths>,
    /// Where the peek reports `eventTime` (`None`: not read).
    time_slot: Option<usize>,
    scratch: Scratch,
}

impl<'r> Pipeline<'r> {
    /// The rules it matches with.
    pub fn rules(&self) -> &'r RuleSet {
        self.rules
    }

    pub fn new(rules: &'r RuleSet, limits: Limits) -> Self {
        let mut peek = (*rules.index().peek_paths()).clone();
        let time_slot = peek.insert(&["eventTime".into()]);
        Pipeline {
            rules,
            limits,
            shapes: Shapes::S3Log,
            peek: Arc::new(peek),
            time_slot: Some(time_slot),
            scratch: Scratch::default(),
        }
    }

    /// Does not read the records' `eventTime` ([`ReadCounts::newest_event`] stays `None`):
    /// the peek then reads only what the rules need (2–5 % less CPU on the benchmark corpus).
    pub fn without_event_times(mut self) -> Self {
        if self.time_slot.take().is_some() {
            self.peek = self.rules.index().peek_paths();
        }
        self
    }

    /// Reads documents of these shapes (by default, CloudTrail's S3 format only).
    pub fn with_shapes(mut self, shapes: Shapes) -> Self {
        self.shapes = shapes;
        self
    }

    /// Reads one log (gzip or plain) and hands each alert to `on_alert` as it is raised.
    ///
    /// Whatever the mode, the alerts, the unreadable records and the counts are those of
    /// [`Mode::Reference`], which builds every record.
    pub fn run<R: Read + Send + 'static>(
        &mut self,
        input: R,
        source: &AlertSource,
        mode: Mode,
        on_alert: impl FnMut(Alert),
    ) -> ReadOutcome {
        self.run_sized(input, None, source, mode, on_alert)
    }

    /// [`Pipeline::run`] for an input whose length is known (a file's, an S3 object's): a
    /// large one is not read ahead to tell whether it could be held whole. The length is a
    /// hint: an input of another length is read all the same.
    pub fn run_sized<R: Read + Send + 'static>(
        &mut self,
        input: R,
        size: Option<u64>,
        source: &AlertSource,
        mode: Mode,
        mut on_alert: impl FnMut(Alert),
    ) -> ReadOutcome {
        let opened = match mode {
            Mode::Threaded => LogReader::threaded_shapes(input, self.limits, self.shapes, size),
            Mode::Inline | Mode::Reference => {
                LogReader::new_shapes(input, self.limits, self.shapes, size)
            }
        };
        let reader = match opened {
            Ok(reader) => reader.peeking(Arc::clone(&self.peek)),
            Err(fault) => {
                return ReadOutcome {
                    fault: Some(fault),
                    ..ReadOutcome::default()
                }
            }
        };
        let mut matcher = Matcher {
            rules: self.rules,
            scratch: &mut self.scratch,
            seen: HashSet::default(),
            source,
            stats: ReadCounts::default(),
            unreadable: Vec::new(),
            time_slot: self.time_slot,
            newest_raw: [0; 20],
        };
        let (fault, bytes) = match mode {
            Mode::Reference => build_every_record(reader, &mut matcher, &mut on_alert),
            Mode::Inline => build_wanted(reader, &mut matcher, &mut on_alert),
            // Building records on a thread of its own pays only when most are built: with
            // every pattern anchored, few are, the others' grammar was checked while splitting,
            // and the hand-off would cost more than it saves.
            Mode::Threaded if self.rules.index().builds_every_record() => {
                worker::build_wanted(reader, &mut matcher, &mut on_alert)
            }
            Mode::Threaded => build_wanted(reader, &mut matcher, &mut on_alert),
        };
        let Matcher {
            mut stats,
            mut unreadable,
            ..
        } = matcher;
        unreadable.sort_by_key(|e| e.index);
        stats.unreadable = unreadable.len() as u64;
        stats.bytes = bytes;
        ReadOutcome {
            stats,
            unreadable,
            fault,
        }
    }
}

/// The fast path, on this thread: a record the index does not want is checked, not built.
/// Returns the fault that ended the log, if any, and the bytes read.
fn build_wanted<R: Read>(
    mut reader: LogReader<R>,
    matcher: &mut Matcher<'_, '_>,
    on_alert: &mut impl FnMut(Alert),
) -> (Option<ReadError>, u64) {
    let fault = loop {
        match reader.next_split() {
            Ok(Some(Split::Record(raw, peeked))) => matcher.record(raw, peeked, on_alert),
            Ok(Some(Split::Refused(e))) => matcher.unreadable.push(e),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    (fault, reader.offset())
}

/// The reference: every record built whole and matched.
fn build_every_record<R: Read>(
    mut reader: LogReader<R>,
    matcher: &mut Matcher<'_, '_>,
    on_alert: &mut impl FnMut(Alert),
) -> (Option<ReadError>, u64) {
    let fault = loop {
        match reader.next_parsed() {
            Ok(Some(Parsed::Record { index, record, .. })) => {
                matcher.stats.records += 1;
                if matcher.time_slot.is_some() {
                    matcher.saw_time(record_time(&record));
                }
                let built = Built {
                    index,
                    bytes: None,
                    peeked_candidates: false,
                };
                matcher.raise(record, built, on_alert);
            }
            Ok(Some(Parsed::Unreadable(e))) => matcher.unreadable.push(e),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    (fault, reader.offset())
}

/// Matches one log's records and raises their alerts, once per rule and `eventID` within the
/// log.
struct Matcher<'p, 'r> {
    rules: &'r RuleSet,
    scratch: &'p mut Scratch,
    /// (eventID, rule id) pairs already alerted on. Hashed by foldhash, seeded per process
    /// (as the index's memo of record values is): SipHash cost 2–3 % of a scan raising many
    /// alerts.
    seen: HashSet<(String, &'r str), foldhash::fast::RandomState>,
    source: &'p AlertSource,
    stats: ReadCounts,
    unreadable: Vec<RecordError>,
    /// Where the peek reports `eventTime` (`None`: not read).
    time_slot: Option<usize>,
    /// The newest eventTime so far as CloudTrail writes it (`2024-01-10T08:15:00Z`): such
    /// times order as their bytes do, so most records need no parsing.
    newest_raw: [u8; 20],
}

/// What is known of a record built whole, beside its value.
struct Built {
    /// Its index in the log.
    index: usize,
    /// The length of its text (`None`: not known, and the record is not handed back).
    bytes: Option<usize>,
    /// The index took the rules that could match it from what the reader peeked at.
    peeked_candidates: bool,
}

/// A built record's `eventTime` (Unix seconds), when it is a string holding a time.
fn record_time(record: &Value) -> Option<i64> {
    crate::json::field(record, "eventTime")
        .and_then(Value::as_str)
        .and_then(crate::time::parse_timestamp)
}

/// A record's `eventTime` as the peek saw it, exactly as [`record_time`] would read it from the
/// built record; `Err` when only building can tell (an escaped string, a string in an array,
/// a record the peek could not read).
fn peeked_time<'b>(
    peeked: &'b Peeked,
    slot: usize,
    bytes: &'b [u8],
) -> Result<Option<&'b [u8]>, ()> {
    if peeked.unknown() {
        return Err(());
    }
    let mut leaves = peeked.leaves(slot, bytes);
    match (leaves.next(), leaves.next()) {
        (None, _) => Ok(None),
        (Some(Leaf::Scalar(_)), None) => Ok(None),
        (Some(Leaf::Plain(text)), None) => {
            // The value of the key itself, not an array's element: a ':' stands before its
            // opening quote.
            let quote = (text.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize + 1);
            let before = bytes
                .get(..quote)
                .and_then(|b| b.iter().rev().find(|c| !c.is_ascii_whitespace()));
            if before != Some(&b':') {
                return Err(());
            }
            Ok(Some(text))
        }
        _ => Err(()),
    }
}

impl Matcher<'_, '_> {
    /// Builds a record and raises its alerts when the index wants it (from what the reader
    /// peeked at), else checks it.
    fn record(&mut self, raw: RawRecord<'_>, peeked: &Peeked, on_alert: &mut impl FnMut(Alert)) {
        let time = match self.time_slot {
            Some(slot) => peeked_time(peeked, slot, raw.bytes),
            None => Ok(None),
        };
        let index = self.rules.index();
        let wanted =
            !raw.must_build() && time.is_ok() && index.wants(peeked, raw.bytes, self.scratch);
        let build = wanted || raw.must_build() || time.is_err();
        // What the peek saw also names the rules that could match: the built record need not
        // be searched for them again.
        let peeked_candidates = wanted && index.peeked_candidates(peeked, raw.bytes, self.scratch);
        let verdict = if build {
            raw.build().map(Some)
        } else {
            raw.check().map(|()| None)
        };
        match verdict {
            Ok(built) => {
                self.stats.records += 1;
                match built {
                    Some(record) => {
                        if self.time_slot.is_some() {
                            self.saw_time(record_time(&record));
                        }
                        let built = Built {
                            index: raw.index,
                            bytes: Some(raw.bytes.len()),
                            peeked_candidates,
                        };
                        self.raise(record, built, on_alert);
                    }
                    None => {
                        if let Ok(Some(text)) = time {
                            self.saw_raw_time(text);
                        }
                    }
                }
            }
            Err(e) => self.unreadable.push(e),
        }
    }

    fn saw_time(&mut self, time: Option<i64>) {
        self.stats.newest_event = self.stats.newest_event.max(time);
    }

    /// Notes an eventTime from the raw bytes: a time in CloudTrail's form that is not past the
    /// newest such time is passed over unparsed.
    fn saw_raw_time(&mut self, text: &[u8]) {
        let canonical = text.len() == 20 && text[10] == b'T' && text[19] == b'Z';
        if canonical && text <= &self.newest_raw[..] {
            return;
        }
        let time = std::str::from_utf8(text)
            .ok()
            .and_then(crate::time::parse_timestamp);
        if canonical && time.is_some() {
            self.newest_raw.copy_from_slice(text);
        }
        self.saw_time(time);
    }

    /// Raises the alerts of the rules that match a record built whole.
    fn raise(&mut self, record: Value, built: Built, on_alert: &mut impl FnMut(Alert)) {
        let Built {
            index,
            bytes,
            peeked_candidates,
        } = built;
        let rules = self.rules;
        let mut matched = Vec::new();
        if peeked_candidates {
            rules.matching_peeked(&record, self.scratch, |rule| matched.push(rule));
        } else {
            rules.matching(&record, self.scratch, |rule| matched.push(rule));
        }
        if matched.is_empty() {
            if bytes.is_some() {
                crate::reader::recycle(record, bytes);
            }
            return;
        }
        let mut repeated = false;
        if let Some(id) = crate::json::field(&record, "eventID").and_then(Value::as_str) {
            let before = matched.len();
            matched.retain(|rule| self.seen.insert((id.to_owned(), rule.id.as_str())));
            repeated = matched.len() < before;
        }
        self.stats.alerts += matched.len() as u64;
        // Every alert but the last gets a copy of the record; the last, the record itself.
        if let Some((last, others)) = matched.split_last() {
            for rule in others {
                on_alert(Alert::new(rule, &record, self.source.clone(), index));
            }
            on_alert(Alert::of_record(last, record, self.source.clone(), index));
        }
        if repeated {
            self.stats.duplicates += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSource;
    use std::path::Path;

    fn builtin() -> RuleSet {
        RuleSet::load(&[RuleSource::Builtin]).unwrap()
    }

    /// The two ways `Mode::Threaded` matches (on the reader's thread, or on a thread of its
    /// own when some pattern has no anchor) give what building every record gives, bad
    /// records included.
    #[test]
    fn threaded_reading_with_and_without_a_matching_thread_agrees_with_the_reference() {
        let mut unanchored = builtin().rules().to_vec();
        unanchored.extend(
            crate::rules::parse_document(
                "t.yaml",
                "rules:\n  - {id: no-error, description: d, severity: low, pattern: {errorCode: [{exists: false}]}}\n",
            )
            .unwrap(),
        );
        let unanchored = RuleSet::new(unanchored).unwrap();
        let rules = builtin();
        assert!(unanchored.index().builds_every_record());
        assert!(!rules.index().builds_every_record());
        let mut records: Vec<String> = (0..3000)
            .map(|i| {
                let state = ["COMPLETED", "FAILED"][i % 2];
                format!(
                    r#"{{"eventID":"e{i}","eventSource":"backup.amazonaws.com","eventName":"BackupJobCompleted","serviceEventDetails":{{"state":"{state}"}}}}"#
                )
            })
            .collect();
        records[7] = r#"{"eventName": tru}"#.into();
        records[1500] = r#"{"a":"\x"}"#.into();
        records[2999] = "[1]".into();
        let doc = format!(r#"{{"Records":[{}]}}"#, records.join(","));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, doc.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let source = AlertSource::File { path: "t".into() };
        for rules in [&rules, &unanchored] {
            let run = |mode: Mode| {
                let mut alerts = Vec::new();
                let outcome = Pipeline::new(rules, Limits::default()).run(
                    std::io::Cursor::new(gz.clone()),
                    &source,
                    mode,
                    |a| alerts.push((a.rule_id, a.record_index)),
                );
                let bad: Vec<String> = outcome.unreadable.iter().map(|e| e.to_string()).collect();
                (alerts, bad, outcome.stats.records)
            };
            let reference = run(Mode::Reference);
            assert_eq!(reference.1.len(), 3);
            assert!(reference.0.len() >= 1499, "{}", reference.0.len());
            assert_eq!(run(Mode::Threaded), reference);
            assert_eq!(run(Mode::Inline), reference);
            // Each alert's record handed back, as `scan` does: the records built over them
            // raise the same alerts, with the same records.
            let mut alerts = Vec::new();
            let outcome = Pipeline::new(rules, Limits::default()).run(
                std::io::Cursor::new(gz.clone()),
                &source,
                Mode::Inline,
                |a| {
                    let want: Value =
                        serde_json::from_str(&records[a.record_index]).expect("a record");
                    assert_eq!(a.record, want);
                    alerts.push((a.rule_id, a.record_index));
                    crate::reader::recycle(a.record, None);
                },
            );
            assert_eq!((alerts, outcome.stats.records), (reference.0, reference.2));
        }
    }

    #[test]
    fn an_event_delivered_twice_in_one_object_alerts_once() {
        let rules = builtin();
        let job = |id: Option<&str>| {
            let mut r = serde_json::json!({"eventSource": "backup.amazonaws.com", "eventName": "BackupJobCompleted",
                                           "serviceEventDetails": {"state": "FAILED"}});
            if let Some(id) = id {
                r["eventID"] = serde_json::json!(id);
            }
            r
        };
        let doc = serde_json::json!({"Records": [job(Some("a")), job(Some("a")), job(Some("b")), job(None), job(None)]}).to_string();
        let source = AlertSource::File { path: "t".into() };
        for mode in [Mode::Inline, Mode::Threaded, Mode::Reference] {
            let mut pipeline = Pipeline::new(&rules, Limits::default());
            let mut alerts = Vec::new();
            let outcome = pipeline.run(
                std::io::Cursor::new(doc.clone().into_bytes()),
                &source,
                mode,
                |a| alerts.push(a.record_index),
            );
            assert!(outcome.fault.is_none());
            // Records without an eventID cannot be told apart: each alerts.
            assert_eq!(alerts, [0, 2, 3, 4], "{mode:?}");
            let s = outcome.stats;
            assert_eq!((s.records, s.alerts, s.duplicates), (5, 4, 1), "{mode:?}");
        }
    }

    #[test]
    fn the_sample_trails_raise_the_expected_alerts() {
        let rules = builtin();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events/trails");
        let found = crate::walk::log_files(&dir).unwrap();
        let files = found.logs;
        assert_eq!(files.len(), 3);
        assert!(found.passed_over.is_empty());
        let mut pipeline = Pipeline::new(&rules, Limits::default());
        let mut fired = Vec::new();
        let mut total = ReadCounts::default();
        for f in &files {
            let source = AlertSource::File {
                path: f.display().to_string(),
            };
            let outcome = pipeline.run(
                std::fs::File::open(f).unwrap(),
                &source,
                Mode::Inline,
                |a| fired.push(a.rule_id),
            );
            assert!(outcome.fault.is_none() && outcome.unreadable.is_empty());
            total += outcome.stats;
        }
        fired.sort();
        assert_eq!(
            fired,
            [
                "backup-copy-job-failed",
                "backup-destructive-call",
                "backup-job-failed",
                "backup-job-recovered",
                "backup-org-plan-changed",
                "backup-org-plan-changed",
                "backup-restore-failed",
                "outposts-call-failed",
                "outposts-change",
            ]
        );
        assert_eq!(total.records, 12);
        // Matches, the recovery rule's included (the callers set recoveries apart).
        assert_eq!(total.alerts, 9);
    }
}
