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

/// One step of reading, before parsing.
#[derive(Debug)]
pub enum RawItem<'r> {
    /// A record's bytes (one JSON value, not yet checked beyond its strings and nesting).
    Record {
        index: usize,
        offset: u64,
        bytes: &'r [u8],
        meta: &'r RecordMeta,
        /// The bytes are known to be UTF-8 (checked while inflating).
        utf8: bool,
    },
    /// A record that could not be read (over the size limit).
    Skipped(RecordError),
}

/// Parses a record's bytes: a record, or why it was skipped.
pub fn parse_record(index: usize, offset: u64, bytes: &[u8]) -> Item {
    let skipped = |kind| {
        Item::Skipped(RecordError {
            index,
            offset,
            kind,
        })
    };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(record @ Value::Object(_)) => Item::Record {
            index,
            offset,
            record,
        },
        Ok(other) => skipped(RecordErrorKind::NotObject(kind(&other))),
        Err(e) => skipped(RecordErrorKind::InvalidJson(e.to_string())),
    }
}

/// Checks a record's bytes as [`parse_record`] would, without building it: `None` when it is a
/// valid JSON object, else the same error `parse_record` would report. `utf8` says the bytes
/// are already known to be UTF-8.
pub fn check_record(index: usize, offset: u64, bytes: &[u8], utf8: bool) -> Option<RecordError> {
    // Building a record also checks that its strings are UTF-8; checking must too.
    let valid = (utf8 || std::str::from_utf8(bytes).is_ok())
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
    if !valid {
        // Rare: parse it again as `parse_record` does, so that the message is the same word
        // for word (the two deserializers word some faults differently).
        return match parse_record(index, offset, bytes) {
            Item::Skipped(e) => Some(e),
            Item::Record { .. } => None,
        };
    }
    let kind = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => return None,
        Some(b'"') => RecordErrorKind::NotObject("a string"),
        Some(b'[') => RecordErrorKind::NotObject("an array"),
        Some(b't' | b'f') => RecordErrorKind::NotObject("a boolean"),
        Some(b'n') => RecordErrorKind::NotObject("null"),
        _ => RecordErrorKind::NotObject("a number"),
    };
    Some(RecordError {
        index,
        offset,
        kind,
    })
}

/// The input with its first bytes (read to sniff the format) put back in front.
type Sniffed<R> = io::Chain<io::Take<Cursor<[u8; 2]>>, R>;

enum Decoder<R: Read> {
    Plain(BufReader<Sniffed<R>>),
    Gzip(Box<MultiGzDecoder<BufReader<Sniffed<R>>>>),
    /// Gzip inflated on a thread of its own, while this one splits and matches.
    Threaded(Inflater),
}

impl<R: Read> Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Threaded(r) => r.read(buf),
        }
    }
}

/// Bytes the inflating thread hands over at a time.
const INFLATED_CHUNK: usize = 256 << 10;
/// Chunks in flight between the threads: what inflating may run ahead by (1 MiB).
const CHUNKS_IN_FLIGHT: usize = 4;

/// Inflates a gzip stream on its own thread and hands out the bytes in order. Memory is bounded
/// by the chunks in flight; dropping the reader stops the thread at its next chunk.
struct Inflater {
    /// Chunks, each with whether all bytes up to its end are UTF-8.
    chunks: std::sync::mpsc::Receiver<io::Result<(Vec<u8>, bool)>>,
    spent: std::sync::mpsc::SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    /// Every byte handed out so far is UTF-8.
    all_utf8: bool,
}

