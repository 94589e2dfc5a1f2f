//! `trail-alerts`: scan CloudTrail log files for alerts, and test or list rules. Wiring only;
//! the commands live in the library's `cli` module.

use std::process::ExitCode;

use clap::Parser;
use trail_alerts::cli::{self, args::Cli};

fn main() -> ExitCode {
    cli::run(Cli::parse())
}
