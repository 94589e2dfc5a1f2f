//! Splitting a log's `{"Records": [ … ]}` into one record's bytes at a time, on the raw bytes:
//! strings and nesting are tracked, nothing is parsed. Because boundaries are found
//! structurally, a record that is not valid JSON or not an object is refused on its own (by the
//! verdicts of `record.rs`) while the records after it are still read, and a record over
//! [`Limits::max_record_bytes`] is passed over without being held. Whatever breaks the file
//! itself is a [`ReadError`] with the byte offset where it happened.

use std::io::Read;
use std::ops::Range;
use std::sync::Arc;

use super::decode::Decoder;
use super::grammar::Grammar;
use super::peek::{PeekPaths, Peeked, Span, Tracker};
use super::record::{RawRecord, RecordError, RecordErrorKind, DEEP_RECORD};
use super::shape::{content, Content, Shapes};
use super::strings::Specials;
use super::{Limits, ReadError};

/// Decoded bytes enough to tell a document's shape (past a byte-order mark, white space and
/// the first key).
const HEAD: usize = 4096;

/// Where the reader stands in the top-level object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the next key of the top-level object (or its closing brace).
    Keys {
        first: bool,
    },
    /// Inside the records' array, before the next element (or the closing bracket).
    Records {
        first: bool,
    },
    /// Between top-level records (one record, or newline-delimited records).
    Stream,
    Done,
}

/// Where a document keeps its records (see [`Content`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `{"Records": [ … ]}`
    S3Log,
    /// `[ … ]`
    Array,
    /// `{"Events": [{"CloudTrailEvent": "…"}, …]}`: each record is a JSON string to unwrap.
    LookupEvents,
    /// Records one after another at the top level.
    Stream,
}

impl Layout {
    /// The key of the top-level object that holds the records.
    fn key(self) -> &'static str {
        match self {
            Layout::LookupEvents => "Events",
            _ => "Records",
        }
    }

    /// What the records sit in, for error messages.
    fn container(self) -> &'static str {
        match self {
            Layout::S3Log => "the Records array",
            Layout::Array => "the array of records",
            Layout::LookupEvents => "the Events array",
            Layout::Stream => "the records",
        }
    }
}

/// The records of one CloudTrail log file, read one at a time.
pub struct LogReader<R: Read> {
    src: Decoder<R>,
    /// The bytes at hand: `buf[..len]` are valid.
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// Decompressed bytes before `buf[0]`.
    base: u64,
    eof: bool,
    limits: Limits,
    shapes: Shapes,
    layout: Layout,
    state: State,
    seen_records: bool,
    keys_seen: Vec<String>,
    index: usize,
    /// The last value taken ([`LogReader::taken`]): copied here when it spans chunks; when it
    /// lies within one chunk, it is left in `buf`, at `inline`, and not copied.
    record: Vec<u8>,
    inline: Option<Range<usize>>,
    /// The paths the index asked to peek at, what was seen there, and the tracker's state
    /// (kept to reuse its memory).
    paths: Arc<PeekPaths>,
    peeked: Peeked,
    tracker: Tracker,
    /// What the splitter noticed of the last value taken.
    shape: Shape,
    /// Whether the grammar vouched for the last record taken (see [`Grammar`]).
    valid: bool,
    /// Whether the last value taken was all ASCII (and so UTF-8).
    ascii: bool,
}

thread_local! {
    /// The buffer of the last reader dropped on this thread, for the next one: a directory of
    /// many small logs would otherwise allocate (and zero) a chunk per file.
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Buffers larger than this are not kept for the next reader.
const SPARE_MAX: usize = 1 << 20;

impl<R: Read> Drop for LogReader<R> {
    fn drop(&mut self) {
        if self.buf.capacity() <= SPARE_MAX {
            SPARE.set(std::mem::take(&mut self.buf));
        }
    }
}

/// What the splitter hands out next.
#[derive(Debug)]
pub enum Split<'r> {
    /// A record's bytes, and what the peek saw of them.
    Record(RawRecord<'r>, &'r Peeked),
    /// A record refused before it could be built: over the size limit (passed over without
    /// being held), or a `lookup-events` element without a record in it.
    Refused(RecordError),
}

/// A record built from its bytes, or why it could not be.
#[derive(Debug)]
pub enum Parsed {
    Record {
        index: usize,
        offset: u64,
        record: serde_json::Value,
    },
    Unreadable(RecordError),
}

