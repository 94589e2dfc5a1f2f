//! The command line's words: `scan`, `explain`, `rules test`, `rules list`, `doctor`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    Scan(ScanArgs),
    /// Say, for each rule, whether it matches a record and why (or why not).
    Explain {
        /// Rule source: `builtin`, a rule file, or a directory of them (repeatable).
        #[arg(long = "rules", value_name = "SOURCE")]
        rules: Vec<String>,
        /// Only this rule (repeatable; `*` matches any characters).
        #[arg(long = "rule", value_name = "ID")]
        only: Vec<String>,
        /// A file holding one record, or any shape `scan` reads (every record is explained);
        /// `-` for standard input.
        #[arg(value_name = "RECORD")]
        record: PathBuf,
    },
    /// Work with rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Where alerts would go: the rule files' `routes:`.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Try, with the function's configuration (its environment variables: ALERT_TOPIC_ARN,
    /// ALLOWED_BUCKETS, TRAIL_KEY_PREFIX, TRAIL_READ_ROLE_ARN, STATE_TABLE, …), each thing the
    /// function needs, one line each with the fix when it fails: credentials, rules, the read
    /// role, the trail's newest log listed, read and decrypted, each topic, the state table,
    /// PagerDuty's key. Exit 0 only when every check passes. Nothing is changed or sent.
    #[cfg(feature = "lambda")]
    Doctor(DoctorArgs),
}

#[cfg(feature = "lambda")]
#[derive(Args)]
pub struct DoctorArgs {
    /// A trail's bucket and prefix, `s3://bucket/prefix/` (repeatable); default: the buckets of
    /// ALLOWED_BUCKETS under TRAIL_KEY_PREFIX.
    #[arg(long = "trail", value_name = "S3_URL")]
    pub trails: Vec<String>,
    /// Output: `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = DoctorFormat::Text)]
    pub format: DoctorFormat,
}

#[cfg(feature = "lambda")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    Text,
    Json,
}

#[derive(Args)]
pub struct ScanArgs {
    /// Rule source: `builtin`, a rule file, or a directory of them (repeatable).
    #[arg(long = "rules", value_name = "SOURCE")]
    pub rules: Vec<String>,
    /// Output: `text` for people, `jsonl` (one JSON object per alert) for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Only these rules (repeatable; `*` matches any characters).
    #[arg(long = "rule", value_name = "ID")]
    pub only: Vec<String>,
    /// Leave out these rules (repeatable; `*` matches any characters).
    #[arg(long = "exclude", value_name = "ID")]
    pub exclude: Vec<String>,
    /// Only rules of this severity or above.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub min_severity: Option<SeverityArg>,
    /// Only events at or after this time: `2024-01-10`, `2024-01-10T08:00:00Z`, or a duration
    /// before now (`90m`, `2h`, `7d`). Compared with each record's eventTime.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Every match is an alert: no dedup, no threshold, no suppression.
    #[arg(long)]
    pub no_dedup: bool,
    /// No summary and no progress line: alerts and faults only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Also list on standard error every file passed over, and why.
    #[arg(short, long)]
    pub verbose: bool,
    /// Text rows are not cut to the terminal's width.
    #[arg(long)]
    pub wide: bool,
    /// With `s3://`: only this account's logs (repeatable).
    #[arg(long = "account", value_name = "ACCOUNT_ID")]
    pub accounts: Vec<String>,
    /// With `s3://`: only this Region's logs (repeatable).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// With `s3://`: objects fetched and read at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub concurrency: usize,
    /// Log files (gzip or JSON: CloudTrail logs, arrays of records, newline-delimited
    /// records, `aws cloudtrail lookup-events` output, one record), directories (every log
    /// under them, known by name or content), `-` for standard input, or `s3://bucket/[prefix]`
    /// (the logs under it, listed only for the days, accounts and Regions asked for).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
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
        /// Also each rule's tags (ATT&CK techniques).
        #[arg(long)]
        tags: bool,
    },
    /// Convert detection rules of another format into a trail-alerts rule file: each rule
    /// exactly, or refused with the construct that cannot be said named.
    Import {
        /// The format of the rules read.
        #[arg(value_enum)]
        from: ImportFormat,
        /// Rule files, or folders (every .yml and .yaml under them).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Where the rule file is written (default: standard output).
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also write a per-rule listing (Markdown): converted to which id, or refused and why.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
}

/// A format `rules import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// Sigma rules (their AWS CloudTrail ones; others are passed over).
    Sigma,
}

#[derive(Subcommand)]
pub enum RoutesCommand {
    /// Print where an alert with these facts would go, and which routes decided.
    Test {
        #[arg(long = "rules", value_name = "SOURCE")]
        rules: Vec<String>,
        /// The alert's account (its OU path and tags from the rule files' `accounts:`).
        #[arg(long, value_name = "ACCOUNT_ID")]
        account: Option<String>,
        /// The rule that raised it.
        #[arg(long, value_name = "ID")]
        rule: String,
        /// Its severity (default: the rule's).
        #[arg(long, value_enum, value_name = "SEVERITY")]
        severity: Option<SeverityArg>,
        #[arg(long, value_name = "REGION")]
        region: Option<String>,
        /// The account's OU path (`Root/Prod/Payments`), instead of the rule files'.
        #[arg(long, value_name = "PATH")]
        ou: Option<String>,
        /// An account tag `key=value` (repeatable), instead of the rule files'.
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Jsonl,
}

/// A severity on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeverityArg {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl From<SeverityArg> for crate::rules::Severity {
    fn from(s: SeverityArg) -> Self {
        use crate::rules::Severity;
        match s {
            SeverityArg::Info => Severity::Info,
            SeverityArg::Low => Severity::Low,
            SeverityArg::Medium => Severity::Medium,
            SeverityArg::High => Severity::High,
            SeverityArg::Critical => Severity::Critical,
        }
    }
}
