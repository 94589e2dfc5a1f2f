//! The `trail-alerts` command line, behind a thin binary; `doctor` is `crate::lambda::doctor`.
//!
//! # Files
//! - [`args`]: the arguments, parsed; a usage error exits 2.
//! - [`explain`]: `explain`: for each rule and record, whether it matches and why.
//! - [`output`]: `scan`'s output: rows, jsonl lines, roll-ups, the summary and its counts.
//! - [`progress`]: the progress line on a terminal.
//! - [`rules`]: `rules test`, `rules list`, `rules import sigma`, `routes test`.
//! - [`scan`]: `scan` over files, directories, standard input and (`scan/s3`) `s3://`.

pub mod args;
pub mod explain;
pub mod output;
pub mod progress;
pub mod rules;
pub mod scan;

use std::io;
use std::process::ExitCode;

use crate::config::ConfigError;
use crate::rules::{parse_sources, RuleError, RuleSet};
use args::{Cli, Command, RulesCommand};

/// A fault that stops a command; it is printed on standard error.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Rules(#[from] RuleError),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("writing the output: {0}")]
    Output(#[from] io::Error),
    /// The command line asks for something that cannot be: exit status 2, as for arguments
    /// the parser refuses.
    #[error("{0}")]
    Usage(String),
    /// A file named on the command line could not be read: exit status 1, as for any fault
    /// of what was read.
    #[error("{0}")]
    Input(String),
}

/// Runs a command: exit status 0 when everything was read and passed; 1 when something could not
/// be read (a file, a record, a rule) or a check failed; 2 for usage errors — what the argument
/// parser refuses, and what only the command can tell is wrong (a `--rule` that names no rule, a
/// `--since` that is no time).
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Scan(args) => scan::run(&args),
        Command::Explain {
            rules,
            only,
            record,
        } => explain::run(&rules, &only, &record),
        Command::Rules {
            command: RulesCommand::Test { rules },
        } => rules::test(&rules),
        Command::Rules {
            command: RulesCommand::List { rules, tags },
        } => rules::list(&rules, tags),
        Command::Rules {
            command:
                RulesCommand::Import {
                    from: args::ImportFormat::Sigma,
                    paths,
                    out,
                    report,
                },
        } => rules::import_sigma(&paths, out.as_deref(), report.as_deref()),
        Command::Routes {
            command:
                args::RoutesCommand::Test {
                    rules,
                    account,
                    rule,
                    severity,
                    region,
                    ou,
                    tags,
                },
        } => routes_test(
            &rules,
            account.as_deref(),
            &rule,
            severity.map(Into::into),
            region.as_deref(),
            ou,
            &tags,
        ),
        #[cfg(feature = "lambda")]
        Command::Doctor(args) => doctor(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        // A closed pipe (`| head`) is the reader's choice, not a fault.
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e @ CliError::Usage(_)) => {
            eprintln!("trail-alerts: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("trail-alerts: {e}");
            ExitCode::from(1)
        }
    }
}

/// `doctor`: the function's configuration from the environment, its checks run with the
/// standard credentials; true when every check passed.
#[cfg(feature = "lambda")]
fn doctor(args: &args::DoctorArgs) -> Result<bool, CliError> {
    use crate::lambda::{doctor, LambdaConfig};
    use std::io::Write;
    let config = LambdaConfig::from_lookup(|k| std::env::var(k).ok())?;
    let mut scope = doctor::Scope::from_lookup(&config, |k| std::env::var(k).ok());
    if !args.trails.is_empty() {
        scope.trails = args
            .trails
            .iter()
            .map(|url| {
                crate::lambda::config::s3_prefix(url).ok_or_else(|| {
                    CliError::Usage(format!("--trail {url:?}: expected s3://bucket/prefix/"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)?;
    let checks = runtime.block_on(async {
        let sdk = crate::s3::sdk_config().await;
        doctor::examine(&sdk, &config, &scope).await
    });
    let mut out = io::stdout().lock();
    match args.format {
        args::DoctorFormat::Text => out.write_all(doctor::text(&checks).as_bytes())?,
        args::DoctorFormat::Json => writeln!(out, "{}", doctor::json(&checks))?,
    }
    Ok(doctor::passed(&checks))
}

/// `routes test`: where an alert with these facts would go, and which routes decided.
fn routes_test(
    sources: &[String],
    account: Option<&str>,
    rule: &str,
    severity: Option<crate::rules::Severity>,
    region: Option<&str>,
    ou: Option<String>,
    tags: &[String],
) -> Result<bool, CliError> {
    use std::io::Write;
    let rules = load_rules(sources)?;
    if rules.rule(rule).is_none() {
        return Err(CliError::Usage(format!(
            "--rule {rule:?}: no such rule (see `trail-alerts rules list`)"
        )));
    }
    let mut tag_map = std::collections::BTreeMap::new();
    for t in tags {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--tag {t:?}: expected key=value")))?;
        tag_map.insert(k.to_owned(), v.to_owned());
    }
    let (d, rule_topic) = rules.route(
        account,
        rule,
        severity,
        region,
        ou,
        (!tag_map.is_empty()).then_some(&tag_map),
    );
    let mut out = io::stdout().lock();
    if d.is_default() {
        writeln!(
            out,
            "default route (no route matched): {}",
            rule_topic.map_or_else(
                || "ALERT_TOPIC_ARN (the function's default topic)".to_owned(),
                |t| format!("{t} (the rule's topic:)")
            )
        )?;
        writeln!(
            out,
            "pagerduty   default (PAGERDUTY_ROUTING_KEY_SECRET's service, when it is set)"
        )?;
    } else {
        for t in &d.topics {
            writeln!(out, "topic       {t}")?;
        }
        if d.topics.is_empty() && d.chat_topics.is_empty() {
            writeln!(
                out,
                "topic       {} (the routes only page: the default topic)",
                rule_topic.as_deref().unwrap_or("ALERT_TOPIC_ARN")
            )?;
        }
        for t in &d.chat_topics {
            writeln!(out, "chat topic  {t}")?;
        }
        for s in &d.pagerduty {
            writeln!(out, "pagerduty   {s}")?;
        }
        if d.pagerduty.is_empty() {
            writeln!(
                out,
                "pagerduty   none (no route that decided names a service)"
            )?;
        }
        writeln!(out, "decided by  {}", d.routes.join(", then "))?;
    }
    Ok(true)
}

/// The rules of `--rules` (the default sources when none); their warnings go to standard
/// error, all at once.
fn load_rules(sources: &[String]) -> Result<RuleSet, CliError> {
    let sources = parse_sources(sources);
    let rules = load_sources(&sources)?;
    for warning in rules.warnings() {
        eprintln!("trail-alerts: warning: {warning}");
    }
    Ok(rules)
}

/// Loads rule sources; `s3://` ones are read through S3 (standard credentials,
/// `AWS_ENDPOINT_URL`) in a build with the `s3` feature.
#[cfg(feature = "s3")]
fn load_sources(sources: &[crate::rules::RuleSource]) -> Result<RuleSet, CliError> {
    if !sources
        .iter()
        .any(|s| matches!(s, crate::rules::RuleSource::S3(_)))
    {
        return Ok(RuleSet::load(sources)?);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)?;
    Ok(runtime.block_on(async {
        let client = crate::s3::s3_client(&crate::s3::sdk_config().await);
        crate::s3::load_rules(&client, sources).await
    })?)
}

#[cfg(not(feature = "s3"))]
fn load_sources(sources: &[crate::rules::RuleSource]) -> Result<RuleSet, CliError> {
    Ok(RuleSet::load(sources)?)
}
