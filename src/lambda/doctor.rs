//! `trail-alerts doctor`, and the function's `{"doctor": {}}` payload: each thing the function
//! needs, tried in order with the credentials at hand, one line each, with the fix when it
//! fails. Run from the command line it checks as the operator's principal; sent to the function
//! (`aws lambda invoke --payload '{"doctor": {}}'`) it checks as the function's own role, which
//! is the one that matters when "nothing arrives".
//!
//! Nothing is changed and no alert is sent: reads are reads; the state table's write is a
//! `PutItem` whose condition can never hold (DynamoDB authorises a request before it evaluates
//! the condition, so `ConditionalCheckFailedException` proves the write is allowed and wrote
//! nothing); a topic's `sns:Publish` cannot be tried without publishing, so its check reads the
//! topic (it exists, its key, its policy) and judges what can be judged without the role's own
//! policy: another account's topic must allow the principal in its policy, a `Deny` must not
//! name it, and the AWS-managed key `alias/aws/sns` cannot be used from another account.

use std::io::Read;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::error::ProvideErrorMetadata;
use serde_json::{json, Value};

use super::config::LambdaConfig;
use super::input::ObjectRef;
use super::ports::role::{trail_reader, RoleCredentials};
use crate::describe;
use crate::rules::S3Object;

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Pass,
    Fail,
    /// Not tried: nothing configured for it, or an earlier check it needs failed.
    Skip,
}

impl CheckStatus {
    fn word(self) -> &'static str {
        match self {
            CheckStatus::Pass => "ok",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "skip",
        }
    }
}

/// One check: what was tried, how it ended, what was found, and the fix when it failed.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub outcome: CheckStatus,
    pub detail: String,
    pub fix: Option<String>,
    pub took: Duration,
}

/// Where a trail writes: a bucket and the prefix before `AWSLogs/` (empty or ending in `/`).
pub type TrailPlace = S3Object;

/// The trail places the function reads: `ALLOWED_BUCKETS` under `TRAIL_KEY_PREFIX`.
pub fn trail_places(config: &LambdaConfig, prefix: Option<&str>) -> Vec<TrailPlace> {
    let prefix = prefix.unwrap_or("").to_owned();
    config
        .allowed_buckets
        .iter()
        .flatten()
        .map(|bucket| S3Object {
            bucket: bucket.clone(),
            key: prefix.clone(),
        })
        .collect()
}

/// The principal the checks ran as, and the role behind it (what policies name).
#[derive(Debug, Clone, Default)]
struct Principal {
    arn: String,
    account: String,
    /// `arn:aws:iam::<account>:role/<name>` for an assumed role's session; the ARN otherwise.
    policy_arn: String,
}

fn principal_of(arn: &str, account: &str) -> Principal {
    // arn:aws:sts::123456789012:assumed-role/Name/session → arn:aws:iam::123456789012:role/Name
    let policy_arn = match arn.split_once(":assumed-role/") {
        Some((head, rest)) => {
            let name = rest.split('/').next().unwrap_or(rest);
            format!("{}:role/{name}", head.replacen(":sts::", ":iam::", 1))
        }
        None => arn.to_owned(),
    };
    Principal {
        arn: arn.to_owned(),
        account: account.to_owned(),
        policy_arn,
    }
}

struct Run {
    checks: Vec<Check>,
}

impl Run {
    fn add(&mut self, name: impl Into<String>, started: Instant, result: Result<String, Failed>) {
        let took = started.elapsed();
        let (outcome, detail, fix) = match result {
            Ok(detail) => (CheckStatus::Pass, detail, None),
            Err(Failed::Fail { detail, fix }) => (CheckStatus::Fail, detail, fix),
            Err(Failed::Skip(detail)) => (CheckStatus::Skip, detail, None),
        };
        self.checks.push(Check {
            name: name.into(),
            outcome,
            detail,
            fix,
            took,
        });
    }

    fn skip(&mut self, name: impl Into<String>, why: &str) {
        self.add(name, Instant::now(), Err(Failed::Skip(why.into())));
    }
}

enum Failed {
    Fail { detail: String, fix: Option<String> },
    Skip(String),
}

