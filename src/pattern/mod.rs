//! Amazon EventBridge event patterns: compile once, match many times.
//!
//! The language is the one EventBridge and the open-source aws/event-ruler engine implement:
//! exact values, `prefix`, `suffix`, `equals-ignore-case`, `wildcard`, `anything-but`, `numeric`,
//! `cidr`, `exists` and `$or`, with values OR'd, fields AND'd, and arrays in the event matching
//! when any element matches (consistently within one element of an array of objects).
//!
//! A pattern also names its anchors ([`Pattern::anchors`], in `anchor.rs`): single-field tests
//! one of which every record it matches passes, which the rule index files it under.
//!
//! This module is pure: no I/O, no async, no AWS types. [`Pattern::compile`] refuses an invalid
//! pattern with a [`PatternError`] that carries the JSON path of the fault; [`Pattern::matches`]
//! matches an [`Event`] and never allocates for record-form patterns.
//!
//! # Files
//! - `anchor`: a pattern's anchors, which the rule index files it under.
//! - `compile`: JSON in, a checked [`Pattern`] or a [`PatternError`] with its path out.
//! - `envelope`: the EventBridge event CloudTrail's integration builds from a record, for
//!   envelope-form patterns, never materialised.
//! - `eval`: matching a compiled pattern against an event.
//! - `explain`: why a pattern matches an event, or why not.
//! - `ops`: wildcards, numeric ranges, CIDR blocks, case-insensitive comparison.

mod anchor;
mod compile;
mod envelope;
mod eval;
mod explain;
mod ops;

use std::cell::OnceCell;
use std::fmt;

use serde_json::Value;

pub(crate) use anchor::cost as anchor_cost;
pub use anchor::{Anchor, Path, ScalarTest, Test};
pub use envelope::{
    detail_type_for, event_type_for, service_len, service_of, source_for, Envelope,
};
pub use explain::{Explanation, Miss};
pub(crate) use ops::fold_into;

/// A compiled event pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    root: ObjectPattern,
    form: Form,
    /// The pattern as written, for the checks made when rules load.
    source: std::sync::Arc<Value>,
}

/// What a pattern is written against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Against the CloudTrail record itself (`{"eventName": [...]}`).
    Record,
    /// Against the EventBridge event CloudTrail's integration builds from the record
    /// (`{"source": [...], "detail": {...}}`).
    Envelope,
}

/// Why a pattern was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PatternError {
    /// JSON path of the fault inside the pattern, e.g. `$.detail.state[0].numeric[2]`.
    pub path: String,
    /// What is wrong there.
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ObjectPattern {
    /// Fields that must all match (AND).
    pub(crate) fields: Vec<(Box<str>, FieldPattern)>,
    /// `$or` groups: each group needs one of its branches to match.
    pub(crate) ors: Vec<Vec<ObjectPattern>>,
}

