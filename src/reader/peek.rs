//! The raw-byte peek: while a record's bytes are split off, note the values standing at a few
//! paths of it, so that a record no rule can match is never built.
//!
//! The reader does not know which paths matter: the rule index names them
//! ([`crate::index::PatternIndex::peek_paths`]) and reads the answers back from [`Peeked`].
//! Paths may be nested (`userIdentity.type`); arrays on the way are looked through, as patterns
//! look through them. Only plain strings are read from the bytes; a string with escapes is
//! [`Leaf::Escaped`], and anything that would make the raw reading differ from the parsed record
//! (a key written with escapes or given twice in an object the paths go through) makes the whole
//! record [`Peeked::unknown`]: only building it can tell.

use std::ops::Range;

/// Paths to peek at, as a tree of object keys. Each path the index adds gets a slot, under
/// which the leaves found there are reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeekPaths {
    /// `nodes[0]` is the record itself.
    nodes: Vec<Node>,
    slots: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    children: Vec<Child>,
    /// Bit `n` set: some child key is `n` bytes long (63: 63 or more).
    lengths: u64,
    /// The children by their key's first eight bytes and length, open-addressed (a position
    /// in `children`, or `EMPTY`): a key is found, or turned away, in about one probe however
    /// many children the node has (the record's top level may have dozens).
    table: Vec<u32>,
    slot: Option<u32>,
}

/// A child of a node: its key, the key's first and last eight bytes as numbers (together they
/// are the whole of a key of up to sixteen bytes, as most of CloudTrail's are), and its node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Child {
    key: Box<[u8]>,
    head: u64,
    tail: u64,
    node: u32,
}

impl Child {
    /// Whether `key`, whose first and last eight bytes are `head` and `tail`, is this child's
    /// key: compared as numbers, without a call to compare bytes (a key past sixteen bytes
    /// has the rest compared eight bytes at a time).
    #[inline]
    fn is(&self, key: &[u8], head: u64, tail: u64) -> bool {
        self.head == head
            && self.tail == tail
            && self.key.len() == key.len()
            && (key.len() <= 16 || crate::hash::same_bytes(&self.key[8..], &key[8..]))
    }
}

const EMPTY: u32 = u32::MAX;

