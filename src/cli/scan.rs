//! `scan`: every log named (files, directories, standard input) through the pipeline, alerts to
//! standard output, faults to standard error, and a summary.
//!
//! # Files
//! - `s3`: `scan s3://bucket/[prefix]`, along CloudTrail's key layout.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::Instant;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;

use super::args::{Format, ScanArgs};
use super::output::{plural, summary, AlertWriter, ScanCounts, Style};
use super::progress::Progress;
use super::{load_rules, CliError};
use crate::alert::{Alert, AlertSource};
use crate::config;
use crate::keys::log_name_parts;
use crate::pipeline::{Mode, Pipeline, ReadOutcome};
use crate::policy::{
    self,
    absence::{place_of, Audit, Progress as TrailProgress},
    local::{LocalPolicy, Verdict},
};
use crate::reader::{Limits, Shapes};
use crate::rules::{id_matches, Rule, RuleSet, Severity};
use crate::time;
use crate::walk::{each_log_file, Opener, PassedOver};
use std::collections::HashMap;
use std::sync::Arc;

#[cfg(feature = "s3")]
mod s3;

/// One thing to read.
#[derive(Clone)]
enum Target {
    Stdin,
    /// A file, with its size when the walk that found it knew it.
    File(PathBuf, Option<u64>),
}

impl Target {
    fn name(&self) -> String {
        match self {
            Target::Stdin => "-".to_owned(),
            Target::File(path, _) => path.display().to_string(),
        }
    }

    /// The target opened, with its length when it is a regular file's, as the walk found it
    /// or else asked of the file opened (a hint: the reader does not read a large log ahead to
    /// tell whether it is small).
    fn open(&self, opener: &mut Opener) -> io::Result<(Box<dyn io::Read + Send>, Option<u64>)> {
        Ok(match self {
            Target::Stdin => (Box::new(io::stdin()), None),
            Target::File(path, walked) => {
                let file = opener.open(path)?;
                let size = walked.or_else(|| {
                    file.metadata()
                        .ok()
                        .filter(|m| m.is_file())
                        .map(|m| m.len())
                });
                (Box::new(file), size)
            }
        })
    }
}

/// The logs the paths name, handed out as the walk finds them: a directory gives the logs under
/// it, in path order (the other files are passed over, each with its reason), a file is always
/// read whatever its name, `-` is standard input. The walk runs on a thread of its own, so that
/// reading starts with the first log found, not after the last (walking 5,000 files takes
/// about 10 ms). A directory that cannot be walked is reported, and makes the scan's exit
/// status 1; the logs found before it are read.
struct Walk {
    shared: Arc<Walked>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Whether [`Walk::tell`] has told.
    told: AtomicBool,
}

#[derive(Default)]
struct Walked {
    found: std::sync::Mutex<Found>,
    more: std::sync::Condvar,
}

#[derive(Default)]
struct Found {
    targets: Vec<Target>,
    passed_over: Vec<PassedOver>,
    faults: Vec<String>,
    done: bool,
    /// Readers waiting for the next target.
    waiting: usize,
}

/// Ends the walk however it ends, so that no reader waits for ever; a walk cut short
/// by a panic is a fault told as any other, not a folder that held fewer logs.
struct WalkEnds<'a>(&'a Walked);
impl Drop for WalkEnds<'_> {
    fn drop(&mut self) {
        let mut found = self.0.found();
        if std::thread::panicking() {
            found
                .faults
                .push("the search for logs stopped part-way (an internal error)".into());
        }
        found.done = true;
        self.0.more.notify_all();
    }
}

impl Walked {
    fn found(&self) -> std::sync::MutexGuard<'_, Found> {
        // The walk cannot leave the lists half-changed: whatever a panic left is still whole.
        self.found.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, change: impl FnOnce(&mut Found)) {
        let mut found = self.found();
        change(&mut found);
        if found.waiting > 0 {
            self.more.notify_all();
        }
    }

    fn walk(&self, paths: &[PathBuf]) {
        let _done = WalkEnds(self);
        for path in paths {
            if path.as_os_str() == "-" {
                self.add(|f| f.targets.push(Target::Stdin));
            } else if path.is_dir() {
                let walked = each_log_file(path, |file| match file {
                    Ok((log, len)) => self.add(|f| f.targets.push(Target::File(log, len))),
                    Err(passed) => self.add(|f| f.passed_over.push(passed)),
                });
                if let Err(e) = walked {
                    self.add(|f| f.faults.push(format!("{}: {e}", path.display())));
                }
            } else {
                self.add(|f| f.targets.push(Target::File(path.to_path_buf(), None)));
            }
        }
    }
}