impl<R: Read + Send + 'static> LogReader<R> {
    /// Opens a log as [`LogReader::new`] does, inflating gzip on a second thread so that
    /// inflating and reading records overlap.
    pub fn threaded(input: R, limits: Limits) -> Result<Self, ReadError> {
        Self::with_source(
            Decoder::threaded(input, limits.max_decompressed_bytes, None)?,
            limits,
            Shapes::S3Log,
        )
    }

    /// [`LogReader::threaded`], for a document of any of the `shapes`, `size` bytes long when
    /// that is known (a large file is then not read ahead to tell whether it is small).
    pub fn threaded_shapes(
        input: R,
        limits: Limits,
        shapes: Shapes,
        size: Option<u64>,
    ) -> Result<Self, ReadError> {
        Self::with_source(
            Decoder::threaded(input, limits.max_decompressed_bytes, size)?,
            limits,
            shapes,
        )
    }
}

impl<R: Read> LogReader<R> {
    /// Opens a log in CloudTrail's S3 format: sniffs gzip by its magic bytes and reads up to
    /// the first record.
    pub fn new(input: R, limits: Limits) -> Result<Self, ReadError> {
        Self::with_source(
            Decoder::inline_whole(input, limits.max_decompressed_bytes, None)?,
            limits,
            Shapes::S3Log,
        )
    }

    /// [`LogReader::new`], for a document of any of the `shapes`, `size` bytes long when that
    /// is known (see [`LogReader::threaded_shapes`]).
    pub fn new_shapes(
        input: R,
        limits: Limits,
        shapes: Shapes,
        size: Option<u64>,
    ) -> Result<Self, ReadError> {
        Self::with_source(
            Decoder::inline_whole(input, limits.max_decompressed_bytes, size)?,
            limits,
            shapes,
        )
    }

    fn with_source(src: Decoder<R>, limits: Limits, shapes: Shapes) -> Result<Self, ReadError> {
        let mut reader = LogReader {
            src,
            buf: SPARE.take(),
            pos: 0,
            len: 0,
            base: 0,
            eof: false,
            limits,
            shapes,
            layout: Layout::S3Log,
            state: State::Keys { first: true },
            seen_records: false,
            keys_seen: Vec::new(),
            index: 0,
            record: Vec::new(),
            inline: None,
            paths: Arc::default(),
            peeked: Peeked::default(),
            tracker: Tracker::default(),
            shape: Shape::default(),
            valid: false,
            ascii: false,
        };
        reader.open()?;
        Ok(reader)
    }

    /// Peeks at these paths of every record from now on (see [`Split::Record`]).
    pub fn peeking(mut self, paths: Arc<PeekPaths>) -> Self {
        self.paths = paths;
        self
    }

