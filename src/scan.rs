//! From a CloudTrail log stream to the alerts its records raise: the pipeline the command line
//! runs per file and the Lambda function runs per S3 object.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::alert::{Alert, AlertSource};
use crate::engine::Scratch;
use crate::keys::classify;
use crate::reader::{
    check_record, parse_record, Item, Limits, LogReader, RawItem, ReadError, RecordError,
    DEEP_RECORD,
};
use crate::rules::RuleSet;

/// What reading one log object gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectStats {
    /// Records read and matched.
    pub records: u64,
    /// Records that could not be read (reported through `on_skip`).
    pub skipped: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Records that rules matched but whose `eventID` an earlier record of the same object
    /// already had: CloudTrail can deliver an event twice, and its alerts are raised once.
    pub duplicates: u64,
    /// Decompressed bytes read.
    pub bytes: u64,
}

/// Matches records against a rule set, reusing its scratch space across objects.
pub struct Scanner<'r> {
    rules: &'r RuleSet,
    limits: Limits,
    scratch: Scratch,
}

impl<'r> Scanner<'r> {
    pub fn new(rules: &'r RuleSet, limits: Limits) -> Self {
        Scanner {
            rules,
            limits,
            scratch: Scratch::default(),
        }
    }

    /// Reads one log (gzip or plain) and calls `on_alert` for each alert and `on_skip` for each
    /// record that could not be read. A file-level fault ends the object with an error; the
    /// alerts already raised have been handed out.
    ///
    /// A record whose own `eventName` and `eventSource` (read from its raw bytes) no rule is
    /// filed under is only checked for validity, not built: the alerts and the skipped records
    /// are exactly those of [`Scanner::scan_parsing_all`], which builds every record.
    pub fn scan<R: Read>(
        &mut self,
        input: R,
        source: &AlertSource,
        on_alert: impl FnMut(Alert),
        on_skip: impl FnMut(&RecordError),
    ) -> Result<ObjectStats, ReadError> {
        let reader = LogReader::new(input, self.limits)?;
        self.run(reader, source, on_alert, on_skip, false)
    }

    /// [`Scanner::scan`] with gzip inflated on a thread of its own and the records no rule is
    /// filed under checked on another, overlapping with splitting and matching on this one:
    /// what the command line and the function use.
    pub fn scan_owned<R: Read + Send + 'static>(
        &mut self,
        input: R,
        source: &AlertSource,
        on_alert: impl FnMut(Alert),
        on_skip: impl FnMut(&RecordError),
    ) -> Result<ObjectStats, ReadError> {
        let reader = LogReader::threaded(input, self.limits)?;
        self.run(reader, source, on_alert, on_skip, true)
    }

    fn run<R: Read>(
        &mut self,
        mut reader: LogReader<R>,
        source: &AlertSource,
        mut on_alert: impl FnMut(Alert),
        mut on_skip: impl FnMut(&RecordError),
        parallel: bool,
    ) -> Result<ObjectStats, ReadError> {
        let mut stats = ObjectStats::default();
        // Skipped records are reported after the object, in index order, whichever thread
        // found them.
        let mut skips: Vec<RecordError> = Vec::new();
        let rules = self.rules;
        let scratch = &mut self.scratch;
        let mut seen = HashSet::new();
        let result = std::thread::scope(|scope| {
            let mut checker = Checker::new(scope, parallel);
            let outcome = loop {
                let raw = match reader.next_raw() {
                    Ok(Some(raw)) => raw,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                let (index, offset, bytes, meta, utf8) = match raw {
                    RawItem::Record {
                        index,
                        offset,
                        bytes,
                        meta,
                        utf8,
                    } => (index, offset, bytes, meta, utf8),
                    RawItem::Skipped(e) => {
                        skips.push(e);
                        continue;
                    }
                };
                let name = meta.value(&meta.event_name, bytes);
                let event_source = meta.value(&meta.event_source, bytes);
                let candidate = meta.max_depth >= DEEP_RECORD
                    || match (name.known(), event_source.known()) {
                        (Some(name), Some(event_source)) => rules.could_match(name, event_source),
                        _ => true,
                    };
                if candidate {
                    match parse_record(index, offset, bytes) {
                        Item::Record { index, record, .. } => {
                            stats.records += 1;
                            raise(
                                rules,
                                scratch,
                                &mut seen,
                                &record,
                                index,
                                source,
                                &mut stats,
                                &mut on_alert,
                            );
                        }
                        Item::Skipped(e) => skips.push(e),
                    }
                } else {
                    checker.check(index, offset, bytes, utf8, &mut stats, &mut skips);
                }
            };
            checker.finish(&mut stats, &mut skips);
            outcome
        });
        skips.sort_by_key(|e| e.index);
        stats.skipped += skips.len() as u64;
        for e in &skips {
            on_skip(e);
        }
        result?;
        stats.bytes = reader.bytes_read();
        Ok(stats)
    }

    /// The same as [`Scanner::scan`], building every record: the reference the fast path is
    /// tested against.
    pub fn scan_parsing_all<R: Read>(
        &mut self,
        input: R,
        source: &AlertSource,
        mut on_alert: impl FnMut(Alert),
        mut on_skip: impl FnMut(&RecordError),
    ) -> Result<ObjectStats, ReadError> {
        let mut stats = ObjectStats::default();
        let mut reader = LogReader::new(input, self.limits)?;
        let mut seen = HashSet::new();
        while let Some(item) = reader.next_item()? {
            match item {
                Item::Record { index, record, .. } => {
                    stats.records += 1;
                    raise(
                        self.rules,
                        &mut self.scratch,
                        &mut seen,
                        &record,
                        index,
                        source,
                        &mut stats,
                        &mut on_alert,
                    );
                }
                Item::Skipped(e) => {
                    stats.skipped += 1;
                    on_skip(&e);
                }
            }
        }
        stats.bytes = reader.bytes_read();
        Ok(stats)
    }
}

