//! Rule documents: YAML (JSON is YAML too) with a top-level `rules:` list, validated strictly,
//! from the built-in pack, a file, or a directory of files; and the rule set that matches
//! records against all of them at once.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::engine::{PatternIndex, Scratch};
use crate::pattern::{JsonPath, Pattern};

/// The built-in pack, compiled into the binary from `rules/`.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "builtin:rules/backup.yaml",
        include_str!("../rules/backup.yaml"),
    ),
    (
        "builtin:rules/outposts.yaml",
        include_str!("../rules/outposts.yaml"),
    ),
];

const RULE_KEYS: [&str; 7] = [
    "id",
    "description",
    "severity",
    "pattern",
    "enabled",
    "topic",
    "tests",
];
const TEST_KEYS: [&str; 3] = ["name", "expect", "record"];

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub pattern: Pattern,
    pub enabled: bool,
    /// SNS topic for this rule's alerts; `None` means the function's default topic.
    pub topic: Option<String>,
    pub tests: Vec<RuleTest>,
    /// Where the rule was read from (a path, `builtin:…`, or `s3://…`).
    pub origin: String,
}

/// An embedded test: a record and whether the rule must fire on it.
#[derive(Debug, Clone)]
pub struct RuleTest {
    pub name: String,
    pub expect: bool,
    pub record: Value,
}

/// A rule set that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{origin}: {reason}")]
    Read { origin: String, reason: String },
    #[error("{origin}: {}at {path}: {reason}", rule.as_ref().map(|id| format!("rule {id:?} ")).unwrap_or_default())]
    Invalid {
        origin: String,
        /// The rule's id, when the fault is inside a rule that has a readable one.
        rule: Option<String>,
        /// JSON path of the fault in the document, e.g. `$.rules[2].pattern.detail.state`.
        path: String,
        reason: String,
    },
    #[error("{origin}: rule id {id:?} is already defined in {first}")]
    DuplicateId {
        origin: String,
        id: String,
        first: String,
    },
}

/// Where rules come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    Builtin,
    Path(PathBuf),
    S3 { bucket: String, key: String },
}

impl RuleSource {
    pub fn parse(text: &str) -> Self {
        if text == "builtin" {
            return RuleSource::Builtin;
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            return RuleSource::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            };
        }
        RuleSource::Path(PathBuf::from(text))
    }
}

impl fmt::Display for RuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleSource::Builtin => f.write_str("builtin"),
            RuleSource::Path(p) => write!(f, "{}", p.display()),
            RuleSource::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// The documents a source holds, as (origin, text) pairs: the built-in pack, a file, or every
/// `.yaml`/`.yml`/`.json` file of a directory (recursively, in name order).
pub fn read_source(source: &RuleSource) -> Result<Vec<(String, String)>, RuleError> {
    match source {
        RuleSource::Builtin => Ok(BUILTIN
            .iter()
            .map(|(origin, text)| ((*origin).to_owned(), (*text).to_owned()))
            .collect()),
        RuleSource::Path(path) => {
            let origin = path.display().to_string();
            let meta = std::fs::metadata(path).map_err(|e| RuleError::Read {
                origin: origin.clone(),
                reason: e.to_string(),
            })?;
            let files = if meta.is_dir() {
                let mut files = Vec::new();
                collect_rule_files(path, &mut files).map_err(|e| RuleError::Read {
                    origin: origin.clone(),
                    reason: e.to_string(),
                })?;
                if files.is_empty() {
                    return Err(RuleError::Read {
                        origin,
                        reason: "no .yaml, .yml or .json rule files in this directory".into(),
                    });
                }
                files
            } else {
                vec![path.clone()]
            };
            files
                .into_iter()
                .map(|file| {
                    let origin = file.display().to_string();
                    std::fs::read_to_string(&file)
                        .map(|text| (origin.clone(), text))
                        .map_err(|e| RuleError::Read {
                            origin,
                            reason: e.to_string(),
                        })
                })
                .collect()
        }
        RuleSource::S3 { .. } => Err(RuleError::Read {
            origin: source.to_string(),
            reason: "s3:// rule sources are read by the Lambda function, which has an S3 client; \
                     download the object and pass its path here"
                .into(),
        }),
    }
}

