//! The log reader on arbitrary bytes (gzip or not): never a panic, and the fast scan agrees
//! with the path that builds every record.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trail_alerts::alert::AlertSource;
use trail_alerts::reader::Limits;
use trail_alerts::rules::{RuleSet, RuleSource};
use trail_alerts::scan::Scanner;

static RULES: OnceLock<RuleSet> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let rules = RULES.get_or_init(|| RuleSet::load(&[RuleSource::Builtin]).expect("builtin"));
    let limits = Limits {
        max_decompressed_bytes: 1 << 20,
        max_record_bytes: 64 << 10,
    };
    let source = AlertSource::File {
        path: "fuzz".into(),
    };
    let run = |fast: bool| {
        let mut scanner = Scanner::new(rules, limits);
        let mut alerts = Vec::new();
        let mut skipped = Vec::new();
        let result = if fast {
            scanner.scan(
                data,
                &source,
                |a| alerts.push((a.rule_id, a.record_index)),
                |e| skipped.push(e.to_string()),
            )
        } else {
            scanner.scan_parsing_all(
                data,
                &source,
                |a| alerts.push((a.rule_id, a.record_index)),
                |e| skipped.push(e.to_string()),
            )
        };
        (result.map_err(|e| e.to_string()), alerts, skipped)
    };
    assert_eq!(run(true), run(false));
});
