//! Routing alerts to the team that owns them: the rule files' `routes:`, an ordered list the
//! way Alertmanager's routing tree reads it. Each route matches on the alert's account (id, OU
//! path, tags), rule, severity and Region; the first route that matches decides, unless it says
//! `continue: true`, in which case the routes after it are tried too and every one that matches
//! adds its destinations. An alert no route matches goes where it went before routes existed
//! (the default route): its rule's `topic:`, else `ALERT_TOPIC_ARN`.
//!
//! ```yaml
//! routes:
//!   - match: {ous: ["Root/Prod/Payments*"], severities: [high, critical]}
//!     to: {topics: ["arn:aws:sns:eu-west-1:111122223333:payments-oncall"],
//!          chat_topics: ["arn:aws:sns:eu-west-1:111122223333:payments-chat"]}
//!     continue: true
//!   - match: {account_tags: {team: [platform]}, rules: ["backup-*"]}
//!     to: {topics: ["arn:aws:sns:eu-west-1:111122223333:platform"]}
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

use crate::describe::yaml_kind;
use crate::model::{id_matches, Severity};

/// What a route matches on; an absent condition matches everything, a list matches any of its
/// items (globs with `*`), and all the conditions given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    pub accounts: Vec<String>,
    /// OU paths as `Root/Prod/Payments`, globs allowed (`Root/Prod/*`).
    pub ous: Vec<String>,
    /// Tag key → the values (globs) any of which it must have.
    pub account_tags: BTreeMap<String, Vec<String>>,
    pub rules: Vec<String>,
    pub severities: Vec<Severity>,
    pub regions: Vec<String>,
}

/// One route: what it matches, where it sends, whether routes after it are tried too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub matcher: RouteMatch,
    /// Topics in the function's format for them (`ALERT_FORMAT`, `TOPIC_FORMATS`).
    pub topics: Vec<String>,
    /// Topics that get the chat format (Amazon Q Developer in chat applications).
    pub chat_topics: Vec<String>,
    /// PagerDuty services paged (alerts at or above `PAGERDUTY_MIN_SEVERITY`), each named by
    /// where its routing key is: a Secrets Manager secret (ARN or name), `ssm:/name`, or
    /// `default` (`PAGERDUTY_ROUTING_KEY_SECRET`'s service).
    pub pagerduty: Vec<String>,
    pub continue_: bool,
    /// Where it was written: the document and its index there (`a.yaml $.routes[2]`).
    pub origin: String,
}

/// What is known of an alert when it is routed.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    pub account: Option<&'a str>,
    pub ou: Option<String>,
    pub tags: Option<&'a BTreeMap<String, String>>,
    pub rule: &'a str,
    pub severity: Option<Severity>,
    pub region: Option<&'a str>,
}

impl RouteMatch {
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        let any = |globs: &[String], value: Option<&str>| {
            globs.is_empty() || value.is_some_and(|v| globs.iter().any(|g| id_matches(g, v)))
        };
        any(&self.accounts, f.account)
            && any(&self.ous, f.ou.as_deref())
            && any(&self.rules, Some(f.rule))
            && any(&self.regions, f.region)
            && (self.severities.is_empty()
                || f.severity.is_some_and(|s| self.severities.contains(&s)))
            && self.account_tags.iter().all(|(key, globs)| {
                f.tags
                    .and_then(|t| t.get(key))
                    .is_some_and(|v| globs.iter().any(|g| id_matches(g, v)))
            })
    }
}

/// Where an alert goes, and which routes decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// The routes that matched, in order (their `origin`); empty: the default route.
    pub routes: Vec<String>,
    pub topics: Vec<String>,
    pub chat_topics: Vec<String>,
    /// The PagerDuty services the routes page (their routing keys' places, `default` for
    /// `PAGERDUTY_ROUTING_KEY_SECRET`'s).
    pub pagerduty: Vec<String>,
}

impl Decision {
    /// Whether the default route applies (no route matched).
    pub fn is_default(&self) -> bool {
        self.routes.is_empty()
    }
}

