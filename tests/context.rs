//! Alerts that say whose account it is: names, OU paths and tags from AWS Organizations on moto
//! (an organisation with OUs, accounts and tags), through the function's door; a fault of
//! Organizations (a loopback stand-in answering AccessDenied) publishes every alert with the
//! account id alone; and how many Organizations calls 1,000 alerts across 50 accounts cost,
//! with the state table keeping them for the next cold start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use trail_alerts::lambda::accounts::{AccountDirectory, OrgDirectory, DEFAULT_TTL};
use trail_alerts::lambda::ports::aws::{DynamoState, SdkOrganizations};
use trail_alerts::lambda::ports::fakes::{FakeObjects, FakePublisher};
use trail_alerts::lambda::Handler;

use crate::e2e::Moto;
use crate::util::{builtin, config, event, loopback_sdk_config};

/// An organisation on moto: Root → Prod → Payments, Root → Sandbox; `n` accounts spread over
/// them, each tagged with its team. Returns their ids, in order.
async fn organisation(sdk: &aws_config::SdkConfig, n: usize) -> Vec<String> {
    let org = aws_sdk_organizations::Client::new(sdk);
    org.create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("organisation");
    let root = org.list_roots().send().await.expect("roots").roots()[0]
        .id()
        .expect("root id")
        .to_owned();
    let ou = |parent: String, name: &'static str| {
        let org = org.clone();
        async move {
            org.create_organizational_unit()
                .parent_id(parent)
                .name(name)
                .send()
                .await
                .expect("ou")
                .organizational_unit()
                .and_then(|u| u.id())
                .expect("ou id")
                .to_owned()
        }
    };
    let prod = ou(root.clone(), "Prod").await;
    let payments = ou(prod.clone(), "Payments").await;
    let sandbox = ou(root.clone(), "Sandbox").await;
    let mut ids = Vec::new();
    for i in 0..n {
        let (name, team, ou) = match i % 3 {
            0 => (format!("payments-prod-{i}"), "payments", &payments),
            1 => (format!("platform-prod-{i}"), "platform", &prod),
            _ => (format!("sandbox-{i}"), "sandbox", &sandbox),
        };
        let status = org
            .create_account()
            .account_name(&name)
            .email(format!("{name}@example.com"))
            .send()
            .await
            .expect("account");
        let id = status
            .create_account_status()
            .and_then(|s| s.account_id())
            .expect("account id")
            .to_owned();
        org.move_account()
            .account_id(&id)
            .source_parent_id(&root)
            .destination_parent_id(ou)
            .send()
            .await
            .expect("move");
        org.tag_resource()
            .resource_id(&id)
            .tags(
                aws_sdk_organizations::types::Tag::builder()
                    .key("team")
                    .value(team)
                    .build()
                    .expect("tag"),
            )
            .send()
            .await
            .expect("tag");
        ids.push(id);
    }
    ids
}

/// AWS Backup's failed-job event, as the central bus hands it over, from `account`.
fn failed_job(account: &str, n: usize) -> Value {
    let text = event("eventbridge-backup-job-failed.json")
        .to_string()
        .replace("1112233445566", account)
        .replace(
            "710b0398-d48e-f3c3-afca-cfeb2fdaa656",
            &format!("710b0398-0000-0000-0000-{n:012}"),
        );
    serde_json::from_str(&text).expect("event")
}

