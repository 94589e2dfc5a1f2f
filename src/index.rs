//! The rule index: one record matched against many patterns at a cost that does not grow with
//! their number, and the decision, from a record's raw bytes, whether it must be built at all.
//!
//! Each pattern is filed under its anchors ([`Pattern::anchors`]): single-field tests one of
//! which every record it matches passes. Per field, the index holds exact values in a hash map,
//! prefixes and suffixes by length (a record's value is looked up once per length in use), the
//! lower-cased forms of the same for the `equals-ignore-case` family, services for envelope
//! `source`, and the patterns that only need the field present. A record's values at each
//! indexed field are looked up once; only the patterns whose anchors it passes are evaluated in
//! full, and only a pattern with no anchor at all (say, only `exists: false`) is tried on every
//! record.
//!
//! The index alone knows which fields it files under, so it names them to the reader
//! ([`PatternIndex::peek_paths`]) and reads the reader's answers back ([`PatternIndex::wants`]):
//! a record whose raw values pass no anchor is never built. The whole fast-path decision is
//! here.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use serde_json::Value;

use crate::hash::{same_bytes, FastHash};
use crate::pattern::{service_len, Anchor, Event, Path, Pattern, Test};
use crate::reader::{Leaf, PeekPaths, Peeked};

type Ids = Vec<u32>;
/// Keys are the bytes of UTF-8 strings: a record's raw values are looked up as they stand.
type Table = HashMap<Box<[u8]>, Ids, FastHash>;

/// A set of compiled patterns, indexed for matching.
#[derive(Debug, Clone, Default)]
pub struct PatternIndex {
    patterns: Vec<Pattern>,
    /// One per path some pattern is anchored at.
    fields: Vec<FieldTable>,
    /// Patterns with no anchors: tried on every record.
    unanchored: Ids,
    /// Per pattern, its second anchor set (peek slot and test), checked from the raw values
    /// before a record is built for it: a number in `second_sets` (an empty set: none to
    /// check). Patterns with the same set share it, so that it is checked once for all of
    /// them.
    second: Vec<u32>,
    second_sets: Vec<Vec<(usize, Test)>>,
    second_ids: HashMap<Vec<(usize, Test)>, u32>,
    /// The paths of the anchor sets; `tables[slot]` is the table of that path, if it has one
    /// (a path of second anchor sets only has none).
    peek: PeekPaths,
    tables: Vec<Option<usize>>,
    /// Changes with every pattern added (numbers are never reused), so that a [`Scratch`]
    /// knows whether the values it remembers were looked up in this index as it stands.
    generation: u64,
}

/// The last generation given to an index.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The anchors at one path.
#[derive(Debug, Clone, Default)]
struct FieldTable {
    path: Path,
    exact: Table,
    folded: Table,
    prefix: Affixes,
    folded_prefix: Affixes,
    suffix: Affixes,
    folded_suffix: Affixes,
    service: Table,
    present: Ids,
    /// A value costs more than one lookup here (prefixes, suffixes, services or many
    /// ignore-case values are filed): the record reader remembers values' hits ([`Memo`]).
    memoized: bool,
    /// The byte lengths of the ignore-case values filed (bit n: length n; bit 63: 63 or
    /// more), so that an ASCII value of no such length — folding ASCII keeps its length — is
    /// not folded to be looked up in vain (long user agents and ARNs, at paths where a few
    /// short values are filed ignoring case).
    folded_lengths: u64,
    /// The byte lengths of the exact values filed, as `folded_lengths`: a value of none of
    /// them is not hashed to be looked up in vain (SigmaHQ's `eventSource` second anchors: one
    /// service name, looked up for every record).
    exact_lengths: u64,
}

/// Prefixes (or suffixes) by value, and the lengths in use, so that a record's value is looked
/// up once per length rather than once per pattern.
#[derive(Debug, Clone, Default)]
struct Affixes {
    table: Table,
    lengths: Vec<usize>,
    /// The first bytes of the prefixes (last bytes of the suffixes), so that most values are
    /// turned away without a lookup.
    ends: [u64; 4],
}

