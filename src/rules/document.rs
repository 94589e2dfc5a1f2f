//! Rule documents: YAML (JSON is YAML too) with a top-level `rules:` list, validated strictly.
//! Every fault names the document, the rule id when it has one, and the JSON path.

use serde_json::Value;

use super::{Rule, RuleError, RuleTest, Severity};
use crate::alert::SummaryTemplate;
use crate::config::valid_topic_arn;
use crate::describe::yaml_kind;
use crate::pattern::{JsonPath, Pattern};
use crate::policy::{parse_expiry, Absence, Group, Grouping, KeyPath, Suppression};
use crate::time::parse_duration;

const RULE_KEYS: [&str; 21] = [
    "resolves",
    "tags",
    "references",
    "author",
    "license",
    "sigma",
    "mode",
    "id",
    "description",
    "severity",
    "pattern",
    "enabled",
    "topic",
    "summary",
    "runbook",
    "dedup",
    "threshold",
    "group",
    "incident",
    "absence",
    "tests",
];
const TEST_KEYS: [&str; 6] = [
    "name",
    "expect",
    "record",
    "event",
    "records",
    "expect_alerts",
];
const SUPPRESSION_KEYS: [&str; 6] = ["id", "rules", "pattern", "reason", "owner", "expires"];

/// A rule document: its rules, its suppressions and the accounts it names.
#[derive(Debug, Clone, Default)]
pub struct RuleDocument {
    pub rules: Vec<Rule>,
    pub suppressions: Vec<Suppression>,
    /// `accounts:`: account id → what people call it (name, OU path, tags), for teams that
    /// cannot grant AWS Organizations read.
    pub accounts: std::collections::BTreeMap<String, crate::alert::context::AccountInfo>,
    /// `routes:`: where alerts go, by account, OU, tags, rule, severity and Region.
    pub routes: Vec<super::routes::Route>,
    /// `route_tests:`: alerts' facts and where they must go (`rules test` runs them).
    pub route_tests: Vec<super::routes::RouteTest>,
    /// `overrides:`: changes to loaded rules (built-in ones too), applied after loading.
    pub overrides: Vec<Override>,
}

const ACCOUNT_KEYS: [&str; 3] = ["name", "ou", "tags"];

/// `accounts: {"481726354019": {name: payments-prod, ou: Prod/Payments, tags: {team: payments}}}`.
fn parse_accounts(
    value: &Value,
    at: &JsonPath,
) -> Result<
    std::collections::BTreeMap<String, crate::alert::context::AccountInfo>,
    (JsonPath, String),
> {
    let Value::Object(map) = value else {
        return Err((
            at.clone(),
            format!(
                "expected a mapping of account ids to {{name, ou, tags}}, found {}",
                yaml_kind(value)
            ),
        ));
    };
    let mut out = std::collections::BTreeMap::new();
    for (id, entry) in map {
        let here = at.key(id);
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err((
                here,
                format!(
                    "not an account id (12 digits){}",
                    if id.len() < 12 && id.bytes().all(|b| b.is_ascii_digit()) {
                        ": quote it, or YAML reads it as a number and drops its leading zeros"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let Value::Object(fields) = entry else {
            return Err((
                here,
                format!("expected {{name, ou, tags}}, found {}", yaml_kind(entry)),
            ));
        };
        if let Some(unknown) = fields.keys().find(|k| !ACCOUNT_KEYS.contains(&k.as_str())) {
            return Err((
                here.key(unknown),
                "unknown key; an account has name, ou, tags".into(),
            ));
        }
        let mut info = crate::alert::context::AccountInfo::default();
        match fields.get("name") {
            None | Some(Value::Null) => {}
            Some(Value::String(n)) if !n.trim().is_empty() => info.name = Some(n.trim().to_owned()),
            Some(other) => {
                return Err((
                    here.key("name"),
                    format!("expected a name, found {}", yaml_kind(other)),
                ))
            }
        }
        match fields.get("ou") {
            None | Some(Value::Null) => {}
            Some(Value::String(path)) => {
                let path = path.trim().trim_matches('/');
                let path = path
                    .strip_prefix("Root")
                    .map_or(path, |p| p.trim_start_matches('/'));
                info.ou_path = path
                    .split('/')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            Some(other) => {
                return Err((
                    here.key("ou"),
                    format!(
                        "expected the OU path as text (Root/Prod/Payments), found {}",
                        yaml_kind(other)
                    ),
                ))
            }
        }
        match fields.get("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Object(tags)) => {
                for (k, v) in tags {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            return Err((
                                here.key("tags").key(k),
                                format!("expected a tag value, found {}", yaml_kind(other)),
                            ))
                        }
                    };
                    info.tags.insert(k.clone(), v);
                }
            }
            Some(other) => {
                return Err((
                    here.key("tags"),
                    format!("expected a mapping of tags, found {}", yaml_kind(other)),
                ))
            }
        }
        out.insert(id.clone(), info);
    }
    Ok(out)
}

/// The YAML parser's message in this tool's words: it speaks of its own options
/// (`set DuplicateKeyPolicy in Options if acceptable`), which a rule author cannot set.
fn yaml_error(message: &str) -> String {
    message
        .replace(
            ", set DuplicateKeyPolicy in Options if acceptable",
            " (each key may appear once in a mapping)",
        )
        .trim_end()
        .to_owned()
}

/// The first number written in a YAML document that is not zero but reads as zero (`1E-325`),
/// with its line: the parser turns it into 0 without a word, as it turns `1E400` into
/// infinity, which patterns refuse.
fn underflowing_number(text: &str) -> Option<(usize, String)> {
    for (n, line) in text.lines().enumerate() {
        let mut quote = None;
        let mut token = String::new();
        let mut previous = ' ';
        for c in line.chars().chain([' ']) {
            match quote {
                Some(q) => {
                    if c == q {
                        quote = None;
                    }
                }
                None if c == '"' || c == '\'' => quote = Some(c),
                // A comment starts at `#` after white space.
                None if c == '#' && previous.is_whitespace() => break,
                None if c.is_whitespace() || ",[]{}:".contains(c) => {
                    if underflows(&token) {
                        return Some((n + 1, token));
                    }
                    token.clear();
                }
                None => token.push(c),
            }
            previous = c;
        }
        if underflows(&token) {
            return Some((n + 1, token));
        }
    }
    None
}

/// A plain number whose digits are not all zero but whose value is.
fn underflows(token: &str) -> bool {
    let unsigned = token.strip_prefix(['-', '+']).unwrap_or(token);
    let mantissa = unsigned.split(['e', 'E']).next().unwrap_or("");
    unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b))
        && token.parse::<f64>() == Ok(0.0)
}

