//! The `trail-alerts` command line, behind a thin binary: its arguments ([`args`]), the scan
//! ([`scan`]) with its output ([`output`]) and progress line ([`progress`]), `explain`
//! ([`explain`]), and the rule commands ([`rules`]).

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
    /// The command line asks for something that cannot be.
    #[error("{0}")]
    Usage(String),
}

/// Runs a command: exit status 0 when everything was read and passed, 1 otherwise.
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
            command: RulesCommand::List { rules },
        } => rules::list(&rules),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        // A closed pipe (`| head`) is the reader's choice, not a fault.
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trail-alerts: {e}");
            ExitCode::from(1)
        }
    }
}

/// The rules of `--rules` (the default sources when none); their warnings go to standard
/// error, all at once.
fn load_rules(sources: &[String]) -> Result<RuleSet, CliError> {
    let rules = RuleSet::load(&parse_sources(sources))?;
    for warning in rules.warnings() {
        eprintln!("trail-alerts: warning: {warning}");
    }
    Ok(rules)
}
