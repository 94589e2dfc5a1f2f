//! Pattern compilation: JSON in, a checked [`Pattern`] or a [`PatternError`] with its path out.

use serde_json::{Map, Value};

use crate::describe::json_kind;

use super::ops::{fold, Bound, Cidr, Range, Wildcard};
use super::{
    AnythingBut, FieldPattern, Form, JsonPath, LeafPattern, ObjectPattern, Pattern, PatternError,
    ValueMatcher,
};

/// Top-level keys that make a pattern an EventBridge-envelope pattern.
const ENVELOPE_KEYS: [&str; 3] = ["source", "detail-type", "detail"];

pub(super) fn compile(pattern: &Value) -> Result<Pattern, PatternError> {
    let path = JsonPath::root();
    let Value::Object(map) = pattern else {
        return Err(path.error(format!(
            "a pattern must be a JSON object, not {}",
            json_kind(pattern)
        )));
    };
    let root = object(map, &path)?;
    let form = if names_envelope_key(&root) {
        Form::Envelope
    } else {
        Form::Record
    };
    Ok(Pattern {
        root,
        form,
        source: std::sync::Arc::new(pattern.clone()),
    })
}

fn names_envelope_key(object: &ObjectPattern) -> bool {
    object
        .fields
        .iter()
        .any(|(k, _)| ENVELOPE_KEYS.contains(&&**k))
        || object.ors.iter().flatten().any(names_envelope_key)
}

fn object(map: &Map<String, Value>, path: &JsonPath) -> Result<ObjectPattern, PatternError> {
    if map.is_empty() {
        return Err(path.error("an empty object matches nothing; name at least one field"));
    }
    let mut out = ObjectPattern::default();
    for (key, value) in map {
        let at = path.key(key);
        if key == "$or" {
            out.ors.push(or_group(value, &at)?);
            continue;
        }
        let field = match value {
            Value::Array(values) => FieldPattern::Leaf(leaf(values, &at)?),
            Value::Object(inner) => FieldPattern::Object(object(inner, &at)?),
            other => {
                return Err(at.error(format!(
                    "expected an array of values or a nested object, found {}; write [{other}]",
                    json_kind(other)
                )))
            }
        };
        out.fields.push((key.as_str().into(), field));
    }
    Ok(out)
}

fn or_group(value: &Value, path: &JsonPath) -> Result<Vec<ObjectPattern>, PatternError> {
    let Value::Array(branches) = value else {
        return Err(path.error(format!(
            "\"$or\" takes an array of at least two pattern objects, found {}",
            json_kind(value)
        )));
    };
    if branches.len() < 2 {
        return Err(path.error(format!(
            "\"$or\" takes at least two pattern objects, found {}",
            branches.len()
        )));
    }
    branches
        .iter()
        .enumerate()
        .map(|(i, branch)| {
            let at = path.index(i);
            match branch {
                Value::Object(map) => object(map, &at),
                other => Err(at.error(format!(
                    "each \"$or\" branch must be a pattern object, found {}",
                    json_kind(other)
                ))),
            }
        })
        .collect()
}

fn leaf(values: &[Value], path: &JsonPath) -> Result<LeafPattern, PatternError> {
    if values.is_empty() {
        return Err(path.error("an empty value array matches nothing; give at least one value"));
    }
    let mut out = LeafPattern::default();
    for (i, value) in values.iter().enumerate() {
        let at = path.index(i);
        let matcher = match value {
            Value::String(s) => ValueMatcher::String(s.as_str().into()),
            Value::Number(n) => ValueMatcher::Number(number(n, &at)?),
            Value::Bool(b) => ValueMatcher::Bool(*b),
            Value::Null => ValueMatcher::Null,
            Value::Array(_) => {
                return Err(at.error("arrays cannot be nested inside a value array"));
            }
            Value::Object(op) => match operator(op, &at)? {
                Operator::Matcher(m) => m,
                Operator::Exists(true) => ValueMatcher::Exists,
                Operator::Exists(false) => {
                    out.matches_absent = true;
                    continue;
                }
            },
        };
        out.matchers.push(matcher);
    }
    Ok(out)
}

enum Operator {
    Matcher(ValueMatcher),
    Exists(bool),
}

