//! What a record must show for a pattern to have a chance: its anchors — a set of simple tests
//! on single fields, one of which every matching record passes.
//!
//! The rule index files each pattern under its anchors (exact values hashed, prefixes and
//! suffixes by length, a field merely present), so that a record is tested against the few
//! patterns whose anchors it passes, whatever the number of patterns. An anchor is a necessary
//! condition, never a sufficient one: the pattern itself is still evaluated.

use super::envelope::event_type_for;
use super::{FieldPattern, Form, LeafPattern, ObjectPattern, Pattern, ValueMatcher};

/// A path into a CloudTrail record: object keys; arrays on the way are looked through.
pub type Path = Vec<Box<str>>;

/// A test on the leaf values at one path of a record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Test {
    /// A string leaf equal to this.
    Exact(Box<str>),
    /// A string leaf that, lower-cased character by character, equals this.
    Folded(Box<str>),
    /// A string leaf starting with this.
    Prefix(Box<str>),
    /// A string leaf that, lower-cased character by character, starts with this.
    FoldedPrefix(Box<str>),
    Suffix(Box<str>),
    FoldedSuffix(Box<str>),
    /// A string leaf whose service part (`backup` of `backup.amazonaws.com`) is this.
    Service(Box<str>),
    /// Any leaf (a scalar, or a scalar in an array).
    Present,
    /// A number, `true`, `false` or `null` that this value matcher (`numeric`, a number, a
    /// boolean, `null`) passes: told from the leaf's raw bytes, read as building reads them.
    Scalar(ScalarTest),
}

/// A value matcher that only a number, `true`, `false` or `null` can pass (no string does),
/// as an anchor's test. Told apart (equal, hashed) by how the matcher is written out.
#[derive(Debug, Clone)]
pub struct ScalarTest {
    shown: Box<str>,
    matcher: ValueMatcher,
}

impl ScalarTest {
    fn new(matcher: &ValueMatcher) -> Self {
        ScalarTest {
            shown: format!("{matcher:?}").into(),
            matcher: matcher.clone(),
        }
    }

    /// Whether the scalar written `raw` (as it stands in a record) passes; `true` when only
    /// building could tell (the bytes are not one JSON scalar).
    pub fn passes(&self, raw: &[u8]) -> bool {
        use serde_json::Value;
        let value = match raw {
            b"true" => Value::Bool(true),
            b"false" => Value::Bool(false),
            b"null" => Value::Null,
            // A small whole number, the common case, as serde_json reads it (a u64; no leading
            // zero, which it refuses); the rest by serde_json itself.
            [b'1'..=b'9', rest @ ..] if rest.len() < 18 && rest.iter().all(u8::is_ascii_digit) => {
                Value::from(raw.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
            }
            _ => match serde_json::from_slice::<Value>(raw) {
                Ok(value) if !value.is_string() && !value.is_object() && !value.is_array() => value,
                _ => return true,
            },
        };
        super::eval::matcher(&self.matcher, &value)
    }
}

impl PartialEq for ScalarTest {
    fn eq(&self, other: &Self) -> bool {
        self.shown == other.shown
    }
}

impl Eq for ScalarTest {}

impl std::hash::Hash for ScalarTest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.shown.hash(state);
    }
}

/// One anchor: a test at a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Anchor {
    pub path: Path,
    pub test: Test,
}

impl Pattern {
    /// The anchors of the pattern: every record it matches passes at least one of them.
    /// `None`: no such set (the pattern must be tried on every record); an empty list: the
    /// pattern can match no CloudTrail record at all.
    pub fn anchors(&self) -> Option<Vec<Anchor>> {
        self.anchor_sets().into_iter().next()
    }

    /// Every anchor set the pattern's top-level conditions offer, cheapest first: each is a
    /// necessary condition, so a matching record passes an anchor of every one of them. The
    /// index files a pattern under the first and checks the second before building a record.
    pub fn anchor_sets(&self) -> Vec<Vec<Anchor>> {
        let mut sets = match self.form {
            Form::Record => sets(&self.root, &Place::Record(Vec::new())),
            Form::Envelope => sets(&self.root, &Place::Envelope),
        };
        sets.sort_by_key(|anchors| cost(anchors));
        sets
    }
}

/// Where an object pattern stands: the envelope's top level, or a path of the record.
enum Place {
    Envelope,
    Record(Path),
}

/// Record fields whose values many records share (a service, a Region, an account, a kind of
/// event or caller): an exact value of theirs lets through as many records as a prefix does.
const BROAD_FIELDS: [&str; 11] = [
    "eventSource",
    "eventType",
    "eventCategory",
    "eventVersion",
    "awsRegion",
    "recipientAccountId",
    "readOnly",
    "managementEvent",
    "userIdentity.type",
    "userIdentity.accountId",
    // The kind of identity that issued an assumed role's session: `Role` on every such record.
    "userIdentity.sessionContext.sessionIssuer.type",
];

