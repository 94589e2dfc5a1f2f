//! Rules: the rule set that matches records against all enabled rules at once (over the
//! [`index`](crate::index)), the rule tests, and where rule documents come from and how they
//! are validated.
//!
//! # Files
//! - [`document`]: a YAML rule document, validated strictly, into [`Rule`]s, suppressions,
//!   accounts, routes and overrides.
//! - [`plain_yaml`]: the YAML subset rule files are written in, read ten times faster than by
//!   serde-saphyr, to the same value; anything else is left to serde-saphyr.
//! - [`routes`]: routing alerts to the team that owns them (`routes:`), and the route tests.
//! - [`schema`]: the CloudTrail record's documented fields, for load-time warnings and the Sigma
//!   import.
//! - [`sigma`]: `rules import sigma`: Sigma rules converted exactly, or refused.
//! - [`source`]: `builtin` and the optional packs, files, directories, `s3://` objects.
//! - [`warnings`]: load-time warnings for rules that are valid but can never match.
//! - `yaml_options`: how rule documents are read as YAML; included by [`document`] and by
//!   `build.rs`, which converts the built-in packs to JSON with the same options.

pub mod document;
pub mod plain_yaml;
pub mod routes;
pub mod schema;
pub mod sigma;
pub mod source;
pub mod warnings;

use serde_json::Value;
use std::collections::HashMap;

use crate::index::{PatternIndex, Scratch};
pub use crate::model::{describe_fields, id_matches, Rule, RuleTest, Severity, SummaryTemplate};
use crate::pattern::{BusEvent, Event, Explanation};
use crate::policy::{self, local::LocalPolicy, local::Verdict, Suppression};

pub use document::{parse_document, parse_rule_document, RuleDocument};
pub use source::{default_sources, parse_sources, Document, RuleSource, S3Object, BUILTIN};
pub use warnings::RuleWarning;

/// Parses documents, in order, on up to one thread per core: parsing YAML is most of the time
/// rules take to load (a rule file of 990 rules, 150 KB, takes about 10 ms; the built-in packs
/// are parsed from the JSON `build.rs` made of them), and a documents' parse does not depend on
/// another's. A thread takes the largest document not yet taken.
fn parse_all(docs: &[Document]) -> Vec<Result<RuleDocument, RuleError>> {
    let parse = |doc: &Document| document::parse_rule_document_as(&doc.origin, &doc.text, doc.json);
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(docs.len());
    if threads <= 1 {
        return docs.iter().map(parse).collect();
    }
    // The largest first: a large rule file then parses beside the built-in pack's documents
    // rather than after them.
    let mut order: Vec<usize> = (0..docs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(docs[i].text.len()));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let take = || {
        let mut done = Vec::new();
        loop {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&i) = order.get(n) else {
                return done;
            };
            done.push((i, parse(&docs[i])));
        }
    };
    let mut all = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, take).ok())
            .collect();
        // This thread takes documents too, so a helper that could not start loses none.
        let mut all = take();
        for helper in helpers {
            match helper.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    // Each document was taken once, by one thread: in document order again.
    all.sort_unstable_by_key(|&(i, _)| i);
    all.into_iter().map(|(_, parsed)| parsed).collect()
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
    #[error(
        "{origin}: rule {id:?} shares incident {incident:?} with rule {other:?} but not its \
         dedup, threshold or group windows; rules of one incident must count alike"
    )]
    IncidentMismatch {
        origin: String,
        id: String,
        incident: String,
        other: String,
    },
    /// More than one fault, each on a line of its own.
    #[error("{} faults in the rules:{}", .0.len(), .0.iter().map(|e| format!("\n  {e}")).collect::<String>())]
    Several(Vec<RuleError>),
}

impl RuleError {
    /// The faults as one error: `None` for none, the fault itself for one.
    pub fn all(mut faults: Vec<RuleError>) -> Option<RuleError> {
        match faults.len() {
            0 => None,
            1 => faults.pop(),
            _ => Some(RuleError::Several(
                faults
                    .into_iter()
                    .flat_map(|e| match e {
                        RuleError::Several(inner) => inner,
                        e => vec![e],
                    })
                    .collect(),
            )),
        }
    }
}

