//! The command line's words: `scan`, `rules test`, `rules list`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "trail-alerts",
    version,
    about = "Turn CloudTrail log files into alerts with EventBridge-pattern rules"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
pub enum RulesCommand {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Jsonl,
}