impl Inflater {
    fn spawn<R: Read + Send + 'static>(
        mut decoder: MultiGzDecoder<BufReader<Sniffed<R>>>,
    ) -> io::Result<Self> {
        let (tx, chunks) = std::sync::mpsc::sync_channel(CHUNKS_IN_FLIGHT);
        let (spent, spent_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 1);
        std::thread::Builder::new()
            .name("trail-alerts-inflate".into())
            .spawn(move || {
                let mut utf8 = Utf8Check::default();
                loop {
                    let mut chunk = spent_rx.try_recv().unwrap_or_default();
                    chunk.resize(INFLATED_CHUNK, 0);
                    let mut filled = 0;
                    let result = loop {
                        if filled == chunk.len() {
                            break Ok(());
                        }
                        match decoder.read(&mut chunk[filled..]) {
                            Ok(0) => break Ok(()),
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => break Err(e),
                        }
                    };
                    chunk.truncate(filled);
                    let done = filled < INFLATED_CHUNK || result.is_err();
                    // UTF-8 is checked here, where there is time to spare, rather than per record
                    // on the reading thread.
                    let all_utf8 = utf8.feed(&chunk, done);
                    if filled > 0 && tx.send(Ok((chunk, all_utf8))).is_err() {
                        return;
                    }
                    if let Err(e) = result {
                        let _ = tx.send(Err(e));
                    }
                    if done {
                        return;
                    }
                }
            })?;
        Ok(Inflater {
            chunks,
            spent,
            current: Vec::new(),
            pos: 0,
            all_utf8: true,
        })
    }
}

impl Inflater {
    /// Hands back the used buffer and puts the next chunk in its place; 0 at the end.
    fn swap(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let used = std::mem::take(buf);
        if used.capacity() > 0 {
            let _ = self.spent.try_send(used);
        }
        match self.chunks.recv() {
            Ok(Ok((chunk, all_utf8))) => {
                *buf = chunk;
                self.all_utf8 = all_utf8;
                Ok(buf.len())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(0),
        }
    }
}

/// UTF-8 validation of a stream in chunks, carrying a character split between two of them.
#[derive(Default)]
struct Utf8Check {
    carry: Vec<u8>,
    ok: bool,
    started: bool,
}

impl Utf8Check {
    /// Feeds the next chunk; whether everything so far is UTF-8 (an incomplete character at
    /// the very end counts as invalid).
    fn feed(&mut self, chunk: &[u8], last: bool) -> bool {
        if !self.started {
            self.started = true;
            self.ok = true;
        }
        if !self.ok {
            return false;
        }
        let mut rest = chunk;
        if !self.carry.is_empty() {
            // Complete the carried character with the bytes it still needs.
            let width = match self.carry[0] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let take = (width - self.carry.len()).min(rest.len());
            self.carry.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.carry.len() == width {
                self.ok = std::str::from_utf8(&self.carry).is_ok();
                self.carry.clear();
            }
            if !self.ok {
                return false;
            }
        }
        match std::str::from_utf8(rest) {
            Ok(_) => {}
            Err(e) if e.error_len().is_none() && !last => {
                self.carry.extend_from_slice(&rest[e.valid_up_to()..]);
            }
            Err(_) => self.ok = false,
        }
        if last && !self.carry.is_empty() {
            self.ok = false;
        }
        self.ok
    }
}

impl Read for Inflater {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.current.len() {
            let used = std::mem::take(&mut self.current);
            if used.capacity() > 0 {
                let _ = self.spent.try_send(used);
            }
            match self.chunks.recv() {
                Ok(Ok((chunk, all_utf8))) => {
                    self.current = chunk;
                    self.pos = 0;
                    self.all_utf8 = all_utf8;
                }
                Ok(Err(e)) => return Err(e),
                // The thread is done: the end of the stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
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
    /// The bytes at hand: `buf[..len]` are valid.
    buf: Vec<u8>,
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
    meta: RecordMeta,
}

/// Reads the first two bytes to tell gzip (`1f 8b`) from the rest, then puts them back.
fn sniff<R: Read>(mut input: R) -> Result<(BufReader<Sniffed<R>>, bool), ReadError> {
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
    Ok((raw, gzip))
}

impl<R: Read + Send + 'static> LogReader<R> {
    /// Opens a log as [`LogReader::new`] does, inflating gzip on a second thread so that
    /// inflating and reading records overlap.
    pub fn threaded(input: R, limits: Limits) -> Result<Self, ReadError> {
        let (raw, gzip) = sniff(input)?;
        let src = if gzip {
            Decoder::Threaded(
                Inflater::spawn(MultiGzDecoder::new(raw))
                    .map_err(|source| ReadError::Io { offset: 0, source })?,
            )
        } else {
            Decoder::Plain(raw)
        };
        Self::with_source(src, gzip, limits)
    }
}

impl<R: Read> LogReader<R> {
    /// Opens a log: sniffs gzip by its magic bytes and reads up to the first record.
    pub fn new(input: R, limits: Limits) -> Result<Self, ReadError> {
        let (raw, gzip) = sniff(input)?;
        let src = if gzip {
            Decoder::Gzip(Box::new(MultiGzDecoder::new(raw)))
        } else {
            Decoder::Plain(raw)
        };
        Self::with_source(src, gzip, limits)
    }

