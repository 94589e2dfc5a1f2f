//! Reading CloudTrail log files one record at a time, in bounded memory, with every fault
//! reported by byte offset or record index.
//!
//! # Files
//! In the order bytes meet them:
//! - `decode`: gzip or plain, told apart by the magic bytes; inflated inline or on a thread of
//!   its own, with UTF-8 checked there.
//! - `gunzip`: gzip members, their headers and checksums.
//! - [`shape`]: which shape a document is (CloudTrail's `{"Records": [...]}`, an array, one a
//!   line, `lookup-events` output, EventBridge events), told from its first bytes.
//! - [`split`]: the document split into one record's bytes at a time ([`LogReader`]);
//!   file-level faults are a [`ReadError`].
//! - `strings`: string runs found sixteen bytes at a time (SSE2, NEON) for the splitter.
//! - `grammar`: each record's grammar checked on the way, so that a record no rule wants is
//!   known valid without a second pass.
//! - [`peek`]: while splitting, the values at the paths the rule index names, read from the raw
//!   bytes, so that a record no rule can match is never built.
//! - [`record`]: the verdict on one record's bytes — built, checked, or refused with a
//!   [`RecordError`] — the same whichever way it is reached.
//! - `build`: a record the splitter vouched for built into serde_json's value without checking
//!   again what the splitter checked.

mod build;
mod decode;
mod grammar;
mod gunzip;
pub mod peek;
pub mod record;
pub mod shape;
pub mod split;
pub(crate) mod strings;

use std::io;

pub use build::recycle;
pub use peek::{scalar_bytes, Leaf, PeekPaths, Peeked, PeekedAt, PeekedBatch};
pub use record::{RawRecord, RecordError, RecordErrorKind, DEEP_RECORD};
pub use shape::{content, sniff, Content, Shapes};
pub use split::{LogReader, Parsed, Split};

/// The default cap on decompressed bytes per object (2 GiB), against decompression bombs.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 2 << 30;
/// The default cap on one record's bytes (16 MiB); CloudTrail omits fields over 100 KB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 << 20;

/// Size limits a reader enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_decompressed_bytes: u64,
    pub max_record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// A fault that ends the reading of a whole file. Offsets count decompressed bytes.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the file is empty (0 bytes)")]
    Empty,
    /// The stream below the decoder failed (a network fault, a closed file).
    #[error("read failed at byte {offset}: {source}")]
    Io { offset: u64, source: io::Error },
    /// The compressed data itself is wrong.
    #[error("gzip data is corrupt or truncated (after {offset} decompressed bytes): {source}")]
    Gzip { offset: u64, source: io::Error },
    #[error("decompressed size passes the limit of {limit} bytes (MAX_DECOMPRESSED_BYTES); refusing the rest")]
    TooLarge { limit: u64 },
    #[error("not a CloudTrail log: byte {offset}: expected {expected}, found {found}")]
    Syntax {
        offset: u64,
        expected: &'static str,
        found: String,
    },
    #[error("not a CloudTrail log: the file ends at byte {offset} inside {inside}")]
    Truncated { offset: u64, inside: String },
    #[error("not a CloudTrail log: no {key:?} array{hint}")]
    NoRecords { key: &'static str, hint: String },
    #[error("not a CloudTrail log: {key:?} at byte {offset} is {found}, not an array")]
    RecordsNotArray {
        key: &'static str,
        offset: u64,
        found: String,
    },
    #[error("not a CloudTrail log: {key:?} appears twice (again at byte {offset})")]
    DuplicateRecords { key: &'static str, offset: u64 },
}

impl ReadError {
    /// Whether reading again could succeed: the stream broke off (a network fault), as opposed
    /// to content that is wrong and will stay wrong.
    pub fn is_transient(&self) -> bool {
        matches!(self, ReadError::Io { .. })
    }
}
