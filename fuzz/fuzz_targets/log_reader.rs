//! The log reader on arbitrary bytes (gzip or not): never a panic, and the fast scan agrees
//! with the path that builds every record.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trail_alerts::alert::AlertSource;
use trail_alerts::reader::Limits;
use trail_alerts::rules::{RuleSet, RuleSource};
use trail_alerts::pipeline::{Mode, Pipeline};

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
    let run = |mode: Mode| {
        let mut alerts = Vec::new();
        let outcome = Pipeline::new(rules, limits).run(
            std::io::Cursor::new(data.to_vec()),
            &source,
            mode,
            |a| alerts.push((a.rule_id, a.record_index)),
        );
        let unreadable: Vec<String> = outcome.unreadable.iter().map(ToString::to_string).collect();
        (outcome.fault.map(|e| e.to_string()), alerts, unreadable)
    };
    assert_eq!(run(Mode::Inline), run(Mode::Reference));
});