fn function(
    directory: Arc<dyn AccountDirectory>,
) -> (Handler<FakeObjects, Arc<FakePublisher>>, Arc<FakePublisher>) {
    let publisher = Arc::new(FakePublisher::default());
    let h = Handler::new(
        builtin(),
        FakeObjects::default(),
        Arc::clone(&publisher),
        config(),
    )
    .expect("handler")
    .with_directory(directory);
    (h, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_name_the_account_its_ou_and_tags_from_organizations() {
    let dir = tempfile::tempdir().expect("tmp");
    let moto = Moto::start_with(&[], &dir.path().join("moto.jsonl"));
    let sdk = loopback_sdk_config(&moto.endpoint, |l| l).await;
    let accounts = organisation(&sdk, 3).await;
    let directory = Arc::new(OrgDirectory::new(
        Box::new(SdkOrganizations::new(&sdk, None)),
        DEFAULT_TTL,
    ));
    let (h, publisher) = function(directory.clone());
    for (n, account) in accounts.iter().enumerate() {
        let out = h.handle(failed_job(account, n)).await.expect("handled");
        assert_eq!(out["published"], 1, "{out}");
    }
    let messages = publisher.messages();
    assert_eq!(messages.len(), 3);
    let expected = [
        ("payments-prod-0", "Root/Prod/Payments", "payments"),
        ("platform-prod-1", "Root/Prod", "platform"),
        ("sandbox-2", "Root/Sandbox", "sandbox"),
    ];
    for ((_, m), (account, (name, ou, team))) in messages.iter().zip(accounts.iter().zip(expected))
    {
        // The place first; the event's words cut to the subject's 99 characters.
        let full = format!(
            "[HIGH] backup-event-job-failed: {name} ({account}) us-west-2 Backup Job State Change FAILED"
        );
        let shown = if full.len() <= 99 {
            full
        } else {
            format!("{}...", &full[..96])
        };
        assert_eq!(m.subject, shown);
        assert!(m
            .attributes
            .contains(&("accountName".to_owned(), name.to_owned())));
        let doc: Value = serde_json::from_str(&m.body).expect("document");
        assert_eq!(doc["context"]["account"]["name"], name);
        assert_eq!(doc["context"]["account"]["ou"], ou);
        assert_eq!(doc["context"]["account"]["tags"]["team"], team);
    }
    // ListAccounts once; per account its parents up to the root (OUs remembered) and its tags.
    let calls = directory.calls();
    assert!(calls <= 1 + 3 * 2 + 3 * 2, "{calls} calls");
    // A second alert of the same accounts asks nothing more.
    h.handle(failed_job(&accounts[0], 10))
        .await
        .expect("handled");
    assert_eq!(directory.calls(), calls);
}

/// A stand-in for Organizations on loopback that refuses every call with this error, counting.
fn refusing(code: &'static str, status: u16) -> (String, Arc<AtomicUsize>) {
    crate::util::stand_in(move |_| {
        let body = format!(r#"{{"__type": "{code}", "Message": "refused by the test"}}"#);
        (
            true,
            status,
            "application/x-amz-json-1.1",
            format!("x-amzn-errortype: {code}\r\n"),
            body,
        )
    })
}

/// Organizations refuses (AccessDenied) or throttles: every alert is still published, naming
/// the account by its id; Organizations is asked once and then left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organizations_fault_holds_no_alert_back() {
    for (code, status) in [
        ("AccessDeniedException", 400),
        ("TooManyRequestsException", 400),
    ] {
        let (url, count) = refusing(code, status);
        let sdk = loopback_sdk_config(&url, |l| l).await;
        let directory = Arc::new(OrgDirectory::new(
            Box::new(SdkOrganizations::new(&sdk, None)),
            DEFAULT_TTL,
        ));
        let (h, publisher) = function(directory.clone());
        for n in 0..5 {
            let out = h
                .handle(failed_job("222222222222", n))
                .await
                .expect("published");
            assert_eq!(out["published"], 1, "{code}: {out}");
        }
        let messages = publisher.messages();
        assert_eq!(messages.len(), 5);
        assert!(messages
            .iter()
            .all(|(_, m)| m.subject.ends_with("in 222222222222/us-west-2")
                && !m.attributes.iter().any(|(k, _)| k == "accountName")));
        assert_eq!(directory.faults(), 1, "{code}");
        // The SDK's own retries of a throttled call aside, one ListAccounts for five alerts.
        let asked = count.load(Ordering::SeqCst);
        assert!((1..=3).contains(&asked), "{code}: {asked} requests");
    }
}

/// The cost: 1,000 alerts across 50 accounts, in Organizations calls; then a cold start (a new
/// instance) with the state table's cache: no Organizations call at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_alerts_across_fifty_accounts_cost_one_lookup_each() {
    let dir = tempfile::tempdir().expect("tmp");
    let moto = Moto::start_with(&[], &dir.path().join("moto.jsonl"));
    let sdk = loopback_sdk_config(&moto.endpoint, |l| l).await;
    let accounts = organisation(&sdk, 50).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    crate::util::create_state_table(&ddb, "context-state").await;
    let cache = Arc::new(DynamoState::new(ddb.clone(), "context-state"));
    let directory = Arc::new(
        OrgDirectory::new(Box::new(SdkOrganizations::new(&sdk, None)), DEFAULT_TTL)
            .with_cache(cache.clone()),
    );
    let (h, publisher) = function(directory.clone());
    crate::history::moto_api(&moto.endpoint, "/moto-api/recorder/reset-recording");
    crate::history::moto_api(&moto.endpoint, "/moto-api/recorder/start-recording");
    let started = Instant::now();
    for n in 0..1000 {
        h.handle(failed_job(&accounts[n % 50], n))
            .await
            .expect("handled");
    }
    let took = started.elapsed();
    crate::history::moto_api(&moto.endpoint, "/moto-api/recorder/stop-recording");
    // The requests Organizations received, by action (moto's record of them).
    let mut by_action = std::collections::BTreeMap::<String, usize>::new();
    for line in std::fs::read_to_string(dir.path().join("moto.jsonl"))
        .unwrap_or_default()
        .lines()
    {
        let r: Value = serde_json::from_str(line).unwrap_or_default();
        if let Some(target) = r["headers"]["X-Amz-Target"].as_str() {
            if let Some(action) = target.strip_prefix("AWSOrganizationsV20161128.") {
                *by_action.entry(action.to_owned()).or_default() += 1;
            }
        }
    }
    let requests: usize = by_action.values().sum();
    assert_eq!(
        by_action.get("ListTagsForResource"),
        Some(&50),
        "{by_action:?}"
    );
    assert_eq!(publisher.messages().len(), 1000);
    let calls = directory.calls();
    // ListAccounts (3 pages of 20 in one call of the adapter), each account's ListParents and
    // tags, each OU's name and parent once.
    assert!(calls <= 1 + 50 * 2 + 3 * 2, "{calls} calls");
    assert!(publisher
        .messages()
        .iter()
        .all(|(_, m)| m.attributes.iter().any(|(k, _)| k == "accountName")));

    // A new instance: the state table has them.
    let cold = OrgDirectory::new(Box::new(SdkOrganizations::new(&sdk, None)), DEFAULT_TTL)
        .with_cache(cache);
    let started = Instant::now();
    let found = cold.lookup(&accounts).await;
    let warm_start = started.elapsed();
    assert_eq!(found.len(), 50);
    assert_eq!(cold.calls(), 0, "answered from the state table");
    let empty = OrgDirectory::new(Box::new(SdkOrganizations::new(&sdk, None)), DEFAULT_TTL);
    let started = Instant::now();
    assert_eq!(empty.lookup(&accounts).await.len(), 50);
    let cold_start = started.elapsed();
    eprintln!(
        "1,000 alerts across 50 accounts: {requests} Organizations requests {by_action:?}, \
         {} ms for the 1,000 invocations; a new instance's first lookup of the 50: {} ms from \
         the state table (0 calls), {} ms from Organizations ({} calls)",
        took.as_millis(),
        warm_start.as_millis(),
        cold_start.as_millis(),
        empty.calls()
    );
}

/// Routing to the owner through the function: with the accounts' OU paths and tags from
/// Organizations on moto, `routes:` send the payments team's alerts to its topic and its chat
/// topic (in the chat format), the platform team's (by tag) to theirs, and the sandbox's take the
/// default route; each received on an SQS queue subscribed to its topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_send_each_teams_alerts_to_its_topics() {
    use crate::e2e::{clients, drain, topic_with_queue};
    use trail_alerts::lambda::ports::aws::{S3Store, SnsPublisher};
    use trail_alerts::rules::{RuleSet, RuleSource};

    let dir = tempfile::tempdir().expect("tmp");
    let moto = Moto::start_with(&[], &dir.path().join("moto.jsonl"));
    let sdk = loopback_sdk_config(&moto.endpoint, |l| l).await;
    let aws = clients(&moto).await;
    let accounts = organisation(&sdk, 3).await;
    let (default_topic, default_q) = topic_with_queue(&aws, "default", false).await;
    let (payments, payments_q) = topic_with_queue(&aws, "payments", false).await;
    let (payments_chat, chat_q) = topic_with_queue(&aws, "payments-chat", false).await;
    let (platform, platform_q) = topic_with_queue(&aws, "platform", false).await;
    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        format!(
            "routes:\n  - match: {{ous: [\"Root/Prod/Payments\"]}}\n    to: {{topics: [\"{payments}\"], chat_topics: [\"{payments_chat}\"]}}\n  - match: {{account_tags: {{team: [platform]}}}}\n    to: {{topics: [\"{platform}\"]}}\n"
        ),
    )
    .expect("routes");
    let rules = RuleSet::load(&[RuleSource::Builtin, RuleSource::Path(routes)]).expect("rules");
    let directory = Arc::new(OrgDirectory::new(
        Box::new(SdkOrganizations::new(&sdk, None)),
        DEFAULT_TTL,
    ));
    let h = Handler::new(
        Arc::new(rules),
        S3Store::new(aws.s3.clone()),
        SnsPublisher::new(aws.sns.clone()),
        trail_alerts::lambda::LambdaConfig {
            alert_topic_arn: Some(default_topic.clone()),
            ..config()
        },
    )
    .expect("handler")
    .with_directory(directory);
    for (n, account) in accounts.iter().enumerate() {
        h.handle(failed_job(account, n)).await.expect("handled");
    }
    let account_of = |m: &Value| {
        m["MessageAttributes"]["account"]["Value"]
            .as_str()
            .map(str::to_owned)
    };
    let got = |q: &str, n: usize| {
        let aws = &aws;
        let q = q.to_owned();
        async move { drain(aws, &q, n).await }
    };
    let p = got(&payments_q, 1).await;
    assert_eq!(
        p.iter().map(account_of).collect::<Vec<_>>(),
        [Some(accounts[0].clone())]
    );
    let chat = got(&chat_q, 1).await;
    assert_eq!(chat.len(), 1);
    let body: Value = serde_json::from_str(chat[0]["Message"].as_str().unwrap()).expect("chat");
    assert_eq!(body["content"]["textType"], "client-markdown");
    assert!(body["content"]["title"]
        .as_str()
        .unwrap()
        .contains("payments-prod-0"));
    let pl = got(&platform_q, 1).await;
    assert_eq!(
        pl.iter().map(account_of).collect::<Vec<_>>(),
        [Some(accounts[1].clone())]
    );
    let d = got(&default_q, 1).await;
    assert_eq!(
        d.iter().map(account_of).collect::<Vec<_>>(),
        [Some(accounts[2].clone())]
    );
}

