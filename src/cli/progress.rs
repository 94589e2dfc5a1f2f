//! A one-line progress indicator on standard error, only when it is a terminal.

use std::time::{Duration, Instant};

use crate::pipeline::ReadCounts;

pub struct Progress {
    enabled: bool,
    last: Instant,
    shown: bool,
    /// Objects and bytes to read, when a listing told (S3).
    total: Option<(u64, u64)>,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            last: Instant::now(),
            shown: false,
            total: None,
        }
    }

    /// The objects and bytes a listing found: the progress line gets a rate and an ETA.
    pub fn expect(&mut self, objects: u64, bytes: u64) {
        self.total = Some((objects, bytes));
    }

    /// Objects read of those expected, with their (compressed) bytes, after `elapsed`.
    pub fn objects(&mut self, done: u64, bytes: u64, alerts: u64, elapsed: Duration) {
        let Some((objects, total)) = self.total else {
            return;
        };
        if !self.enabled || self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last = Instant::now();
        self.shown = true;
        let secs = elapsed.as_secs_f64().max(0.001);
        let rate = bytes as f64 / secs;
        let eta = if rate > 0.0 {
            format!("{:.0}s", total.saturating_sub(bytes) as f64 / rate)
        } else {
            "?".into()
        };
        eprint!(
            "\r\x1b[2Kscanning: {done}/{objects} objects, {:.1}/{:.1} MB, {alerts} alerts, {:.1} MB/s, {:.0} objects/s, ETA {eta}",
            bytes as f64 / 1e6,
            total as f64 / 1e6,
            rate / 1e6,
            done as f64 / secs
        );
    }

    /// Shows the counts so far, at most four times a second.
    pub fn tick(&mut self, files: u64, total: &ReadCounts) {
        if self.total.is_some() {
            // A listing told what to expect: `objects` shows the progress.
            return;
        }
        if !self.enabled || self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last = Instant::now();
        self.shown = true;
        eprint!(
            "\r\x1b[2Kscanning: {files} files, {} records, {} alerts, {} MB",
            total.records,
            total.alerts,
            total.bytes >> 20
        );
    }

    /// Clears the line before anything else is written to the terminal.
    pub fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }
}