/// Raises the alerts of the rules that match a record, once per `eventID` within an object.
#[allow(clippy::too_many_arguments)]
fn raise(
    rules: &RuleSet,
    scratch: &mut Scratch,
    seen: &mut HashSet<String>,
    record: &Value,
    index: usize,
    source: &AlertSource,
    stats: &mut ObjectStats,
    on_alert: &mut impl FnMut(Alert),
) {
    let mut matched = Vec::new();
    rules.matching(record, scratch, |rule| matched.push(rule));
    if matched.is_empty() {
        return;
    }
    if let Some(id) = record.get("eventID").and_then(Value::as_str) {
        if !seen.insert(id.to_owned()) {
            stats.duplicates += 1;
            return;
        }
    }
    for rule in matched {
        stats.alerts += 1;
        on_alert(Alert::new(rule, record, source.clone(), index));
    }
}

/// Bytes of records handed to the checking thread at a time.
const CHECK_BATCH_BYTES: usize = 256 << 10;

/// Records to check, copied end to end: (index, offset, start, end, known UTF-8).
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    records: Vec<(usize, u64, usize, usize, bool)>,
}

/// Checks the records no rule is filed under (valid JSON objects, or why not): inline, or on a
/// thread of its own that gets them in batches.
struct Checker<'scope> {
    thread: Option<CheckThread<'scope>>,
}

struct CheckThread<'scope> {
    batch: Batch,
    full: std::sync::mpsc::SyncSender<Batch>,
    spent: std::sync::mpsc::Receiver<Batch>,
    handle: std::thread::ScopedJoinHandle<'scope, (u64, Vec<RecordError>)>,
}