fn collect_rule_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_rule_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses and validates one rule document.
pub fn parse_document(origin: &str, text: &str) -> Result<Vec<Rule>, RuleError> {
    // YAML 1.2 booleans only: `no`, `yes`, `on` and `off` stay strings (a pattern value `[NO]`
    // is Norway, not false).
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    let doc: Value =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| RuleError::Read {
            origin: origin.to_owned(),
            reason: format!("not valid YAML: {e}"),
        })?;
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
                kind(&doc)
            ),
        ));
    };
    if let Some(unknown) = top.keys().find(|k| *k != "rules") {
        return Err(invalid(
            None,
            &root.key(unknown),
            "unknown key; a rule document has only `rules:`".into(),
        ));
    }
    let rules_path = root.key("rules");
    let Some(list) = top.get("rules") else {
        return Err(invalid(
            None,
            &rules_path,
            "missing: a rule document needs a `rules:` list".into(),
        ));
    };
    let Value::Array(list) = list else {
        return Err(invalid(
            None,
            &rules_path,
            format!("expected a list of rules, found {}", kind(list)),
        ));
    };
    list.iter()
        .enumerate()
        .map(|(i, item)| parse_rule(origin, item, &rules_path.index(i)))
        .collect()
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
            format!("a rule is a mapping, not {}", kind(item)),
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
        Some(other) => return Err(fail(None, at.key("id"), format!("expected a string, found {}", kind(other)))),
        None => return Err(fail(None, at.key("id"), "missing: every rule needs an id".into())),
    };
    let rule_fail = |path: JsonPath, reason: String| fail(Some(&id), path, reason);
    if let Some(unknown) = map.keys().find(|k| !RULE_KEYS.contains(&k.as_str())) {
        return Err(rule_fail(
            at.key(unknown),
            format!("unknown key; a rule has {}", RULE_KEYS.join(", ")),
        ));
    }
    let description = match map.get("description") {
        Some(Value::String(d)) if !d.trim().is_empty() => d.trim().to_owned(),
        Some(Value::String(_)) => {
            return Err(rule_fail(at.key("description"), "must not be empty".into()))
        }
        Some(other) => {
            return Err(rule_fail(
                at.key("description"),
                format!("expected a string, found {}", kind(other)),
            ))
        }
        None => {
            return Err(rule_fail(
                at.key("description"),
                "missing: every rule needs a description".into(),
            ))
        }
    };
    let severity = match map.get("severity") {
        Some(Value::String(s)) => Severity::parse(s).ok_or_else(|| {
            rule_fail(
                at.key("severity"),
                format!("{s:?} is not one of info, low, medium, high, critical"),
            )
        })?,
        Some(other) => {
            return Err(rule_fail(
                at.key("severity"),
                format!("expected a string, found {}", kind(other)),
            ))
        }
        None => {
            return Err(rule_fail(
                at.key("severity"),
                "missing: every rule needs a severity".into(),
            ))
        }
    };
    let pattern_path = at.key("pattern");
    let pattern = match map.get("pattern") {
        Some(p) => {
            Pattern::compile(p).map_err(|e| rule_fail(pattern_path.join(&e.path), e.reason))?
        }
        None => {
            return Err(rule_fail(
                pattern_path,
                "missing: every rule needs a pattern".into(),
            ))
        }
    };
    let enabled = match map.get("enabled") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(rule_fail(
                at.key("enabled"),
                format!("expected true or false, found {}", kind(other)),
            ))
        }
    };
    let topic = match map.get("topic") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if valid_topic_arn(t) => Some(t.clone()),
        Some(Value::String(t)) => {
            return Err(rule_fail(
                at.key("topic"),
                format!(
                    "{t:?} is not an SNS topic ARN (arn:<partition>:sns:<region>:<account>:<name>)"
                ),
            ))
        }
        Some(other) => {
            return Err(rule_fail(
                at.key("topic"),
                format!("expected a string, found {}", kind(other)),
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
                format!("expected a list, found {}", kind(other)),
            ))
        }
    };
    Ok(Rule {
        id,
        description,
        severity,
        pattern,
        enabled,
        topic,
        tests,
        origin: origin.to_owned(),
    })
}