/// Parses and validates one rule document: its rules (see [`parse_rule_document`] for its
/// suppressions too).
pub fn parse_document(origin: &str, text: &str) -> Result<Vec<Rule>, RuleError> {
    parse_rule_document(origin, text).map(|doc| doc.rules)
}

include!("yaml_options.rs");

/// Parses and validates one rule document, rules and suppressions.
pub fn parse_rule_document(origin: &str, text: &str) -> Result<RuleDocument, RuleError> {
    parse_rule_document_as(origin, text, None)
}

/// [`parse_rule_document`], given the document's value as JSON too when there is one (a
/// built-in pack, converted at build time with the same options): that is parsed instead of
/// the YAML, ten times faster, to the same value. YAML in the subset rule files are written in
/// is read by [`plain_yaml`](super::plain_yaml), the rest by serde-saphyr.
pub fn parse_rule_document_as(
    origin: &str,
    text: &str,
    json: Option<&str>,
) -> Result<RuleDocument, RuleError> {
    let converted = json.and_then(|json| serde_json::from_str::<Value>(json).ok());
    let doc: Value = match converted {
        Some(doc) => doc,
        None => match super::plain_yaml::parse(text) {
            Some(doc) => doc,
            None => serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| {
                RuleError::Read {
                    origin: origin.to_owned(),
                    reason: format!("not valid YAML: {}", yaml_error(&e.to_string())),
                }
            })?,
        },
    };
    if let Some((line, number)) = underflowing_number(text) {
        return Err(RuleError::Read {
            origin: origin.to_owned(),
            reason: format!(
                "line {line}: the number {number} is too small to represent and would be read \
                 as 0; write 0, or a number of at least 1E-307"
            ),
        });
    }
    let invalid = |rule: Option<&str>, path: &JsonPath, reason: String| RuleError::Invalid {
        origin: origin.to_owned(),
        rule: rule.map(str::to_owned),
        path: path.to_string(),
        reason,
    };
    let root = JsonPath::root();
    let Value::Object(top) = &doc else {
        return Err(invalid(
            None,
            &root,
            format!(
                "a rule document is a mapping with a `rules:` list, not {}",
                yaml_kind(&doc)
            ),
        ));
    };
    if let Some(unknown) = top.keys().find(|k| {
        ![
            "rules",
            "suppressions",
            "accounts",
            "routes",
            "route_tests",
            "overrides",
        ]
        .contains(&k.as_str())
    }) {
        return Err(invalid(
            None,
            &root.key(unknown),
            "unknown key; a rule document has `rules:`, `suppressions:`, `accounts:` and \
             `routes:` (with `route_tests:`), and `overrides:`"
                .into(),
        ));
    }
    let route_tests =
        match top.get("route_tests") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => super::routes::parse_tests(v, origin, "$.route_tests").map_err(
                |(path, reason)| RuleError::Invalid {
                    origin: origin.to_owned(),
                    rule: None,
                    path,
                    reason,
                },
            )?,
        };
    let overrides = match top.get("overrides") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_overrides(v, origin, &root.key("overrides"))
            .map_err(|(path, reason)| invalid(None, &path, reason))?,
    };
    let routes = match top.get("routes") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => super::routes::parse(v, origin, "$.routes").map_err(|(path, reason)| {
            RuleError::Invalid {
                origin: origin.to_owned(),
                rule: None,
                path,
                reason,
            }
        })?,
    };
    let accounts = match top.get("accounts") {
        None | Some(Value::Null) => Default::default(),
        Some(v) => parse_accounts(v, &root.key("accounts"))
            .map_err(|(path, reason)| invalid(None, &path, reason))?,
    };
    let rules_path = root.key("rules");
    let empty = Value::Array(Vec::new());
    let list = match top.get("rules") {
        Some(list) => list,
        // A document of accounts or routes alone (its own object, with its own permissions).
        None if ["accounts", "routes", "route_tests", "overrides"]
            .iter()
            .any(|k| top.contains_key(*k)) =>
        {
            &empty
        }
        None => {
            return Err(invalid(
                None,
                &rules_path,
                "missing: a rule document needs a `rules:` list".into(),
            ))
        }
    };
    let Value::Array(list) = list else {
        return Err(invalid(
            None,
            &rules_path,
            format!("expected a list of rules, found {}", yaml_kind(list)),
        ));
    };
    // Every faulty rule is reported, not only the first.
    let mut rules = Vec::new();
    let mut faults = Vec::new();
    for (i, item) in list.iter().enumerate() {
        match parse_rule(origin, item, &rules_path.index(i)) {
            Ok(rule) => rules.push(rule),
            Err(e) => faults.push(e),
        }
    }
    let mut suppressions = Vec::new();
    match top.get("suppressions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = root.key("suppressions").index(i);
                match parse_suppression(origin, item, &at) {
                    Ok(s) => suppressions.push(s),
                    Err((path, reason)) => faults.push(invalid(None, &path, reason)),
                }
            }
        }
        Some(other) => faults.push(invalid(
            None,
            &root.key("suppressions"),
            format!(
                "expected a list of suppressions, found {}",
                yaml_kind(other)
            ),
        )),
    }
    match RuleError::all(faults) {
        Some(e) => Err(e),
        None => Ok(RuleDocument {
            rules,
            suppressions,
            accounts,
            routes,
            route_tests,
            overrides,
        }),
    }
}

