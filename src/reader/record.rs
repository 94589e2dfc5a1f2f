//! Verdicts on one record's bytes: built into a JSON object, checked without being built, or
//! refused with a [`RecordError`] that says why. Building and checking always agree: a record
//! that checking accepts is one that building accepts, and a refusal is worded the same way.

use std::fmt;

use serde_json::Value;

use crate::describe::json_kind;

/// A record that could not be read; the records around it were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The record's index in the `Records` array (0-based).
    pub index: usize,
    /// Decompressed byte offset where the record starts.
    pub offset: u64,
    pub kind: RecordErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordErrorKind {
    /// The record is not valid JSON; the message says where inside it.
    InvalidJson(String),
    /// The record is valid JSON but not an object.
    NotObject(&'static str),
    /// The record is larger than the limit; it was passed over without being held in memory.
    TooLarge { bytes: u64, limit: usize },
    /// An element of `lookup-events` output that does not carry a record; the text says why.
    NotLookupEvent(String),
    /// An item of a file of EventBridge events that is not one; the text says what it is.
    NotEvent(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {} (byte {}): ", self.index, self.offset)?;
        match &self.kind {
            RecordErrorKind::InvalidJson(msg) => write!(f, "invalid JSON: {msg}"),
            RecordErrorKind::NotObject(kind) => write!(f, "not a JSON object but {kind}"),
            RecordErrorKind::TooLarge { bytes, limit } => write!(
                f,
                "{bytes} bytes, over the MAX_RECORD_BYTES limit of {limit}; skipped"
            ),
            RecordErrorKind::NotLookupEvent(why) => write!(f, "not a lookup-events record: {why}"),
            RecordErrorKind::NotEvent(what) => write!(f, "not an EventBridge event: {what}"),
        }
    }
}

impl std::error::Error for RecordError {}

/// One record's bytes as the splitter hands them out: one JSON value, checked so far only for
/// its strings and nesting.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'r> {
    pub index: usize,
    /// Decompressed byte offset where the record starts.
    pub offset: u64,
    pub bytes: &'r [u8],
    /// The bytes are known to be UTF-8 (checked while inflating).
    pub utf8: bool,
    /// Only building the record can judge it (see [`RawRecord::must_build`]).
    pub must_build: bool,
    /// The splitter found the bytes to be one JSON object (its grammar checked on the way):
    /// given UTF-8, and short of what `must_build` leaves to building, serde_json builds it.
    pub valid: bool,
}

/// Records nested this deep are always built: building refuses nesting past serde_json's limit
/// (128), which checking alone would not notice.
pub const DEEP_RECORD: usize = 100;

impl RawRecord<'_> {
    /// Builds the record: a JSON object, or why it is not one.
    pub fn build(&self) -> Result<Value, RecordError> {
        // A record the reader vouched for is built without checking again what it checked
        // (see `build.rs`); anything else, and anything that builder does not follow, by
        // serde_json, whose faults are the ones reported.
        if self.valid && !self.must_build {
            if let Some(record @ Value::Object(_)) = std::str::from_utf8(self.bytes)
                .ok()
                .and_then(super::build::vouched)
            {
                return Ok(record);
            }
        }
        match serde_json::from_slice::<Value>(self.bytes) {
            Ok(record @ Value::Object(_)) => Ok(record),
            Ok(other) => Err(self.error(RecordErrorKind::NotObject(json_kind(&other)))),
            Err(e) => Err(self.error(RecordErrorKind::InvalidJson(e.to_string()))),
        }
    }

    /// Checks the record as [`RawRecord::build`] would, without building it: `Ok` when it is a
    /// valid JSON object, else the same error `build` would report. Only for a record that
    /// need not be built ([`RawRecord::must_build`]): checking passes over what it does not
    /// keep, so it cannot tell a number out of range, half a surrogate pair, or nesting past
    /// the parser's limit.
    pub fn check(&self) -> Result<(), RecordError> {
        // Building a record also checks that its strings are UTF-8; checking must too.
        let utf8 = self.utf8 || std::str::from_utf8(self.bytes).is_ok();
        if utf8 && self.valid {
            return Ok(());
        }
        let valid = utf8 && serde_json::from_slice::<serde::de::IgnoredAny>(self.bytes).is_ok();
        if !valid {
            // Rare: build it as `build` does, so that the message is the same word for word
            // (the two deserializers word some faults differently).
            return self.build().map(drop);
        }
        let kind = match self.bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => return Ok(()),
            Some(b'"') => "a string",
            Some(b'[') => "an array",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        };
        Err(self.error(RecordErrorKind::NotObject(kind)))
    }

    /// Whether only building the record can judge it: nested [`DEEP_RECORD`] deep or more, or
    /// holding a number with an exponent or of hundreds of digits, or a `\\uD…` escape.
    pub fn must_build(&self) -> bool {
        self.must_build
    }

    fn error(&self, kind: RecordErrorKind) -> RecordError {
        RecordError {
            index: self.index,
            offset: self.offset,
            kind,
        }
    }
}
