//! The raw-byte peek: while a record's bytes are split off, note where the values of a few of its
//! top-level fields stand, so that a record no rule can match is never built.
//!
//! The reader does not know which fields matter: the rule index names them
//! ([`crate::index::RuleIndex::peek_fields`]) and reads the answers back from [`Peeked`]. Only
//! plain strings are read from the bytes; anything else (escapes, numbers, arrays, a key written
//! with escapes) is [`Known::Unknown`], and the record must be built to tell.

use std::ops::Range;

/// The top-level fields to peek at, by name, in the order the index asked for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeekFields {
    names: Vec<Box<[u8]>>,
}

impl PeekFields {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        PeekFields {
            names: names
                .into_iter()
                .map(|n| n.as_bytes().to_vec().into_boxed_slice())
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// What the peek saw of one record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peeked {
    /// One entry per name of [`PeekFields`], in its order.
    fields: Vec<Field>,
    /// A top-level key was written with escapes: the record's keys cannot be read from the raw
    /// bytes, so nothing is known.
    escaped_key: bool,
    /// The deepest nesting of objects and arrays (the record itself is 1).
    pub(crate) max_depth: usize,
}

/// Records nested this deep are always built: building refuses nesting past serde_json's limit
/// (128), which checking alone would not notice.
pub const DEEP_RECORD: usize = 100;

impl Peeked {
    /// Forgets the last record, keeping room for `fields` answers.
    pub(crate) fn reset(&mut self, fields: usize) {
        self.fields.clear();
        self.fields.resize(fields, Field::Absent);
        self.escaped_key = false;
        self.max_depth = 0;
    }

    /// Whether checking the record could disagree with building it, so that it must be built
    /// whatever the rules say of it.
    pub fn must_build(&self) -> bool {
        self.max_depth >= DEEP_RECORD
    }

    /// What the raw bytes say of the value of the `i`-th peeked field.
    pub fn value<'b>(&self, i: usize, bytes: &'b [u8]) -> Known<'b> {
        if self.escaped_key {
            return Known::Unknown;
        }
        match self.fields.get(i) {
            None => Known::Unknown,
            Some(Field::Absent) => Known::Absent,
            Some(Field::Plain(r)) => bytes
                .get(r.clone())
                .and_then(|b| std::str::from_utf8(b).ok())
                .map_or(Known::Unknown, Known::Plain),
            Some(Field::Other) => Known::Unknown,
        }
    }
}

/// A top-level field of a record as seen in its raw bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Field {
    /// Not present.
    #[default]
    Absent,
    /// A string without escapes, at this byte range of the record (quotes excluded).
    Plain(Range<usize>),
    /// Anything else: a string with escapes, a number, an array, an object, null…
    Other,
}

/// A field's value as far as the raw bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known<'b> {
    Absent,
    Plain(&'b str),
    /// Only building the record can tell (escapes, not a string, escaped keys).
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

/// Top-level bookkeeping while a record is split: the splitter reports strings, colons, commas
/// and other values at depth 1, and the tracker fills in [`Peeked`].
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pub(crate) expect_key: bool,
    /// The peeked field whose value comes next, if the last key was one.
    slot: Option<usize>,
    /// The value of the last key has begun.
    value_seen: bool,
    string_start: usize,
    string_is_key: bool,
    pub(crate) escaped: bool,
}

impl Tracker {
    pub(crate) fn string_opened(&mut self, at: usize) {
        self.string_start = at;
        self.string_is_key = self.expect_key;
        self.escaped = false;
    }

    /// A depth-1 string closed at record position `at`; its bytes are partly in `record` (what
    /// was kept so far) and partly in `chunk`, which starts at record position `base`.
    pub(crate) fn string_closed(
        &mut self,
        fields: &PeekFields,
        peeked: &mut Peeked,
        span: Span<'_>,
        at: usize,
    ) {
        let (start, end) = (self.string_start + 1, at);
        if self.string_is_key {
            if self.escaped {
                peeked.escaped_key = true;
            }
            self.slot = fields
                .names
                .iter()
                .position(|name| span.eq(start, end, name));
            self.value_seen = false;
        } else if !self.value_seen {
            self.value_seen = true;
            let field = if self.escaped {
                Field::Other
            } else {
                Field::Plain(start..end)
            };
            self.set(peeked, field);
        }
    }

    pub(crate) fn colon(&mut self, peeked: &mut Peeked) {
        self.expect_key = false;
        // Until a plain string shows otherwise, the value is unknown.
        self.set(peeked, Field::Other);
    }

    pub(crate) fn other_value(&mut self, peeked: &mut Peeked) {
        if !self.expect_key && !self.value_seen {
            self.value_seen = true;
            self.set(peeked, Field::Other);
        }
    }

    fn set(&self, peeked: &mut Peeked, field: Field) {
        if let Some(slot) = self.slot {
            peeked.fields[slot] = field;
        }
    }
}

/// A record's bytes while it is being split: those kept so far, and the chunk at hand, which
/// starts at record position `base`.
#[derive(Clone, Copy)]
pub(crate) struct Span<'a> {
    pub(crate) record: &'a [u8],
    pub(crate) chunk: &'a [u8],
    pub(crate) base: usize,
}

impl Span<'_> {
    /// Whether record bytes `start..end` equal `target`.
    fn eq(&self, start: usize, end: usize, target: &[u8]) -> bool {
        if end - start != target.len() {
            return false;
        }
        let base = self.base;
        if start >= base {
            return self.chunk.get(start - base..end - base) == Some(target);
        }
        (start..end).zip(target).all(|(p, t)| {
            let b = if p < base {
                self.record.get(p)
            } else {
                self.chunk.get(p - base)
            };
            b == Some(t)
        })
    }
}
