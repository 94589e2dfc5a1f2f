//! The EventBridge pattern conformance suite: `tests/fixtures/patterns/conformance.json` holds
//! (pattern, event, expected) cases with their sources, `refusals.json` the patterns that must be
//! refused with the JSON path of the fault.

use serde_json::Value;
use trail_alerts::index::PatternIndex;
use trail_alerts::pattern::{Event, Explanation, Pattern};

use crate::util::json_fixture;

struct Case<'a> {
    name: &'a str,
    pattern: &'a Value,
    event: &'a Value,
    expected: bool,
    as_record: bool,
}

fn cases(doc: &Value) -> Vec<Case<'_>> {
    let events = &doc["events"];
    doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let name = c["name"].as_str().expect("name");
            assert!(c["source"].is_string(), "case {name:?} cites no source");
            let event = match &c["event"] {
                Value::String(shared) => &events[shared.as_str()],
                inline => inline,
            };
            assert!(event.is_object(), "case {name:?}: no event");
            Case {
                name,
                pattern: &c["pattern"],
                event,
                expected: c["expected"].as_bool().expect("expected"),
                as_record: c["record"].as_bool().unwrap_or(false),
            }
        })
        .collect()
}

#[test]
fn every_conformance_case_holds() {
    let doc = json_fixture("patterns/conformance.json");
    let cases = cases(&doc);
    assert!(cases.len() >= 90, "the suite shrank to {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let pattern = match Pattern::compile(case.pattern) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{}: refused: {e}", case.name));
                continue;
            }
        };
        let event = if case.as_record {
            Event::record(case.event)
        } else {
            Event::eventbridge(case.event)
        };
        let got = pattern.matches(&event);
        // The explanation's verdict is the matcher's own.
        let explained = matches!(pattern.explain(&event), Explanation::Matched(_));
        if explained != got {
            failures.push(format!(
                "{}: explain says {explained}, matches says {got}",
                case.name
            ));
        }
        if got != case.expected {
            failures.push(format!(
                "{}: expected {}, got {got}",
                case.name, case.expected
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_index_agrees_with_each_pattern_alone() {
    // All record-form cases compiled into one index: matching a case's event through the index
    // must report that case's pattern exactly when the case expects a match.
    let doc = json_fixture("patterns/conformance.json");
    let cases: Vec<_> = cases(&doc).into_iter().filter(|c| c.as_record).collect();
    let mut index = PatternIndex::new();
    for c in &cases {
        index.push(Pattern::compile(c.pattern).expect("compiles"));
    }
    for (i, c) in cases.iter().enumerate() {
        let hits = index.matches(c.event);
        assert_eq!(hits.contains(&i), c.expected, "{}", c.name);
    }
}

#[test]
fn every_refusal_names_the_path_and_the_reason() {
    let doc = json_fixture("patterns/refusals.json");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().expect("name");
        let path = c["path"].as_str().expect("path");
        let reason = c["reason"].as_str().expect("reason");
        match Pattern::compile(&c["pattern"]) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) => {
                if e.path != path || !e.reason.contains(reason) {
                    failures.push(format!(
                        "{name}: got {:?} at {:?}, wanted {reason:?} at {path:?}",
                        e.reason, e.path
                    ));
                }
                assert_eq!(e.to_string(), format!("{}: {}", e.path, e.reason));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
