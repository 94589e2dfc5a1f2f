//! JSON's grammar, checked by the splitter on the way through a record, so that a record no
//! rule wants needs no second pass to be known valid.
//!
//! The splitter already meets every byte outside strings and every string's end; [`Grammar`]
//! takes those events and says, at the record's end, whether the bytes are one JSON object as
//! serde_json reads it. The verdict is one-sided: [`Grammar::valid`] is `true` only when
//! serde_json accepts the record (given UTF-8 and what [`super::RawRecord::must_build`] leaves
//! to building: numbers out of range, lone surrogates, nesting past its limit); `false` means
//! only "not vouched for", and the record is then checked by serde_json itself, which words the
//! fault. `tests` and the reader's fuzz target hold the first half against serde_json.

/// Where the grammar stands. Values from [`LIT`] up are inside a scalar.
type State = u8;
/// Before the record's first byte: only an object is vouched for.
const START: State = 0;
/// After `:`, or `,` in an array: a value is due.
const VALUE: State = 1;
/// After `[`: a value or `]`.
const VALUE_OR_END: State = 2;
/// After `,` in an object: a key is due.
const KEY: State = 3;
/// After `{`: a key or `}`.
const KEY_OR_END: State = 4;
/// After a key.
const COLON: State = 5;
/// After a value: `,` or the container's end.
const AFTER: State = 6;
/// Inside a key's string.
const IN_KEY: State = 7;
/// Inside a value's string.
const IN_VALUE: State = 8;
/// Inside `true`, `false` or `null`: [`Grammar::lit`] is what must still come.
const LIT: State = 9;
/// A number: after `-`.
const N_MINUS: State = 10;
/// A number: a leading `0`.
const N_ZERO: State = 11;
/// A number: integer digits.
const N_INT: State = 12;
/// A number: after `.`.
const N_DOT: State = 13;
/// A number: fraction digits.
const N_FRAC: State = 14;
/// A number: after `e` or `E`.
const N_E: State = 15;
/// A number: after the exponent's sign.
const N_ESIGN: State = 16;
/// A number: exponent digits.
const N_EXP: State = 17;

/// Containers deeper than this are not followed (records nested past
/// [`super::DEEP_RECORD`] are built anyway).
const MAX_DEPTH: usize = 128;

/// The grammar's state across one record (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub struct Grammar {
    state: State,
    /// Once set, nothing more is followed and the record is not vouched for.
    bad: bool,
    /// Bit `d` is set when the container at depth `d` (0: the record) is an object.
    objects: u128,
    /// Whether the innermost open container is an object: bit `depth` of `objects`, kept
    /// apart for the commas (a `u128` shifted by a variable is several instructions).
    in_object: bool,
    /// What a literal still needs.
    lit: &'static [u8],
    /// Hex digits a `\u` escape still needs.
    hex: u8,
    /// Bytes of the number being read.
    number: u16,
    /// A number of more than [`LONG_NUMBER`] bytes was read.
    long: bool,
}

/// Past this many bytes a number may be out of range (a double ends near 1.8e308), which only
/// building judges.
const LONG_NUMBER: u16 = 300;

impl Grammar {
    /// A grammar for a record (`on`), or one that vouches for nothing.
    #[inline]
    pub fn new(on: bool) -> Self {
        Grammar {
            state: START,
            bad: !on,
            objects: 0,
            in_object: false,
            lit: b"",
            hex: 0,
            number: 0,
            long: false,
        }
    }

    /// Whether the record, now ended, is one JSON object as serde_json reads it.
    #[inline]
    pub fn valid(&self) -> bool {
        !self.bad && self.state == AFTER && self.hex == 0
    }

    /// Whether a number of more than 300 bytes was read: it may be out of range.
    #[inline]
    pub fn long_number(&self) -> bool {
        self.long
    }

    /// Gives up on the record.
    #[inline]
    pub fn fail(&mut self) {
        self.bad = true;
    }