/// The rules in force, compiled into one index.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Enabled rules only; pattern id → rule index.
    index: PatternIndex,
    index_to_rule: Vec<usize>,
    /// What is allowed but almost certainly wrong (see [`warnings`]).
    warnings: Vec<RuleWarning>,
    /// The rule files' suppressions.
    suppressions: Vec<Suppression>,
    /// Tells rule sets apart across processes ([`RuleSet::fingerprint`]).
    fingerprint: u64,
    /// Rule id → index in `rules`.
    by_id: HashMap<String, usize>,
    /// The rule files' `accounts:`: account id → name, OU path, tags.
    accounts: std::collections::BTreeMap<String, crate::alert::context::AccountInfo>,
    /// The rule files' `routes:`, in the order of the sources and documents.
    routes: Vec<routes::Route>,
    route_tests: Vec<routes::RouteTest>,
}

/// The outcome of one embedded rule test.
#[derive(Debug, Clone)]
pub struct TestOutcome<'a> {
    pub rule: &'a Rule,
    pub test: &'a RuleTest,
    pub fired: bool,
    /// Why the rule fired or did not.
    pub explanation: Explanation,
    /// For a sequence test, the alerts its records raised.
    pub alerts: Option<u64>,
}

impl TestOutcome<'_> {
    pub fn passed(&self) -> bool {
        match (&self.test.sequence, self.alerts) {
            (Some((_, expected)), Some(got)) => got == *expected,
            _ => self.fired == self.test.expect,
        }
    }

    /// Why a test failed: where the record missed the pattern, or the fields that made the
    /// rule fire when it should have stayed quiet. `None` for a test that passed.
    pub fn why_failed(&self) -> Option<String> {
        if self.passed() {
            return None;
        }
        if let (Some((records, expected)), Some(got)) = (&self.test.sequence, self.alerts) {
            return Some(format!(
                "expected {expected} alert{} from the {} records; they raised {got}{}",
                if *expected == 1 { "" } else { "s" },
                records.len(),
                self.rule
                    .grouping
                    .as_ref()
                    .map(|g| format!(" ({})", g.describe()))
                    .unwrap_or_default()
            ));
        }
        Some(match &self.explanation {
            Explanation::Missed(miss) => format!("expected the rule to fire; it did not: {miss}"),
            Explanation::Matched(fields) => format!(
                "expected the rule to stay quiet; it fired on {}",
                describe_fields(fields)
            ),
        })
    }
}

/// Whether two rules' windows count alike (the same kind, length, count and number of key
/// values; their key paths may differ, as a record's and an event's do).
fn counts_alike(a: &Rule, b: &Rule) -> bool {
    let grouping = |r: &Rule| {
        r.grouping
            .as_ref()
            .map(|g| (g.window(), g.count(), g.key().len()))
    };
    let group = |r: &Rule| r.group.as_ref().map(|g| (g.interval, g.wait, g.by.len()));
    grouping(a) == grouping(b) && group(a) == group(b)
}

impl RuleSet {
    /// Builds a rule set from rules; ids must be unique.
    pub fn new(rules: Vec<Rule>) -> Result<Self, RuleError> {
        let mut set = RuleSet::default();
        // The first rule of each incident. The rules of one incident count alike (each is
        // checked against the first as it comes, and counting alike is an equality), so the
        // first is the one a rule that does not is told apart from. Looked up, not searched
        // for: a thousand rules were a million comparisons.
        let mut incidents: HashMap<String, usize> = HashMap::new();
        for rule in rules {
            if let Some(&first) = set.by_id.get(&rule.id) {
                return Err(RuleError::DuplicateId {
                    origin: rule.origin,
                    id: rule.id,
                    first: set.rules[first].origin.clone(),
                });
            }
            if let Some(other) = incidents
                .get(&rule.incident)
                .map(|&i| &set.rules[i])
                .filter(|r| !counts_alike(r, &rule))
            {
                return Err(RuleError::IncidentMismatch {
                    origin: rule.origin,
                    id: rule.id,
                    incident: rule.incident,
                    other: other.id.clone(),
                });
            }
            set.warnings.extend(warnings::check(&rule));
            incidents
                .entry(rule.incident.clone())
                .or_insert(set.rules.len());
            set.by_id.insert(rule.id.clone(), set.rules.len());
            if rule.enabled {
                set.index.push(rule.pattern.clone());
                set.index_to_rule.push(set.rules.len());
            }
            set.rules.push(rule);
        }
        let named: Vec<String> = set
            .rules
            .iter()
            .map(|r| format!("{}\u{1f}{}\u{1f}{}", r.origin, r.id, r.enabled))
            .collect();
        set.fingerprint = crate::hash::stable_hash(named.join("\u{1e}").as_bytes());
        for rule in &set.rules {
            for (i, target) in rule.resolves.iter().enumerate() {
                let message = if target == &rule.id {
                    "a rule cannot resolve its own alerts"
                } else if !set.rules.iter().any(|r| &r.id == target) {
                    "names no loaded rule: this recovery rule resolves nothing"
                } else {
                    continue;
                };
                set.warnings.push(RuleWarning {
                    origin: rule.origin.clone(),
                    rule: rule.id.clone(),
                    path: format!("$.resolves[{i}]"),
                    message: format!("{target:?} {message}"),
                });
            }
        }
        Ok(set)
    }