/// A rule object that stops loading does not stop alerting: with the state table, the cold
/// start loads the last rule documents that loaded (kept there by the cold start before),
/// naming the fault; with nothing kept, the fault stops the start as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rule_object_falls_back_to_the_last_one_that_loaded() {
    use trail_alerts::lambda::ports::aws::LastGoodRules;
    use trail_alerts::rules::{RuleSource, S3Object};

    let dir = tempfile::tempdir().expect("tmp");
    let moto = Moto::start_with(&[], &dir.path().join("moto.jsonl"));
    let sdk = loopback_sdk_config(&moto.endpoint, |l| l).await;
    let s3 = crate::util::loopback_s3(&sdk);
    s3.create_bucket()
        .bucket("team-rules")
        .send()
        .await
        .expect("bucket");
    let put = |text: &'static str| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket("team-rules")
                .key("team.yaml")
                .body(text.as_bytes().to_vec().into())
                .send()
                .await
                .expect("put");
        }
    };
    put("rules:\n  - id: team-vault-deleted\n    description: a vault was deleted\n    severity: high\n    pattern: {eventName: [DeleteBackupVault]}\n").await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    crate::util::create_state_table(&ddb, "rules-state").await;
    let sources = [
        RuleSource::Builtin,
        RuleSource::S3(S3Object {
            bucket: "team-rules".into(),
            key: "team.yaml".into(),
        }),
    ];
    let kept = LastGoodRules::new(ddb.clone(), "rules-state");
    let loaded = kept.load(&s3, &sources, 1_000).await.expect("loads");
    assert!(loaded.fallback.is_none());
    assert!(loaded.rules.rule("team-vault-deleted").is_some());

    // A bad upload: the rules as they last loaded, and the fault named.
    put("rules:\n  - id: team-vault-deleted\n    description: a vault was deleted\n    severity: hgih\n    pattern: {eventName: [DeleteBackupVault]}\n").await;
    let loaded = kept
        .load(&s3, &sources, 2_000)
        .await
        .expect("the last good rules");
    let (fault, kept_at) = loaded.fallback.expect("a fallback");
    assert_eq!(kept_at, 1_000);
    assert!(fault.contains("s3://team-rules/team.yaml"), "{fault}");
    assert!(fault.contains("$.rules[0].severity"), "{fault}");
    assert!(loaded.rules.rule("team-vault-deleted").is_some());
    assert!(loaded.rules.rule("backup-job-failed").is_some());

    // A good upload again: loaded as it is, and kept.
    put("rules:\n  - id: team-vault-changed\n    description: a vault changed\n    severity: medium\n    pattern: {eventName: [PutBackupVaultAccessPolicy]}\n").await;
    let loaded = kept.load(&s3, &sources, 3_000).await.expect("loads");
    assert!(loaded.fallback.is_none());
    assert!(loaded.rules.rule("team-vault-changed").is_some());

    // Nothing kept (another table): the fault stops the start, as without a state table.
    crate::util::create_state_table(&ddb, "empty-state").await;
    put("rules: [").await;
    let e = LastGoodRules::new(ddb, "empty-state")
        .load(&s3, &sources, 4_000)
        .await
        .expect_err("nothing to fall back to");
    assert!(e.to_string().contains("not valid YAML"), "{e}");
}

