//! JSON on the per-alert path, where serde_json's general machinery showed in the profile:
//!
//! - Compact JSON written straight into a byte buffer, byte for byte as `serde_json::to_vec`
//!   writes it (`scan --format jsonl`, shadow alerts). serde_json escapes a string one byte at
//!   a time through a lookup table and hands each plain run to the writer; here a string is
//!   first told plain or not in one pass that does not stop early (vectorised), and a string
//!   with something to escape has its plain runs found sixteen bytes at a time by the reader's
//!   string search ([`find_special`]: the bytes JSON must escape are exactly the bytes that end
//!   a plain run when reading). With SigmaHQ's rules raising 8,000 alerts of about 1,300 bytes
//!   on the benchmark corpus, building each line as a `serde_json::Map` and serializing it cost
//!   243 M instructions of 5.58 G.
//! - A field of a small object ([`field`], [`field_at`]) found by walking its keys rather than
//!   hashing the key with SipHash (the alerts' facts and summary, pattern matching).

use crate::reader::strings::{find_special, has_special};
use serde_json::Value;

/// Appends `s` as a JSON string: `"`, `\` and the control characters escaped as serde_json
/// escapes them (`\n`, `\r`, `\t`, `\b`, `\f`, else `\u00xx` in lower-case hex); everything
/// else, DEL and all of UTF-8 beyond ASCII included, as it is.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    // Most strings need no escape, which is told a word or sixteen bytes at a time.
    if !has_special(s.as_bytes()) {
        out.extend_from_slice(s.as_bytes());
    } else {
        let mut rest = s.as_bytes();
        while let Some(i) = find_special::<false>(rest) {
            out.extend_from_slice(&rest[..i]);
            escape(out, rest[i]);
            rest = &rest[i + 1..];
        }
        out.extend_from_slice(rest);
    }
    out.push(b'"');
}

fn escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 0xf) as usize],
        ]),
    }
}

/// Appends `v` as serde_json's compact serializer writes it.
pub fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Numbers are few in what is written here: serde_json's own formatting (itoa, ryu).
        Value::Number(n) => {
            serde_json::to_writer(&mut *out, n).expect("writing a number into a Vec cannot fail")
        }
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut o = Object::open(out);
            for (k, v) in map {
                o.value(k, v);
            }
            o.close();
        }
    }
}

/// An object being written, a field at a time, in the order they are given. The caller keeps
/// keys unique, as a map would.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    pub fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Writes `"key":` and returns the buffer for the value.
    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        string(self.out, key);
        self.out.push(b':');
        self.out
    }

    pub fn str(&mut self, key: &str, s: &str) {
        string(self.key(key), s);
    }

    /// A string, or `null` when there is none.
    pub fn opt_str(&mut self, key: &str, s: Option<&str>) {
        match s {
            Some(s) => self.str(key, s),
            None => self.key(key).extend_from_slice(b"null"),
        }
    }

    pub fn value(&mut self, key: &str, v: &Value) {
        value(self.key(key), v);
    }

    pub fn close(self) {
        self.out.push(b'}');
    }
}

/// `v[key]` for an object. An object of up to [`SEARCHED_IN_ORDER`] fields (a CloudTrail
/// record's top level, `userIdentity`, `requestParameters`) is searched in order, each key told
/// apart by its length first: cheaper than hashing the key with serde_json's SipHash, which
/// the alert's summary, facts and place did about 30 times per alert.
pub fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) if m.len() <= SEARCHED_IN_ORDER => m
            .iter()
            .find(|(k, _)| k.len() == key.len() && *k == key)
            .map(|(_, v)| v),
        _ => v.get(key),
    }
}

/// The most fields an object may have for [`field`] to search it in order. A CloudTrail record
/// has 20 to 30 at its top level; a miss walks them all, at a few instructions each, where
/// SipHash and a probe cost about 250 (measured on the alert path).
const SEARCHED_IN_ORDER: usize = 40;

/// `v[keys[0]][keys[1]]…`, as [`field`] looks each up.
pub fn field_at<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |v, key| field(v, key))
}

/// Any JSON value, for property tests against serde_json: every kind, strings with quotes,
/// backslashes, slashes and control characters, keys from `keys` (a regex; a narrow one makes
/// keys come twice), nested a few deep.
#[cfg(test)]
pub(crate) fn any_value(keys: &'static str) -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    use serde_json::json;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        "[\"\\\\/\\x00-\\x1f a-z]{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys, inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn written(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        value(&mut out, v);
        out
    }

    #[test]
    fn every_byte_is_escaped_as_serde_json_escapes_it() {
        for b in 0u8..=0x7f {
            for at in [0, 1, 15, 16, 17, 40] {
                let mut s = "x".repeat(at);
                s.push(b as char);
                s.push_str("tail é ✓");
                let v = Value::String(s);
                assert_eq!(
                    written(&v),
                    serde_json::to_vec(&v).unwrap(),
                    "byte {b:#x} at {at}"
                );
            }
        }
    }

    #[test]
    fn values_of_every_kind_are_written_as_serde_json_writes_them() {
        let v = json!({
            "null": null, "t": true, "f": false, "u": u64::MAX, "i": i64::MIN, "f64": 1.5e300,
            "small": 0.1, "neg": -0.0, "int-float": 3.0, "s": "a\"b\\c\n\u{1}\u{7f}",
            "empty": {}, "none": [], "nested": [{"k": [1, "two", null]}, []],
            "key \"quoted\"\n": "v"
        });
        assert_eq!(written(&v), serde_json::to_vec(&v).unwrap());
    }

    proptest! {
        #[test]
        fn any_value_is_written_as_serde_json_writes_it(v in any_value("(?s).{0,6}")) {
            prop_assert_eq!(written(&v), serde_json::to_vec(&v).unwrap());
        }
    }
}
