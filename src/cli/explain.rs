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
    let input: Box<dyn Read + Send> = if name == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| CliError::Usage(format!("{name}: {e}")))?)
    };
    let reader = LogReader::new_shapes(input, Limits::default(), Shapes::Any)
        .map_err(|e| CliError::Usage(format!("{name}: {e}")))?;
    let width = rules.rules().iter().map(|r| r.id.len()).max().unwrap_or(0);
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
        for rule in rules.rules() {
            if !only.is_empty() && !only.iter().any(|p| id_matches(p, &rule.id)) {
                continue;
            }
            let quiet = if rule.enabled {
                ""
            } else {
                " (disabled: raises nothing)"
            };
            let line = match rule.pattern.explain(&event) {
                Explanation::Matched(fields) => {
                    format!("matches{quiet}: {}", describe_fields(&fields))
                }
                Explanation::Missed(miss) => format!("no match: {miss}"),
            };
            writeln!(out, "  {:<width$}  {}", rule.id, printable(&line))?;
        }
    }
    if records == 0 && all_read {
        eprintln!("trail-alerts: {name}: no record to explain");
        all_read = false;
    }
    Ok(all_read)
}
