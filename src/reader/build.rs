//! Building a record the reader vouched for: valid UTF-8, one JSON object whose grammar the
//! splitter checked, with none of what only serde_json can judge (nesting 100 deep, numbers
//! with exponents or of hundreds of digits, `\uD…` escapes). The value built is the one
//! `serde_json::from_slice` builds, field for field and in the same order; what it saves is
//! checking again what the reader checked (UTF-8, the grammar), serde_json's visitors, and
//! growing each object's map as its fields come (each object's fields are gathered first, and
//! its map is made at its size).
//!
//! Anything unexpected (which the reader's vouching rules out) gives `None`, and the caller
//! builds with serde_json instead: never a panic, never a different value.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use super::strings::Specials;

/// The record `bytes` hold, as serde_json would build it; `None` where this builder does not
/// follow (the caller then asks serde_json).
///
/// A record handed back with [`recycle`] is built over (serde's `deserialize_in_place`, for
/// serde_json's `Value`): where an object's fields come in the order they came in it, its keys,
/// maps and strings are kept and only the values written, with no key hashed, allocated or
/// freed. The value built is the same either way.
pub(super) fn vouched(text: &str) -> Option<Value> {
    thread_local! {
        /// The fields' room, kept from record to record.
        static FIELDS: std::cell::Cell<Vec<(String, Value)>> = const { std::cell::Cell::new(Vec::new()) };
    }
    let mut b = Builder {
        text,
        s: text.as_bytes(),
        i: 0,
        fields: FIELDS.take(),
        specials: Specials::new(),
    };
    let value = match SPARE.take() {
        Some(mut spare) if text.len() <= MAX_SPARE_BYTES => {
            b.value_into(&mut spare).map(|()| spare)
        }
        spare => {
            SPARE.set(spare);
            b.value()
        }
    };
    b.space();
    let done = b.i == text.len();
    b.fields.clear();
    FIELDS.set(b.fields);
    value.filter(|_| done)
}

thread_local! {
    /// A record done with, whose room the next record this thread builds is built in.
    static SPARE: std::cell::Cell<Option<Value>> = const { std::cell::Cell::new(None) };
}

/// Records longer than this are built afresh: only records of up to this many bytes are built
/// over, and building over one leaves no string, array or object more than about twice the room
/// it holds (see [`Builder::string_into`], [`Builder::array_into`], [`keep_only`]).
const MAX_SPARE_BYTES: usize = 64 << 10;

/// Hands back a record done with: the next record built on this thread is built in its room
/// (see [`vouched`]). A record handed back before and not yet built over is dropped.
///
/// `bytes`: the length of the text the record was built from, where known; a record built from
/// more than [`MAX_SPARE_BYTES`] is dropped, not kept. A caller that does not know it (a
/// `scan`, which hands back its alerts' records) goes on building on this thread, and the next
/// record it builds gives a larger record's room back.
pub fn recycle(record: Value, bytes: Option<usize>) {
    if matches!(record, Value::Object(_)) && bytes.is_none_or(|n| n <= MAX_SPARE_BYTES) {
        drop(SPARE.replace(Some(record)));
    }
}

struct Builder<'a> {
    text: &'a str,
    s: &'a [u8],
    i: usize,
    /// The fields of the objects being built, innermost last.
    fields: Vec<(String, Value)>,
    /// Where the strings of `s` end, a block at a time.
    specials: Specials,
}

impl<'a> Builder<'a> {
    fn space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Option<u8> {
        self.space();
        let b = *self.s.get(self.i)?;
        self.i += 1;
        Some(b)
    }

    fn word(&mut self, word: &[u8], value: Value) -> Option<Value> {
        let end = self.i - 1 + word.len();
        (self.s.get(self.i - 1..end)? == word).then(|| {
            self.i = end;
            value
        })
    }