    /// Loads every source in turn; `s3://` sources are read with `remote`, which returns the
    /// document's text or why it could not be read. The documents are parsed on as many threads
    /// as there are cores ([`parse_all`]); rules, suppressions and faults keep the sources'
    /// order.
    pub fn load_with(
        sources: &[RuleSource],
        mut remote: impl FnMut(&S3Object) -> Result<String, String>,
    ) -> Result<Self, RuleError> {
        let mut docs = Vec::new();
        let mut read_faults = Vec::new();
        for source in sources {
            match source::read(source, &mut remote) {
                Ok(read) => docs.extend(read),
                // Placed before the documents of the sources after it.
                Err(e) => read_faults.push((docs.len(), e)),
            }
        }
        let mut parsed = parse_all(&docs).into_iter();
        let mut rules = Vec::new();
        let mut suppressions = Vec::new();
        let mut all_routes = Vec::new();
        let mut route_tests = Vec::new();
        let mut overrides = Vec::new();
        let mut accounts: std::collections::BTreeMap<
            String,
            (String, crate::alert::context::AccountInfo),
        > = Default::default();
        let mut faults = Vec::new();
        let mut read_faults = read_faults.into_iter().peekable();
        for at in 0..=docs.len() {
            while let Some((_, e)) = read_faults.next_if(|(before, _)| *before == at) {
                faults.push(e);
            }
            match parsed.next() {
                Some(Ok(doc)) => {
                    rules.extend(doc.rules);
                    suppressions.extend(doc.suppressions);
                    all_routes.extend(doc.routes);
                    route_tests.extend(doc.route_tests);
                    overrides.extend(doc.overrides);
                    let origin = docs.get(at).map(|d| d.origin.clone()).unwrap_or_default();
                    for (id, info) in doc.accounts {
                        if let Some((first, _)) = accounts.get(&id) {
                            faults.push(RuleError::Invalid {
                                origin: origin.clone(),
                                rule: None,
                                path: format!("$.accounts[{id:?}]"),
                                reason: format!("account {id} is named in {first} already"),
                            });
                        } else {
                            accounts.insert(id, (origin.clone(), info));
                        }
                    }
                }
                Some(Err(e)) => faults.push(e),
                None => {}
            }
        }
        if faults.is_empty() {
            if let Err(e) = document::apply_overrides(&mut rules, &overrides) {
                faults.push(e);
            }
        }
        match RuleError::all(faults) {
            Some(e) => Err(e),
            None => {
                let mut set = Self::new(rules)?.with_suppressions(suppressions)?;
                set.accounts = accounts
                    .into_iter()
                    .map(|(id, (_, info))| (id, info))
                    .collect();
                set.routes = all_routes;
                set.route_tests = route_tests;
                let texts: Vec<String> = docs
                    .iter()
                    .map(|d| format!("{}\u{1f}{}", d.origin, d.text))
                    .collect();
                set.fingerprint = crate::hash::stable_hash(texts.join("\u{1e}").as_bytes());
                Ok(set)
            }
        }
    }

    /// Loads sources that need no network: `builtin`, files and directories. An `s3://` source
    /// is refused with a message saying how to use it.
    pub fn load(sources: &[RuleSource]) -> Result<Self, RuleError> {
        Self::load_with(sources, |_| {
            Err(
                "this build reads no S3 (it was built without the `s3` feature; `make release` \
                 builds one that does): download the object and pass its path here"
                    .into(),
            )
        })
    }