    fn with_source(src: Decoder<R>, gzip: bool, limits: Limits) -> Result<Self, ReadError> {
        let mut reader = LogReader {
            src,
            gzip,
            buf: Vec::new(),
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
            meta: RecordMeta::default(),
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
            let result = match &mut self.src {
                // Take the inflated chunk as the buffer itself: no copy.
                Decoder::Threaded(inflater) => inflater.swap(&mut self.buf),
                src => {
                    self.buf.resize(CHUNK, 0);
                    src.read(&mut self.buf)
                }
            };
            match result {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The inflater's own verdicts on the data; anything else came from below it.
                Err(source)
                    if self.gzip
                        && matches!(
                            source.kind(),
                            io::ErrorKind::InvalidData
                                | io::ErrorKind::InvalidInput
                                | io::ErrorKind::UnexpectedEof
                        ) =>
                {
                    return Err(ReadError::Gzip {
                        offset: self.base,
                        source,
                    })
                }
                Err(source) => {
                    return Err(ReadError::Io {
                        offset: self.base,
                        source: with_causes(source),
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
        Ok(self.next_raw()?.map(|raw| match raw {
            RawItem::Record {
                index,
                offset,
                bytes,
                ..
            } => parse_record(index, offset, bytes),
            RawItem::Skipped(e) => Item::Skipped(e),
        }))
    }

    /// Reads the next record's bytes without parsing them, with where its `eventName` and
    /// `eventSource` stand; records over the size limit come as `Skipped`.
    pub fn next_raw(&mut self) -> Result<Option<RawItem<'_>>, ReadError> {
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
                    if !stored {
                        let bytes = self.offset() - offset;
                        return Ok(Some(RawItem::Skipped(RecordError {
                            index,
                            offset,
                            kind: RecordErrorKind::TooLarge {
                                bytes,
                                limit: self.limits.max_record_bytes,
                            },
                        })));
                    }
                    let utf8 =
                        matches!(&self.src, Decoder::Threaded(inflater) if inflater.all_utf8);
                    return Ok(Some(RawItem::Record {
                        index,
                        offset,
                        bytes: &self.record,
                        meta: &self.meta,
                        utf8,
                    }));
                }
            }
        }
    }

    /// Scans one JSON value from the current token, copying its bytes into `self.record` when
    /// `store` is set and the value fits in the record limit. Returns whether it was stored
    /// whole. Only the structure is checked here (strings, nesting); the bytes are parsed later.
    ///
    /// While storing a record, it also notes where the record's own (depth-1) `eventName` and
    /// `eventSource` values stand, in [`RecordMeta`], so that a record no rule can match needs
    /// no parse. The bookkeeping runs only on bytes outside strings at depth 1.
    fn scan_value(&mut self, store: bool) -> Result<bool, ReadError> {
        let limit = self.limits.max_record_bytes;
        let track = store && matches!(self.state, State::Records { .. });
        let mut keep = store;
        let mut depth: usize = 0;
        let mut in_string = false;
        let mut escape = false;
        let mut started = false;
        let mut t = Tracker::default();
        let mut max_depth = 0;
        self.meta = RecordMeta::default();
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
            // Record position of chunk[0].
            let base = self.record.len();
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
                                t.escaped = true;
                            } else {
                                in_string = false;
                                if depth == 0 {
                                    end = Some(i + 1);
                                    break;
                                }
                                if depth == 1 && track && keep {
                                    t.string_closed(
                                        &mut self.meta,
                                        &self.record,
                                        chunk,
                                        base,
                                        base + i,
                                    );
                                }
                            }
                            i += 1;
                        }
                    }
                    continue;
                }
                let b = chunk[i];
                match b {
                    b'"' => {
                        in_string = true;
                        if depth == 1 {
                            t.string_opened(base + i);
                        }
                    }
                    b'{' | b'[' => {
                        if depth == 1 {
                            t.other_value(&mut self.meta);
                        }
                        depth += 1;
                        max_depth = max_depth.max(depth);
                        if depth == 1 {
                            t.expect_key = b == b'{';
                        }
                    }
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
                    b':' if depth == 1 => t.colon(&mut self.meta),
                    b',' if depth == 1 => t.expect_key = true,
                    b' ' | b'\t' | b'\n' | b'\r' => {}
                    _ if depth == 1 => t.other_value(&mut self.meta),
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
                self.meta.max_depth = max_depth;
                return Ok(keep || !store);
            }
        }
    }
}

