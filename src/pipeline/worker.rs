//! The threaded mode's third thread, for rule sets with a pattern that has no anchor (every
//! record is built): this thread splits records and peeks at them, and hands them, in batches,
//! to a matching thread that decides from the peek which must be built, builds and matches
//! those and checks the others; the alerts come back in record order and are handed out on
//! this thread. When every pattern is anchored, few records are built and matching stays on
//! the reader's thread (see `Pipeline::run`).

use std::io::Read;
use std::sync::mpsc::{channel, sync_channel, Receiver, SendError};

use super::Matcher;
use crate::alert::Alert;
use crate::reader::{LogReader, Peeked, PeekedAt, PeekedBatch, RawRecord, ReadError, Split};

/// Bytes of records handed to the matching thread at a time.
const BATCH_BYTES: usize = 256 << 10;
/// Batches in flight: how far splitting may run ahead of matching (1 MiB).
const BATCHES_IN_FLIGHT: usize = 4;

/// Records to match, copied end to end.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    records: Vec<Entry>,
    peeks: PeekedBatch,
}

/// Where a record stands in a batch, and what the splitter knew of it.
struct Entry {
    index: usize,
    offset: u64,
    start: usize,
    end: usize,
    utf8: bool,
    must_build: bool,
    valid: bool,
    peeked: PeekedAt,
}

impl Batch {
    fn push(&mut self, raw: RawRecord<'_>, peeked: &Peeked) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(raw.bytes);
        self.records.push(Entry {
            index: raw.index,
            offset: raw.offset,
            start,
            end: self.bytes.len(),
            utf8: raw.utf8,
            must_build: raw.must_build,
            valid: raw.valid,
            peeked: self.peeks.push(peeked),
        });
    }

    fn match_all(&self, matcher: &mut Matcher<'_, '_>, on_alert: &mut impl FnMut(Alert)) {
        let mut peeked = Peeked::default();
        for e in &self.records {
            self.peeks.load(e.peeked, &mut peeked);
            let raw = RawRecord {
                index: e.index,
                offset: e.offset,
                bytes: &self.bytes[e.start..e.end],
                utf8: e.utf8,
                must_build: e.must_build,
                valid: e.valid,
            };
            matcher.record(raw, &peeked, on_alert);
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
        self.peeks.clear();
    }
}

/// The fast path with building, matching and checking on a thread of its own; all on this
/// thread when the system refuses one. Returns the fault that ended the log, if any, and the
/// bytes read.
pub(super) fn build_wanted<R: Read>(
    mut reader: LogReader<R>,
    matcher: &mut Matcher<'_, '_>,
    on_alert: &mut impl FnMut(Alert),
) -> (Option<ReadError>, u64) {
    let mut too_large = Vec::new();
    let fault = std::thread::scope(|scope| {
        let (full, batches) = sync_channel::<Batch>(BATCHES_IN_FLIGHT);
        let (spent_tx, spent) = sync_channel::<Batch>(BATCHES_IN_FLIGHT + 1);
        let (alerts_tx, alerts) = channel::<Alert>();
        let matcher = &mut *matcher;
        let worker = std::thread::Builder::new()
            .name("trail-alerts-match".into())
            .spawn_scoped(scope, move || {
                for mut batch in batches {
                    batch.match_all(matcher, &mut |a| {
                        let _ = alerts_tx.send(a);
                    });
                    batch.clear();
                    let _ = spent_tx.try_send(batch);
                }
            });
        let Ok(worker) = worker else {
            // No second thread: match here, as the inline mode does.
            return None;
        };
        let mut batch = Batch::default();
        let fault = loop {
            match reader.next_split() {
                Ok(Some(Split::Record(raw, peeked))) => batch.push(raw, peeked),
                Ok(Some(Split::Refused(e))) => too_large.push(e),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
            if batch.bytes.len() >= BATCH_BYTES {
                let next = spent.try_recv().unwrap_or_default();
                let ready = std::mem::replace(&mut batch, next);
                if let Err(SendError(_)) = full.send(ready) {
                    // The matching thread is gone: it panicked, and joining it says so.
                    break None;
                }
                hand_out(&alerts, on_alert);
            }
        };
        if !batch.records.is_empty() {
            let _ = full.send(batch);
        }
        drop(full);
        if let Err(panic) = worker.join() {
            std::panic::resume_unwind(panic);
        }
        hand_out(&alerts, on_alert);
        Some(fault)
    });
    match fault {
        Some(fault) => {
            matcher.unreadable.extend(too_large);
            (fault, reader.offset())
        }
        None => super::build_wanted(reader, matcher, on_alert),
    }
}

/// The alerts raised so far, in order.
fn hand_out(alerts: &Receiver<Alert>, on_alert: &mut impl FnMut(Alert)) {
    while let Ok(a) = alerts.try_recv() {
        on_alert(a);
    }
}
