//! Rule documents in the YAML people write them in, read without the general YAML machinery.
//!
//! A rule file is block mappings and block sequences of plain or quoted scalars, with flow
//! collections (`pattern: {eventName: [Foo]}`) on one line. serde-saphyr reads any YAML, at
//! about 700 instructions a byte (a file of 990 rules, 150 KB: 105 M instructions, about
//! 10 ms); this reader takes that subset, and only it, at a tenth of the cost. On anything
//! else it answers `None` and the document is read by serde-saphyr as before, which also says
//! what is wrong with a broken one: anchors, aliases, tags, block scalars (`|`, `>`), a scalar
//! or flow collection over more than one line, tabs, carriage returns, document markers,
//! complex or merge keys, a key given twice, an empty flow entry, escapes other than JSON's,
//! more than [`MAX_DEPTH`] levels or [`MAX_NODES`] nodes, and a plain scalar that could
//! resolve to anything but a string, `null`, `true`, `false`, a small decimal integer or a
//! plain decimal fraction (`yes`, `Null`, `0x1F`, `1e3`, `2024-01-01`, `.inf`, `007`: left to
//! serde-saphyr).
//!
//! Where it answers, it gives the value serde-saphyr gives with the rules' options
//! ([`yaml_options`](super::document::yaml_options)): its tests check that on every YAML file
//! in the repository, on generated documents full of scalars that resolve otherwise, and on
//! any text of YAML's punctuation.

use serde_json::{Map, Number, Value};

/// Deeper documents are left to serde-saphyr, whose budget (64 levels) refuses the deepest.
pub const MAX_DEPTH: usize = 32;
/// Larger documents are left to serde-saphyr, whose budget (250,000 nodes) refuses the largest.
pub const MAX_NODES: usize = 100_000;

/// The document's value, or `None` where the document is not in the subset (see the module).
pub fn parse(text: &str) -> Option<Value> {
    if !plain_characters(text) {
        return None;
    }
    let mut lines = Vec::new();
    for raw in text.split('\n') {
        let content = raw.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = raw.len() - content.len();
        if indent == 0 && ["---", "...", "%"].iter().any(|m| content.starts_with(m)) {
            return None;
        }
        lines.push(Line {
            indent,
            text: content,
        });
    }
    let first = lines.first()?.indent;
    let mut parser = Parser {
        lines,
        at: 0,
        nodes: 0,
    };
    let value = parser.block_node(first, 0)?;
    (parser.at == parser.lines.len()).then_some(value)
}

/// No tabs, carriage returns, byte-order marks or other characters YAML treats specially or
/// refuses: printable ASCII, line feeds, and printable characters beyond ASCII.
fn plain_characters(text: &str) -> bool {
    let bytes_allowed = text
        .bytes()
        .all(|b| b == b'\n' || (0x20..0x7f).contains(&b) || b >= 0x80);
    bytes_allowed
        && (text.is_ascii()
            || text.chars().all(|c| {
                c.is_ascii()
                    || (c >= '\u{a0}'
                        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
                        && !('\u{fffe}'..='\u{ffff}').contains(&c))
            }))
}

/// A line with content: its indentation (spaces) and the rest.
#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    text: &'a str,
}

struct Parser<'a> {
    lines: Vec<Line<'a>>,
    at: usize,
    nodes: usize,
}

impl<'a> Parser<'a> {
    fn node(&mut self, depth: usize) -> Option<()> {
        count(&mut self.nodes, depth)
    }

    /// The block node whose first line is the current one, indented by `indent`.
    fn block_node(&mut self, indent: usize, depth: usize) -> Option<Value> {
        let line = self.lines[self.at];
        if is_entry(line.text) {
            return self.block_sequence(indent, depth);
        }
        if entry_key(line.text)?.is_some() {
            return self.block_mapping(indent, depth);
        }
        self.at += 1;
        inline_value(line.text, depth, &mut self.nodes)
    }

    /// The node after a key or a `-` with nothing after it on the line: a more indented block
    /// node, or (after a key only) a sequence at the key's own indentation, or null.
    fn nested(&mut self, indent: usize, after_key: bool, depth: usize) -> Option<Value> {
        match self.lines.get(self.at) {
            Some(next) if next.indent > indent => self.block_node(next.indent, depth),
            Some(next) if after_key && next.indent == indent && is_entry(next.text) => {
                self.block_sequence(indent, depth)
            }
            _ => {
                self.node(depth)?;
                Some(Value::Null)
            }
        }
    }

