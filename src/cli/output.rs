//! What `scan` writes: one alert at a time to standard output (text rows fitted to the terminal,
//! or JSON lines), and the summary.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, StdoutLock, Write};
use std::time::Duration;

use super::args::Format;
use crate::alert::{printable, Alert};
use crate::pipeline::ReadCounts;
use crate::policy::absence::Gap;
use crate::policy::local::Rollup;
use crate::rules::Severity;

/// How text rows look on this output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// The terminal's width: rows are fitted to it. `None`: rows are written whole.
    pub width: Option<usize>,
    /// Severity in colour (a terminal, and `NO_COLOR` unset).
    pub colour: bool,
}

/// Standard output, written one alert at a time. The first write error is kept, and nothing is
/// written after it.
pub struct AlertWriter {
    out: BufWriter<StdoutLock<'static>>,
    format: Format,
    /// The widest rule id, so that text rows align.
    id_width: usize,
    style: Style,
    failed: Option<io::Error>,
    /// A JSON line being written.
    line: Vec<u8>,
}

impl AlertWriter {
    pub fn new(format: Format, id_width: usize, style: Style) -> Self {
        AlertWriter {
            out: BufWriter::new(io::stdout().lock()),
            format,
            id_width,
            style,
            failed: None,
            line: Vec::new(),
        }
    }

    pub fn alert(&mut self, a: &Alert) {
        if self.failed.is_some() {
            return;
        }
        let written = match self.format {
            // Written whole into a buffer kept from line to line, then handed to the writer.
            Format::Jsonl => {
                self.line.clear();
                a.write_json_line(&mut self.line);
                self.line.push(b'\n');
                self.out.write_all(&self.line)
            }
            Format::Text => writeln!(self.out, "{}", row(a, self.id_width, self.style)),
        };
        if let Err(e) = written {
            self.failed = Some(e);
        }
    }

    /// One roll-up: what a window held back after its alert.
    pub fn rollup(&mut self, r: &Rollup) {
        if self.failed.is_some() {
            return;
        }
        let written = match self.format {
            Format::Jsonl => writeln!(self.out, "{}", r.to_json()),
            Format::Text => writeln!(
                self.out,
                "{:<9} {}",
                if r.group { "GROUPED" } else { "ROLL-UP" },
                printable(&r.line())
            ),
        };
        if let Err(e) = written {
            self.failed = Some(e);
        }
    }

    /// One absence gap: a key that went missing (and maybe came back).
    pub fn gap(&mut self, g: &Gap) {
        if self.failed.is_some() {
            return;
        }
        let written = match self.format {
            Format::Jsonl => writeln!(self.out, "{}", g.to_json()),
            Format::Text => writeln!(
                self.out,
                "{:<9} {}",
                if g.resumed.is_some() {
                    "GAP"
                } else {
                    "MISSING"
                },
                printable(&g.line())
            ),
        };
        if let Err(e) = written {
            self.failed = Some(e);
        }
    }

    /// The first write error since the last call, if there was one.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.failed.take()
    }

    /// Ends the output: the summary in text format, and a flush.
    pub fn finish(mut self, summary: Option<&Summary>) -> io::Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if let (Format::Text, Some(summary)) = (self.format, summary) {
            writeln!(self.out, "{}", summary.line)?;
            for line in &summary.per_rule {
                writeln!(self.out, "{line}")?;
            }
        }
        self.out.flush()
    }
}

/// One alert as a text row: severity, rule, time, account/Region and summary, aligned. With a
/// width, the summary is cut with `…` to fit; a terminal too narrow for one line gets the
/// summary on a second, indented line. Nothing from the record reaches the terminal
/// unescaped (the alert's fields are printable already).
pub fn row(a: &Alert, id_width: usize, style: Style) -> String {
    let severity = a.severity.as_str().to_ascii_uppercase();
    let place = printable(&format!(
        "{}/{}",
        a.event.account.as_deref().unwrap_or("?"),
        a.event.region.as_deref().unwrap_or("?")
    ));
    let time = printable(a.event.event_time.as_deref().unwrap_or("-"));
    let head = format!("{:<id_width$}  {time:<20}  {place:<28}  ", a.rule_id);
    let painted = paint(&format!("{severity:<8}"), a.severity, style.colour);
    // A shadow rule's alert says so first: it would not be published.
    let summary = if a.shadow {
        format!("[shadow] {}", a.summary)
    } else {
        a.summary.clone()
    };
    let Some(width) = style.width else {
        return format!("{painted}  {head}{summary}");
    };
    // 10: the severity column and its gap.
    let room = width.saturating_sub(10 + head.chars().count());
    if room >= 24 {
        return format!("{painted}  {head}{}", cut(&summary, room));
    }
    let head = head.trim_end();
    format!(
        "{painted}  {}\n          {}",
        cut(head, width.saturating_sub(10)),
        cut(&summary, width.saturating_sub(10).max(20))
    )
}

/// The text cut to `width` characters, the last one `…` when anything was cut.
fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The severity word in its colour: critical bold red, high red, medium yellow, low cyan,
/// info dim.
fn paint(word: &str, severity: Severity, colour: bool) -> String {
    if !colour {
        return word.to_owned();
    }
    let code = match severity {
        Severity::Critical => "1;31",
        Severity::High => "31",
        Severity::Medium => "33",
        Severity::Low => "36",
        Severity::Info => "2",
    };
    format!("\x1b[{code}m{word}\x1b[0m")
}