fn fail(detail: impl Into<String>, fix: impl Into<Option<String>>) -> Failed {
    Failed::Fail {
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// What doctor checks besides the function's own configuration: the trail places, and the
/// organisation's central bus (`CENTRAL_EVENT_BUS_ARN`, `ORGANIZATION_ID`, which template.yaml
/// sets when it makes one).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub trails: Vec<TrailPlace>,
    pub central_bus: Option<String>,
    pub organization: Option<String>,
}

impl Scope {
    /// From the function's configuration and a lookup of the environment.
    pub fn from_lookup(config: &LambdaConfig, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Scope {
            trails: trail_places(config, get("TRAIL_KEY_PREFIX").as_deref()),
            central_bus: get("CENTRAL_EVENT_BUS_ARN"),
            organization: get("ORGANIZATION_ID"),
        }
    }
}

/// Runs every check, in order, with the credentials of `sdk`.
pub async fn examine(sdk: &SdkConfig, config: &LambdaConfig, scope: &Scope) -> Vec<Check> {
    let trails = &scope.trails;
    let mut run = Run { checks: Vec::new() };

    // 1. Who is asking.
    let started = Instant::now();
    let who = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await;
    let principal = match who {
        Ok(out) => {
            let p = principal_of(out.arn().unwrap_or(""), out.account().unwrap_or(""));
            run.add("credentials", started, Ok(p.arn.clone()));
            p
        }
        Err(e) => {
            run.add(
                "credentials",
                started,
                Err(fail(
                    describe::chain(&e),
                    Some(
                        "give the command credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, …) and a \
                         Region; every other check needs them"
                            .to_owned(),
                    ),
                )),
            );
            for name in [
                "rules",
                "trail",
                "topics",
                "state table",
                "PagerDuty",
                "central bus",
            ] {
                run.skip(name, "no credentials");
            }
            return run.checks;
        }
    };
    let s3 = crate::s3::s3_client(sdk);

    // 2. The rules, as the function loads them at cold start.
    let started = Instant::now();
    let rules = crate::s3::load_rules(&s3, &config.rules).await;
    let rules = match rules.and_then(|r| config.scoped(r)) {
        Ok(r) => {
            let enabled = r.rules().iter().filter(|r| r.enabled).count();
            let warnings = r.warnings().len();
            run.add(
                "rules",
                started,
                Ok(format!(
                    "{} rules ({enabled} enabled), {warnings} warning{}",
                    r.rules().len(),
                    if warnings == 1 { "" } else { "s" }
                )),
            );
            Some(r)
        }
        Err(e) => {
            run.add(
                "rules",
                started,
                Err(fail(
                    e.to_string(),
                    Some(
                        "fix the rule file at the path named, or the RULES sources \
                         (`trail-alerts rules test --rules …` shows every fault)"
                            .to_owned(),
                    ),
                )),
            );
            None
        }
    };

    // 3. The read role, when there is one.
    let mut role_ok = true;
    if let Some(role) = &config.read_role {
        let started = Instant::now();
        let creds = RoleCredentials::new(sdk, role.clone())
            .provide_credentials()
            .await;
        let result = match creds {
            Ok(_) => Ok(format!("assumed {}", role.arn)),
            Err(e) => {
                role_ok = false;
                let condition = role
                    .external_id
                    .as_ref()
                    .map(|id| format!(", \"Condition\": {{\"StringEquals\": {{\"sts:ExternalId\": \"{id}\"}}}}"))
                    .unwrap_or_default();
                Err(fail(
                    describe::chain(&e),
                    Some(format!(
                        "the role's trust policy (in account {}) needs {{\"Effect\": \"Allow\", \
                         \"Principal\": {{\"AWS\": \"{}\"}}, \"Action\": \"sts:AssumeRole\"{condition}}}, \
                         and {}'s own policy {{\"Effect\": \"Allow\", \"Action\": \"sts:AssumeRole\", \
                         \"Resource\": \"{}\"}} (templates/log-archive.yaml and template.yaml make both)",
                        role.account(),
                        principal.policy_arn,
                        principal.policy_arn,
                        role.arn
                    )),
                ))
            }
        };
        run.add(format!("read role {}", role.arn), started, result);
    }

    // 4. Each trail place: list the prefix, find the newest log, read and decrypt it.
    let reader = trail_reader(sdk, config.read_role.as_ref());
    let reader_name = config
        .read_role
        .as_ref()
        .map_or_else(|| principal.policy_arn.clone(), |r| r.arn.clone());
    if trails.is_empty() {
        run.skip(
            "trail",
            "no trail bucket known: set ALLOWED_BUCKETS (template.yaml does) or pass --trail \
             s3://bucket/prefix/",
        );
    }
    for place in trails {
        let at = format!("s3://{}/{}AWSLogs/", place.bucket, place.key);
        if !role_ok {
            run.skip(format!("list {at}"), "the read role could not be assumed");
            continue;
        }
        let started = Instant::now();
        let newest = newest_log(&reader, place).await;
        let key = match newest {
            Ok((key, calls)) => {
                run.add(
                    format!("list {at}"),
                    started,
                    Ok(format!("newest log {key} ({calls} ListObjectsV2 calls)")),
                );
                key
            }
            Err(NewestError::Empty(calls)) => {
                run.add(
                    format!("list {at}"),
                    started,
                    Err(fail(
                        format!("no CloudTrail log under it ({calls} ListObjectsV2 calls)"),
                        Some(
                            "check the trail's bucket and prefix (TRAIL_KEY_PREFIX, --trail), \
                             and that the trail is logging"
                                .to_owned(),
                        ),
                    )),
                );
                continue;
            }
            Err(NewestError::Denied(why)) => {
                let statement = format!(
                    "{{\"Effect\": \"Allow\", \"Principal\": {{\"AWS\": \"{reader_name}\"}}, \
                     \"Action\": \"s3:ListBucket\", \"Resource\": \"arn:aws:s3:::{}\", \
                     \"Condition\": {{\"StringLike\": {{\"s3:prefix\": \"{}AWSLogs/*\"}}}}}}",
                    place.bucket, place.key
                );
                run.add(
                    format!("list {at}"),
                    started,
                    Err(fail(
                        format!("access denied as {reader_name}: {why}"),
                        Some(format!(
                            "the function itself never lists (it reads the objects it is told \
                             of), but doctor, `scan s3://` and the backfill do: allow it in the \
                             bucket's policy, {statement} (without the Principal in the read \
                             role's own policy)"
                        )),
                    )),
                );
                continue;
            }
            Err(NewestError::Other(why)) => {
                run.add(format!("list {at}"), started, Err(fail(why, None)));
                continue;
            }
        };
        let started = Instant::now();
        let object = ObjectRef {
            bucket: place.bucket.clone(),
            key: key.clone(),
        };
        let read = read_log(&reader, &object, config).await;
        let result = match read {
            Ok((bytes, records, kms)) => Ok(format!(
                "{records} records in {bytes} bytes{}",
                kms.map(|k| format!(", decrypted with {k}"))
                    .unwrap_or_default()
            )),
            Err(ReadFailure::Denied(why)) => {
                let logs = format!("arn:aws:s3:::{}/{}AWSLogs/*", place.bucket, place.key);
                let fix = match &config.read_role {
                    Some(role) => format!(
                        "the read role {}'s policy needs {} and, for SSE-KMS logs, kms:Decrypt \
                         on the trail's key through S3 (templates/log-archive.yaml makes that \
                         role)",
                        role.arn,
                        statement(None, "s3:GetObject", &logs)
                    ),
                    None => {
                        let mut key = json!({
                            "Effect": "Allow", "Principal": {"AWS": principal.policy_arn},
                            "Action": "kms:Decrypt", "Resource": "*",
                            "Condition": {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}},
                        });
                        key["Sid"] = json!("TrailAlertsDecryptsLogs");
                        format!(
                            "add to the bucket's policy {} and, for SSE-KMS logs, to the trail \
                             key's policy {key} (the main stack's outputs \
                             TrailBucketPolicyStatement and TrailKeyPolicyStatement); or set \
                             TRAIL_READ_ROLE_ARN to a read role in the bucket's account",
                            statement(Some(&principal.policy_arn), "s3:GetObject", &logs)
                        )
                    }
                };
                Err(fail(
                    format!("s3:GetObject denied to {reader_name}: {why}"),
                    Some(fix),
                ))
            }
            Err(ReadFailure::Other(why)) => Err(fail(why, None)),
        };
        run.add(format!("read {}", object), started, result);
    }

    // 5. The topics alerts go to.
    let mut topics: Vec<String> = Vec::new();
    let mut add_topic = |t: &str| {
        if !topics.iter().any(|x| x == t) {
            topics.push(t.to_owned());
        }
    };
    if let Some(t) = &config.alert_topic_arn {
        add_topic(t);
    }
    for (t, _) in &config.topic_formats {
        add_topic(t);
    }
    if let Some(rules) = &rules {
        for r in rules.rules() {
            if let Some(t) = &r.topic {
                add_topic(t);
            }
        }
        for route in rules.routes() {
            for t in route.topics.iter().chain(&route.chat_topics) {
                add_topic(t);
            }
        }
    }
    if topics.is_empty() {
        run.skip(
            "topics",
            "no topic configured: ALERT_TOPIC_ARN is unset and no rule names one",
        );
    }
    let sns = aws_sdk_sns::Client::new(sdk);
    for topic in &topics {
        let started = Instant::now();
        let result = check_topic(&sns, topic, &principal).await;
        run.add(format!("topic {topic}"), started, result);
    }

    // 6. The state table.
    match &config.state_table {
        None => run.skip(
            "state table",
            "STATE_TABLE unset: no dedup, thresholds, absence or PagerDuty",
        ),
        Some(table) => {
            let started = Instant::now();
            let result = check_table(
                &aws_sdk_dynamodb::Client::new(sdk),
                table,
                &principal,
                sdk.region().map(|r| r.as_ref()).unwrap_or("*"),
            )
            .await;
            run.add(format!("state table {table}"), started, result);
        }
    }

    // 7. PagerDuty's routing keys: the default service's and every service the routes name.
    let mut services: Vec<(String, String)> = Vec::new();
    if let Some(spec) = &config.pagerduty_secret {
        services.push((spec.clone(), "PAGERDUTY_ROUTING_KEY_SECRET".into()));
    }
    if let Some(rules) = &rules {
        for (spec, origin) in super::pager::services_named(rules) {
            if spec != crate::rules::routes::DEFAULT_SERVICE
                && !services.iter().any(|(s, _)| *s == spec)
            {
                services.push((spec, origin));
            }
        }
    }
    if services.is_empty() {
        run.skip(
            "PagerDuty",
            "PAGERDUTY_ROUTING_KEY_SECRET unset and no route names a PagerDuty service",
        );
    }
    for (spec, named_by) in &services {
        let started = Instant::now();
        let result = match super::ports::aws::read_routing_key(sdk, spec).await {
            Ok(key) => Ok(format!(
                "a routing key of {} characters, sent to {} (named by {named_by})",
                key.chars().count(),
                config.pagerduty_url
            )),
            Err(e) => Err(fail(
                e,
                Some(format!(
                    "{} needs {} on it (named by {named_by}; template.yaml grants \
                     PagerDutyRoutingKeySecret and each of RoutedPagerDutySecrets)",
                    principal.policy_arn,
                    if spec.starts_with("ssm:") {
                        "ssm:GetParameter (and kms:Decrypt for a SecureString's key)"
                    } else {
                        "secretsmanager:GetSecretValue"
                    }
                )),
            )),
        };
        run.add(format!("PagerDuty key {spec}"), started, result);
    }

    // 8. The organisation's central bus.
    match &scope.central_bus {
        None => run.skip(
            "central bus",
            "CENTRAL_EVENT_BUS_ARN unset: no organisation bus",
        ),
        Some(bus) => {
            let started = Instant::now();
            let result = check_bus(
                &aws_sdk_eventbridge::Client::new(sdk),
                bus,
                scope.organization.as_deref(),
                &principal,
            )
            .await;
            run.add(format!("central bus {bus}"), started, result);
        }
    }
    run.checks
}