impl Walk {
    /// Starts walking `paths`: on a thread of its own when `apart` (and one can be had), else
    /// here and now (a single file needs no walk).
    fn start(paths: Vec<PathBuf>, apart: bool) -> Self {
        let shared = Arc::new(Walked::default());
        let walker = Arc::clone(&shared);
        let here = paths.clone();
        let thread = apart.then(|| {
            std::thread::Builder::new()
                .name("trail-alerts-walk".into())
                .spawn(move || walker.walk(&paths))
        });
        let thread = match thread {
            Some(Ok(thread)) => Some(thread),
            _ => {
                shared.walk(&here);
                None
            }
        };
        Walk {
            shared,
            thread,
            told: AtomicBool::new(false),
        }
    }

    /// The `i`-th target, once the walk has found it; `None` past the last.
    fn get(&self, i: usize) -> Option<Target> {
        let mut found = self.shared.found();
        loop {
            if let Some(target) = found.targets.get(i) {
                return Some(target.clone());
            }
            if found.done {
                return None;
            }
            found.waiting += 1;
            found = self
                .shared
                .more
                .wait(found)
                .unwrap_or_else(|e| e.into_inner());
            found.waiting -= 1;
        }
    }

    /// Waits for the walk to end.
    fn finish(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A walk that panicked has ended too, with its fault (`WalkEnds`); what it found
            // before stands.
            let _ = thread.join();
        }
    }

    /// Once the walk has ended, and only once: the faults it met (to standard error; the scan
    /// has then not read everything) and, with `verbose`, the files it passed over.
    fn tell(&self, verbose: bool, report: &mut ScanOutput<'_>) {
        if self.told.load(Ordering::Relaxed) {
            return;
        }
        let found = self.shared.found();
        if !found.done {
            return;
        }
        if !found.faults.is_empty() || verbose && !found.passed_over.is_empty() {
            report.progress.clear();
        }
        for fault in &found.faults {
            eprintln!("trail-alerts: {fault}");
            report.all_read = false;
        }
        if verbose {
            say_passed_over(&found.passed_over);
        }
        self.told.store(true, Ordering::Relaxed);
    }

    /// Everything the walk found, once it has ended.
    fn into_found(mut self) -> (Vec<Target>, Vec<PassedOver>) {
        self.finish();
        let mut found = self.shared.found();
        (
            std::mem::take(&mut found.targets),
            std::mem::take(&mut found.passed_over),
        )
    }
}

/// The rules `--rule`, `--exclude` and `--min-severity` leave in force. A `--rule` or
/// `--exclude` that names no rule is a mistake worth stopping for (a typo would otherwise
/// silently scan with no rule at all).
fn select(rules: RuleSet, args: &ScanArgs) -> Result<RuleSet, CliError> {
    for pattern in args.only.iter().chain(&args.exclude) {
        if !rules.rules().iter().any(|r| id_matches(pattern, &r.id)) {
            return Err(CliError::Usage(format!(
                "no rule matches {pattern:?} (see `trail-alerts rules list`)"
            )));
        }
    }
    if args.only.is_empty() && args.exclude.is_empty() && args.min_severity.is_none() {
        return Ok(rules);
    }
    let min = args.min_severity.map(Severity::from);
    let kept: Vec<Rule> = rules
        .rules()
        .iter()
        .filter(|r| args.only.is_empty() || args.only.iter().any(|p| id_matches(p, &r.id)))
        .filter(|r| !args.exclude.iter().any(|p| id_matches(p, &r.id)))
        .filter(|r| min.is_none_or(|min| r.severity >= min))
        .cloned()
        .collect();
    // The rule files' suppressions and accounts stay with the rules kept.
    Ok(RuleSet::new(kept)?
        .with_suppressions(rules.suppressions().to_vec())?
        .with_accounts(rules.accounts().clone())
        .with_routes(rules.routes().to_vec()))
}