/// What `scan` counted.
#[derive(Debug, Default)]
pub struct ScanCounts {
    /// Logs opened (read or failed).
    pub files: u64,
    /// Logs that could not be read to the end (or at all).
    pub failed: u64,
    /// The counts of the logs read to the end.
    pub total: ReadCounts,
    /// Alerts written.
    pub shown: u64,
    /// Alerts left out by `--since`/`--until`.
    pub outside_window: u64,
    /// Alerts written, per rule.
    pub per_rule: BTreeMap<String, u64>,
    /// Matches in the time window, per rule, before dedup, thresholds and suppressions.
    pub matched: BTreeMap<String, u64>,
    /// Matches held back by dedup or a threshold.
    pub held: u64,
    /// New alerts gathered into their group's notification (`group:`).
    pub grouped: u64,
    /// Matches a suppression silenced, in all and per suppression.
    pub suppressed: u64,
    pub suppressions: BTreeMap<String, u64>,
    /// Roll-ups written.
    pub rollups: u64,
    /// Matches of absence rules (heartbeats), gaps that ended, keys still missing.
    pub heartbeats: u64,
    pub gaps_resolved: u64,
    pub missing: u64,
    /// Matches of recovery rules (`resolves:`).
    pub resolutions: u64,
    /// Alerts of shadow rules written (marked, never published by the function).
    pub shadow: u64,
}

/// The summary: a line, and the alerts per rule.
#[derive(Debug)]
pub struct Summary {
    pub line: String,
    pub per_rule: Vec<String>,
}

/// `3 files (1 failed), 12 records (0 skipped), 8 alerts in 0.01s; 2 non-log files passed over`,
/// then a line per rule that alerted.
pub fn summary(counts: &ScanCounts, elapsed: Duration, passed_over: usize) -> Summary {
    let total = &counts.total;
    let files = counts.files;
    let mut s = format!("{files} file{}", plural(files));
    if counts.failed > 0 {
        s.push_str(&format!(" ({} failed)", counts.failed));
    }
    s.push_str(&format!(
        ", {} record{} ({} skipped), {} alert{}",
        total.records,
        plural(total.records),
        total.unreadable,
        counts.shown,
        plural(counts.shown),
    ));
    if total.duplicates > 0 {
        s.push_str(&format!(
            " ({} repeated event{} alerted once)",
            total.duplicates,
            plural(total.duplicates)
        ));
    }
    if counts.shadow > 0 {
        s.push_str(&format!(
            " ({} of them from shadow rules, which the function never publishes)",
            counts.shadow
        ));
    }
    if counts.held > 0 || counts.suppressed > 0 || counts.grouped > 0 {
        let matches = counts.held + counts.suppressed + counts.grouped + counts.shown;
        let grouped = if counts.grouped > 0 {
            format!(", {} gathered into group notifications", counts.grouped)
        } else {
            String::new()
        };
        s.push_str(&format!(
            " from {} match{} ({} held back by dedup or threshold{grouped}, {} suppressed; {} roll-up{})",
            matches,
            if matches == 1 { "" } else { "es" },
            counts.held,
            counts.suppressed,
            counts.rollups,
            plural(counts.rollups)
        ));
    }
    if counts.heartbeats > 0 || counts.missing > 0 {
        s.push_str(&format!(
            "; absence: {} heartbeat{}, {} missing, {} gap{} resolved",
            counts.heartbeats,
            plural(counts.heartbeats),
            counts.missing,
            counts.gaps_resolved,
            plural(counts.gaps_resolved)
        ));
    }
    if counts.resolutions > 0 {
        s.push_str(&format!(
            "; {} recover{}",
            counts.resolutions,
            if counts.resolutions == 1 { "y" } else { "ies" }
        ));
    }
    if counts.outside_window > 0 {
        s.push_str(&format!(
            " ({} more outside --since/--until)",
            counts.outside_window
        ));
    }
    s.push_str(&format!(" in {:.2}s", elapsed.as_secs_f64()));
    if passed_over > 0 {
        s.push_str(&format!(
            "; {passed_over} non-log file{} passed over",
            plural(passed_over as u64)
        ));
    }
    let width = counts.matched.keys().map(String::len).max().unwrap_or(0);
    let mut per_rule: Vec<String> = counts
        .matched
        .iter()
        .filter_map(|(rule, matched)| {
            let shown = counts.per_rule.get(rule).copied().unwrap_or(0);
            if shown == *matched {
                return (shown > 0).then(|| format!("  {rule:<width$}  {shown}"));
            }
            Some(format!("  {rule:<width$}  {shown} (of {matched} matches)"))
        })
        .collect();
    per_rule.extend(
        counts
            .suppressions
            .iter()
            .map(|(id, n)| format!("  suppressed by {id}: {n}")),
    );
    Summary { line: s, per_rule }
}

pub fn plural(n: u64) -> &'static str {
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
        let mut counts = ScanCounts {
            files: 2,
            failed: 1,
            total: ReadCounts {
                records: 1,
                alerts: 2,
                duplicates: 1,
                ..ReadCounts::default()
            },
            shown: 2,
            outside_window: 3,
            ..ScanCounts::default()
        };
        counts.per_rule.insert("backup-job-failed".into(), 2);
        counts.matched.insert("backup-job-failed".into(), 2);
        let s = summary(&counts, Duration::from_millis(1234), 2);
        assert_eq!(
            s.line,
            "2 files (1 failed), 1 record (0 skipped), 2 alerts (1 repeated event alerted once) \
             (3 more outside --since/--until) in 1.23s; 2 non-log files passed over"
        );
        assert_eq!(s.per_rule, ["  backup-job-failed  2"]);
        let s = summary(&ScanCounts::default(), Duration::ZERO, 0);
        assert_eq!(s.line, "0 files, 0 records (0 skipped), 0 alerts in 0.00s");
        assert!(s.per_rule.is_empty());
    }

    #[test]
    fn cutting_keeps_whole_characters() {
        assert_eq!(cut("abcdef", 6), "abcdef");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("ééééé", 3), "éé…");
    }
}
