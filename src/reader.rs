//! Reading CloudTrail log files: gzip (one member or several) or plain JSON, told apart by the
//! magic bytes, yielding the records of `{"Records": [ … ]}` one at a time.
//!
//! Memory does not grow with the file: the reader splits the `Records` array on the raw bytes
//! (tracking strings and nesting), holds one record's bytes at a time, and parses only that
//! record. Because boundaries are found structurally, a record that is not valid JSON, not an
//! object, or larger than [`Limits::max_record_bytes`] is skipped and reported with its index
//! and byte offset while the records after it are still read. Whatever breaks the file itself
//! (truncated or corrupt gzip, no `Records`, broken structure between records, more than
//! [`Limits::max_decompressed_bytes`]) is a [`ReadError`] with the byte offset where it happened.

use std::fmt;
use std::io::{self, BufReader, Cursor, Read};

use flate2::bufread::MultiGzDecoder;
use serde_json::Value;

use crate::json::kind;

/// The default cap on decompressed bytes per object (2 GiB), against decompression bombs.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 2 << 30;
/// The default cap on one record's bytes (16 MiB); CloudTrail omits fields over 100 KB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 << 20;

const CHUNK: usize = 64 << 10;

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
    #[error("read failed at byte {offset}: {source}")]
    Io { offset: u64, source: io::Error },
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
    #[error("not a CloudTrail log: no \"Records\" array{hint}")]
    NoRecords { hint: String },
    #[error("not a CloudTrail log: \"Records\" at byte {offset} is {found}, not an array")]
    RecordsNotArray { offset: u64, found: String },
    #[error("not a CloudTrail log: \"Records\" appears twice (again at byte {offset})")]
    DuplicateRecords { offset: u64 },
}

impl ReadError {
    /// Whether reading again could succeed: the stream broke off (a network fault), as opposed
    /// to content that is wrong and will stay wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            ReadError::Io { .. } => true,
            ReadError::Gzip { source, .. } => !matches!(
                source.kind(),
                io::ErrorKind::InvalidData
                    | io::ErrorKind::InvalidInput
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

/// A record that was skipped; the records around it were read.
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
    /// The record is larger than the limit; it was skipped without being held in memory.
    TooLarge { bytes: u64, limit: usize },
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
        }
    }
}

impl std::error::Error for RecordError {}

/// One step of reading.
#[derive(Debug)]
pub enum Item {
    /// A record, with its index and byte offset.
    Record {
        index: usize,
        offset: u64,
        record: Value,
    },
    /// A record that could not be read.
    Skipped(RecordError),
}

/// The input with its first bytes (read to sniff the format) put back in front.
type Sniffed<R> = io::Chain<io::Take<Cursor<[u8; 2]>>, R>;

enum Decoder<R: Read> {
    Plain(BufReader<Sniffed<R>>),
    Gzip(Box<MultiGzDecoder<BufReader<Sniffed<R>>>>),
}

impl<R: Read> Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
        }
    }
}

/// Where the reader stands in the top-level object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the next key of the top-level object (or its closing brace).
    Keys {
        first: bool,
    },
    /// Inside `Records`, before the next element (or the closing bracket).
    Records {
        first: bool,
    },
    Done,
}

/// The records of one CloudTrail log file, read one at a time.
pub struct LogReader<R: Read> {
    src: Decoder<R>,
    gzip: bool,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// Decompressed bytes before `buf[0]`.
    base: u64,
    eof: bool,
    limits: Limits,
    state: State,
    seen_records: bool,
    keys_seen: Vec<String>,
    index: usize,
    record: Vec<u8>,
}

