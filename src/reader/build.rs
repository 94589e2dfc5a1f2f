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

use serde_json::{Map, Number, Value};

use super::strings::Specials;

/// The record `bytes` hold, as serde_json would build it; `None` where this builder does not
/// follow (the caller then asks serde_json).
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
    let value = b.value();
    b.space();
    let done = b.i == text.len();
    b.fields.clear();
    FIELDS.set(b.fields);
    value.filter(|_| done)
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

impl Builder<'_> {
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
            if self.next()? != b'"' {
                return None;
            }
            let key = self.string()?;
            if self.next()? != b':' {
                return None;
            }
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

    /// A string whose opening quote was just read.
    fn string(&mut self) -> Option<String> {
        let start = self.i;
        let end = self.specials.next::<false>(self.s, start)?;
        if self.s[end] == b'"' {
            self.i = end + 1;
            // A plain run starts after a quote and ends before one, which are ASCII: on
            // character boundaries.
            return self.text.get(start..end).map(str::to_owned);
        }
        // Escapes, which are few: serde_json reads the string from its opening quote.
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
    }
}
