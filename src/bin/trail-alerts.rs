//! `trail-alerts`: scan CloudTrail log files for alerts, and test or list rules.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use trail_alerts::alert::{Alert, AlertSource};
use trail_alerts::config;
use trail_alerts::rules::{RuleSet, RuleSource};
use trail_alerts::scan::{log_files, ObjectStats, Scanner};

#[derive(Parser)]
#[command(
    name = "trail-alerts",
    version,
    about = "Turn CloudTrail log files into alerts with EventBridge-pattern rules"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read CloudTrail log files and print the alerts the rules raise.
    Scan {
        /// Rule source: `builtin`, a rule file, or a directory of them (repeatable).
        #[arg(long = "rules", value_name = "SOURCE")]
        rules: Vec<String>,
        /// Output: `text` for people, `jsonl` (one JSON object per alert) for scripts.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Log files (gzip or JSON), directories (every CloudTrail log under them), or `-` for
        /// standard input.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Work with rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load and validate the rules and run every rule's embedded tests.
    Test {
        #[arg(long = "rules", value_name = "SOURCE")]
        rules: Vec<String>,
    },
    /// List the rules: id, severity, enabled, description.
    List {
        #[arg(long = "rules", value_name = "SOURCE")]
        rules: Vec<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Jsonl,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan {
            rules,
            format,
            paths,
        } => scan(&rules, format, &paths),
        Command::Rules {
            command: RulesCommand::Test { rules },
        } => rules_test(&rules),
        Command::Rules {
            command: RulesCommand::List { rules },
        } => rules_list(&rules),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("trail-alerts: {message}");
            ExitCode::from(1)
        }
    }
}

fn load_rules(sources: &[String]) -> Result<RuleSet, String> {
    let sources: Vec<RuleSource> = if sources.is_empty() {
        vec![RuleSource::Builtin]
    } else {
        sources.iter().map(|s| RuleSource::parse(s)).collect()
    };
    RuleSet::load(&sources).map_err(|e| e.to_string())
}

/// One thing to read.
enum Target {
    Stdin,
    File(PathBuf),
}

/// Returns Ok(true) when everything was read.
fn scan(rule_sources: &[String], format: Format, paths: &[PathBuf]) -> Result<bool, String> {
    let started = Instant::now();
    let rules = load_rules(rule_sources)?;
    let limits = config::limits(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    let mut all_read = true;

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
                    all_read = false;
                }
            }
        } else {
            // A file named on the command line is always read, whatever its name.
            targets.push(Target::File(path.clone()));
        }
    }

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let id_width = rules.rules().iter().map(|r| r.id.len()).max().unwrap_or(0);
    let mut progress = Progress::new(io::stderr().is_terminal());
    let mut total = ObjectStats::default();
    let mut files = 0u64;
    let mut write_failed: Option<io::Error> = None;
    let mut scanner = Scanner::new(&rules, limits);

    for target in &targets {
        let (name, input): (String, io::Result<Box<dyn io::Read + Send>>) = match target {
            Target::Stdin => ("-".to_owned(), Ok(Box::new(io::stdin()))),
            Target::File(path) => (
                path.display().to_string(),
                std::fs::File::open(path).map(|f| Box::new(f) as Box<dyn io::Read + Send>),
            ),
        };
        let source = AlertSource::File { path: name.clone() };
        let result = match input {
            Ok(input) => run_one(
                &mut scanner,
                input,
                &source,
                format,
                id_width,
                &mut out,
                &mut write_failed,
            ),
            Err(e) => Err(e.to_string()),
        };
        if let Some(e) = write_failed.take() {
            progress.clear();
            // A closed pipe (`| head`) is not an error worth a message.
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(all_read);
            }
            return Err(format!("writing the output: {e}"));
        }
        files += 1;
        match result {
            Ok((stats, skipped)) => {
                total.records += stats.records;
                total.skipped += stats.skipped;
                total.alerts += stats.alerts;
                total.duplicates += stats.duplicates;
                total.bytes += stats.bytes;
                if !skipped.is_empty() {
                    all_read = false;
                    progress.clear();
                    for e in skipped {
                        eprintln!("trail-alerts: {name}: {e}");
                    }
                }
            }
            Err(e) => {
                all_read = false;
                progress.clear();
                eprintln!("trail-alerts: {name}: {e}");
            }
        }
        progress.tick(files, &total);
    }
    progress.clear();
    let elapsed = started.elapsed();
    let summary = format!(
        "{files} file{}, {} record{} ({} skipped), {} alert{}{} in {:.2}s{}",
        plural(files),
        total.records,
        plural(total.records),
        total.skipped,
        total.alerts,
        plural(total.alerts),
        if total.duplicates > 0 {
            format!(
                " ({} repeated event{} alerted once)",
                total.duplicates,
                plural(total.duplicates)
            )
        } else {
            String::new()
        },
        elapsed.as_secs_f64(),
        if passed_over > 0 {
            format!(
                "; {passed_over} non-log file{} passed over",
                plural(passed_over)
            )
        } else {
            String::new()
        }
    );
    let written = match format {
        Format::Text => writeln!(out, "{summary}").and_then(|()| out.flush()),
        Format::Jsonl => out.flush(),
    };
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            return Err(format!("writing the output: {e}"))
        }
        _ => {}
    }
    if format == Format::Jsonl && io::stderr().is_terminal() {
        eprintln!("{summary}");
    }
    Ok(all_read)
}