    /// Decompressed bytes read so far.
    pub fn offset(&self) -> u64 {
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
        let n = self.src.next_chunk(&mut self.buf, self.base)?;
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

    /// Appends decoded bytes to the buffer until `want` bytes are at hand (or the input ends):
    /// enough to tell a document's shape by its first key, however the input was cut into
    /// chunks (plain input's first chunk is the two bytes read to tell it from gzip).
    fn fill_head(&mut self, want: usize) -> Result<(), ReadError> {
        let mut more = Vec::new();
        while self.len - self.pos < want && !self.eof {
            let n = self
                .src
                .next_chunk(&mut more, self.base + self.len as u64)?;
            if n == 0 {
                self.eof = true;
                break;
            }
            self.buf.truncate(self.len);
            self.buf.extend_from_slice(&more[..n]);
            self.len += n;
            if self.base + self.len as u64 > self.limits.max_decompressed_bytes {
                return Err(ReadError::TooLarge {
                    limit: self.limits.max_decompressed_bytes,
                });
            }
        }
        Ok(())
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

    /// `expected` was due at the current offset, and byte `b` stands there.
    fn unexpected(&self, expected: &'static str, b: u8) -> ReadError {
        ReadError::Syntax {
            offset: self.offset(),
            expected,
            found: describe_byte(b),
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
        let first = self.peek_token()?;
        if self.shapes == Shapes::Any {
            self.fill_head(HEAD)?;
            match content(&self.buf[self.pos..self.len]) {
                Content::RecordArray => {
                    self.pos += 1;
                    self.layout = Layout::Array;
                    self.seen_records = true;
                    self.state = State::Records { first: true };
                    return Ok(());
                }
                Content::RecordStream => {
                    self.layout = Layout::Stream;
                    self.seen_records = true;
                    self.state = State::Stream;
                    return Ok(());
                }
                Content::LookupEvents => self.layout = Layout::LookupEvents,
                _ => {}
            }
        }
        match first {
            Some(b'{') => self.pos += 1,
            Some(b) => return Err(self.unexpected("a JSON object ('{')", b)),
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
            if key == self.layout.key() {
                if self.seen_records {
                    return Err(ReadError::DuplicateRecords {
                        key: self.layout.key(),
                        offset: key_offset,
                    });
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
                        return Err(ReadError::RecordsNotArray {
                            key: self.layout.key(),
                            offset,
                            found,
                        });
                    }
                    None => return Err(self.truncated("the top-level object")),
                }
            }
            if self.keys_seen.len() < 8 {
                self.keys_seen.push(key);
            }
            self.take_value(false)?;
            self.state = State::Keys { first: false };
        }
    }

    /// After the top-level object closes: only white space may follow.
    fn finish(&mut self) -> Result<(), ReadError> {
        self.state = State::Done;
        match self.peek_token()? {
            None => {}
            Some(b) => {
                return Err(self.unexpected("the end of the file after the top-level object", b))
            }
        }
        if !self.seen_records {
            return Err(ReadError::NoRecords {
                key: self.layout.key(),
                hint: self.hint(),
            });
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
            Some(b) => return Err(self.unexpected("a quoted key", b)),
            None => return Err(self.truncated("the top-level object")),
        }
        let offset = self.offset();
        self.take_value(true)?;
        serde_json::from_slice::<String>(self.taken()).map_err(|_| ReadError::Syntax {
            offset,
            expected: "a valid JSON string as a key",
            found: "a malformed string".into(),
        })
    }

    /// Skips a value and says what it was, for error messages.
    fn skip_value_kind(&mut self) -> Result<String, ReadError> {
        self.take_value(true)?;
        let taken = self.taken();
        let shown = String::from_utf8_lossy(&taken[..taken.len().min(40)]).into_owned();
        Ok(match taken.first() {
            Some(b'{') => "an object".into(),
            Some(b'"') => format!("a string {shown}"),
            _ => shown,
        })
    }

    /// Reads the next record and builds it, or `None` at the end of the `Records` array (and
    /// the file).
    pub fn next_parsed(&mut self) -> Result<Option<Parsed>, ReadError> {
        Ok(self.next_split()?.map(|split| match split {
            Split::Record(raw, _) => match raw.build() {
                Ok(record) => Parsed::Record {
                    index: raw.index,
                    offset: raw.offset,
                    record,
                },
                Err(e) => Parsed::Unreadable(e),
            },
            Split::Refused(e) => Parsed::Unreadable(e),
        }))
    }

    /// Reads the next record's bytes without building them, with what the peek saw of them;
    /// `None` at the end of the `Records` array (and the file).
    pub fn next_split(&mut self) -> Result<Option<Split<'_>>, ReadError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Keys { .. } => {
                    self.advance_to_records()?;
                    continue;
                }
                State::Stream => {
                    if self.peek_token()?.is_none() {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    return self.take_record().map(Some);
                }
                State::Records { first } => {
                    let container = self.layout.container();
                    match self.peek_token()? {
                        Some(b']') => {
                            self.pos += 1;
                            if self.layout == Layout::Array {
                                self.state = State::Done;
                                if let Some(b) = self.peek_token()? {
                                    return Err(self.unexpected(
                                        "the end of the file after the array of records",
                                        b,
                                    ));
                                }
                            } else {
                                self.state = State::Keys { first: false };
                            }
                            continue;
                        }
                        Some(_) if !first => {
                            self.expect(b',', "',' or ']' between records", container)?
                        }
                        Some(_) => {}
                        None => {
                            return Err(self
                                .truncated(&format!("{container} (before record {})", self.index)))
                        }
                    }
                    self.state = State::Records { first: false };
                    if self.peek_token()?.is_none() {
                        return Err(
                            self.truncated(&format!("{container} (before record {})", self.index))
                        );
                    }
                    return self.take_record().map(Some);
                }
            }
        }
    }

    /// Takes the record that starts at the current token.
    fn take_record(&mut self) -> Result<Split<'_>, ReadError> {
        let index = self.index;
        self.index += 1;
        let offset = self.offset();
        let stored = self.take_value(true)?;
        if !stored {
            let bytes = self.offset() - offset;
            return Ok(Split::Refused(RecordError {
                index,
                offset,
                kind: RecordErrorKind::TooLarge {
                    bytes,
                    limit: self.limits.max_record_bytes,
                },
            }));
        }
        let mut utf8 = self.src.all_utf8() || self.ascii;
        let mut must_build = self.shape.depth >= DEEP_RECORD || self.shape.doubtful;
        let mut valid = self.valid;
        if self.layout == Layout::LookupEvents {
            // The record is the JSON text in the element's `CloudTrailEvent`; nothing was
            // peeked at inside it, so it is built.
            match unwrap_lookup_event(self.taken()) {
                Ok(text) => {
                    self.record = text.into_bytes();
                    self.inline = None;
                }
                Err(kind) => {
                    return Ok(Split::Refused(RecordError {
                        index,
                        offset,
                        kind,
                    }))
                }
            }
            utf8 = true;
            must_build = true;
            valid = false;
        }
        // The record handed out is the bytes the splitter looked at (a lookup-events record's
        // text is another's, and nothing was peeked at in it).
        self.peeked
            .set_ascii(self.ascii && self.layout != Layout::LookupEvents);
        let raw = RawRecord {
            index,
            offset,
            bytes: self.taken(),
            utf8,
            must_build,
            valid,
        };
        Ok(Split::Record(raw, &self.peeked))
    }

    /// The bytes of the last value [`LogReader::take_value`] stored.
    fn taken(&self) -> &[u8] {
        match &self.inline {
            Some(r) => &self.buf[r.clone()],
            None => &self.record,
        }
    }

    /// Scans one JSON value from the current token, keeping its bytes ([`LogReader::taken`]) when
    /// `store` is set and the value fits in the record limit. Returns whether it was stored
    /// whole. Strings and nesting are followed to find the value's end; for a record, JSON's
    /// grammar is checked on the way ([`Grammar`], verdict in `self.valid`), so that a record
    /// no rule wants need not be read again.
    ///
    /// While storing a record, it also peeks at the values of the paths in `self.paths` (into
    /// `self.peeked`), and notes in `self.shape` what only building the record can judge.
    fn take_value(&mut self, store: bool) -> Result<bool, ReadError> {
        self.record.clear();
        self.inline = None;
        let limit = self.limits.max_record_bytes;
        let record = store
            && self.layout != Layout::LookupEvents
            && matches!(self.state, State::Records { .. } | State::Stream);
        let track = record && !self.paths.is_empty();
        let mut g = Grammar::new(record);
        let mut ascii = true;
        let mut keep = store;
        let mut depth: usize = 0;
        let mut in_string = false;
        let mut escape = false;
        let mut started = false;
        let mut shape = Shape::default();
        let mut t = std::mem::take(&mut self.tracker);
        t.start(&mut self.peeked);
        loop {
            if !self.fill()? {
                self.tracker = t;
                return Err(self.truncated(
                    if matches!(self.state, State::Records { first: false } | State::Stream) {
                        "a record"
                    } else {
                        "a top-level value"
                    },
                ));
            }
            let chunk = &self.buf[self.pos..self.len];
            // The special bytes of the chunk's strings, a block at a time.
            let mut specials = Specials::new();
            // Record position of chunk[0].
            let base = self.record.len();
            let mut i = 0;
            let mut end = None;
            'chunk: while i < chunk.len() {
                if in_string {
                    if escape {
                        escape = false;
                        let c = chunk[i];
                        g.escape(c);
                        ascii &= c < 0x80;
                        // `\uD800`-`\uDFFF` may be half a surrogate pair, which building
                        // checks and a partial reading does not.
                        if c == b'u'
                            && !matches!(
                                chunk.get(i + 1),
                                Some(
                                    b'0'..=b'9'
                                    | b'a'..=b'c'
                                    | b'A'..=b'C'
                                    | b'e'..=b'f'
                                    | b'E'..=b'F',
                                )
                            )
                        {
                            shape.doubtful = true;
                        }
                        i += 1;
                        continue;
                    }
                    // The four hex digits of a `\u` escape.
                    if g.in_hex() && g.hex_digit(chunk[i]) {
                        i += 1;
                        continue;
                    }
                    // The string's runs, and the strings that follow by `:"` or `,"`.
                    loop {
                        let found = if ascii {
                            specials.next::<true>(chunk, i)
                        } else {
                            specials.next::<false>(chunk, i)
                        };
                        let Some(j) = found else {
                            i = chunk.len();
                            break;
                        };
                        i = j;
                        match chunk[i] {
                            b'\\' => {
                                escape = true;
                                t.escaped = true;
                                i += 1;
                                break;
                            }
                            b'"' => {
                                in_string = false;
                                if depth == 0 {
                                    end = Some(i + 1);
                                    break 'chunk;
                                }
                                let tracked = track && t.tracking(depth);
                                if tracked && keep && t.string_wanted() {
                                    let span = Span {
                                        record: &self.record,
                                        chunk,
                                        base,
                                    };
                                    t.string_closed(&self.paths, &mut self.peeked, span, base + i);
                                }
                                // Most strings are followed by `:"` or `,"`: take the
                                // punctuation and go on with the next string here, in one
                                // step of the grammar, without a round through the byte
                                // dispatch below.
                                if let (Some(&p @ (b':' | b',')), Some(b'"')) =
                                    (chunk.get(i + 1), chunk.get(i + 2))
                                {
                                    if p == b':' {
                                        g.key_then_string();
                                        if tracked {
                                            t.colon();
                                            t.string_opened(base + i + 2);
                                        }
                                    } else {
                                        g.value_then_string(depth - 1);
                                        if tracked {
                                            t.comma();
                                            t.string_opened(base + i + 2);
                                        }
                                    }
                                    in_string = true;
                                    i += 3;
                                    continue;
                                }
                                // `":{"` (one string in twelve in CloudTrail: a key whose
                                // value is an object, and that object's first key) in one
                                // step too, as the dispatch below would take it byte by byte.
                                if chunk.get(i + 1) == Some(&b':')
                                    && chunk.get(i + 2) == Some(&b'{')
                                    && chunk.get(i + 3) == Some(&b'"')
                                {
                                    g.string_closed();
                                    g.colon();
                                    g.open(true, depth);
                                    g.string_opened();
                                    if tracked {
                                        t.colon();
                                        t.open(&self.paths, true);
                                    }
                                    depth += 1;
                                    shape.depth = shape.depth.max(depth);
                                    if track && t.tracking(depth) {
                                        t.string_opened(base + i + 3);
                                    }
                                    in_string = true;
                                    i += 4;
                                    continue;
                                }
                                g.string_closed();
                                i += 1;
                                break;
                            }
                            // Beyond ASCII: UTF-8 is checked apart (see `take_record`).
                            0x80.. => ascii = false,
                            // A control character, which JSON forbids in a string.
                            _ => g.fail(),
                        }
                        i += 1;
                    }
                    continue;
                }
                let b = chunk[i];
                match b {
                    b'"' => {
                        in_string = true;
                        g.string_opened();
                        if track && t.tracking(depth) {
                            t.string_opened(base + i);
                        }
                    }
                    b'{' | b'[' => {
                        g.open(b == b'{', depth);
                        if track && t.tracking(depth) {
                            t.open(&self.paths, b == b'{');
                        }
                        depth += 1;
                        shape.depth = shape.depth.max(depth);
                    }
                    b'}' | b']' if depth > 0 => {
                        if track && t.tracking(depth) {
                            t.close();
                        }
                        depth -= 1;
                        g.close(b == b'}', depth);
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
                    b':' | b',' => {
                        if b == b':' {
                            g.colon();
                        } else {
                            g.comma(depth.wrapping_sub(1));
                        }
                        if track && t.tracking(depth) {
                            if b == b':' {
                                t.colon();
                            } else {
                                t.comma();
                            }
                        }
                    }
                    b' ' | b'\t' | b'\n' | b'\r' => g.space(),
                    _ => {
                        let literal = match b {
                            b't' | b'f' | b'n' => literal_len(&chunk[i..]),
                            _ => 0,
                        };
                        if literal > 0 {
                            // `true`, `false` or `null` whole: one step, not one per byte.
                            g.literal();
                            if track && t.tracking(depth) {
                                t.scalar(&self.paths, &mut self.peeked, base + i);
                            }
                            started = true;
                            i += literal;
                            continue;
                        }
                        g.scalar(b);
                        ascii &= b < 0x80;
                        // An exponent: building checks that the number is in range; a partial
                        // reading does not (`e` follows a digit only in a number).
                        if b | 0x20 == b'e' && (i == 0 || chunk[i - 1].is_ascii_digit()) {
                            shape.doubtful = true;
                        }
                        if track && t.tracking(depth) {
                            t.scalar(&self.paths, &mut self.peeked, base + i);
                        }
                    }
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
                } else if end.is_some() && self.record.is_empty() {
                    // Wholly in this chunk: left where it is (most records are).
                    self.inline = Some(self.pos..self.pos + used);
                } else {
                    self.record.extend_from_slice(&chunk[..used]);
                }
            }
            self.pos += used;
            if end.is_some() {
                shape.doubtful |= g.long_number();
                self.shape = shape;
                self.valid = g.valid();
                self.ascii = ascii;
                self.tracker = t;
                return Ok(keep || !store);
            }
        }
    }
}

