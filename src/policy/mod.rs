//! Alert management, the policy: what happens to a rule's match before anyone is paged —
//! deduplication within a window, thresholds, groups and their waits, suppressions, and the
//! roll-up that says what was held back.
//!
//! # Files
//! - [`absence`]: absence rules and the trail's progress, audited over history for `scan`.
//! - [`local`]: the command line's policy ([`local::LocalPolicy`]: suppressions per match,
//!   [`store::admit`] over the in-memory store, roll-ups at the end of a scan).
//! - [`store`]: the one decision layer ([`store::admit`] and the sweep's inputs) over the state
//!   store's ports ([`store::StateStore`], [`store::PageStore`], [`store::ProgressStore`]) and
//!   their in-memory adapters ([`store::MemoryState`], [`store::MemoryProgress`]); the function
//!   runs it over DynamoDB (`lambda::ports::aws`), the command line over memory.
//!
//! Windows are fixed windows of *event time* (`eventTime`), aligned on the Unix epoch, so that
//! backfills, redeliveries and late deliveries count in the window the events belong to.

pub mod absence;
pub mod local;
pub mod store;

use serde_json::Value;

pub use crate::model::{duration, key_value, Absence, Group, Grouping, KeyPath, Suppression};
use crate::time;

/// The fixed window of event time a match falls in: `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The window of `length` seconds holding `t` (aligned on the Unix epoch; `length` > 0).
    pub fn of(t: i64, length: u64) -> Self {
        let length = length.max(1) as i64;
        let start = t.div_euclid(length) * length;
        Window {
            start,
            end: start + length,
        }
    }
}

/// Whether a key last seen at `last_seen` is overdue once the trail has reached `watermark`.
pub fn overdue(last_seen: i64, every: u64, watermark: i64) -> bool {
    watermark > last_seen + every as i64
}

/// The account and Region a record belongs to (`recipientAccountId`/`awsRegion`, or an
/// EventBridge event's `account`/`region`); `*` when the record does not say.
pub fn place_of(record: &Value) -> (String, String) {
    let text = |a: &str, b: &str| {
        crate::json::field(record, a)
            .or_else(|| crate::json::field(record, b))
            .and_then(Value::as_str)
            .unwrap_or("*")
            .to_owned()
    };
    (
        text("recipientAccountId", "account"),
        text("awsRegion", "region"),
    )
}

/// `2026-12-31` (through the end of that day, UTC) or a timestamp.
pub fn parse_expiry(text: &str) -> Option<i64> {
    let t = time::parse_timestamp(text)?;
    Some(if text.len() == 10 { t + 86_400 } else { t })
}

/// The event time of a record (`eventTime`) or of an EventBridge event (`time`), in Unix seconds.
pub fn event_time(record: &Value) -> Option<i64> {
    crate::json::field(record, "eventTime")
        .or_else(|| crate::json::field(record, "time"))
        .and_then(Value::as_str)
        .and_then(time::parse_timestamp)
}

/// The wall clock, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The wall clock, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn windows_at_their_boundaries() {
        let h = 3600;
        // 2024-01-10T08:00:00Z starts an hour window; one second before is in the previous one.
        let t = 1_704_873_600;
        assert_eq!(
            Window::of(t, h),
            Window {
                start: t,
                end: t + 3600
            }
        );
        assert_eq!(
            Window::of(t + 3599, h),
            Window {
                start: t,
                end: t + 3600
            }
        );
        assert_eq!(
            Window::of(t - 1, h),
            Window {
                start: t - 3600,
                end: t
            }
        );
        assert_eq!(Window::of(t + 3600, h).start, t + 3600);
        // Before the epoch too.
        assert_eq!(Window::of(-1, 60), Window { start: -60, end: 0 });
        // A day window starts at midnight UTC.
        assert_eq!(Window::of(t, 86_400).start, 1_704_844_800);
        // 90 s windows are aligned on the epoch, not on the hour.
        assert_eq!(Window::of(t, 90).start % 90, 0);
    }

    #[test]
    fn key_values_from_records() {
        let paths: Vec<KeyPath> = [
            "recipientAccountId",
            "awsRegion",
            "serviceEventDetails.resourceArn",
        ]
        .iter()
        .map(|p| KeyPath::parse(p).unwrap())
        .collect();
        let record = json!({"recipientAccountId": "123456789012", "awsRegion": "us-east-1",
                            "serviceEventDetails": {"resourceArn": "arn:aws:ec2:::volume/v"}});
        assert_eq!(
            key_value(&paths, &record),
            r#"["123456789012","us-east-1","arn:aws:ec2:::volume/v"]"#
        );
        // Missing fields are null; arrays, numbers and objects keep their JSON.
        let record = json!({"recipientAccountId": 123456789012u64, "awsRegion": ["a", "b"],
                            "serviceEventDetails": {"resourceArn": {"x": 1}}});
        assert_eq!(
            key_value(&paths, &record),
            r#"[123456789012,["a","b"],{"x":1}]"#
        );
        assert_eq!(key_value(&paths, &json!({})), "[null,null,null]");
        assert_eq!(key_value(&[], &record), "[]");
        // A string "null" is not a missing field.
        assert_ne!(
            key_value(&paths[..1], &json!({"recipientAccountId": "null"})),
            key_value(&paths[..1], &json!({}))
        );
        for bad in ["", "a..b", ".a", "a b"] {
            assert!(KeyPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expiry_of_a_date_is_the_end_of_that_day() {
        assert_eq!(parse_expiry("2024-01-10"), Some(1_704_931_200));
        assert_eq!(parse_expiry("2024-01-10T08:00:00Z"), Some(1_704_873_600));
        assert_eq!(parse_expiry("soon"), None);
        assert_eq!(duration(3600), "1h");
        assert_eq!(duration(90), "90s");
        assert_eq!(duration(900), "15m");
        assert_eq!(duration(172_800), "2d");
    }
}