impl<R: Read> LogReader<R> {
    /// Opens a log: sniffs gzip by its magic bytes and reads up to the first record.
    pub fn new(input: R, limits: Limits) -> Result<Self, ReadError> {
        // Sniff the gzip magic from the first two bytes, however the input hands them out.
        let mut input = input;
        let mut head = [0u8; 2];
        let mut got = 0;
        while got < head.len() {
            match input.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(ReadError::Io { offset: 0, source }),
            }
        }
        if got == 0 {
            return Err(ReadError::Empty);
        }
        let gzip = head[..got] == [0x1f, 0x8b];
        let raw = BufReader::with_capacity(CHUNK, Cursor::new(head).take(got as u64).chain(input));
        let src = if gzip {
            Decoder::Gzip(Box::new(MultiGzDecoder::new(raw)))
        } else {
            Decoder::Plain(raw)
        };
        let mut reader = LogReader {
            src,
            gzip,
            buf: vec![0; CHUNK].into_boxed_slice(),
            pos: 0,
            len: 0,
            base: 0,
            eof: false,
            limits,
            state: State::Keys { first: true },
            seen_records: false,
            keys_seen: Vec::new(),
            index: 0,
            record: Vec::new(),
        };
        reader.open()?;
        Ok(reader)
    }

    /// Whether the input was gzip.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Decompressed bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Refills the buffer when it is used up; `false` at the end of the input.
    fn fill(&mut self) -> Result<bool, ReadError> {
        if self.pos < self.len {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        self.base += self.len as u64;
        self.pos = 0;
        self.len = 0;
        let n = loop {
            match self.src.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) if self.gzip => {
                    return Err(ReadError::Gzip {
                        offset: self.base,
                        source,
                    })
                }
                Err(source) => {
                    return Err(ReadError::Io {
                        offset: self.base,
                        source,
                    })
                }
            }
        };
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        if self.base + n as u64 > self.limits.max_decompressed_bytes {
            return Err(ReadError::TooLarge {
                limit: self.limits.max_decompressed_bytes,
            });
        }
        self.len = n;
        Ok(true)
    }

    fn peek(&mut self) -> Result<Option<u8>, ReadError> {
        Ok(if self.fill()? {
            Some(self.buf[self.pos])
        } else {
            None
        })
    }

    /// The next byte that is not JSON white space, not consumed.
    fn peek_token(&mut self) -> Result<Option<u8>, ReadError> {
        while let Some(b) = self.peek()? {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    fn expect(&mut self, byte: u8, expected: &'static str, inside: &str) -> Result<(), ReadError> {
        match self.peek_token()? {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            Some(b) => Err(ReadError::Syntax {
                offset: self.offset(),
                expected,
                found: describe_byte(b),
            }),
            None => Err(self.truncated(inside)),
        }
    }

    fn truncated(&self, inside: &str) -> ReadError {
        ReadError::Truncated {
            offset: self.offset(),
            inside: inside.to_owned(),
        }
    }

    fn open(&mut self) -> Result<(), ReadError> {
        // A UTF-8 byte-order mark is tolerated before the document.
        if self.peek()? == Some(0xEF)
            && self.buf[self.pos..self.len].starts_with(&[0xEF, 0xBB, 0xBF])
        {
            self.pos += 3;
        }
        match self.peek_token()? {
            Some(b'{') => self.pos += 1,
            Some(b) => {
                return Err(ReadError::Syntax {
                    offset: self.offset(),
                    expected: "a JSON object ('{')",
                    found: describe_byte(b),
                })
            }
            None => return Err(self.truncated("the document (no JSON at all)")),
        }
        self.advance_to_records()
    }

    /// Walks the top-level keys until the `Records` array opens, or the object ends.
    fn advance_to_records(&mut self) -> Result<(), ReadError> {
        loop {
            let State::Keys { first } = self.state else {
                return Ok(());
            };
            match self.peek_token()? {
                Some(b'}') => {
                    self.pos += 1;
                    self.finish()?;
                    return Ok(());
                }
                Some(_) if !first => self.expect(
                    b',',
                    "',' or '}' after a top-level value",
                    "the top-level object",
                )?,
                Some(_) => {}
                None => return Err(self.truncated("the top-level object")),
            }
            let key_offset = self.offset();
            let key = self.read_key()?;
            self.expect(b':', "':' after a key", "the top-level object")?;
            if key == "Records" {
                if self.seen_records {
                    return Err(ReadError::DuplicateRecords { offset: key_offset });
                }
                self.seen_records = true;
                match self.peek_token()? {
                    Some(b'[') => {
                        self.pos += 1;
                        self.state = State::Records { first: true };
                        return Ok(());
                    }
                    Some(_) => {
                        let offset = self.offset();
                        let found = self.skip_value_kind()?;
                        return Err(ReadError::RecordsNotArray { offset, found });
                    }
                    None => return Err(self.truncated("the top-level object")),
                }
            }
            if self.keys_seen.len() < 8 {
                self.keys_seen.push(key);
            }
            self.scan_value(false)?;
            self.state = State::Keys { first: false };
        }
    }

    /// After the top-level object closes: only white space may follow.
    fn finish(&mut self) -> Result<(), ReadError> {
        self.state = State::Done;
        match self.peek_token()? {
            None => {}
            Some(b) => {
                return Err(ReadError::Syntax {
                    offset: self.offset(),
                    expected: "the end of the file after the top-level object",
                    found: describe_byte(b),
                })
            }
        }
        if !self.seen_records {
            return Err(ReadError::NoRecords { hint: self.hint() });
        }
        Ok(())
    }

    fn hint(&self) -> String {
        let has = |k: &str| self.keys_seen.iter().any(|s| s == k);
        if has("logFiles") || has("digestPublicKeyFingerprint") || has("digestSignatureAlgorithm") {
            "; this is a CloudTrail digest file".into()
        } else if has("configurationItems") || has("configSnapshotId") || has("fileVersion") {
            "; this looks like an AWS Config file".into()
        } else if self.keys_seen.is_empty() {
            "; the object is empty".into()
        } else {
            let keys: Vec<String> = self.keys_seen.iter().map(|k| format!("{k:?}")).collect();
            format!("; top-level keys: {}", keys.join(", "))
        }
    }

    fn read_key(&mut self) -> Result<String, ReadError> {
        match self.peek_token()? {
            Some(b'"') => {}
            Some(b) => {
                return Err(ReadError::Syntax {
                    offset: self.offset(),
                    expected: "a quoted key",
                    found: describe_byte(b),
                })
            }
            None => return Err(self.truncated("the top-level object")),
        }
        let offset = self.offset();
        self.record.clear();
        self.scan_value(true)?;
        serde_json::from_slice::<String>(&self.record).map_err(|_| ReadError::Syntax {
            offset,
            expected: "a valid JSON string as a key",
            found: "a malformed string".into(),
        })
    }

    /// Skips a value and says what it was, for error messages.
    fn skip_value_kind(&mut self) -> Result<String, ReadError> {
        self.record.clear();
        self.scan_value(true)?;
        let shown = String::from_utf8_lossy(&self.record[..self.record.len().min(40)]).into_owned();
        Ok(match self.record.first() {
            Some(b'{') => "an object".into(),
            Some(b'"') => format!("a string {shown}"),
            _ => shown,
        })
    }

    /// Reads the next record, or `None` at the end of the `Records` array (and the file).
    pub fn next_item(&mut self) -> Result<Option<Item>, ReadError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Keys { .. } => {
                    self.advance_to_records()?;
                    continue;
                }
                State::Records { first } => {
                    match self.peek_token()? {
                        Some(b']') => {
                            self.pos += 1;
                            self.state = State::Keys { first: false };
                            continue;
                        }
                        Some(_) if !first => {
                            self.expect(b',', "',' or ']' between records", "the Records array")?
                        }
                        Some(_) => {}
                        None => {
                            return Err(self.truncated(&format!(
                                "the Records array (before record {})",
                                self.index
                            )))
                        }
                    }
                    self.state = State::Records { first: false };
                    if self.peek_token()?.is_none() {
                        return Err(self.truncated(&format!(
                            "the Records array (before record {})",
                            self.index
                        )));
                    }
                    let index = self.index;
                    self.index += 1;
                    let offset = self.offset();
                    self.record.clear();
                    let stored = self.scan_value(true)?;
                    let skipped = |kind| {
                        Item::Skipped(RecordError {
                            index,
                            offset,
                            kind,
                        })
                    };
                    if !stored {
                        let bytes = self.offset() - offset;
                        return Ok(Some(skipped(RecordErrorKind::TooLarge {
                            bytes,
                            limit: self.limits.max_record_bytes,
                        })));
                    }
                    return Ok(Some(match serde_json::from_slice::<Value>(&self.record) {
                        Ok(record @ Value::Object(_)) => Item::Record {
                            index,
                            offset,
                            record,
                        },
                        Ok(other) => skipped(RecordErrorKind::NotObject(kind(&other))),
                        Err(e) => skipped(RecordErrorKind::InvalidJson(e.to_string())),
                    }));
                }
            }
        }
    }

    /// Scans one JSON value from the current token, copying its bytes into `self.record` when
    /// `store` is set and the value fits in the record limit. Returns whether it was stored
    /// whole. Only the structure is checked here (strings, nesting); the bytes are parsed later.
    fn scan_value(&mut self, store: bool) -> Result<bool, ReadError> {
        let limit = self.limits.max_record_bytes;
        let mut keep = store;
        let mut depth: usize = 0;
        let mut in_string = false;
        let mut escape = false;
        let mut started = false;
        loop {
            if !self.fill()? {
                return Err(
                    self.truncated(if self.state == (State::Records { first: false }) {
                        "a record"
                    } else {
                        "a top-level value"
                    }),
                );
            }
            let chunk = &self.buf[self.pos..self.len];
            let mut i = 0;
            let mut end = None;
            while i < chunk.len() {
                if in_string {
                    if escape {
                        escape = false;
                        i += 1;
                        continue;
                    }
                    match memchr::memchr2(b'"', b'\\', &chunk[i..]) {
                        None => i = chunk.len(),
                        Some(j) => {
                            i += j;
                            if chunk[i] == b'\\' {
                                escape = true;
                            } else {
                                in_string = false;
                                if depth == 0 {
                                    end = Some(i + 1);
                                    break;
                                }
                            }
                            i += 1;
                        }
                    }
                    continue;
                }
                let b = chunk[i];
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 && started => {
                        // The end of a bare scalar (number, true, false, null).
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
                started = true;
                i += 1;
            }
            started = true;
            let used = end.unwrap_or(chunk.len());
            if keep {
                if self.record.len() + used > limit {
                    keep = false;
                    self.record.clear();
                } else {
                    self.record.extend_from_slice(&chunk[..used]);
                }
            }
            self.pos += used;
            if end.is_some() {
                return Ok(keep || !store);
            }
        }
    }
}