/// Where a key with these first eight bytes and this length goes first in a table of `size`
/// (a power of two) entries.
#[inline]
fn bucket(head: u64, len: usize, size: usize) -> usize {
    let h = (head ^ (len as u64).rotate_left(56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 32) as usize & (size - 1)
}

impl Node {
    /// Adds a child and files it in the table, which is kept at most half full (filed anew,
    /// twice as large, when it would be more).
    fn add(&mut self, child: Child) {
        self.lengths |= 1 << child.key.len().min(63);
        self.children.push(child);
        if self.children.len() * 2 > self.table.len() {
            let size = (self.children.len() * 2).next_power_of_two().max(8);
            self.table = vec![EMPTY; size];
            (0..self.children.len()).for_each(|i| self.file(i));
        } else {
            self.file(self.children.len() - 1);
        }
    }

    /// Files child `i` in the table at the first free place from its bucket.
    fn file(&mut self, i: usize) {
        let size = self.table.len();
        let child = &self.children[i];
        let mut b = bucket(child.head, child.key.len(), size);
        while self.table[b] != EMPTY {
            b = (b + 1) & (size - 1);
        }
        self.table[b] = i as u32;
    }

    /// The position of the child whose key is `key` (in one piece).
    #[inline(always)]
    fn find(&self, key: &[u8]) -> Option<usize> {
        let size = self.table.len();
        if size == 0 {
            return None;
        }
        let (h, t) = (head(key), tail(key));
        let mut b = bucket(h, key.len(), size);
        loop {
            match self.table[b] {
                EMPTY => return None,
                i if self.children[i as usize].is(key, h, t) => return Some(i as usize),
                _ => b = (b + 1) & (size - 1),
            }
        }
    }
}

impl Default for PeekPaths {
    fn default() -> Self {
        PeekPaths {
            nodes: vec![Node::default()],
            slots: 0,
        }
    }
}

impl PeekPaths {
    /// Adds a path; returns the slot its leaves are reported under.
    pub fn insert(&mut self, path: &[Box<str>]) -> usize {
        let mut at = 0;
        for key in path {
            let key = key.as_bytes();
            let node = &self.nodes[at];
            at = match node.find(key) {
                Some(i) => node.children[i].node as usize,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[at].add(Child {
                        key: key.into(),
                        head: head(key),
                        tail: tail(key),
                        node: child as u32,
                    });
                    child
                }
            };
        }
        match self.nodes[at].slot {
            Some(slot) => slot as usize,
            None => {
                self.nodes[at].slot = Some(self.slots as u32);
                self.slots += 1;
                self.slots - 1
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    fn has_children(&self, node: u32) -> bool {
        !self.nodes[node as usize].children.is_empty()
    }

    fn slot(&self, node: u32) -> Option<u32> {
        self.nodes[node as usize].slot
    }

    fn lengths(&self, node: u32) -> u64 {
        self.nodes[node as usize].lengths
    }

    /// The child of `node` under the key at record bytes `start..end`, and its position among
    /// the children (for telling a key given twice). A key of no child's length is turned away
    /// before this, by the lengths the tracker's frame holds ([`Frame::lengths`]).
    fn child(&self, node: u32, span: Span<'_>, start: usize, end: usize) -> Option<(u32, usize)> {
        let node = &self.nodes[node as usize];
        let found = match span.contiguous(start, end) {
            // The common case: the key is in one piece; its length and first and last eight
            // bytes, as numbers, find it without a comparison of bytes (up to sixteen bytes).
            Some(key) => node.find(key).map(|i| (i, &node.children[i])),
            None => node
                .children
                .iter()
                .enumerate()
                .find(|(_, c)| span.eq(start, end, &c.key)),
        };
        found.map(|(i, c)| (c.node, i))
    }
}

/// The first eight bytes of a key (fewer, zero-padded), as a number.
#[inline]
fn head(key: &[u8]) -> u64 {
    crate::hash::padded_word(key)
}

/// The last eight bytes of a key as a number (0 for a key shorter than eight bytes, which
/// [`head`] holds whole).
#[inline]
fn tail(key: &[u8]) -> u64 {
    match key.len().checked_sub(8) {
        Some(from) => crate::hash::word_at(key, from),
        None => 0,
    }
}

/// A leaf value at a peeked path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RawLeaf {
    /// A string without escapes, at this byte range of the record (quotes excluded).
    Plain(Range<usize>),
    /// A string with escapes: only parsing can tell its value.
    Escaped,
    /// A number, `true`, `false` or `null`, starting at this byte of the record.
    Scalar(usize),
}

/// What the peek saw of one record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peeked {
    leaves: Vec<(u32, RawLeaf)>,
    /// Bit `n`: a leaf of slot `n` was found (63: of slot 63 or later).
    slots: u64,
    unknown: bool,
    /// Every byte of the record is ASCII (the splitter saw none from 0x80 up).
    ascii: bool,
}

/// A leaf value at a peeked path, as far as the raw bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf<'b> {
    /// A string without escapes, as its bytes (UTF-8 unless the record is not).
    Plain(&'b [u8]),
    /// A string with escapes.
    Escaped,
    /// A number, `true`, `false` or `null`: the record's bytes from its first on (its own
    /// are [`scalar_bytes`] of them).
    Scalar(&'b [u8]),
}

impl Peeked {
    fn reset(&mut self) {
        self.leaves.clear();
        self.slots = 0;
        self.unknown = false;
        self.ascii = false;
    }

    /// Says whether every byte of the record is ASCII, as the splitter found at its end.
    pub(crate) fn set_ascii(&mut self, ascii: bool) {
        self.ascii = ascii;
    }

    /// Whether every byte of the record is ASCII, so every string leaf is (`false` says only
    /// that this is not known): the index then need not look at a leaf's bytes to tell.
    pub fn ascii(&self) -> bool {
        self.ascii
    }

    fn push(&mut self, slot: u32, leaf: RawLeaf) {
        self.slots |= 1 << slot.min(63);
        self.leaves.push((slot, leaf));
    }

    /// Whether some leaf may stand at the path of `slot` (`false` is exact: none does).
    pub fn may_have(&self, slot: usize) -> bool {
        self.slots & (1 << slot.min(63)) != 0
    }

    /// Whether the raw bytes cannot be trusted to show the record's values at the peeked paths
    /// (a key with escapes, or a key given twice, on the way): only building it can tell.
    pub fn unknown(&self) -> bool {
        self.unknown
    }

    /// Every leaf found, with the slot of its path, in record order.
    pub fn all<'b>(&'b self, bytes: &'b [u8]) -> impl Iterator<Item = (usize, Leaf<'b>)> {
        self.leaves
            .iter()
            .map(move |(slot, leaf)| (*slot as usize, leaf.read(bytes)))
    }

    /// The leaves found at the path of `slot`, in record order.
    pub fn leaves<'b>(&'b self, slot: usize, bytes: &'b [u8]) -> impl Iterator<Item = Leaf<'b>> {
        // Most records have no leaf at most slots: they are told without a look at the leaves.
        let leaves = if self.may_have(slot) {
            &self.leaves[..]
        } else {
            &[]
        };
        leaves
            .iter()
            .filter(move |(s, _)| *s as usize == slot)
            .map(move |(_, leaf)| leaf.read(bytes))
    }
}

impl RawLeaf {
    fn read<'b>(&self, bytes: &'b [u8]) -> Leaf<'b> {
        match self {
            RawLeaf::Plain(r) => bytes.get(r.clone()).map_or(Leaf::Escaped, Leaf::Plain),
            RawLeaf::Escaped => Leaf::Escaped,
            RawLeaf::Scalar(start) => Leaf::Scalar(bytes.get(*start..).unwrap_or_default()),
        }
    }
}

