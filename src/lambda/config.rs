//! The function's configuration, read once from the environment through a lookup function.

use std::time::Duration;

use crate::config::{limits, rule_sources, valid_topic_arn, ConfigError};
use crate::reader::Limits;
use crate::rules::{default_sources, RuleSource};

use super::message::AlertFormat;

/// Attempts at entries SNS refuses inside a `PublishBatch`, after the first.
pub const DEFAULT_PUBLISH_RETRIES: u32 = 3;
/// The first back-off between those attempts; it grows fourfold each time.
pub const DEFAULT_PUBLISH_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaConfig {
    /// `ALERT_TOPIC_ARN`: the topic for rules without their own.
    pub alert_topic_arn: Option<String>,
    /// `RULES`: rule sources (`builtin`, paths in the package, `s3://bucket/key`).
    pub rules: Vec<RuleSource>,
    /// `ALERT_FORMAT`.
    pub format: AlertFormat,
    /// `MAX_DECOMPRESSED_BYTES`, `MAX_RECORD_BYTES`.
    pub limits: Limits,
    /// `ALLOWED_BUCKETS`: `None` allows any bucket.
    pub allowed_buckets: Option<Vec<String>>,
    pub publish_retries: u32,
    pub publish_backoff: Duration,
    /// `STATE_TABLE`: the DynamoDB table of dedup and threshold windows; `None`: no state store.
    pub state_table: Option<String>,
    /// `ROLLUP_LATENESS`: how long after a window ends its roll-up waits (seconds).
    pub rollup_lateness: u64,
    /// `TRAIL_SILENCE_AFTER`: how long an account and Region may deliver nothing.
    pub silence: super::state::Silence,
    /// `TOPIC_FORMATS`: `<topic ARN>=<format>` pairs overriding `ALERT_FORMAT` per topic.
    pub topic_formats: Vec<(String, AlertFormat)>,
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda): the metrics' dimension.
    pub function_name: String,
    /// `PAGERDUTY_ROUTING_KEY_SECRET`: where the routing key is (a Secrets Manager secret's ARN
    /// or name, or `ssm:/parameter/name`); `None`: no PagerDuty.
    pub pagerduty_secret: Option<String>,
    /// `PAGERDUTY_URL`: the Events v2 endpoint.
    pub pagerduty_url: String,
    /// `PAGERDUTY_MIN_SEVERITY`: alerts below it do not page.
    pub pagerduty_min_severity: crate::rules::Severity,
    /// `PAGERDUTY_EVENTS_PER_MINUTE`: the most events sent to a routing key in any minute
    /// (PagerDuty's documented limit, 120, by default).
    pub pagerduty_events_per_minute: usize,
    /// `STORM_LIMIT`: alerts of one rule in one delivery past which the rest are folded into
    /// one storm message.
    pub storm_limit: usize,
    /// `TRAIL_LOG_EXPIRY_DAYS`: the trail bucket's own lifecycle expiry, declared: a lifecycle
    /// deletion of a log at least this many days old is expected and stays quiet; any other
    /// deletion of a trail log is `trail-log-deleted`.
    pub trail_log_expiry_days: Option<u32>,
    /// `SHADOW_PREFIX` (`s3://bucket/prefix/`): where shadow rules' alerts are written as JSON
    /// lines; `None`: only to the log.
    pub shadow_prefix: Option<crate::rules::S3Object>,
    /// `TRAIL_READ_ROLE_ARN` (and `TRAIL_READ_EXTERNAL_ID`): the role in the log-archive account
    /// the function assumes to read trail objects; `None`: it reads with its own role.
    pub read_role: Option<ReadRole>,
    /// `ACCOUNT_CONTEXT=organizations`: accounts' names, OU paths and tags from AWS
    /// Organizations (through `ORG_READ_ROLE_ARN` when set), kept `ACCOUNT_CACHE_TTL`.
    pub organizations: bool,
    pub org_read_role: Option<String>,
    pub account_cache_ttl: u64,
    /// `SSO_START_URL` and `SSO_PERMISSION_SET`: IAM Identity Center shortcut links.
    pub sso: Option<crate::alert::context::Sso>,
}