fn parse_test(item: &Value, at: &JsonPath) -> Result<RuleTest, (JsonPath, String)> {
    let Value::Object(map) = item else {
        return Err((
            at.clone(),
            format!(
                "a test is a mapping with name, expect and record, not {}",
                kind(item)
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
    let expect = match map.get("expect") {
        Some(Value::Bool(b)) => *b,
        _ => {
            return Err((
                at.key("expect"),
                "expected true (the rule fires) or false".into(),
            ))
        }
    };
    let record = match map.get("record") {
        Some(r @ Value::Object(_)) => r.clone(),
        Some(other) => {
            return Err((
                at.key("record"),
                format!("a CloudTrail record is a mapping, not {}", kind(other)),
            ))
        }
        None => {
            return Err((
                at.key("record"),
                "missing: the CloudTrail record to test".into(),
            ))
        }
    };
    Ok(RuleTest {
        name,
        expect,
        record,
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

fn valid_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty()
        && parts[5].len() <= 256
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The rules in force, compiled into one index.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Enabled rules only; pattern id → rule index.
    index: PatternIndex,
    index_to_rule: Vec<usize>,
}

/// The outcome of one embedded rule test.
#[derive(Debug, Clone)]
pub struct TestOutcome<'a> {
    pub rule: &'a Rule,
    pub test: &'a RuleTest,
    pub fired: bool,
}

impl TestOutcome<'_> {
    pub fn passed(&self) -> bool {
        self.fired == self.test.expect
    }
}

impl RuleSet {
    /// Builds a rule set from rules; ids must be unique.
    pub fn new(rules: Vec<Rule>) -> Result<Self, RuleError> {
        let mut set = RuleSet::default();
        for rule in rules {
            if let Some(first) = set.rules.iter().find(|r| r.id == rule.id) {
                return Err(RuleError::DuplicateId {
                    origin: rule.origin,
                    id: rule.id,
                    first: first.origin.clone(),
                });
            }
            if rule.enabled {
                set.index.push(rule.pattern.clone());
                set.index_to_rule.push(set.rules.len());
            }
            set.rules.push(rule);
        }
        Ok(set)
    }

    /// Loads every source in turn.
    pub fn load(sources: &[RuleSource]) -> Result<Self, RuleError> {
        let mut rules = Vec::new();
        for source in sources {
            for (origin, text) in read_source(source)? {
                rules.extend(parse_document(&origin, &text)?);
            }
        }
        Self::new(rules)
    }

    /// Loads rule documents already read (for sources such as S3 that the caller fetched).
    pub fn from_documents(docs: &[(String, String)]) -> Result<Self, RuleError> {
        let mut rules = Vec::new();
        for (origin, text) in docs {
            rules.extend(parse_document(origin, text)?);
        }
        Self::new(rules)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Calls `hit` with every enabled rule that fires on the record, in rule order.
    pub fn matching<'s>(
        &'s self,
        record: &Value,
        scratch: &mut Scratch,
        mut hit: impl FnMut(&'s Rule),
    ) {
        self.index.matching(record, scratch, |id| {
            hit(&self.rules[self.index_to_rule[id]]);
        });
    }

    /// Whether any enabled rule could fire on a record with this `eventName` and `eventSource`
    /// (`None`: absent); see [`PatternIndex::could_match`].
    pub fn could_match(&self, event_name: Option<&str>, event_source: Option<&str>) -> bool {
        self.index.could_match(event_name, event_source)
    }

    /// Runs every rule's embedded tests (disabled rules included).
    pub fn run_tests(&self) -> Vec<TestOutcome<'_>> {
        self.rules
            .iter()
            .flat_map(|rule| {
                rule.tests.iter().map(move |test| TestOutcome {
                    rule,
                    test,
                    fired: rule.pattern.matches(&test.record),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn builtin() -> RuleSet {
        RuleSet::load(&[RuleSource::Builtin]).expect("the built-in pack loads")
    }

    fn load_err(text: &str) -> String {
        match parse_document("test.yaml", text).and_then(RuleSet::new) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_builtin_pack_is_exactly_the_contract() {
        let set = builtin();
        let got: Vec<(&str, Severity, bool)> = set
            .rules()
            .iter()
            .map(|r| (r.id.as_str(), r.severity, r.enabled))
            .collect();
        use Severity::*;
        assert_eq!(
            got,
            vec![
                ("backup-job-failed", High, true),
                ("backup-copy-job-failed", High, true),
                ("backup-restore-failed", High, true),
                ("backup-report-job-failed", Medium, true),
                ("backup-selection-deleted", High, true),
                ("backup-destructive-call", High, true),
                ("backup-notifications-changed", Medium, true),
                ("backup-org-plan-changed", Medium, true),
                ("backup-job-completed", Info, false),
                ("backup-restore-completed", Info, false),
                ("backup-copy-job-completed", Info, false),
                ("outposts-change", Medium, true),
                ("outposts-call-failed", Low, true),
            ]
        );
    }

    #[test]
    fn every_builtin_rule_has_passing_tests_that_fire_and_stay_quiet() {
        let set = builtin();
        let outcomes = set.run_tests();
        for o in &outcomes {
            assert!(
                o.passed(),
                "{} / {}: fired={}",
                o.rule.id,
                o.test.name,
                o.fired
            );
        }
        for rule in set.rules() {
            assert!(
                rule.tests.iter().any(|t| t.expect),
                "{} has no firing test",
                rule.id
            );
            assert!(
                rule.tests.iter().any(|t| !t.expect),
                "{} has no quiet test",
                rule.id
            );
        }
    }

    #[test]
    fn disabled_rules_raise_nothing() {
        let set = builtin();
        let completed = set
            .rules()
            .iter()
            .find(|r| r.id == "backup-job-completed")
            .and_then(|r| r.tests.iter().find(|t| t.expect))
            .map(|t| t.record.clone())
            .expect("a completed-job test record");
        let mut hits = Vec::new();
        set.matching(&completed, &mut Scratch::default(), |r| {
            hits.push(r.id.clone())
        });
        assert!(hits.is_empty(), "{hits:?}");
    }

    #[test]
    fn strict_validation_names_file_rule_and_path() {
        let ok = "rules:\n  - id: a\n    description: d\n    severity: low\n    pattern: {eventName: [X]}\n";
        assert!(parse_document("t.yaml", ok).is_ok());
        let cases = [
            ("rules:\n  - id: a\n    description: d\n    severity: low\n    pattern: {eventName: [X]}\n    colour: red\n",
             "test.yaml: rule \"a\" at $.rules[0].colour: unknown key"),
            ("rules:\n  - id: a\n    description: d\n    severity: urgent\n    pattern: {eventName: [X]}\n",
             "test.yaml: rule \"a\" at $.rules[0].severity: \"urgent\" is not one of"),
            ("rules:\n  - id: a\n    description: d\n    severity: low\n    pattern: {detail: {state: FAILED}}\n",
             "test.yaml: rule \"a\" at $.rules[0].pattern.detail.state: expected an array of values"),
            ("rules:\n  - id: Bad_Id\n    description: d\n    severity: low\n    pattern: {eventName: [X]}\n",
             "test.yaml: at $.rules[0].id: invalid id \"Bad_Id\""),
            ("rules:\n  - description: d\n    severity: low\n    pattern: {eventName: [X]}\n",
             "test.yaml: at $.rules[0].id: missing"),
            ("rules:\n  - id: a\n    severity: low\n    pattern: {eventName: [X]}\n",
             "test.yaml: rule \"a\" at $.rules[0].description: missing"),
            ("rules:\n  - id: a\n    description: d\n    severity: low\n",
             "test.yaml: rule \"a\" at $.rules[0].pattern: missing"),
            ("rules:\n  - id: a\n    description: d\n    severity: low\n    pattern: {eventName: [X]}\n    enabled: yes\n",
             "test.yaml: rule \"a\" at $.rules[0].enabled: expected true or false"),
            ("rules:\n  - id: a\n    description: d\n    severity: low\n    pattern: {eventName: [X]}\n    topic: my-topic\n",
             "test.yaml: rule \"a\" at $.rules[0].topic: \"my-topic\" is not an SNS topic ARN"),
            ("rules:\n  - id: a\n    description: d\n    severity: low\n    pattern: {eventName: [X]}\n    tests: [{name: t, expect: true, record: []}]\n",
             "test.yaml: rule \"a\" at $.rules[0].tests[0].record: a CloudTrail record is a mapping"),
            ("rules:\n  - id: a\n    description: d\n    severity: low\n    pattern: {eventName: [X]}\n  - id: a\n    description: d\n    severity: low\n    pattern: {eventName: [Y]}\n",
             "test.yaml: rule id \"a\" is already defined in test.yaml"),
            ("rule:\n  - id: a\n", "test.yaml: at $.rule: unknown key"),
            ("rules: {}\n", "test.yaml: at $.rules: expected a list of rules"),
            ("- a\n", "test.yaml: at $: a rule document is a mapping"),
            ("rules:\n  - id: a\n    id: b\n", "test.yaml: not valid YAML"),
            ("rules: [\n", "test.yaml: not valid YAML"),
        ];
        for (text, want) in cases {
            let got = load_err(text);
            assert!(got.starts_with(want), "got {got:?}\nwanted {want:?}");
        }
    }

    #[test]
    fn sources_parse() {
        assert_eq!(RuleSource::parse("builtin"), RuleSource::Builtin);
        assert_eq!(
            RuleSource::parse("s3://bucket/path/rules.yaml"),
            RuleSource::S3 {
                bucket: "bucket".into(),
                key: "path/rules.yaml".into()
            }
        );
        assert_eq!(
            RuleSource::parse("./r.yaml"),
            RuleSource::Path("./r.yaml".into())
        );
    }

    #[test]
    fn json_documents_are_yaml_too() {
        let doc = json!({"rules": [{"id": "j", "description": "d", "severity": "critical",
                         "pattern": {"eventName": ["X"]}, "topic": "arn:aws:sns:us-east-1:123456789012:alerts"}]});
        let rules = parse_document("r.json", &doc.to_string()).unwrap();
        assert_eq!(rules[0].severity, Severity::Critical);
        assert_eq!(
            rules[0].topic.as_deref(),
            Some("arn:aws:sns:us-east-1:123456789012:alerts")
        );
    }
}
