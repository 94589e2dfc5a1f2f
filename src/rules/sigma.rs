//! `trail-alerts rules import sigma`: Sigma rules for AWS CloudTrail, converted exactly into
//! trail-alerts rules (EventBridge patterns), or refused, rule by rule, with the construct that
//! cannot be said named. Never an approximation passed off as the rule.
//!
//! Sigma's semantics, and how each is kept:
//! - values compare **case-insensitively** unless `|cased`: `equals-ignore-case`, and `prefix` /
//!   `suffix` with `equals-ignore-case`; a value without cased letters needs no folding and is
//!   matched exactly (the index's fast path). A case-insensitive `|contains` (or any other
//!   wildcard shape) has no EventBridge form — `wildcard` is case-sensitive — and is refused
//!   unless its value has no cased letters;
//! - `*` in a value is Sigma's wildcard (`\*` a literal star); `?` has no EventBridge form;
//! - a value is compared with the field's text: `'false'` also matches the JSON `false`, `'42'`
//!   the number 42;
//! - `null` means missing or null (`[null, {"exists": false}]`); `|exists` is `exists`;
//! - lists are OR (`|all`: AND); a selection's fields are AND; a list of mappings is OR;
//! - conditions (`and`, `or`, `not`, parentheses, `1 of`/`all of` a name, a glob or `them`) are
//!   brought to a disjunction of conjunctions (`$or` when more than one). `not` over a value is
//!   De Morgan's: `anything-but`, which never matches a missing (or null) field, so the negation
//!   is `$or` of `anything-but`, `exists: false` and `null` — and only on fields CloudTrail
//!   writes with one value (a negation over a list would differ: `anything-but` holds when any
//!   element differs, Sigma's `not` when none matches);
//! - refused with the construct named: `|re`, `|fieldref`, `|base64*`, `|windash`, `|cidr`,
//!   `|expand`, comparisons, keyword (whole-record) searches, `|contains` over a whole object,
//!   two conditions on one field in one branch that no single EventBridge list can say, and
//!   correlation rules other than `event_count` (which becomes a threshold).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::schema::single_valued;
use crate::describe::yaml_kind;

/// One Sigma document read.
pub struct SigmaFile {
    /// Where it was read (a path).
    pub origin: String,
    pub text: String,
}

/// What became of one Sigma rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Converted: the trail-alerts rule (a rule mapping, as in a rule file).
    Converted(Value),
    /// Refused, with the construct that cannot be said exactly.
    Refused(String),
    /// Not an AWS CloudTrail rule (its `logsource`), or not a rule at all.
    Skipped(String),
}

/// One Sigma rule's import.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub origin: String,
    pub title: String,
    pub sigma_id: Option<String>,
    pub verdict: Verdict,
}

/// Imports every Sigma rule of these files (a file may hold several YAML documents). Rules
/// are returned in file order; converted ones have distinct ids.
pub fn import(files: &[SigmaFile]) -> Vec<Imported> {
    let mut out: Vec<Imported> = Vec::new();
    let mut named: BTreeMap<String, usize> = BTreeMap::new();
    for file in files {
        for (i, doc) in documents(&file.text).into_iter().enumerate() {
            let origin = if i == 0 {
                file.origin.clone()
            } else {
                format!("{} (document {})", file.origin, i + 1)
            };
            let doc = match doc {
                Ok(d) => d,
                Err(e) => {
                    out.push(Imported {
                        origin,
                        title: String::new(),
                        sigma_id: None,
                        verdict: Verdict::Refused(format!("not valid YAML: {e}")),
                    });
                    continue;
                }
            };
            let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
            let title = text("title").unwrap_or_default();
            let sigma_id = text("id");
            let verdict = if doc.get("correlation").is_some() {
                correlation(&doc, &out)
            } else {
                match convert(&doc) {
                    Ok(Some(rule)) => Verdict::Converted(rule),
                    Ok(None) => Verdict::Skipped("its logsource is not AWS CloudTrail".into()),
                    Err(why) => Verdict::Refused(why),
                }
            };
            let verdict = match verdict {
                Verdict::Converted(mut rule) => {
                    // Distinct ids: a title seen before gets -2, -3, ...
                    let base = rule["id"].as_str().unwrap_or("sigma").to_owned();
                    let n = named.entry(base.clone()).or_insert(0);
                    *n += 1;
                    if *n > 1 {
                        rule["id"] = json!(format!("{base}-{n}"));
                    }
                    Verdict::Converted(rule)
                }
                other => other,
            };
            out.push(Imported {
                origin,
                title,
                sigma_id,
                verdict,
            });
        }
    }
    out
}

/// The YAML documents of a file (`---` between them).
fn documents(text: &str) -> Vec<Result<Value, String>> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut push = |current: &mut String| {
        if current.trim().is_empty() {
            current.clear();
            return;
        }
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = true;
        docs.push(
            serde_saphyr::from_str_with_options::<Value>(current, options)
                .map_err(|e| e.to_string()),
        );
        current.clear();
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            push(&mut current);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    push(&mut current);
    docs
}

/// A rule id from a Sigma title: lower case, words joined by `-`, prefixed `sigma-`.
pub fn rule_id(title: &str) -> String {
    let mut id = String::from("sigma");
    let mut dash = true;
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            if dash {
                id.push('-');
            }
            id.push(c.to_ascii_lowercase());
            dash = false;
        } else {
            dash = true;
        }
        if id.len() >= 80 {
            break;
        }
    }
    id
}

/// Sigma's `level` as a severity.
fn severity(level: Option<&str>) -> Result<&'static str, String> {
    match level.map(str::to_ascii_lowercase).as_deref() {
        Some("informational") => Ok("info"),
        Some("low") => Ok("low"),
        Some("medium") | None => Ok("medium"),
        Some("high") => Ok("high"),
        Some("critical") => Ok("critical"),
        Some(other) => Err(format!("level {other:?} is not a Sigma level")),
    }
}