#[derive(Debug, Clone)]
pub(crate) enum FieldPattern {
    Object(ObjectPattern),
    Leaf(LeafPattern),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct LeafPattern {
    /// Value matchers, OR'd.
    pub(crate) matchers: Vec<ValueMatcher>,
    /// `{"exists": false}` is among the values: an absent field matches.
    pub(crate) matches_absent: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum ValueMatcher {
    String(Box<str>),
    Number(f64),
    Bool(bool),
    Null,
    Prefix(Box<str>),
    PrefixIgnoreCase(Box<str>),
    Suffix(Box<str>),
    SuffixIgnoreCase(Box<str>),
    EqualsIgnoreCase(Box<str>),
    Wildcard(ops::Wildcard),
    Numeric(ops::Range),
    Cidr(ops::Cidr),
    /// `{"exists": true}`: any leaf value.
    Exists,
    AnythingBut(AnythingBut),
}

#[derive(Debug, Clone)]
pub(crate) enum AnythingBut {
    Strings(Vec<Box<str>>),
    Numbers(Vec<f64>),
    Prefix(Vec<Box<str>>),
    Suffix(Vec<Box<str>>),
    EqualsIgnoreCase(Vec<Box<str>>),
    Wildcard(Vec<ops::Wildcard>),
}

impl Pattern {
    /// Compiles a pattern, refusing anything EventBridge would refuse.
    pub fn compile(pattern: &Value) -> Result<Self, PatternError> {
        compile::compile(pattern)
    }

    /// The pattern as written.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Whether the pattern is written against the record or the EventBridge envelope.
    pub fn form(&self) -> Form {
        self.form
    }

    /// The exact strings the pattern accepts at a path (dotted keys from the pattern's root,
    /// through `$or` branches too), for checks made when rules load.
    pub fn strings_at(&self, path: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        strings_at(&self.root, path, &mut out);
        out
    }

    /// Whether the pattern matches the event.
    /// Whether the pattern matches, with the fields that made it match or the first place it
    /// failed. Paths are dotted; an envelope-form pattern matched against a record names the
    /// record's own fields (`detail.eventName` is `eventName`).
    pub fn explain(&self, event: &Event<'_>) -> Explanation {
        let envelope_over_record = self.form == Form::Envelope && event.is_record;
        let explained = if envelope_over_record {
            explain::explain(&self.root, eval::Node::Envelope(event.envelope()))
        } else {
            explain::explain(&self.root, eval::Node::Json(event.value))
        };
        if !envelope_over_record {
            return explained;
        }
        let record_path = |p: String| match p.strip_prefix("detail.") {
            Some(inner) => inner.to_owned(),
            None => p,
        };
        match explained {
            Explanation::Matched(hits) => {
                Explanation::Matched(hits.into_iter().map(|(p, v)| (record_path(p), v)).collect())
            }
            Explanation::Missed(miss) => Explanation::Missed(Miss {
                path: record_path(miss.path),
                ..miss
            }),
        }
    }

    pub fn matches(&self, event: &Event<'_>) -> bool {
        match (self.form, event.is_record) {
            (Form::Envelope, true) => eval::matches_envelope(&self.root, event.envelope()),
            _ => eval::matches_value(&self.root, event.value),
        }
    }
}

/// What a pattern is matched against: a CloudTrail record, or an EventBridge event as it stands.
///
/// A record-form pattern sees a record as it is; an envelope-form pattern sees the EventBridge
/// event CloudTrail's integration would build around it, built once per record, on first use,
/// however many patterns ask. Every pattern sees an EventBridge event as it stands.
/// An event EventBridge delivered, as the rules see it.
#[derive(Debug, Clone, Copy)]
pub enum BusEvent<'a> {
    /// A CloudTrail event (`… via CloudTrail`): its `detail` is the record, matched exactly as
    /// the same record read from S3 (record-form and envelope-form rules alike).
    CloudTrail(&'a Value),
    /// A service's own event (`aws.backup` `Backup Job State Change`, …): matched by
    /// envelope-form rules only, against the event as it stands.
    Native(&'a Value),
}

impl<'a> BusEvent<'a> {
    pub fn of(event: &'a Value) -> Self {
        let detail_type = event.get("detail-type").and_then(Value::as_str);
        match (detail_type.and_then(event_type_for), event.get("detail")) {
            (Some(_), Some(record @ Value::Object(_))) => BusEvent::CloudTrail(record),
            _ => BusEvent::Native(event),
        }
    }
}

impl Pattern {
    /// Whether the pattern matches a service's own event (only envelope-form patterns can).
    pub fn matches_native(&self, event: &Value) -> bool {
        self.form == Form::Envelope && eval::matches_value(&self.root, event)
    }
}

/// [`Pattern::explain`] for an event EventBridge delivered.
pub fn explain_bus_event(pattern: &Pattern, event: &Value) -> Explanation {
    match BusEvent::of(event) {
        BusEvent::CloudTrail(record) => pattern.explain(&Event::record(record)),
        BusEvent::Native(event) if pattern.form == Form::Envelope => {
            explain::explain(&pattern.root, eval::Node::Json(event))
        }
        BusEvent::Native(_) => Explanation::Missed(Miss {
            path: "$".into(),
            wanted: "a CloudTrail record (the pattern is written against the record)".into(),
            found: "a service's own EventBridge event, which only envelope-form patterns \
                    (source, detail-type, detail) match"
                .into(),
        }),
    }
}

fn strings_at(pattern: &ObjectPattern, path: &[&str], out: &mut Vec<String>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    for (key, field) in &pattern.fields {
        if &**key != *first {
            continue;
        }
        match (field, rest.is_empty()) {
            (FieldPattern::Leaf(leaf), true) => {
                for m in &leaf.matchers {
                    if let ValueMatcher::String(s) = m {
                        out.push(s.to_string());
                    }
                }
            }
            (FieldPattern::Object(inner), false) => strings_at(inner, rest, out),
            _ => {}
        }
    }
    for branch in pattern.ors.iter().flatten() {
        strings_at(branch, path, out);
    }
}

pub struct Event<'a> {
    value: &'a Value,
    is_record: bool,
    envelope: OnceCell<Envelope<'a>>,
}

impl<'a> Event<'a> {
    /// A CloudTrail record.
    pub fn record(record: &'a Value) -> Self {
        Event {
            value: record,
            is_record: true,
            envelope: OnceCell::new(),
        }
    }

    /// An EventBridge event (or any JSON event) as it stands.
    pub fn eventbridge(event: &'a Value) -> Self {
        Event {
            value: event,
            is_record: false,
            envelope: OnceCell::new(),
        }
    }

    /// The JSON value itself.
    pub fn value(&self) -> &'a Value {
        self.value
    }

    fn envelope(&self) -> &Envelope<'a> {
        self.envelope.get_or_init(|| Envelope::new(self.value))
    }
}

/// Builds JSON paths for error messages: `$.a.b[0]`, with `["…"]` for keys that are not plain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath(String);

impl JsonPath {
    pub fn root() -> Self {
        JsonPath("$".into())
    }

    pub fn key(&self, key: &str) -> Self {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if plain {
            JsonPath(format!("{}.{key}", self.0))
        } else {
            JsonPath(format!("{}[{}]", self.0, Value::String(key.to_owned())))
        }
    }

    pub fn index(&self, i: usize) -> Self {
        JsonPath(format!("{}[{i}]", self.0))
    }

    /// Appends a path reported inside a nested document (`$.detail.state` under
    /// `$.rules[0].pattern` gives `$.rules[0].pattern.detail.state`).
    pub fn join(&self, inner: &str) -> Self {
        JsonPath(format!(
            "{}{}",
            self.0,
            inner.strip_prefix('$').unwrap_or(inner)
        ))
    }

    pub(crate) fn error(&self, reason: impl Into<String>) -> PatternError {
        PatternError {
            path: self.0.clone(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