    #[inline(always)]
    fn end_scalar(&mut self) {
        if self.state >= LIT {
            let complete = match self.state {
                LIT => self.lit.is_empty(),
                N_ZERO | N_INT | N_FRAC | N_EXP => true,
                _ => false,
            };
            if !complete {
                self.bad = true;
            }
            self.state = AFTER;
        }
    }

    /// Moves to `next` when the byte was `allowed` where the grammar stands, else gives up.
    #[inline(always)]
    fn step(&mut self, allowed: bool, next: State) {
        if allowed {
            self.state = next;
        } else {
            self.bad = true;
        }
    }

    #[inline(always)]
    fn is_object(&self, depth: usize) -> bool {
        depth < MAX_DEPTH && self.objects >> depth & 1 == 1
    }

    /// `{` or `[` opens a container at `depth` (0: the record itself).
    #[inline]
    pub fn open(&mut self, object: bool, depth: usize) {
        if self.bad {
            return;
        }
        self.end_scalar();
        let due = self.state == VALUE || self.state == VALUE_OR_END;
        if !(due || object && self.state == START) || depth >= MAX_DEPTH {
            self.bad = true;
            return;
        }
        self.in_object = object;
        if object {
            self.objects |= 1 << depth;
            self.state = KEY_OR_END;
        } else {
            self.objects &= !(1 << depth);
            self.state = VALUE_OR_END;
        }
    }

    /// `}` or `]` closes the container at `depth`.
    #[inline]
    pub fn close(&mut self, object: bool, depth: usize) {
        if self.bad {
            return;
        }
        self.end_scalar();
        let ok = if object {
            self.in_object && (self.state == KEY_OR_END || self.state == AFTER)
        } else {
            !self.in_object && (self.state == VALUE_OR_END || self.state == AFTER)
        };
        if !ok {
            self.bad = true;
        }
        self.state = AFTER;
        // The container around the one closed (none: the record ended, and nothing is due).
        self.in_object = depth > 0 && self.is_object(depth - 1);
    }

    #[inline]
    pub fn colon(&mut self) {
        if self.bad {
            return;
        }
        self.end_scalar();
        self.step(self.state == COLON, VALUE);
    }

    /// `,` inside the container at `depth`.
    #[inline]
    pub fn comma(&mut self, depth: usize) {
        if self.bad {
            return;
        }
        self.end_scalar();
        if self.state != AFTER {
            self.bad = true;
            return;
        }
        debug_assert!(self.bad || self.in_object == self.is_object(depth));
        self.state = if self.in_object { KEY } else { VALUE };
    }

    /// White space between tokens.
    #[inline]
    pub fn space(&mut self) {
        if !self.bad {
            self.end_scalar();
        }
    }

    /// A string opens.
    #[inline]
    pub fn string_opened(&mut self) {
        if self.bad {
            return;
        }
        self.end_scalar();
        self.state = match self.state {
            KEY | KEY_OR_END => IN_KEY,
            VALUE | VALUE_OR_END => IN_VALUE,
            _ => {
                self.bad = true;
                return;
            }
        };
    }

    /// A string closes.
    #[inline]
    pub fn string_closed(&mut self) {
        self.state = if self.state == IN_KEY { COLON } else { AFTER };
    }

    /// `":"`: a key's string closes, and its value's string opens. The same as
    /// [`Grammar::string_closed`], [`Grammar::colon`] and [`Grammar::string_opened`] in turn,
    /// in one step: only a key may close there.
    #[inline(always)]
    pub fn key_then_string(&mut self) {
        if self.state == IN_KEY {
            self.state = IN_VALUE;
        } else {
            self.bad = true;
        }
    }

