//! What `scan` writes: one alert at a time to standard output (aligned text rows or JSON lines),
//! and the summary line.

use std::io::{self, BufWriter, StdoutLock, Write};
use std::time::Duration;

use super::args::Format;
use crate::alert::Alert;
use crate::pipeline::ObjectStats;

/// Standard output, written one alert at a time. The first write error is kept, and nothing is
/// written after it.
pub struct AlertWriter {
    out: BufWriter<StdoutLock<'static>>,
    format: Format,
    /// The widest rule id, so that text rows align.
    id_width: usize,
    failed: Option<io::Error>,
}

impl AlertWriter {
    pub fn new(format: Format, id_width: usize) -> Self {
        AlertWriter {
            out: BufWriter::new(io::stdout().lock()),
            format,
            id_width,
            failed: None,
        }
    }

    pub fn alert(&mut self, a: &Alert) {
        if self.failed.is_some() {
            return;
        }
        let written = match self.format {
            Format::Jsonl => writeln!(self.out, "{}", a.json_line()),
            Format::Text => writeln!(self.out, "{}", a.row(self.id_width)),
        };
        if let Err(e) = written {
            self.failed = Some(e);
        }
    }

    /// The first write error since the last call, if there was one.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.failed.take()
    }

    /// Ends the output: the summary line in text format, and a flush.
    pub fn finish(mut self, summary: &str) -> io::Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        match self.format {
            Format::Text => writeln!(self.out, "{summary}").and_then(|()| self.out.flush()),
            Format::Jsonl => self.out.flush(),
        }
    }
}

/// `3 files, 12 records (0 skipped), 8 alerts in 0.01s; 2 non-log files passed over`.
pub fn summary(files: u64, total: &ObjectStats, elapsed: Duration, passed_over: u64) -> String {
    let mut s = format!(
        "{files} file{}, {} record{} ({} skipped), {} alert{}",
        plural(files),
        total.records,
        plural(total.records),
        total.unreadable,
        total.alerts,
        plural(total.alerts),
    );
    if total.duplicates > 0 {
        s.push_str(&format!(
            " ({} repeated event{} alerted once)",
            total.duplicates,
            plural(total.duplicates)
        ));
    }
    s.push_str(&format!(" in {:.2}s", elapsed.as_secs_f64()));
    if passed_over > 0 {
        s.push_str(&format!(
            "; {passed_over} non-log file{} passed over",
            plural(passed_over)
        ));
    }
    s
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines() {
        let total = ObjectStats {
            records: 1,
            alerts: 2,
            duplicates: 1,
            ..ObjectStats::default()
        };
        assert_eq!(
            summary(1, &total, Duration::from_millis(1234), 2),
            "1 file, 1 record (0 skipped), 2 alerts (1 repeated event alerted once) in 1.23s; \
             2 non-log files passed over"
        );
        assert_eq!(
            summary(0, &ObjectStats::default(), Duration::ZERO, 0),
            "0 files, 0 records (0 skipped), 0 alerts in 0.00s"
        );
    }
}