/// `--since`/`--until`: a timestamp, a date, or a duration before now.
fn time_bound(flag: &str, value: Option<&str>) -> Result<Option<i64>, CliError> {
    let Some(value) = value else { return Ok(None) };
    if let Some(t) = time::parse_timestamp(value) {
        return Ok(Some(t));
    }
    if let Some(ago) = time::parse_duration(value) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        return Ok(Some(now - ago as i64));
    }
    Err(CliError::Usage(format!(
        "{flag} {value:?}: expected a time (2024-01-10T08:00:00Z), a date (2024-01-10) or a \
         duration before now (90m, 2h, 7d)"
    )))
}

/// Returns `Ok(true)` when everything was read.
pub fn run(args: &ScanArgs) -> Result<bool, CliError> {
    let started = Instant::now();
    let rules = Arc::new(select(load_rules(&args.rules)?, args)?);
    let window = Window {
        since: time_bound("--since", args.since.as_deref())?,
        until: time_bound("--until", args.until.as_deref())?,
    };
    let limits = config::limits(|k| std::env::var(k).ok())?;
    let (urls, local): (Vec<&PathBuf>, Vec<&PathBuf>) = args
        .paths
        .iter()
        .partition(|p| p.to_str().is_some_and(|p| p.starts_with("s3://")));
    let urls = s3_urls(&urls, args)?;
    let local: Vec<PathBuf> = local.into_iter().cloned().collect();
    // Many targets may be found: a directory, or more than one path.
    let many = local.len() > 1 || local.iter().any(|p| p.is_dir());
    let parallel = many && workers() > 1;
    let mut walk = Walk::start(local, parallel);

    let id_width = rules.rules().iter().map(|r| r.id.len()).max().unwrap_or(0);
    let style = text_style(args.wide);
    let mut report = ScanOutput {
        out: AlertWriter::new(args.format, id_width, style),
        progress: Progress::new(!args.quiet && io::stderr().is_terminal()),
        window,
        counts: ScanCounts::default(),
        all_read: true,
        policy: (!args.no_dedup)
            .then(|| LocalPolicy::new(rules.as_ref(), rules.suppressions(), policy::now())),
        rules: rules.rules().iter().map(|r| (r.id.as_str(), r)).collect(),
        accounts: rules.accounts(),
        audit: Audit::default(),
        trail: TrailProgress::default(),
    };
    let verbose = args.verbose;
    let mut finished =
        match parallel.then(|| scan_in_parallel(&rules, limits, &walk, verbose, &mut report)) {
            Some(Ok(true)) => Ok(()),
            Some(Err(e)) => Err(e),
            // One target, one core, or no thread to be had: in turn.
            // The walk ends first, and what it met is told before any log is read.
            None | Some(Ok(false)) => {
                walk.finish();
                walk.tell(verbose, &mut report);
                let targets: Vec<Target> = (0..).map_while(|i| walk.get(i)).collect();
                scan_in_turn(&rules, limits, &targets, &mut report)
            }
        };
    walk.tell(verbose, &mut report);
    let (targets, mut passed_over) = walk.into_found();
    let mut logs_found = targets.len();
    if finished.is_ok() && !urls.is_empty() {
        match scan_s3(&urls, args, &window, &rules, limits, &mut report) {
            Ok((logs, s3_passed_over, list_calls)) => {
                logs_found += logs;
                if args.verbose {
                    eprintln!(
                        "trail-alerts: listed {} log{} in {list_calls} ListObjectsV2 call{}",
                        logs,
                        plural(logs as u64),
                        plural(list_calls)
                    );
                    say_passed_over(&s3_passed_over);
                }
                passed_over.extend(s3_passed_over);
            }
            Err(e) => finished = Err(e),
        }
    }
    let ScanOutput {
        mut out,
        mut progress,
        mut counts,
        mut all_read,
        policy,
        audit,
        trail,
        ..
    } = report;
    progress.clear();
    if let Err(e) = finished {
        return broken_pipe_or(e, all_read);
    }
    // At the end of a scan every window counts as closed: what each held back is told.
    for rollup in policy.map(|e| e.rollups()).unwrap_or_default() {
        counts.rollups += 1;
        out.rollup(&rollup);
    }
    // Absence: the end of the scanned range is the watermark of each account and Region.
    for gap in audit.gaps(rules.rules(), &trail) {
        if gap.resumed.is_some() {
            counts.gaps_resolved += 1;
        } else {
            counts.missing += 1;
        }
        out.gap(&gap);
    }
    let summary = (!args.quiet).then(|| summary(&counts, started.elapsed(), passed_over.len()));
    if let Err(e) = out.finish(summary.as_ref()) {
        return broken_pipe_or(e, all_read);
    }
    if let Some(summary) = &summary {
        if args.format == Format::Jsonl && io::stderr().is_terminal() {
            eprintln!("{}", summary.line);
        }
    }
    if logs_found == 0 {
        // Nothing read is never a quiet success: say what was passed over.
        all_read = false;
        let named: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        if passed_over.is_empty() {
            eprintln!("trail-alerts: no files to read in {}", named.join(", "));
        } else {
            eprintln!(
                "trail-alerts: no CloudTrail log read: {} file{} passed over ({}){}",
                passed_over.len(),
                plural(passed_over.len() as u64),
                reasons(&passed_over),
                if args.verbose {
                    ""
                } else {
                    "; --verbose lists them"
                }
            );
        }
    }
    Ok(all_read)
}