/// The routes that take an alert with these facts, first match first.
pub fn decide(routes: &[Route], facts: &Facts<'_>) -> Decision {
    let mut d = Decision::default();
    for route in routes {
        if !route.matcher.matches(facts) {
            continue;
        }
        d.routes.push(route.origin.clone());
        for t in &route.topics {
            if !d.topics.contains(t) {
                d.topics.push(t.clone());
            }
        }
        for t in &route.chat_topics {
            if !d.chat_topics.contains(t) {
                d.chat_topics.push(t.clone());
            }
        }
        for s in &route.pagerduty {
            if !d.pagerduty.contains(s) {
                d.pagerduty.push(s.clone());
            }
        }
        if !route.continue_ {
            break;
        }
    }
    d
}

const ROUTE_KEYS: [&str; 3] = ["match", "to", "continue"];
const MATCH_KEYS: [&str; 6] = [
    "accounts",
    "ous",
    "account_tags",
    "rules",
    "severities",
    "regions",
];
const TO_KEYS: [&str; 3] = ["topics", "chat_topics", "pagerduty"];

type Fault = (String, String);
type Mapping = serde_json::Map<String, Value>;

fn strings(v: &Value, at: &str) -> Result<Vec<String>, Fault> {
    let items = match v {
        Value::String(s) => vec![Value::String(s.clone())],
        Value::Array(a) => a.clone(),
        other => {
            return Err((
                at.to_owned(),
                format!("expected a list of strings, found {}", yaml_kind(other)),
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err((
                format!("{at}[{i}]"),
                format!("expected a non-empty string, found {}", yaml_kind(other)),
            )),
        })
        .collect()
}

/// The mappings of a list at `at`, each with its path; `what` names an item in faults.
fn mappings<'v>(
    value: &'v Value,
    at: &str,
    what: &str,
) -> Result<Vec<(String, &'v Mapping)>, Fault> {
    let Value::Array(items) = value else {
        return Err((
            at.to_owned(),
            format!("expected a list of {what}s, found {}", yaml_kind(value)),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(map) => Ok((format!("{at}[{i}]"), map)),
            other => Err((
                format!("{at}[{i}]"),
                format!("a {what} is a mapping, not {}", yaml_kind(other)),
            )),
        })
        .collect()
}

/// The name of the service `PAGERDUTY_ROUTING_KEY_SECRET` reads the key of, in a route's
/// `to: {pagerduty: ...}`.
pub const DEFAULT_SERVICE: &str = "default";

/// Whether `spec` names where a PagerDuty routing key is: `default`, `ssm:/name` (an SSM
/// SecureString), a Secrets Manager secret's ARN, or a secret's name.
pub fn service_spec(spec: &str) -> Result<(), String> {
    if spec == DEFAULT_SERVICE {
        return Ok(());
    }
    if let Some(name) = spec.strip_prefix("ssm:") {
        return if name.starts_with('/') && name.len() > 1 && !name.contains(char::is_whitespace) {
            Ok(())
        } else {
            Err(format!(
                "{spec:?}: an SSM parameter is named ssm:/its/name (the full path, from /)"
            ))
        };
    }
    if spec.starts_with("arn:") {
        let parts: Vec<&str> = spec.splitn(7, ':').collect();
        return if parts.len() == 7 && parts[2] == "secretsmanager" && parts[5] == "secret" {
            Ok(())
        } else {
            Err(format!(
                "{spec:?} is not a Secrets Manager secret ARN \
                 (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
            ))
        };
    }
    if spec.contains(char::is_whitespace) || spec.contains("://") {
        return Err(format!(
            "{spec:?}: expected where a routing key is kept (a Secrets Manager secret's ARN or \
             name, ssm:/name, or default), never the key itself or a URL"
        ));
    }
    Ok(())
}

/// `routes:` of a document at `at` (`$.routes`).
pub fn parse(value: &Value, origin: &str, at: &str) -> Result<Vec<Route>, Fault> {
    let mut out = Vec::new();
    for (here, map) in mappings(value, at, "route")? {
        if let Some(k) = map.keys().find(|k| !ROUTE_KEYS.contains(&k.as_str())) {
            return Err((
                format!("{here}.{k}"),
                "unknown key; a route has match, to, continue".into(),
            ));
        }
        let mut matcher = RouteMatch::default();
        match map.get("match") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                if let Some(k) = m.keys().find(|k| !MATCH_KEYS.contains(&k.as_str())) {
                    return Err((
                        format!("{here}.match.{k}"),
                        format!("unknown key; a route matches on {}", MATCH_KEYS.join(", ")),
                    ));
                }
                let at = |k: &str| format!("{here}.match.{k}");
                if let Some(v) = m.get("accounts") {
                    matcher.accounts = strings(v, &at("accounts"))?;
                    if let Some((j, bad)) = matcher.accounts.iter().enumerate().find(|(_, a)| {
                        !a.contains('*')
                            && (a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
                    }) {
                        return Err((
                            format!("{}[{j}]", at("accounts")),
                            format!("{bad:?} is not an account id (12 digits, quoted) or a glob"),
                        ));
                    }
                }
                if let Some(v) = m.get("ous") {
                    matcher.ous = strings(v, &at("ous"))?;
                    if let Some((j, bad)) = matcher
                        .ous
                        .iter()
                        .enumerate()
                        .find(|(_, o)| !o.starts_with("Root"))
                    {
                        return Err((
                            format!("{}[{j}]", at("ous")),
                            format!("{bad:?}: an OU path starts at the root (Root/Prod/Payments)"),
                        ));
                    }
                }
                if let Some(v) = m.get("rules") {
                    matcher.rules = strings(v, &at("rules"))?;
                }
                if let Some(v) = m.get("regions") {
                    matcher.regions = strings(v, &at("regions"))?;
                }
                if let Some(v) = m.get("severities") {
                    for (j, s) in strings(v, &at("severities"))?.iter().enumerate() {
                        matcher.severities.push(Severity::parse(s).ok_or_else(|| {
                            (
                                format!("{}[{j}]", at("severities")),
                                format!("{s:?}: expected info, low, medium, high or critical"),
                            )
                        })?);
                    }
                }
                match m.get("account_tags") {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(tags)) => {
                        for (k, v) in tags {
                            let here = format!("{}.{k}", at("account_tags"));
                            matcher.account_tags.insert(k.clone(), strings(v, &here)?);
                        }
                    }
                    Some(other) => {
                        return Err((
                            at("account_tags"),
                            format!(
                                "expected a mapping of tag keys to values, found {}",
                                yaml_kind(other)
                            ),
                        ))
                    }
                }
            }
            Some(other) => {
                return Err((
                    format!("{here}.match"),
                    format!("expected a mapping, found {}", yaml_kind(other)),
                ))
            }
        }
        let (topics, chat_topics, pagerduty) = match map.get("to") {
            Some(Value::Object(to)) => {
                if let Some(k) = to.keys().find(|k| !TO_KEYS.contains(&k.as_str())) {
                    return Err((
                        format!("{here}.to.{k}"),
                        "unknown key; a route sends to topics, chat_topics and pagerduty".into(),
                    ));
                }
                let list = |k: &str| -> Result<Vec<String>, Fault> {
                    let v = match to.get(k) {
                        None | Some(Value::Null) => return Ok(Vec::new()),
                        Some(v) => v,
                    };
                    let topics = strings(v, &format!("{here}.to.{k}"))?;
                    if let Some((j, bad)) = topics
                        .iter()
                        .enumerate()
                        .find(|(_, t)| !crate::config::valid_topic_arn(t))
                    {
                        return Err((
                            format!("{here}.to.{k}[{j}]"),
                            format!("{bad:?} is not an SNS topic ARN"),
                        ));
                    }
                    Ok(topics)
                };
                let pagerduty = match to.get("pagerduty") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(v) => {
                        let at = format!("{here}.to.pagerduty");
                        let services = strings(v, &at)?;
                        for (j, spec) in services.iter().enumerate() {
                            service_spec(spec).map_err(|why| (format!("{at}[{j}]"), why))?;
                        }
                        services
                    }
                };
                (list("topics")?, list("chat_topics")?, pagerduty)
            }
            None => {
                return Err((
                    format!("{here}.to"),
                    "missing: where the route sends \
                     (to: {topics: [...], chat_topics: [...], pagerduty: [...]})"
                        .into(),
                ))
            }
            Some(other) => {
                return Err((
                    format!("{here}.to"),
                    format!("expected a mapping, found {}", yaml_kind(other)),
                ))
            }
        };
        if topics.is_empty() && chat_topics.is_empty() && pagerduty.is_empty() {
            return Err((
                format!("{here}.to"),
                "sends nowhere: give topics, chat_topics or pagerduty".into(),
            ));
        }
        let continue_ = match map.get("continue") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err((
                    format!("{here}.continue"),
                    format!("expected true or false, found {}", yaml_kind(other)),
                ))
            }
        };
        out.push(Route {
            matcher,
            topics,
            chat_topics,
            pagerduty,
            continue_,
            origin: format!("{origin} {here}"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn routes() -> Vec<Route> {
        parse(
            &json!([
                {"match": {"ous": ["Root/Prod/Payments*"], "severities": ["high", "critical"]},
                 "to": {"topics": ["arn:aws:sns:eu-west-1:111122223333:payments-oncall"],
                        "chat_topics": ["arn:aws:sns:eu-west-1:111122223333:payments-chat"]},
                 "continue": true},
                {"match": {"account_tags": {"team": ["platform", "payments"]}, "rules": ["backup-*"]},
                 "to": {"topics": ["arn:aws:sns:eu-west-1:111122223333:teams"]}},
                {"match": {"regions": ["eu-*"]},
                 "to": {"topics": ["arn:aws:sns:eu-west-1:111122223333:europe"]}},
            ]),
            "r.yaml",
            "$.routes",
        )
        .expect("routes")
    }

    #[test]
    fn the_first_match_decides_unless_it_continues() {
        let tags: BTreeMap<String, String> = [("team".to_owned(), "payments".to_owned())].into();
        let facts = Facts {
            account: Some("481726354019"),
            ou: Some("Root/Prod/Payments".into()),
            tags: Some(&tags),
            rule: "backup-job-failed",
            severity: Some(Severity::High),
            region: Some("eu-west-1"),
        };
        let d = decide(&routes(), &facts);
        assert_eq!(d.routes, ["r.yaml $.routes[0]", "r.yaml $.routes[1]"]);
        assert_eq!(
            d.topics,
            [
                "arn:aws:sns:eu-west-1:111122223333:payments-oncall",
                "arn:aws:sns:eu-west-1:111122223333:teams"
            ]
        );
        assert_eq!(
            d.chat_topics,
            ["arn:aws:sns:eu-west-1:111122223333:payments-chat"]
        );
        // Medium: the first route does not match; the second decides and stops.
        let d = decide(
            &routes(),
            &Facts {
                severity: Some(Severity::Medium),
                ..facts.clone()
            },
        );
        assert_eq!(d.routes, ["r.yaml $.routes[1]"]);
        // No tags known (no account context): only the Region route.
        let d = decide(
            &routes(),
            &Facts {
                tags: None,
                ou: None,
                severity: Some(Severity::Low),
                ..facts.clone()
            },
        );
        assert_eq!(d.routes, ["r.yaml $.routes[2]"]);
        // Nothing matches: the default route.
        let d = decide(
            &routes(),
            &Facts {
                tags: None,
                ou: None,
                region: Some("us-east-1"),
                ..facts
            },
        );
        assert!(d.is_default());
    }

    #[test]
    fn bad_routes_are_refused_at_their_path() {
        for (routes, path, says) in [
            (
                json!([{"to": {"topics": ["x"]}}]),
                "$.routes[0].to.topics[0]",
                "not an SNS topic ARN",
            ),
            (
                json!([{"match": {"accounts": ["12345"]}, "to": {"topics": ["arn:aws:sns:us-east-1:111122223333:t"]}}]),
                "$.routes[0].match.accounts[0]",
                "not an account id",
            ),
            (
                json!([{"match": {"severities": ["urgent"]}, "to": {"topics": ["arn:aws:sns:us-east-1:111122223333:t"]}}]),
                "$.routes[0].match.severities[0]",
                "expected info",
            ),
            (
                json!([{"match": {"ous": ["Prod"]}, "to": {"topics": ["arn:aws:sns:us-east-1:111122223333:t"]}}]),
                "$.routes[0].match.ous[0]",
                "starts at the root",
            ),
            (
                json!([{"match": {"team": ["x"]}, "to": {"topics": ["arn:aws:sns:us-east-1:111122223333:t"]}}]),
                "$.routes[0].match.team",
                "unknown key",
            ),
            (json!([{"to": {}}]), "$.routes[0].to", "sends nowhere"),
            (json!([{"match": {}}]), "$.routes[0].to", "missing"),
            (
                json!([{"to": {"pagerduty": ["ssm:k"]}}]),
                "$.routes[0].to.pagerduty[0]",
                "ssm:/its/name",
            ),
            (
                json!([{"to": {"pagerduty": ["arn:aws:sns:us-east-1:111122223333:t"]}}]),
                "$.routes[0].to.pagerduty[0]",
                "not a Secrets Manager secret ARN",
            ),
            (
                json!([{"to": {"pagerduty": ["https://events.pagerduty.com/x"]}}]),
                "$.routes[0].to.pagerduty[0]",
                "never the key itself",
            ),
            (
                json!([{"to": {"topics": ["arn:aws:sns:us-east-1:111122223333:t"]}, "continue": "yes"}]),
                "$.routes[0].continue",
                "true or false",
            ),
        ] {
            let (at, why) = parse(&routes, "r.yaml", "$.routes").expect_err(path);
            assert_eq!(at, path, "{why}");
            assert!(why.contains(says), "{path}: {why}");
        }
    }
}

/// Where a route test expects an alert to go; compared as sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    pub topics: Vec<String>,
    pub chat_topics: Vec<String>,
    pub pagerduty: Vec<String>,
}

impl Destinations {
    /// Each list sorted, for comparing.
    pub fn sorted(mut self) -> Self {
        self.topics.sort();
        self.chat_topics.sort();
        self.pagerduty.sort();
        self
    }
}

impl std::fmt::Display for Destinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topics {:?}, chat_topics {:?}, pagerduty {:?}",
            self.topics, self.chat_topics, self.pagerduty
        )
    }
}