    fn value(&mut self) -> Option<Value> {
        match self.next()? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string().map(Value::String),
            b't' => self.word(b"true", Value::Bool(true)),
            b'f' => self.word(b"false", Value::Bool(false)),
            b'n' => self.word(b"null", Value::Null),
            _ => self.number(),
        }
    }

    fn object(&mut self) -> Option<Value> {
        let base = self.fields.len();
        self.space();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Some(Value::Object(Map::new()));
        }
        loop {
            let key = self.field_key()?.into_owned();
            let value = self.value()?;
            self.fields.push((key, value));
            match self.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
        let mut map = Map::with_capacity(self.fields.len() - base);
        // As serde_json's visitor does: a key given twice keeps its first place and its last
        // value.
        for (key, value) in self.fields.drain(base..) {
            map.insert(key, value);
        }
        Some(Value::Object(map))
    }

    fn array(&mut self) -> Option<Value> {
        let mut items = Vec::new();
        self.space();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            return Some(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            match self.next()? {
                b',' => continue,
                b']' => return Some(Value::Array(items)),
                _ => return None,
            }
        }
    }

    /// A string whose opening quote was just read, owned ([`Builder::key`] borrows it).
    fn string(&mut self) -> Option<String> {
        let start = self.i;
        let end = self.specials.next::<false>(self.s, start)?;
        if self.s[end] == b'"' {
            self.i = end + 1;
            return self.text.get(start..end).map(str::to_owned);
        }
        self.escaped(start, end)
    }

    /// Builds the value that starts here into `slot`, keeping what room of `slot` it can.
    fn value_into(&mut self, slot: &mut Value) -> Option<()> {
        match (self.next()?, slot) {
            (b'{', Value::Object(map)) => return self.object_into(map),
            (b'[', Value::Array(items)) => return self.array_into(items),
            (b'"', Value::String(s)) => return self.string_into(s),
            (_, slot) => {
                // Another kind than before: built afresh.
                self.i -= 1;
                *slot = self.value()?;
            }
        }
        Some(())
    }

    /// An object whose `{` was just read, built into `map`: each field in place where `map`'s
    /// next field has its key; else [`Builder::misplaced`] puts it where it belongs.
    fn object_into(&mut self, map: &mut Map<String, Value>) -> Option<()> {
        self.space();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            keep_only(map, |_| false);
            return Some(());
        }
        // The first `at` places of `map` hold the fields read so far, in their order.
        let mut at = 0;
        let mut entries = map.iter_mut();
        loop {
            let key = self.field_key()?;
            match entries.next() {
                Some((old, slot)) if crate::hash::same_bytes(old.as_bytes(), key.as_bytes()) => {
                    self.value_into(slot)?;
                    at += 1;
                }
                _ => {
                    at = self.misplaced(map, at, key)?;
                    entries = map.iter_mut();
                    if at > 0 {
                        entries.nth(at - 1);
                    }
                }
            }
            match self.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
        if map.len() > at {
            keep_only(map, |i| i < at);
        }
        Some(())
    }

    /// Builds the field `key` (its `:` just read) into `map`, whose first `at` places hold the
    /// fields read before it and where the next place does not hold `key`; returns how many
    /// places the fields read now fill.
    ///
    /// - `map` has `key` further on: the fields between (which the record lacks) are dropped,
    ///   and the field is built in place.
    /// - `map` has `key` among the fields read: a key given twice keeps its first place and
    ///   its last value, as serde_json's visitor does.
    /// - Else the field is built afresh and put at its place.
    fn misplaced(
        &mut self,
        map: &mut Map<String, Value>,
        at: usize,
        key: Cow<'_, str>,
    ) -> Option<usize> {
        if let Some(n) = map.keys().skip(at).position(|k| *k == *key) {
            keep_only(map, |i| i < at || i >= at + n);
            self.value_into(map.values_mut().nth(at)?)?;
            Some(at + 1)
        } else if map.keys().take(at).any(|k| *k == *key) {
            let value = self.value()?;
            map.insert(key.into_owned(), value);
            Some(at)
        } else {
            let value = self.value()?;
            map.shift_insert(at, key.into_owned(), value);
            Some(at + 1)
        }
    }

    /// An array whose `[` was just read, built into `items`, element over element.
    fn array_into(&mut self, items: &mut Vec<Value>) -> Option<()> {
        self.space();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            items.clear();
            return Some(());
        }
        let mut n = 0;
        loop {
            match items.get_mut(n) {
                Some(slot) => self.value_into(slot)?,
                None => items.push(self.value()?),
            }
            n += 1;
            match self.next()? {
                b',' => continue,
                b']' => break,
                _ => return None,
            }
        }
        items.truncate(n);
        if items.capacity() > 2 * n + 16 {
            items.shrink_to_fit();
        }
        Some(())
    }

    /// A string whose opening quote was just read, written over `s`.
    fn string_into(&mut self, s: &mut String) -> Option<()> {
        match self.key()? {
            Cow::Borrowed(text) if s.capacity() <= 2 * text.len() + 64 => {
                s.clear();
                s.push_str(text);
            }
            text => *s = text.into_owned(),
        }
        Some(())
    }

    /// A field's `"key":`, from its opening quote: the key, borrowed from the text unless it
    /// holds an escape.
    fn field_key(&mut self) -> Option<Cow<'a, str>> {
        if self.next()? != b'"' {
            return None;
        }
        let key = self.key()?;
        (self.next()? == b':').then_some(key)
    }

    /// A string whose opening quote was just read: borrowed from the text unless it holds an
    /// escape.
    fn key(&mut self) -> Option<Cow<'a, str>> {
        let start = self.i;
        let end = self.specials.next::<false>(self.s, start)?;
        if self.s[end] == b'"' {
            self.i = end + 1;
            // A plain run starts after a quote and ends before one, which are ASCII: on
            // character boundaries.
            return self.text.get(start..end).map(Cow::Borrowed);
        }
        self.escaped(start, end).map(Cow::Owned)
    }

    /// The string from `start` (after its opening quote) whose first escape is at `end`:
    /// escapes are few, and serde_json reads the string from its opening quote.
    #[cold]
    fn escaped(&mut self, start: usize, end: usize) -> Option<String> {
        let mut j = end;
        loop {
            match *self.s.get(j)? {
                b'\\' => j += 2,
                b'"' => break,
                _ => j = self.specials.next::<false>(self.s, j + 1)?,
            }
        }
        self.i = j + 1;
        serde_json::from_slice(self.s.get(start - 1..self.i)?).ok()
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i - 1;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.s.get(self.i) {
            self.i += 1;
        }
        let token = &self.s[start..self.i];
        // A small whole number, the common case, as serde_json reads it (a u64); the rest by
        // serde_json.
        if token.len() <= 18 && token.iter().all(u8::is_ascii_digit) {
            let n = token.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            // JSON has no leading zeros; serde_json refuses them, so leave them to it.
            if token[0] != b'0' || token.len() == 1 {
                return Some(Value::Number(Number::from(n)));
            }
        }
        serde_json::from_slice(token).ok()
    }
}