/// With `--verbose`: each file passed over, and why, to standard error.
fn say_passed_over(passed_over: &[PassedOver]) {
    for p in passed_over {
        eprintln!("trail-alerts: passed over {}: {}", p.path.display(), p.why);
    }
}

/// `3 empty, 1 a CloudTrail digest file`: the reasons files were passed over, most common first.
fn reasons(passed_over: &[PassedOver]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for p in passed_over {
        *counts.entry(p.why.to_string()).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
        .iter()
        .map(|(why, n)| format!("{n} {why}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How text rows look: fitted to `COLUMNS` when it is set (else to the terminal's width, on a
/// terminal), not at all with `--wide` or into a pipe; severity in colour on a terminal (or
/// with `CLICOLOR_FORCE`), never with `NO_COLOR` (<https://no-color.org>).
fn text_style(wide: bool) -> Style {
    let terminal = io::stdout().is_terminal();
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok());
    Style {
        width: match (wide, columns) {
            (true, _) => None,
            (false, Some(cols)) => Some(cols),
            (false, None) if terminal => terminal_columns(),
            (false, None) => None,
        },
        colour: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && (terminal || set("CLICOLOR_FORCE")),
    }
}

#[cfg(unix)]
fn terminal_columns() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills a `winsize` and touches nothing else; a failure leaves it zero.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(not(unix))]
fn terminal_columns() -> Option<usize> {
    None
}

/// How many logs are read at once: one per core.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `--since`/`--until` as Unix seconds.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    since: Option<i64>,
    until: Option<i64>,
}

impl Window {
    /// Whether an alert's event falls in the window. An event whose time cannot be read is
    /// kept: a missing eventTime is no reason to miss an alert.
    fn holds(&self, alert: &Alert) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Some(t) = alert
            .event
            .event_time
            .as_deref()
            .and_then(time::parse_timestamp)
        else {
            return true;
        };
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

/// The pipeline of a scan: it reads the records' eventTime only for absence rules (the
/// trail's progress), which is all `scan` uses it for.
fn pipeline_for(rules: &RuleSet, limits: Limits) -> Pipeline<'_> {
    let pipeline = Pipeline::new(rules, limits).with_shapes(Shapes::Any);
    if rules
        .rules()
        .iter()
        .any(|r| r.enabled && r.absence.is_some())
    {
        pipeline
    } else {
        pipeline.without_event_times()
    }
}

/// One more for `id`, whose entry is made (its id copied) only the first time.
fn count(counts: &mut std::collections::BTreeMap<String, u64>, id: &str) {
    match counts.get_mut(id) {
        Some(n) => *n += 1,
        None => {
            counts.insert(id.to_owned(), 1);
        }
    }
}

/// What `scan` has written and counted so far.
struct ScanOutput<'r> {
    out: AlertWriter,
    progress: Progress,
    window: Window,
    counts: ScanCounts,
    all_read: bool,
    /// Dedup, thresholds and suppressions, in memory (`None` with `--no-dedup`).
    policy: Option<LocalPolicy<'r>>,
    rules: HashMap<&'r str, &'r Rule>,
    /// The rule files' `accounts:`.
    accounts: &'r std::collections::BTreeMap<String, crate::alert::context::AccountInfo>,
    /// Absence rules' heartbeats, and how far the trail got per account and Region.
    audit: Audit,
    trail: TrailProgress,
}

