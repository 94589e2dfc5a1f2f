//! `trail-alerts`: scan CloudTrail log files for alerts, and test or list rules. Wiring only;
//! the commands live in the library's `cli` module.

use std::process::ExitCode;

use clap::Parser;
use trail_alerts::cli::{self, args::Cli};

/// mimalloc: building a matched record allocates a few hundred small blocks, and glibc's
/// allocator spent more on them than on building (see docs/performance.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    trail_alerts::no_huge_pages();
    cli::run(Cli::parse())
}