    /// `","` inside the container at `depth`: a value's string closes, and the next key's (in
    /// an object) or element's (in an array) opens. The same as [`Grammar::string_closed`],
    /// [`Grammar::comma`] and [`Grammar::string_opened`] in turn, in one step.
    #[inline(always)]
    pub fn value_then_string(&mut self, depth: usize) {
        if self.state == IN_VALUE {
            debug_assert!(self.bad || self.in_object == self.is_object(depth));
            self.state = if self.in_object { IN_KEY } else { IN_VALUE };
        } else {
            self.bad = true;
        }
    }

    /// The character after a backslash in a string.
    #[inline]
    pub fn escape(&mut self, c: u8) {
        match c {
            b'u' => self.hex = 4,
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
            _ => self.bad = true,
        }
    }

    /// Whether a `\u` escape still needs hex digits.
    #[inline(always)]
    pub fn in_hex(&self) -> bool {
        self.hex > 0
    }

    /// A string byte while [`Grammar::in_hex`]: `true` when it is the next hex digit (taken);
    /// anything else ends the escape as a fault and is to be read as any string byte.
    #[inline]
    pub fn hex_digit(&mut self, c: u8) -> bool {
        if c.is_ascii_hexdigit() {
            self.hex -= 1;
            true
        } else {
            self.hex = 0;
            self.bad = true;
            false
        }
    }

    /// `true`, `false` or `null` whole.
    #[inline]
    pub fn literal(&mut self) {
        if self.bad {
            return;
        }
        self.end_scalar();
        self.step(self.state == VALUE || self.state == VALUE_OR_END, AFTER);
    }