/// The bytes of the scalar (a number, `true`, `false` or `null`) that `from` starts with: up to
/// the first byte that is part of neither a number nor a literal.
pub fn scalar_bytes(from: &[u8]) -> &[u8] {
    let len = from
        .iter()
        .position(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'+' | b'-' | b'.' | b'E'))
        .unwrap_or(from.len());
    &from[..len]
}

/// What the peek saw of many records, kept end to end (records are handed to another thread
/// in batches, with what was seen of them).
#[derive(Debug, Clone, Default)]
pub struct PeekedBatch {
    leaves: Vec<(u32, RawLeaf)>,
}

/// Where one record's peek stands in a [`PeekedBatch`].
#[derive(Debug, Clone, Copy)]
pub struct PeekedAt {
    start: usize,
    end: usize,
    slots: u64,
    unknown: bool,
    ascii: bool,
}

impl PeekedBatch {
    pub fn push(&mut self, peeked: &Peeked) -> PeekedAt {
        let start = self.leaves.len();
        self.leaves.extend_from_slice(&peeked.leaves);
        PeekedAt {
            start,
            end: self.leaves.len(),
            slots: peeked.slots,
            unknown: peeked.unknown,
            ascii: peeked.ascii,
        }
    }

    /// Puts one record's peek back into `into`.
    pub fn load(&self, at: PeekedAt, into: &mut Peeked) {
        into.leaves.clear();
        into.leaves
            .extend_from_slice(self.leaves.get(at.start..at.end).unwrap_or_default());
        into.slots = at.slots;
        into.unknown = at.unknown;
        into.ascii = at.ascii;
    }

    pub fn clear(&mut self) {
        self.leaves.clear();
    }
}

/// One open object or array on a peeked path.
#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    node: u32,
    object: bool,
    /// In an object: the next string is a key.
    expect_key: bool,
    /// The node of the value after the last key (`None`: not peeked).
    value_node: Option<u32>,
    /// The current value (after a key, or an array element) has begun.
    value_seen: bool,
    /// Children whose key was seen in this object (bit per position; 64 or more: all bits).
    seen: u64,
    /// The lengths of the node's children's keys ([`Node::lengths`]), held here: most keys of
    /// a followed object are told not to be peeked at by their length alone.
    lengths: u64,
}

