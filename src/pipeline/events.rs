//! Files of EventBridge events, for the command line: an event, a JSON array of events, or one
//! event a line, as `aws events` tooling and the services' documentation show them (AWS
//! Backup's own `Backup Job State Change`, or `AWS API Call via CloudTrail`). Each event is
//! matched as the function matches what EventBridge delivers: a CloudTrail event as its record,
//! a service's own event by the rules written in the envelope form; so that the
//! `backup-event-*` rules can be tried locally, not only through `event:` tests.

use serde_json::Value;

use super::{ReadCounts, ReadOutcome};
use crate::alert::{Alert, AlertSource};
use crate::index::Scratch;
use crate::reader::{RecordError, RecordErrorKind};
use crate::rules::RuleSet;

/// Whether a file that starts with `head` holds EventBridge events: its first JSON object
/// (the file's, or its array's first element) has the envelope's `detail-type` and `source`.
pub fn looks_like_events(head: &[u8]) -> bool {
    let keys = first_object_keys(head);
    keys.iter().any(|k| k == "detail-type") && keys.iter().any(|k| k == "source")
}

/// The keys of the first JSON object in `head` (at its top level), as far as `head` goes.
fn first_object_keys(head: &[u8]) -> Vec<String> {
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < head.len() && head[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if head.get(i) == Some(&b'[') {
        i += 1;
        skip_ws(&mut i);
    }
    if head.get(i) != Some(&b'{') {
        return Vec::new();
    }
    i += 1;
    let mut keys = Vec::new();
    let mut depth = 0usize;
    let mut expect_key = true;
    while i < head.len() {
        match head[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < head.len() && head[i] != b'"' {
                    if head[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if depth == 0 && expect_key {
                    keys.push(
                        String::from_utf8_lossy(&head[start..i.min(head.len())]).into_owned(),
                    );
                    expect_key = false;
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => break,
            b'}' | b']' => depth -= 1,
            b',' if depth == 0 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
    keys
}

/// The events of a file (an array, one event, or one a line), each with its index; the items
/// that are not EventBridge events, each named by index (and byte offset, for lines).
pub fn parse(bytes: &[u8]) -> (Vec<(usize, Value)>, Vec<RecordError>) {
    let items: Vec<(u64, Result<Value, String>)> = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(items)) => items.into_iter().map(|v| (0, Ok(v))).collect(),
        Ok(v) => vec![(0, Ok(v))],
        Err(_) => {
            let mut out = Vec::new();
            let mut offset = 0u64;
            for line in bytes.split(|b| *b == b'\n') {
                let at = offset;
                offset += line.len() as u64 + 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                out.push((
                    at,
                    serde_json::from_slice::<Value>(line).map_err(|e| e.to_string()),
                ));
            }
            out
        }
    };
    let mut events = Vec::new();
    let mut faults = Vec::new();
    for (index, (offset, item)) in items.into_iter().enumerate() {
        match item {
            Ok(v) if v.get("detail-type").is_some() && v.get("source").is_some() => {
                events.push((index, v));
            }
            Ok(v) => faults.push(RecordError {
                index,
                offset,
                kind: RecordErrorKind::NotEvent(format!(
                    "{} without the EventBridge envelope's detail-type and source",
                    crate::describe::yaml_kind(&v)
                )),
            }),
            Err(e) => faults.push(RecordError {
                index,
                offset,
                kind: RecordErrorKind::InvalidJson(e),
            }),
        }
    }
    (events, faults)
}

/// Matches every event of the file against the rules; the alerts carry the file as their
/// source and the event's index. Items that are not EventBridge events are reported by index,
/// and the others are still read.
pub fn run(
    rules: &RuleSet,
    bytes: &[u8],
    source: &AlertSource,
    mut on_alert: impl FnMut(Alert),
) -> ReadOutcome {
    let mut outcome = ReadOutcome {
        stats: ReadCounts {
            bytes: bytes.len() as u64,
            ..ReadCounts::default()
        },
        unreadable: Vec::new(),
        fault: None,
    };
    let (events, unreadable) = parse(bytes);
    outcome.stats.unreadable = unreadable.len() as u64;
    outcome.unreadable = unreadable;
    let mut scratch = Scratch::default();
    for (index, event) in events {
        outcome.stats.records += 1;
        if let Some(t) = event
            .get("time")
            .and_then(Value::as_str)
            .and_then(crate::time::parse_timestamp)
        {
            outcome.stats.newest_event = Some(outcome.stats.newest_event.map_or(t, |n| n.max(t)));
        }
        rules.matching_bus_event(&event, &mut scratch, |rule| {
            let mut alert = Alert::from_bus_event(rule, &event);
            alert.source = source.clone();
            alert.record_index = index;
            outcome.stats.alerts += 1;
            on_alert(alert);
        });
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_told_from_logs_by_their_first_objects_keys() {
        assert!(looks_like_events(br#"{"version": "0", "id": "x", "detail-type": "Backup Job State Change", "source": "aws.backup", "detail": {}}"#));
        assert!(looks_like_events(
            b"[\n {\"detail-type\": \"AWS API Call via CloudTrail\", \"source\": \"aws.s3\""
        ));
        assert!(!looks_like_events(
            br#"{"Records": [{"eventVersion": "1.08", "detail-type": "x", "source": "y"}]}"#
        ));
        assert!(!looks_like_events(br#"{"eventVersion": "1.08", "requestParameters": {"detail-type": "x", "source": "y"}}"#));
        assert!(!looks_like_events(b"garbage"));
    }
}