    /// A hash that differs when the rule set does, stable across processes: of the documents'
    /// names and texts when loaded from sources, else of the rules' origins, ids and states. A
    /// retry that finds the same fingerprint matches the same records the same way.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The rule files' `routes:`.
    pub fn routes(&self) -> &[routes::Route] {
        &self.routes
    }

    /// The rule files' `route_tests:`.
    pub fn route_tests(&self) -> &[routes::RouteTest] {
        &self.route_tests
    }

    /// Where an alert of `rule` with these facts goes: the route decision, and the topic of
    /// the default route (the rule's `topic:`; `None`: the default topic). The OU path and
    /// tags come from `ou` and `tags` where given, else from the rule files' `accounts:`.
    pub fn route(
        &self,
        account: Option<&str>,
        rule: &str,
        severity: Option<Severity>,
        region: Option<&str>,
        ou: Option<String>,
        tags: Option<&std::collections::BTreeMap<String, String>>,
    ) -> (routes::Decision, Option<String>) {
        let known = account.and_then(|a| self.accounts.get(a));
        let rule_of = self.rule(rule);
        let facts = routes::Facts {
            account,
            ou: ou.or_else(|| known.and_then(|k| k.ou())),
            tags: tags.or(known.map(|k| &k.tags)),
            rule,
            severity: severity.or(rule_of.map(|r| r.severity)),
            region,
        };
        (
            routes::decide(&self.routes, &facts),
            rule_of.and_then(|r| r.topic.clone()),
        )
    }

    /// The rule set with these routes (`routes:`).
    pub fn with_routes(mut self, routes: Vec<routes::Route>) -> Self {
        self.routes = routes;
        self
    }

    /// The rule set with these accounts named (`accounts:`).
    pub fn with_accounts(
        mut self,
        accounts: std::collections::BTreeMap<String, crate::alert::context::AccountInfo>,
    ) -> Self {
        self.accounts = accounts;
        self
    }

    /// The rule files' `accounts:`, by account id.
    pub fn accounts(
        &self,
    ) -> &std::collections::BTreeMap<String, crate::alert::context::AccountInfo> {
        &self.accounts
    }