/// Whether the logsource is AWS CloudTrail (`product: aws`, `service: cloudtrail`).
fn is_cloudtrail(doc: &Value) -> bool {
    let ls = &doc["logsource"];
    let is = |k: &str, v: &str| ls[k].as_str().is_some_and(|x| x.eq_ignore_ascii_case(v));
    is("product", "aws") && is("service", "cloudtrail")
}

/// The rule of one Sigma detection rule; `None` when it is not for CloudTrail.
fn convert(doc: &Value) -> Result<Option<Value>, String> {
    let Value::Object(_) = doc else {
        return Err(format!("a Sigma rule is a mapping, not {}", yaml_kind(doc)));
    };
    if !is_cloudtrail(doc) {
        return Ok(None);
    }
    let title = doc["title"]
        .as_str()
        .filter(|t| !t.trim().is_empty())
        .ok_or("no title")?;
    let detection = doc["detection"].as_object().ok_or("no detection")?;
    let pattern = detection_pattern(detection)?;
    let mut rule = Map::new();
    rule.insert("id".into(), json!(rule_id(title)));
    // One line: Sigma's descriptions are often folded over several.
    let description = doc["description"].as_str().map_or_else(
        || title.to_owned(),
        |d| d.split_whitespace().collect::<Vec<_>>().join(" "),
    );
    rule.insert("description".into(), json!(description));
    rule.insert("severity".into(), json!(severity(doc["level"].as_str())?));
    rule.insert("pattern".into(), pattern);
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    let tags = strings(&doc["tags"]);
    if !tags.is_empty() {
        rule.insert("tags".into(), json!(tags));
    }
    let references = strings(&doc["references"]);
    if !references.is_empty() {
        rule.insert("references".into(), json!(references));
    }
    if let Some(a) = doc["author"].as_str() {
        rule.insert("author".into(), json!(a.trim()));
    }
    // SigmaHQ's rules are under the Detection Rule License 1.1 unless they say otherwise; it
    // asks for attribution wherever matches are shown: the alert document carries it.
    let license = doc["license"].as_str().unwrap_or("DRL-1.1");
    rule.insert("license".into(), json!(license));
    let mut sigma = Map::new();
    // `name`: what correlation rules call it by.
    for k in ["id", "name", "title", "status", "date", "modified"] {
        if let Some(v) = doc.get(k).filter(|v| !v.is_null()) {
            sigma.insert(
                k.into(),
                json!(v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
            );
        }
    }
    let fp = strings(&doc["falsepositives"]);
    if !fp.is_empty() {
        sigma.insert("falsepositives".into(), json!(fp));
    }
    rule.insert("sigma".into(), Value::Object(sigma));
    Ok(Some(Value::Object(rule)))
}

/// A correlation rule: `event_count` over one converted rule becomes that rule with a
/// threshold; other types are refused with the reason.
fn correlation(doc: &Value, before: &[Imported]) -> Verdict {
    let c = &doc["correlation"];
    let kind = c["type"].as_str().unwrap_or("");
    if kind != "event_count" {
        return Verdict::Refused(format!(
            "correlation type {kind:?}: only event_count has a trail-alerts form (a threshold); \
             value_count, temporal and the others need state across different events"
        ));
    }
    let names: Vec<&str> = match &c["rules"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let [name] = names.as_slice() else {
        return Verdict::Refused(
            "an event_count correlation over several rules: a threshold counts one rule's matches"
                .into(),
        );
    };
    let Some(base) = before.iter().rev().find_map(|i| match &i.verdict {
        Verdict::Converted(rule)
            if i.sigma_id.as_deref() == Some(*name)
                || rule["sigma"]["name"].as_str() == Some(*name)
                || i.title == *name =>
        {
            Some(rule.clone())
        }
        _ => None,
    }) else {
        return Verdict::Refused(format!(
            "the correlation's rule {name:?} is not among the rules converted before it"
        ));
    };
    let count = match c["condition"].as_object() {
        Some(m) if m.len() == 1 => match (m.get("gte"), m.get("gt")) {
            (Some(n), None) => n.as_u64(),
            (None, Some(n)) => n.as_u64().map(|n| n + 1),
            _ => None,
        },
        _ => None,
    };
    let Some(count) = count.filter(|n| *n >= 1) else {
        return Verdict::Refused(
            "an event_count condition other than gte/gt a count: a threshold alerts at the \
             Nth match"
                .into(),
        );
    };
    let Some(within) = c["timespan"].as_str() else {
        return Verdict::Refused("an event_count correlation without a timespan".into());
    };
    let key: Vec<String> = match &c["group-by"] {
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    };
    let mut rule = base;
    let title = doc["title"].as_str().unwrap_or(name);
    rule["id"] = json!(rule_id(title));
    if let Some(d) = doc["description"].as_str() {
        rule["description"] = json!(d.trim());
    }
    if let Ok(level) = severity(doc["level"].as_str()) {
        if doc["level"].is_string() {
            rule["severity"] = json!(level);
        }
    }
    let mut threshold = json!({"count": count, "within": within});
    if !key.is_empty() {
        threshold["key"] = json!(key);
    }
    rule["threshold"] = threshold;
    if let Some(id) = doc["id"].as_str() {
        rule["sigma"]["id"] = json!(id);
        rule["sigma"]["title"] = json!(title);
    }
    Verdict::Converted(rule)
}

// ---- the detection as a boolean expression ----

/// What one literal tests of a field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Test {
    /// The field's text equals / starts with / ends with / contains the value, or matches a
    /// `*` glob (`ci`: ignoring case).
    Equals(String, bool),
    Prefix(String, bool),
    Suffix(String, bool),
    Contains(String, bool),
    Glob(String, bool),
    /// The field is present and null.
    NullValue,
    /// The field is absent.
    Missing,
    /// The field is present (any value).
    Present,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Lit {
    path: String,
    test: Test,
    negated: bool,
}

#[derive(Debug, Clone)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Lit(Lit),
}

fn lit(path: &str, test: Test) -> Expr {
    Expr::Lit(Lit {
        path: path.to_owned(),
        test,
        negated: false,
    })
}

fn detection_pattern(detection: &Map<String, Value>) -> Result<Value, String> {
    let condition = match detection.get("condition") {
        Some(Value::String(c)) => c.clone(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_owned()
        }
        Some(Value::Array(_)) => {
            return Err("several conditions in one rule: import each as its own rule".into())
        }
        _ => return Err("detection has no condition".into()),
    };
    let mut selections: BTreeMap<String, Expr> = BTreeMap::new();
    if detection.contains_key("timeframe") {
        return Err("timeframe (an aggregation window) has no trail-alerts form".into());
    }
    for (name, value) in detection.iter().filter(|(name, _)| *name != "condition") {
        selections.insert(name.clone(), selection(name, value)?);
    }
    let expr = parse_condition(&condition, &selections)?;
    let branches = dnf(&nnf(expr, false)?)?;
    let mut flat: Vec<BTreeMap<String, Vec<Value>>> = Vec::new();
    for branch in branches {
        if let Some(fields) = branch_fields(branch)? {
            if !flat.contains(&fields) {
                flat.push(fields);
            }
        }
    }
    let mut objects: Vec<Value> = merge(flat)
        .into_iter()
        .map(|fields| {
            let mut object = Map::new();
            for (path, matchers) in fields {
                insert_path(&mut object, &path, Value::Array(matchers));
            }
            Value::Object(object)
        })
        .collect();
    match objects.len() {
        0 => Err("the condition can never hold (every branch contradicts itself)".into()),
        1 => Ok(objects.remove(0)),
        _ => Ok(json!({"$or": objects})),
    }
}

/// One selection: a mapping (AND of its fields) or a list of mappings (OR).
fn selection(name: &str, value: &Value) -> Result<Expr, String> {
    match value {
        Value::Object(map) => {
            if map.is_empty() {
                return Err(format!("selection {name} is empty"));
            }
            let mut all = Vec::new();
            for (key, v) in map {
                all.push(field(name, key, v)?);
            }
            Ok(Expr::And(all))
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            Ok(Expr::Or(
                items
                    .iter()
                    .map(|i| selection(name, i))
                    .collect::<Result<_, _>>()?,
            ))
        }
        Value::Array(_) | Value::String(_) => Err(format!(
            "selection {name} is a keyword search over the whole record: EventBridge matches \
             fields, not text anywhere in the record"
        )),
        other => Err(format!(
            "selection {name} is {}: expected a mapping or a list of mappings",
            yaml_kind(other)
        )),
    }
}

/// `field|modifiers: value(s)`.
fn field(selection: &str, key: &str, value: &Value) -> Result<Expr, String> {
    let mut parts = key.split('|');
    let path = parts.next().unwrap_or_default().trim().to_owned();
    if path.is_empty() {
        return Err(format!(
            "selection {selection}: a value without a field name (a keyword search over the \
             whole record)"
        ));
    }
    let mut cased = false;
    let mut all = false;
    let mut shape: Option<&str> = None;
    let mut exists = false;
    for m in parts {
        match m {
            "contains" | "startswith" | "endswith" if shape.is_none() => shape = Some(m),
            "cased" => cased = true,
            "all" => all = true,
            "exists" => exists = true,
            "re" => {
                return Err(format!(
                    "{key}: |re (a regular expression) has no EventBridge form"
                ))
            }
            "fieldref" => {
                return Err(format!(
                    "{key}: |fieldref compares two fields of the record, which EventBridge \
                     patterns cannot"
                ))
            }
            "expand" => {
                return Err(format!(
                    "{key}: |expand takes its values from placeholders this import does not have"
                ))
            }
            "cidr" => {
                return Err(format!(
                    "{key}: |cidr is not converted (EventBridge's cidr matches IP addresses \
                     only, Sigma's any text field)"
                ))
            }
            other => {
                return Err(format!(
                    "{key}: the modifier |{other} has no exact EventBridge form"
                ))
            }
        }
    }
    let values: Vec<&Value> = match value {
        Value::Array(items) if items.is_empty() => {
            return Err(format!("{key}: an empty list of values"))
        }
        Value::Array(items) => items.iter().collect(),
        v => vec![v],
    };
    if exists {
        return match (values.as_slice(), shape) {
            ([Value::Bool(b)], None) => {
                Ok(lit(&path, if *b { Test::Present } else { Test::Missing }))
            }
            _ => Err(format!("{key}: |exists takes true or false")),
        };
    }
    if path.contains('*') {
        return Err(format!("{key}: a wildcard in a field name"));
    }
    let mut tests = Vec::new();
    for v in values {
        let text = match v {
            Value::Null if shape.is_none() => {
                // null: missing or null.
                tests.push(Expr::Or(vec![
                    lit(&path, Test::NullValue),
                    lit(&path, Test::Missing),
                ]));
                continue;
            }
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(format!(
                    "{key}: a value that is {} has no Sigma meaning here",
                    yaml_kind(other)
                ))
            }
        };
        tests.push(value_tests(&path, &text, shape, !cased, key)?);
    }
    Ok(if all {
        Expr::And(tests)
    } else {
        Expr::Or(tests)
    })
}