/// `{id, rules, pattern, reason, owner, expires}`, all required.
fn parse_suppression(
    origin: &str,
    item: &Value,
    at: &JsonPath,
) -> Result<Suppression, (JsonPath, String)> {
    let Value::Object(map) = item else {
        return Err((
            at.clone(),
            format!(
                "a suppression is a mapping with {}, not {}",
                SUPPRESSION_KEYS.join(", "),
                yaml_kind(item)
            ),
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !SUPPRESSION_KEYS.contains(&k.as_str())) {
        return Err((
            at.key(unknown),
            format!(
                "unknown key; a suppression has {}",
                SUPPRESSION_KEYS.join(", ")
            ),
        ));
    }
    let text = |key: &str| -> Result<String, (JsonPath, String)> {
        match map.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(Value::String(_)) => Err((at.key(key), "must not be empty".into())),
            Some(other) => Err((
                at.key(key),
                format!("expected a string, found {}", yaml_kind(other)),
            )),
            None => Err((
                at.key(key),
                format!(
                    "missing: every suppression needs {key} (who, why and until when are required)"
                ),
            )),
        }
    };
    let id = text("id")?;
    if !valid_id(&id) {
        return Err((
            at.key("id"),
            format!("invalid id {id:?}: use lowercase letters, digits and '-'"),
        ));
    }
    let rules = match map.get("rules") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err((
                    at.key("rules").index(i),
                    format!(
                        "expected a rule id or a glob such as backup-*, found {}",
                        yaml_kind(other)
                    ),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err((
                at.key("rules"),
                format!(
                    "expected a non-empty list of rule ids or globs, found {}",
                    yaml_kind(other)
                ),
            ))
        }
        None => {
            return Err((
                at.key("rules"),
                "missing: the rules this suppression silences".into(),
            ))
        }
    };
    let pattern_at = at.key("pattern");
    let pattern = match map.get("pattern") {
        Some(p) => Pattern::compile(p).map_err(|e| (pattern_at.join(&e.path), e.reason))?,
        None => {
            return Err((
                pattern_at,
                "missing: the EventBridge pattern of the records to silence".into(),
            ))
        }
    };
    let reason = text("reason")?;
    let owner = text("owner")?;
    let expires_text = text("expires")?;
    let expires = parse_expiry(&expires_text).ok_or_else(|| {
        (
            at.key("expires"),
            format!("{expires_text:?} is not a date (2026-12-31) or a time (2026-12-31T18:00:00Z)"),
        )
    })?;
    Ok(Suppression {
        id,
        rules,
        pattern,
        reason,
        owner,
        expires,
        expires_text,
        origin: origin.to_owned(),
    })
}

/// `absence: {key, every, expect}`.
fn parse_absence(value: &Value, at: &JsonPath) -> Result<Absence, (JsonPath, String)> {
    const KEYS: [&str; 3] = ["key", "every", "expect"];
    let Value::Object(map) = value else {
        return Err((
            at.clone(),
            format!(
                "expected a mapping with key, every and expect, found {}",
                yaml_kind(value)
            ),
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err((
            at.key(unknown),
            "unknown key; absence has key, every, expect".into(),
        ));
    }
    let key: Vec<KeyPath> =
        match map.get("key") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, p)| match p {
                    Value::String(s) => KeyPath::parse(s).map_err(|e| (at.key("key").index(i), e)),
                    other => Err((
                        at.key("key").index(i),
                        format!("expected a dotted record path, found {}", yaml_kind(other)),
                    )),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err((
                at.key("key"),
                "missing: the record paths of what must keep reporting (a resource, an account…)"
                    .into(),
            )),
        };
    let every = match map.get("every") {
        Some(Value::String(d)) => parse_duration(d).ok_or_else(|| {
            (
                at.key("every"),
                format!("{d:?} is not a duration: a whole number and s, m, h or d (26h, 7d)"),
            )
        })?,
        _ => {
            return Err((
                at.key("every"),
                "missing: how often a match must arrive (26h, 7d)".into(),
            ))
        }
    };
    let expect = match map.get("expect") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                // One path: the value itself; several: a list of one value per path.
                let values = match (v, key.len()) {
                    (Value::Array(vs), n) if vs.len() == n && n > 1 => vs.clone(),
                    (Value::Array(_), n) if n > 1 => {
                        return Err((
                            at.key("expect").index(i),
                            format!("expected a list of {n} values, one per key path"),
                        ))
                    }
                    (other, 1) if !other.is_array() && !other.is_object() => vec![other.clone()],
                    (other, _) => {
                        return Err((
                            at.key("expect").index(i),
                            format!("expected a key value, found {}", yaml_kind(other)),
                        ))
                    }
                };
                Ok(Value::Array(values).to_string())
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err((
                at.key("expect"),
                format!("expected a list of key values, found {}", yaml_kind(other)),
            ))
        }
    };
    Ok(Absence { key, every, expect })
}