/// The built-in rules about the trail's bucket itself, narrowed to the trail buckets when the
/// function knows them ([`LambdaConfig::bucket_scope`]).
pub const TRAIL_BUCKET_RULES: &[&str] = &[
    "trail-bucket-notification-changed",
    "trail-bucket-lifecycle-changed",
];

/// A role in another account that the function assumes to read the trail's bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRole {
    /// `arn:<partition>:iam::<account>:role/<path/name>`.
    pub arn: String,
    /// The external id the role's trust policy asks for (`sts:ExternalId`), if any.
    pub external_id: Option<String>,
}

impl ReadRole {
    /// The account the role belongs to.
    pub fn account(&self) -> &str {
        self.arn.split(':').nth(4).unwrap_or("")
    }
}

/// Whether `arn` names an IAM role: `arn:<partition>:iam::<12 digits>:role/<name>`.
pub fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|name| {
            !name.is_empty()
                && !name.ends_with('/')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
        })
}

/// `PAGERDUTY_URL` carries the routing key: only `https://`, or plain HTTP to a loopback
/// address when `PAGERDUTY_ALLOW_LOOPBACK_HTTP=true` (tests against a local stand-in).
fn pagerduty_url(url: &str, loopback_allowed: bool) -> Result<(), &'static str> {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return Err("not a URL");
    };
    let host = uri.host().unwrap_or("");
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if loopback_allowed && is_loopback(host) => Ok(()),
        Some("http") if is_loopback(host) => Err(
            "plain HTTP carries the routing key in clear: only https:// (loopback over HTTP only \
             with PAGERDUTY_ALLOW_LOOPBACK_HTTP=true, for tests)",
        ),
        _ => Err("the routing key may only travel over https://"),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Alerts of one rule in one delivery past which the rest are folded (a default no sane rule
/// reaches in one delivery).
pub const DEFAULT_STORM_LIMIT: usize = 1000;

impl Default for LambdaConfig {
    fn default() -> Self {
        LambdaConfig {
            alert_topic_arn: None,
            rules: default_sources(),
            format: AlertFormat::Json,
            limits: Limits::default(),
            allowed_buckets: None,
            publish_retries: DEFAULT_PUBLISH_RETRIES,
            publish_backoff: DEFAULT_PUBLISH_BACKOFF,
            state_table: None,
            rollup_lateness: super::state::DEFAULT_LATENESS,
            silence: super::state::Silence::default(),
            topic_formats: Vec::new(),
            function_name: "trail-alerts".into(),
            pagerduty_secret: None,
            pagerduty_url: super::pager::DEFAULT_URL.into(),
            pagerduty_min_severity: crate::rules::Severity::High,
            pagerduty_events_per_minute: super::pager::DEFAULT_EVENTS_PER_MINUTE,
            storm_limit: DEFAULT_STORM_LIMIT,
            trail_log_expiry_days: None,
            shadow_prefix: None,
            read_role: None,
            organizations: false,
            org_read_role: None,
            account_cache_ttl: super::accounts::DEFAULT_TTL,
            sso: None,
        }
    }
}

impl LambdaConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let non_empty = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let format = match non_empty("ALERT_FORMAT") {
            None => AlertFormat::Json,
            Some(f) => AlertFormat::parse(&f).ok_or_else(|| ConfigError {
                variable: "ALERT_FORMAT",
                value: f.clone(),
                reason: "expected json, text, per-protocol or chat".into(),
            })?,
        };
        let alert_topic_arn = non_empty("ALERT_TOPIC_ARN");
        if let Some(arn) = &alert_topic_arn {
            if !valid_topic_arn(arn) {
                return Err(ConfigError {
                    variable: "ALERT_TOPIC_ARN",
                    value: arn.clone(),
                    reason: "not an SNS topic ARN (arn:<partition>:sns:<region>:<account>:<name>)"
                        .into(),
                });
            }
        }
        let allowed_buckets = non_empty("ALLOWED_BUCKETS").map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(str::to_owned)
                .collect()
        });
        let rollup_lateness = match non_empty("ROLLUP_LATENESS") {
            None => super::state::DEFAULT_LATENESS,
            Some(d) => crate::time::parse_duration(&d).ok_or_else(|| ConfigError {
                variable: "ROLLUP_LATENESS",
                value: d.clone(),
                reason: "expected a duration: 90s, 15m, 1h, 1d".into(),
            })?,
        };
        let silence = match non_empty("TRAIL_SILENCE_AFTER") {
            None => super::state::Silence::default(),
            Some(text) => super::state::Silence::parse(&text).ok_or_else(|| ConfigError {
                variable: "TRAIL_SILENCE_AFTER",
                value: text.clone(),
                reason: "expected a duration, then account/region globs with their own \
                         (6h,123456789012/us-east-1=24h,*/eu-*=12h)"
                    .into(),
            })?,
        };
        let mut topic_formats = Vec::new();
        for pair in non_empty("TOPIC_FORMATS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let bad = |reason: &str| ConfigError {
                variable: "TOPIC_FORMATS",
                value: pair.to_owned(),
                reason: reason.into(),
            };
            let (topic, format) = pair
                .rsplit_once('=')
                .ok_or_else(|| bad("expected <topic ARN>=<format>"))?;
            if !valid_topic_arn(topic.trim()) {
                return Err(bad("not an SNS topic ARN"));
            }
            let format = AlertFormat::parse(format.trim())
                .ok_or_else(|| bad("the format is json, text, per-protocol or chat"))?;
            topic_formats.push((topic.trim().to_owned(), format));
        }
        let pagerduty_min_severity = match non_empty("PAGERDUTY_MIN_SEVERITY") {
            None => crate::rules::Severity::High,
            Some(s) => crate::rules::Severity::parse(&s).ok_or_else(|| ConfigError {
                variable: "PAGERDUTY_MIN_SEVERITY",
                value: s.clone(),
                reason: "expected info, low, medium, high or critical".into(),
            })?,
        };
        let pagerduty_events_per_minute = match non_empty("PAGERDUTY_EVENTS_PER_MINUTE") {
            None => super::pager::DEFAULT_EVENTS_PER_MINUTE,
            Some(n) => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| ConfigError {
                    variable: "PAGERDUTY_EVENTS_PER_MINUTE",
                    value: n.clone(),
                    reason: "expected a whole number from 1 to 10000 (PagerDuty allows 120)".into(),
                })?,
        };
        let trail_log_expiry_days = match non_empty("TRAIL_LOG_EXPIRY_DAYS") {
            None => None,
            Some(n) => Some(n.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                ConfigError {
                    variable: "TRAIL_LOG_EXPIRY_DAYS",
                    value: n.clone(),
                    reason: "expected a whole number of days of at least 1 (the trail bucket's \
                             lifecycle expiry, as configured)"
                        .into(),
                }
            })?),
        };
        let storm_limit = match non_empty("STORM_LIMIT") {
            None => DEFAULT_STORM_LIMIT,
            Some(n) => n
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ConfigError {
                    variable: "STORM_LIMIT",
                    value: n.clone(),
                    reason: "expected a whole number of at least 1 (alerts of one rule in one \
                             delivery before the rest are folded)"
                        .into(),
                })?,
        };
        let shadow_prefix = match non_empty("SHADOW_PREFIX") {
            None => None,
            Some(url) => Some(s3_prefix(&url).ok_or_else(|| ConfigError {
                variable: "SHADOW_PREFIX",
                value: url.clone(),
                reason: "expected s3://bucket/prefix/".into(),
            })?),
        };
        let read_role = match non_empty("TRAIL_READ_ROLE_ARN") {
            None => None,
            Some(arn) if valid_role_arn(&arn) => Some(ReadRole {
                arn,
                external_id: non_empty("TRAIL_READ_EXTERNAL_ID"),
            }),
            Some(arn) => {
                return Err(ConfigError {
                    variable: "TRAIL_READ_ROLE_ARN",
                    value: arn,
                    reason: "not an IAM role ARN (arn:<partition>:iam::<account>:role/<name>)"
                        .into(),
                })
            }
        };
        if read_role.is_none() {
            if let Some(id) = non_empty("TRAIL_READ_EXTERNAL_ID") {
                return Err(ConfigError {
                    variable: "TRAIL_READ_EXTERNAL_ID",
                    value: id,
                    reason: "set without TRAIL_READ_ROLE_ARN: the external id is for assuming \
                             that role"
                        .into(),
                });
            }
        }
        let org_read_role = non_empty("ORG_READ_ROLE_ARN");
        if let Some(arn) = org_read_role.as_ref().filter(|a| !valid_role_arn(a)) {
            return Err(ConfigError {
                variable: "ORG_READ_ROLE_ARN",
                value: arn.clone(),
                reason: "not an IAM role ARN (arn:<partition>:iam::<account>:role/<name>)".into(),
            });
        }
        let organizations = match non_empty("ACCOUNT_CONTEXT").as_deref() {
            None => org_read_role.is_some(),
            Some("organizations") => true,
            Some("none") => false,
            Some(other) => {
                return Err(ConfigError {
                    variable: "ACCOUNT_CONTEXT",
                    value: other.to_owned(),
                    reason: "expected organizations or none".into(),
                })
            }
        };
        let account_cache_ttl = match non_empty("ACCOUNT_CACHE_TTL") {
            None => super::accounts::DEFAULT_TTL,
            Some(d) => crate::time::parse_duration(&d)
                .filter(|s| *s > 0)
                .ok_or_else(|| ConfigError {
                    variable: "ACCOUNT_CACHE_TTL",
                    value: d.clone(),
                    reason: "expected a duration (15m, 1h, 1d)".into(),
                })?,
        };
        let sso = match non_empty("SSO_START_URL") {
            None => None,
            Some(url) if url.starts_with("https://") && !url.contains(['?', '#', ' ']) => {
                Some(crate::alert::context::Sso {
                    start_url: url,
                    permission_set: non_empty("SSO_PERMISSION_SET")
                        .unwrap_or_else(|| "ReadOnlyAccess".into()),
                })
            }
            Some(url) => {
                return Err(ConfigError {
                    variable: "SSO_START_URL",
                    value: url,
                    reason: "expected the access portal's https:// start URL \
                             (https://d-xxxxxxxxxx.awsapps.com/start)"
                        .into(),
                })
            }
        };
        let url = non_empty("PAGERDUTY_URL").unwrap_or_else(|| super::pager::DEFAULT_URL.into());
        let loopback = non_empty("PAGERDUTY_ALLOW_LOOPBACK_HTTP").is_some_and(|v| v == "true");
        pagerduty_url(&url, loopback).map_err(|reason| ConfigError {
            variable: "PAGERDUTY_URL",
            value: url.clone(),
            reason: reason.into(),
        })?;
        Ok(LambdaConfig {
            shadow_prefix,
            read_role,
            organizations,
            org_read_role,
            account_cache_ttl,
            sso,
            pagerduty_secret: non_empty("PAGERDUTY_ROUTING_KEY_SECRET"),
            pagerduty_url: url,
            pagerduty_min_severity,
            pagerduty_events_per_minute,
            storm_limit,
            trail_log_expiry_days,
            function_name: non_empty("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|| "trail-alerts".into()),
            topic_formats,
            silence,
            alert_topic_arn,
            rules: rule_sources(&lookup),
            format,
            limits: limits(&lookup)?,
            allowed_buckets,
            state_table: non_empty("STATE_TABLE"),
            rollup_lateness,
            ..LambdaConfig::default()
        })
    }

    /// With `ALLOWED_BUCKETS` set, the function knows its trail buckets: the built-in rules
    /// that watch a bucket's notifications and deletion (`trail-bucket-notification-changed`)
    /// then speak of those buckets only. Done as a suppression of the calls on other buckets
    /// (counted as suppressed, so that nothing is dropped without a trace); a call that names
    /// no bucket still alerts.
    pub fn bucket_scope(&self) -> Option<crate::model::Suppression> {
        let buckets = self.allowed_buckets.as_ref().filter(|b| !b.is_empty())?;
        let pattern =
            serde_json::json!({"requestParameters": {"bucketName": [{"anything-but": buckets}]}});
        Some(crate::model::Suppression {
            id: "other-buckets-than-the-trails".into(),
            rules: TRAIL_BUCKET_RULES.iter().map(|r| (*r).to_owned()).collect(),
            pattern: crate::pattern::Pattern::compile(&pattern).ok()?,
            reason: "a bucket other than the trail buckets the function reads (ALLOWED_BUCKETS)"
                .into(),
            owner: "trail-alerts".into(),
            expires: i64::MAX,
            expires_text: "never".into(),
            origin: "ALLOWED_BUCKETS".into(),
        })
    }

    /// The rule set with [`Self::bucket_scope`] applied, when it holds a rule it narrows.
    pub fn scoped(
        &self,
        rules: crate::rules::RuleSet,
    ) -> Result<crate::rules::RuleSet, crate::rules::RuleError> {
        match self.bucket_scope() {
            Some(scope) if scope.rules.iter().any(|id| rules.rule(id).is_some()) => {
                rules.with_suppressions(vec![scope])
            }
            _ => Ok(rules),
        }
    }

    pub fn bucket_allowed(&self, bucket: &str) -> bool {
        self.allowed_buckets
            .as_ref()
            .is_none_or(|list| list.iter().any(|b| b == bucket))
    }
}