/// Keeps the fields of `map` whose places `keep` holds for (their order kept). A map left with
/// less than half its fields is made anew, so that it keeps no room of a larger record's.
fn keep_only(map: &mut Map<String, Value>, keep: impl Fn(usize) -> bool) {
    let before = map.len();
    let mut i = 0;
    map.retain(|_, _| {
        i += 1;
        keep(i - 1)
    });
    if before > 16 && map.len() < before / 2 {
        *map = std::mem::take(map).into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn builds_what_serde_json_builds() {
        for text in [
            r#"{}"#,
            r#"{"a":1,"b":[true,false,null,{}],"c":{"d":"e"}}"#,
            r#" { "a" : [ 1 , -2 , 3.5 , 0 , 0.0 , 123456789012345678 , 18446744073709551615 ] } "#,
            r#"{"k":"\"quoted\" \\ \/ \n \u00e9 \u2603 tail","k2":"é✓ plain"}"#,
            r#"{"dup":1,"x":2,"dup":3}"#,
            r#"{"n":-0,"m":-9223372036854775808,"big":99999999999999999999}"#,
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(vouched(text), Some(want.clone()), "{text}");
            // The same order too.
            assert_eq!(
                serde_json::to_string(&vouched(text).unwrap()).unwrap(),
                serde_json::to_string(&want).unwrap()
            );
        }
    }

    #[test]
    fn what_it_does_not_follow_is_left_to_serde_json() {
        for text in [
            r#"{"a":1"#,
            r#"{"a" 1}"#,
            r#"{"a":tru}"#,
            r#"{"a":1} x"#,
            r#"{"a":01}"#,
        ] {
            assert_eq!(vouched(text), None, "{text}");
        }
        assert_eq!(vouched(r#"{"a":1}"#), Some(json!({"a": 1})));
    }

    /// Builds `text` over `spare` (as the next record after `spare` was handed back).
    fn over(spare: Value, text: &str) -> Option<Value> {
        recycle(spare, None);
        let built = vouched(text);
        // What it was built over is taken, whether or not the building followed.
        assert!(SPARE.take().is_none() || text.len() > MAX_SPARE_BYTES);
        built
    }

    #[test]
    fn a_record_built_over_another_is_what_serde_json_builds() {
        let spare = json!({"a": 1, "b": {"c": "x", "d": [1, 2, 3]}, "e": "long string here", "f": [{"g": 1}]});
        for text in [
            // The same shape; fewer fields; more; another order; other kinds at each place.
            r#"{"a":2,"b":{"c":"y","d":[4,5,6]},"e":"s","f":[{"g":2}]}"#,
            r#"{"a":2,"e":"s"}"#,
            r#"{"z":0,"a":2,"b":{"c":"y","new":true,"d":[]},"e":"s","f":[{"g":2},{"g":3}],"h":null}"#,
            r#"{"f":[],"e":"s","b":{},"a":[1]}"#,
            r#"{"a":"1","b":[1],"e":{"x":1},"f":"g"}"#,
            r#"{"b":1,"a":2,"b":3}"#,
            r#"{"a":1,"b":{"c":1,"c":2,"d":[1]},"a":3}"#,
            r#"{"a":"\u00e9\n","b\u0041":{"c":"\"q\""}}"#,
            r#"{}"#,
            "{ \"a\" : 1 ,\n \"b\" : { \"c\" : \"x\" } }",
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            let built = over(spare.clone(), text);
            assert_eq!(built.as_ref(), Some(&want), "{text}");
            assert_eq!(
                serde_json::to_string(&built.unwrap()).unwrap(),
                serde_json::to_string(&want).unwrap(),
                "{text}: the order"
            );
        }
        // What the builder does not follow is still left to serde_json.
        assert_eq!(over(spare.clone(), r#"{"a":01}"#), None);
        assert_eq!(over(spare, r#"{"a":1} x"#), None);
    }

    /// Where the fields come as before, the room is the spare's own: its strings are written
    /// over, not made anew.
    #[test]
    fn a_record_of_the_same_shape_is_built_in_the_spares_room() {
        let spare = json!({"a": "first value", "b": {"c": "second value"}});
        let (a, c) = (
            spare["a"].as_str().unwrap().as_ptr(),
            spare["b"]["c"].as_str().unwrap().as_ptr(),
        );
        let built = over(spare, r#"{"a":"first","b":{"c":"second"}}"#).unwrap();
        assert_eq!(built, json!({"a": "first", "b": {"c": "second"}}));
        assert_eq!(built["a"].as_str().unwrap().as_ptr(), a);
        assert_eq!(built["b"]["c"].as_str().unwrap().as_ptr(), c);
    }

    /// The 2,900 real records of the benchmark's source (benches/data), each built over the
    /// one before, in their order and in a shuffled one: every one is serde_json's value, in
    /// serde_json's order.
    #[test]
    fn real_records_built_one_over_another_are_serde_jsons() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/data/invictus-records.json.gz"
        );
        let file = std::fs::File::open(path).unwrap();
        let doc: Value = serde_json::from_reader(flate2::read::GzDecoder::new(file)).unwrap();
        let texts: Vec<String> = doc["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        assert_eq!(texts.len(), 2900);
        // Each seventh: a fixed shuffle that sets apart records of one kind.
        let shuffled = (0..texts.len()).map(|i| (i * 7) % texts.len());
        for order in [(0..texts.len()).collect::<Vec<_>>(), shuffled.collect()] {
            drop(SPARE.take());
            let mut reused = 0;
            for i in order {
                let text = &texts[i];
                let want: Value = serde_json::from_str(text).unwrap();
                let spare = SPARE.take();
                reused += usize::from(spare.is_some());
                SPARE.set(spare);
                let built = vouched(text).unwrap();
                assert_eq!(built, want, "record {i}");
                assert_eq!(serde_json::to_string(&built).unwrap(), *text, "record {i}");
                recycle(built, Some(text.len()));
            }
            // Every record but the first was built over the one before.
            assert_eq!(reused, texts.len() - 1);
        }
    }

    /// A record built over a larger one keeps no more than about twice the room it needs.
    #[test]
    fn building_over_a_large_record_gives_its_room_back() {
        let big = json!({
            "s": "x".repeat(50_000),
            "a": (0..5_000).collect::<Vec<_>>(),
            "o": (0..1_000).map(|i| (format!("k{i}"), json!(i))).collect::<Map<String, Value>>(),
        });
        let built = over(big, r#"{"s":"short","a":[1,2],"o":{"k0":1}}"#).unwrap();
        let Value::String(s) = &built["s"] else {
            panic!()
        };
        assert!(s.capacity() <= 2 * s.len() + 64, "{}", s.capacity());
        let Value::Array(a) = &built["a"] else {
            panic!()
        };
        assert!(a.capacity() <= 2 * a.len() + 16, "{}", a.capacity());
        assert_eq!(built, json!({"s": "short", "a": [1, 2], "o": {"k0": 1}}));
        // A record longer than the bound is built afresh, and the spare kept for the next.
        let long = format!(r#"{{"s":"{}"}}"#, "y".repeat(MAX_SPARE_BYTES));
        recycle(json!({"s": "x"}), Some(7));
        assert_eq!(vouched(&long), Some(serde_json::from_str(&long).unwrap()));
        assert_eq!(SPARE.take(), Some(json!({"s": "x"})));
        // A record built from more than the bound is not kept.
        recycle(json!({"s": "x"}), Some(MAX_SPARE_BYTES + 1));
        assert_eq!(SPARE.take(), None);
    }

    proptest! {
        /// Compact or pretty, with keys given twice or not, the builder builds serde_json's
        /// value, in serde_json's order.
        #[test]
        fn any_record_is_built_as_serde_json_builds_it(
            fields in prop::collection::vec(("[a-c]{1,2}", crate::json::any_value("[a-c]{1,2}")), 0..8),
            pretty in any::<bool>(),
        ) {
            // Written field by field, so that a key can come twice.
            let mut text = String::from("{");
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                let v = if pretty { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) };
                text.push_str(&format!("{}{}:{}", if pretty { "\n  " } else { "" }, json!(k), v.unwrap()));
            }
            text.push('}');
            let want: Value = serde_json::from_str(&text).unwrap();
            let built = vouched(&text);
            prop_assert_eq!(built.as_ref(), Some(&want));
            prop_assert_eq!(serde_json::to_string(&built.unwrap()).unwrap(), serde_json::to_string(&want).unwrap());
        }

        /// Built over any record handed back before, a record is still serde_json's value, in
        /// serde_json's order.
        #[test]
        fn any_record_built_over_any_other_is_serde_jsons(
            spare in prop::collection::vec(("[a-c]{1,2}", crate::json::any_value("[a-c]{1,2}")), 0..8),
            fields in prop::collection::vec(("[a-c]{1,2}", crate::json::any_value("[a-c]{1,2}")), 0..8),
        ) {
            let mut text = String::from("{");
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&format!("{}:{}", json!(k), serde_json::to_string(v).unwrap()));
            }
            text.push('}');
            let want: Value = serde_json::from_str(&text).unwrap();
            let built = over(Value::Object(spare.into_iter().collect()), &text);
            prop_assert_eq!(built.as_ref(), Some(&want));
            prop_assert_eq!(serde_json::to_string(&built.unwrap()).unwrap(), serde_json::to_string(&want).unwrap());
        }
    }
}
