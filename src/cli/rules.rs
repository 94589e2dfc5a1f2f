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
    // The routes' tests: where an alert with these facts goes.
    let mut route_count = 0;
    for t in rules.route_tests() {
        route_count += 1;
        let why = route_test_failure(&rules, t);
        if why.is_some() {
            failed += 1;
        }
        writeln!(
            out,
            "{}  route: {}{}",
            if why.is_none() { "ok  " } else { "FAIL" },
            t.name,
            why.map(|w| format!("\n      {w}")).unwrap_or_default()
        )?;
    }
    let untested = rules.rules().iter().filter(|r| r.tests.is_empty()).count();
    let (rule_count, test_count) = (rules.rules().len(), outcomes.len() + route_count);
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

/// Why a route test fails, or `None` when the alert goes where it expects.
fn route_test_failure(
    rules: &crate::rules::RuleSet,
    t: &crate::rules::routes::RouteTest,
) -> Option<String> {
    if rules.rule(&t.rule).is_none() {
        return Some(format!("{}: names no loaded rule {:?}", t.origin, t.rule));
    }
    let (d, _) = rules.route(
        t.account.as_deref(),
        &t.rule,
        t.severity,
        t.region.as_deref(),
        None,
        None,
    );
    let got = (!d.is_default()).then(|| d.destinations().sorted());
    let want = t.expect.clone().map(|e| e.sorted());
    if got == want {
        return None;
    }
    let show = |x: &Option<crate::rules::routes::Destinations>| match x {
        None => "the default route".to_owned(),
        Some(to) => to.to_string(),
    };
    Some(format!(
        "{}: expected {}, went to {}{}",
        t.origin,
        show(&want),
        show(&got),
        if d.routes.is_empty() {
            String::new()
        } else {
            format!(" (decided by {})", d.routes.join(", "))
        }
    ))
}

/// Lists the rules: id, severity, enabled (`shadow` for an enabled shadow rule), description,
/// and under a rule the overrides that changed it.
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
        for o in &r.overridden_by {
            writeln!(out, "{:<width$}  overridden by {o}", "")?;
        }
    }
    Ok(true)
}