impl ScanOutput<'_> {
    /// Writes an alert, unless `--since`/`--until` leave it out, or dedup, a threshold or a
    /// suppression holds it back (each counted).
    fn alert(&mut self, a: &Alert) {
        if !self.window.holds(a) {
            self.counts.outside_window += 1;
            return;
        }
        if let Some(t) = policy::event_time(&a.record) {
            let (account, region) = place_of(&a.record);
            self.trail.see(&account, &region, t);
        }
        if let Some((rule, absence)) = self
            .rules
            .get(a.rule_id.as_str())
            .and_then(|r| r.absence.as_ref().map(|abs| (*r, abs)))
        {
            // An absence rule's match is a heartbeat, not an alert.
            self.audit.heartbeat(rule, absence, &a.record);
            self.counts.heartbeats += 1;
            return;
        }
        if self
            .rules
            .get(a.rule_id.as_str())
            .is_some_and(|r| !r.resolves.is_empty())
        {
            // A recovery rule's match resolves other alerts; it is no alert itself.
            self.counts.resolutions += 1;
            return;
        }
        count(&mut self.counts.matched, &a.rule_id);
        if let Some(policy) = &mut self.policy {
            match policy.judge(a) {
                Verdict::Alert => {}
                Verdict::Held => {
                    self.counts.held += 1;
                    return;
                }
                Verdict::Grouped => {
                    self.counts.grouped += 1;
                    return;
                }
                Verdict::Suppressed(id) => {
                    self.counts.suppressed += 1;
                    *self.counts.suppressions.entry(id).or_default() += 1;
                    return;
                }
            }
        }
        self.counts.shown += 1;
        self.counts.shadow += u64::from(a.shadow);
        count(&mut self.counts.per_rule, &a.rule_id);
        // The rule files' `accounts:` name the account (the function adds AWS Organizations').
        match self.accounts.get(a.event.account.as_deref().unwrap_or("")) {
            Some(info) => self
                .out
                .alert(&a.clone().with_account(Some(info.clone()), None)),
            None => self.out.alert(a),
        }
    }

    /// Reports one target's end: what could not be read goes to standard error, the counts to
    /// the total. `Err` when writing the alerts failed (the scan stops).
    fn file_done(&mut self, name: &str, outcome: io::Result<ReadOutcome>) -> io::Result<()> {
        if let Some(e) = self.out.take_error() {
            return Err(e);
        }
        self.counts.files += 1;
        let outcome = match outcome {
            Ok(outcome) => {
                // The trail's progress: the newest eventTime read, for the account and Region
                // the log's name says (its delivery time when no record had one).
                if let Some((account, region, t)) = log_name_parts(name) {
                    let newest = outcome.stats.newest_event.unwrap_or(t);
                    self.trail.see(&account, &region, newest);
                }
                outcome
            }
            Err(e) => {
                self.all_read = false;
                self.counts.failed += 1;
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
            Some(fault) => {
                self.counts.failed += 1;
                eprintln!("trail-alerts: {name}: {fault}");
            }
            None => self.counts.total += outcome.stats,
        }
        self.progress.tick(self.counts.files, &self.counts.total);
        Ok(())
    }
}