/// `dedup: {key, window, fields}` or `threshold: {count, within, key, fields}`.
fn parse_grouping(
    kind: &str,
    value: &Value,
    at: &JsonPath,
) -> Result<(Grouping, Vec<KeyPath>), (JsonPath, String)> {
    let keys: &[&str] = if kind == "dedup" {
        &["key", "window", "fields"]
    } else {
        &["count", "within", "key", "fields"]
    };
    let Value::Object(map) = value else {
        return Err((
            at.clone(),
            format!(
                "expected a mapping with {}, found {}",
                keys.join(", "),
                yaml_kind(value)
            ),
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err((
            at.key(unknown),
            format!("unknown key; {kind} has {}", keys.join(", ")),
        ));
    }
    let paths = |key: &str| -> Result<Vec<KeyPath>, (JsonPath, String)> {
        match map.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, p)| match p {
                    Value::String(s) => KeyPath::parse(s).map_err(|e| (at.key(key).index(i), e)),
                    other => Err((
                        at.key(key).index(i),
                        format!("expected a dotted record path, found {}", yaml_kind(other)),
                    )),
                })
                .collect(),
            Some(other) => Err((
                at.key(key),
                format!(
                    "expected a list of dotted record paths, found {}",
                    yaml_kind(other)
                ),
            )),
        }
    };
    let span = |key: &str| -> Result<u64, (JsonPath, String)> {
        match map.get(key) {
            Some(Value::String(d)) => parse_duration(d).ok_or_else(|| {
                (
                    at.key(key),
                    format!("{d:?} is not a duration: a whole number and s, m, h or d (90s, 15m, 1h, 1d)"),
                )
            }),
            Some(other) => Err((
                at.key(key),
                format!("expected a duration such as 15m or 1h, found {}", yaml_kind(other)),
            )),
            None => Err((at.key(key), format!("missing: {kind} needs its {key} (15m, 1h, …)"))),
        }
    };
    let key = paths("key")?;
    let fields = paths("fields")?;
    let grouping = if kind == "dedup" {
        Grouping::Dedup {
            key,
            window: span("window")?,
        }
    } else {
        let count = match map.get("count") {
            Some(Value::Number(n)) => n.as_u64().filter(|c| *c >= 1).ok_or_else(|| {
                (
                    at.key("count"),
                    format!("{n} is not a whole number of at least 1"),
                )
            })?,
            Some(other) => {
                return Err((
                    at.key("count"),
                    format!("expected a whole number, found {}", yaml_kind(other)),
                ))
            }
            None => {
                return Err((
                    at.key("count"),
                    "missing: how many matches raise the alert".into(),
                ))
            }
        };
        Grouping::Threshold {
            count,
            within: span("within")?,
            key,
        }
    };
    Ok((grouping, fields))
}