type ScanOutcome = Result<(ObjectStats, Vec<String>), String>;

fn run_one<R: io::Read + Send + 'static>(
    scanner: &mut Scanner<'_>,
    input: R,
    source: &AlertSource,
    format: Format,
    id_width: usize,
    out: &mut impl Write,
    write_failed: &mut Option<io::Error>,
) -> ScanOutcome {
    let mut skipped = Vec::new();
    let stats = scanner
        .scan_owned(
            input,
            source,
            |alert| {
                if write_failed.is_none() {
                    if let Err(e) = print_alert(out, &alert, format, id_width) {
                        *write_failed = Some(e);
                    }
                }
            },
            |e| skipped.push(e.to_string()),
        )
        .map_err(|e| e.to_string())?;
    Ok((stats, skipped))
}

fn print_alert(out: &mut impl Write, a: &Alert, format: Format, id_width: usize) -> io::Result<()> {
    match format {
        Format::Jsonl => writeln!(out, "{}", a.json_line()),
        Format::Text => writeln!(
            out,
            "{:<8}  {:<id_width$}  {:<20}  {:<28}  {}",
            a.severity.as_str().to_ascii_uppercase(),
            a.rule_id,
            a.event.event_time.as_deref().unwrap_or("-"),
            format!(
                "{}/{}",
                a.event.account.as_deref().unwrap_or("?"),
                a.event.region.as_deref().unwrap_or("?")
            ),
            a.summary
        ),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A one-line progress indicator on standard error, only when it is a terminal.
struct Progress {
    enabled: bool,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            last: Instant::now(),
            shown: false,
        }
    }

    fn tick(&mut self, files: u64, total: &ObjectStats) {
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

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }
}

fn rules_test(sources: &[String]) -> Result<bool, String> {
    let rules = load_rules(sources)?;
    let outcomes = rules.run_tests();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0;
    for o in &outcomes {
        let verdict = if o.passed() { "ok  " } else { "FAIL" };
        let detail = if o.passed() {
            String::new()
        } else if o.test.expect {
            " (expected the rule to fire; it did not)".into()
        } else {
            " (expected the rule to stay quiet; it fired)".into()
        };
        if !o.passed() {
            failed += 1;
        }
        writeln!(out, "{verdict}  {}: {}{detail}", o.rule.id, o.test.name)
            .map_err(|e| e.to_string())?;
    }
    let untested = rules.rules().iter().filter(|r| r.tests.is_empty()).count();
    writeln!(
        out,
        "{} rules, {} tests: {} passed, {failed} failed{}",
        rules.rules().len(),
        outcomes.len(),
        outcomes.len() - failed,
        if untested > 0 {
            format!(" ({untested} rules have no tests)")
        } else {
            String::new()
        }
    )
    .map_err(|e| e.to_string())?;
    Ok(failed == 0)
}

fn rules_list(sources: &[String]) -> Result<bool, String> {
    let rules = load_rules(sources)?;
    let width = rules
        .rules()
        .iter()
        .map(|r| r.id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut lines = vec![format!(
        "{:<width$}  {:<8}  {:<7}  DESCRIPTION",
        "ID", "SEVERITY", "ENABLED"
    )];
    for r in rules.rules() {
        lines.push(format!(
            "{:<width$}  {:<8}  {:<7}  {}",
            r.id,
            r.severity.as_str(),
            if r.enabled { "yes" } else { "no" },
            r.description
        ));
    }
    for line in lines {
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(true)
}
