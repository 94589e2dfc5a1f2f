//! What a file holds, told from its first decoded bytes: CloudTrail's S3 log
//! (`{"Records": [`), one of the other shapes people keep records in (a JSON array of records,
//! newline-delimited records from CloudTrail Lake or Athena, the output of
//! `aws cloudtrail lookup-events`, a single record), or something else a trail's bucket holds
//! (a digest file, an AWS Config file).
//!
//! The command line reads every shape (a directory scan recognises logs by this when their name
//! says nothing); the function reads only CloudTrail's S3 format.

use std::fmt;
use std::path::Path;

use super::decode::Decoder;
use super::ReadError;

/// Which document shapes a reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shapes {
    /// CloudTrail's S3 log format only: `{"Records": [ … ]}` (the function).
    #[default]
    S3Log,
    /// Every shape [`Content`] recognises as holding records (the command line).
    Any,
}

/// What a file's first bytes say it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// `{"Records": [` — CloudTrail's S3 log format.
    Log,
    /// `[{…}, …]` — a JSON array of records.
    RecordArray,
    /// `{"Events": [{"CloudTrailEvent": "…"}, …]}` — `aws cloudtrail lookup-events` output.
    LookupEvents,
    /// One record, or records one after another (newline-delimited JSON).
    RecordStream,
    /// A CloudTrail digest file (integrity validation): no records.
    Digest,
    /// An AWS Config snapshot or history file.
    Config,
    /// Nothing at all.
    Empty,
    /// Something else; the text says what it starts with.
    Other(String),
}

impl Content {
    /// Whether this content holds CloudTrail records to read.
    pub fn has_records(&self) -> bool {
        matches!(
            self,
            Content::Log | Content::RecordArray | Content::LookupEvents | Content::RecordStream
        )
    }
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::Log => f.write_str("a CloudTrail log"),
            Content::RecordArray => f.write_str("a JSON array of records"),
            Content::LookupEvents => f.write_str("`aws cloudtrail lookup-events` output"),
            Content::RecordStream => f.write_str("CloudTrail records (one or one per line)"),
            Content::Digest => f.write_str("a CloudTrail digest file"),
            Content::Config => f.write_str("an AWS Config file"),
            Content::Empty => f.write_str("an empty file"),
            Content::Other(what) => f.write_str(what),
        }
    }
}

/// Fields every CloudTrail record has one of first (versions 1.0–1.11, Insights included).
const RECORD_KEYS: [&str; 12] = [
    "eventVersion",
    "userIdentity",
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "eventID",
    "eventType",
    "recipientAccountId",
    "eventCategory",
    "insightDetails",
];

/// The first decoded bytes of a file say what it holds. `head` may be cut anywhere; when it
/// is cut before the first key, the answer is `Other` (a reader then reads it as a log, and
/// says exactly what it found).
pub fn content(head: &[u8]) -> Content {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let mut rest = skip_ws(head);
    match rest.first() {
        None => Content::Empty,
        Some(b'[') => {
            rest = skip_ws(&rest[1..]);
            match rest.first() {
                Some(b'{' | b']') | None => Content::RecordArray,
                Some(_) => Content::Other("a JSON array of things that are not records".into()),
            }
        }
        Some(b'{') => {
            rest = skip_ws(&rest[1..]);
            let Some(key) = first_key(rest) else {
                return Content::Other("a JSON object".into());
            };
            match key {
                "Records" => Content::Log,
                "Events" => Content::LookupEvents,
                "awsAccountId" | "digestStartTime" | "digestPublicKeyFingerprint" => {
                    Content::Digest
                }
                "fileVersion" | "configSnapshotId" | "configurationItems" => Content::Config,
                k if RECORD_KEYS.contains(&k) => Content::RecordStream,
                k => Content::Other(format!("a JSON object whose first key is {k:?}")),
            }
        }
        Some(&b) => Content::Other(format!(
            "neither JSON nor gzip (it starts with {})",
            if b.is_ascii_graphic() {
                format!("'{}'", b as char)
            } else {
                format!("byte 0x{b:02x}")
            }
        )),
    }
}

fn skip_ws(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    &b[n..]
}

/// The first key of an object whose `{` is already passed, when it is a plain string (the keys
/// that tell shapes apart have no escapes).
fn first_key(b: &[u8]) -> Option<&str> {
    let body = b.strip_prefix(b"\"")?;
    let end = memchr::memchr2(b'"', b'\\', body)?;
    if body[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&body[..end]).ok()
}

/// What the file at `path` holds, from its first decoded bytes (gzip inflated).
pub fn sniff(path: &Path) -> Result<Content, ReadError> {
    let file = std::fs::File::open(path).map_err(|source| ReadError::Io { offset: 0, source })?;
    let mut decoder = match Decoder::inline(file) {
        Ok(decoder) => decoder,
        Err(ReadError::Empty) => return Ok(Content::Empty),
        Err(e) => return Err(e),
    };
    let mut head = Vec::new();
    let mut chunk = Vec::new();
    // Enough to pass a byte-order mark, white space and the longest first key.
    while head.len() < 4096 {
        match decoder.next_chunk(&mut chunk, head.len() as u64) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            // Corrupt gzip still has a head worth judging; a log's reader reports the rest.
            Err(ReadError::Gzip { .. }) if !head.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(content(&head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_told_by_their_first_key() {
        let cases: [(&[u8], Content); 12] = [
            (br#"{"Records":[{}]}"#, Content::Log),
            (b"\xEF\xBB\xBF \n{ \"Records\" : [", Content::Log),
            (br#"[{"eventVersion":"1.08"}]"#, Content::RecordArray),
            (b"[ ]", Content::RecordArray),
            (
                br#"{"Events": [{"CloudTrailEvent": "{}"}]}"#,
                Content::LookupEvents,
            ),
            (
                b"{\"eventVersion\":\"1.08\"}\n{\"eventVersion\":\"1.08\"}\n",
                Content::RecordStream,
            ),
            (
                br#"{"awsAccountId":"123456789012","digestStartTime":"x"}"#,
                Content::Digest,
            ),
            (
                br#"{"fileVersion":"1.0","configSnapshotId":"x"}"#,
                Content::Config,
            ),
            (b"  \n", Content::Empty),
            (
                b"hello",
                Content::Other("neither JSON nor gzip (it starts with 'h')".into()),
            ),
            (
                br#"{"name": 1}"#,
                Content::Other("a JSON object whose first key is \"name\"".into()),
            ),
            (b"{\"Reco", Content::Other("a JSON object".into())),
        ];
        for (head, want) in cases {
            assert_eq!(content(head), want, "{}", String::from_utf8_lossy(head));
        }
        assert!(Content::RecordStream.has_records() && !Content::Digest.has_records());
    }
}