/// The central bus must exist and admit `events:PutEvents` from the organisation's accounts,
/// and from no one else.
async fn check_bus(
    events: &aws_sdk_eventbridge::Client,
    bus: &str,
    organization: Option<&str>,
    who: &Principal,
) -> Result<String, Failed> {
    let org = organization.unwrap_or("o-…");
    let wanted = json!({
        "Sid": "OrganisationAccountsSendEvents", "Effect": "Allow", "Principal": "*",
        "Action": "events:PutEvents", "Resource": bus,
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": org}},
    });
    let out = events
        .describe_event_bus()
        .name(bus)
        .send()
        .await
        .map_err(|e| match e.code().unwrap_or("") {
            "ResourceNotFoundException" => fail(
                format!("no event bus {bus}"),
                Some(
                    "deploy template.yaml with OrganizationId, or correct CENTRAL_EVENT_BUS_ARN"
                        .to_owned(),
                ),
            ),
            "AccessDeniedException" => fail(
                format!(
                    "{} may not describe the bus: {}",
                    who.policy_arn,
                    describe::chain(&e)
                ),
                Some(format!(
                    "{}'s policy needs {}",
                    who.policy_arn,
                    statement(None, "events:DescribeEventBus", bus)
                )),
            ),
            _ => fail(describe::chain(&e), None),
        })?;
    let policy: Value = out
        .policy()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or(Value::Null);
    let statements: Vec<&Value> = match policy.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    };
    let puts = |s: &Value| {
        s.get("Effect").and_then(Value::as_str) == Some("Allow")
            && s.get("Action").is_some_and(|a| {
                let ok = |x: &str| matches!(x, "events:PutEvents" | "events:*" | "*");
                match a {
                    Value::String(x) => ok(x),
                    Value::Array(xs) => xs.iter().filter_map(Value::as_str).any(ok),
                    _ => false,
                }
            })
    };
    let org_of = |s: &Value| {
        s.pointer("/Condition/StringEquals/aws:PrincipalOrgID")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let everyone = |s: &Value| match s.get("Principal") {
        Some(Value::String(p)) => p == "*",
        Some(Value::Object(m)) => m.get("AWS").and_then(Value::as_str) == Some("*"),
        _ => false,
    };
    let allowing: Vec<&Value> = statements.iter().copied().filter(|s| puts(s)).collect();
    if let Some(open) = allowing
        .iter()
        .find(|s| everyone(s) && s.get("Condition").is_none())
    {
        return Err(fail(
            format!("the bus's policy lets any AWS account put events on it: {open}"),
            Some(format!("replace that statement with {wanted}")),
        ));
    }
    let orgs: Vec<String> = allowing.iter().filter_map(|s| org_of(s)).collect();
    if orgs.is_empty() {
        return Err(fail(
            "the bus's policy admits no account of the organisation: member accounts' and the \
             log-archive account's forwarded events are refused",
            Some(format!("add to the bus's policy {wanted}")),
        ));
    }
    if let Some(expected) = organization {
        if !orgs.iter().any(|o| o == expected) {
            return Err(fail(
                format!(
                    "the bus's policy admits {} but ORGANIZATION_ID is {expected}",
                    orgs.join(", ")
                ),
                Some(format!(
                    "set the statement's aws:PrincipalOrgID to {expected}: {wanted}"
                )),
            ));
        }
    }
    Ok(format!(
        "admits events:PutEvents from the organisation {} only",
        orgs.join(", ")
    ))
}