/// `s3://bucket/prefix` as a bucket and a key prefix ending in `/` (or empty).
pub fn s3_prefix(url: &str) -> Option<crate::rules::S3Object> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return None;
    }
    let mut key = prefix.to_owned();
    if !key.is_empty() && !key.ends_with('/') {
        key.push('/');
    }
    Some(crate::rules::S3Object {
        bucket: bucket.to_owned(),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<LambdaConfig, ConfigError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        LambdaConfig::from_lookup(|k| map.get(k).map(|v| (*v).to_owned()))
    }

    #[test]
    fn shadow_prefix() {
        let c = cfg(&[("SHADOW_PREFIX", "s3://trials-bucket/shadow")]).unwrap();
        let p = c.shadow_prefix.expect("a prefix");
        assert_eq!(
            (p.bucket.as_str(), p.key.as_str()),
            ("trials-bucket", "shadow/")
        );
        let p = s3_prefix("s3://trials-bucket").expect("a bucket alone");
        assert_eq!(p.key, "");
        for bad in [
            "trials-bucket/shadow",
            "s3://Upper/x",
            "s3:///x",
            "s3://ab/x",
        ] {
            let e = cfg(&[("SHADOW_PREFIX", bad)]).expect_err(bad);
            assert_eq!(e.variable, "SHADOW_PREFIX", "{bad}");
        }
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c, LambdaConfig::default());
        assert!(c.bucket_allowed("anything"));
    }

    #[test]
    fn every_variable() {
        let c = cfg(&[
            (
                "ALERT_TOPIC_ARN",
                "arn:aws:sns:us-east-1:123456789012:alerts",
            ),
            ("RULES", "builtin,s3://rules-bucket/team.yaml"),
            ("ALERT_FORMAT", "per-protocol"),
            ("MAX_RECORD_BYTES", "1MiB"),
            ("ALLOWED_BUCKETS", "trail-a, trail-b"),
            ("STATE_TABLE", "trail-alerts-state"),
            ("ROLLUP_LATENESS", "30m"),
            (
                "TRAIL_SILENCE_AFTER",
                "6h, 123456789012/us-east-1=24h, */eu-*=12h",
            ),
            (
                "TOPIC_FORMATS",
                "arn:aws:sns:us-east-1:123456789012:chat=chat",
            ),
            (
                "PAGERDUTY_ROUTING_KEY_SECRET",
                "ssm:/trail-alerts/pagerduty",
            ),
            ("PAGERDUTY_URL", "http://127.0.0.1:9/v2/enqueue"),
            ("PAGERDUTY_ALLOW_LOOPBACK_HTTP", "true"),
            ("PAGERDUTY_MIN_SEVERITY", "critical"),
            (
                "TRAIL_READ_ROLE_ARN",
                "arn:aws:iam::111122223333:role/org/trail-alerts-read",
            ),
            ("TRAIL_READ_EXTERNAL_ID", "trail-alerts-9f2c"),
        ])
        .unwrap();
        assert_eq!(
            c.pagerduty_secret.as_deref(),
            Some("ssm:/trail-alerts/pagerduty")
        );
        assert_eq!(c.pagerduty_url, "http://127.0.0.1:9/v2/enqueue");
        assert_eq!(c.pagerduty_min_severity, crate::rules::Severity::Critical);
        let role = c.read_role.as_ref().unwrap();
        assert_eq!(
            role.arn,
            "arn:aws:iam::111122223333:role/org/trail-alerts-read"
        );
        assert_eq!(role.external_id.as_deref(), Some("trail-alerts-9f2c"));
        assert_eq!(role.account(), "111122223333");
        assert_eq!(
            c.topic_formats,
            [(
                "arn:aws:sns:us-east-1:123456789012:chat".to_owned(),
                AlertFormat::Chat
            )]
        );
        assert_eq!(c.silence.after("123456789012", "us-east-1"), 86_400);
        assert_eq!(c.silence.after("123456789012", "eu-west-1"), 43_200);
        assert_eq!(c.silence.after("210987654321", "us-east-1"), 21_600);
        assert_eq!(c.state_table.as_deref(), Some("trail-alerts-state"));
        assert_eq!(c.rollup_lateness, 1800);
        assert_eq!(
            c.alert_topic_arn.as_deref(),
            Some("arn:aws:sns:us-east-1:123456789012:alerts")
        );
        assert_eq!(
            c.rules,
            [
                RuleSource::Builtin,
                RuleSource::parse("s3://rules-bucket/team.yaml")
            ]
        );
        assert_eq!(c.format, AlertFormat::PerProtocol);
        assert_eq!(c.limits.max_record_bytes, 1 << 20);
        assert!(c.bucket_allowed("trail-b"));
        assert!(!c.bucket_allowed("other"));
    }

    #[test]
    fn bad_values_are_refused() {
        assert_eq!(
            cfg(&[("ALERT_FORMAT", "xml")]).unwrap_err().variable,
            "ALERT_FORMAT"
        );
        assert_eq!(
            cfg(&[("ALERT_TOPIC_ARN", "alerts")]).unwrap_err().variable,
            "ALERT_TOPIC_ARN"
        );
        assert_eq!(
            cfg(&[("ROLLUP_LATENESS", "soon")]).unwrap_err().variable,
            "ROLLUP_LATENESS"
        );
        assert_eq!(
            cfg(&[("TRAIL_SILENCE_AFTER", "a/b=1h")])
                .unwrap_err()
                .variable,
            "TRAIL_SILENCE_AFTER"
        );
        for bad in [
            "chat",
            "arn:aws:sns:us-east-1:123456789012:t=xml",
            "topic=chat",
        ] {
            assert_eq!(
                cfg(&[("TOPIC_FORMATS", bad)]).unwrap_err().variable,
                "TOPIC_FORMATS",
                "{bad}"
            );
        }
        assert_eq!(
            cfg(&[("MAX_DECOMPRESSED_BYTES", "-1")])
                .unwrap_err()
                .variable,
            "MAX_DECOMPRESSED_BYTES"
        );
        for (variable, bad) in [
            ("STORM_LIMIT", "0"),
            ("STORM_LIMIT", "many"),
            ("PAGERDUTY_EVENTS_PER_MINUTE", "0"),
            ("PAGERDUTY_EVENTS_PER_MINUTE", "120.5"),
        ] {
            assert_eq!(
                cfg(&[(variable, bad)]).unwrap_err().variable,
                variable,
                "{bad}"
            );
        }
        let c = cfg(&[
            ("STORM_LIMIT", "250"),
            ("PAGERDUTY_EVENTS_PER_MINUTE", "60"),
        ])
        .unwrap();
        assert_eq!((c.storm_limit, c.pagerduty_events_per_minute), (250, 60));
        assert_eq!(cfg(&[]).unwrap().storm_limit, DEFAULT_STORM_LIMIT);
    }

    #[test]
    fn the_routing_key_travels_over_https_only() {
        for bad in [
            "http://events.pagerduty.com/v2/enqueue",
            "http://127.0.0.1:9/v2/enqueue",
            "ftp://events.pagerduty.com/",
            "https:///v2/enqueue",
            "events.pagerduty.com/v2/enqueue",
        ] {
            let e = cfg(&[("PAGERDUTY_URL", bad)]).unwrap_err();
            assert_eq!(e.variable, "PAGERDUTY_URL", "{bad}");
        }
        // Loopback over HTTP only when allowed, and only loopback.
        for ok in [
            "http://127.0.0.1:9/v2/enqueue",
            "http://localhost:8080/",
            "http://[::1]:9/",
        ] {
            let c = cfg(&[
                ("PAGERDUTY_URL", ok),
                ("PAGERDUTY_ALLOW_LOOPBACK_HTTP", "true"),
            ]);
            assert_eq!(c.unwrap().pagerduty_url, ok);
        }
        let e = cfg(&[
            ("PAGERDUTY_URL", "http://10.0.0.8/v2/enqueue"),
            ("PAGERDUTY_ALLOW_LOOPBACK_HTTP", "true"),
        ])
        .unwrap_err();
        assert!(e.reason.contains("https"), "{e}");
        assert_eq!(
            cfg(&[(
                "PAGERDUTY_URL",
                "https://events.eu.pagerduty.com/v2/enqueue"
            )])
            .unwrap()
            .pagerduty_url,
            "https://events.eu.pagerduty.com/v2/enqueue"
        );
    }

    #[test]
    fn the_read_role_is_a_role_arn() {
        for bad in [
            "arn:aws:iam::1111222233:role/read",
            "arn:aws:iam::111122223333:user/read",
            "arn:aws:sts::111122223333:assumed-role/read/s",
            "arn:aws:iam::111122223333:role/",
            "trail-alerts-read",
        ] {
            let e = cfg(&[("TRAIL_READ_ROLE_ARN", bad)]).unwrap_err();
            assert_eq!(e.variable, "TRAIL_READ_ROLE_ARN", "{bad}");
        }
        let e = cfg(&[("TRAIL_READ_EXTERNAL_ID", "x")]).unwrap_err();
        assert_eq!(e.variable, "TRAIL_READ_EXTERNAL_ID");
        let c = cfg(&[(
            "TRAIL_READ_ROLE_ARN",
            "arn:aws-us-gov:iam::111122223333:role/read",
        )])
        .unwrap();
        assert_eq!(c.read_role.unwrap().external_id, None);
    }
}