impl Anchor {
    /// Whether many records pass this anchor: anything but an exact value, or an exact value
    /// of a broad field. The index checks a second anchor set behind such a first one.
    pub fn is_weak(&self) -> bool {
        self.score() >= 3
    }

    /// How many records the anchor lets through, as a rank: 1 an exact value of a selective
    /// field, 2 one compared ignoring case, 3 a prefix or suffix, or an exact value of a broad
    /// field (`eventSource: [s3.amazonaws.com]` lets through every S3 call), 4 a prefix or
    /// suffix ignoring case, 9 a field merely present.
    fn score(&self) -> u8 {
        let broad = || {
            let path = self.path.join(".");
            BROAD_FIELDS.contains(&path.as_str())
        };
        match self.test {
            Test::Service(_) => 3,
            Test::Exact(_) if broad() => 3,
            Test::Exact(_) => 1,
            Test::Folded(_) if broad() => 3,
            Test::Folded(_) => 2,
            Test::Prefix(_) | Test::Suffix(_) => 3,
            Test::FoldedPrefix(_) | Test::FoldedSuffix(_) => 4,
            Test::Present | Test::Scalar(_) => 9,
        }
    }
}

/// How much an anchor set costs the index: the worst anchor in it, then its size.
pub(crate) fn cost(anchors: &[Anchor]) -> (u8, usize) {
    let worst = anchors.iter().map(Anchor::score).max().unwrap_or(0);
    (worst, anchors.len())
}

/// The anchor sets of an object pattern: each of its fields (all must hold) and each of its
/// `$or` groups (one branch must hold, so every branch needs anchors) offers one.
fn sets(object: &ObjectPattern, place: &Place) -> Vec<Vec<Anchor>> {
    let fields = object
        .fields
        .iter()
        .filter_map(|(key, field)| field_anchors(key, field, place));
    let ors = object.ors.iter().filter_map(|group| {
        let mut all = Vec::new();
        for branch in group {
            all.extend(best(branch, place)?);
        }
        Some(all)
    });
    fields.chain(ors).collect()
}

/// The cheapest anchor set of an object pattern; of sets that cost the same, the shallowest:
/// the reader follows a record's nesting down to every path it peeks at, on every record
/// (`userIdentity: {type: …, sessionContext: {sessionIssuer: {type: …}}}` is anchored on
/// `userIdentity.type`, not three levels further down).
fn best(object: &ObjectPattern, place: &Place) -> Option<Vec<Anchor>> {
    sets(object, place).into_iter().min_by_key(|anchors| {
        let depth: usize = anchors.iter().map(|a| a.path.len()).sum();
        (cost(anchors), depth)
    })
}

fn field_anchors(key: &str, field: &FieldPattern, place: &Place) -> Option<Vec<Anchor>> {
    match place {
        Place::Record(at) => {
            let mut path = at.clone();
            path.push(key.into());
            match field {
                FieldPattern::Object(inner) => best(inner, &Place::Record(path)),
                FieldPattern::Leaf(leaf) => leaf_anchors(leaf, &path, value_test),
            }
        }
        Place::Envelope => match (key, field) {
            ("detail", FieldPattern::Object(inner)) => best(inner, &Place::Record(Vec::new())),
            (_, FieldPattern::Object(_)) => None,
            ("source", FieldPattern::Leaf(leaf)) => {
                leaf_anchors(leaf, &["eventSource".into()], |m| match m {
                    // `source` is `aws.` and the service of `eventSource`; any other source
                    // can never come from a CloudTrail record.
                    ValueMatcher::String(s) => Some(
                        s.strip_prefix("aws.")
                            .map(|service| Test::Service(service.into())),
                    ),
                    _ => None,
                })
            }
            ("detail-type", FieldPattern::Leaf(leaf)) => {
                leaf_anchors(leaf, &["eventType".into()], |m| match m {
                    ValueMatcher::String(s) => {
                        Some(event_type_for(s).map(|t| Test::Exact(t.into())))
                    }
                    _ => None,
                })
            }
            (_, FieldPattern::Leaf(leaf)) => {
                // The envelope fields copied from the record as they are.
                let source = match key {
                    "account" => "recipientAccountId",
                    "region" => "awsRegion",
                    "time" => "eventTime",
                    "id" => "eventID",
                    _ => return None,
                };
                leaf_anchors(leaf, &[source.into()], value_test)
            }
        },
    }
}