/// The `s3://` paths as (bucket, prefix); `--account`, `--region` and `--concurrency` without
/// one are a mistake worth stopping for, as is an `s3://` path in a build without S3.
fn s3_urls(urls: &[&PathBuf], args: &ScanArgs) -> Result<Vec<(String, String)>, CliError> {
    if urls.is_empty() {
        if !args.accounts.is_empty() || !args.regions.is_empty() {
            return Err(CliError::Usage(
                "--account and --region narrow an s3:// scan; no s3:// path was given".into(),
            ));
        }
        return Ok(Vec::new());
    }
    if let Some(bad) = args.accounts.iter().find(|a| !crate::layout::is_account(a)) {
        return Err(CliError::Usage(format!(
            "--account {bad:?}: expected a 12-digit account id"
        )));
    }
    if args.concurrency == 0 {
        return Err(CliError::Usage(
            "--concurrency 0: expected 1 or more".into(),
        ));
    }
    #[cfg(feature = "s3")]
    {
        urls.iter()
            .map(|u| {
                let text = u.to_str().unwrap_or_default();
                s3::parse_url(text).ok_or_else(|| {
                    CliError::Usage(format!("{text:?}: expected s3://bucket/[prefix]"))
                })
            })
            .collect()
    }
    #[cfg(not(feature = "s3"))]
    {
        Err(CliError::Usage(format!(
            "{}: this build reads no S3 (it was built without the `s3` feature); \
             `make release` builds one that does",
            urls[0].display()
        )))
    }
}

/// Scans the `s3://` paths; returns the logs found, what was passed over, and the list calls.
#[cfg(feature = "s3")]
fn scan_s3(
    urls: &[(String, String)],
    args: &ScanArgs,
    window: &Window,
    rules: &Arc<RuleSet>,
    limits: Limits,
    report: &mut ScanOutput<'_>,
) -> io::Result<(usize, Vec<PassedOver>, u64)> {
    let now = policy::now();
    let narrowing = crate::layout::Narrowing {
        accounts: args.accounts.clone(),
        regions: args.regions.clone(),
        days: crate::layout::Narrowing::days_between(window.since, window.until, now),
    };
    let found = s3::scan(urls, &narrowing, args.concurrency, rules, limits, report)?;
    Ok((found.logs, found.passed_over, found.list_calls))
}

#[cfg(not(feature = "s3"))]
fn scan_s3(
    _: &[(String, String)],
    _: &ScanArgs,
    _: &Window,
    _: &Arc<RuleSet>,
    _: Limits,
    _: &mut ScanOutput<'_>,
) -> io::Result<(usize, Vec<PassedOver>, u64)> {
    Ok((0, Vec::new(), 0))
}

/// One target at a time, alerts written as they are raised, gzip inflated on a thread of its
/// own: for one large log, or standard input.
fn scan_in_turn(
    rules: &RuleSet,
    limits: Limits,
    targets: &[Target],
    report: &mut ScanOutput<'_>,
) -> io::Result<()> {
    let mut pipeline = pipeline_for(rules, limits);
    let mut opener = Opener::default();
    let mode = crate::pipeline::mode_for(workers());
    for target in targets {
        let name = target.name();
        let source = AlertSource::File { path: name.clone() };
        let outcome = read_target(&mut pipeline, &mut opener, target, &source, mode, |a| {
            report.alert(&a);
            crate::reader::recycle(a.record, None);
        });
        report.file_done(&name, outcome)?;
    }
    Ok(())
}

/// What one target gave, handed to the writing thread.
struct FileDone {
    name: String,
    alerts: Vec<Alert>,
    outcome: io::Result<ReadOutcome>,
    /// The worker that read it, when one did (see [`InOrder::spent`]).
    worker: Option<usize>,
}

/// Reads one target on this thread.
fn read_one(pipeline: &mut Pipeline<'_>, opener: &mut Opener, target: &Target) -> FileDone {
    let name = target.name();
    let source = AlertSource::File { path: name.clone() };
    let mut alerts = Vec::new();
    let outcome = read_target(pipeline, opener, target, &source, Mode::Inline, |a| {
        alerts.push(a)
    });
    FileDone {
        name,
        alerts,
        outcome,
        worker: None,
    }
}