    fn block_mapping(&mut self, indent: usize, depth: usize) -> Option<Value> {
        self.node(depth)?;
        let mut map = Map::new();
        while let Some(&line) = self.lines.get(self.at) {
            if line.indent < indent {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let (key, rest) = entry_key(line.text)??;
            if map.contains_key(&key) {
                return None;
            }
            self.node(depth + 1)?;
            self.at += 1;
            let rest = rest.trim_start_matches(' ');
            let value = if rest.is_empty() || rest.starts_with('#') {
                self.nested(indent, true, depth + 1)?
            } else {
                inline_value(rest, depth + 1, &mut self.nodes)?
            };
            map.insert(key, value);
        }
        Some(Value::Object(map))
    }

    fn block_sequence(&mut self, indent: usize, depth: usize) -> Option<Value> {
        self.node(depth)?;
        let mut items = Vec::new();
        while let Some(&line) = self.lines.get(self.at) {
            if line.indent < indent || (line.indent == indent && !is_entry(line.text)) {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let rest = line.text[1..].trim_start_matches(' ');
            let item = if rest.is_empty() || rest.starts_with('#') {
                self.at += 1;
                self.nested(indent, false, depth + 1)?
            } else if is_entry(rest) {
                return None;
            } else if entry_key(rest)?.is_some() {
                // `- key: value`: a mapping whose keys line up with this first one.
                let column = indent + line.text.len() - rest.len();
                self.lines[self.at] = Line {
                    indent: column,
                    text: rest,
                };
                self.block_mapping(column, depth + 1)?
            } else {
                self.at += 1;
                inline_value(rest, depth + 1, &mut self.nodes)?
            };
            items.push(item);
        }
        Some(Value::Array(items))
    }
}

/// `-` alone, or `- ` and an item.
fn is_entry(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// A mapping entry's key and what follows its `:`; `Some(None)` when the line is not a
/// mapping entry; `None` when it may be one this reader does not take.
fn entry_key(text: &str) -> Option<Option<(String, &str)>> {
    let bytes = text.as_bytes();
    match bytes[0] {
        b'"' | b'\'' => {
            let (key, end) = quoted(text, 0)?;
            let after = text[end..].trim_start_matches(' ');
            match after.as_bytes() {
                [b':'] => Some(Some((key, ""))),
                [b':', b' ', ..] => Some(Some((key, &after[1..]))),
                [b':', ..] => None,
                _ => Some(None),
            }
        }
        b'[' | b'{' => Some(None),
        _ => {
            for (i, &b) in bytes.iter().enumerate() {
                match b {
                    b':' if i + 1 == bytes.len() || bytes[i + 1] == b' ' => {
                        let key = text[..i].trim_end_matches(' ');
                        if key.len() > 1024 {
                            return None;
                        }
                        return match resolve(key)? {
                            Value::String(key) => Some(Some((key, &text[i + 1..]))),
                            _ => None,
                        };
                    }
                    b'#' if i > 0 && bytes[i - 1] == b' ' => return Some(None),
                    _ => {}
                }
            }
            Some(None)
        }
    }
}

/// A value that starts and ends on this line: a quoted or plain scalar or a flow collection,
/// then nothing but a comment.
fn inline_value(text: &str, depth: usize, nodes: &mut usize) -> Option<Value> {
    match text.as_bytes()[0] {
        b'"' | b'\'' | b'[' | b'{' => {
            let mut at = 0;
            let value = flow_node(text, &mut at, depth, nodes)?;
            let rest = &text[at..];
            let after = rest.trim_start_matches(' ');
            (after.is_empty() || (after.starts_with('#') && after.len() < rest.len()))
                .then_some(value)
        }
        _ => {
            let end = text.find(" #").unwrap_or(text.len());
            let plain = text[..end].trim_end_matches(' ');
            if plain.contains(": ") || plain.ends_with(':') {
                return None;
            }
            count(nodes, depth)?;
            resolve(plain)
        }
    }
}

/// A flow node from `text[*at..]` (spaces first skipped); `*at` is left after it.
fn flow_node(text: &str, at: &mut usize, depth: usize, nodes: &mut usize) -> Option<Value> {
    count(nodes, depth)?;
    let bytes = text.as_bytes();
    skip_spaces(bytes, at);
    match bytes.get(*at)? {
        b'[' => {
            let mut items = Vec::new();
            if opened_empty(bytes, at, b']') {
                return Some(Value::Array(items));
            }
            loop {
                items.push(flow_node(text, at, depth + 1, nodes)?);
                if entries_end(bytes, at, b']')? {
                    return Some(Value::Array(items));
                }
            }
        }
        b'{' => {
            let mut map = Map::new();
            if opened_empty(bytes, at, b'}') {
                return Some(Value::Object(map));
            }
            loop {
                let key = match bytes.get(*at)? {
                    b'"' | b'\'' => {
                        let (key, end) = quoted(text, *at)?;
                        *at = end;
                        key
                    }
                    _ => match flow_plain(text, at)? {
                        Value::String(key) => key,
                        _ => return None,
                    },
                };
                count(nodes, depth + 1)?;
                skip_spaces(bytes, at);
                if bytes.get(*at)? != &b':' {
                    return None;
                }
                *at += 1;
                skip_spaces(bytes, at);
                if matches!(bytes.get(*at)?, b',' | b'}') || map.contains_key(&key) {
                    return None;
                }
                let value = flow_node(text, at, depth + 1, nodes)?;
                map.insert(key, value);
                if entries_end(bytes, at, b'}')? {
                    return Some(Value::Object(map));
                }
            }
        }
        b'"' | b'\'' => {
            let (s, end) = quoted(text, *at)?;
            *at = end;
            Some(Value::String(s))
        }
        _ => flow_plain(text, at),
    }
}

/// Past a flow collection's opening bracket: whether it closes at once (then past `close`).
fn opened_empty(bytes: &[u8], at: &mut usize, close: u8) -> bool {
    *at += 1;
    skip_spaces(bytes, at);
    let empty = bytes.get(*at) == Some(&close);
    *at += usize::from(empty);
    empty
}

/// After a flow entry: `Some(true)` past the collection's `close`, `Some(false)` past a `,` with
/// another entry after it; `None` for anything else (an empty entry, a trailing comma).
fn entries_end(bytes: &[u8], at: &mut usize, close: u8) -> Option<bool> {
    skip_spaces(bytes, at);
    let b = *bytes.get(*at)?;
    *at += 1;
    if b == close {
        return Some(true);
    }
    if b != b',' {
        return None;
    }
    skip_spaces(bytes, at);
    (!matches!(bytes.get(*at)?, b']' | b'}' | b',')).then_some(false)
}

/// Counts a node (a collection, a key or a scalar); `None` past the limits.
fn count(nodes: &mut usize, depth: usize) -> Option<()> {
    *nodes += 1;
    (*nodes <= MAX_NODES && depth <= MAX_DEPTH).then_some(())
}

fn skip_spaces(bytes: &[u8], at: &mut usize) {
    while bytes.get(*at) == Some(&b' ') {
        *at += 1;
    }
}

/// A plain scalar inside a flow collection: it ends at a flow indicator, at a `:` followed by
/// a space or an indicator, or at a comment.
fn flow_plain(text: &str, at: &mut usize) -> Option<Value> {
    let bytes = text.as_bytes();
    let start = *at;
    while let Some(&b) = bytes.get(*at) {
        match b {
            b',' | b'[' | b']' | b'{' | b'}' => break,
            b':' if matches!(
                bytes.get(*at + 1),
                None | Some(b' ' | b',' | b'[' | b']' | b'{' | b'}')
            ) =>
            {
                break
            }
            b'#' if *at > start && bytes[*at - 1] == b' ' => break,
            _ => *at += 1,
        }
    }
    resolve(text[start..*at].trim_end_matches(' '))
}

/// A quoted scalar starting at `text[start]` (`"` or `'`) and ending on this line: its value
/// and the index after its closing quote. Double-quoted escapes are JSON's.
fn quoted(text: &str, start: usize) -> Option<(String, usize)> {
    let bytes = text.as_bytes();
    let quote = bytes[start];
    let mut out = String::new();
    let mut run = start + 1;
    let mut i = run;
    loop {
        match *bytes.get(i)? {
            b'\'' if quote == b'\'' => {
                out.push_str(&text[run..i]);
                if bytes.get(i + 1) == Some(&b'\'') {
                    out.push('\'');
                    i += 2;
                    run = i;
                } else {
                    return Some((out, i + 1));
                }
            }
            b'"' if quote == b'"' => {
                out.push_str(&text[run..i]);
                return Some((out, i + 1));
            }
            b'\\' if quote == b'"' => {
                out.push_str(&text[run..i]);
                let escaped = match *bytes.get(i + 1)? {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'n' => '\n',
                    b't' => '\t',
                    b'r' => '\r',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'u' => {
                        let hex = text.get(i + 2..i + 6)?;
                        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return None;
                        }
                        i += 4;
                        char::from_u32(u32::from_str_radix(hex, 16).ok()?)?
                    }
                    _ => return None,
                };
                out.push(escaped);
                i += 2;
                run = i;
            }
            _ => i += 1,
        }
    }
}

/// A plain scalar's value, where it is sure to be serde-saphyr's: `null`, `true`, `false`, a
/// decimal integer of up to 18 digits without leading zeros, a decimal fraction as JSON writes
/// it (`85.42`, not `-0.0`), a string that starts with digits but is no number or date (`15m`,
/// `10.0.0.0/8`, `10.0.0.1`), or a string that starts with a letter, `_`, `$`, `/`, `.` and a
/// letter, or a character beyond ASCII, and is not one of the words YAML 1.1 or Rust's float
/// parsing give a meaning (`yes`, `Off`, `NULL`, `nan`, `inf`, `.Inf`, ...).
fn resolve(plain: &str) -> Option<Value> {
    let bytes = plain.as_bytes();
    let first = *bytes.first()?;
    match plain {
        "null" => return Some(Value::Null),
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        _ => {}
    }
    if first.is_ascii_digit() {
        // `15m`, `24h`: digits, then letters that no number is written with; `10.0.0.0/8`,
        // `a/b`: no number or date has a `/`; `10.0.0.1`: nor two dots without another sign.
        let letters = plain.trim_start_matches(|c: char| c.is_ascii_digit());
        let duration = letters.bytes().all(|b| b.is_ascii_alphabetic())
            && letters
                .bytes()
                .next()
                .is_some_and(|b| !b"bBeEoOxX".contains(&b));
        let address = plain.contains('/')
            || (plain.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && plain.bytes().filter(|&b| b == b'.').count() >= 2);
        if duration || address {
            return Some(Value::String(plain.to_owned()));
        }
    }
    if first == b'-' || first.is_ascii_digit() {
        let digits = plain.strip_prefix('-').unwrap_or(plain);
        if whole_number(digits) && plain != "-0" {
            return plain
                .parse::<i64>()
                .ok()
                .map(|n| Value::Number(Number::from(n)));
        }
        // `85.42`: a decimal fraction as JSON writes it (not `-0.0`, nor an exponent).
        let (whole, fraction) = digits.split_once('.')?;
        let fraction_of_a_number = whole_number(whole)
            && !fraction.is_empty()
            && fraction.len() <= 18
            && fraction.bytes().all(|b| b.is_ascii_digit());
        let value = plain.parse::<f64>().ok()?;
        if !fraction_of_a_number || (value == 0.0 && first == b'-') {
            return None;
        }
        return Number::from_f64(value).map(Value::Number);
    }
    // `.amazonaws.com`, but not `.5`, `.inf` or `.NaN`.
    let dotted = first == b'.'
        && bytes.get(1).is_some_and(u8::is_ascii_alphabetic)
        && ![".inf", ".nan"]
            .iter()
            .any(|w| plain.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(w)));
    let starts_a_string = first.is_ascii_alphabetic()
        || matches!(first, b'_' | b'$' | b'/')
        || first >= 0x80
        || dotted;
    let special = bytes.len() <= 8
        && [
            "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf", "infinity",
        ]
        .iter()
        .any(|word| plain.eq_ignore_ascii_case(word));
    (starts_a_string && !special).then(|| Value::String(plain.to_owned()))
}

/// One to eighteen decimal digits, without a leading zero unless it is `0`.
fn whole_number(digits: &str) -> bool {
    !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::document::yaml_options;
    use proptest::prelude::*;

    fn saphyr(text: &str) -> Option<Value> {
        serde_saphyr::from_str_with_options(text, yaml_options()).ok()
    }

    /// Where this reader answers, its value is serde-saphyr's (and serde-saphyr reads it).
    fn agrees(text: &str) -> Result<Option<Value>, String> {
        match parse(text) {
            None => Ok(None),
            Some(ours) => match saphyr(text) {
                Some(theirs) if theirs == ours => Ok(Some(ours)),
                theirs => Err(format!(
                    "{text:?}\n  this reader: {ours}\n  serde-saphyr: {theirs:?}"
                )),
            },
        }
    }

    #[test]
    fn every_yaml_file_in_the_repository_reads_as_serde_saphyr_reads_it() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        let mut dirs = vec![root.join("rules"), root.join("tests"), root.join("events")];
        dirs.push(root.join("docs"));
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    files.push(path);
                }
            }
        }
        files.push(root.join("template.yaml"));
        assert!(files.len() > 50, "{} YAML files", files.len());
        let mut taken = 0;
        for path in &files {
            let text = std::fs::read_to_string(path).unwrap();
            match agrees(&text) {
                Ok(Some(_)) => taken += 1,
                Ok(None) => {}
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
        // The packs are written in the subset: a change that made the reader refuse them all
        // would pass the agreement above and lose the speed.
        for pack in [
            "backup",
            "backup-events",
            "outposts",
            "security",
            "self",
            "trail",
        ] {
            let text = std::fs::read_to_string(root.join(format!("rules/{pack}.yaml"))).unwrap();
            assert!(parse(&text).is_some(), "rules/{pack}.yaml is not read");
        }
        let example = std::fs::read_to_string(root.join("rules/examples/cloudtrail-insights.yaml"));
        assert!(parse(&example.unwrap()).is_some());
        assert!(taken >= 8, "{taken} of {} read", files.len());
    }

    #[test]
    fn scalars_are_taken_only_where_their_value_is_sure() {
        let strings = [
            "low",
            "generated rule 0",
            "Gen0Prefix",
            "arn:aws:iam::123:role/x",
            "a#b",
            "https://example.com/a?b=c#d",
            "$or",
            "_x",
            "/path",
            "a  b",
            "é",
            "a: b",
            "CreateBucket",
            "no way",
            "Yes please",
            "nulls",
            "trueish",
        ];
        for s in strings {
            let doc = format!("key: {s}\n");
            assert!(agrees(&doc).is_ok(), "{:?}", agrees(&doc));
        }
        let taken = [
            ("key: low", Some(Value::from("low"))),
            ("key: null", Some(Value::Null)),
            ("key: true", Some(Value::Bool(true))),
            ("key: false", Some(Value::Bool(false))),
            ("key: 42", Some(Value::from(42))),
            ("key: -7", Some(Value::from(-7))),
            ("key: 0", Some(Value::from(0))),
            ("key: 85.42", Some(Value::from(85.42))),
            ("key: -0.5", Some(Value::from(-0.5))),
            ("key: 10.0.0.0/8", Some(Value::from("10.0.0.0/8"))),
            ("key: 15m", Some(Value::from("15m"))),
            ("key: .amazonaws.com", Some(Value::from(".amazonaws.com"))),
            ("key:", Some(Value::Null)),
            ("key: 'it''s'", Some(Value::from("it's"))),
            ("key: \"a\\u00e9\\n\\\"\"", Some(Value::from("aé\n\""))),
            ("key: x # comment", Some(Value::from("x"))),
        ];
        for (doc, value) in taken {
            let expected = value.map(|v| serde_json::json!({ "key": v }));
            assert_eq!(agrees(doc).unwrap(), expected, "{doc}");
        }
        let left = [
            "key: yes",
            "key: No",
            "key: NULL",
            "key: Null",
            "key: ~",
            "key: True",
            "key: 0x1F",
            "key: 0o17",
            "key: 007",
            "key: 1e3",
            "key: 1.5e3",
            "key: -0.0",
            "key: 1.",
            "key: .inf",
            "key: -.inf",
            "key: .nan",
            "key: nan",
            "key: inf",
            "key: +1",
            "key: -0",
            "key: 2024-01-01",
            "key: 1_000",
            "key: 1234567890123456789",
            "key: &a x",
            "key: *a",
            "key: !!str 1",
            "key: |\n  x",
            "key: >\n  x",
            "key: 'a\n  b'",
            "key: a\n  b",
            "key: [a,\n  b]",
            "key: \"\\x41\"",
            "key: \"\\ud83d\"",
            "? key\n: x",
            "<<: {a: 1}",
            "key: a\nkey: b",
            "key: {a: 1, a: 2}",
            "key:\tx",
            "key: x\r\n",
            "---\nkey: x",
            "key: {a: }",
            "key: [a, ]",
            "key: [a: b]",
            "key: @x",
            "key: `x`",
            "key: %x",
            "key: -",
            "key: - x",
            "\u{feff}key: x",
            "key: a: b",
            "key: \"a\"b",
            "key: \"a\"#c",
            "key: -x",
            "key: ?x",
            "key: :x",
        ];
        for doc in left {
            assert_eq!(parse(doc), None, "{doc:?} should be left to serde-saphyr");
        }
    }

    #[test]
    fn structures_read_as_serde_saphyr_reads_them() {
        let docs = [
            "rules:\n  - id: a\n    pattern: {eventName: [A, B]}\n  - id: b\n",
            "rules:\n- id: a\n  tags:\n  - p\n  - q\n- id: b\nother: 1\n",
            "a:\n  b:\n    c: d\n  e: f\ng: h\n",
            "- a\n- - b\n",
            "-\n  a: b\n- c\n",
            "- \n- x\n",
            "top: {\"k\":\"v\",\"n\":[null,{\"exists\":false},1]}\n",
            "top: [ {a: b} , [c] , 'd' , \"e\" ]  # c\n",
            "  indented: x\n  again: y\n",
            "key: x\n    continued\n",
            "key:\n  - a\n   - b\n",
            "key:\n  lone\n",
            "key:\n  lone\nnext: x\n",
            "{a: b}\n",
            "# only a comment\n",
            "",
            "key: [a, b] c\n",
            "\"quoted key\": 1\n'single': 2\n",
            "\"key\":value\n",
            "key: {url: http://x.y/z, b: c}\n",
            "key: {a:b}\n",
            "key: [a:b, c]\n",
            "key   : value\n",
            "key: value   # c\n",
            "\"key\" : value\n",
            "a:\n  b: 1\n# c\n  c: 2\n",
            "a:\n  b: 1\n     # c\n  c: 2\n",
            "- # c\n  key: v\n-   k: v\n    j: w\n",
            "key: {'a':1, \"b\" :2 , c: d e}\n",
            "key: [a , b ,c]\n",
            "key: \"v # not a comment\"\n",
            "k: 'a'' # b'\n",
            "a:\n    - x\n    - y\nb: z\n",
            "a: [\"x\",\"y\"] # c\n",
            "a:\n  - [b, c]\n  - {d: e}\n",
            "a: b\n\n\nc: d\n",
            "a: b\n  \nc: d\n",
        ];
        for doc in docs {
            if let Err(e) = agrees(doc) {
                panic!("{e}");
            }
        }
        assert!(parse(docs[0]).is_some() && parse(docs[1]).is_some() && parse(docs[6]).is_some());
    }

    #[test]
    fn depth_and_size_past_the_limits_are_left_to_serde_saphyr() {
        let deep = format!("key: {}x{}\n", "[".repeat(100), "]".repeat(100));
        assert!(parse(&deep).is_none());
        let mut nested = String::new();
        for level in 0..40 {
            nested.push_str(&" ".repeat(level * 2));
            nested.push_str("k:\n");
        }
        assert!(parse(&nested).is_none());
        let wide = format!("key: [{}]\n", vec!["x"; MAX_NODES].join(", "));
        assert!(parse(&wide).is_none());
        let long: String = (0..MAX_NODES / 2).map(|i| format!("k{i}: x\n")).collect();
        assert!(parse(&long).is_none());
        let within: String = (0..MAX_NODES / 4).map(|i| format!("k{i}: x\n")).collect();
        assert!(parse(&within).is_some());
    }

    /// Scalars, plain or quoted, among them ones that resolve to other things than strings.
    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => prop_oneof![
                "[a-zA-Z][a-zA-Z0-9 ._/:-]{0,12}",
                "-?[1-9][0-9]{0,5}",
                "'[a-z #:']{0,6}'",
                "\"[a-z #:é]{0,6}\"",
                "\\{[a-z]{1,3}: \\[[a-z]{1,3}(, [0-9]{1,2}){0,2}\\]\\}",
                "\\[\"[a-z]{0,3}\", \\{\"[a-z]{1,3}\":(null|true|[0-9]\\.[0-9])\\}\\]",
            ],
            1 => prop::sample::select(vec![
                "low", "x", "null", "Null", "NULL", "~", "true", "True", "false", "FALSE", "yes",
                "no", "on", "off", "y", "n", "0", "-0", "7", "-12", "007", "0x1F", "0o7", "1.5",
                "1e3", ".inf", "-.inf", ".nan", "nan", "inf", "+1", "1_000", "2024-01-01",
                "12:30", "15m", "24h", "0x", "0b1", "1e", "1E5", "0o", "10.0.0.1", "1.2.3", "1.2",
                "1..2", "1.0", "-0.0", "-0.5", "0.25", "2.50", "85.4202380952", "1.", ".5", ".amazonaws.com", ".Inf", ".INFO", ".nano", ".x", "..", "10.0.0.0/8", "1/2", "2024/01/01", "1.5/2", "0/0", "a: b", "a:b", "a #b", "a#b", "$or", "é", "'q'", "\"dq\"", "'it''s'",
                "\"a\\nb\"", "\"\\u00e9\"", "\"\\/\"", "&a x", "*a", "!t x", "- x", "-x", "? x",
                "|", ">", "@x", "[a, b]", "{a: b}", "[]", "{}", "[a, [b, {c: d}]]",
                "{\"k\":\"v\"}", "{a: [null, 1, {exists: false}]}", "",
            ])
            .prop_map(str::to_owned),
            1 => "-?[0-9]{1,20}",
            1 => "[0-9]{1,3}([./:e-][0-9a-z]{0,3}){0,3}",
            1 => "-?[0-9]{1,3}\\.[0-9]{1,14}",
        ]
    }

    /// Keys, plain (some of them words YAML gives a meaning) or quoted.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![4 => "[a-z$_]{2,6}", 1 => "[a-z]{1,2}", 1 => "\"[a-z :#]{0,4}\"", 1 => "'[a-z \"]{0,4}'"]
    }

    /// Documents of nested block mappings and sequences over those scalars, with comments.
    fn document() -> impl Strategy<Value = String> {
        let leaf = scalar().prop_map(|s| vec![s]);
        let tree = leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec((key(), inner.clone(), any::<bool>()), 1..5).prop_map(
                    |entries| {
                        let mut lines = Vec::new();
                        for (key, child, flush) in entries {
                            if child.len() == 1 && !child[0].starts_with("- ") {
                                lines.push(format!("{key}: {}", child[0]));
                            } else {
                                // A sequence under a key, indented or at the key's column.
                                let indent = if flush && child[0].starts_with("- ") {
                                    ""
                                } else {
                                    "  "
                                };
                                lines.push(format!("{key}:"));
                                lines.extend(child.iter().map(|l| format!("{indent}{l}")));
                            }
                        }
                        lines
                    }
                ),
                prop::collection::vec(inner, 1..4).prop_map(|items| {
                    let mut lines = Vec::new();
                    for child in items {
                        let mut child = child.into_iter();
                        if let Some(first) = child.next() {
                            lines.push(format!("- {first}"));
                        }
                        lines.extend(child.map(|l| format!("  {l}")));
                    }
                    lines
                }),
            ]
        });
        (tree, any::<bool>()).prop_map(|(lines, comment)| {
            let mut doc = lines.join("\n");
            if comment {
                doc.push_str("\n# the end\n");
            }
            doc
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8000))]

        /// Text of YAML's punctuation, letters, digits, spaces and line breaks in any order:
        /// whatever this reader takes of it, it reads as serde-saphyr does.
        #[test]
        fn any_text_of_yaml_characters_reads_as_serde_saphyr_reads_it(
            doc in "([a-c0-2 :,#'\"\\\\.\\-\\[\\]{}\n]|\n  |: |- |\n- |true|null|~|é){0,40}"
        ) {
            if let Err(e) = agrees(&doc) {
                prop_assert!(false, "{}", e);
            }
        }

        #[test]
        fn generated_documents_read_as_serde_saphyr_reads_them(doc in document()) {
            if let Err(e) = agrees(&doc) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}