/// A leaf's anchors: one per value (they are OR'd), each a test on this path. `test` says what a
/// value requires: `None` no usable test, `Some(None)` a value no record can have.
fn leaf_anchors(
    leaf: &LeafPattern,
    path: &[Box<str>],
    test: impl Fn(&ValueMatcher) -> Option<Option<Test>>,
) -> Option<Vec<Anchor>> {
    if leaf.matches_absent {
        return None;
    }
    let mut out = Vec::new();
    for m in &leaf.matchers {
        if let Some(test) = test(m)? {
            let anchor = Anchor {
                path: path.to_vec(),
                test,
            };
            if !out.contains(&anchor) {
                out.push(anchor);
            }
        }
    }
    Some(out)
}

/// What a value matcher requires of the leaf at its path.
fn value_test(m: &ValueMatcher) -> Option<Option<Test>> {
    Some(Some(match m {
        ValueMatcher::String(s) => Test::Exact(s.clone()),
        ValueMatcher::EqualsIgnoreCase(s) => Test::Folded(s.clone()),
        ValueMatcher::Prefix(s) => Test::Prefix(s.clone()),
        ValueMatcher::PrefixIgnoreCase(s) => Test::FoldedPrefix(s.clone()),
        ValueMatcher::Suffix(s) => Test::Suffix(s.clone()),
        ValueMatcher::SuffixIgnoreCase(s) => Test::FoldedSuffix(s.clone()),
        ValueMatcher::Wildcard(w) => match w.literals() {
            (Some(whole), _) => Test::Exact(whole.into()),
            (None, (first, _)) if !first.is_empty() => Test::Prefix(first.into()),
            (None, (_, last)) if !last.is_empty() => Test::Suffix(last.into()),
            _ => Test::Present,
        },
        // A number, a boolean or null: only such a leaf passes, which its raw bytes tell.
        ValueMatcher::Number(_)
        | ValueMatcher::Bool(_)
        | ValueMatcher::Null
        | ValueMatcher::Numeric(_) => Test::Scalar(ScalarTest::new(m)),
        // Every other value needs a leaf there: a string of some kind, or anything but
        // something.
        ValueMatcher::Cidr(_) | ValueMatcher::Exists | ValueMatcher::AnythingBut(_) => {
            Test::Present
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn anchors(p: serde_json::Value) -> Option<Vec<(String, Test)>> {
        Pattern::compile(&p)
            .unwrap()
            .anchors()
            .map(|v| v.into_iter().map(|a| (a.path.join("."), a.test)).collect())
    }

    #[test]
    fn the_cheapest_field_anchors_the_pattern() {
        assert_eq!(
            anchors(json!({"userAgent": [{"prefix": "aws-cli"}], "eventName": ["A", "B"]})),
            Some(vec![
                ("eventName".into(), Test::Exact("A".into())),
                ("eventName".into(), Test::Exact("B".into()))
            ])
        );
        assert_eq!(
            anchors(json!({"userIdentity": {"type": ["Root"]}})),
            Some(vec![(
                "userIdentity.type".into(),
                Test::Exact("Root".into())
            )])
        );
        assert_eq!(
            anchors(json!({"eventName": [{"wildcard": "Delete*Vault"}]})),
            Some(vec![("eventName".into(), Test::Prefix("Delete".into()))])
        );
        assert_eq!(
            anchors(json!({"eventName": [{"wildcard": "*Vault"}]})),
            Some(vec![("eventName".into(), Test::Suffix("Vault".into()))])
        );
        assert_eq!(
            anchors(json!({"errorCode": [{"exists": true}]})),
            Some(vec![("errorCode".into(), Test::Present)])
        );
        // Regression: one exact eventSource was preferred to three exact eventNames, so every
        // S3 call in a log was built for `trail-bucket-notification-changed` (17 % of a
        // one-core scan of the benchmark corpus). A broad field's value ranks with a prefix.
        assert_eq!(
            anchors(
                json!({"eventSource": ["s3.amazonaws.com"], "eventName": ["PutBucketNotification", "DeleteBucket", "X"]})
            ),
            Some(vec![
                (
                    "eventName".into(),
                    Test::Exact("PutBucketNotification".into())
                ),
                ("eventName".into(), Test::Exact("DeleteBucket".into())),
                ("eventName".into(), Test::Exact("X".into()))
            ])
        );
        let sets = Pattern::compile(
            &json!({"eventSource": ["s3.amazonaws.com"], "userAgent": [{"prefix": "aws-cli"}]}),
        )
        .expect("pattern")
        .anchor_sets();
        assert!(
            sets[0].iter().all(Anchor::is_weak),
            "a broad exact value is weak: {sets:?}"
        );
        // Of anchors that let through as many records, the shallowest: the reader need not
        // follow `userIdentity` down to its session's issuer on every record (SigmaHQ's
        // `aws_sts_assumerole_misuse`; an assumed role's session is issued by a `Role`).
        assert_eq!(
            anchors(json!({"userIdentity": {
                "sessionContext": {"sessionIssuer": {"type": [{"equals-ignore-case": "Role"}]}},
                "type": [{"equals-ignore-case": "AssumedRole"}]
            }})),
            Some(vec![(
                "userIdentity.type".into(),
                Test::Folded("assumedrole".into())
            )])
        );
        // A selective anchor still wins over a broad one, however deep.
        assert_eq!(
            anchors(json!({"userIdentity": {
                "sessionContext": {"sessionIssuer": {"userName": ["deployer"]}},
                "type": ["AssumedRole"]
            }})),
            Some(vec![(
                "userIdentity.sessionContext.sessionIssuer.userName".into(),
                Test::Exact("deployer".into())
            )])
        );
        // exists: false holds on an absent field: nothing to anchor on.
        assert_eq!(anchors(json!({"errorCode": [{"exists": false}]})), None);
        assert_eq!(
            anchors(json!({"a": [{"exists": false}], "b": [{"equals-ignore-case": "X"}]})),
            Some(vec![("b".into(), Test::Folded("x".into()))])
        );
    }

    #[test]
    fn every_condition_offers_a_set_cheapest_first() {
        let p = Pattern::compile(
            &json!({"requestParameters": {"maxResults": [{"numeric": [">", 5]}]},
                                         "eventName": [{"prefix": "List"}]}),
        )
        .unwrap();
        let sets: Vec<Vec<(String, Test)>> = p
            .anchor_sets()
            .into_iter()
            .map(|s| s.into_iter().map(|a| (a.path.join("."), a.test)).collect())
            .collect();
        let [first, second] = &sets[..] else {
            panic!("{sets:?}")
        };
        assert_eq!(first, &[("eventName".into(), Test::Prefix("List".into()))]);
        let [(path, Test::Scalar(numeric))] = &second[..] else {
            panic!("{second:?}")
        };
        assert_eq!(path, "requestParameters.maxResults");
        // Told from the number's bytes as building reads them.
        for (raw, passes) in [
            (&b"6"[..], true),
            (b"5", false),
            (b"5.5", true),
            (b"-7", false),
            (b"1e3", true),
            (b"0.5E1", false),
            (b"true", false),
            (b"null", false),
        ] {
            assert_eq!(
                numeric.passes(raw),
                passes,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        // Bytes that are not one JSON scalar: only building can tell.
        assert!(numeric.passes(b"1-2"));
        assert!(numeric.passes(b""));
    }

    #[test]
    fn scalar_values_are_told_from_raw_scalars() {
        let test = |matcher: Value| {
            let p =
                Pattern::compile(&json!({"a": [matcher], "eventName": [{"prefix": "X"}]})).unwrap();
            match p.anchor_sets().pop().unwrap().pop().unwrap().test {
                Test::Scalar(t) => t,
                other => panic!("{other:?}"),
            }
        };
        let five = test(json!(5));
        assert!(five.passes(b"5") && five.passes(b"5.0") && five.passes(b"50e-1"));
        assert!(!five.passes(b"6") && !five.passes(b"null"));
        let yes = test(json!(true));
        assert!(yes.passes(b"true") && !yes.passes(b"false") && !yes.passes(b"1"));
        let null = test(Value::Null);
        assert!(null.passes(b"null") && !null.passes(b"0"));
        // One test per matcher as written: the same matcher twice is one set, two are two.
        assert_eq!(test(json!(5)), five);
        assert_ne!(test(json!(6)), five);
    }

    #[test]
    fn or_groups_need_an_anchor_in_every_branch() {
        assert_eq!(
            anchors(json!({"$or": [{"eventName": ["A"]}, {"eventSource": [{"suffix": ".x"}]}]})),
            Some(vec![
                ("eventName".into(), Test::Exact("A".into())),
                ("eventSource".into(), Test::Suffix(".x".into()))
            ])
        );
        assert_eq!(
            anchors(json!({"$or": [{"eventName": ["A"]}, {"e": [{"exists": false}]}]})),
            None
        );
    }

    #[test]
    fn envelope_fields_anchor_on_the_record_fields_they_come_from() {
        assert_eq!(
            anchors(
                json!({"source": ["aws.backup"], "detail-type": ["AWS API Call via CloudTrail"]})
            ),
            Some(vec![("eventSource".into(), Test::Service("backup".into()))])
        );
        assert_eq!(
            anchors(
                json!({"detail-type": ["AWS Service Event via CloudTrail"], "account": [{"prefix": "1"}]})
            ),
            Some(vec![(
                "eventType".into(),
                Test::Exact("AwsServiceEvent".into())
            )])
        );
        assert_eq!(
            anchors(json!({"detail": {"eventName": ["X"]}})),
            Some(vec![("eventName".into(), Test::Exact("X".into()))])
        );
        // A source no CloudTrail record can give: no record can match.
        assert_eq!(anchors(json!({"source": ["my.app"]})), Some(vec![]));
    }
}
