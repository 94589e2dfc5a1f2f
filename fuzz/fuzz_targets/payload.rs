//! The Lambda input-shape parser on arbitrary JSON payloads: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trail_alerts::lambda::input::parse_payload;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = parse_payload(&payload);
    }
});