    /// Any other byte outside strings: part of a number or a literal.
    #[inline]
    pub fn scalar(&mut self, b: u8) {
        if self.bad {
            return;
        }
        if matches!(self.state, VALUE | VALUE_OR_END) {
            self.number = 0;
        }
        self.number = self.number.saturating_add(1);
        self.long |= self.number > LONG_NUMBER;
        self.state = match (self.state, b) {
            (VALUE | VALUE_OR_END, b'-') => N_MINUS,
            (VALUE | VALUE_OR_END, b'0') => N_ZERO,
            (VALUE | VALUE_OR_END, b'1'..=b'9') => N_INT,
            (VALUE | VALUE_OR_END, b't' | b'f' | b'n') => {
                self.lit = match b {
                    b't' => b"rue",
                    b'f' => b"alse",
                    _ => b"ull",
                };
                LIT
            }
            (LIT, _) if self.lit.first() == Some(&b) => {
                self.lit = &self.lit[1..];
                LIT
            }
            (N_MINUS, b'0') => N_ZERO,
            (N_MINUS, b'1'..=b'9') => N_INT,
            (N_INT, b'0'..=b'9') => N_INT,
            (N_ZERO | N_INT, b'.') => N_DOT,
            (N_DOT | N_FRAC, b'0'..=b'9') => N_FRAC,
            (N_ZERO | N_INT | N_FRAC, b'e' | b'E') => N_E,
            (N_E, b'+' | b'-') => N_ESIGN,
            (N_E | N_ESIGN | N_EXP, b'0'..=b'9') => N_EXP,
            _ => {
                self.bad = true;
                return;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use crate::reader::{Limits, LogReader, Shapes, Split};
    use proptest::prelude::*;

    /// The splitter's verdict on each record of `{"Records": [doc]}`, with whether serde_json
    /// builds it into an object.
    fn verdicts(records: &[u8]) -> Vec<(bool, bool, bool)> {
        let mut doc = br#"{"Records":["#.to_vec();
        doc.extend_from_slice(records);
        doc.extend_from_slice(b"]}");
        let Ok(mut reader) =
            LogReader::new_shapes(&doc[..], Limits::default(), Shapes::S3Log, None)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Ok(Some(split)) = reader.next_split() {
            if let Split::Record(raw, _) = split {
                let built = matches!(
                    serde_json::from_slice::<serde_json::Value>(raw.bytes),
                    Ok(serde_json::Value::Object(_))
                );
                out.push((raw.valid, built, raw.must_build));
            }
        }
        out
    }

    fn vouched(record: &str) -> bool {
        let v = verdicts(record.as_bytes());
        assert_eq!(v.len(), 1, "{record}");
        v[0].0
    }

    #[test]
    fn valid_objects_are_vouched_for() {
        for ok in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#" { "a" : [ 1 , -0 , 0.5 , -12.25 , true , false , null , "x" , { } , [ ] ] } "#,
            r#"{"s":"\"\\\/\b\f\n\r\t\u00e9\u12aB","":""}"#,
            r#"{"a":{"b":{"c":[[[{"d":"e"}]]]}}}"#,
            r#"{"a":{"b":"c","d":{"e":{"f":"g"}}},"h":[{"i":{"j":1}}]}"#,
            "{\"a\":\t\r\n1}",
            "{\"utf8\":\"\u{e9}\u{1f600}\",\"del\":\"\x7f\"}",
        ] {
            assert!(vouched(ok), "{ok}");
        }
    }

    #[test]
    fn faults_are_not_vouched_for() {
        for bad in [
            r#"{"a":1,}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a" 1}"#,
            r#"{"a":}"#,
            r#"{:1}"#,
            r#"{1:1}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[,1]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":{"b":1]}"#,
            r#"{"a":[1}]}"#,
            r#"{"a":tru}"#,
            r#"{"a":truee}"#,
            r#"{"a":nul}"#,
            r#"{"a":True}"#,
            r#"{"a":01}"#,
            r#"{"a":-}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":1e}"#,
            r#"{"a":1e+}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u12G4"}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"\x00\"}",
            r#"{"a":1"b"}"#,
            r#"{"a":"x""y"}"#,
            r#"{"a":["b":{"c":1}]}"#,
            r#"{"a":"b":{"c":1}}"#,
            r#"{"a":{"b"}}"#,
            r#"{"a":{"b":{"c"}}}"#,
            r#"[1]"#,
            r#""s""#,
            r#"1"#,
            r#"null"#,
        ] {
            let v = verdicts(bad.as_bytes());
            assert!(v.iter().all(|(valid, _, _)| !valid), "{bad}: {v:?}");
        }
    }

    /// Fragments that make records valid and invalid in every way the grammar knows.
    fn fragment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "{", "}", "[", "]", ":", ",", " ", "\n", "\"", "\"k\"", "\"v\"", "\\", "\\u00e9",
            "\\uD83D", "\\u12", "\\n", "\\x", "\t", "0", "1", "-", ".", "5", "e", "E", "+", "true",
            "fals", "null", "x", "\u{e9}", "1e400", "\"a\":1", "\"b\":[", "\"c\":{",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// The one-sided verdict: a record the splitter vouches for is built by serde_json
        /// (unless it is left to building), and plain objects are vouched for.
        #[test]
        fn vouched_for_means_serde_json_builds_it(parts in prop::collection::vec(fragment(), 0..24)) {
            let mut record = String::from("{");
            for p in &parts {
                record.push_str(p);
            }
            record.push('}');
            for (valid, built, must_build) in verdicts(record.as_bytes()) {
                if valid && !must_build {
                    prop_assert!(built, "vouched for but not built: {}", record);
                }
            }
        }

        #[test]
        fn generated_objects_are_vouched_for(v in json_object()) {
            let text = serde_json::to_string(&v).unwrap();
            let got = verdicts(text.as_bytes());
            prop_assert_eq!(got.len(), 1);
            prop_assert!(got[0].0 || got[0].2, "not vouched for: {}", text);
        }
    }

    fn json_object() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e6f64..1e6).prop_map(serde_json::Value::from),
            "\\PC{0,12}".prop_map(serde_json::Value::from),
            "[\\x00-\\x1f\"\\\\a]{0,4}".prop_map(serde_json::Value::from),
        ];
        let value = leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        });
        prop::collection::btree_map("[a-z\"\\\\]{0,6}", value, 0..6)
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
    }
}