/// `group: {by: [paths], wait: DURATION, interval: DURATION}`.
fn parse_group(value: &Value, at: &JsonPath) -> Result<Group, (JsonPath, String)> {
    const KEYS: [&str; 3] = ["by", "wait", "interval"];
    let Value::Object(map) = value else {
        return Err((
            at.clone(),
            format!(
                "expected a mapping with by, wait, interval, found {}",
                yaml_kind(value)
            ),
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err((
            at.key(unknown),
            "unknown key; group has by, wait, interval".into(),
        ));
    }
    let by = match map.get("by") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Value::String(s) => KeyPath::parse(s).map_err(|e| (at.key("by").index(i), e)),
                other => Err((
                    at.key("by").index(i),
                    format!("expected a dotted record path, found {}", yaml_kind(other)),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err((
                at.key("by"),
                format!(
                    "expected a list of dotted record paths, found {}",
                    yaml_kind(other)
                ),
            ))
        }
    };
    let span = |key: &str| -> Result<Option<u64>, (JsonPath, String)> {
        match map.get(key) {
            None => Ok(None),
            Some(Value::String(d)) => parse_duration(d).map(Some).ok_or_else(|| {
                (
                    at.key(key),
                    format!("{d:?} is not a duration: a whole number and s, m, h or d (90s, 15m, 1h, 1d)"),
                )
            }),
            Some(other) => Err((
                at.key(key),
                format!("expected a duration such as 15m or 1h, found {}", yaml_kind(other)),
            )),
        }
    };
    let interval = span("interval")?.ok_or_else(|| {
        (
            at.key("interval"),
            "missing: group needs its interval (15m, 1h, …): the window whose alerts are gathered"
                .into(),
        )
    })?;
    let wait = span("wait")?.unwrap_or(0);
    if wait > interval {
        return Err((
            at.key("wait"),
            format!(
                "a wait ({}) longer than the group's interval ({}): the group's own \
                 notification would come before its first alert",
                crate::model::duration(wait),
                crate::model::duration(interval)
            ),
        ));
    }
    Ok(Group { by, wait, interval })
}

fn parse_rule(origin: &str, item: &Value, at: &JsonPath) -> Result<Rule, RuleError> {
    let fail = |rule: Option<&str>, path: JsonPath, reason: String| RuleError::Invalid {
        origin: origin.to_owned(),
        rule: rule.map(str::to_owned),
        path: path.to_string(),
        reason,
    };
    let Value::Object(map) = item else {
        return Err(fail(
            None,
            at.clone(),
            format!("a rule is a mapping, not {}", yaml_kind(item)),
        ));
    };
    // The id first, so that every later error can name the rule.
    let id = match map.get("id") {
        Some(Value::String(id)) if valid_id(id) => id.clone(),
        Some(Value::String(id)) => {
            return Err(fail(
                None,
                at.key("id"),
                format!("invalid id {id:?}: use 1 to 64 lowercase letters, digits and '-', starting with a letter or digit"),
            ))
        }
        Some(other) => return Err(fail(None, at.key("id"), format!("expected a string, found {}", yaml_kind(other)))),
        None => return Err(fail(None, at.key("id"), "missing: every rule needs an id".into())),
    };
    let rule_fail = |path: JsonPath, reason: String| fail(Some(&id), path, reason);
    // The fields that do not depend on one another are checked all at once, so that one fault
    // (a misspelt key) does not hide another (a bad severity) of the same rule.
    let mut faults: Vec<RuleError> = map
        .keys()
        .filter(|k| !RULE_KEYS.contains(&k.as_str()))
        .map(|unknown| {
            rule_fail(
                at.key(unknown),
                format!("unknown key; a rule has {}", RULE_KEYS.join(", ")),
            )
        })
        .collect();
    let text = |key: &str| required_string(map, key, at).map_err(|(p, r)| rule_fail(p, r));
    let description = text("description").and_then(|d| match d.trim() {
        "" => Err(rule_fail(at.key("description"), "must not be empty".into())),
        d => Ok(d.to_owned()),
    });
    let severity = text("severity").and_then(|s| {
        Severity::parse(s).ok_or_else(|| {
            rule_fail(
                at.key("severity"),
                format!("{s:?} is not one of info, low, medium, high, critical"),
            )
        })
    });
    let pattern_path = at.key("pattern");
    let pattern = match map.get("pattern") {
        Some(p) => Pattern::compile(p).map_err(|e| rule_fail(pattern_path.join(&e.path), e.reason)),
        None => Err(rule_fail(
            pattern_path,
            "missing: every rule needs a pattern".into(),
        )),
    };
    let enabled = match map.get("enabled") {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(rule_fail(
            at.key("enabled"),
            format!("expected true or false, found {}", yaml_kind(other)),
        )),
    };
    let topic = match map.get("topic") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if valid_topic_arn(t) => Ok(Some(t.clone())),
        Some(Value::String(t)) => Err(rule_fail(
            at.key("topic"),
            format!(
                "{t:?} is not an SNS topic ARN (arn:<partition>:sns:<region>:<account>:<name>)"
            ),
        )),
        Some(other) => Err(rule_fail(
            at.key("topic"),
            format!("expected a string, found {}", yaml_kind(other)),
        )),
    };
    let description = kept(description, &mut faults);
    let severity = kept(severity, &mut faults);
    let pattern = kept(pattern, &mut faults);
    let enabled = kept(enabled, &mut faults);
    let topic = kept(topic, &mut faults);
    if let Some(all) = RuleError::all(faults) {
        return Err(all);
    }
    let (Some(description), Some(severity), Some(pattern), Some(enabled), Some(topic)) =
        (description, severity, pattern, enabled, topic)
    else {
        unreachable!("every fault was returned above");
    };
    let summary = match map.get("summary") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => {
            Some(SummaryTemplate::parse(t).map_err(|reason| rule_fail(at.key("summary"), reason))?)
        }
        Some(other) => {
            return Err(rule_fail(
                at.key("summary"),
                format!(
                    "expected a string with {{record.path}} placeholders, found {}",
                    yaml_kind(other)
                ),
            ))
        }
    };
    let tests = match map.get("tests") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, t)| {
                parse_test(t, &at.key("tests").index(i))
                    .map_err(|(path, reason)| rule_fail(path, reason))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(rule_fail(
                at.key("tests"),
                format!("expected a list, found {}", yaml_kind(other)),
            ))
        }
    };
    let (grouping, rollup_fields) = match (map.get("dedup"), map.get("threshold")) {
        (Some(_), Some(_)) => {
            return Err(rule_fail(
                at.key("threshold"),
                "a rule has dedup or threshold, not both (a threshold already deduplicates \
                 for the rest of its window)"
                    .into(),
            ))
        }
        (Some(d), None) => {
            let (g, f) =
                parse_grouping("dedup", d, &at.key("dedup")).map_err(|(p, r)| rule_fail(p, r))?;
            (Some(g), f)
        }
        (None, Some(t)) => {
            let (g, f) = parse_grouping("threshold", t, &at.key("threshold"))
                .map_err(|(p, r)| rule_fail(p, r))?;
            (Some(g), f)
        }
        (None, None) => (None, Vec::new()),
    };
    let group = match map.get("group") {
        None => None,
        Some(g) => Some(parse_group(g, &at.key("group")).map_err(|(p, r)| rule_fail(p, r))?),
    };
    let incident = match map.get("incident") {
        None => id.clone(),
        Some(Value::String(name)) if valid_id(name) => name.clone(),
        Some(other) => {
            return Err(rule_fail(
                at.key("incident"),
                format!(
                    "expected an incident name (lowercase letters, digits and -), found {}",
                    match other {
                        Value::String(s) => format!("{s:?}"),
                        other => yaml_kind(other).to_string(),
                    }
                ),
            ))
        }
    };
    let runbook = match map.get("runbook") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        Some(other) => {
            return Err(rule_fail(
                at.key("runbook"),
                format!(
                    "expected text (what to do, with links), found {}",
                    yaml_kind(other)
                ),
            ))
        }
    };
    let meta = rule_meta(map, at).map_err(|(path, why)| rule_fail(path, why))?;
    let resolves = match map.get("resolves") {
        None => Vec::new(),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(id) if valid_id(id) => Ok(id.clone()),
                other => Err(rule_fail(
                    at.key("resolves").index(i),
                    format!("expected a rule id, found {}", yaml_kind(other)),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(rule_fail(
                at.key("resolves"),
                format!("expected a list of rule ids, found {}", yaml_kind(other)),
            ))
        }
    };
    let absence = match map.get("absence") {
        None => None,
        Some(_) if grouping.is_some() || group.is_some() => {
            return Err(rule_fail(
                at.key("absence"),
                "an absence rule watches for matches that stop; it has no dedup, threshold or \
                 group"
                    .into(),
            ))
        }
        Some(a) => Some(parse_absence(a, &at.key("absence")).map_err(|(p, r)| rule_fail(p, r))?),
    };
    let shadow = match map.get("mode") {
        None => false,
        Some(Value::String(m)) if m == "live" => false,
        Some(Value::String(m)) if m == "shadow" => true,
        Some(other) => {
            return Err(rule_fail(
                at.key("mode"),
                format!(
                    "expected live (the default) or shadow (evaluated, never published), found {}",
                    match other {
                        Value::String(s) => format!("{s:?}"),
                        other => yaml_kind(other).to_string(),
                    }
                ),
            ))
        }
    };
    if group.is_some() && !resolves.is_empty() {
        return Err(rule_fail(
            at.key("group"),
            "a recovery rule raises no alerts of its own to group".into(),
        ));
    }
    if shadow && (absence.is_some() || !resolves.is_empty()) {
        return Err(rule_fail(
            at.key("mode"),
            "a shadow rule trials the alerts it would raise; absence and recovery rules raise \
             none of their own"
                .into(),
        ));
    }
    // A rule's roll-up lists the distinct eventNames unless it names its own fields.
    let rollup_fields = if rollup_fields.is_empty() && (grouping.is_some() || group.is_some()) {
        vec![KeyPath::parse("eventName").expect("a plain path")]
    } else {
        rollup_fields
    };
    Ok(Rule {
        id,
        description,
        severity,
        pattern,
        enabled,
        topic,
        summary,
        grouping,
        rollup_fields,
        group,
        incident,
        absence,
        runbook,
        resolves,
        shadow,
        tests,
        origin: origin.to_owned(),
        overridden_by: Vec::new(),
        meta,
    })
}

