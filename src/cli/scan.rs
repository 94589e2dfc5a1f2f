//! `scan`: every log named (files, directories, standard input) through the pipeline, alerts to
//! standard output, faults to standard error, and a summary.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::Instant;

use super::args::Format;
use super::output::{summary, AlertWriter};
use super::progress::Progress;
use super::{load_rules, CliError};
use crate::alert::AlertSource;
use crate::config;
use crate::pipeline::{Mode, ObjectStats, Pipeline};
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
    let mut out = AlertWriter::new(format, id_width);
    let mut progress = Progress::new(io::stderr().is_terminal());
    let mut total = ObjectStats::default();
    let mut files = 0u64;
    let mut pipeline = Pipeline::new(&rules, limits);

    for target in &targets {
        let name = target.name();
        let source = AlertSource::File { path: name.clone() };
        let outcome = target
            .open()
            .map(|input| pipeline.run(input, &source, Mode::Threaded, |a| out.alert(&a)));
        if let Some(e) = out.take_error() {
            progress.clear();
            return broken_pipe_or(e, all_read);
        }
        files += 1;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                all_read = false;
                progress.clear();
                eprintln!("trail-alerts: {name}: {e}");
                continue;
            }
        };
        if !outcome.unreadable.is_empty() || outcome.fault.is_some() {
            all_read = false;
            progress.clear();
        }
        for e in &outcome.unreadable {
            eprintln!("trail-alerts: {name}: {e}");
        }
        match &outcome.fault {
            // The counts of a log that could not be read to the end are left out of the total.
            Some(fault) => eprintln!("trail-alerts: {name}: {fault}"),
            None => total += outcome.stats,
        }
        progress.tick(files, &total);
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

/// A closed pipe (`| head`) is not an error worth a message; any other write error is.
fn broken_pipe_or(e: io::Error, all_read: bool) -> Result<bool, CliError> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(all_read)
    } else {
        Err(CliError::Output(e))
    }
}