/// A glob piece: literal text, or Sigma's `*`.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Star,
}

/// A Sigma value's pieces (`\*`, `\?` and `\\` literal; `?` refused).
fn pieces(value: &str, key: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('*' | '?' | '\\')) => {
                text.push(chars.next().unwrap_or('\\'));
            }
            '*' => {
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                if out.last() != Some(&Piece::Star) {
                    out.push(Piece::Star);
                }
            }
            '?' => {
                return Err(format!(
                    "{key}: {value:?} has the wildcard ? (one character), which EventBridge \
                     patterns do not have"
                ))
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

/// Whether case matters for the text (it has letters whose case can change).
fn has_case(text: &str) -> bool {
    text.chars()
        .any(|c| c.to_lowercase().ne(std::iter::once(c)) || c.to_uppercase().ne(std::iter::once(c)))
}

/// The literals one value gives: by the shape its modifiers and wildcards make.
fn value_tests(
    path: &str,
    value: &str,
    shape: Option<&str>,
    ci: bool,
    key: &str,
) -> Result<Expr, String> {
    let mut p = pieces(value, key)?;
    match shape {
        Some("contains") => {
            p.insert(0, Piece::Star);
            p.push(Piece::Star);
        }
        Some("startswith") => p.push(Piece::Star),
        Some("endswith") => p.insert(0, Piece::Star),
        _ => {}
    }
    p.dedup_by(|a, b| *a == Piece::Star && *b == Piece::Star);
    let ci_needed = |t: &str| ci && has_case(t);
    let test = match p.as_slice() {
        [] => Test::Equals(String::new(), false),
        [Piece::Text(t)] => Test::Equals(t.clone(), ci_needed(t)),
        [Piece::Star] => Test::Glob("*".into(), false),
        [Piece::Text(t), Piece::Star] => Test::Prefix(t.clone(), ci_needed(t)),
        [Piece::Star, Piece::Text(t)] => Test::Suffix(t.clone(), ci_needed(t)),
        [Piece::Star, Piece::Text(t), Piece::Star] => {
            if ci_needed(t) {
                return Err(format!(
                    "{key}: {value:?} is a case-insensitive contains, which EventBridge \
                     patterns cannot say (wildcard is case-sensitive); |cased would convert"
                ));
            }
            Test::Contains(t.clone(), false)
        }
        glob => {
            let text: String = glob
                .iter()
                .map(|x| match x {
                    Piece::Text(t) => t.clone(),
                    Piece::Star => String::new(),
                })
                .collect();
            if ci_needed(&text) {
                return Err(format!(
                    "{key}: {value:?} is a case-insensitive wildcard, which EventBridge \
                     patterns cannot say (wildcard is case-sensitive); |cased would convert"
                ));
            }
            Test::Glob(
                glob.iter()
                    .map(|x| match x {
                        Piece::Text(t) => t.replace('\\', "\\\\").replace('*', "\\*"),
                        Piece::Star => "*".into(),
                    })
                    .collect(),
                false,
            )
        }
    };
    Ok(lit(path, test))
}

// ---- the condition ----

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
}