fn operator(op: &Map<String, Value>, path: &JsonPath) -> Result<Operator, PatternError> {
    let mut entries = op.iter();
    let (name, arg) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        (None, _) => return Err(path.error("an empty object is not an operator")),
        (Some(_), Some(_)) => {
            let names: Vec<&str> = op.keys().map(String::as_str).collect();
            return Err(path.error(format!(
                "an operator object has exactly one key, found {names:?}"
            )));
        }
    };
    let at = path.key(name);
    let matcher = match name.as_str() {
        "prefix" => match string_or_ignore_case(arg, "prefix", &at)? {
            (s, false) => ValueMatcher::Prefix(s.into()),
            (s, true) => ValueMatcher::PrefixIgnoreCase(fold(s)),
        },
        "suffix" => match string_or_ignore_case(arg, "suffix", &at)? {
            (s, false) => ValueMatcher::Suffix(s.into()),
            (s, true) => ValueMatcher::SuffixIgnoreCase(fold(s)),
        },
        "equals-ignore-case" => ValueMatcher::EqualsIgnoreCase(fold(string(arg, name, &at)?)),
        "wildcard" => ValueMatcher::Wildcard(wildcard(string(arg, name, &at)?, &at)?),
        "numeric" => ValueMatcher::Numeric(range(arg, &at)?),
        "cidr" => {
            let text = string(arg, name, &at)?;
            ValueMatcher::Cidr(Cidr::parse(text).map_err(|e| at.error(format!("bad CIDR: {e}")))?)
        }
        "exists" => match arg {
            Value::Bool(b) => return Ok(Operator::Exists(*b)),
            other => {
                return Err(at.error(format!(
                    "\"exists\" takes true or false, found {}",
                    describe(other)
                )))
            }
        },
        "anything-but" => ValueMatcher::AnythingBut(anything_but(arg, &at)?),
        unknown => {
            return Err(path.error(format!(
                "unknown operator {unknown:?}; expected one of prefix, suffix, equals-ignore-case, \
                 wildcard, anything-but, numeric, cidr, exists"
            )))
        }
    };
    Ok(Operator::Matcher(matcher))
}

/// `"abc"` or `{"equals-ignore-case": "abc"}`; the flag says which.
fn string_or_ignore_case<'v>(
    arg: &'v Value,
    op: &str,
    path: &JsonPath,
) -> Result<(&'v str, bool), PatternError> {
    match arg {
        Value::String(s) => Ok((s, false)),
        Value::Object(map) if map.len() == 1 && map.contains_key("equals-ignore-case") => {
            let at = path.key("equals-ignore-case");
            Ok((
                string(&map["equals-ignore-case"], "equals-ignore-case", &at)?,
                true,
            ))
        }
        other => Err(path.error(format!(
            "\"{op}\" takes a string or {{\"equals-ignore-case\": string}}, found {}",
            describe(other)
        ))),
    }
}

fn string<'v>(arg: &'v Value, op: &str, path: &JsonPath) -> Result<&'v str, PatternError> {
    match arg {
        Value::String(s) => Ok(s),
        other => Err(path.error(format!(
            "\"{op}\" takes a string, found {}",
            describe(other)
        ))),
    }
}

fn wildcard(text: &str, path: &JsonPath) -> Result<Wildcard, PatternError> {
    Wildcard::parse(text).map_err(|e| path.error(e))
}

fn number(n: &serde_json::Number, path: &JsonPath) -> Result<f64, PatternError> {
    match n.as_f64() {
        Some(f) if f.is_finite() => Ok(f),
        _ => Err(path.error(format!("{n} is not a finite number"))),
    }
}

fn range(arg: &Value, path: &JsonPath) -> Result<Range, PatternError> {
    let Value::Array(items) = arg else {
        return Err(path.error(format!(
            "\"numeric\" takes an array such as [\">\", 0, \"<=\", 5], found {}",
            describe(arg)
        )));
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(path.error(format!(
            "\"numeric\" takes one or two (operator, number) pairs, found {} items",
            items.len()
        )));
    }
    let mut out = Range {
        lower: None,
        upper: None,
    };
    for (pair, chunk) in items.chunks(2).enumerate() {
        let op_at = path.index(pair * 2);
        let num_at = path.index(pair * 2 + 1);
        let op = match &chunk[0] {
            Value::String(s) => s.as_str(),
            other => {
                return Err(op_at.error(format!(
                    "expected a comparison operator (=, <, <=, >, >=), found {}",
                    describe(other)
                )))
            }
        };
        let value = match &chunk[1] {
            Value::Number(n) => number(n, &num_at)?,
            other => {
                return Err(num_at.error(format!(
                    "a numeric bound must be a number, found {}",
                    describe(other)
                )))
            }
        };
        let slot = match op {
            "=" if items.len() == 2 => {
                let b = Some(Bound {
                    value,
                    inclusive: true,
                });
                out.lower = b;
                out.upper = b;
                continue;
            }
            "=" => {
                return Err(op_at.error("\"=\" cannot be combined with another bound"));
            }
            ">" | ">=" => &mut out.lower,
            "<" | "<=" if pair == 0 && items.len() == 4 => {
                return Err(op_at.error(format!(
                    "the lower bound comes first in a range with two bounds, as in \
                     [\">\", 0, \"<=\", 5]; this one starts with {op:?}"
                )));
            }
            "<" | "<=" => &mut out.upper,
            other => {
                return Err(op_at.error(format!(
                    "unknown comparison {other:?}; expected =, <, <=, > or >="
                )))
            }
        };
        if slot.is_some() {
            return Err(op_at.error(format!(
                "a numeric range has at most one lower and one upper bound; {op:?} repeats one"
            )));
        }
        *slot = Some(Bound {
            value,
            inclusive: op.ends_with('='),
        });
    }
    if let (Some(lo), Some(hi), 4) = (out.lower, out.upper, items.len()) {
        // As the reference engine: the lower bound must be below the upper (one value is
        // written ["=", x]).
        if lo.value >= hi.value {
            return Err(path.error(format!(
                "the lower bound {} is not below the upper bound {} (for one value, write \
                 [\"=\", {}])",
                lo.value, hi.value, lo.value
            )));
        }
    }
    Ok(out)
}