/// Where a record's own `eventName` and `eventSource` values stand in its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordMeta {
    pub event_name: Field,
    pub event_source: Field,
    /// A depth-1 key was written with escapes: the record's keys cannot be read from the raw
    /// bytes, so nothing is known.
    pub escaped_key: bool,
    /// The deepest nesting of objects and arrays (the record itself is 1).
    pub max_depth: usize,
}

/// Records nested this deep are always built: building refuses nesting past serde_json's limit
/// (128), which checking alone would not notice.
pub const DEEP_RECORD: usize = 100;

/// A depth-1 field of a record as seen in its raw bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Field {
    /// Not present.
    #[default]
    Absent,
    /// A string without escapes, at this byte range (quotes excluded).
    Plain(std::ops::Range<usize>),
    /// Anything else: a string with escapes, a number, an array, an object, null…
    Other,
}

impl RecordMeta {
    /// What the raw bytes say of a field's value.
    pub fn value<'b>(&self, field: &Field, bytes: &'b [u8]) -> Known<'b> {
        if self.escaped_key {
            return Known::Unknown;
        }
        match field {
            Field::Absent => Known::Absent,
            Field::Plain(r) => bytes
                .get(r.clone())
                .and_then(|b| std::str::from_utf8(b).ok())
                .map_or(Known::Unknown, Known::Plain),
            Field::Other => Known::Unknown,
        }
    }
}

/// A field's value as far as the raw bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known<'b> {
    Absent,
    Plain(&'b str),
    /// Only parsing can tell (escapes, not a string, escaped keys).
    Unknown,
}

