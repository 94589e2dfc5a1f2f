//! Why a pattern matches an event, or why not: the same walk as [`eval`](super::eval), keeping
//! the record fields that made it match, or the first place it failed with what the pattern
//! wanted there and what the event had.
//!
//! The verdict is always the matcher's own (the tests hold the two to the same answers); only
//! the words are added here.

use std::fmt;

use serde_json::Value;

use super::eval::{leaf_matches, Node};
use super::{AnythingBut, FieldPattern, LeafPattern, ObjectPattern, ValueMatcher};
use crate::describe::json_kind;

/// What a pattern made of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Explanation {
    /// It matched: the fields (dotted paths) and the values that satisfied the pattern, in
    /// pattern order. A field matched by its absence (`exists: false`) is listed with `None`.
    Matched(Vec<(String, Option<Value>)>),
    /// It did not: the first place that failed.
    Missed(Miss),
}

/// The first place a pattern failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Miss {
    /// The dotted path, as the pattern names it (`detail.serviceEventDetails.state`).
    pub path: String,
    /// What the pattern wanted there, in words.
    pub wanted: String,
    /// What the event had there, in words.
    pub found: String,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: wanted {}; found {}",
            self.path, self.wanted, self.found
        )
    }
}

pub(super) fn explain(root: &ObjectPattern, node: Node<'_>) -> Explanation {
    let mut hits = Vec::new();
    match object(root, Some(node), "", &mut hits) {
        Ok(()) => Explanation::Matched(hits),
        Err(miss) => Explanation::Missed(miss),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        // Pushed, not `format!`ted: every alert's explanation joins its paths.
        let mut path = String::with_capacity(prefix.len() + 1 + key.len());
        path.push_str(prefix);
        path.push('.');
        path.push_str(key);
        path
    }
}

type Hits = Vec<(String, Option<Value>)>;

fn object(
    pattern: &ObjectPattern,
    node: Option<Node<'_>>,
    at: &str,
    hits: &mut Hits,
) -> Result<(), Miss> {
    if let Some(Node::Json(Value::Array(items))) = node {
        if items.is_empty() {
            return object(pattern, None, at, hits);
        }
        // The first element that holds the whole sub-pattern; else the first element's miss.
        let mut first_miss = None;
        for item in items {
            let mut inner = Vec::new();
            match object(pattern, Some(Node::Json(item)), at, &mut inner) {
                Ok(()) => {
                    hits.extend(inner);
                    return Ok(());
                }
                Err(miss) => {
                    first_miss.get_or_insert(miss);
                }
            }
        }
        let miss = first_miss.expect("a non-empty array has a first element");
        return Err(Miss {
            found: format!(
                "{} (in each of the {} elements of {at})",
                miss.found,
                items.len()
            ),
            ..miss
        });
    }
    for (key, field) in &pattern.fields {
        let child = node.and_then(|n| n.get(key));
        let path = join(at, key);
        match field {
            FieldPattern::Object(inner) => object(inner, child, &path, hits)?,
            FieldPattern::Leaf(leaf) => leaf_field(leaf, child, path, hits)?,
        }
    }
    for group in &pattern.ors {
        let mut first_miss = None;
        let mut held = false;
        for branch in group {
            let mut inner = Vec::new();
            match object(branch, node, at, &mut inner) {
                Ok(()) => {
                    hits.extend(inner);
                    held = true;
                    break;
                }
                Err(miss) => {
                    first_miss.get_or_insert(miss);
                }
            }
        }
        if !held {
            let miss = first_miss.expect("an $or has branches");
            return Err(Miss {
                wanted: format!(
                    "{} (or another of the {} $or branches)",
                    miss.wanted,
                    group.len()
                ),
                ..miss
            });
        }
    }
    Ok(())
}

fn leaf_field(
    pattern: &LeafPattern,
    node: Option<Node<'_>>,
    path: String,
    hits: &mut Hits,
) -> Result<(), Miss> {
    let value = match node {
        Some(Node::Json(v)) => Some(v),
        Some(Node::Envelope(_)) | None => None,
    };
    if !leaf_matches(pattern, node) {
        return Err(Miss {
            wanted: wanted(pattern),
            found: found(pattern, value),
            path,
        });
    }
    // The value that satisfied it: the first leaf a matcher accepts.
    let satisfied = value.and_then(|v| {
        first_leaf(v, &|leaf| {
            pattern
                .matchers
                .iter()
                .any(|m| super::eval::matcher(m, leaf))
        })
    });
    hits.push((path, satisfied.cloned()));
    Ok(())
}