/// The length of the `true`, `false` or `null` that `s` starts with (0: none, or cut off by
/// the end of the chunk).
#[inline]
fn literal_len(s: &[u8]) -> usize {
    if s.starts_with(b"true") || s.starts_with(b"null") {
        4
    } else if s.starts_with(b"false") {
        5
    } else {
        0
    }
}

/// What the splitter noticed of a record that only building it can judge.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    /// The deepest nesting of objects and arrays (the record itself is 1).
    depth: usize,
    /// A number with an exponent or of hundreds of digits (maybe out of range), or an escape
    /// that may be half a surrogate pair.
    doubtful: bool,
}

impl<R: Read> Iterator for LogReader<R> {
    type Item = Result<Parsed, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_parsed() {
            Ok(Some(parsed)) => Some(Ok(parsed)),
            Ok(None) => None,
            Err(e) => {
                self.state = State::Done;
                Some(Err(e))
            }
        }
    }
}

/// The record inside one element of `lookup-events` output: its `CloudTrailEvent` string.
fn unwrap_lookup_event(element: &[u8]) -> Result<String, RecordErrorKind> {
    #[derive(serde::Deserialize)]
    struct Element {
        #[serde(rename = "CloudTrailEvent")]
        event: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Element>(element) {
        Ok(Element {
            event: Some(serde_json::Value::String(text)),
        }) => Ok(text),
        Ok(Element { event: Some(v) }) => Err(RecordErrorKind::NotLookupEvent(format!(
            "its CloudTrailEvent is {}, not a string of JSON",
            crate::describe::json_kind(&v)
        ))),
        Ok(Element { event: None }) => Err(RecordErrorKind::NotLookupEvent(
            "it has no CloudTrailEvent".into(),
        )),
        Err(e) => Err(RecordErrorKind::NotLookupEvent(format!(
            "it is not an object with a CloudTrailEvent: {e}"
        ))),
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
    use crate::reader::decode::CHUNK;
    use crate::reader::Leaf;
    use serde_json::Value;
    use std::io::{self, Write};

    fn read_all(bytes: &[u8], limits: Limits) -> Result<Vec<Parsed>, ReadError> {
        LogReader::new(bytes, limits)?.collect()
    }

    fn records(items: &[Parsed]) -> Vec<&Value> {
        items
            .iter()
            .filter_map(|i| match i {
                Parsed::Record { record, .. } => Some(record),
                Parsed::Unreadable(_) => None,
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
                Parsed::Unreadable(e) => Some((e.index, e.kind.clone())),
                Parsed::Record { .. } => None,
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
        match reader.next_parsed().unwrap() {
            Some(Parsed::Unreadable(RecordError {
                index: 0,
                kind: RecordErrorKind::TooLarge { bytes, limit: 1000 },
                ..
            })) => assert!(bytes > 200_000),
            other => panic!("{other:?}"),
        }
        assert!(reader.record.capacity() <= 2 * CHUNK);
        assert!(matches!(
            reader.next_parsed().unwrap(),
            Some(Parsed::Record { index: 1, .. })
        ));
        assert!(reader.next_parsed().unwrap().is_none());
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

    /// Hands out its bytes, then fails (a connection reset while reading an object).
    struct FailsAfter(io::Cursor<Vec<u8>>);

    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1000);
            match self.0.read(&mut buf[..n])? {
                0 => Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
                n => Ok(n),
            }
        }
    }

    /// A small gzip file is read ahead whole; a fault met reading it is met again where it
    /// was, after the records before it, as when it is streamed.
    #[test]
    fn a_fault_while_reading_ahead_comes_after_the_records_before_it() {
        let doc = format!(
            r#"{{"Records":[{}]}}"#,
            vec![r#"{"eventName":"X","n":"0123456789abcdef"}"#; 3000].join(",")
        );
        let gz = gzip(doc.as_bytes());
        let cut = gz[..gz.len() * 2 / 3].to_vec();
        for threaded in [false, true] {
            let mut read = 0;
            let input = FailsAfter(io::Cursor::new(cut.clone()));
            let reader = if threaded {
                LogReader::threaded(input, Limits::default()).unwrap()
            } else {
                LogReader::new(input, Limits::default()).unwrap()
            };
            let mut fault = None;
            for item in reader {
                match item {
                    Ok(_) => read += 1,
                    Err(e) => fault = Some(e),
                }
            }
            assert!(read > 100 && read < 3000, "{read} records before the fault");
            let fault = fault.expect("the fault");
            assert!(
                matches!(&fault, ReadError::Io { source, .. } if source.kind() == io::ErrorKind::ConnectionReset),
                "{fault:?}"
            );
        }
    }

    /// A small file the one-call path passes over (here two members; also one that inflates
    /// past its limit) is streamed, on the inflating thread when reading is threaded: the same
    /// records either way.
    #[test]
    fn a_small_file_not_inflated_in_one_call_is_streamed() {
        let doc = format!(
            r#"{{"Records":[{}]}}"#,
            vec![r#"{"eventName":"X","n":"0123456789abcdef"}"#; 3000].join(",")
        );
        let (a, b) = doc.as_bytes().split_at(doc.len() / 2);
        let two = [gzip(a), gzip(b)].concat();
        let inline = read_all(&two, Limits::default()).unwrap();
        let threaded: Vec<Parsed> = LogReader::threaded(io::Cursor::new(two), Limits::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(inline.len(), 3000);
        assert_eq!(format!("{inline:?}"), format!("{threaded:?}"));
    }

    #[test]
    fn every_buffer_boundary_gives_the_same_records() {
        let doc = br#"{"meta":{"a":["]","}"]},"Records":[{"s":"a\"b\\","n":-1.5e3,"t":true,"z":null,"u":"\u00e9\ud83d\ude00","arr":[[],{},[{"k":"v"}]]},{"e":""},{}],"tail":"x"}"#;
        let expected: Vec<Value> =
            match serde_json::from_slice::<Value>(doc).unwrap()["Records"].take() {
                Value::Array(v) => v,
                _ => unreachable!(),
            };
        let items: Vec<Parsed> = LogReader::new(OneByte(doc), Limits::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records(&items), expected.iter().collect::<Vec<_>>());
        let gz = gzip(doc);
        let items: Vec<Parsed> = LogReader::new(OneByte(&gz), Limits::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records(&items), expected.iter().collect::<Vec<_>>());
    }

    #[test]
    fn threaded_reading_gives_the_same_records() {
        let doc = br#"{"Records":[{"a":"\u00e9t\u00e9"},{"b":[1,2,{"c":null}]},"x"]}"#;
        let gz = gzip(doc);
        let plain: Vec<Parsed> = LogReader::new(&gz[..], Limits::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let threaded: Vec<Parsed> =
            LogReader::threaded(std::io::Cursor::new(gz), Limits::default())
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
    fn a_reader_takes_the_last_ones_buffer_and_none_of_its_bytes() {
        // A long log, then short ones, on one thread: the second reader starts with the
        // first one's buffer (a directory of small logs allocates no chunk per file), and
        // what was left in it never shows through.
        let long = format!(
            r#"{{"Records":[{}]}}"#,
            vec![r#"{"eventName":"Long","pad":"xxxxxxxxxxxxxxxxxxxxxxxx"}"#; 10_000].join(",")
        );
        // Plain, streamed; gzip, inflated whole into the buffer (550 kB, kept: under 1 MiB).
        for bytes in [long.as_bytes().to_vec(), gzip(long.as_bytes())] {
            assert_eq!(read_all(&bytes, Limits::default()).unwrap().len(), 10_000);
            let spare = SPARE.take();
            assert!(spare.capacity() >= CHUNK, "{}", spare.capacity());
            let kept = spare.as_ptr();
            SPARE.set(spare);
            let reader = LogReader::new(
                &br#"{"Records":[{"eventName":"Short"}]}"#[..],
                Limits::default(),
            )
            .unwrap();
            assert_eq!(reader.buf.as_ptr(), kept);
            let items: Vec<Parsed> = reader.collect::<Result<_, _>>().unwrap();
            assert_eq!(
                records(&items),
                vec![&serde_json::json!({"eventName": "Short"})]
            );
            let short = gzip(br#"{"Records":[{"b":1}]}"#);
            let items = read_all(&short, Limits::default()).unwrap();
            assert_eq!(records(&items), vec![&serde_json::json!({"b": 1})]);
        }
    }

    #[test]
    fn ascii_records_are_known_utf8_and_the_rest_are_checked() {
        let doc = b"{\"Records\":[{\"a\":\"\xff\"},{\"a\":\"\xc3\xa9\"},{\"a\":\"x\\u00e9\"},{\"a\":1\xff}]}";
        let mut reader = LogReader::new(&doc[..], Limits::default()).unwrap();
        let mut seen = Vec::new();
        while let Some(split) = reader.next_split().unwrap() {
            let Split::Record(raw, _) = split else {
                panic!("refused")
            };
            let built = raw.build().map(drop).map_err(|e| e.to_string());
            assert_eq!(raw.check().map_err(|e| e.to_string()), built);
            seen.push((raw.utf8, built.is_ok()));
        }
        // Bytes beyond ASCII leave UTF-8 to be checked (inline, nobody checked it before).
        assert_eq!(
            seen,
            [(false, false), (false, true), (true, true), (false, false)]
        );
    }

    /// The peek says a record is all ASCII exactly when no byte of it is 0x80 or more, wherever
    /// that byte stands (a key, a value, a number, outside any path peeked at), and says it of
    /// each record anew: the index then tells ignore-case values apart by length alone.
    #[test]
    fn the_peek_says_which_records_are_all_ascii() {
        let records: [&[u8]; 7] = [
            b"{\"eventName\":\"GetObject\",\"userAgent\":\"aws-cli/2\"}",
            b"{\"eventName\":\"Stra\xc3\x9fe\"}",
            b"{\"eventName\":\"GetObject\"}",
            b"{\"eventName\":\"x\",\"other\":{\"k\xc3\xa9\":1}}",
            b"{\"eventName\":\"x\\u00e9\",\"n\":[1,2]}",
            b"{\"eventName\":\"x\",\"n\":1\xc3\xa9}",
            b"{\"eventName\":\"x\",\"deep\":[[{\"a\":\"\xe2\x9c\x93\"}]]}",
        ];
        let mut doc = b"{\"Records\":[".to_vec();
        doc.extend(records.join(&b","[..]));
        doc.extend(b"]}");
        let mut paths = PeekPaths::default();
        paths.insert(&["eventName".into()]);
        let mut reader = LogReader::new(&doc[..], Limits::default())
            .unwrap()
            .peeking(Arc::new(paths));
        let mut seen = Vec::new();
        while let Some(split) = reader.next_split().unwrap() {
            let Split::Record(raw, peeked) = split else {
                panic!("refused")
            };
            assert_eq!(raw.bytes, records[seen.len()]);
            seen.push(peeked.ascii());
        }
        assert_eq!(seen, records.map(|r| r.is_ascii()));
        assert_eq!(seen, [true, false, true, false, true, false, false]);
    }

    proptest::proptest! {
        /// What the peek notes of a record is what the built record holds: at every path, the
        /// same leaves in the same order, each a plain string with the same bytes, a string
        /// with escapes, or the same number, boolean or null. Compact or pretty, with keys that
        /// nest, repeat across levels and sometimes hold escapes (the peek then says it cannot
        /// tell, and is not held to it).
        #[test]
        fn the_peek_notes_what_the_built_record_holds(
            fields in proptest::collection::vec(("[abc]|a\\\\u0062", crate::json::any_value("[abc]")), 0..6),
            pretty in proptest::bool::ANY,
        ) {
            let record = Value::Object(fields.into_iter().collect());
            let text = if pretty {
                serde_json::to_string_pretty(&record).unwrap()
            } else {
                record.to_string()
            };
            let paths: Vec<Vec<Box<str>>> = [&["a"][..], &["b"], &["c", "a"], &["a", "b", "c"], &["b", "b"]]
                .iter()
                .map(|p| p.iter().map(|k| Box::<str>::from(*k)).collect())
                .collect();
            let mut peek = PeekPaths::default();
            let slots: Vec<usize> = paths.iter().map(|p| peek.insert(p)).collect();
            let doc = format!("{{\"Records\":[{text}]}}");
            let mut reader = LogReader::new(doc.as_bytes(), Limits::default())
                .unwrap()
                .peeking(Arc::new(peek));
            let Some(Split::Record(raw, peeked)) = reader.next_split().unwrap() else {
                panic!("no record in {doc}")
            };
            proptest::prop_assume!(!peeked.unknown() && raw.valid && !raw.must_build());
            let built: Value = serde_json::from_slice(raw.bytes).unwrap();
            for (path, slot) in paths.iter().zip(slots) {
                // The leaves at the path as the index reads them from a built record.
                let mut want = Vec::new();
                crate::index::for_each_leaf(&built, path, &mut |v| want.push(v));
                let seen: Vec<Leaf<'_>> = peeked.leaves(slot, raw.bytes).collect();
                proptest::prop_assert_eq!(seen.len(), want.len(), "{:?} in {}", path, text);
                for (leaf, value) in seen.iter().zip(&want) {
                    let same = match (leaf, value) {
                        (Leaf::Plain(bytes), Value::String(s)) => *bytes == s.as_bytes(),
                        (Leaf::Escaped, Value::String(_)) => true,
                        (Leaf::Scalar(from), v) if !v.is_string() => {
                            serde_json::from_slice::<Value>(crate::reader::scalar_bytes(from)).ok().as_ref() == Some(v)
                        }
                        _ => false,
                    };
                    proptest::prop_assert!(same, "{:?} at {:?}: {:?} for {}", leaf, path, value, text);
                }
            }
        }
    }

    #[test]
    fn empty_records_array() {
        assert!(read_all(br#"{"Records":[]}"#, Limits::default())
            .unwrap()
            .is_empty());
    }
}