/// An instance on the last good rules tries the current ones at every sweep, and once they load
/// (and pass the start's checks) puts them in force without a new cold start.
#[tokio::test]
async fn the_sweep_puts_the_current_rules_back_in_force_once_they_load() {
    use std::sync::Mutex;
    use trail_alerts::lambda::handler::RuleLoader;
    use trail_alerts::rules::{parse_rule_document, RuleSet};

    struct Attempts(Mutex<Vec<Result<RuleSet, String>>>);
    #[async_trait::async_trait]
    impl RuleLoader for Attempts {
        async fn load(&self) -> Result<RuleSet, String> {
            self.0.lock().unwrap().remove(0)
        }
    }
    let team = |id: &str| {
        let doc = format!(
            "rules:\n  - id: {id}\n    description: d\n    severity: high\n    pattern: {{source: [aws.backup], detail-type: [Backup Job State Change]}}\n"
        );
        RuleSet::new(parse_rule_document("team.yaml", &doc).expect("doc").rules).expect("set")
    };
    let attempts = Arc::new(Attempts(Mutex::new(vec![
        Err("rules: s3://team-rules/team.yaml: $.rules[0].severity: \"hgih\"".into()),
        Ok(team("team-job-failed-now")),
    ])));
    let publisher = Arc::new(FakePublisher::default());
    let h = Handler::new(
        Arc::new(team("team-job-failed-before")),
        FakeObjects::default(),
        Arc::clone(&publisher),
        config(),
    )
    .expect("handler")
    .with_rules_fallback("rules: the first fault".into(), attempts.clone());
    let rule_of = |p: &FakePublisher| {
        p.messages()
            .last()
            .and_then(|(_, m)| {
                m.attributes
                    .iter()
                    .find(|(k, _)| k == "rule")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_default()
    };
    h.handle(failed_job("222222222222", 1))
        .await
        .expect("handled");
    assert_eq!(rule_of(&publisher), "team-job-failed-before");
    // The first sweep: the documents still do not load; the last good rules stay.
    h.handle(event("scheduled-sweep.json"))
        .await
        .expect("sweep");
    h.handle(failed_job("222222222222", 2))
        .await
        .expect("handled");
    assert_eq!(rule_of(&publisher), "team-job-failed-before");
    // The next: they load, and are in force for the invocations after it.
    h.handle(event("scheduled-sweep.json"))
        .await
        .expect("sweep");
    h.handle(failed_job("333333333333", 3))
        .await
        .expect("handled");
    assert_eq!(rule_of(&publisher), "team-job-failed-now");
    assert!(
        attempts.0.lock().unwrap().is_empty(),
        "tried once per sweep"
    );
}

/// Who did it, from real records (Panther's CloudTrail rule tests, `tests/fixtures/real/panther`):
/// every IAM Identity Center session names its person and permission set; every other assumed
/// role its role and session.
#[test]
fn real_records_say_who_did_it() {
    use trail_alerts::alert::context::actor;
    let tests: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::util::fixture(
            "real/panther/panther_cloudtrail_tests.json",
        ))
        .expect("fixture"),
    )
    .expect("json");
    let (mut sso, mut roles) = (0, 0);
    for t in tests.as_array().expect("tests") {
        let log = &t["log"];
        let arn = log["userIdentity"]["arn"].as_str().unwrap_or("");
        let Some((_, rest)) = arn.split_once(":assumed-role/") else {
            continue;
        };
        let (role, session) = rest.split_once('/').unwrap_or((rest, ""));
        let who = actor(log).expect("an actor");
        match role
            .strip_prefix("AWSReservedSSO_")
            .and_then(|r| r.rsplit_once('_'))
        {
            Some((set, _)) if !session.is_empty() => {
                assert_eq!(
                    who,
                    format!("{session} via {set} (IAM Identity Center)"),
                    "{arn}"
                );
                sso += 1;
            }
            _ if !session.is_empty() => {
                assert!(
                    who.starts_with(&format!("role {role} (session {session})")),
                    "{arn}: {who}"
                );
                roles += 1;
            }
            _ => {}
        }
    }
    assert!(
        sso >= 3 && roles >= 10,
        "{sso} Identity Center sessions, {roles} roles"
    );
}