impl<'b> Known<'b> {
    /// `Some(None)` absent, `Some(Some(v))` a plain string, `None` unknown.
    pub fn known(self) -> Option<Option<&'b str>> {
        match self {
            Known::Absent => Some(None),
            Known::Plain(v) => Some(Some(v)),
            Known::Unknown => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Key {
    #[default]
    Other,
    EventName,
    EventSource,
}

/// Depth-1 bookkeeping for [`RecordMeta`].
#[derive(Debug, Default)]
struct Tracker {
    expect_key: bool,
    /// The key whose value comes next.
    key: Key,
    /// The value of `key` has begun.
    value_seen: bool,
    string_start: usize,
    string_is_key: bool,
    escaped: bool,
}

impl Tracker {
    fn string_opened(&mut self, at: usize) {
        self.string_start = at;
        self.string_is_key = self.expect_key;
        self.escaped = false;
    }

    fn string_closed(
        &mut self,
        meta: &mut RecordMeta,
        record: &[u8],
        chunk: &[u8],
        base: usize,
        at: usize,
    ) {
        let (start, end) = (self.string_start + 1, at);
        if self.string_is_key {
            if self.escaped {
                meta.escaped_key = true;
            }
            self.key = if span_eq(record, chunk, base, start, end, b"eventName") {
                Key::EventName
            } else if span_eq(record, chunk, base, start, end, b"eventSource") {
                Key::EventSource
            } else {
                Key::Other
            };
            self.value_seen = false;
        } else if !self.value_seen {
            self.value_seen = true;
            let field = if self.escaped {
                Field::Other
            } else {
                Field::Plain(start..end)
            };
            self.set(meta, field);
        }
    }

    fn colon(&mut self, meta: &mut RecordMeta) {
        self.expect_key = false;
        // Until a plain string shows otherwise, the value is unknown.
        self.set(meta, Field::Other);
    }

    fn other_value(&mut self, meta: &mut RecordMeta) {
        if !self.expect_key && !self.value_seen {
            self.value_seen = true;
            self.set(meta, Field::Other);
        }
    }

    fn set(&self, meta: &mut RecordMeta, field: Field) {
        match self.key {
            Key::EventName => meta.event_name = field,
            Key::EventSource => meta.event_source = field,
            Key::Other => {}
        }
    }
}

/// Whether record bytes `start..end` (partly already in `record`, the rest in `chunk` from
/// record position `base`) equal `target`.
fn span_eq(
    record: &[u8],
    chunk: &[u8],
    base: usize,
    start: usize,
    end: usize,
    target: &[u8],
) -> bool {
    if end - start != target.len() {
        return false;
    }
    if start >= base {
        return chunk.get(start - base..end - base) == Some(target);
    }
    (start..end).zip(target).all(|(p, t)| {
        let b = if p < base {
            record.get(p)
        } else {
            chunk.get(p - base)
        };
        b == Some(t)
    })
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

/// The error with its causes in its message ("streaming error" says little; what caused it does).
fn with_causes(e: io::Error) -> io::Error {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    io::Error::new(e.kind(), message)
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
    fn utf8_is_checked_across_chunk_boundaries() {
        let text = "aé€😀z".repeat(50);
        for split in 0..text.len() {
            let (a, b) = text.as_bytes().split_at(split);
            let mut check = Utf8Check::default();
            assert!(
                check.feed(a, false) && check.feed(b, true),
                "split at {split}"
            );
        }
        let mut check = Utf8Check::default();
        assert!(check.feed(b"ok \xe2\x82", false));
        assert!(!check.feed(b"", true), "a character cut off at the end");
        let mut check = Utf8Check::default();
        assert!(!check.feed(b"Caf\xe9 ", false));
        assert!(!check.feed(b"fine", true), "once invalid, always invalid");
    }

    #[test]
    fn threaded_reading_gives_the_same_records() {
        let doc = br#"{"Records":[{"a":"\u00e9t\u00e9"},{"b":[1,2,{"c":null}]},"x"]}"#;
        let gz = gzip(doc);
        let plain: Vec<Item> = LogReader::new(&gz[..], Limits::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let threaded: Vec<Item> = LogReader::threaded(std::io::Cursor::new(gz), Limits::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(format!("{plain:?}"), format!("{threaded:?}"));
        let mut truncated = gzip(doc);
        truncated.truncate(truncated.len() - 10);
        let err = LogReader::threaded(std::io::Cursor::new(truncated), Limits::default())
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("gzip data is corrupt or truncated"),
            "{err}"
        );
    }

    #[test]
    fn empty_records_array() {
        assert!(read_all(br#"{"Records":[]}"#, Limits::default())
            .unwrap()
            .is_empty());
    }
}