impl<'scope> Checker<'scope> {
    fn new<'env>(scope: &'scope std::thread::Scope<'scope, 'env>, parallel: bool) -> Self {
        if !parallel {
            return Checker { thread: None };
        }
        let (full, batches) = std::sync::mpsc::sync_channel::<Batch>(4);
        let (spent_tx, spent) = std::sync::mpsc::sync_channel::<Batch>(5);
        let handle = std::thread::Builder::new()
            .name("trail-alerts-check".into())
            .spawn_scoped(scope, move || {
                let mut valid = 0u64;
                let mut errors = Vec::new();
                for mut batch in batches {
                    for &(index, offset, start, end, utf8) in &batch.records {
                        match check_record(index, offset, &batch.bytes[start..end], utf8) {
                            None => valid += 1,
                            Some(e) => errors.push(e),
                        }
                    }
                    batch.bytes.clear();
                    batch.records.clear();
                    let _ = spent_tx.try_send(batch);
                }
                (valid, errors)
            });
        // Without a thread (the system refused one), records are checked inline.
        Checker {
            thread: handle.ok().map(|handle| CheckThread {
                batch: Batch::default(),
                full,
                spent,
                handle,
            }),
        }
    }

    fn check(
        &mut self,
        index: usize,
        offset: u64,
        bytes: &[u8],
        utf8: bool,
        stats: &mut ObjectStats,
        skips: &mut Vec<RecordError>,
    ) {
        let Some(t) = &mut self.thread else {
            match check_record(index, offset, bytes, utf8) {
                None => stats.records += 1,
                Some(e) => skips.push(e),
            }
            return;
        };
        let start = t.batch.bytes.len();
        t.batch.bytes.extend_from_slice(bytes);
        t.batch
            .records
            .push((index, offset, start, t.batch.bytes.len(), utf8));
        if t.batch.bytes.len() >= CHECK_BATCH_BYTES {
            let next = t.spent.try_recv().unwrap_or_default();
            let full = std::mem::replace(&mut t.batch, next);
            if let Err(std::sync::mpsc::SendError(batch)) = t.full.send(full) {
                // The checking thread is gone (it panicked): check here instead.
                for (index, offset, start, end, utf8) in batch.records {
                    match check_record(index, offset, &batch.bytes[start..end], utf8) {
                        None => stats.records += 1,
                        Some(e) => skips.push(e),
                    }
                }
            }
        }
    }

    /// Waits for the checks in flight and adds up what they found.
    fn finish(self, stats: &mut ObjectStats, skips: &mut Vec<RecordError>) {
        let Some(t) = self.thread else { return };
        if !t.batch.records.is_empty() {
            let _ = t.full.send(t.batch);
        }
        drop(t.full);
        match t.handle.join() {
            Ok((valid, errors)) => {
                stats.records += valid;
                skips.extend(errors);
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// The CloudTrail log files under a directory (recursively, in path order), and how many other
/// files were passed over (digests, AWS Config files, anything not named like a log).
pub fn log_files(dir: &Path) -> std::io::Result<(Vec<PathBuf>, u64)> {
    let mut logs = Vec::new();
    let mut others = 0;
    walk(dir, &mut logs, &mut others)?;
    Ok((logs, others))
}

fn walk(dir: &Path, logs: &mut Vec<PathBuf>, others: &mut u64) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&path, logs, others)?;
        } else if is_log_path(&path) {
            logs.push(path);
        } else {
            *others += 1;
        }
    }
    Ok(())
}

fn is_log_path(path: &Path) -> bool {
    let key: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    classify(&key.join("/")).has_records()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSource;

    #[test]
    fn an_event_delivered_twice_in_one_object_alerts_once() {
        let rules = RuleSet::load(&[RuleSource::Builtin]).unwrap();
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
        for owned in [false, true] {
            let mut scanner = Scanner::new(&rules, Limits::default());
            let mut alerts = Vec::new();
            let stats = if owned {
                scanner.scan_owned(
                    std::io::Cursor::new(doc.clone().into_bytes()),
                    &source,
                    |a| alerts.push(a.record_index),
                    |_| {},
                )
            } else {
                scanner.scan(
                    doc.as_bytes(),
                    &source,
                    |a| alerts.push(a.record_index),
                    |_| {},
                )
            }
            .unwrap();
            // Records without an eventID cannot be told apart: each alerts.
            assert_eq!(alerts, [0, 2, 3, 4]);
            assert_eq!((stats.records, stats.alerts, stats.duplicates), (5, 4, 1));
        }
    }

    #[test]
    fn the_sample_trails_raise_the_expected_alerts() {
        let rules = RuleSet::load(&[RuleSource::Builtin]).unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events/trails");
        let (files, others) = log_files(&dir).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(others, 0);
        let mut scanner = Scanner::new(&rules, Limits::default());
        let mut fired = Vec::new();
        let mut total = ObjectStats::default();
        for f in &files {
            let source = AlertSource::File {
                path: f.display().to_string(),
            };
            let stats = scanner
                .scan(
                    std::fs::File::open(f).unwrap(),
                    &source,
                    |a| fired.push(a.rule_id),
                    |e| panic!("{e}"),
                )
                .unwrap();
            total.records += stats.records;
            total.alerts += stats.alerts;
        }
        fired.sort();
        assert_eq!(
            fired,
            [
                "backup-copy-job-failed",
                "backup-destructive-call",
                "backup-job-failed",
                "backup-org-plan-changed",
                "backup-org-plan-changed",
                "backup-restore-failed",
                "outposts-call-failed",
                "outposts-change",
            ]
        );
        assert_eq!(total.records, 12);
        assert_eq!(total.alerts, 8);
    }
}
