//! The pattern compiler and matcher on arbitrary JSON: never a panic; a pattern that compiles
//! matches any event without panicking, and the index agrees with the pattern alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use trail_alerts::index::PatternIndex;
use trail_alerts::pattern::{Event, Pattern};

fuzz_target!(|data: &[u8]| {
    // The input is a pattern and an event, separated by a NUL byte.
    let mut parts = data.splitn(2, |b| *b == 0);
    let (Some(p), Some(e)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(pattern) = serde_json::from_slice::<Value>(p) else {
        return;
    };
    let Ok(event) = serde_json::from_slice::<Value>(e) else {
        return;
    };
    let Ok(compiled) = Pattern::compile(&pattern) else {
        return;
    };
    let alone = compiled.matches(&Event::record(&event));
    let _ = compiled.matches(&Event::eventbridge(&event));
    if event.is_object() {
        let mut index = PatternIndex::new();
        index.push(compiled);
        assert_eq!(
            index.matches(&event) == vec![0],
            alone,
            "index and pattern disagree"
        );
    }
});
