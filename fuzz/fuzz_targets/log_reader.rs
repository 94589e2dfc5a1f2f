//! The log reader on arbitrary bytes (gzip or not): never a panic, and the fast scan agrees
//! with the path that builds every record — with the built-in pack and rules of every shape the
//! index files differently (nested paths, prefixes, suffixes, wildcards, ignore-case, `$or`,
//! the envelope form, presence) — in CloudTrail's S3 format only (the function) and in every
//! shape the command line reads (arrays, newline-delimited records, lookup-events output).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trail_alerts::alert::AlertSource;
use trail_alerts::reader::{Limits, Shapes};
use trail_alerts::rules::{parse_document, RuleSet, RuleSource};
use trail_alerts::pipeline::{Mode, Pipeline};

static RULES: OnceLock<RuleSet> = OnceLock::new();

const SHAPES: &str = r#"rules:
  - {id: s1, description: d, severity: low, pattern: {userIdentity: {type: [Root]}}}
  - {id: s2, description: d, severity: low, pattern: {userAgent: [{prefix: aws}], errorCode: [{exists: true}]}}
  - {id: s3, description: d, severity: low, pattern: {eventName: [{suffix: {equals-ignore-case: BUCKET}}]}}
  - {id: s4, description: d, severity: low, pattern: {eventName: [{wildcard: 'Get*y'}]}}
  - {id: s5, description: d, severity: low, pattern: {$or: [{a: {b: [x]}}, {c: [{numeric: ['>', 1]}]}]}}
  - {id: s6, description: d, severity: low, pattern: {source: [aws.s3], detail-type: [AWS API Call via CloudTrail]}}
  - {id: s7, description: d, severity: low, pattern: {resources: {ARN: [{prefix: 'arn:'}]}, readOnly: [false]}}
  - {id: s8, description: d, severity: low, pattern: {eventName: [{prefix: G}], c: [{numeric: ['>', 1, '<=', 5]}, 7, true, null]}}
  - {id: s9, description: d, severity: low, pattern: {eventName: [{prefix: L}], c: {d: [{numeric: ['=', 0]}]}}}
"#;

fuzz_target!(|data: &[u8]| {
    let rules = RULES.get_or_init(|| {
        let mut rules = RuleSet::load(&[RuleSource::Builtin])
            .expect("builtin")
            .rules()
            .to_vec();
        rules.extend(parse_document("fuzz.yaml", SHAPES).expect("shapes"));
        RuleSet::new(rules).expect("set")
    });
    let limits = Limits {
        max_decompressed_bytes: 1 << 20,
        max_record_bytes: 64 << 10,
    };
    let source = AlertSource::File {
        path: "fuzz".into(),
    };
    let run = |mode: Mode, shapes: Shapes| {
        let mut alerts = Vec::new();
        let outcome = Pipeline::new(rules, limits).with_shapes(shapes).run(
            std::io::Cursor::new(data.to_vec()),
            &source,
            mode,
            |a| alerts.push((a.rule_id, a.record_index)),
        );
        let unreadable: Vec<String> = outcome.unreadable.iter().map(ToString::to_string).collect();
        (outcome.fault.map(|e| e.to_string()), alerts, unreadable)
    };
    for shapes in [Shapes::S3Log, Shapes::Any] {
        assert_eq!(run(Mode::Inline, shapes), run(Mode::Reference, shapes));
    }
});