enum NewestError {
    Empty(usize),
    Denied(String),
    Other(String),
}

/// The newest log under a trail place, found by walking its folders down (AWSLogs/, the
/// organisation, the account, CloudTrail/, the Region, year, month, day) and taking the last
/// of each: a handful of calls however large the bucket. Returns the key and the calls made.
async fn newest_log(
    client: &aws_sdk_s3::Client,
    place: &TrailPlace,
) -> Result<(String, usize), NewestError> {
    let mut prefix = format!("{}AWSLogs/", place.key);
    let mut calls = 0;
    for _ in 0..12 {
        let mut folders: Vec<String> = Vec::new();
        let mut logs: Vec<(String, i64)> = Vec::new();
        let mut token = None;
        loop {
            calls += 1;
            let page = client
                .list_objects_v2()
                .bucket(&place.bucket)
                .prefix(&prefix)
                .delimiter("/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| match crate::s3::fetch_error(e) {
                    crate::s3::FetchError::AccessDenied(why) => {
                        NewestError::Denied(why.trim_end_matches(crate::s3::ACCESS_HINT).to_owned())
                    }
                    other => NewestError::Other(other.to_string()),
                })?;
            folders.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
            logs.extend(page.contents().iter().filter_map(|o| {
                let key = o.key()?;
                let is_log = key.contains("/CloudTrail/")
                    && (key.ends_with(".json.gz") || key.ends_with(".json"));
                is_log.then(|| (key.to_owned(), o.last_modified().map_or(0, |t| t.secs())))
            }));
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        if let Some((key, _)) = logs.iter().max_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0))) {
            return Ok((key.clone(), calls));
        }
        // Digests and Insights are not logs; CloudTrail/ is where they are.
        folders.retain(|f| {
            !f.ends_with("/CloudTrail-Digest/") && !f.ends_with("/CloudTrail-Insight/")
        });
        match folders.into_iter().max() {
            Some(next) => prefix = next,
            None => return Err(NewestError::Empty(calls)),
        }
    }
    Err(NewestError::Empty(calls))
}