/// The value, or `None` with its fault kept for reporting all of a rule's faults at once.
fn kept<T>(r: Result<T, RuleError>, faults: &mut Vec<RuleError>) -> Option<T> {
    r.map_err(|e| faults.push(e)).ok()
}

/// A rule's `tags:`, `references:` (lists of text), `author:`, `license:` (text) and `sigma:`
/// (a mapping); `None` when it has none of them.
fn rule_meta(
    map: &serde_json::Map<String, Value>,
    at: &JsonPath,
) -> Result<Option<std::sync::Arc<crate::model::RuleMeta>>, (JsonPath, String)> {
    let list = |key: &str| -> Result<Vec<String>, (JsonPath, String)> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                    other => Err((
                        at.key(key).index(i),
                        format!("expected text, found {}", yaml_kind(other)),
                    )),
                })
                .collect(),
            Some(other) => Err((
                at.key(key),
                format!("expected a list of text, found {}", yaml_kind(other)),
            )),
        }
    };
    let text = |key: &str| -> Result<Option<String>, (JsonPath, String)> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
            Some(other) => Err((
                at.key(key),
                format!("expected text, found {}", yaml_kind(other)),
            )),
        }
    };
    let sigma = match map.get("sigma") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(other) => {
            return Err((
                at.key("sigma"),
                format!(
                    "expected a mapping (the Sigma rule's id, title, ...), found {}",
                    yaml_kind(other)
                ),
            ))
        }
    };
    let meta = crate::model::RuleMeta {
        tags: list("tags")?,
        references: list("references")?,
        author: text("author")?,
        license: text("license")?,
        sigma,
    };
    Ok((meta != crate::model::RuleMeta::default()).then(|| std::sync::Arc::new(meta)))
}