/// Reads one target: a file of EventBridge events is matched as the function matches what
/// EventBridge delivers; anything else is a log for the pipeline (the head read to tell them
/// apart goes first).
fn read_target(
    pipeline: &mut Pipeline<'_>,
    opener: &mut Opener,
    target: &Target,
    source: &AlertSource,
    mode: Mode,
    mut on_alert: impl FnMut(Alert),
) -> io::Result<ReadOutcome> {
    use std::io::Read as _;
    let (mut input, size) = target.open(opener)?;
    // A `.gz` file is a log (a file of events is plain JSON): no look at its head first.
    if matches!(target, Target::File(path, _) if path.extension().is_some_and(|e| e == "gz")) {
        return Ok(pipeline.run_sized(input, size, source, mode, &mut on_alert));
    }
    let head = read_head(&mut input, 8 << 10)?;
    if crate::pipeline::events::looks_like_events(&head) {
        let mut bytes = head;
        input.read_to_end(&mut bytes)?;
        return Ok(crate::pipeline::events::run(
            pipeline.rules(),
            &bytes,
            source,
            on_alert,
        ));
    }
    // Boxed as the file is: one instance of the pipeline's reader, not two (a second one
    // changed what the compiler inlines in the splitter's loop, at 12% more instructions).
    let input: Box<dyn io::Read + Send> = Box::new(io::Read::chain(io::Cursor::new(head), input));
    Ok(pipeline.run_sized(input, size, source, mode, &mut on_alert))
}

/// Up to `n` first bytes of a stream (fewer at its end).
pub(super) fn read_head(input: &mut dyn io::Read, n: usize) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(n);
    input.take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Files done out of order, written in target order as the gaps fill.
struct InOrder<'a, 'r> {
    report: &'a mut ScanOutput<'r>,
    waiting: BTreeMap<usize, FileDone>,
    expected: usize,
    /// Per worker, where the alerts it raised go back once written, to be dropped on its
    /// thread: a record and its alerts are a few hundred allocations, and mimalloc frees
    /// another thread's memory through a slower path that the owning thread then collects
    /// (2 % of the samples of the 5,000-file folder on two cores).
    spent: Vec<std::sync::mpsc::Sender<Vec<Alert>>>,
}

impl InOrder<'_, '_> {
    fn done(&mut self, i: usize, file: FileDone) -> io::Result<()> {
        self.waiting.insert(i, file);
        while let Some(file) = self.waiting.remove(&self.expected) {
            self.expected += 1;
            let FileDone {
                name,
                alerts,
                outcome,
                worker,
            } = file;
            for a in &alerts {
                self.report.alert(a);
            }
            self.report.file_done(&name, outcome)?;
            // A worker that has stopped drops nothing more: then they are dropped here.
            if let Some(back) = worker.and_then(|w| self.spent.get(w)) {
                let _ = back.send(alerts);
            }
        }
        Ok(())
    }
}