/// Follows the splitter through one record: the splitter reports strings, brackets, colons,
/// commas and other values, and the tracker fills in [`Peeked`] for the containers on peeked
/// paths (those at depth `open`; anything deeper is not on a peeked path).
///
/// The innermost tracked container is `top`, held in the tracker itself rather than at the end
/// of the stack of the others: every string, colon and comma at a tracked depth reads or
/// writes it, and a field of the tracker costs a load where the end of a vector costs its
/// length, a check and the address arithmetic.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// The innermost tracked container, when `open > 0`.
    top: Frame,
    /// The tracked containers around `top`, outermost first.
    outer: Vec<Frame>,
    /// Tracked containers open (`top` and `outer`).
    open: usize,
    string_start: usize,
    string_is_key: bool,
    /// The string open is a key, or a value the peek may note: a value after a key not on a
    /// peeked path is passed over at its close (see [`Tracker::string_wanted`]). It and
    /// `string_is_key` could be read from `top` at the close (nothing followed changes inside a
    /// string); stored here they cost 64 M fewer instructions on the benchmark corpus, the
    /// splitter's loop being laid out otherwise.
    wanted: bool,
    pub(crate) escaped: bool,
}

impl Tracker {
    pub(crate) fn start(&mut self, peeked: &mut Peeked) {
        self.outer.clear();
        self.open = 0;
        peeked.reset();
    }

    /// Whether a container at `depth` (the number of containers open) is on a peeked path.
    #[inline]
    pub(crate) fn tracking(&self, depth: usize) -> bool {
        depth == self.open
    }

    /// The innermost tracked container, if any is open.
    #[inline(always)]
    fn top(&mut self) -> Option<&mut Frame> {
        (self.open > 0).then_some(&mut self.top)
    }

    /// The node of the value beginning now, if it is on a peeked path.
    fn value_node(&self) -> Option<u32> {
        match self.open {
            0 => Some(0),
            _ if self.top.object => self.top.value_node,
            _ => Some(self.top.node),
        }
    }

    pub(crate) fn string_opened(&mut self, at: usize) {
        self.string_start = at;
        let in_object = self.open > 0 && self.top.object;
        self.string_is_key = in_object && self.top.expect_key;
        self.wanted = !in_object || self.top.expect_key || self.top.value_node.is_some();
        self.escaped = false;
    }

    /// Whether the string open must be told when it closes ([`Tracker::string_closed`]): not
    /// when it is the value of an object's key that no peeked path goes through, most of a
    /// record's strings (at its top level, every value but those of the keys peeked at). Such
    /// a string is the whole of its value, so passing it over changes nothing the peek notes.
    #[inline(always)]
    pub(crate) fn string_wanted(&self) -> bool {
        self.wanted
    }

    /// A string closed at record position `at` (its bytes in `span`).
    pub(crate) fn string_closed(
        &mut self,
        paths: &PeekPaths,
        peeked: &mut Peeked,
        span: Span<'_>,
        at: usize,
    ) {
        let (start, end) = (self.string_start + 1, at);
        if self.string_is_key {
            // A key is told only inside an object, so `top` is open.
            let escaped = self.escaped;
            let frame = &mut self.top;
            if escaped {
                // The key may be one of the peeked ones, written otherwise.
                peeked.unknown = true;
                frame.value_node = None;
            } else if frame.lengths & (1 << (end - start).min(63)) == 0 {
                // No child's key has this length.
                frame.value_node = None;
            } else {
                frame.value_node = paths.child(frame.node, span, start, end).map(|(child, i)| {
                    let bit = if i < 64 { 1 << i } else { u64::MAX };
                    if frame.seen & bit != 0 {
                        // A key given twice: the parsed record keeps the last value.
                        peeked.unknown = true;
                    }
                    frame.seen |= bit;
                    child
                });
            }
            frame.value_seen = false;
            return;
        }
        let leaf = if self.escaped {
            RawLeaf::Escaped
        } else {
            RawLeaf::Plain(start..end)
        };
        self.value_begins(paths, peeked, leaf);
    }

    /// A scalar other than a string (a byte of a number, `true`, `false`, `null`) at record
    /// position `at`.
    pub(crate) fn scalar(&mut self, paths: &PeekPaths, peeked: &mut Peeked, at: usize) {
        self.value_begins(paths, peeked, RawLeaf::Scalar(at));
    }