enum ReadFailure {
    Denied(String),
    Other(String),
}

/// Reads a log whole (within the function's limits), decompresses it and counts its records.
async fn read_log(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    config: &LambdaConfig,
) -> Result<(usize, usize, Option<String>), ReadFailure> {
    let out = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .map_err(|e| match crate::s3::fetch_error(e) {
            crate::s3::FetchError::AccessDenied(why) => {
                ReadFailure::Denied(why.trim_end_matches(crate::s3::ACCESS_HINT).to_owned())
            }
            other => ReadFailure::Other(other.to_string()),
        })?;
    let kms = out.ssekms_key_id().map(str::to_owned);
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| ReadFailure::Other(format!("reading the body: {e}")))?
        .into_bytes();
    let mut text = Vec::new();
    let limit = config.limits.max_decompressed_bytes;
    let read = if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .take(limit)
            .read_to_end(&mut text)
    } else {
        (&bytes[..]).take(limit).read_to_end(&mut text)
    };
    read.map_err(|e| ReadFailure::Other(format!("decompressing: {e}")))?;
    let doc: Value = serde_json::from_slice(&text)
        .map_err(|e| ReadFailure::Other(format!("not a CloudTrail log: {e}")))?;
    let records = doc
        .get("Records")
        .and_then(Value::as_array)
        .map(Vec::len)
        .ok_or_else(|| ReadFailure::Other("no Records array: not a CloudTrail log".into()))?;
    Ok((bytes.len(), records, kms))
}

