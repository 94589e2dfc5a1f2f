//! `rules test` and `rules list`.

use std::io::{self, Write};

use super::output::plural;
use super::{load_rules, CliError};

/// Runs every rule's embedded tests, a line each; `Ok(false)` when one failed.
pub fn test(sources: &[String]) -> Result<bool, CliError> {
    let rules = load_rules(sources)?;
    let outcomes = rules.run_tests();
    let mut out = io::stdout().lock();
    let mut failed = 0;
    for o in &outcomes {
        let verdict = if o.passed() { "ok  " } else { "FAIL" };
        let detail = o
            .why_failed()
            .map(|why| format!("\n      {why}"))
            .unwrap_or_default();
        if !o.passed() {
            failed += 1;
        }
        writeln!(out, "{verdict}  {}: {}{detail}", o.rule.id, o.test.name)?;
    }
    let untested = rules.rules().iter().filter(|r| r.tests.is_empty()).count();
    let (rule_count, test_count) = (rules.rules().len(), outcomes.len());
    writeln!(
        out,
        "{rule_count} rule{}, {test_count} test{}: {} passed, {failed} failed{}",
        plural(rule_count as u64),
        plural(test_count as u64),
        test_count - failed,
        match untested {
            0 => String::new(),
            1 => " (1 rule has no tests)".to_owned(),
            n => format!(" ({n} rules have no tests)"),
        }
    )?;
    Ok(failed == 0)
}

/// Lists the rules: id, severity, enabled (`shadow` for an enabled shadow rule), description.
pub fn list(sources: &[String]) -> Result<bool, CliError> {
    let rules = load_rules(sources)?;
    let width = rules
        .rules()
        .iter()
        .map(|r| r.id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{:<width$}  {:<8}  {:<7}  DESCRIPTION",
        "ID", "SEVERITY", "ENABLED"
    )?;
    for r in rules.rules() {
        writeln!(
            out,
            "{:<width$}  {:<8}  {:<7}  {}",
            r.id,
            r.severity.as_str(),
            match (r.enabled, r.shadow) {
                (false, _) => "no",
                (true, true) => "shadow",
                (true, false) => "yes",
            },
            r.description
        )?;
    }
    Ok(true)
}