/// An override of loaded rules (`overrides:`): what it changes in each rule its `rule` names
/// (an id or a glob). Applied after every document is loaded, in order.
#[derive(Debug, Clone)]
pub struct Override {
    pub rule: String,
    pub enabled: Option<bool>,
    pub severity: Option<crate::model::Severity>,
    /// `dedup:` or `threshold:` (replacing the rule's).
    pub grouping: Option<(Grouping, Vec<KeyPath>)>,
    pub group: Option<Group>,
    pub runbook: Option<String>,
    pub topic: Option<String>,
    /// The document and the override's path (`teams.yaml $.overrides[0]`).
    pub origin: String,
}

const OVERRIDE_KEYS: [&str; 8] = [
    "rule",
    "enabled",
    "severity",
    "dedup",
    "threshold",
    "group",
    "runbook",
    "topic",
];

fn parse_overrides(
    value: &Value,
    origin: &str,
    at: &JsonPath,
) -> Result<Vec<Override>, (JsonPath, String)> {
    let Value::Array(items) = value else {
        return Err((
            at.clone(),
            format!("expected a list of overrides, found {}", yaml_kind(value)),
        ));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let here = at.index(i);
        let Value::Object(map) = item else {
            return Err((
                here,
                format!(
                    "an override is a mapping with `rule:` and what it changes, not {}",
                    yaml_kind(item)
                ),
            ));
        };
        if let Some(k) = map.keys().find(|k| !OVERRIDE_KEYS.contains(&k.as_str())) {
            return Err((
                here.key(k),
                format!("unknown key; an override has {}", OVERRIDE_KEYS.join(", ")),
            ));
        }
        let rule = match map.get("rule") {
            Some(Value::String(r)) if !r.trim().is_empty() => r.trim().to_owned(),
            _ => {
                return Err((
                    here.key("rule"),
                    "missing: the rule id (or glob) it overrides".into(),
                ))
            }
        };
        let enabled = match map.get("enabled") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                return Err((
                    here.key("enabled"),
                    format!("expected true or false, found {}", yaml_kind(other)),
                ))
            }
        };
        let severity = match map.get("severity") {
            None => None,
            Some(Value::String(s)) => Some(crate::model::Severity::parse(s).ok_or_else(|| {
                (
                    here.key("severity"),
                    format!("{s:?}: expected info, low, medium, high or critical"),
                )
            })?),
            Some(other) => {
                return Err((
                    here.key("severity"),
                    format!("expected a severity, found {}", yaml_kind(other)),
                ))
            }
        };
        let grouping = match (map.get("dedup"), map.get("threshold")) {
            (Some(_), Some(_)) => {
                return Err((
                    here.key("threshold"),
                    "an override gives dedup or threshold, not both".into(),
                ))
            }
            (Some(d), None) => Some(parse_grouping("dedup", d, &here.key("dedup"))?),
            (None, Some(t)) => Some(parse_grouping("threshold", t, &here.key("threshold"))?),
            (None, None) => None,
        };
        let group = match map.get("group") {
            None => None,
            Some(g) => Some(parse_group(g, &here.key("group"))?),
        };
        let runbook = match map.get("runbook") {
            None => None,
            Some(Value::String(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
            Some(other) => {
                return Err((
                    here.key("runbook"),
                    format!("expected text, found {}", yaml_kind(other)),
                ))
            }
        };
        let topic = match map.get("topic") {
            None => None,
            Some(Value::String(t)) if crate::config::valid_topic_arn(t) => Some(t.clone()),
            Some(other) => {
                return Err((
                    here.key("topic"),
                    format!(
                        "expected an SNS topic ARN, found {}",
                        match other {
                            Value::String(s) => format!("{s:?}"),
                            o => yaml_kind(o).to_string(),
                        }
                    ),
                ))
            }
        };
        if enabled.is_none()
            && severity.is_none()
            && grouping.is_none()
            && group.is_none()
            && runbook.is_none()
            && topic.is_none()
        {
            return Err((
                here,
                "changes nothing: give enabled, severity, dedup, threshold, group, runbook or \
                 topic"
                    .into(),
            ));
        }
        out.push(Override {
            rule,
            enabled,
            severity,
            grouping,
            group,
            runbook,
            topic,
            origin: format!("{origin} {here}"),
        });
    }
    Ok(out)
}

