//! The rule index: matching one record against many patterns at a cost that does not grow with
//! their number, and deciding from a record's raw bytes whether it needs building at all.
//!
//! Each pattern is filed under the exact `eventName` values it requires; failing that, under the
//! exact `eventSource` values; failing that, under the envelope `source` values; and only a
//! pattern that pins none of them is tried on every record. A record is read once: its
//! `eventName`, `eventSource` and (when some pattern needs it) envelope are looked up once, and
//! only the patterns filed under its values are evaluated in full.
//!
//! The index alone knows which fields it files under, so it names them to the reader
//! ([`PatternIndex::peek_fields`]) and reads the reader's answers back
//! ([`PatternIndex::wants`]): the whole fast-path decision is here.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::Value;

use crate::pattern::{service_of, Event, Form, Pattern};
use crate::reader::{PeekFields, Peeked};

/// Where a pattern is filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    EventName,
    EventSource,
    EnvelopeSource,
}

/// A set of compiled patterns, indexed for matching.
#[derive(Debug, Clone, Default)]
pub struct PatternIndex {
    patterns: Vec<Pattern>,
    by: HashMap<Key, HashMap<Box<str>, Vec<u32>, FastHash>>,
    unindexed: Vec<u32>,
}

/// Reusable scratch space for [`PatternIndex::matching`], so matching does not allocate per record.
#[derive(Debug, Default)]
pub struct Scratch {
    candidates: Vec<u32>,
}

impl PatternIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pattern; its position (0, 1, …) is what [`PatternIndex::matching`] reports.
    pub fn push(&mut self, pattern: Pattern) -> usize {
        let id = self.patterns.len();
        let id32 = u32::try_from(id).unwrap_or(u32::MAX);
        let (name_path, source_path): (&[&str], &[&str]) = match pattern.form() {
            Form::Record => (&["eventName"], &["eventSource"]),
            Form::Envelope => (&["detail", "eventName"], &["detail", "eventSource"]),
        };
        let filed = [
            (Key::EventName, pattern.required_strings(name_path)),
            (Key::EventSource, pattern.required_strings(source_path)),
            (
                Key::EnvelopeSource,
                match pattern.form() {
                    Form::Envelope => pattern.required_strings(&["source"]),
                    Form::Record => None,
                },
            ),
        ]
        .into_iter()
        .find_map(|(key, values)| values.map(|v| (key, v)));
        match filed {
            Some((key, values)) => {
                let table = self.by.entry(key).or_default();
                for value in values {
                    // Envelope sources are filed by service (`aws.backup` under `backup`), the
                    // part of `eventSource` they come from; a source not starting with `aws.`
                    // can never match a CloudTrail record and is filed where none will look.
                    let value = match key {
                        Key::EnvelopeSource => value.strip_prefix("aws.").unwrap_or("\u{0}"),
                        _ => value,
                    };
                    let ids = table.entry(value.into()).or_default();
                    if ids.last() != Some(&id32) {
                        ids.push(id32);
                    }
                }
            }
            None => self.unindexed.push(id32),
        }
        self.patterns.push(pattern);
        id
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn get(&self, id: usize) -> Option<&Pattern> {
        self.patterns.get(id)
    }

    /// Calls `hit` with the id of every pattern that matches `record`, in the order the patterns
    /// were added.
    pub fn matching(&self, record: &Value, scratch: &mut Scratch, mut hit: impl FnMut(usize)) {
        let candidates = &mut scratch.candidates;
        candidates.clear();
        candidates.extend_from_slice(&self.unindexed);
        if let Some(table) = self.by.get(&Key::EventName) {
            for_each_string(record.get("eventName"), |s| {
                if let Some(ids) = table.get(s) {
                    candidates.extend_from_slice(ids);
                }
            });
        }
        if let Some(table) = self.by.get(&Key::EventSource) {
            for_each_string(record.get("eventSource"), |s| {
                if let Some(ids) = table.get(s) {
                    candidates.extend_from_slice(ids);
                }
            });
        }
        if let Some(table) = self.by.get(&Key::EnvelopeSource) {
            if let Some(service) = record
                .get("eventSource")
                .and_then(Value::as_str)
                .and_then(service_of)
            {
                if let Some(ids) = table.get(service) {
                    candidates.extend_from_slice(ids);
                }
            }
        }
        if candidates.is_empty() {
            return;
        }
        candidates.sort_unstable();
        candidates.dedup();
        let event = Event::record(record);
        for &id in candidates.iter() {
            if self.patterns[id as usize].matches(&event) {
                hit(id as usize);
            }
        }
    }

    /// The top-level fields whose raw values [`PatternIndex::wants`] reads: the fields patterns
    /// are filed under, or none when some pattern must be tried on every record anyway.
    pub fn peek_fields(&self) -> PeekFields {
        PeekFields::new(self.peeked().into_iter().flatten())
    }

    /// `[eventName, eventSource]` as far as the index reads them; their positions in
    /// [`PatternIndex::peek_fields`] are their positions among the `Some`s.
    fn peeked(&self) -> [Option<&'static str>; 2] {
        if !self.unindexed.is_empty() {
            return [None, None];
        }
        let filed = |key| self.by.get(&key).is_some_and(|t| !t.is_empty());
        [
            filed(Key::EventName).then_some("eventName"),
            (filed(Key::EventSource) || filed(Key::EnvelopeSource)).then_some("eventSource"),
        ]
    }

    /// Whether any pattern could match the record whose raw bytes the reader peeked at with
    /// [`PatternIndex::peek_fields`]. `false` is exact: no pattern can match, so the record need
    /// not be built; `true` only says that matching must look.
    pub fn wants(&self, peeked: &Peeked, bytes: &[u8]) -> bool {
        if !self.unindexed.is_empty() {
            return true;
        }
        let mut slot = 0;
        let mut values = [None, None];
        for (field, value) in self.peeked().iter().zip(&mut values) {
            if field.is_some() {
                match peeked.value(slot, bytes).known() {
                    Some(v) => *value = v,
                    None => return true,
                }
                slot += 1;
            }
        }
        self.could_match(values[0], values[1])
    }

    /// Whether any pattern could match a record whose `eventName` and `eventSource` are these
    /// strings (`None`: absent). `false` is exact: no pattern can match, so the record need not
    /// be parsed; `true` only says that matching must look.
    fn could_match(&self, event_name: Option<&str>, event_source: Option<&str>) -> bool {
        if !self.unindexed.is_empty() {
            return true;
        }
        let has = |key: Key, value: Option<&str>| {
            value.is_some_and(|v| self.by.get(&key).is_some_and(|t| t.contains_key(v)))
        };
        has(Key::EventName, event_name)
            || has(Key::EventSource, event_source)
            || has(Key::EnvelopeSource, event_source.and_then(service_of))
    }

    /// The ids of the patterns that match, in order: a convenience over [`PatternIndex::matching`].
    pub fn matches(&self, record: &Value) -> Vec<usize> {
        let mut out = Vec::new();
        self.matching(record, &mut Scratch::default(), |id| out.push(id));
        out
    }
}