/// The statement a policy needs, as JSON text.
fn statement(principal: Option<&str>, action: &str, resource: &str) -> String {
    let mut s = json!({"Effect": "Allow", "Action": action, "Resource": resource});
    if let Some(p) = principal {
        s["Principal"] = json!({"AWS": p});
    }
    s.to_string()
}

/// Whether a policy statement's Principal names this principal (ARN, its role, its account,
/// or everyone).
fn names_principal(principal: &Value, who: &Principal) -> bool {
    let matches = |p: &str| {
        p == "*"
            || p == who.arn
            || p == who.policy_arn
            || p == who.account
            || p.ends_with(&format!(":iam::{}:root", who.account))
    };
    match principal {
        Value::String(s) => matches(s),
        Value::Object(m) => m.get("AWS").is_some_and(|v| match v {
            Value::String(s) => matches(s),
            Value::Array(a) => a.iter().filter_map(Value::as_str).any(matches),
            _ => false,
        }),
        _ => false,
    }
}

fn names_action(action: &Value, wanted: &str) -> bool {
    let matches = |a: &str| {
        let a = a.to_ascii_lowercase();
        a == "*" || a == "sns:*" || a == wanted.to_ascii_lowercase() || a == "sns:pub*"
    };
    match action {
        Value::String(s) => matches(s),
        Value::Array(a) => a.iter().filter_map(Value::as_str).any(matches),
        _ => false,
    }
}