    /// The rule of this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).map(|i| &self.rules[*i])
    }

    /// The index of the enabled rules' patterns.
    pub fn index(&self) -> &PatternIndex {
        &self.index
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Rules that load but can never match a CloudTrail record, and suppressions that expired
    /// or name no rule, each with why.
    pub fn warnings(&self) -> &[RuleWarning] {
        &self.warnings
    }

    /// The suppressions of the rule files.
    pub fn suppressions(&self) -> &[Suppression] {
        &self.suppressions
    }

    /// The suppression that silences this rule's match of this record at wall-clock `now`.
    pub fn suppression_for(&self, rule_id: &str, record: &Value, now: i64) -> Option<&Suppression> {
        self.suppressions
            .iter()
            .find(|s| s.covers(rule_id, record, now))
    }

    /// Drops the alerts a suppression silences, each logged with the suppression's id, owner and
    /// reason (so that the logs count them per suppression); returns how many it dropped.
    pub fn suppress(&self, alerts: &mut Vec<crate::alert::Alert>) -> u64 {
        if self.suppressions.is_empty() {
            return 0;
        }
        let now = policy::now();
        let before = alerts.len();
        alerts.retain(|a| match self.suppression_for(&a.rule_id, &a.record, now) {
            Some(s) => {
                tracing::info!(
                    suppression = %s.id,
                    owner = %s.owner,
                    reason = %s.reason,
                    rule = %a.rule_id,
                    event_id = a.event.event_id.as_deref().unwrap_or("-"),
                    "alert suppressed"
                );
                false
            }
            None => true,
        });
        (before - alerts.len()) as u64
    }

    /// Adds suppressions; their ids must be unique. An expired one, or one that names no rule,
    /// is warned about.
    pub fn with_suppressions(mut self, suppressions: Vec<Suppression>) -> Result<Self, RuleError> {
        let now = policy::now();
        for s in suppressions {
            if let Some(first) = self.suppressions.iter().find(|f| f.id == s.id) {
                return Err(RuleError::DuplicateId {
                    origin: s.origin,
                    id: format!("suppression {}", s.id),
                    first: first.origin.clone(),
                });
            }
            let warn = |message: String| RuleWarning {
                origin: s.origin.clone(),
                rule: format!("suppression {}", s.id),
                path: "$.suppressions".into(),
                message,
            };
            if s.expired(now) {
                self.warnings.push(warn(format!(
                    "expired on {} (owner {}): it no longer applies; remove it or extend it",
                    s.expires_text, s.owner
                )));
            }
            for r in &s.rules {
                if !self.rules.iter().any(|rule| id_matches(r, &rule.id)) {
                    self.warnings.push(warn(format!(
                        "{r:?} names no rule loaded: it silences nothing"
                    )));
                }
            }
            self.suppressions.push(s);
        }
        Ok(self)
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

    /// [`RuleSet::matching`] for a record whose candidates the index took from the values the
    /// reader peeked at ([`PatternIndex::peeked_candidates`]).
    pub fn matching_peeked<'s>(
        &'s self,
        record: &Value,
        scratch: &Scratch,
        mut hit: impl FnMut(&'s Rule),
    ) {
        self.index.matching_peeked(record, scratch, |id| {
            hit(&self.rules[self.index_to_rule[id]]);
        });
    }

    /// Calls `hit` with every enabled rule that fires on an event EventBridge delivered: a
    /// CloudTrail event's record as [`RuleSet::matching`] would, a service's own event with the
    /// envelope-form rules.
    pub fn matching_bus_event<'s>(
        &'s self,
        event: &Value,
        scratch: &mut Scratch,
        mut hit: impl FnMut(&'s Rule),
    ) {
        match BusEvent::of(event) {
            BusEvent::CloudTrail(record) => self.matching(record, scratch, hit),
            BusEvent::Native(event) => {
                for rule in self.rules.iter().filter(|r| r.enabled) {
                    if rule.pattern.matches_native(event) {
                        hit(rule);
                    }
                }
            }
        }
    }

    /// Runs every rule's embedded tests (disabled rules included).
    pub fn run_tests(&self) -> Vec<TestOutcome<'_>> {
        self.rules
            .iter()
            .flat_map(|rule| {
                rule.tests.iter().map(move |test| {
                    if let Some((records, _)) = &test.sequence {
                        // The records in order through the rule's pattern, then its dedup or
                        // threshold and the suppressions in force.
                        let mut policy = LocalPolicy::new(self, &self.suppressions, policy::now());
                        let source = crate::alert::AlertSource::File {
                            path: format!("{} test {:?}", rule.origin, test.name),
                        };
                        let alerts = records
                            .iter()
                            .enumerate()
                            .filter(|(_, r)| rule.pattern.matches(&Event::record(r)))
                            .filter(|(i, r)| {
                                let alert = crate::alert::Alert::new(rule, r, source.clone(), *i);
                                policy.judge(&alert) == Verdict::Alert
                            })
                            .count() as u64;
                        return TestOutcome {
                            rule,
                            test,
                            fired: alerts > 0,
                            explanation: Explanation::Matched(Vec::new()),
                            alerts: Some(alerts),
                        };
                    }
                    let explanation = rule.explain_test(test);
                    TestOutcome {
                        rule,
                        test,
                        fired: matches!(explanation, Explanation::Matched(_)),
                        explanation,
                        alerts: None,
                    }
                })
            })
            .collect()
    }
}