/// Applies overrides to loaded rules, in order; an override that names no rule is an error.
pub fn apply_overrides(rules: &mut [Rule], overrides: &[Override]) -> Result<(), RuleError> {
    let mut faults = Vec::new();
    for o in overrides {
        let (origin, path) = o.origin.split_once(' ').unwrap_or((&o.origin, "$"));
        let mut hit = false;
        for rule in rules
            .iter_mut()
            .filter(|r| crate::model::id_matches(&o.rule, &r.id))
        {
            hit = true;
            if rule.absence.is_some() && (o.grouping.is_some() || o.group.is_some()) {
                faults.push(RuleError::Invalid {
                    origin: origin.to_owned(),
                    rule: Some(rule.id.clone()),
                    path: path.to_owned(),
                    reason: "an absence rule has no dedup, threshold or group".into(),
                });
                continue;
            }
            if let Some(e) = o.enabled {
                rule.enabled = e;
            }
            if let Some(s) = o.severity {
                rule.severity = s;
            }
            if let Some((g, fields)) = &o.grouping {
                rule.grouping = Some(g.clone());
                rule.rollup_fields = fields.clone();
            }
            if let Some(g) = &o.group {
                rule.group = Some(g.clone());
            }
            if let Some(r) = &o.runbook {
                rule.runbook = Some(r.clone());
            }
            if let Some(t) = &o.topic {
                rule.topic = Some(t.clone());
            }
            rule.overridden_by.push(o.origin.clone());
        }
        if !hit {
            faults.push(RuleError::Invalid {
                origin: origin.to_owned(),
                rule: None,
                path: format!("{path}.rule"),
                reason: format!(
                    "{:?} names no loaded rule (see `trail-alerts rules list`)",
                    o.rule
                ),
            });
        }
    }
    match RuleError::all(faults) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A rule's string field: "missing" or "expected a string" otherwise, with the path.
fn required_string<'v>(
    map: &'v serde_json::Map<String, Value>,
    key: &str,
    at: &JsonPath,
) -> Result<&'v str, (JsonPath, String)> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err((
            at.key(key),
            format!("expected a string, found {}", yaml_kind(other)),
        )),
        None => Err((at.key(key), format!("missing: every rule needs a {key}"))),
    }
}

fn parse_test(item: &Value, at: &JsonPath) -> Result<RuleTest, (JsonPath, String)> {
    let Value::Object(map) = item else {
        return Err((
            at.clone(),
            format!(
                "a test is a mapping with name, expect and record, not {}",
                yaml_kind(item)
            ),
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !TEST_KEYS.contains(&k.as_str())) {
        return Err((
            at.key(unknown),
            format!("unknown key; a test has {}", TEST_KEYS.join(", ")),
        ));
    }
    let name = match map.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n.clone(),
        _ => return Err((at.key("name"), "every test needs a non-empty name".into())),
    };
    // A sequence: records in order, and how many alerts they raise with the rule's dedup,
    // threshold and the document's suppressions.
    if map.contains_key("records") || map.contains_key("expect_alerts") {
        let records = match map.get("records") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, r)| match r {
                    Value::Object(_) => Ok(r.clone()),
                    other => Err((
                        at.key("records").index(i),
                        format!("a CloudTrail record is a mapping, not {}", yaml_kind(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err((
                    at.key("records"),
                    "a sequence test needs a non-empty list of records with expect_alerts".into(),
                ))
            }
        };
        let expected = match map.get("expect_alerts") {
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(0),
            _ => {
                return Err((
                    at.key("expect_alerts"),
                    "expected the number of alerts the records raise".into(),
                ))
            }
        };
        if let Some(k) = ["expect", "record", "event"]
            .iter()
            .find(|k| map.contains_key(**k))
        {
            return Err((
                at.key(k),
                "a sequence test has records and expect_alerts, not expect, record or event".into(),
            ));
        }
        return Ok(RuleTest {
            name,
            expect: expected > 0,
            record: Value::Null,
            event: false,
            sequence: Some((records, expected)),
        });
    }
    let expect = match map.get("expect") {
        Some(Value::Bool(b)) => *b,
        _ => {
            return Err((
                at.key("expect"),
                "expected true (the rule fires) or false".into(),
            ))
        }
    };
    // A CloudTrail record, or a service's own EventBridge event (`event:`).
    let (key, event) = match (map.get("record"), map.get("event")) {
        (Some(_), Some(_)) => {
            return Err((
                at.key("event"),
                "a test has either a record (a CloudTrail record) or an event (an EventBridge \
                 event), not both"
                    .into(),
            ))
        }
        (_, Some(_)) => ("event", true),
        _ => ("record", false),
    };
    let what = if event {
        "an EventBridge event"
    } else {
        "a CloudTrail record"
    };
    let record =
        match map.get(key) {
            Some(r @ Value::Object(_)) => r.clone(),
            Some(other) => {
                return Err((
                    at.key(key),
                    format!("{what} is a mapping, not {}", yaml_kind(other)),
                ))
            }
            None => return Err((
                at.key("record"),
                "missing: the CloudTrail record (record:) or EventBridge event (event:) to test"
                    .into(),
            )),
        };
    if event && !(record.get("source").is_some() && record.get("detail-type").is_some()) {
        return Err((
            at.key("event"),
            "an EventBridge event has source, detail-type and detail".into(),
        ));
    }
    Ok(RuleTest {
        name,
        expect,
        record,
        event,
        sequence: None,
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}