async fn check_topic(
    sns: &aws_sdk_sns::Client,
    topic: &str,
    who: &Principal,
) -> Result<String, Failed> {
    let out = sns
        .get_topic_attributes()
        .topic_arn(topic)
        .send()
        .await
        .map_err(|e| {
            let code = e.code().unwrap_or("").to_owned();
            match code.as_str() {
                "NotFound" => fail(
                    "no such topic",
                    Some(
                        "create it, or correct ALERT_TOPIC_ARN, TOPIC_FORMATS or the rule's topic:"
                            .to_owned(),
                    ),
                ),
                "AuthorizationError" | "AccessDenied" => fail(
                    format!("{} may not read the topic ({code})", who.arn),
                    Some(format!(
                        "doctor reads the topic to judge it; allow {} sns:GetTopicAttributes on \
                         it, or run doctor as a principal that may",
                        who.policy_arn
                    )),
                ),
                _ => fail(describe::chain(&e), None),
            }
        })?;
    let attrs = out.attributes().cloned().unwrap_or_default();
    let owner = attrs
        .get("Owner")
        .cloned()
        .unwrap_or_else(|| topic.split(':').nth(4).unwrap_or("").to_owned());
    let key = attrs
        .get("KmsMasterKeyId")
        .cloned()
        .filter(|k| !k.is_empty());
    let policy: Value = attrs
        .get("Policy")
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or(Value::Null);
    let statements: Vec<&Value> = match policy.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    };
    let effect = |s: &Value, e: &str| s.get("Effect").and_then(Value::as_str) == Some(e);
    let covers = |s: &Value| {
        s.get("Principal").is_some_and(|p| names_principal(p, who))
            && s.get("Action")
                .is_some_and(|a| names_action(a, "sns:Publish"))
    };
    if let Some(deny) = statements
        .iter()
        .copied()
        .find(|s| effect(s, "Deny") && covers(s))
    {
        if deny.get("Condition").is_none() {
            return Err(fail(
                format!(
                    "the topic's policy denies sns:Publish to {}: {}",
                    who.policy_arn, deny
                ),
                Some("remove or narrow that Deny statement in the topic's policy".to_owned()),
            ));
        }
    }
    let other_account = owner != who.account;
    if other_account {
        let allowed = statements
            .iter()
            .copied()
            .any(|s| effect(s, "Allow") && covers(s));
        if !allowed {
            return Err(fail(
                format!(
                    "the topic is account {owner}'s, and its policy allows {} no sns:Publish",
                    who.policy_arn
                ),
                Some(format!(
                    "add to the topic's policy {}",
                    statement(Some(&who.policy_arn), "sns:Publish", topic)
                )),
            ));
        }
        if key.as_deref().is_some_and(|k| k.ends_with("alias/aws/sns")) {
            return Err(fail(
                "the topic is encrypted with the AWS-managed key alias/aws/sns, which no other \
                 account may use",
                Some(format!(
                    "encrypt it with a customer-managed key whose policy allows {} \
                     kms:GenerateDataKey and kms:Decrypt",
                    who.policy_arn
                )),
            ));
        }
    }
    Ok(format!(
        "exists (account {owner}, {}); {}",
        key.map_or_else(|| "not encrypted".to_owned(), |k| format!("key {k}")),
        if other_account {
            "its policy allows this principal sns:Publish"
        } else {
            "its policy denies no sns:Publish; the role's own policy grants it (doctor cannot \
             read that; template.yaml's PublishAlerts)"
        }
    ))
}

