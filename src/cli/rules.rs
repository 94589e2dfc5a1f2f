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
pub fn list(sources: &[String], tags: bool) -> Result<bool, CliError> {
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
        if tags {
            let t = r
                .meta
                .as_ref()
                .map(|m| m.tags.join(", "))
                .unwrap_or_default();
            writeln!(
                out,
                "{:<width$}  tags: {}",
                "",
                if t.is_empty() { "(none)" } else { &t }
            )?;
        }
    }
    Ok(true)
}

/// `rules import sigma PATH...`: the AWS CloudTrail rules among the Sigma rules under the
/// paths, converted exactly or refused with the reason, as one rule file (each converted rule
/// with a test derived from its detection); a summary on standard error, and `--report`'s
/// per-rule listing. `Ok(false)` when a file could not be read or the rule file does not load.
pub fn import_sigma(
    paths: &[std::path::PathBuf],
    out: Option<&std::path::Path>,
    report: Option<&std::path::Path>,
) -> Result<bool, CliError> {
    use crate::rules::sigma::{self, SigmaFile, Verdict};
    let mut files = Vec::new();
    for path in paths {
        collect_yaml(path, &mut files)
            .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    }
    files.sort();
    if files.is_empty() {
        return Err(CliError::Usage(format!(
            "no .yml or .yaml files under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut read = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| CliError::Input(format!("{}: {e}", f.display())))?;
        read.push(SigmaFile {
            origin: f.display().to_string(),
            text,
        });
    }
    let mut imported = sigma::import(&read);
    // Each converted rule gets a test per alternative of its detection, each kept only when
    // the rule passes it.
    for i in &mut imported {
        if let Verdict::Converted(rule) = &mut i.verdict {
            let records = sigma::derived_records(&rule["pattern"]);
            let n = records.len();
            let tests: Vec<serde_json::Value> = records
                .into_iter()
                .enumerate()
                .map(|(k, record)| {
                    serde_json::json!({
                        "name": if n == 1 {
                            "derived from the Sigma detection: a record it matches".to_owned()
                        } else {
                            format!("derived from the Sigma detection: a record its alternative {} matches", k + 1)
                        },
                        "expect": true,
                        "record": record,
                    })
                })
                .filter(|test| {
                    let mut probe = rule.clone();
                    probe["tests"] = serde_json::json!([test]);
                    crate::rules::parse_document("import", &format!("rules: [{probe}]"))
                        .ok()
                        .and_then(|rules| rules.into_iter().next())
                        .is_some_and(|r| {
                            r.pattern
                                .matches(&crate::pattern::Event::record(&r.tests[0].record))
                        })
                })
                .collect();
            if !tests.is_empty() {
                rule["tests"] = serde_json::Value::Array(tests);
            }
        }
    }
    let command = format!(
        "trail-alerts rules import sigma {}",
        paths
            .iter()
            .map(|p| p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let text = sigma::rule_file(&imported, &command);
    // What is written must load: a fault here is the converter's, said as such.
    let loads = crate::rules::parse_rule_document("the converted rules", &text);
    if let Err(e) = &loads {
        eprintln!(
            "trail-alerts: the converted rule file does not load (a fault of the import): {e}"
        );
    }
    match out {
        Some(path) => std::fs::write(path, &text)?,
        None => io::stdout().lock().write_all(text.as_bytes())?,
    }
    let mut converted = 0;
    let mut skipped = 0;
    let mut refused: std::collections::BTreeMap<&'static str, usize> = Default::default();
    for i in &imported {
        match &i.verdict {
            Verdict::Converted(_) => converted += 1,
            Verdict::Skipped(_) => skipped += 1,
            Verdict::Refused(why) => *refused.entry(reason_kind(why)).or_default() += 1,
        }
    }
    let refused_total: usize = refused.values().sum();
    if converted == 0 {
        eprintln!("trail-alerts: no rule was converted: the rule file written holds none");
    }
    let mut err = io::stderr().lock();
    writeln!(
        err,
        "sigma import: {} rules read, {converted} converted exactly, {refused_total} refused, {skipped} not for AWS CloudTrail",
        imported.len(),
    )?;
    for (kind, n) in &refused {
        writeln!(err, "  refused: {n:>3}  {kind}")?;
    }
    if let Some(path) = report {
        let mut md =
            String::from("| file | Sigma title | Sigma id | result |\n|---|---|---|---|\n");
        for i in &imported {
            let result = match &i.verdict {
                Verdict::Converted(r) => {
                    format!("converted: `{}`", r["id"].as_str().unwrap_or_default())
                }
                Verdict::Refused(why) => format!("refused: {why}"),
                Verdict::Skipped(why) => format!("passed over: {why}"),
            };
            let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                cell(&i.origin),
                cell(&i.title),
                i.sigma_id.as_deref().unwrap_or(""),
                cell(&result)
            ));
        }
        std::fs::write(path, md)?;
    }
    Ok(loads.is_ok() && converted > 0)
}

/// The kind of a refusal, for the summary.
fn reason_kind(why: &str) -> &'static str {
    const KINDS: [(&str, &str); 14] = [
        (
            "case-insensitive contains",
            "case-insensitive |contains (EventBridge's wildcard is case-sensitive)",
        ),
        ("case-insensitive wildcard", "case-insensitive wildcard"),
        ("|re ", "|re (regular expressions)"),
        ("|fieldref", "|fieldref (comparing two fields)"),
        ("|expand", "|expand (placeholders)"),
        ("|cidr", "|cidr"),
        ("keyword search", "keyword search over the whole record"),
        ("wildcard ?", "the ? wildcard"),
        (
            "may write it as a list",
            "not over a field that may be a list",
        ),
        ("present and not null", "not null"),
        (
            "one field in one branch",
            "several conditions on one field (|all, AND)",
        ),
        ("correlation", "correlation other than event_count"),
        ("aggregation", "old aggregation (| count())"),
        ("modifier", "other modifiers"),
    ];
    KINDS
        .iter()
        .find(|(needle, _)| why.contains(needle))
        .map_or("other", |(_, kind)| kind)
}

/// The .yml and .yaml files under `path`, or `path` itself when it is a file.
fn collect_yaml(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> io::Result<()> {
    if !path.is_dir() {
        std::fs::metadata(path)?;
        out.push(path.to_owned());
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.is_dir() {
            collect_yaml(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
    Ok(())
}
