//! Checking the records no rule wants (valid JSON objects, or why not) without building them:
//! inline, or on a thread of its own that gets them in batches.

use std::sync::mpsc::{sync_channel, Receiver, SendError, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use crate::reader::{RawRecord, RecordError};

/// Bytes of records handed to the checking thread at a time.
const BATCH_BYTES: usize = 256 << 10;

/// Records to check, copied end to end.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// (index, offset, start, end, known UTF-8)
    records: Vec<(usize, u64, usize, usize, bool)>,
}

impl Batch {
    /// Checks every record of the batch: the valid ones counted, the others listed.
    fn check_all(&self, valid: &mut u64, unreadable: &mut Vec<RecordError>) {
        for &(index, offset, start, end, utf8) in &self.records {
            let raw = RawRecord {
                index,
                offset,
                bytes: &self.bytes[start..end],
                utf8,
            };
            tally(raw, valid, unreadable);
        }
    }
}

fn tally(raw: RawRecord<'_>, valid: &mut u64, unreadable: &mut Vec<RecordError>) {
    match raw.check() {
        Ok(()) => *valid += 1,
        Err(e) => unreadable.push(e),
    }
}

/// Checks records inline, or on a thread of its own when one was asked for and the system
/// gave it.
pub(super) struct Checker<'scope> {
    thread: Option<CheckThread<'scope>>,
}

struct CheckThread<'scope> {
    batch: Batch,
    full: SyncSender<Batch>,
    spent: Receiver<Batch>,
    handle: ScopedJoinHandle<'scope, (u64, Vec<RecordError>)>,
}

impl<'scope> Checker<'scope> {
    pub(super) fn new<'env>(scope: &'scope Scope<'scope, 'env>, threaded: bool) -> Self {
        if !threaded {
            return Checker { thread: None };
        }
        let (full, batches) = sync_channel::<Batch>(4);
        let (spent_tx, spent) = sync_channel::<Batch>(5);
        let handle = std::thread::Builder::new()
            .name("trail-alerts-check".into())
            .spawn_scoped(scope, move || {
                let mut valid = 0u64;
                let mut unreadable = Vec::new();
                for mut batch in batches {
                    batch.check_all(&mut valid, &mut unreadable);
                    batch.bytes.clear();
                    batch.records.clear();
                    let _ = spent_tx.try_send(batch);
                }
                (valid, unreadable)
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

    /// Checks a record now or later; valid records are counted in `valid`, the others pushed
    /// to `unreadable` (those checked later, by [`Checker::finish`]).
    pub(super) fn check(
        &mut self,
        raw: RawRecord<'_>,
        valid: &mut u64,
        unreadable: &mut Vec<RecordError>,
    ) {
        let Some(t) = &mut self.thread else {
            tally(raw, valid, unreadable);
            return;
        };
        let start = t.batch.bytes.len();
        t.batch.bytes.extend_from_slice(raw.bytes);
        let end = t.batch.bytes.len();
        t.batch
            .records
            .push((raw.index, raw.offset, start, end, raw.utf8));
        if t.batch.bytes.len() >= BATCH_BYTES {
            let next = t.spent.try_recv().unwrap_or_default();
            let full = std::mem::replace(&mut t.batch, next);
            if let Err(SendError(batch)) = t.full.send(full) {
                // The checking thread is gone (it panicked): check here instead.
                batch.check_all(valid, unreadable);
            }
        }
    }

    /// Waits for the checks in flight and adds up what they found.
    pub(super) fn finish(self, valid: &mut u64, unreadable: &mut Vec<RecordError>) {
        let Some(t) = self.thread else { return };
        if !t.batch.records.is_empty() {
            let _ = t.full.send(t.batch);
        }
        drop(t.full);
        match t.handle.join() {
            Ok((n, errors)) => {
                *valid += n;
                unreadable.extend(errors);
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}
