//! From a CloudTrail log stream to the alerts its records raise: the pipeline the command line
//! runs per file and the Lambda function runs per S3 object.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::alert::{Alert, AlertSource};
use crate::engine::Scratch;
use crate::keys::classify;
use crate::reader::{Item, Limits, LogReader, ReadError, RecordError};
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
    pub fn scan<R: Read>(
        &mut self,
        input: R,
        source: &AlertSource,
        mut on_alert: impl FnMut(Alert),
        mut on_skip: impl FnMut(&RecordError),
    ) -> Result<ObjectStats, ReadError> {
        let mut stats = ObjectStats::default();
        let mut reader = LogReader::new(input, self.limits)?;
        while let Some(item) = reader.next_item()? {
            match item {
                Item::Record { index, record, .. } => {
                    stats.records += 1;
                    let rules = self.rules;
                    rules.matching(&record, &mut self.scratch, |rule| {
                        stats.alerts += 1;
                        on_alert(Alert::new(rule, &record, source.clone(), index));
                    });
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