impl Affixes {
    fn insert(&mut self, affix: &str, id: u32, prefix: bool) {
        file(&mut self.table, affix.as_bytes(), id);
        let end = if prefix {
            affix.as_bytes().first()
        } else {
            affix.as_bytes().last()
        };
        if let Some(&b) = end {
            self.ends[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        if !self.lengths.contains(&affix.len()) {
            self.lengths.push(affix.len());
            self.lengths.sort_unstable();
        }
    }

    /// Appends the ids of the affixes `value` has. Most paths file one kind of test
    /// (SigmaHQ's rules: ignore-case values only): where no affix is filed, this is a test in
    /// the caller, not a call.
    #[inline]
    fn hits(&self, value: &[u8], prefix: bool, out: &mut Ids) {
        if !self.lengths.is_empty() {
            self.filed_hits(value, prefix, out);
        }
    }

    fn filed_hits(&self, value: &[u8], prefix: bool, out: &mut Ids) {
        let end = if prefix { value.first() } else { value.last() };
        // An empty prefix (or suffix) passes every value, whatever its ends.
        let turned_away =
            end.is_some_and(|&b| self.ends[usize::from(b >> 6)] & (1 << (b & 63)) == 0);
        if turned_away && self.lengths.first() != Some(&0) {
            return;
        }
        for &n in &self.lengths {
            if n > value.len() {
                break;
            }
            let part = if prefix {
                &value[..n]
            } else {
                &value[value.len() - n..]
            };
            if let Some(ids) = self.table.get(part) {
                out.extend_from_slice(ids);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }
}

fn file(table: &mut Table, key: &[u8], id: u32) {
    let ids = table.entry(key.into()).or_default();
    if ids.last() != Some(&id) {
        ids.push(id);
    }
}

impl FieldTable {
    fn insert(&mut self, test: &Test, id: u32) {
        self.memoized |= !matches!(
            test,
            Test::Exact(_) | Test::Present | Test::Scalar(_) | Test::Folded(_)
        );
        match test {
            Test::Exact(v) => {
                file(&mut self.exact, v.as_bytes(), id);
                self.exact_lengths |= length_bit(v.len());
            }
            Test::Folded(v) => {
                file(&mut self.folded, v.as_bytes(), id);
                self.folded_lengths |= length_bit(v.len());
                // A few ignore-case values are not worth remembering values for: a value of
                // none of their lengths is turned away without a lookup (`folded_lengths`),
                // where the memo would hash it and keep a copy of each (long user agents,
                // thousands of them, churn it). Many (dozens of event names) are: their
                // lengths let most values through.
                self.memoized |= self.folded.len() >= FOLDED_TO_REMEMBER;
            }
            Test::Prefix(v) => self.prefix.insert(v, id, true),
            Test::FoldedPrefix(v) => self.folded_prefix.insert(v, id, true),
            Test::Suffix(v) => self.suffix.insert(v, id, false),
            Test::FoldedSuffix(v) => self.folded_suffix.insert(v, id, false),
            Test::Service(v) => file(&mut self.service, v.as_bytes(), id),
            // Filed as present: a scalar's test is checked in the second set, or by the
            // pattern itself.
            Test::Present | Test::Scalar(_) => {
                if self.present.last() != Some(&id) {
                    self.present.push(id);
                }
            }
        }
    }

    /// The patterns whose anchors at this path one of the record's leaves passes.
    fn candidates(&self, record: &Value, out: &mut Ids) {
        let mut any_leaf = false;
        let mut folded = Vec::new();
        for_each_leaf(record, &self.path, &mut |leaf| {
            any_leaf = true;
            if let Value::String(s) = leaf {
                self.string_hits(s.as_bytes(), false, &mut folded, out);
            }
        });
        if any_leaf {
            out.extend_from_slice(&self.present);
        }
    }

    /// The patterns whose anchors at this path a leaf the reader peeked at passes; `None`
    /// when only parsing can tell (a string with escapes).
    #[inline(always)]
    fn peeked_hits(
        &self,
        leaf: Leaf<'_>,
        ascii: bool,
        folded: &mut Vec<u8>,
        memo: &mut Memo,
        out: &mut Ids,
    ) -> Option<()> {
        out.clear();
        match leaf {
            Leaf::Plain(s) if self.memoized => {
                memo.hits(s, out, |s, out| self.string_hits(s, ascii, folded, out));
            }
            Leaf::Plain(s) => self.string_hits(s, ascii, folded, out),
            Leaf::Escaped => return None,
            Leaf::Scalar(_) => {}
        }
        out.extend_from_slice(&self.present);
        Some(())
    }

    /// The patterns whose string anchors the string `s` (its UTF-8 bytes) passes. `ascii`: `s`
    /// is known to be ASCII (its record is), which spares looking at its bytes to tell.
    fn string_hits(&self, s: &[u8], ascii: bool, folded: &mut Vec<u8>, out: &mut Ids) {
        if self.exact_lengths & length_bit(s.len()) != 0 {
            if let Some(ids) = self.exact.get(s) {
                out.extend_from_slice(ids);
            }
        }
        self.prefix.hits(s, true, out);
        self.suffix.hits(s, false, out);
        if !self.service.is_empty() {
            if let Some(ids) = service_bytes(s).and_then(|svc| self.service.get(svc)) {
                out.extend_from_slice(ids);
            }
        }
        let affixes = !(self.folded_prefix.is_empty() && self.folded_suffix.is_empty());
        let exact = !self.folded.is_empty()
            && (self.folded_lengths & length_bit(s.len()) != 0 || !(ascii || s.is_ascii()));
        if affixes || exact {
            fold(s, folded);
            if exact {
                if let Some(ids) = self.folded.get(folded.as_slice()) {
                    out.extend_from_slice(ids);
                }
            }
            self.folded_prefix.hits(folded, true, out);
            self.folded_suffix.hits(folded, false, out);
        }
    }
}

/// A length's bit in [`FieldTable::folded_lengths`] and [`FieldTable::exact_lengths`].
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// The hits of values met before at one path, for a table where a value costs several lookups:
/// CloudTrail repeats its values (a few hundred event names, user agents and ARNs make up most
/// records), so one hashed lookup of the whole value replaces an exact lookup, one per prefix
/// and suffix length in use, and the ignore-case ones. Bounded: values longer than
/// [`MEMO_VALUE_BYTES`] are not kept, and past [`MEMO_VALUES`] values it starts afresh.
#[derive(Debug, Default)]
struct Memo {
    /// Each value, with where its hits are in `ids`; compared by [`same_bytes`].
    seen: hashbrown::HashTable<(Box<[u8]>, u32, u32)>,
    /// The values come from records, so they are hashed with a seed of this process's own
    /// (foldhash, which serde_json already builds): values made to collide cannot be planned.
    hasher: foldhash::fast::RandomState,
    /// The hits of every value in `seen`, end to end.
    ids: Ids,
}

const MEMO_VALUES: usize = 2048;
/// Ignore-case values at one path from which its values are remembered (see
/// [`FieldTable::insert`]).
const FOLDED_TO_REMEMBER: usize = 8;
const MEMO_VALUE_BYTES: usize = 160;

impl Memo {
    /// Appends to `out` the hits of `s`, as `compute` gives them (which it calls only for a
    /// value not met before).
    fn hits(&mut self, s: &[u8], out: &mut Ids, compute: impl FnOnce(&[u8], &mut Ids)) {
        let hash = self.hasher.hash_one(s);
        if let Some((_, start, end)) = self.seen.find(hash, |(k, ..)| same_bytes(k, s)) {
            out.extend_from_slice(&self.ids[*start as usize..*end as usize]);
            return;
        }
        let before = out.len();
        compute(s, out);
        if s.len() > MEMO_VALUE_BYTES {
            return;
        }
        if self.seen.len() >= MEMO_VALUES {
            self.seen.clear();
            self.ids.clear();
        }
        let start = self.ids.len() as u32;
        self.ids.extend_from_slice(&out[before..]);
        let end = self.ids.len() as u32;
        let hasher = &self.hasher;
        self.seen
            .insert_unique(hash, (s.into(), start, end), |(k, ..)| hasher.hash_one(k));
    }
}

/// Whether a raw leaf passes a test; `true` when only parsing can tell.
fn test_passes(test: &Test, leaf: Leaf<'_>) -> bool {
    let s = match (leaf, test) {
        (Leaf::Escaped, _) => return true,
        (Leaf::Scalar(_), Test::Present) => return true,
        (Leaf::Scalar(from), Test::Scalar(scalar)) => {
            return scalar.passes(crate::reader::scalar_bytes(from))
        }
        (Leaf::Scalar(_), _) => return false,
        (Leaf::Plain(s), _) => s,
    };
    let folded = || {
        let mut out = Vec::new();
        fold(s, &mut out);
        out
    };
    match test {
        Test::Exact(v) => s == v.as_bytes(),
        Test::Folded(v) => folded() == v.as_bytes(),
        Test::Prefix(v) => s.starts_with(v.as_bytes()),
        Test::FoldedPrefix(v) => folded().starts_with(v.as_bytes()),
        Test::Suffix(v) => s.ends_with(v.as_bytes()),
        Test::FoldedSuffix(v) => folded().ends_with(v.as_bytes()),
        Test::Service(v) => service_bytes(s) == Some(v.as_bytes()),
        Test::Present => true,
        // No string is a number, a boolean or null.
        Test::Scalar(_) => false,
    }
}

/// Folds a string's bytes as the ignore-case matchers do (ASCII quickly; bytes that are not
/// UTF-8 are left as they are, and the record will be refused when built or checked).
fn fold(s: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if s.is_ascii() {
        out.extend(s.iter().map(u8::to_ascii_lowercase));
    } else if let Ok(text) = std::str::from_utf8(s) {
        let mut folded = String::new();
        crate::pattern::fold_into(text, &mut folded);
        out.extend_from_slice(folded.as_bytes());
    } else {
        out.extend_from_slice(s);
    }
}

/// The service part of an `eventSource`'s bytes.
fn service_bytes(s: &[u8]) -> Option<&[u8]> {
    service_len(s).map(|n| &s[..n])
}

/// Calls `f` on each leaf (scalar) value at `path`: arrays are looked through on the way and at
/// the end, as a pattern looks at them.
pub(crate) fn for_each_leaf<'v>(
    value: &'v Value,
    path: &[Box<str>],
    f: &mut impl FnMut(&'v Value),
) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| for_each_leaf(item, path, f)),
        Value::Object(map) => {
            if let Some((first, rest)) = path.split_first() {
                if let Some(child) = map.get(&**first) {
                    for_each_leaf(child, rest, f);
                }
            }
        }
        scalar if path.is_empty() => f(scalar),
        _ => {}
    }
}

/// Reusable scratch space for [`PatternIndex::matching`] and [`PatternIndex::wants`], so that
/// they do not allocate per record.
#[derive(Debug, Default)]
pub struct Scratch {
    candidates: Ids,
    /// One peeked value's hits, on their way to `candidates`.
    hits: Ids,
    folded: Vec<u8>,
    /// Per field table, the values met before (see [`Memo`]), in the index of this generation.
    memos: Vec<Memo>,
    generation: u64,
}

impl PatternIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pattern; its position (0, 1, …) is what [`PatternIndex::matching`] reports.
    pub fn push(&mut self, pattern: Pattern) -> usize {
        let id = self.patterns.len();
        self.generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let id32 = u32::try_from(id).unwrap_or(u32::MAX);
        let mut sets = pattern.anchor_sets();
        // Of the cheapest sets, the one whose paths the reader peeks at already (then the
        // shallowest): every path peeked at costs the reader time on every record, a nested
        // one more (`ConsoleLogin` with an `errorMessage` is filed under `eventName`, which
        // other patterns peek at, not under `errorMessage`). The one passed over stays the
        // second set.
        if let Some(cheapest) = sets.first().map(|s| crate::pattern::anchor_cost(s)) {
            let peek_cost = |set: &[Anchor]| {
                let new = set
                    .iter()
                    .filter(|a| !self.fields.iter().any(|t| t.path == a.path))
                    .count();
                let depth: usize = set.iter().map(|a| a.path.len()).sum();
                (new, depth)
            };
            let best = (0..sets.len())
                .filter(|&i| crate::pattern::anchor_cost(&sets[i]) == cheapest)
                .min_by_key(|&i| peek_cost(&sets[i]))
                .unwrap_or(0);
            sets[..=best].rotate_right(1);
        }
        match sets.first() {
            Some(anchors) => {
                for Anchor { path, test } in anchors {
                    let at = match self.fields.iter().position(|t| t.path == *path) {
                        Some(at) => at,
                        None => {
                            let slot = self.peek.insert(path);
                            if self.tables.len() <= slot {
                                self.tables.resize(slot + 1, None);
                            }
                            self.tables[slot] = Some(self.fields.len());
                            self.fields.push(FieldTable {
                                path: path.clone(),
                                ..FieldTable::default()
                            });
                            self.fields.len() - 1
                        }
                    };
                    self.fields[at].insert(test, id32);
                }
            }
            None => self.unanchored.push(id32),
        }
        // A second set is worth peeking at only behind a first that many records pass (a
        // prefix, a suffix, a field merely present, a value of a broad field such as
        // `eventSource`): exact values of other fields are selective enough, and every path
        // peeked at costs the reader time on every record.
        let weak_first = sets
            .first()
            .is_some_and(|set| set.iter().any(Anchor::is_weak));
        let second: Vec<(usize, Test)> = match sets.get(1) {
            Some(set) if weak_first => set
                .iter()
                .map(|a| (self.peek.insert(&a.path), a.test.clone()))
                .collect(),
            _ => Vec::new(),
        };
        let next = self.second_sets.len() as u32;
        let set = *self.second_ids.entry(second.clone()).or_insert(next);
        if set == next {
            self.second_sets.push(second);
        }
        self.second.push(set);
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

    /// The paths whose raw values [`PatternIndex::wants`] reads: the paths of the patterns'
    /// first and second anchor sets, or none when some pattern must be tried on every record
    /// anyway.
    pub fn peek_paths(&self) -> Arc<PeekPaths> {
        Arc::new(if self.unanchored.is_empty() {
            self.peek.clone()
        } else {
            PeekPaths::default()
        })
    }

    /// Whether some pattern has no anchor, so that every record is built and matched.
    pub fn builds_every_record(&self) -> bool {
        !self.unanchored.is_empty()
    }

    /// Whether any pattern could match the record whose raw bytes the reader peeked at with
    /// [`PatternIndex::peek_paths`]. `false` is exact: no pattern can match, so the record need
    /// not be built; `true` only says that matching must look.
    pub fn wants(&self, peeked: &Peeked, bytes: &[u8], scratch: &mut Scratch) -> bool {
        if !self.unanchored.is_empty() || peeked.unknown() {
            return true;
        }
        let Scratch {
            candidates,
            folded,
            memos,
            generation,
            ..
        } = scratch;
        if *generation != self.generation {
            memos.clear();
            memos.resize_with(self.fields.len(), Memo::default);
            *generation = self.generation;
        }
        let ascii = peeked.ascii();
        peeked.all(bytes).any(|(slot, leaf)| {
            let Some(&Some(table)) = self.tables.get(slot) else {
                return false;
            };
            match self.fields[table].peeked_hits(leaf, ascii, folded, &mut memos[table], candidates)
            {
                None => true,
                Some(()) => {
                    // Candidates filed under the same value often share their second set.
                    let mut last = None;
                    candidates.iter().any(|&id| {
                        let set = self.second[id as usize];
                        match last {
                            Some((s, holds)) if s == set => holds,
                            _ => {
                                let holds = self.second_holds(set, peeked, bytes);
                                last = Some((set, holds));
                                holds
                            }
                        }
                    })
                }
            }
        })
    }

    /// Whether the raw values pass a second anchor set (an empty one always holds).
    fn second_holds(&self, set: u32, peeked: &Peeked, bytes: &[u8]) -> bool {
        let second = &self.second_sets[set as usize];
        second.is_empty()
            || second.iter().any(|(slot, test)| {
                peeked
                    .leaves(*slot, bytes)
                    .any(|leaf| test_passes(test, leaf))
            })
    }

    /// After [`PatternIndex::wants`] said yes for a record: takes the patterns that could
    /// match it from the values the reader peeked at, as [`PatternIndex::matching`] takes them
    /// from the built record, for [`PatternIndex::matching_peeked`]. `false` when only the
    /// built record can tell (some pattern has no anchor, or a value holds an escape).
    ///
    /// The peek reports every value the built record holds at a path (which makes `wants`
    /// exact), so the patterns taken here include those `matching` would take.
    pub fn peeked_candidates(&self, peeked: &Peeked, bytes: &[u8], scratch: &mut Scratch) -> bool {
        if !self.unanchored.is_empty() || peeked.unknown() || scratch.generation != self.generation
        {
            return false;
        }
        let Scratch {
            candidates,
            hits,
            folded,
            memos,
            ..
        } = scratch;
        candidates.clear();
        for (slot, leaf) in peeked.all(bytes) {
            let Some(&Some(table)) = self.tables.get(slot) else {
                continue;
            };
            if self.fields[table]
                .peeked_hits(leaf, peeked.ascii(), folded, &mut memos[table], hits)
                .is_none()
            {
                return false;
            }
            candidates.extend_from_slice(hits);
        }
        candidates.sort_unstable();
        candidates.dedup();
        true
    }

    /// Calls `hit` with the id of every pattern that matches `record`, in the order the patterns
    /// were added.
    pub fn matching(&self, record: &Value, scratch: &mut Scratch, hit: impl FnMut(usize)) {
        let candidates = &mut scratch.candidates;
        candidates.clear();
        candidates.extend_from_slice(&self.unanchored);
        for table in &self.fields {
            table.candidates(record, candidates);
        }
        candidates.sort_unstable();
        candidates.dedup();
        self.matching_peeked(record, scratch, hit);
    }

    /// [`PatternIndex::matching`] for a record whose candidates
    /// [`PatternIndex::peeked_candidates`] took.
    pub fn matching_peeked(&self, record: &Value, scratch: &Scratch, mut hit: impl FnMut(usize)) {
        if scratch.candidates.is_empty() {
            return;
        }
        let event = Event::record(record);
        for &id in scratch.candidates.iter() {
            if self.patterns[id as usize].matches(&event) {
                hit(id as usize);
            }
        }
    }

    /// The ids of the patterns that match, in order: a convenience over [`PatternIndex::matching`].
    pub fn matches(&self, record: &Value) -> Vec<usize> {
        let mut out = Vec::new();
        self.matching(record, &mut Scratch::default(), |id| out.push(id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The patterns that match `r`, each matched alone.
    fn alone(patterns: &[Value], r: &Value) -> Vec<usize> {
        patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| Pattern::compile(p).unwrap().matches(&Event::record(r)))
            .map(|(i, _)| i)
            .collect()
    }

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
            let direct = alone(&patterns, r);
            assert_eq!(idx.matches(r), direct, "record {r}");
        }
        assert_eq!(idx.matches(&records[0]), vec![0, 2]);
        assert_eq!(idx.matches(&records[1]), vec![1, 3]);
        assert_eq!(idx.matches(&records[2]), vec![4]);
        assert_eq!(idx.matches(&records[3]), vec![4]);
        assert_eq!(idx.matches(&records[4]), vec![5]);
        assert!(idx.matches(&records[5]).is_empty());
    }

    /// Ignore-case values are folded only when a filed value could equal them: an ASCII value
    /// of a length no ignore-case value has is passed over (folding ASCII keeps the length),
    /// a non-ASCII one is always folded (`ß` folds to `ss`), and lengths of 63 bytes or more
    /// share one bit. Whatever is passed over, the index agrees with the patterns alone.
    #[test]
    fn ignore_case_values_of_other_lengths_are_not_folded_and_still_agree() {
        let long =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119";
        let patterns = [
            json!({"userAgent": [{"equals-ignore-case": "TruffleHog"}]}),
            json!({"userAgent": [{"equals-ignore-case": long}]}),
            json!({"eventName": [{"equals-ignore-case": "strasse"}]}),
        ];
        let idx = index(&patterns);
        let records = [
            json!({"userAgent": "TRUFFLEHOG"}),
            json!({"userAgent": "trufflehog/3"}),
            json!({"userAgent": long.to_uppercase()}),
            json!({"userAgent": format!("{long}.0")}),
            json!({"eventName": "STRASSE"}),
            json!({"eventName": "Straße"}),
            json!({"eventName": "Strasse2"}),
            // U+1E9E is three bytes and folds to "ss": eight bytes fold to seven.
            json!({"eventName": "STRA\u{1e9e}E"}),
        ];
        for r in &records {
            assert_eq!(idx.matches(r), alone(&patterns, r), "record {r}");
            // The peek may want more than matches, never less.
            let wanted = wanted_with(&idx, &r.to_string(), &mut Scratch::default());
            assert!(wanted || alone(&patterns, r).is_empty(), "peeked {r}");
        }
        assert_eq!(idx.matches(&records[0]), vec![0]);
        assert_eq!(idx.matches(&records[2]), vec![1]);
        assert_eq!(idx.matches(&records[5]), vec![2]);
        assert_eq!(idx.matches(&records[7]), vec![2]);
        assert!(idx.matches(&records[1]).is_empty() && idx.matches(&records[6]).is_empty());
    }

    /// The shapes of rules real rule sets have, each anchored, and records that pass and fail
    /// each anchor: the index must agree with every pattern alone, and try few of them.
    #[test]
    fn every_anchor_kind_agrees_with_the_patterns_alone() {
        let patterns = [
            json!({"userIdentity": {"type": ["Root"]}}),
            json!({"userAgent": [{"prefix": "aws-cli/"}], "errorCode": [{"exists": true}]}),
            json!({"eventName": [{"suffix": "Vault"}]}),
            json!({"eventName": [{"wildcard": "Delete*Point"}]}),
            json!({"eventName": [{"equals-ignore-case": "getobject"}]}),
            json!({"eventName": [{"prefix": {"equals-ignore-case": "LIST"}}]}),
            json!({"eventSource": [{"suffix": {"equals-ignore-case": ".AMAZONAWS.COM"}}], "readOnly": [false]}),
            json!({"resources": {"ARN": [{"prefix": "arn:aws:s3:::prod-"}]}}),
            json!({"sourceIPAddress": [{"cidr": "10.0.0.0/8"}]}),
            json!({"detail-type": ["AWS Console Sign In via CloudTrail"]}),
            json!({"errorCode": [{"exists": false}]}),
            json!({"source": ["custom.app"]}),
            json!({"errorCode": [{"exists": false}], "eventName": [{"anything-but": "X"}]}),
        ];
        let idx = index(&patterns);
        assert_eq!(
            idx.unanchored,
            vec![10],
            "only the exists:false pattern is tried on every record"
        );
        let records = [
            json!({"eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn", "userIdentity": {"type": "Root"}}),
            json!({"eventName": "PutObject", "userAgent": "aws-cli/2.0", "errorCode": "AccessDenied"}),
            json!({"eventName": "DeleteBackupVault", "userAgent": "console"}),
            json!({"eventName": "DeleteRecoveryPoint", "eventSource": "backup.amazonaws.com", "readOnly": false}),
            json!({"eventName": "GetObject", "errorCode": null}),
            json!({"eventName": "ListBuckets", "resources": [{"ARN": "arn:aws:s3:::prod-logs"}, {"ARN": "x"}]}),
            json!({"eventName": "X", "sourceIPAddress": "10.1.2.3", "userIdentity": [{"type": "Root"}]}),
            json!({"eventName": "listbuckets", "userIdentity": {"type": "IAMUser"}, "resources": {"ARN": "arn:aws:s3:::dev"}}),
        ];
        for r in &records {
            let direct = alone(&patterns, r);
            assert_eq!(idx.matches(r), direct, "record {r}");
            let mut scratch = Scratch::default();
            idx.matching(r, &mut scratch, |_| {});
            let tried = scratch.candidates.len();
            assert!(tried <= direct.len() + 2, "{tried} tried for {r}");
        }
    }

    /// The index names the paths the reader must peek at, and reads the answers back: a record
    /// is wanted exactly when its raw values could pass an anchor.
    #[test]
    fn peeked_values_decide_which_records_are_built() {
        let wanted =
            |idx: &PatternIndex, record: &str| wanted_with(idx, record, &mut Scratch::default());
        let idx = index(&[
            json!({"eventName": ["BackupJobCompleted"]}),
            json!({"userIdentity": {"type": ["Root"]}}),
            json!({"source": ["aws.outposts"]}),
            json!({"userAgent": [{"prefix": "aws-cli/"}]}),
            json!({"eventName": [{"prefix": "List"}], "requestParameters": {"maxResults": [{"numeric": [">", 5]}]}}),
        ]);
        for (record, want) in [
            // The second anchor set is checked too: List… alone is not enough.
            (r#"{"eventName":"ListBuckets"}"#, false),
            (
                r#"{"eventName":"ListBuckets","requestParameters":{"maxResults":10}}"#,
                true,
            ),
            (r#"{"eventName":"BackupJobCompleted"}"#, true),
            (
                r#"{"eventName":"GetObject","userIdentity":{"type":"IAMUser"}}"#,
                false,
            ),
            (r#"{"userIdentity":{"arn":"x","type":"Root"}}"#, true),
            (
                r#"{"userIdentity":[{"type":"IAMUser"},{"type":"Root"}]}"#,
                true,
            ),
            (
                r#"{"userIdentity":{"sessionContext":{"type":"Root"}}}"#,
                false,
            ),
            (r#"{"eventSource":"outposts.amazonaws.com"}"#, true),
            (
                r#"{"eventSource":"s3.amazonaws.com","userAgent":"console"}"#,
                false,
            ),
            (r#"{"userAgent":"aws-cli/2.1 Python"}"#, true),
            // Escapes: only building the record can tell.
            (r#"{"eventName":"Backup\u004aobCompleted"}"#, true),
            (r#"{"event\u004eame":"GetObject"}"#, true),
            // A key given twice on a peeked path: the last value counts, when built.
            (
                r#"{"eventName":"BackupJobCompleted","eventName":"X"}"#,
                true,
            ),
            (
                r#"{"userIdentity":{"type":"Root"},"x":1,"userIdentity":{"type":"IAMUser"}}"#,
                true,
            ),
            // A number where a string is wanted, a string deeper than the path.
            (
                r#"{"eventName":5,"userIdentity":{"type":{"v":"Root"}}}"#,
                false,
            ),
        ] {
            assert_eq!(wanted(&idx, record), want, "{record}");
        }
        // A pattern tried on every record needs no peek: every record is built.
        let unanchored = index(&[json!({"errorCode": [{"exists": false}]})]);
        assert!(unanchored.peek_paths().is_empty());
        assert!(wanted(&unanchored, r#"{"eventName":"GetObject"}"#));
        assert!(!wanted(
            &PatternIndex::new(),
            r#"{"eventName":"GetObject"}"#
        ));
    }

    /// Whether `idx` wants the record, reading it with the index's peek paths and `scratch`.
    fn wanted_with(idx: &PatternIndex, record: &str, scratch: &mut Scratch) -> bool {
        use crate::reader::{LogReader, Split};
        let doc = format!("{{\"Records\":[{record}]}}");
        let mut reader = LogReader::new(doc.as_bytes(), Default::default())
            .unwrap()
            .peeking(idx.peek_paths());
        match reader.next_split().unwrap() {
            Some(Split::Record(raw, peeked)) => idx.wants(peeked, raw.bytes, scratch),
            other => panic!("{other:?}"),
        }
    }

    /// Of equally selective anchors, a pattern is filed under a path other patterns are filed
    /// under, then under the shallowest: the reader peeks at fewer paths.
    #[test]
    fn equal_anchors_go_where_the_reader_peeks_already() {
        let paths = |idx: &PatternIndex| -> Vec<String> {
            idx.fields.iter().map(|t| t.path.join(".")).collect()
        };
        let login = json!({"errorMessage": [{"equals-ignore-case": "Failed authentication"}], "eventName": [{"equals-ignore-case": "ConsoleLogin"}]});
        let mfa = json!({"additionalEventData": {"MFAUsed": [{"equals-ignore-case": "NO"}]}, "eventName": [{"equals-ignore-case": "ConsoleLogin"}]});
        // Alone, the first of equals (errorMessage); the shallowest (eventName).
        assert_eq!(
            paths(&index(std::slice::from_ref(&login))),
            ["errorMessage"]
        );
        assert_eq!(paths(&index(std::slice::from_ref(&mfa))), ["eventName"]);
        // Behind a pattern on eventName, both are filed there, and the peek reads one path.
        let idx = index(&[json!({"eventName": ["DeleteTrail"]}), login, mfa]);
        assert_eq!(paths(&idx), ["eventName"]);
        for (record, want) in [
            (
                r#"{"eventName":"consolelogin","errorMessage":"Failed authentication"}"#,
                vec![1],
            ),
            (
                r#"{"eventName":"ConsoleLogin","additionalEventData":{"MFAUsed":"No"}}"#,
                vec![2],
            ),
            (r#"{"eventName":"ConsoleLogin","errorMessage":"x"}"#, vec![]),
        ] {
            assert!(
                wanted_with(&idx, record, &mut Scratch::default()),
                "{record}"
            );
            let built: Value = serde_json::from_str(record).unwrap();
            assert_eq!(idx.matches(&built), want, "{record}");
        }
    }

    /// The patterns the peek names for a wanted record include those the built record names,
    /// so that matching from them raises the same alerts; where only the built record can
    /// tell (an escape), the peek names none.
    #[test]
    fn peeked_candidates_include_the_built_records() {
        use crate::reader::{LogReader, Split};
        let patterns = [
            json!({"eventName": ["BackupJobCompleted"], "serviceEventDetails": {"state": [{"anything-but": "COMPLETED"}]}}),
            json!({"eventName": [{"equals-ignore-case": "consolelogin"}], "eventSource": [{"equals-ignore-case": "signin.amazonaws.com"}]}),
            json!({"userIdentity": {"type": ["Root"]}, "eventType": [{"anything-but": "AwsServiceEvent"}]}),
            json!({"userAgent": [{"prefix": "aws-cli/"}]}),
            json!({"eventName": [{"prefix": "List"}], "requestParameters": {"maxResults": [{"numeric": [">", 5]}]}}),
            json!({"errorCode": [{"exists": true}], "eventSource": ["s3.amazonaws.com"]}),
            json!({"source": ["aws.outposts"]}),
        ];
        let idx = index(&patterns);
        let mut scratch = Scratch::default();
        let mut named = 0;
        for record in [
            r#"{"eventName":"BackupJobCompleted","serviceEventDetails":{"state":"FAILED"}}"#,
            r#"{"eventName":"BackupJobCompleted","serviceEventDetails":{"state":"COMPLETED"}}"#,
            r#"{"eventName":"ConsoleLogin","eventSource":"SIGNIN.amazonaws.com","userIdentity":{"type":"Root"},"eventType":"AwsConsoleSignIn"}"#,
            r#"{"eventName":"ListBuckets","requestParameters":{"maxResults":10},"userAgent":"aws-cli/2.1"}"#,
            r#"{"eventName":"ListBuckets","requestParameters":{"maxResults":1},"userAgent":"console"}"#,
            r#"{"userIdentity":[{"type":"IAMUser"},{"type":"Root"}],"eventType":"AwsApiCall"}"#,
            r#"{"eventSource":"s3.amazonaws.com","errorCode":null}"#,
            r#"{"eventSource":"s3.amazonaws.com","errorCode":"AccessDenied","eventName":["ListX","Other"]}"#,
            r#"{"eventName":"ConsoleLogin","eventName":"BackupJobCompleted","serviceEventDetails":{"state":"FAILED"}}"#,
            r#"{"eventName":"Backup\u004aobCompleted","serviceEventDetails":{"state":"FAILED"}}"#,
            r#"{"source":"aws.outposts"}"#,
        ] {
            let built: Value = serde_json::from_str(record).unwrap();
            let mut from_record = Scratch::default();
            idx.matching(&built, &mut from_record, |_| {});
            let doc = format!("{{\"Records\":[{record}]}}");
            let mut reader = LogReader::new(doc.as_bytes(), Default::default())
                .unwrap()
                .peeking(idx.peek_paths());
            let Ok(Some(Split::Record(raw, peeked))) = reader.next_split() else {
                panic!("{record}");
            };
            if !idx.wants(peeked, raw.bytes, &mut scratch) {
                assert!(idx.matches(&built).is_empty(), "{record}");
                continue;
            }
            if !idx.peeked_candidates(peeked, raw.bytes, &mut scratch) {
                // An escape, a key given twice: only the built record tells.
                assert!(
                    record.contains('\\') || record.matches("eventName").count() == 2,
                    "{record}"
                );
                continue;
            }
            named += 1;
            for id in &from_record.candidates {
                assert!(scratch.candidates.contains(id), "{record}: {id}");
            }
            let mut matched = Vec::new();
            idx.matching_peeked(&built, &scratch, |id| matched.push(id));
            assert_eq!(matched, idx.matches(&built), "{record}");
        }
        assert_eq!(named, 7);
    }

    /// The values a scratch remembers belong to one index as it stands: the same scratch used
    /// with another index, or after a pattern is added, answers for the index at hand.
    #[test]
    fn remembered_values_are_those_of_the_index_at_hand() {
        let mut get = index(&[json!({"eventName": [{"prefix": "Get"}]})]);
        let list = index(&[json!({"eventName": [{"prefix": "List"}]})]);
        let mut scratch = Scratch::default();
        for _ in 0..2 {
            for (idx, name, want) in [
                (&get, "GetObject", true),
                (&list, "GetObject", false),
                (&list, "ListBuckets", true),
                (&get, "ListBuckets", false),
            ] {
                let record = format!(r#"{{"eventName":"{name}"}}"#);
                assert_eq!(wanted_with(idx, &record, &mut scratch), want, "{name}");
            }
        }
        get.push(Pattern::compile(&json!({"eventName": [{"suffix": "Buckets"}]})).unwrap());
        assert!(wanted_with(
            &get,
            r#"{"eventName":"ListBuckets"}"#,
            &mut scratch
        ));
        // Values past the memo's bounds are still answered: many values, and a long one.
        for n in 0..MEMO_VALUES + 10 {
            let name = format!("Get{n}");
            assert!(wanted_with(
                &get,
                &format!(r#"{{"eventName":"{name}"}}"#),
                &mut scratch
            ));
            assert!(!wanted_with(
                &get,
                &format!(r#"{{"eventName":"x{name}"}}"#),
                &mut scratch
            ));
        }
        let long = "Get".to_owned() + &"x".repeat(MEMO_VALUE_BYTES * 2);
        for _ in 0..2 {
            assert!(wanted_with(
                &get,
                &format!(r#"{{"eventName":"{long}"}}"#),
                &mut scratch
            ));
        }
    }

    /// Patterns that share a second anchor set, and second sets at paths past the 64th slot
    /// (where the peek's record of which slots it saw stops telling them apart).
    #[test]
    fn shared_second_sets_and_many_paths() {
        // Second sets at `gK.fN`: 70 paths, at most 20 keys an object (past 64 keys in one
        // object the peek leaves the record to building).
        let at = |n: usize, v: Value| json!({format!("g{}", n / 20): {format!("f{n}"): v}});
        let mut patterns: Vec<Value> = (0..70)
            .map(|n| {
                let mut p = at(n, json!([{"exists": true}]));
                p["eventName"] = json!([{"prefix": format!("Op{n}")}]);
                p
            })
            .collect();
        patterns.push(json!({"eventName": [{"prefix": "List"}], "requestParameters": {"maxResults": [{"numeric": [">", 5]}]}}));
        patterns.push(json!({"eventName": [{"prefix": "Lis"}], "requestParameters": {"maxResults": [{"numeric": [">", 5]}]}}));
        patterns.push(json!({"eventName": [{"prefix": "List"}], "requestParameters": {"maxResults": [{"numeric": ["<", -2]}]}}));
        let idx = index(&patterns);
        assert_eq!(idx.second[70], idx.second[71], "one set, shared");
        assert_ne!(
            idx.second[70], idx.second[72],
            "another number, another set"
        );
        let record = |name: &str, n: Option<usize>| {
            let mut r = n.map_or_else(|| json!({}), |n| at(n, json!(1)));
            r["eventName"] = json!(name);
            r.to_string()
        };
        let mut scratch = Scratch::default();
        for (record, want) in [
            (r#"{"eventName":"ListBuckets"}"#.to_owned(), false),
            // The numbers are told from their bytes: a record none of the three can match
            // is not built.
            (
                r#"{"eventName":"ListBuckets","requestParameters":{"maxResults":1}}"#.to_owned(),
                false,
            ),
            (
                r#"{"eventName":"ListBuckets","requestParameters":{"maxResults":[1,6]}}"#
                    .to_owned(),
                true,
            ),
            (
                r#"{"eventName":"ListBuckets","requestParameters":{"maxResults":-2.5}}"#.to_owned(),
                true,
            ),
            (
                r#"{"eventName":"ListBuckets","requestParameters":{"maxResults":"9"}}"#.to_owned(),
                false,
            ),
            (
                r#"{"eventName":"ListBuckets","requestParameters":{"maxResults":null}}"#.to_owned(),
                false,
            ),
            (record("Op69x", None), false),
            (record("Op69x", Some(69)), true),
            (record("Op69x", Some(68)), false),
            (record("Op6x", Some(6)), true),
            (record("Op3", Some(69)), false),
        ] {
            assert_eq!(wanted_with(&idx, &record, &mut scratch), want, "{record}");
            let parsed: Value = serde_json::from_str(&record).unwrap();
            assert_eq!(!idx.matches(&parsed).is_empty(), want, "{record}");
        }
    }
}