async fn check_table(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    who: &Principal,
    region: &str,
) -> Result<String, Failed> {
    let arn = format!("arn:aws:dynamodb:{region}:{}:table/{table}", who.account);
    let key = |k: &str| AttributeValue::S(k.to_owned());
    let failure = |action: &str, code: Option<&str>, chain: String| -> Failed {
        match code.unwrap_or("") {
            "ResourceNotFoundException" => fail(
                format!("no table {table} in {region}"),
                Some("create it (template.yaml's StateTable), or correct STATE_TABLE".to_owned()),
            ),
            "AccessDeniedException" => fail(
                format!("{action} denied to {}: {chain}", who.policy_arn),
                Some(format!(
                    "{}'s policy needs {} (template.yaml's StateStore grants GetItem, \
                     BatchGetItem, PutItem, UpdateItem, Query and BatchWriteItem)",
                    who.policy_arn,
                    statement(None, action, &arn)
                )),
            ),
            "ValidationException" => fail(
                format!("{chain}: the table's keys are not the state store's"),
                Some(
                    "the state table has string keys pk (partition) and sk (sort), as \
                     template.yaml makes it"
                        .to_owned(),
                ),
            ),
            _ => fail(chain, None),
        }
    };
    if let Err(e) = ddb
        .get_item()
        .table_name(table)
        .key("pk", key("doctor"))
        .key("sk", key("doctor"))
        .send()
        .await
    {
        return Err(failure("dynamodb:GetItem", e.code(), describe::chain(&e)));
    }
    let write = ddb
        .put_item()
        .table_name(table)
        .item("pk", key("doctor"))
        .item("sk", key("doctor"))
        .condition_expression("attribute_exists(pk) AND attribute_not_exists(pk)")
        .send()
        .await;
    match write {
        Ok(_) => Err(fail(
            "a write whose condition cannot hold succeeded: this is not DynamoDB's behaviour",
            None,
        )),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(
            "may read and write (a conditional write that could not hold: nothing written)".into(),
        ),
        Err(e) => Err(failure("dynamodb:PutItem", e.code(), describe::chain(&e))),
    }
}

/// The checks as lines for people: `ok`, `FAIL` or `skip`, the check, what was found, the
/// time it took, and under a failure its fix.
pub fn text(checks: &[Check]) -> String {
    let width = checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {} ({} ms)\n",
            c.outcome.word(),
            c.name,
            c.detail,
            c.took.as_millis()
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("      fix: {fix}\n"));
        }
    }
    let failed = checks
        .iter()
        .filter(|c| c.outcome == CheckStatus::Fail)
        .count();
    let passed = checks
        .iter()
        .filter(|c| c.outcome == CheckStatus::Pass)
        .count();
    let skipped = checks.len() - failed - passed;
    let total: Duration = checks.iter().map(|c| c.took).sum();
    out.push_str(&format!(
        "{passed} passed, {failed} failed, {skipped} skipped in {} ms\n",
        total.as_millis()
    ));
    out
}

/// The checks as JSON (the function's answer to `{"doctor": {}}`).
pub fn json(checks: &[Check]) -> Value {
    json!({
        "doctor": checks.iter().map(|c| json!({
            "check": c.name,
            "outcome": c.outcome.word(),
            "detail": c.detail,
            "fix": c.fix,
            "ms": c.took.as_millis() as u64,
        })).collect::<Vec<_>>(),
        "passed": checks.iter().all(|c| c.outcome != CheckStatus::Fail),
    })
}

/// Whether every check passed or was skipped.
pub fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.outcome != CheckStatus::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_behind_a_session_is_what_policies_name() {
        let p = principal_of(
            "arn:aws:sts::123456789012:assumed-role/trail-alerts-Function-1AB/trail-alerts-fn",
            "123456789012",
        );
        assert_eq!(
            p.policy_arn,
            "arn:aws:iam::123456789012:role/trail-alerts-Function-1AB"
        );
        let u = principal_of("arn:aws:iam::123456789012:user/ops", "123456789012");
        assert_eq!(u.policy_arn, "arn:aws:iam::123456789012:user/ops");
    }

    #[test]
    fn topic_policies_are_read_for_the_principal() {
        let who = principal_of(
            "arn:aws:sts::111122223333:assumed-role/fn/s",
            "111122223333",
        );
        for p in [
            json!("*"),
            json!({"AWS": "111122223333"}),
            json!({"AWS": "arn:aws:iam::111122223333:root"}),
            json!({"AWS": ["arn:aws:iam::999999999999:root", "arn:aws:iam::111122223333:role/fn"]}),
        ] {
            assert!(names_principal(&p, &who), "{p}");
        }
        assert!(!names_principal(
            &json!({"AWS": "arn:aws:iam::999999999999:root"}),
            &who
        ));
        assert!(!names_principal(
            &json!({"Service": "cloudwatch.amazonaws.com"}),
            &who
        ));
        assert!(names_action(
            &json!(["sns:Subscribe", "SNS:Publish"]),
            "sns:Publish"
        ));
        assert!(names_action(&json!("sns:*"), "sns:Publish"));
        assert!(!names_action(&json!("sns:Subscribe"), "sns:Publish"));
    }
}