/// Many targets at once, one per core: this thread and one worker per other core each take the
/// next target and read it on their own thread; what each gives is written in target order,
/// so that the output is the same as reading them in turn. This thread reads files too and
/// collects the workers' results between its own files without waiting for them, so that a
/// folder of small logs costs no thread wake-up per file. `Ok(false)`: fewer than two targets
/// were found, or not one worker could be started; nothing was read.
fn scan_in_parallel(
    rules: &RuleSet,
    limits: Limits,
    targets: &Walk,
    verbose: bool,
    report: &mut ScanOutput<'_>,
) -> io::Result<bool> {
    // A folder of one log is read in turn, with its inflating on a thread of its own: the
    // second log found (or the walk's end) says which.
    if targets.get(1).is_none() {
        return Ok(false);
    }
    let workers = workers() - 1;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Bounded: workers wait rather than run far ahead of a slow target (one this thread
        // reads, say), but far enough that small files seldom make them wait.
        let (done_tx, done) = sync_channel::<(usize, FileDone)>(workers * 32);
        let mut spent = Vec::new();
        for w in 0..workers {
            let done_tx = done_tx.clone();
            let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Vec<Alert>>();
            let (next, stop) = (&next, &stop);
            let spawned = std::thread::Builder::new()
                .name(format!("trail-alerts-scan-{w}"))
                .spawn_scoped(scope, move || {
                    let mut pipeline = pipeline_for(rules, limits);
                    let mut opener = Opener::default();
                    while !stop.load(Ordering::Relaxed) {
                        // The alerts written since, dropped where they were made.
                        spent_rx.try_iter().for_each(drop);
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(target) = targets.get(i) else { break };
                        let mut file = read_one(&mut pipeline, &mut opener, &target);
                        file.worker = Some(w);
                        if done_tx.send((i, file)).is_err() {
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
            spent.push(spent_tx);
        }
        drop(done_tx);
        let mut order = InOrder {
            report,
            waiting: BTreeMap::new(),
            expected: 0,
            spent,
        };
        let result = (|| {
            let mut pipeline = pipeline_for(rules, limits);
            let mut opener = Opener::default();
            loop {
                while let Ok((i, file)) = done.try_recv() {
                    order.done(i, file)?;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(target) = targets.get(i) else { break };
                let file = read_one(&mut pipeline, &mut opener, &target);
                order.done(i, file)?;
                // What the walk met, told once it has ended (a few milliseconds in).
                targets.tell(verbose, order.report);
            }
            for (i, file) in &done {
                order.done(i, file)?;
            }
            Ok(true)
        })();
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        result
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk hands out, to readers that ask while it walks, the logs `log_files` finds, in
    /// its order, and tells what it passed over once it has ended.
    #[test]
    fn the_walk_hands_out_what_log_files_finds_in_its_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let log =
            |name: &str| format!("123456789012_CloudTrail_us-east-1_20240101T0000Z_{name}.json");
        for d in 0..12 {
            let sub = dir.path().join(format!("d{d:02}")).join("deeper");
            std::fs::create_dir_all(&sub).expect("dir");
            for f in 0..25 {
                std::fs::write(sub.join(log(&format!("{f:02}"))), br#"{"Records":[]}"#)
                    .expect("write");
            }
            std::fs::write(sub.join("notes.txt"), b"# notes").expect("write");
        }
        let elsewhere = tempfile::tempdir().expect("tmp");
        let single = elsewhere.path().join("single.json");
        std::fs::write(&single, b"x").expect("write");
        let found = crate::walk::log_files(dir.path()).expect("walk");

        let walk = Walk::start(
            vec![dir.path().to_path_buf(), "-".into(), single.clone()],
            true,
        );
        // Two readers take the next index, as the scan's workers do, while the walk goes on.
        let next = AtomicUsize::new(0);
        let mut taken: Vec<(usize, String)> = std::thread::scope(|s| {
            let reader = || {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    match walk.get(i) {
                        Some(target) => mine.push((i, target.name())),
                        None => return mine,
                    }
                }
            };
            let other = s.spawn(reader);
            let mut all = reader();
            all.extend(other.join().expect("reader"));
            all
        });
        taken.sort();
        let mut want: Vec<String> = found.logs.iter().map(|p| p.display().to_string()).collect();
        want.push("-".into());
        want.push(single.display().to_string());
        assert_eq!(taken.len(), want.len());
        assert!(taken.iter().enumerate().all(|(n, (i, _))| n == *i));
        assert_eq!(
            taken.into_iter().map(|(_, name)| name).collect::<Vec<_>>(),
            want
        );
        assert_eq!(want.len(), 12 * 25 + 2);

        let (targets, passed_over) = walk.into_found();
        assert_eq!(targets.len(), want.len());
        assert_eq!(passed_over, found.passed_over);
        assert_eq!(passed_over.len(), 12);
    }

    /// A walk cut short by a panic ends (no reader waits for ever) with a fault, so that the
    /// scan says it did not read everything instead of reporting a smaller folder.
    #[test]
    fn a_walk_that_panics_ends_with_a_fault() {
        let walked = Walked::default();
        let panicked = std::thread::scope(|s| {
            s.spawn(|| {
                let _ends = WalkEnds(&walked);
                panic!("injected");
            })
            .join()
        });
        assert!(panicked.is_err());
        let found = walked.found();
        assert!(found.done);
        assert_eq!(
            found.faults,
            ["the search for logs stopped part-way (an internal error)"]
        );
        drop(found);
        // And a walk that ends as it should has none.
        drop(WalkEnds(&walked));
        assert_eq!(walked.found().faults.len(), 1);
    }
}
