//! A one-line progress indicator on standard error, only when it is a terminal.

use std::time::{Duration, Instant};

use crate::pipeline::ObjectStats;

pub struct Progress {
    enabled: bool,
    last: Instant,
    shown: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            last: Instant::now(),
            shown: false,
        }
    }

    /// Shows the counts so far, at most four times a second.
    pub fn tick(&mut self, files: u64, total: &ObjectStats) {
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