fn first_leaf<'v>(v: &'v Value, ok: &impl Fn(&Value) -> bool) -> Option<&'v Value> {
    match v {
        Value::Array(items) => items.iter().find_map(|i| first_leaf(i, ok)),
        Value::Object(_) => None,
        scalar => ok(scalar).then_some(scalar),
    }
}

/// `"FAILED" or "EXPIRED"`, `anything but "COMPLETED"`, `absent`.
fn wanted(pattern: &LeafPattern) -> String {
    let mut parts: Vec<String> = pattern.matchers.iter().map(describe_matcher).collect();
    if pattern.matches_absent {
        parts.push("absent".into());
    }
    parts.join(" or ")
}

fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn list(items: &[Box<str>]) -> String {
    items
        .iter()
        .map(|s| quoted(s))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_matcher(m: &ValueMatcher) -> String {
    match m {
        ValueMatcher::String(s) => quoted(s),
        ValueMatcher::Number(n) => n.to_string(),
        ValueMatcher::Bool(b) => b.to_string(),
        ValueMatcher::Null => "null".into(),
        ValueMatcher::Prefix(p) => format!("a string starting with {}", quoted(p)),
        ValueMatcher::PrefixIgnoreCase(p) => {
            format!("a string starting with {} in any case", quoted(p))
        }
        ValueMatcher::Suffix(p) => format!("a string ending with {}", quoted(p)),
        ValueMatcher::SuffixIgnoreCase(p) => {
            format!("a string ending with {} in any case", quoted(p))
        }
        ValueMatcher::EqualsIgnoreCase(p) => format!("{} in any case", quoted(p)),
        ValueMatcher::Wildcard(w) => format!("a string like {}", quoted(&w.to_string())),
        ValueMatcher::Numeric(r) => format!("a number {r}"),
        ValueMatcher::Cidr(c) => format!("an IP address in {c}"),
        ValueMatcher::Exists => "any value (exists)".into(),
        ValueMatcher::AnythingBut(a) => match a {
            AnythingBut::Strings(xs) => format!("anything but {}", list(xs)),
            AnythingBut::Numbers(ns) => format!(
                "anything but {}",
                ns.iter().map(f64::to_string).collect::<Vec<_>>().join(", ")
            ),
            AnythingBut::Prefix(xs) => format!("anything not starting with {}", list(xs)),
            AnythingBut::Suffix(xs) => format!("anything not ending with {}", list(xs)),
            AnythingBut::EqualsIgnoreCase(xs) => format!("anything but {} in any case", list(xs)),
            AnythingBut::Wildcard(ws) => format!(
                "anything not like {}",
                ws.iter()
                    .map(|w| quoted(&w.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

/// What stood at a place, and when its type cannot meet the pattern's, say so.
fn found(pattern: &LeafPattern, value: Option<&Value>) -> String {
    let Some(value) = value else {
        return "the field is absent".into();
    };
    let mut leaves = Vec::new();
    collect_leaves(value, &mut leaves);
    if leaves.is_empty() {
        return match value {
            Value::Array(_) => "an empty array (no value)".into(),
            other => format!("{} (not a value)", json_kind(other)),
        };
    }
    let wants = wanted_kind(pattern);
    let shown: Vec<String> = leaves
        .iter()
        .take(5)
        .map(|v| {
            let mut s = short(v);
            if let Some(kind) = wants {
                if !fits(kind, v) {
                    s.push_str(&format!(
                        " ({}, where the pattern compares {kind})",
                        json_kind(v)
                    ));
                }
            }
            s
        })
        .collect();
    let more = if leaves.len() > 5 {
        format!(" and {} more", leaves.len() - 5)
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

fn collect_leaves<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_leaves(i, out)),
        Value::Object(_) => {}
        scalar => out.push(scalar),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// The one type of value every matcher of the pattern compares, if there is one.
fn wanted_kind(pattern: &LeafPattern) -> Option<&'static str> {
    let kind = |m: &ValueMatcher| match m {
        ValueMatcher::Number(_) | ValueMatcher::Numeric(_) => Some("numbers"),
        ValueMatcher::Bool(_) => Some("booleans"),
        ValueMatcher::Null | ValueMatcher::Exists | ValueMatcher::AnythingBut(_) => None,
        _ => Some("strings"),
    };
    let mut kinds = pattern.matchers.iter().map(kind);
    let first = kinds.next()??;
    kinds.all(|k| k == Some(first)).then_some(first)
}

fn fits(kind: &str, v: &Value) -> bool {
    match kind {
        "numbers" => v.is_number(),
        "booleans" => v.is_boolean(),
        _ => v.is_string(),
    }
}