impl crate::model::RuleBook for RuleSet {
    fn all(&self) -> &[Rule] {
        &self.rules
    }
    fn rule(&self, id: &str) -> Option<&Rule> {
        RuleSet::rule(self, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_of_one_incident_must_count_alike() {
        let doc = |second: &str| {
            format!(
                "rules:\n  - id: a\n    description: d\n    severity: high\n    pattern: {{eventName: [X]}}\n    dedup: {{key: [awsRegion], window: 1h}}\n  - id: b\n    description: d\n    severity: high\n    pattern: {{eventName: [Y]}}\n    incident: a\n{second}"
            )
        };
        let alike = parse_rule_document("i.yaml", &doc("    dedup: {key: [region], window: 1h}\n"))
            .expect("rules");
        let set = RuleSet::new(alike.rules).expect("alike");
        assert_eq!(set.rules()[1].incident, "a");
        let unlike =
            parse_rule_document("i.yaml", &doc("    dedup: {key: [region], window: 2h}\n"))
                .expect("rules");
        let e = RuleSet::new(unlike.rules).expect_err("windows differ");
        assert!(
            e.to_string()
                .contains("shares incident \"a\" with rule \"a\""),
            "{e}"
        );
        // A third that counts otherwise is told apart from the incident's first rule.
        let third = parse_rule_document(
            "i.yaml",
            &doc("    dedup: {key: [region], window: 1h}\n  - id: c\n    description: d\n    severity: high\n    pattern: {eventName: [Z]}\n    incident: a\n    dedup: {key: [region], window: 3h}\n"),
        )
        .expect("rules");
        let e = RuleSet::new(third.rules).expect_err("the third differs");
        assert!(
            e.to_string()
                .contains("rule \"c\" shares incident \"a\" with rule \"a\""),
            "{e}"
        );
    }
    use serde_json::json;

    #[test]
    fn accounts_are_named_in_rule_files_or_a_document_of_their_own() {
        let dir =
            std::env::temp_dir().join(format!("trail-alerts-accounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("accounts.yaml");
        std::fs::write(
            &file,
            "accounts:\n  \"012345678901\": {name: payments-prod, ou: Root/Prod/Payments, tags: {team: payments, tier: 1}}\n  \"210987654321\": {name: sandbox}\n",
        )
        .unwrap();
        let set =
            RuleSet::load(&[RuleSource::Builtin, RuleSource::Path(file.clone())]).expect("loads");
        let a = &set.accounts()["012345678901"];
        assert_eq!(a.name.as_deref(), Some("payments-prod"));
        assert_eq!(a.ou().as_deref(), Some("Root/Prod/Payments"));
        assert_eq!(a.tags["tier"], "1");
        assert_eq!(set.accounts()["210987654321"].ou_path, Vec::<String>::new());
        for (text, path, says) in [
            (
                "accounts:\n  12345678901: {name: x}\n",
                "12345678901",
                "quote it",
            ),
            (
                "accounts:\n  \"12345678901a\": {name: x}\n",
                "12345678901a",
                "12 digits",
            ),
            (
                "accounts:\n  \"012345678901\": {nom: x}\n",
                "nom",
                "unknown key",
            ),
            (
                "accounts:\n  \"012345678901\": {ou: [a, b]}\n",
                "ou",
                "OU path as text",
            ),
            ("accounts: [x]\n", "accounts", "expected a mapping"),
        ] {
            let e = parse_rule_document("a.yaml", text)
                .expect_err(text)
                .to_string();
            assert!(e.contains(path) && e.contains(says), "{text}: {e}");
        }
        // One account named twice, in two files: refused, naming both.
        let twice = dir.join("twice.yaml");
        std::fs::write(&twice, "accounts:\n  \"012345678901\": {name: other}\n").unwrap();
        let e = RuleSet::load(&[RuleSource::Path(file), RuleSource::Path(twice)])
            .expect_err("named twice")
            .to_string();
        assert!(e.contains("account 012345678901 is named in"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    fn builtin() -> RuleSet {
        RuleSet::load(&[RuleSource::Builtin]).expect("the built-in pack loads")
    }

    /// Documents are parsed on several threads, but rules, suppressions and faults come out in
    /// the order of the sources and their documents, as when each is parsed in turn.
    #[test]
    fn documents_parsed_together_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let rule = |id: &str| {
            format!(
                "  - {{id: {id}, description: d, severity: low, pattern: {{eventName: [{id}]}}}}\n"
            )
        };
        let mut expected_ids = Vec::new();
        for (name, ids, broken) in [
            ("a.yaml", &["a1", "a2"][..], ""),
            ("b.yaml", &[][..], "rules: [unclosed\n"),
            ("c.yaml", &["c1"][..], ""),
            ("d.yaml", &[][..], "rules:\n  - {id: d1, severity: low}\n"),
            ("e.yaml", &["e1", "e2", "e3"][..], ""),
        ] {
            let text = if broken.is_empty() {
                expected_ids.extend(ids.iter().map(|s| s.to_string()));
                format!(
                    "rules:\n{}",
                    ids.iter().map(|id| rule(id)).collect::<String>()
                )
            } else {
                broken.to_owned()
            };
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let sources = [
            RuleSource::S3(S3Object {
                bucket: "b".into(),
                key: "missing.yaml".into(),
            }),
            RuleSource::Path(dir.path().to_owned()),
            RuleSource::S3(S3Object {
                bucket: "b".into(),
                key: "r.yaml".into(),
            }),
            RuleSource::Builtin,
        ];
        let remote = |o: &S3Object| match o.key.as_str() {
            "r.yaml" => Ok(format!("rules:\n{}", rule("s1"))),
            _ => Err("no such key".to_owned()),
        };
        let Err(RuleError::Several(faults)) = RuleSet::load_with(&sources, remote) else {
            panic!("three faults expected");
        };
        let origins: Vec<String> = faults
            .iter()
            .map(|f| {
                let text = f.to_string();
                ["missing.yaml", "b.yaml", "d.yaml"]
                    .into_iter()
                    .find(|o| text.contains(o))
                    .unwrap_or(&text)
                    .to_owned()
            })
            .collect();
        // d.yaml's rule lacks both a description and a pattern: two faults, said at once.
        assert_eq!(origins, ["missing.yaml", "b.yaml", "d.yaml", "d.yaml"]);
        // Without the broken ones, the rules in order: the directory's, the object's, the pack's.
        for broken in ["b.yaml", "d.yaml"] {
            std::fs::remove_file(dir.path().join(broken)).unwrap();
        }
        let set = RuleSet::load_with(&sources[1..], remote).expect("loads");
        let ids: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
        let builtin_set = builtin();
        let builtin_ids = builtin_set.rules().iter().map(|r| r.id.as_str());
        expected_ids.push("s1".into());
        let expected: Vec<&str> = expected_ids
            .iter()
            .map(String::as_str)
            .chain(builtin_ids)
            .collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn id_patterns() {
        assert!(id_matches("backup-job-failed", "backup-job-failed"));
        assert!(!id_matches("backup-job", "backup-job-failed"));
        assert!(id_matches("backup-*", "backup-job-failed"));
        assert!(id_matches("*-failed", "backup-job-failed"));
        assert!(id_matches("b*job*d", "backup-job-failed"));
        assert!(id_matches("*", "x"));
        assert!(!id_matches("*-failed", "outposts-change"));
        assert!(!id_matches("a*a", "a"));
    }

    fn load_err(text: &str) -> String {
        match parse_document("test.yaml", text).and_then(RuleSet::new) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn numbers_that_read_as_zero_are_refused_with_their_line() {
        let rule = |n: &str| {
            format!(
                "rules:\n  - id: a # 1E-400 in a comment is fine\n    description: \"1E-400 in a string too\"\n    severity: low\n    pattern: {{n: [{{numeric: [\">\", {n}]}}]}}\n"
            )
        };
        let e = load_err(&rule("1E-325"));
        assert!(e.contains("line 5: the number 1E-325 is too small"), "{e}");
        assert!(load_err(&rule("-0.1e-400")).contains("-0.1e-400"));
        for fine in ["0", "0.0", "0E-400", "1E-300", "-5"] {
            assert!(parse_document("t.yaml", &rule(fine)).is_ok(), "{fine}");
        }
    }

    #[test]
    fn a_repeated_key_is_named_in_the_authors_words() {
        let e = load_err("rules:\n  - id: a\n    id: b\n");
        assert!(
            e.contains("duplicate mapping key: id (each key may appear once in a mapping)"),
            "{e}"
        );
        assert!(!e.contains("DuplicateKeyPolicy"), "{e}");
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
                ("backup-missed", High, false),
                ("backup-job-recovered", Info, true),
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
                ("backup-restore-test-failed", High, true),
                ("backup-restore-testing-deleted", Medium, true),
                ("backup-vault-lock-compliance", High, true),
                ("backup-legal-hold-cancelled", High, true),
                ("backup-airgap-mpa-changed", Medium, true),
                ("backup-settings-changed", Medium, true),
                ("backup-recovery-point-disassociated", High, true),
                ("backup-audit-deleted", Medium, true),
                ("backup-event-job-failed", High, true),
                ("backup-event-job-completed-with-issues", Medium, true),
                ("backup-event-copy-job-failed", High, true),
                ("backup-event-restore-job-failed", High, true),
                ("backup-event-recovery-point-problem", High, true),
                ("backup-event-vault-lock-changed", High, true),
                ("backup-event-region-opt-out", Medium, true),
                ("backup-event-malware-found", Critical, true),
                ("trail-logging-stopped", Critical, true),
                ("trail-changed", High, true),
                ("trail-management-events-dropped", High, true),
                ("trail-bucket-notification-changed", Medium, true),
                ("trail-bucket-lifecycle-changed", High, true),
                ("trail-silent", High, true),
                ("trail-log-deleted", Critical, true),
                ("outposts-change", Medium, true),
                ("outposts-call-failed", Low, true),
            ]
        );
    }

    #[test]
    fn the_optional_packs_load_only_when_named_and_their_tests_pass() {
        let base = builtin();
        assert!(base
            .rules()
            .iter()
            .all(|r| !r.id.starts_with("security-") && !r.id.starts_with("self-")));
        let all = RuleSet::load(&[
            RuleSource::Builtin,
            RuleSource::parse("builtin:security"),
            RuleSource::parse("builtin:self"),
        ])
        .expect("the packs load");
        assert_eq!(all.rules().len(), base.rules().len() + 18);
        assert!(all.warnings().is_empty(), "{:?}", all.warnings());
        for outcome in all.run_tests() {
            assert!(
                outcome.passed(),
                "{}: {}: {:?}",
                outcome.rule.id,
                outcome.test.name,
                outcome.why_failed()
            );
        }
        for rule in all.rules() {
            assert!(rule.runbook.is_some(), "{} has no runbook", rule.id);
            // The packs' rules stay on the fast path: the index files each under anchors.
            let packed = rule.id.starts_with("security-") || rule.id.starts_with("self-");
            assert!(
                !packed || rule.pattern.anchors().is_some_and(|a| !a.is_empty()),
                "{} is not anchored",
                rule.id
            );
        }
        let e = RuleSet::load(&[RuleSource::parse("builtin:nope")]).expect_err("no such pack");
        assert!(
            e.to_string().contains("builtin:security, builtin:self"),
            "{e}"
        );
    }

    #[test]
    fn every_builtin_rule_says_what_to_do_and_its_tags_are_attack_techniques() {
        let set = builtin();
        for rule in set.rules() {
            let runbook = rule.runbook.as_deref().unwrap_or_default();
            assert!(!runbook.is_empty(), "{} has no runbook", rule.id);
            for tag in rule.meta.iter().flat_map(|m| m.tags.iter()) {
                assert!(
                    tag.starts_with("attack.t")
                        || ["attack.impact", "attack.defense-impairment"].contains(&tag.as_str()),
                    "{}: {tag}",
                    rule.id
                );
            }
        }
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
        // The disabled heartbeat rule raises nothing; the enabled recovery rule still matches.
        assert_eq!(hits, ["backup-job-recovered"]);
    }

    #[test]
    fn a_recovery_rule_naming_no_loaded_rule_is_warned_about() {
        let doc = "rules:\n  - id: ok\n    description: d\n    severity: info\n    pattern: {eventName: [A]}\n    resolves: [gone, ok, builtin-ish]\n  - id: builtin-ish\n    description: d\n    severity: high\n    pattern: {eventName: [B]}\n";
        let parsed = parse_document("t.yaml", doc).expect("parses");
        let set = RuleSet::new(parsed).expect("set");
        let warnings: Vec<String> = set.warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            [
                "t.yaml: rule \"ok\" at $.resolves[0]: \"gone\" names no loaded rule: this recovery rule resolves nothing",
                "t.yaml: rule \"ok\" at $.resolves[1]: \"ok\" a rule cannot resolve its own alerts",
            ]
        );
        // The built-in pack's recovery rule names a loaded rule.
        assert!(builtin()
            .warnings()
            .iter()
            .all(|w| !w.path.starts_with("$.resolves")));
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
            ("rules:\n  - id: a\n    description: d\n    severity: low\n    pattern: {eventName: [X]}\n    mode: trial\n",
             "test.yaml: rule \"a\" at $.rules[0].mode: expected live (the default) or shadow (evaluated, never published), found \"trial\""),
            ("rules:\n  - id: a\n    description: d\n    severity: low\n    pattern: {eventName: [X]}\n    mode: shadow\n    resolves: [b]\n",
             "test.yaml: rule \"a\" at $.rules[0].mode: a shadow rule trials the alerts it would raise"),
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
            RuleSource::S3(S3Object {
                bucket: "bucket".into(),
                key: "path/rules.yaml".into()
            })
        );
        assert_eq!(parse_sources::<&str>(&[]), default_sources());
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