    fn value_begins(&mut self, paths: &PeekPaths, peeked: &mut Peeked, leaf: RawLeaf) {
        if let Some(frame) = self.top() {
            if frame.value_seen {
                return;
            }
            frame.value_seen = true;
        }
        if let Some(slot) = self.value_node().and_then(|n| paths.slot(n)) {
            peeked.push(slot, leaf);
        }
    }

    /// `{` or `[` at a tracked depth: the container is followed when it is on a peeked path.
    /// Returns whether it is (the splitter then counts it as tracked).
    pub(crate) fn open(&mut self, paths: &PeekPaths, object: bool) -> bool {
        let node = self.value_node();
        if let Some(frame) = self.top() {
            frame.value_seen = true;
        }
        match node {
            // An object is followed only where a peeked path goes on; an array always (its
            // elements stand at the same path).
            Some(node) if !object || paths.has_children(node) => {
                if self.open > 0 {
                    self.outer.push(self.top);
                }
                self.top = Frame {
                    node,
                    object,
                    expect_key: object,
                    value_node: None,
                    value_seen: false,
                    seen: 0,
                    lengths: if object { paths.lengths(node) } else { 0 },
                };
                self.open += 1;
                true
            }
            _ => false,
        }
    }

    /// `}` or `]` closing a tracked container.
    pub(crate) fn close(&mut self) {
        self.open = self.open.saturating_sub(1);
        if let Some(frame) = self.outer.pop() {
            self.top = frame;
        }
    }

    pub(crate) fn colon(&mut self) {
        if let Some(f) = self.top() {
            f.expect_key = false;
        }
    }

    pub(crate) fn comma(&mut self) {
        if let Some(f) = self.top() {
            f.expect_key = f.object;
            f.value_seen = false;
            if f.object {
                f.value_node = None;
            }
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

impl<'a> Span<'a> {
    /// Record bytes `start..end`, when they are all in the chunk at hand.
    #[inline]
    fn contiguous(&self, start: usize, end: usize) -> Option<&'a [u8]> {
        if start >= self.base {
            self.chunk.get(start - self.base..end - self.base)
        } else {
            None
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch handed to another thread gives each record's peek back whole, its ASCII flag
    /// included.
    #[test]
    fn a_batch_gives_back_each_peek() {
        let mut batch = PeekedBatch::default();
        let mut at = Vec::new();
        for (n, ascii) in [(0u32, true), (1, false), (2, true)] {
            let mut p = Peeked::default();
            p.push(n, RawLeaf::Scalar(n as usize));
            p.set_ascii(ascii);
            at.push((batch.push(&p), p));
        }
        let mut into = Peeked::default();
        for (at, p) in at {
            batch.load(at, &mut into);
            assert_eq!(into, p);
        }
    }

    /// A node's children are found by their table whatever their number, and keys that differ
    /// from one only after eight bytes, or only in length, are not taken for it.
    #[test]
    fn children_are_found_by_key_and_length() {
        let mut paths = PeekPaths::default();
        let mut keys: Vec<String> = (0..300)
            .map(|n| match n % 3 {
                0 => format!("k{n}"),
                1 => format!("requestParameters{n}"),
                _ => format!("sameHead{n:04}"),
            })
            .collect();
        keys.push("abcdefgh_X_12345678".into());
        let slots: Vec<usize> = keys
            .iter()
            .map(|k| paths.insert(&[k.as_str().into()]))
            .collect();
        let find = |key: &str| {
            let bytes = key.as_bytes();
            let span = Span {
                record: &[],
                chunk: bytes,
                base: 0,
            };
            paths
                .child(0, span, 0, bytes.len())
                .and_then(|(node, _)| paths.slot(node))
                .map(|s| s as usize)
        };
        for (key, slot) in keys.iter().zip(&slots) {
            assert_eq!(find(key), Some(*slot), "{key}");
            for near in [
                format!("{key}x"),
                key[..key.len() - 1].to_owned(),
                format!("x{key}"),
            ] {
                if !keys.contains(&near) {
                    assert_eq!(find(&near), None, "{near}");
                }
            }
        }
        assert_eq!(find("sameHead9999"), None);
        // Past sixteen bytes, the middle counts too.
        assert!(find("abcdefgh_X_12345678").is_some());
        assert_eq!(find("abcdefgh_Y_12345678"), None);
        assert_eq!(find(""), None);
    }
}