impl Decision {
    /// Where the routes send (not which routes decided).
    pub fn destinations(&self) -> Destinations {
        Destinations {
            topics: self.topics.clone(),
            chat_topics: self.chat_topics.clone(),
            pagerduty: self.pagerduty.clone(),
        }
    }
}

/// A route test (`route_tests:`, run by `rules test`): an alert's facts, and where it must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTest {
    pub name: String,
    pub account: Option<String>,
    pub rule: String,
    pub severity: Option<Severity>,
    pub region: Option<String>,
    /// `None`: the default route; else the topics, chat topics and PagerDuty services, each
    /// in any order.
    pub expect: Option<Destinations>,
    pub origin: String,
}

const TEST_KEYS: [&str; 6] = ["name", "account", "rule", "severity", "region", "expect"];

/// `route_tests:` of a document.
pub fn parse_tests(value: &Value, origin: &str, at: &str) -> Result<Vec<RouteTest>, Fault> {
    let mut out = Vec::new();
    for (here, map) in mappings(value, at, "route test")? {
        if let Some(k) = map.keys().find(|k| !TEST_KEYS.contains(&k.as_str())) {
            return Err((
                format!("{here}.{k}"),
                format!("unknown key; a route test has {}", TEST_KEYS.join(", ")),
            ));
        }
        let text = |k: &str| -> Result<Option<String>, Fault> {
            match map.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
                Some(other) => Err((
                    format!("{here}.{k}"),
                    format!("expected a string, found {}", yaml_kind(other)),
                )),
            }
        };
        let name = text("name")?.ok_or_else(|| (format!("{here}.name"), "missing".to_owned()))?;
        let rule = text("rule")?.ok_or_else(|| (format!("{here}.rule"), "missing".to_owned()))?;
        let severity = match text("severity")? {
            None => None,
            Some(s) => Some(Severity::parse(&s).ok_or_else(|| {
                (
                    format!("{here}.severity"),
                    format!("{s:?}: expected info, low, medium, high or critical"),
                )
            })?),
        };
        let expect =
            match map.get("expect") {
                Some(Value::String(s)) if s == "default" => None,
                Some(Value::Object(e)) => {
                    let list = |k: &str| match e.get(k) {
                        None | Some(Value::Null) => Ok(Vec::new()),
                        Some(v) => strings(v, &format!("{here}.expect.{k}")),
                    };
                    if let Some(k) = e
                        .keys()
                        .find(|k| !["topics", "chat_topics", "pagerduty"].contains(&k.as_str()))
                    {
                        return Err((
                            format!("{here}.expect.{k}"),
                            "unknown key; a route test expects topics, chat_topics and pagerduty"
                                .into(),
                        ));
                    }
                    Some(Destinations {
                        topics: list("topics")?,
                        chat_topics: list("chat_topics")?,
                        pagerduty: list("pagerduty")?,
                    })
                }
                _ => return Err((
                    format!("{here}.expect"),
                    "expected `default` or {topics: [...], chat_topics: [...], pagerduty: [...]}"
                        .into(),
                )),
            };
        out.push(RouteTest {
            name,
            account: text("account")?,
            rule,
            severity,
            region: text("region")?,
            expect,
            origin: format!("{origin} {here}"),
        });
    }
    Ok(out)
}