/// FNV-1a: the index's keys are short names looked up once or twice per record, where
/// SipHash's set-up costs more than the lookup; the keys come from the rules, not from records,
/// so flooding is not a concern.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FastHash = BuildHasherDefault<Fnv>;

/// The string leaves at a place: the string itself, or the strings inside (nested) arrays.
fn for_each_string<'v>(value: Option<&'v Value>, mut f: impl FnMut(&'v str)) {
    fn walk<'v>(value: &'v Value, f: &mut impl FnMut(&'v str)) {
        match value {
            Value::String(s) => f(s),
            Value::Array(items) => items.iter().for_each(|item| walk(item, f)),
            _ => {}
        }
    }
    if let Some(v) = value {
        walk(v, &mut f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn index(patterns: &[Value]) -> PatternIndex {
        let mut idx = PatternIndex::new();
        for p in patterns {
            idx.push(Pattern::compile(p).unwrap());
        }
        idx
    }

    #[test]
    fn indexed_and_unindexed_patterns_agree_with_direct_matching() {
        let patterns = [
            json!({"eventName": ["BackupJobCompleted"], "serviceEventDetails": {"state": [{"anything-but": "COMPLETED"}]}}),
            json!({"eventSource": ["outposts.amazonaws.com"], "readOnly": [false]}),
            json!({"source": ["aws.backup"], "detail-type": ["AWS Service Event via CloudTrail"]}),
            json!({"errorCode": [{"exists": true}]}),
            json!({"$or": [{"eventName": ["A"]}, {"eventName": ["B"]}]}),
            json!({"detail": {"eventName": ["DeleteBackupVault"]}}),
        ];
        let idx = index(&patterns);
        let records = [
            json!({"eventName": "BackupJobCompleted", "eventSource": "backup.amazonaws.com", "eventType": "AwsServiceEvent", "serviceEventDetails": {"state": "FAILED"}}),
            json!({"eventName": "SetSiteAddress", "eventSource": "outposts.amazonaws.com", "readOnly": false, "errorCode": "AccessDenied"}),
            json!({"eventName": "B"}),
            json!({"eventName": ["A", "Z"]}),
            json!({"eventName": "DeleteBackupVault", "eventSource": "backup.amazonaws.com", "eventType": "AwsApiCall"}),
            json!({"eventName": "Other"}),
        ];
        for r in &records {
            let direct: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| Pattern::compile(p).unwrap().matches(&Event::record(r)))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(idx.matches(r), direct, "record {r}");
        }
        assert_eq!(idx.matches(&records[0]), vec![0, 2]);
        assert_eq!(idx.matches(&records[1]), vec![1, 3]);
        assert_eq!(idx.matches(&records[2]), vec![4]);
        assert_eq!(idx.matches(&records[3]), vec![4]);
        assert_eq!(idx.matches(&records[4]), vec![5]);
        assert!(idx.matches(&records[5]).is_empty());
    }

    #[test]
    fn could_match_is_false_only_when_no_pattern_can_match() {
        let idx = index(&[
            json!({"eventName": ["BackupJobCompleted"]}),
            json!({"eventSource": ["outposts.amazonaws.com"]}),
            json!({"source": ["aws.kms"]}),
        ]);
        assert!(idx.could_match(Some("BackupJobCompleted"), Some("backup.amazonaws.com")));
        assert!(idx.could_match(Some("ListSites"), Some("outposts.amazonaws.com")));
        assert!(idx.could_match(None, Some("kms.amazonaws.com")));
        assert!(!idx.could_match(Some("GetObject"), Some("s3.amazonaws.com")));
        assert!(!idx.could_match(None, None));
        let with_unindexed = index(&[json!({"errorCode": [{"exists": true}]})]);
        assert!(with_unindexed.could_match(None, None));
    }

    /// The index names the fields the reader must peek at, and reads the answers back.
    #[test]
    fn peeked_fields_decide_which_records_are_built() {
        use crate::reader::{LogReader, Split};
        let wanted = |idx: &PatternIndex, record: &str| {
            let doc = format!("{{\"Records\":[{record}]}}");
            let mut reader = LogReader::new(doc.as_bytes(), Default::default())
                .unwrap()
                .peeking(idx.peek_fields());
            match reader.next_split().unwrap() {
                Some(Split::Record(raw, peeked)) => idx.wants(peeked, raw.bytes),
                other => panic!("{other:?}"),
            }
        };
        let by_name = index(&[json!({"eventName": ["BackupJobCompleted"]})]);
        assert_eq!(by_name.peek_fields(), PeekFields::new(["eventName"]));
        assert!(wanted(&by_name, r#"{"eventName":"BackupJobCompleted"}"#));
        assert!(!wanted(&by_name, r#"{"eventName":"GetObject"}"#));
        assert!(!wanted(
            &by_name,
            r#"{"eventSource":"backup.amazonaws.com"}"#
        ));
        // Escapes and non-strings: only building the record can tell.
        assert!(wanted(
            &by_name,
            r#"{"eventName":"Backup\u004aobCompleted"}"#
        ));
        assert!(wanted(&by_name, r#"{"eventName":["GetObject"]}"#));
        assert!(wanted(&by_name, r#"{"event\u004eame":"GetObject"}"#));
        // The last of duplicate keys counts, as in the built record.
        assert!(!wanted(
            &by_name,
            r#"{"eventName":"BackupJobCompleted","eventName":"X"}"#
        ));

        let by_source = index(&[json!({"source": ["aws.outposts"]})]);
        assert_eq!(by_source.peek_fields(), PeekFields::new(["eventSource"]));
        assert!(wanted(
            &by_source,
            r#"{"eventSource":"outposts.amazonaws.com"}"#
        ));
        assert!(!wanted(&by_source, r#"{"eventSource":"s3.amazonaws.com"}"#));

        // A pattern tried on every record needs no peek: every record is built.
        let unindexed = index(&[json!({"errorCode": [{"exists": true}]})]);
        assert!(unindexed.peek_fields().is_empty());
        assert!(wanted(&unindexed, r#"{"eventName":"GetObject"}"#));
        assert!(!wanted(
            &PatternIndex::new(),
            r#"{"eventName":"GetObject"}"#
        ));
    }

    #[test]
    fn filing_prefers_event_name_then_source() {
        let idx = index(&[
            json!({"eventName": ["X"], "eventSource": ["s"]}),
            json!({"eventSource": ["s"]}),
            json!({"eventName": [{"prefix": "X"}]}),
        ]);
        assert_eq!(idx.by[&Key::EventName].len(), 1);
        assert_eq!(idx.by[&Key::EventSource].len(), 1);
        assert_eq!(idx.unindexed, vec![2]);
    }
}
