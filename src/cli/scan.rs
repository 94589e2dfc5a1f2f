//! `scan`: every log named (files, directories, standard input) through the pipeline, alerts to
//! standard output, faults to standard error, and a summary.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::Instant;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;

use super::args::Format;
use super::output::{summary, AlertWriter};
use super::progress::Progress;
use super::{load_rules, CliError};
use crate::alert::{Alert, AlertSource};
use crate::config;
use crate::pipeline::{Mode, ObjectStats, Outcome, Pipeline};
use crate::reader::Limits;
use crate::rules::RuleSet;
use crate::walk::log_files;

/// One thing to read.
enum Target {
    Stdin,
    File(PathBuf),
}

impl Target {
    fn name(&self) -> String {
        match self {
            Target::Stdin => "-".to_owned(),
            Target::File(path) => path.display().to_string(),
        }
    }

    fn open(&self) -> io::Result<Box<dyn io::Read + Send>> {
        Ok(match self {
            Target::Stdin => Box::new(io::stdin()),
            Target::File(path) => Box::new(std::fs::File::open(path)?),
        })
    }
}

/// The logs the paths name: a directory gives the logs under it (the other files are counted
/// as passed over), a file is always read whatever its name, `-` is standard input. A directory
/// that cannot be walked is reported, and makes `all_read` false.
fn targets(paths: &[PathBuf], all_read: &mut bool) -> (Vec<Target>, u64) {
    let mut targets = Vec::new();
    let mut passed_over = 0;
    for path in paths {
        if path.as_os_str() == "-" {
            targets.push(Target::Stdin);
        } else if path.is_dir() {
            match log_files(path) {
                Ok((files, others)) => {
                    targets.extend(files.into_iter().map(Target::File));
                    passed_over += others;
                }
                Err(e) => {
                    eprintln!("trail-alerts: {}: {e}", path.display());
                    *all_read = false;
                }
            }
        } else {
            targets.push(Target::File(path.to_path_buf()));
        }
    }
    (targets, passed_over)
}

/// Returns `Ok(true)` when everything was read.
pub fn run(rule_sources: &[String], format: Format, paths: &[PathBuf]) -> Result<bool, CliError> {
    let started = Instant::now();
    let rules = load_rules(rule_sources)?;
    let limits = config::limits(|k| std::env::var(k).ok())?;
    let mut all_read = true;
    let (targets, passed_over) = targets(paths, &mut all_read);

    let id_width = rules.rules().iter().map(|r| r.id.len()).max().unwrap_or(0);
    let mut report = Report {
        out: AlertWriter::new(format, id_width),
        progress: Progress::new(io::stderr().is_terminal()),
        total: ObjectStats::default(),
        files: 0,
        all_read,
    };
    let parallel = targets.len() > 1 && workers() > 1;
    let finished = match parallel.then(|| scan_in_parallel(&rules, limits, &targets, &mut report)) {
        Some(Ok(true)) => Ok(()),
        Some(Err(e)) => Err(e),
        // One target, one core, or no thread to be had: in turn.
        None | Some(Ok(false)) => scan_in_turn(&rules, limits, &targets, &mut report),
    };
    let Report {
        out,
        mut progress,
        total,
        files,
        all_read,
    } = report;
    if let Err(e) = finished {
        progress.clear();
        return broken_pipe_or(e, all_read);
    }
    progress.clear();
    let summary = summary(files, &total, started.elapsed(), passed_over);
    if let Err(e) = out.finish(&summary) {
        return broken_pipe_or(e, all_read);
    }
    if format == Format::Jsonl && io::stderr().is_terminal() {
        eprintln!("{summary}");
    }
    Ok(all_read)
}

/// How many logs are read at once: one per core.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// What `scan` has written and counted so far.
struct Report {
    out: AlertWriter,
    progress: Progress,
    total: ObjectStats,
    files: u64,
    all_read: bool,
}