fn anything_but(arg: &Value, path: &JsonPath) -> Result<AnythingBut, PatternError> {
    match arg {
        Value::String(s) => Ok(AnythingBut::Strings(vec![s.as_str().into()])),
        Value::Number(n) => Ok(AnythingBut::Numbers(vec![number(n, path)?])),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(path.error("\"anything-but\" needs at least one value"));
            }
            if items.iter().all(Value::is_string) {
                Ok(AnythingBut::Strings(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(Into::into)
                        .collect(),
                ))
            } else if items.iter().all(Value::is_number) {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let at = path.index(i);
                        match v {
                            Value::Number(n) => number(n, &at),
                            other => {
                                Err(at
                                    .error(format!("expected a number, found {}", describe(other))))
                            }
                        }
                    })
                    .collect::<Result<_, _>>()
                    .map(AnythingBut::Numbers)
            } else {
                Err(path.error(
                    "an \"anything-but\" list must hold only strings or only numbers, not a mix \
                     (nor booleans, null, arrays or objects)",
                ))
            }
        }
        Value::Object(map) => {
            let mut entries = map.iter();
            let (name, inner) = match (entries.next(), entries.next()) {
                (Some(entry), None) => entry,
                _ => {
                    return Err(path.error(
                        "\"anything-but\" with an object takes exactly one of prefix, suffix, \
                         equals-ignore-case, wildcard",
                    ))
                }
            };
            let build: fn(Vec<&str>, &Value, &JsonPath) -> Result<AnythingBut, PatternError> =
                match name.as_str() {
                    "prefix" => |texts, inner, at| {
                        refuse_empty(&texts, inner, at, "prefix")?;
                        Ok(AnythingBut::Prefix(boxed(&texts)))
                    },
                    "suffix" => |texts, inner, at| {
                        refuse_empty(&texts, inner, at, "suffix")?;
                        Ok(AnythingBut::Suffix(boxed(&texts)))
                    },
                    "equals-ignore-case" => |texts, _, _| {
                        Ok(AnythingBut::EqualsIgnoreCase(
                            texts.iter().map(|s| fold(s)).collect(),
                        ))
                    },
                    "wildcard" => |texts, inner, at| {
                        texts
                            .iter()
                            .enumerate()
                            .map(|(i, s)| {
                                let at = if inner.is_array() {
                                    at.index(i)
                                } else {
                                    at.clone()
                                };
                                wildcard(s, &at)
                            })
                            .collect::<Result<_, _>>()
                            .map(AnythingBut::Wildcard)
                    },
                    other => {
                        return Err(path.error(format!(
                            "unknown operator {other:?} inside \"anything-but\"; expected prefix, \
                             suffix, equals-ignore-case or wildcard"
                        )))
                    }
                };
            let at = path.key(name);
            build(strings_or_list(inner, name, &at)?, inner, &at)
        }
        other => Err(path.error(format!(
            "\"anything-but\" takes a string, a number, a list of either, or an operator object, \
             found {}",
            describe(other)
        ))),
    }
}

/// Every string starts and ends with `""`: an `anything-but` of an empty prefix or suffix
/// excludes every string and can never match.
fn refuse_empty(
    texts: &[&str],
    inner: &Value,
    at: &JsonPath,
    op: &str,
) -> Result<(), PatternError> {
    match texts.iter().position(|t| t.is_empty()) {
        Some(i) => {
            let at = if inner.is_array() {
                at.index(i)
            } else {
                at.clone()
            };
            Err(at.error(format!(
                "an empty {op} excludes every string, so this \"anything-but\" could never \
                 match; remove it, or use \"exists\""
            )))
        }
        None => Ok(()),
    }
}

fn strings_or_list<'v>(
    value: &'v Value,
    op: &str,
    path: &JsonPath,
) -> Result<Vec<&'v str>, PatternError> {
    match value {
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| string(v, op, &path.index(i)))
            .collect(),
        Value::Array(_) => Err(path.error(format!("\"{op}\" needs at least one string"))),
        other => Err(path.error(format!(
            "\"{op}\" takes a string or a list of strings, found {}",
            describe(other)
        ))),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => json_kind(v).to_owned(),
        scalar => format!("{} {scalar}", json_kind(scalar)),
    }
}

fn boxed(texts: &[&str]) -> Vec<Box<str>> {
    texts.iter().map(|s| (*s).into()).collect()
}