fn tokens(condition: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in condition.chars() {
        match c {
            '(' | ')' | ' ' | '\t' | '\n' => {
                if !word.is_empty() {
                    out.push(Token::Word(std::mem::take(&mut word)));
                }
                match c {
                    '(' => out.push(Token::Open),
                    ')' => out.push(Token::Close),
                    _ => {}
                }
            }
            '|' => {
                return Err(format!(
                    "condition {condition:?}: an aggregation (| count() ...) is Sigma's old \
                     correlation form; write it as an event_count correlation"
                ))
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(Token::Word(word));
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    selections: &'a BTreeMap<String, Expr>,
    text: &'a str,
}

fn parse_condition(text: &str, selections: &BTreeMap<String, Expr>) -> Result<Expr, String> {
    let mut p = Parser {
        tokens: tokens(text)?,
        at: 0,
        selections,
        text,
    };
    let e = p.or()?;
    if p.at != p.tokens.len() {
        return Err(format!(
            "condition {text:?}: unexpected {:?}",
            p.tokens[p.at]
        ));
    }
    Ok(e)
}

impl Parser<'_> {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.and()?];
        while self.peek_word("or") {
            self.at += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.not()?];
        while self.peek_word("and") {
            self.at += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.peek_word("not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, String> {
        let text = self.text;
        let bad = |what: String| format!("condition {text:?}: {what}");
        match self.tokens.get(self.at).cloned() {
            Some(Token::Open) => {
                self.at += 1;
                let e = self.or()?;
                if self.tokens.get(self.at) != Some(&Token::Close) {
                    return Err(bad("a parenthesis is not closed".into()));
                }
                self.at += 1;
                Ok(e)
            }
            Some(Token::Word(w)) if w == "1" || w.eq_ignore_ascii_case("all") || w == "any" => {
                self.at += 1;
                if !self.peek_word("of") {
                    return Err(bad(format!("{w} without of")));
                }
                self.at += 1;
                let Some(Token::Word(target)) = self.tokens.get(self.at).cloned() else {
                    return Err(bad("of what?".into()));
                };
                self.at += 1;
                let chosen: Vec<Expr> = self
                    .selections
                    .iter()
                    .filter(|(name, _)| {
                        if target.eq_ignore_ascii_case("them") {
                            !name.starts_with('_')
                        } else {
                            crate::model::id_matches(&target, name)
                        }
                    })
                    .map(|(_, e)| e.clone())
                    .collect();
                if chosen.is_empty() {
                    return Err(bad(format!("{target} names no selection")));
                }
                Ok(if w == "1" || w == "any" {
                    Expr::Or(chosen)
                } else {
                    Expr::And(chosen)
                })
            }
            Some(Token::Word(w)) => {
                self.at += 1;
                self.selections
                    .get(&w)
                    .cloned()
                    .ok_or_else(|| bad(format!("{w} names no selection")))
            }
            Some(Token::Close) => Err(bad("an unexpected )".into())),
            None => Err(bad("it ends too soon".into())),
        }
    }
}

// ---- normal forms ----

/// Negation pushed down to the literals (De Morgan). A negated value test on a field becomes
/// "anything but, or missing, or null" — Sigma's `not` holds on a missing field, EventBridge's
/// `anything-but` does not.
fn nnf(e: Expr, negate: bool) -> Result<Expr, String> {
    Ok(match (e, negate) {
        (Expr::Not(inner), n) => nnf(*inner, !n)?,
        (Expr::And(items), false) => Expr::And(
            items
                .into_iter()
                .map(|i| nnf(i, false))
                .collect::<Result<_, _>>()?,
        ),
        (Expr::Or(items), false) => Expr::Or(
            items
                .into_iter()
                .map(|i| nnf(i, false))
                .collect::<Result<_, _>>()?,
        ),
        (Expr::And(items), true) => Expr::Or(
            items
                .into_iter()
                .map(|i| nnf(i, true))
                .collect::<Result<_, _>>()?,
        ),
        (Expr::Or(items), true) => Expr::And(
            items
                .into_iter()
                .map(|i| nnf(i, true))
                .collect::<Result<_, _>>()?,
        ),
        (Expr::Lit(l), false) => Expr::Lit(l),
        (Expr::Lit(l), true) => negate_lit(l)?,
    })
}

fn negate_lit(l: Lit) -> Result<Expr, String> {
    let path = l.path.clone();
    match l.test {
        Test::Missing => Ok(lit(&path, Test::Present)),
        Test::Present => Ok(lit(&path, Test::Missing)),
        Test::NullValue => Err(format!(
            "not {path}: null: \"present and not null\" has no exact EventBridge form"
        )),
        test => {
            if !single_valued(&path) {
                return Err(format!(
                    "not on {path}: CloudTrail may write it as a list, where EventBridge's \
                     anything-but holds when any element differs and Sigma's not when none \
                     matches"
                ));
            }
            if let Test::Prefix(_, true) | Test::Suffix(_, true) | Test::Glob(_, true) = test {
                return Err(format!(
                    "not on {path}: a case-insensitive prefix or suffix has no anything-but form"
                ));
            }
            Ok(Expr::Or(vec![
                Expr::Lit(Lit {
                    path: path.clone(),
                    test,
                    negated: true,
                }),
                lit(&path, Test::Missing),
                lit(&path, Test::NullValue),
            ]))
        }
    }
}

/// The most branches a converted pattern may have.
const MAX_BRANCHES: usize = 64;

/// A negation-normal expression as a disjunction of conjunctions of literals.
fn dnf(e: &Expr) -> Result<Vec<Vec<Lit>>, String> {
    Ok(match e {
        Expr::Lit(l) => vec![vec![l.clone()]],
        Expr::Or(items) => {
            let mut out = Vec::new();
            for i in items {
                out.extend(dnf(i)?);
                if out.len() > MAX_BRANCHES {
                    return Err(format!(
                        "the condition spreads into more than {MAX_BRANCHES} alternatives"
                    ));
                }
            }
            out
        }
        Expr::And(items) => {
            let mut out: Vec<Vec<Lit>> = vec![Vec::new()];
            for i in items {
                let next = dnf(i)?;
                let mut product = Vec::new();
                for a in &out {
                    for b in &next {
                        let mut c = a.clone();
                        c.extend(b.iter().cloned());
                        product.push(c);
                    }
                }
                if product.len() > MAX_BRANCHES {
                    return Err(format!(
                        "the condition spreads into more than {MAX_BRANCHES} alternatives"
                    ));
                }
                out = product;
            }
            out
        }
        Expr::Not(_) => unreachable!("negation pushed down"),
    })
}

/// One conjunction as each field's matchers; `None` when it contradicts itself.
fn branch_fields(mut lits: Vec<Lit>) -> Result<Option<BTreeMap<String, Vec<Value>>>, String> {
    lits.sort();
    lits.dedup();
    let mut by_path: BTreeMap<String, Vec<Lit>> = BTreeMap::new();
    for l in lits {
        by_path.entry(l.path.clone()).or_default().push(l);
    }
    let mut fields = BTreeMap::new();
    for (path, lits) in by_path {
        let Some(matchers) = field_matchers(&path, lits)? else {
            return Ok(None);
        };
        fields.insert(path, matchers);
    }
    Ok(Some(fields))
}

/// Branches alike but for one field's matchers are one branch with both lists (a field's list
/// is an OR): `eventName: [A, B]` stays one list, not two `$or` branches. Exact.
fn merge(mut branches: Vec<BTreeMap<String, Vec<Value>>>) -> Vec<BTreeMap<String, Vec<Value>>> {
    loop {
        let mut merged = false;
        'pairs: for i in 0..branches.len() {
            for j in i + 1..branches.len() {
                let (a, b) = (&branches[i], &branches[j]);
                if a.len() != b.len() || !a.keys().eq(b.keys()) {
                    continue;
                }
                let differing: Vec<&String> = a.keys().filter(|k| a[*k] != b[*k]).collect();
                if differing.len() != 1 {
                    continue;
                }
                let key = differing[0].clone();
                let extra = branches[j][&key].clone();
                let list = branches[i].get_mut(&key).expect("the same keys");
                for m in extra {
                    if !list.contains(&m) {
                        list.push(m);
                    }
                }
                branches.remove(j);
                merged = true;
                break 'pairs;
            }
        }
        if !merged {
            return branches;
        }
    }
}

/// The matchers of one field's literals in one branch; `None` when they contradict.
fn field_matchers(path: &str, lits: Vec<Lit>) -> Result<Option<Vec<Value>>, String> {
    let has = |t: &Test| lits.iter().any(|l| !l.negated && &l.test == t);
    let positives: Vec<&Test> = lits
        .iter()
        .filter(|l| !l.negated && !matches!(l.test, Test::Present))
        .map(|l| &l.test)
        .collect();
    let negatives: Vec<&Test> = lits.iter().filter(|l| l.negated).map(|l| &l.test).collect();
    // Absent, and anything else said of it (but "absent" again): never.
    if has(&Test::Missing) {
        return Ok(
            (positives.len() == 1 && negatives.is_empty()).then(|| vec![json!({"exists": false})])
        );
    }
    if has(&Test::NullValue) {
        return Ok((positives.len() == 1 && negatives.is_empty()).then(|| vec![Value::Null]));
    }
    match (positives.as_slice(), negatives.is_empty()) {
        ([], true) => Ok(Some(vec![json!({"exists": true})])),
        ([one], true) => Ok(Some(positive(one))),
        ([Test::Equals(v, ci)], false) => {
            // An exact value with exclusions: the exclusions are implied, or contradict.
            let verdicts: Vec<Option<bool>> =
                negatives.iter().map(|n| excludes(n, v, *ci)).collect();
            if verdicts.contains(&Some(true)) {
                Ok(None)
            } else if verdicts.iter().all(|x| *x == Some(false)) {
                Ok(Some(positive(&Test::Equals(v.clone(), *ci))))
            } else {
                Err(format!(
                    "{path}: a value and an exclusion in one branch that one EventBridge list \
                     cannot say"
                ))
            }
        }
        ([], false) => Ok(Some(vec![anything_but(path, &negatives)?])),
        _ => Err(format!(
            "{path}: {} conditions on one field in one branch (|all, or AND of selections), \
             which one EventBridge list cannot say",
            positives.len() + negatives.len()
        )),
    }
}

/// Whether an exclusion excludes this exact value (`None`: cannot tell here).
fn excludes(n: &Test, v: &str, ci: bool) -> Option<bool> {
    let fold = |s: &str| caseless::default_case_fold_str(s);
    match n {
        Test::Equals(x, false) if !ci => Some(x == v),
        Test::Equals(x, true) => Some(fold(x) == fold(v)),
        Test::Equals(x, false) => (!has_case(x) && !has_case(v)).then(|| x == v),
        Test::Prefix(x, false) if !ci => Some(v.starts_with(x.as_str())),
        Test::Suffix(x, false) if !ci => Some(v.ends_with(x.as_str())),
        Test::Contains(x, false) if !ci => Some(v.contains(x.as_str())),
        _ => None,
    }
}

/// The EventBridge matchers of a positive test. A value is compared with the field's text:
/// `"false"` also matches the JSON `false`, `"42"` the number 42.
fn positive(t: &Test) -> Vec<Value> {
    let ic = |op: &str, v: &str| json!({op: {"equals-ignore-case": v}});
    match t {
        Test::Equals(v, ci) => {
            let mut out = vec![if *ci {
                json!({"equals-ignore-case": v})
            } else {
                json!(v)
            }];
            if v.eq_ignore_ascii_case("true") && (*ci || v == "true") {
                out.push(json!(true));
            } else if v.eq_ignore_ascii_case("false") && (*ci || v == "false") {
                out.push(json!(false));
            } else if let Ok(n) = v.parse::<serde_json::Number>() {
                if n.to_string() == *v {
                    out.push(Value::Number(n));
                }
            }
            out
        }
        Test::Prefix(v, true) => vec![ic("prefix", v)],
        Test::Prefix(v, false) => vec![json!({"prefix": v})],
        Test::Suffix(v, true) => vec![ic("suffix", v)],
        Test::Suffix(v, false) => vec![json!({"suffix": v})],
        Test::Contains(v, _) => vec![json!({"wildcard": format!("*{}*", escape_glob(v))})],
        Test::Glob(g, _) => vec![json!({"wildcard": g})],
        Test::NullValue => vec![Value::Null],
        Test::Missing => vec![json!({"exists": false})],
        Test::Present => vec![json!({"exists": true})],
    }
}

fn escape_glob(v: &str) -> String {
    v.replace('\\', "\\\\").replace('*', "\\*")
}

/// One `anything-but` for the exclusions of a field (all of one kind).
fn anything_but(path: &str, negatives: &[&Test]) -> Result<Value, String> {
    let all = |f: fn(&Test) -> Option<&String>| -> Option<Vec<String>> {
        negatives.iter().map(|t| f(t).cloned()).collect()
    };
    if let Some(v) = all(|t| match t {
        Test::Equals(v, false) => Some(v),
        _ => None,
    }) {
        return Ok(json!({"anything-but": v}));
    }
    if let Some(v) = all(|t| match t {
        Test::Equals(v, _) => Some(v),
        _ => None,
    }) {
        return Ok(json!({"anything-but": {"equals-ignore-case": v}}));
    }
    if let Some(v) = all(|t| match t {
        Test::Prefix(v, false) => Some(v),
        _ => None,
    }) {
        return Ok(json!({"anything-but": {"prefix": v}}));
    }
    if let Some(v) = all(|t| match t {
        Test::Suffix(v, false) => Some(v),
        _ => None,
    }) {
        return Ok(json!({"anything-but": {"suffix": v}}));
    }
    if let Some(v) = negatives
        .iter()
        .map(|t| match t {
            Test::Contains(v, false) => Some(format!("*{}*", escape_glob(v))),
            Test::Glob(g, false) => Some(g.clone()),
            _ => None,
        })
        .collect::<Option<Vec<String>>>()
    {
        return Ok(json!({"anything-but": {"wildcard": v}}));
    }
    Err(format!(
        "{path}: exclusions of different kinds (exact and prefix, say) in one branch, which one \
         anything-but cannot say"
    ))
}

/// Puts `value` at the dotted `path` of a pattern object.
fn insert_path(object: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            object.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let inner = object
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = inner {
                insert_path(m, rest, value);
            }
        }
    }
}