impl<R: Read> Iterator for LogReader<R> {
    type Item = Result<Item, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_item() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => None,
            Err(e) => {
                self.state = State::Done;
                Some(Err(e))
            }
        }
    }
}

fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(bytes: &[u8], limits: Limits) -> Result<Vec<Item>, ReadError> {
        LogReader::new(bytes, limits)?.collect()
    }

    fn records(items: &[Item]) -> Vec<&Value> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Record { record, .. } => Some(record),
                Item::Skipped(_) => None,
            })
            .collect()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn plain_and_gzip_give_the_same_records() {
        let doc = br#"{"Records":[{"eventName":"A","n":[1,{"x":"}]"}]}, {"eventName":"B\"}"}]}"#;
        let plain = read_all(doc, Limits::default()).unwrap();
        let gz = read_all(&gzip(doc), Limits::default()).unwrap();
        assert_eq!(records(&plain), records(&gz));
        assert_eq!(records(&plain).len(), 2);
        assert_eq!(records(&plain)[1]["eventName"], "B\"}");
    }

    #[test]
    fn multi_member_gzip_is_one_stream() {
        let mut bytes = gzip(br#"{"Records":[{"a":1},"#);
        bytes.extend(gzip(br#"{"a":2}]}"#));
        assert_eq!(
            records(&read_all(&bytes, Limits::default()).unwrap()).len(),
            2
        );
    }

    #[test]
    fn keys_around_records_and_tiny_buffers_of_escapes() {
        let doc = br#" {"x": {"Records": 1}, "Records" : [ {"k":"\\\\\"[{"} ] , "y": [1,2]} "#;
        let items = read_all(doc, Limits::default()).unwrap();
        assert_eq!(records(&items)[0]["k"], "\\\\\"[{");
    }

    #[test]
    fn bad_records_are_skipped_with_index_and_the_rest_read() {
        let doc = br#"{"Records":[{"a":1}, "text", 42, null, [1], {"b":}, {"c":3}]}"#;
        let items = read_all(doc, Limits::default()).unwrap();
        let skipped: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Item::Skipped(e) => Some((e.index, e.kind.clone())),
                Item::Record { .. } => None,
            })
            .collect();
        assert_eq!(skipped.len(), 5);
        assert_eq!(skipped[0], (1, RecordErrorKind::NotObject("a string")));
        assert_eq!(skipped[1], (2, RecordErrorKind::NotObject("a number")));
        assert_eq!(skipped[2], (3, RecordErrorKind::NotObject("null")));
        assert!(matches!(skipped[4], (5, RecordErrorKind::InvalidJson(_))));
        assert_eq!(records(&items).len(), 2);
        assert_eq!(records(&items)[1]["c"], 3);
    }

    #[test]
    fn oversized_records_are_skipped_without_being_held() {
        let big = "x".repeat(200_000);
        let doc = format!(r#"{{"Records":[{{"a":"{big}"}},{{"b":1}}]}}"#);
        let limits = Limits {
            max_record_bytes: 1000,
            ..Limits::default()
        };
        let mut reader = LogReader::new(doc.as_bytes(), limits).unwrap();
        match reader.next_item().unwrap() {
            Some(Item::Skipped(RecordError {
                index: 0,
                kind: RecordErrorKind::TooLarge { bytes, limit: 1000 },
                ..
            })) => assert!(bytes > 200_000),
            other => panic!("{other:?}"),
        }
        assert!(reader.record.capacity() <= 2 * CHUNK);
        assert!(matches!(
            reader.next_item().unwrap(),
            Some(Item::Record { index: 1, .. })
        ));
        assert!(reader.next_item().unwrap().is_none());
    }

    #[test]
    fn file_level_faults() {
        let err = |bytes: &[u8]| read_all(bytes, Limits::default()).unwrap_err().to_string();
        assert_eq!(err(b""), "the file is empty (0 bytes)");
        assert!(err(b"\x00\x01binary").contains("expected a JSON object"));
        assert!(err(b"[1,2]").contains("expected a JSON object"));
        assert!(err(br#"{"a":1}"#).contains("no \"Records\" array; top-level keys: \"a\""));
        assert!(err(br#"{}"#).contains("the object is empty"));
        assert!(err(br#"{"Records":{}}"#).contains("is an object, not an array"));
        assert!(err(br#"{"Records":null}"#).contains("is null, not an array"));
        assert!(err(br#"{"Records":[{"a":1}"#).contains("ends at byte"));
        assert!(err(br#"{"Records":[{"a":1} {"b":2}]}"#).contains("',' or ']' between records"));
        assert!(err(br#"{"Records":[]} trailing"#).contains("the end of the file"));
        assert!(err(br#"{"Records":[],"Records":[]}"#).contains("appears twice"));
        assert!(err(br#"{"digestStartTime":"x","logFiles":[]}"#).contains("digest file"));
        assert!(err(br#"{"fileVersion":"1.0","configurationItems":[]}"#).contains("AWS Config"));
        let mut truncated = gzip(br#"{"Records":[{"a":1},{"b":2}]}"#);
        truncated.truncate(truncated.len() - 12);
        assert!(err(&truncated).contains("gzip data is corrupt or truncated"));
    }

    #[test]
    fn the_decompressed_size_is_capped() {
        let doc = format!(
            r#"{{"Records":[{}]}}"#,
            vec![r#"{"a":1}"#; 50_000].join(",")
        );
        let bomb = gzip(doc.as_bytes());
        assert!(bomb.len() < 10_000, "{}", bomb.len());
        let limits = Limits {
            max_decompressed_bytes: 100_000,
            ..Limits::default()
        };
        let err = read_all(&bomb, limits).unwrap_err();
        assert!(
            matches!(err, ReadError::TooLarge { limit: 100_000 }),
            "{err}"
        );
    }

    /// Hands out one byte per read, so that every token straddles a buffer boundary.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn every_buffer_boundary_gives_the_same_records() {
        let doc = br#"{"meta":{"a":["]","}"]},"Records":[{"s":"a\"b\\","n":-1.5e3,"t":true,"z":null,"u":"\u00e9\ud83d\ude00","arr":[[],{},[{"k":"v"}]]},{"e":""},{}],"tail":"x"}"#;
        let expected: Vec<Value> =
            match serde_json::from_slice::<Value>(doc).unwrap()["Records"].take() {
                Value::Array(v) => v,
                _ => unreachable!(),
            };
        let items: Vec<Item> = LogReader::new(OneByte(doc), Limits::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records(&items), expected.iter().collect::<Vec<_>>());
        let gz = gzip(doc);
        let items: Vec<Item> = LogReader::new(OneByte(&gz), Limits::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records(&items), expected.iter().collect::<Vec<_>>());
    }

    #[test]
    fn empty_records_array() {
        assert!(read_all(br#"{"Records":[]}"#, Limits::default())
            .unwrap()
            .is_empty());
    }
}
