//! `explain`: for each rule, whether it matches a record, and why or why not.

use std::io::{self, Read, Write};
use std::path::Path;

use super::{load_rules, CliError};
use crate::alert::printable;
use crate::pattern::{Event, Explanation};
use crate::reader::{Limits, LogReader, Parsed, Shapes};
use crate::rules::{describe_fields, id_matches};

/// Explains every rule (or those `only` names) against every record in the file: one line per
/// rule and record. `Ok(false)` when the file or a record could not be read.
pub fn run(sources: &[String], only: &[String], path: &Path) -> Result<bool, CliError> {
    let rules = load_rules(sources)?;
    for pattern in only {
        if !rules.rules().iter().any(|r| id_matches(pattern, &r.id)) {
            return Err(CliError::Usage(format!(
                "no rule matches {pattern:?} (see `trail-alerts rules list`)"
            )));
        }
    }
    let name = path.display().to_string();
    let mut input: Box<dyn Read + Send> = if name == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| CliError::Input(format!("{name}: {e}")))?)
    };
    let width = rules.rules().iter().map(|r| r.id.len()).max().unwrap_or(0);
    let head = super::scan::read_head(&mut input, 8 << 10)
        .map_err(|e| CliError::Input(format!("{name}: {e}")))?;
    if crate::pipeline::events::looks_like_events(&head) {
        let mut bytes = head;
        input
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::Input(format!("{name}: {e}")))?;
        return explain_events(&rules, only, &name, &bytes, width);
    }
    let input: Box<dyn Read + Send> = Box::new(io::Cursor::new(head).chain(input));
    let reader = LogReader::new_shapes(input, Limits::default(), Shapes::Any, None)
        .map_err(|e| CliError::Input(format!("{name}: {e}")))?;
    let mut out = io::stdout().lock();
    let mut all_read = true;
    let mut records = 0;
    for item in reader {
        let (index, record) = match item {
            Ok(Parsed::Record { index, record, .. }) => (index, record),
            Ok(Parsed::Unreadable(e)) => {
                eprintln!("trail-alerts: {name}: {e}");
                all_read = false;
                continue;
            }
            Err(e) => {
                eprintln!("trail-alerts: {name}: {e}");
                all_read = false;
                break;
            }
        };
        records += 1;
        let event_name = record
            .get("eventName")
            .and_then(|v| v.as_str())
            .unwrap_or("-");
        writeln!(out, "record {index} ({}):", printable(event_name))?;
        let event = Event::record(&record);
        each_rule(&mut out, &rules, only, width, |p| p.explain(&event))?;
    }
    if records == 0 && all_read {
        eprintln!("trail-alerts: {name}: no record to explain");
        all_read = false;
    }
    Ok(all_read)
}

/// `explain` over a file of EventBridge events: each rule against each event, as the function
/// matches what EventBridge delivers (a CloudTrail event by its record, a service's own event
/// by the rules written in the envelope form).
fn explain_events(
    rules: &crate::rules::RuleSet,
    only: &[String],
    name: &str,
    bytes: &[u8],
    width: usize,
) -> Result<bool, CliError> {
    let (events, faults) = crate::pipeline::events::parse(bytes);
    let mut all_read = true;
    for e in &faults {
        eprintln!("trail-alerts: {name}: {e}");
        all_read = false;
    }
    let mut out = io::stdout().lock();
    for (index, event) in &events {
        let kind = event["detail-type"].as_str().unwrap_or("-");
        writeln!(out, "event {index} ({}):", printable(kind))?;
        each_rule(&mut out, rules, only, width, |p| {
            crate::pattern::explain_bus_event(p, event)
        })?;
    }
    if events.is_empty() && all_read {
        eprintln!("trail-alerts: {name}: no event to explain");
        all_read = false;
    }
    Ok(all_read)
}

/// One line per rule (those `only` names, or all): whether it matches, and why or why not.
fn each_rule(
    out: &mut impl Write,
    rules: &crate::rules::RuleSet,
    only: &[String],
    width: usize,
    explain: impl Fn(&crate::pattern::Pattern) -> Explanation,
) -> io::Result<()> {
    for rule in rules.rules() {
        if !only.is_empty() && !only.iter().any(|p| id_matches(p, &rule.id)) {
            continue;
        }
        let quiet = if rule.enabled {
            ""
        } else {
            " (disabled: raises nothing)"
        };
        let line = match explain(&rule.pattern) {
            Explanation::Matched(fields) => {
                format!("matches{quiet}: {}", describe_fields(&fields))
            }
            Explanation::Missed(miss) => format!("no match: {miss}"),
        };
        writeln!(out, "  {:<width$}  {}", rule.id, printable(&line))?;
    }
    Ok(())
}