/// A record each alternative of the pattern matches, for the rule's derived tests (at most
/// 16): each field given a value its first matcher takes. An alternative for which no such
/// record is made here is left out.
pub fn derived_records(pattern: &Value) -> Vec<Value> {
    match pattern.get("$or") {
        Some(Value::Array(branches)) => branches
            .iter()
            .take(16)
            .filter_map(|b| {
                let mut rest = pattern.clone();
                if let Some(m) = rest.as_object_mut() {
                    m.remove("$or");
                    if let Value::Object(branch) = b {
                        for (k, v) in branch {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
                derived_record(&rest)
            })
            .collect(),
        _ => derived_record(pattern).into_iter().collect(),
    }
}

/// A record the pattern (without `$or`) matches; `None` when one is not made here.
fn derived_record(branch: &Value) -> Option<Value> {
    fn fill(p: &Map<String, Value>) -> Option<Map<String, Value>> {
        let mut out = Map::new();
        for (k, v) in p {
            match v {
                Value::Object(inner) => {
                    out.insert(k.clone(), Value::Object(fill(inner)?));
                }
                Value::Array(matchers) => {
                    let value = match matchers.first()? {
                        Value::Object(m) => match m.iter().next()? {
                            (op, Value::String(s)) if op == "equals-ignore-case" => json!(s),
                            (op, Value::String(s)) if op == "prefix" || op == "suffix" => {
                                json!(s)
                            }
                            (op, Value::Object(i)) if op == "prefix" || op == "suffix" => {
                                i.get("equals-ignore-case")?.clone()
                            }
                            (op, Value::String(g)) if op == "wildcard" => {
                                json!(g
                                    .replace("\\*", "\u{1}")
                                    .replace('*', "")
                                    .replace("\\\\", "\\")
                                    .replace('\u{1}', "*"))
                            }
                            (op, Value::Bool(true)) if op == "exists" => json!("trail-alerts"),
                            (op, Value::Bool(false)) if op == "exists" => continue,
                            (op, _) if op == "anything-but" => json!("trail-alerts-derived-test"),
                            _ => return None,
                        },
                        other => other.clone(),
                    };
                    out.insert(k.clone(), value);
                }
                _ => return None,
            }
        }
        Some(out)
    }
    let mut record = fill(branch.as_object()?)?;
    record
        .entry("eventVersion")
        .or_insert_with(|| json!("1.08"));
    Some(Value::Object(record))
}

/// The rule file of the converted rules: YAML whose values are written in JSON's flow style
/// (JSON is YAML), one rule after another, with where each came from.
pub fn rule_file(imported: &[Imported], command: &str) -> String {
    let mut out = String::new();
    let none = !imported
        .iter()
        .any(|i| matches!(i.verdict, Verdict::Converted(_)));
    out.push_str(&format!(
        "# Converted from Sigma by `{command}`.\n# Each rule keeps its Sigma id, title, author, \
         references, tags and licence (SigmaHQ's rules: the\n# Detection Rule License 1.1, which \
         asks for attribution where matches are shown: alerts carry it).\nrules:{}\n",
        if none { " []" } else { "" }
    ));
    for i in imported {
        let Verdict::Converted(rule) = &i.verdict else {
            continue;
        };
        out.push_str(&format!("  # {}\n", i.origin.replace('\n', " ")));
        let mut first = true;
        if let Value::Object(m) = rule {
            for (k, v) in m {
                out.push_str(if first { "  - " } else { "    " });
                first = false;
                out.push_str(&format!("{k}: {v}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> Verdict {
        let got = import(&[SigmaFile {
            origin: "t.yml".into(),
            text: yaml.into(),
        }]);
        got.into_iter().next().expect("a rule").verdict
    }

    fn rule(detection: &str) -> Verdict {
        one(&format!(
            "title: T\nid: 5f8b5c3a-0000-4000-8000-000000000001\nlogsource: {{product: aws, service: cloudtrail}}\nlevel: high\ndetection:\n{detection}"
        ))
    }

    fn pattern(detection: &str) -> Value {
        match rule(detection) {
            Verdict::Converted(r) => r["pattern"].clone(),
            other => panic!("{other:?}"),
        }
    }

    fn refused(detection: &str) -> String {
        match rule(detection) {
            Verdict::Refused(why) => why,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn values_compare_ignoring_case_with_the_fields_text() {
        // A list is one field's alternatives: one EventBridge list, not a $or.
        assert_eq!(
            pattern("  selection:\n    eventSource: s3.amazonaws.com\n    eventName: [DeleteBucket, '123']\n  condition: selection\n"),
            json!({"eventSource": [{"equals-ignore-case": "s3.amazonaws.com"}],
                   "eventName": [{"equals-ignore-case": "DeleteBucket"}, "123", 123]})
        );
        let p = pattern("  selection:\n    eventName|cased: DeleteBucket\n    requestParameters.enable: 'false'\n  condition: selection\n");
        assert_eq!(p["eventName"], json!(["DeleteBucket"]));
        assert_eq!(
            p["requestParameters"]["enable"],
            json!([{"equals-ignore-case": "false"}, false])
        );
    }

    #[test]
    fn null_is_missing_or_null_and_not_is_de_morgan_with_missing_fields() {
        let p = pattern("  sel:\n    eventName: DeleteBucket\n  s_null:\n    errorCode: null\n  condition: sel and 1 of s_*\n");
        assert_eq!(
            p,
            json!({"errorCode": [null, {"exists": false}], "eventName": [{"equals-ignore-case": "DeleteBucket"}]})
        );
        let p = pattern("  sel:\n    userIdentity.type: Root\n  filter:\n    eventType: AwsServiceEvent\n  condition: sel and not filter\n");
        assert_eq!(
            p,
            json!({"eventType": [{"anything-but": {"equals-ignore-case": ["AwsServiceEvent"]}}, {"exists": false}, null],
                   "userIdentity": {"type": [{"equals-ignore-case": "Root"}]}})
        );
        // Two exclusions of one field in one branch are one anything-but.
        let p = pattern("  sel:\n    eventSource: ec2.amazonaws.com\n  f1:\n    eventName|cased: A\n  f2:\n    eventName|cased: B\n  condition: sel and not 1 of f*\n");
        assert_eq!(
            p["eventName"],
            json!([{"anything-but": ["A", "B"]}, {"exists": false}, null]),
            "{p}"
        );
    }

    #[test]
    fn wildcards_become_prefix_suffix_or_wildcard_exactly() {
        let p = pattern("  sel:\n    eventName|startswith: Delete\n    userAgent|contains: '123'\n    errorCode|endswith: Denied\n  condition: sel\n");
        assert_eq!(
            p["eventName"],
            json!([{"prefix": {"equals-ignore-case": "Delete"}}])
        );
        assert_eq!(p["userAgent"], json!([{"wildcard": "*123*"}]));
        assert_eq!(
            p["errorCode"],
            json!([{"suffix": {"equals-ignore-case": "Denied"}}])
        );
        let p = pattern("  sel:\n    userAgent|contains|cased: 'Truffle*Hog'\n  condition: sel\n");
        assert_eq!(p["userAgent"], json!([{"wildcard": "*Truffle*Hog*"}]));
        let p = pattern("  sel:\n    errorCode|contains: '*'\n  condition: sel\n");
        assert_eq!(p["errorCode"], json!([{"wildcard": "*"}]));
    }

    #[test]
    fn what_eventbridge_cannot_say_is_refused_naming_the_construct() {
        for (detection, says) in [
            ("  sel:\n    userAgent|contains: TruffleHog\n  condition: sel\n", "case-insensitive contains"),
            ("  sel:\n    userIdentity.arn|re: '.+:x'\n  condition: sel\n", "|re"),
            ("  sel:\n    userIdentity.arn|fieldref: userIdentity.principalId\n  condition: sel\n", "|fieldref"),
            ("  sel:\n    - keyword\n  condition: sel\n", "keyword search"),
            ("  sel:\n    eventName: 'Get?'\n  condition: sel\n", "wildcard ?"),
            ("  sel:\n    requestParameters|contains|all: ['1', '2']\n  condition: sel\n", "one field"),
            ("  sel:\n    eventName: X\n  condition: sel | count() > 5\n", "aggregation"),
            ("  sel:\n    eventName: X\n  f:\n    requestParameters.name: y\n  condition: sel and not f\n", "may write it as a list"),
            ("  sel:\n    errorCode: null\n  condition: not sel\n", "present and not null"),
        ] {
            let why = refused(detection);
            assert!(why.contains(says), "{detection}: {why}");
        }
        assert_eq!(
            one("title: x\nlogsource: {product: windows}\ndetection: {sel: {a: b}, condition: sel}\n"),
            Verdict::Skipped("its logsource is not AWS CloudTrail".into())
        );
    }

    #[test]
    fn metadata_is_kept_and_ids_come_from_titles() {
        let Verdict::Converted(r) = one("title: AWS Root Credentials\nid: 8ad1600d-e9dc-4251-b0ee-a65268f29add\nstatus: test\nauthor: vitaliy0x1\nreferences: [https://example.com/x]\ntags: [attack.privilege-escalation, attack.t1078.004]\nlogsource: {product: aws, service: cloudtrail}\nlevel: medium\nfalsepositives: [Tasks that need root]\ndetection: {sel: {userIdentity.type: Root}, condition: sel}\n") else {
            panic!()
        };
        assert_eq!(r["id"], "sigma-aws-root-credentials");
        assert_eq!(r["severity"], "medium");
        assert_eq!(r["sigma"]["id"], "8ad1600d-e9dc-4251-b0ee-a65268f29add");
        assert_eq!(r["license"], "DRL-1.1");
        assert_eq!(
            r["tags"],
            json!(["attack.privilege-escalation", "attack.t1078.004"])
        );
        let text = rule_file(
            &[Imported {
                origin: "a.yml".into(),
                title: "AWS Root Credentials".into(),
                sigma_id: None,
                verdict: Verdict::Converted(r),
            }],
            "trail-alerts rules import sigma a.yml",
        );
        let rules = crate::rules::parse_document("out.yaml", &text).expect("the rule file loads");
        assert_eq!(rules[0].id, "sigma-aws-root-credentials");
        let meta = rules[0].meta.as_ref().expect("meta");
        assert_eq!(meta.author.as_deref(), Some("vitaliy0x1"));
    }

    #[test]
    fn event_count_correlations_become_thresholds_others_are_refused() {
        let text = "title: Failed logins\nid: aaaa\nname: failed_logins\nlogsource: {product: aws, service: cloudtrail}\ndetection: {sel: {eventName: ConsoleLogin, errorMessage: Failed authentication}, condition: sel}\n---\ntitle: Many failed logins\nid: bbbb\ncorrelation: {type: event_count, rules: [failed_logins], group-by: [sourceIPAddress], timespan: 10m, condition: {gte: 5}}\nlevel: high\n---\ntitle: Temporal\ncorrelation: {type: temporal, rules: [aaaa], timespan: 1h}\n";
        let got = import(&[SigmaFile {
            origin: "c.yml".into(),
            text: text.into(),
        }]);
        let Verdict::Converted(r) = &got[1].verdict else {
            panic!("{:?}", got[1])
        };
        assert_eq!(
            r["threshold"],
            json!({"count": 5, "within": "10m", "key": ["sourceIPAddress"]})
        );
        assert_eq!(r["severity"], "high");
        assert!(matches!(&got[2].verdict, Verdict::Refused(w) if w.contains("temporal")));
    }
}