impl Report {
    /// Reports one target's end: what could not be read goes to standard error, the counts to
    /// the total. `Err` when writing the alerts failed (the scan stops).
    fn file_done(&mut self, name: &str, outcome: io::Result<Outcome>) -> io::Result<()> {
        if let Some(e) = self.out.take_error() {
            return Err(e);
        }
        self.files += 1;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                self.all_read = false;
                self.progress.clear();
                eprintln!("trail-alerts: {name}: {e}");
                return Ok(());
            }
        };
        if !outcome.unreadable.is_empty() || outcome.fault.is_some() {
            self.all_read = false;
            self.progress.clear();
        }
        for e in &outcome.unreadable {
            eprintln!("trail-alerts: {name}: {e}");
        }
        match &outcome.fault {
            // The counts of a log that could not be read to the end are left out of the total.
            Some(fault) => eprintln!("trail-alerts: {name}: {fault}"),
            None => self.total += outcome.stats,
        }
        self.progress.tick(self.files, &self.total);
        Ok(())
    }
}

/// One target at a time, alerts written as they are raised, gzip inflated on a thread of its
/// own: for one large log, or standard input.
fn scan_in_turn(
    rules: &RuleSet,
    limits: Limits,
    targets: &[Target],
    report: &mut Report,
) -> io::Result<()> {
    let mut pipeline = Pipeline::new(rules, limits);
    for target in targets {
        let name = target.name();
        let source = AlertSource::File { path: name.clone() };
        let out = &mut report.out;
        let outcome = target
            .open()
            .map(|input| pipeline.run(input, &source, Mode::Threaded, |a| out.alert(&a)));
        report.file_done(&name, outcome)?;
    }
    Ok(())
}

/// What one target gave, handed to the writing thread.
struct FileDone {
    name: String,
    alerts: Vec<Alert>,
    outcome: io::Result<Outcome>,
}

/// Many targets at once, one per core, each read on its worker's thread; what each gives is
/// written in target order, so that the output is the same as reading them in turn.
/// `Ok(false)`: not one thread could be started, and nothing was read.
fn scan_in_parallel(
    rules: &RuleSet,
    limits: Limits,
    targets: &[Target],
    report: &mut Report,
) -> io::Result<bool> {
    let workers = workers().min(targets.len());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Bounded: workers wait rather than run far ahead of a slow target.
        let (done_tx, done) = sync_channel::<(usize, FileDone)>(workers * 2);
        for w in 0..workers {
            let done_tx = done_tx.clone();
            let (next, stop) = (&next, &stop);
            let spawned = std::thread::Builder::new()
                .name(format!("trail-alerts-scan-{w}"))
                .spawn_scoped(scope, move || {
                    let mut pipeline = Pipeline::new(rules, limits);
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(target) = targets.get(i) else { break };
                        let name = target.name();
                        let source = AlertSource::File { path: name.clone() };
                        let mut alerts = Vec::new();
                        let outcome = target.open().map(|input| {
                            pipeline.run(input, &source, Mode::Inline, |a| alerts.push(a))
                        });
                        let done = FileDone {
                            name,
                            alerts,
                            outcome,
                        };
                        if done_tx.send((i, done)).is_err() {
                            break;
                        }
                    }
                });
            if spawned.is_err() {
                if w == 0 {
                    return Ok(false);
                }
                // Fewer threads than asked for: those that started do the work.
                break;
            }
        }
        drop(done_tx);
        let mut waiting = BTreeMap::new();
        let mut expected = 0;
        for (i, file) in done {
            waiting.insert(i, file);
            while let Some(file) = waiting.remove(&expected) {
                expected += 1;
                for a in &file.alerts {
                    report.out.alert(a);
                }
                if let Err(e) = report.file_done(&file.name, file.outcome) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(true)
    })
}

/// A closed pipe (`| head`) is not an error worth a message; any other write error is.
fn broken_pipe_or(e: io::Error, all_read: bool) -> Result<bool, CliError> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(all_read)
    } else {
        Err(CliError::Output(e))
    }
}
