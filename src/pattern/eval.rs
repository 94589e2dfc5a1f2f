//! Matching a compiled pattern against an event.
//!
//! The walk follows the pattern, not the event: only the fields a pattern names are looked at.
//! Arrays in the event match when any element does; an object pattern is matched against one
//! array element at a time, which gives event-ruler's array consistency (fields from different
//! elements of the same array never combine into a match).

use serde_json::Value;

use super::envelope::Envelope;
use super::ops::{ends_with_ignore_case, eq_ignore_case, starts_with_ignore_case};
use super::{AnythingBut, FieldPattern, LeafPattern, ObjectPattern, ValueMatcher};

/// A place in the event: a JSON value, or the synthesized EventBridge envelope.
#[derive(Clone, Copy)]
pub(super) enum Node<'a> {
    Json(&'a Value),
    Envelope(&'a Envelope<'a>),
}

impl<'a> Node<'a> {
    pub(super) fn get(self, key: &str) -> Option<Node<'a>> {
        match self {
            // A small object (most below a record's top level are) is searched in order:
            // cheaper than hashing the key with serde_json's SipHash.
            Node::Json(v @ Value::Object(_)) => crate::json::field(v, key).map(Node::Json),
            Node::Json(_) => None,
            Node::Envelope(e) => e.get(key).map(Node::Json),
        }
    }
}

pub(super) fn matches_value(root: &ObjectPattern, value: &Value) -> bool {
    object(root, Some(Node::Json(value)))
}

pub(super) fn matches_envelope(root: &ObjectPattern, envelope: &Envelope<'_>) -> bool {
    object(root, Some(Node::Envelope(envelope)))
}

fn object(pattern: &ObjectPattern, node: Option<Node<'_>>) -> bool {
    if let Some(Node::Json(Value::Array(items))) = node {
        // The whole sub-pattern must hold within one element. An empty array holds no object:
        // the pattern sees its fields as absent, as a flattened event would.
        return if items.is_empty() {
            object(pattern, None)
        } else {
            items
                .iter()
                .any(|item| object(pattern, Some(Node::Json(item))))
        };
    }
    let fields = pattern.fields.iter().all(|(key, field)| {
        let child = node.and_then(|n| n.get(key));
        match field {
            FieldPattern::Object(inner) => object(inner, child),
            FieldPattern::Leaf(leaf_pattern) => leaf(leaf_pattern, child),
        }
    });
    fields
        && pattern
            .ors
            .iter()
            .all(|group| group.iter().any(|branch| object(branch, node)))
}

pub(super) fn leaf_matches(pattern: &LeafPattern, node: Option<Node<'_>>) -> bool {
    leaf(pattern, node)
}

fn leaf(pattern: &LeafPattern, node: Option<Node<'_>>) -> bool {
    let value = match node {
        Some(Node::Json(v)) => v,
        // The envelope itself is an object, never a leaf.
        Some(Node::Envelope(_)) | None => return pattern.matches_absent,
    };
    let mut seen_leaf = false;
    if any_leaf(value, &mut |v| {
        seen_leaf = true;
        pattern.matchers.iter().any(|m| matcher(m, v))
    }) {
        return true;
    }
    // `exists: false` holds when no leaf value stands at this path: absent, an empty array,
    // or only objects (which are not leaves).
    !seen_leaf && pattern.matches_absent
}

/// Calls `f` on each leaf (scalar) value at this place, flattening arrays; stops at the first
/// `true`.
fn any_leaf(value: &Value, f: &mut impl FnMut(&Value) -> bool) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| any_leaf(item, f)),
        Value::Object(_) => false,
        scalar => f(scalar),
    }
}

pub(super) fn matcher(m: &ValueMatcher, v: &Value) -> bool {
    match m {
        ValueMatcher::String(s) => v.as_str() == Some(&**s),
        ValueMatcher::Number(n) => v.as_f64() == Some(*n),
        ValueMatcher::Bool(b) => v.as_bool() == Some(*b),
        ValueMatcher::Null => v.is_null(),
        ValueMatcher::Prefix(p) => v.as_str().is_some_and(|s| s.starts_with(&**p)),
        ValueMatcher::PrefixIgnoreCase(p) => {
            v.as_str().is_some_and(|s| starts_with_ignore_case(s, p))
        }
        ValueMatcher::Suffix(p) => v.as_str().is_some_and(|s| s.ends_with(&**p)),
        ValueMatcher::SuffixIgnoreCase(p) => {
            v.as_str().is_some_and(|s| ends_with_ignore_case(s, p))
        }
        ValueMatcher::EqualsIgnoreCase(p) => v.as_str().is_some_and(|s| eq_ignore_case(s, p)),
        ValueMatcher::Wildcard(w) => v.as_str().is_some_and(|s| w.matches(s)),
        ValueMatcher::Numeric(r) => v.is_number() && v.as_f64().is_some_and(|x| r.contains(x)),
        ValueMatcher::Cidr(c) => v.as_str().is_some_and(|s| c.contains(s)),
        ValueMatcher::Exists => true,
        ValueMatcher::AnythingBut(a) => !excluded(a, v),
    }
}

/// Whether `anything-but` excludes this leaf value. A value of another type than the excluded
/// ones is never excluded: `anything-but: "x"` matches `5`, `true` and `null`.
fn excluded(a: &AnythingBut, v: &Value) -> bool {
    match a {
        AnythingBut::Numbers(ns) => v.as_f64().is_some_and(|x| ns.contains(&x)),
        _ => {
            let Some(s) = v.as_str() else {
                return false;
            };
            match a {
                AnythingBut::Strings(xs) => xs.iter().any(|x| &**x == s),
                AnythingBut::Prefix(xs) => xs.iter().any(|x| s.starts_with(&**x)),
                AnythingBut::Suffix(xs) => xs.iter().any(|x| s.ends_with(&**x)),
                AnythingBut::EqualsIgnoreCase(xs) => xs.iter().any(|x| eq_ignore_case(s, x)),
                AnythingBut::Wildcard(ws) => ws.iter().any(|w| w.matches(s)),
                AnythingBut::Numbers(_) => false,
            }
        }
    }
}
