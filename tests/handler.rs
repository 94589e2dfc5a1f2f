//! The Lambda handler with in-memory ports: every input shape of `events/`, every skip rule,
//! refused buckets, fetch faults, SNS refusals and retries, FIFO topics.

use std::sync::Arc;

use serde_json::{json, Value};
use trail_alerts::lambda::handler::HandlerError;
use trail_alerts::lambda::ports::fakes::{FakeObjects, FakePublisher, Script};
use trail_alerts::lambda::ports::{FetchError, PublishCallError};
use trail_alerts::lambda::{Handler, LambdaConfig};
use trail_alerts::rules::{parse_document, RuleSet};

use crate::util::{
    builtin, config, event, handler, published_rules, root, s3_event, trails, ALL_RULES, BUCKET,
    K1, K1_RULES, K2,
};

/// Runs a payload with the built-in pack and returns (response, rule ids published, in sorted
/// order, the publisher).
async fn run(
    payload: Value,
    store: FakeObjects,
    publisher: FakePublisher,
) -> (Result<Value, HandlerError>, Vec<String>, Arc<FakePublisher>) {
    let publisher = Arc::new(publisher);
    let result = handler(store, Arc::clone(&publisher), config())
        .handle(payload)
        .await;
    (result, published_rules(&publisher), publisher)
}

#[tokio::test]
async fn every_direct_shape_reads_its_objects() {
    for (file, expected) in [
        ("s3-object-created.json", K1_RULES.to_vec()),
        ("sns-s3-object-created.json", K1_RULES.to_vec()),
        (
            "eventbridge-object-created.json",
            vec!["outposts-call-failed", "outposts-change"],
        ),
        ("cloudtrail-sns-notification.json", ALL_RULES.to_vec()),
        ("s3-test-event.json", vec![]),
    ] {
        let (result, rules, _) = run(event(file), trails(), FakePublisher::default()).await;
        let response = result.unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(rules, expected, "{file}");
        assert_eq!(response["published"], expected.len(), "{file}: {response}");
    }
}

#[tokio::test]
async fn sqs_shapes_answer_with_batch_item_failures() {
    for file in [
        "sqs-s3-object-created.json",
        "sqs-sns-s3-object-created.json",
    ] {
        let (result, rules, _) = run(event(file), trails(), FakePublisher::default()).await;
        assert_eq!(
            result.expect("ok"),
            json!({"batchItemFailures": []}),
            "{file}"
        );
        assert_eq!(rules, K1_RULES, "{file}");
    }
    let (result, rules, _) = run(
        event("sqs-cloudtrail-notification.json"),
        trails(),
        FakePublisher::default(),
    )
    .await;
    assert_eq!(result.expect("ok"), json!({"batchItemFailures": []}));
    assert_eq!(rules.len(), 8);
    // One garbage body among good ones: only it returns to the queue.
    let (result, rules, _) = run(
        event("sqs-partial-garbage.json"),
        trails(),
        FakePublisher::default(),
    )
    .await;
    assert_eq!(
        result.expect("ok"),
        json!({"batchItemFailures": [{"itemIdentifier": "msg-1"}]})
    );
    assert_eq!(rules.len(), 4 + 2);
}

#[tokio::test]
async fn an_object_that_fails_fails_only_its_sqs_message() {
    let mut store = trails();
    store.fail(BUCKET, K2, FetchError::Transient("connection reset".into()));
    let (result, rules, _) = run(
        event("sqs-partial-garbage.json"),
        store,
        FakePublisher::default(),
    )
    .await;
    assert_eq!(
        result.expect("ok"),
        json!({"batchItemFailures": [{"itemIdentifier": "msg-1"}, {"itemIdentifier": "msg-2"}]})
    );
    assert_eq!(rules, K1_RULES);
}

#[tokio::test]
async fn non_log_objects_are_skipped_and_counted_not_failed() {
    let digest = "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2019/01/10/123456789012_CloudTrail-Digest_us-east-1_trail_us-east-1_20190110T135000Z.json.gz";
    let empty = "AWSLogs/123456789012/CloudTrail/us-east-1/2019/01/10/123456789012_CloudTrail_us-east-1_20190110T1355Z_Empty00000000001.json.gz";
    let store = || {
        let mut s = trails();
        s.put(BUCKET, digest, b"{\"logFiles\":[]}".to_vec());
        s.put(BUCKET, empty, Vec::new());
        s
    };
    for key in [
        digest,
        empty,
        "AWSLogs/123456789012/CloudTrail/us-east-1/2019/01/10/",
        "AWSLogs/123456789012/Config/us-east-1/2019/1/10/ConfigSnapshot/123456789012_Config_us-east-1_ConfigSnapshot_20190110T135000Z_x.json.gz",
    ] {
        let (result, rules, publisher) = run(s3_event(BUCKET, key), store(), FakePublisher::default()).await;
        let response = result.unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(response["skippedObjects"], 1, "{key}: {response}");
        assert!(rules.is_empty());
        assert_eq!(*publisher.calls.lock().expect("calls"), 0);
    }
}

#[tokio::test]
async fn keys_with_spaces_plus_and_non_ascii_are_decoded() {
    let key = "my trails+é/AWSLogs/o-exampleorgid/123456789012/CloudTrail/ca-central-1/2020/06/02/123456789012_CloudTrail_ca-central-1_20200602T0035Z_OrgPlanSamples01.json.gz";
    let mut store = FakeObjects::default();
    store.put(
        BUCKET,
        key,
        std::fs::read(root().join("events/trails").join(K2)).expect("trail"),
    );
    let encoded = "my+trails%2B%C3%A9/AWSLogs/o-exampleorgid/123456789012/CloudTrail/ca-central-1/2020/06/02/123456789012_CloudTrail_ca-central-1_20200602T0035Z_OrgPlanSamples01.json.gz";
    let (result, rules, publisher) =
        run(s3_event(BUCKET, encoded), store, FakePublisher::default()).await;
    result.expect("ok");
    assert_eq!(
        rules,
        ["backup-org-plan-changed", "backup-org-plan-changed"]
    );
    let (_, m) = &publisher.messages()[0];
    let doc: Value = serde_json::from_str(&m.body).expect("json");
    assert_eq!(doc["source"], json!({"bucket": BUCKET, "key": key}));
}

#[tokio::test]
async fn refused_buckets_and_missing_objects_fail_without_retry() {
    let publisher = FakePublisher::default();
    let h = handler(
        trails(),
        publisher,
        LambdaConfig {
            allowed_buckets: Some(vec!["only-this-one".into()]),
            ..config()
        },
    );
    let err = h
        .handle(event("s3-object-created.json"))
        .await
        .expect_err("refused");
    assert!(!err.retryable());
    assert!(
        err.to_string()
            .contains("bucket \"trail-alerts-demo\" is not in ALLOWED_BUCKETS"),
        "{err}"
    );
    let d: lambda_runtime::Diagnostic = err.into();
    assert_eq!(d.error_type, "TrailAlerts.NonRetryable");

    let (result, _, _) = run(
        s3_event(BUCKET, &K1.replace("BackupSamples0001", "Missing000000001")),
        trails(),
        FakePublisher::default(),
    )
    .await;
    let err = result.expect_err("missing");
    assert!(!err.retryable());
    assert!(err.to_string().contains("no such object"), "{err}");

    let mut store = trails();
    store.fail(BUCKET, K1, FetchError::Transient("timeout".into()));
    let (result, _, _) = run(
        event("s3-object-created.json"),
        store,
        FakePublisher::default(),
    )
    .await;
    let err = result.expect_err("transient");
    assert!(err.retryable());
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "TrailAlerts.Retryable"
    );
}

#[tokio::test]
async fn a_corrupt_object_is_a_typed_error_naming_it() {
    let mut store = FakeObjects::default();
    let mut bytes = std::fs::read(root().join("events/trails").join(K1)).expect("trail");
    bytes.truncate(bytes.len() / 2);
    store.put(BUCKET, K1, bytes);
    let (result, _, _) = run(
        event("s3-object-created.json"),
        store,
        FakePublisher::default(),
    )
    .await;
    let err = result.expect_err("corrupt");
    assert!(
        err.to_string().contains(&format!(
            "s3://{BUCKET}/{K1}: gzip data is corrupt or truncated"
        )),
        "{err}"
    );
    assert!(!err.retryable());
}

#[tokio::test]
async fn refused_entries_are_retried_alone_and_published_once() {
    let publisher = FakePublisher::scripted(vec![
        Script::Refuse {
            positions: vec![1, 3],
            sender_fault: false,
        },
        Script::Refuse {
            positions: vec![0],
            sender_fault: false,
        },
    ]);
    let (result, rules, publisher) =
        run(event("s3-object-created.json"), trails(), publisher).await;
    result.expect("published in the end");
    assert_eq!(rules, K1_RULES, "each alert exactly once");
    assert_eq!(*publisher.calls.lock().expect("calls"), 3);
}

#[tokio::test]
async fn entries_refused_for_good_fail_the_invocation() {
    let always: Vec<Script> = (0..10)
        .map(|_| Script::Refuse {
            positions: vec![0],
            sender_fault: false,
        })
        .collect();
    let (result, _, _) = run(
        event("s3-object-created.json"),
        trails(),
        FakePublisher::scripted(always),
    )
    .await;
    let err = result.expect_err("refused");
    assert!(err.retryable());
    assert!(
        err.to_string().contains("refused by SNS after 4 attempts"),
        "{err}"
    );

    let (result, _, publisher) = run(
        event("s3-object-created.json"),
        trails(),
        FakePublisher::scripted(vec![Script::Refuse {
            positions: vec![2],
            sender_fault: true,
        }]),
    )
    .await;
    let err = result.expect_err("sender fault");
    assert!(!err.retryable());
    assert_eq!(
        *publisher.calls.lock().expect("calls"),
        1,
        "sender faults are not retried"
    );

    let (result, _, _) = run(
        event("s3-object-created.json"),
        trails(),
        FakePublisher::scripted(vec![Script::Fail(PublishCallError {
            message: "Throttling: Rate exceeded".into(),
            retryable: true,
        })]),
    )
    .await;
    let err = result.expect_err("call failed");
    assert!(err.retryable());
    assert!(
        err.to_string().contains("Throttling: Rate exceeded"),
        "{err}"
    );
}

#[tokio::test]
async fn rule_topics_fifo_ids_and_missing_topics() {
    let doc = "rules:\n  - id: to-fifo\n    description: d\n    severity: high\n    topic: arn:aws:sns:us-east-1:123456789012:alerts.fifo\n    pattern: {eventName: [BackupJobCompleted], serviceEventDetails: {state: [FAILED]}}\n";
    let rules =
        Arc::new(RuleSet::new(parse_document("fifo.yaml", doc).expect("rules")).expect("set"));
    let publisher = Arc::new(FakePublisher::default());
    let h = Handler::new(
        Arc::clone(&rules),
        trails(),
        Arc::clone(&publisher),
        LambdaConfig {
            alert_topic_arn: None,
            ..config()
        },
    )
    .expect("own topics suffice");
    h.handle(event("s3-object-created.json")).await.expect("ok");
    let messages = publisher.messages();
    assert_eq!(messages.len(), 1);
    let (topic, m) = &messages[0];
    assert_eq!(topic, "arn:aws:sns:us-east-1:123456789012:alerts.fifo");
    assert_eq!(m.group_id.as_deref(), Some("to-fifo"));
    assert_eq!(
        m.dedup_id.as_deref(),
        Some("to-fifo:5c1a3e0b-0f7a-4e38-9a55-0d6c3b6f7a01")
    );

    let err = Handler::new(
        builtin(),
        trails(),
        FakePublisher::default(),
        LambdaConfig {
            alert_topic_arn: None,
            ..config()
        },
    )
    .err()
    .expect("no topic");
    assert_eq!(
        err.to_string(),
        "rule \"backup-job-failed\" has no topic and ALERT_TOPIC_ARN is not set"
    );
}

#[tokio::test]
async fn unknown_payloads_fail_without_retry() {
    let h = handler(trails(), FakePublisher::default(), config());
    let err = h
        .handle(json!({"hello": "world"}))
        .await
        .expect_err("unknown");
    assert!(!err.retryable());
    assert!(
        err.to_string().starts_with("unknown payload shape"),
        "{err}"
    );
}

/// Suppressions need no state: the function applies them to every alert before publishing,
/// and the built-in pack's dedup defaults (which need a state store the function does not have
/// yet) fall back to one alert per match.
#[tokio::test]
async fn suppressions_apply_in_the_function_and_builtin_dedup_falls_back() {
    let doc = r#"rules:
  - id: any-backup-failure
    description: d
    severity: high
    pattern: {eventSource: [backup.amazonaws.com], serviceEventDetails: {state: [FAILED]}}
suppressions:
  - id: copy-jobs-under-repair
    rules: [any-*, backup-copy-job-failed]
    pattern: {eventName: [CopyJobCompleted]}
    reason: the DR vault is being rebuilt
    owner: backup-team
    expires: 2999-01-01
"#;
    let mut rules = RuleSet::load(&[trail_alerts::rules::RuleSource::Builtin])
        .expect("builtin")
        .rules()
        .to_vec();
    let parsed = trail_alerts::rules::parse_rule_document("s.yaml", doc).expect("doc");
    rules.extend(parsed.rules);
    let set = RuleSet::new(rules)
        .expect("set")
        .with_suppressions(parsed.suppressions)
        .expect("suppressions");
    let publisher = Arc::new(FakePublisher::default());
    let h = Handler::new(Arc::new(set), trails(), Arc::clone(&publisher), config())
        .expect("the built-in dedup defaults do not stop the start");
    let response = h.handle(event("s3-object-created.json")).await.expect("ok");
    let mut published = published_rules(&publisher);
    published.dedup();
    // The copy job failure is silenced for both rules; the backup job and restore failures are not.
    assert_eq!(
        published,
        [
            "any-backup-failure",
            "backup-destructive-call",
            "backup-job-failed",
            "backup-restore-failed"
        ],
        "{response}"
    );
}

/// Log tamper: a trail log removed from its bucket (an `ObjectRemoved` notification, or S3's
/// own `Object Deleted` event on EventBridge) raises trail-log-deleted, naming the object and the
/// deleter; a lifecycle expiry of logs at least `TRAIL_LOG_EXPIRY_DAYS` old stays quiet (counted
/// as an ignored notification), one of a younger log does not; another object's removal raises
/// nothing.
#[tokio::test]
async fn a_deleted_trail_log_is_an_alert_unless_the_declared_expiry_removed_it() {
    let log = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/01/10/123456789012_CloudTrail_us-east-1_20240110T0855Z_abc.json.gz";
    let removal = |name: &str, key: &str, time: &str| {
        let mut e = s3_event(BUCKET, key);
        e["Records"][0]["eventName"] = json!(name);
        e["Records"][0]["eventTime"] = json!(time);
        e["Records"][0]["userIdentity"] = json!({"principalId": "AWS:AIDAINTRUDER"});
        e["Records"][0]["requestParameters"] = json!({"sourceIPAddress": "203.0.113.9"});
        e
    };
    let publisher = Arc::new(FakePublisher::default());
    let h = Handler::new(
        builtin(),
        trails(),
        Arc::clone(&publisher),
        LambdaConfig {
            trail_log_expiry_days: Some(90),
            ..config()
        },
    )
    .expect("handler");
    h.handle(removal(
        "ObjectRemoved:Delete",
        log,
        "2024-01-10T09:00:00.000Z",
    ))
    .await
    .expect("handled");
    let messages = publisher.messages();
    assert_eq!(published_rules(&publisher), ["trail-log-deleted"]);
    let body: Value = serde_json::from_str(&messages[0].1.body).expect("json");
    let summary = body["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!("s3://{BUCKET}/{log}"))
            && summary.contains("AIDAINTRUDER")
            && summary.contains("203.0.113.9"),
        "{summary}"
    );
    assert!(
        messages[0]
            .1
            .subject
            .starts_with("[CRITICAL] trail-log-deleted"),
        "{}",
        messages[0].1.subject
    );

    // The declared expiry: 90 days after the log's day, quiet.
    let response = h
        .handle(removal(
            "LifecycleExpiration:Delete",
            log,
            "2024-04-10T00:00:00.000Z",
        ))
        .await
        .expect("handled");
    assert_eq!(response["ignoredNotifications"], 1, "{response}");
    assert_eq!(publisher.messages().len(), 1);
    // A lifecycle expiry after 2 days is not the one declared.
    h.handle(removal(
        "LifecycleExpiration:Delete",
        log,
        "2024-01-12T00:00:00.000Z",
    ))
    .await
    .expect("handled");
    assert_eq!(publisher.messages().len(), 2);
    // S3's own Object Deleted event, on EventBridge.
    let eb = json!({"version": "0", "id": "2ee9cc15-d022-99ea-1fb8-1b1bac4850f9", "detail-type": "Object Deleted",
        "source": "aws.s3", "account": "123456789012", "time": "2024-01-10T09:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{BUCKET}")],
        "detail": {"version": "0", "bucket": {"name": BUCKET}, "object": {"key": log, "sequencer": "617f08299329d189"},
            "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "source-ip-address": "203.0.113.9",
            "reason": "DeleteObject", "deletion-type": "Permanently Deleted"}});
    h.handle(eb).await.expect("handled");
    assert_eq!(publisher.messages().len(), 3);
    // Another object's removal: nothing.
    h.handle(removal(
        "ObjectRemoved:Delete",
        "reports/summary.json.gz",
        "2024-01-10T09:00:00.000Z",
    ))
    .await
    .expect("handled");
    assert_eq!(publisher.messages().len(), 3);
}

/// A mass deletion of trail logs pages once: with the state store, the first deletion is an
/// alert at once and the others of the next 15 minutes wait for the bucket's grouped
/// notification (`group:` on trail-log-deleted), each log counted.
#[tokio::test]
async fn a_mass_deletion_of_trail_logs_is_one_alert_and_a_group() {
    let publisher = Arc::new(FakePublisher::default());
    let h = Handler::new(
        builtin(),
        trails(),
        Arc::clone(&publisher),
        LambdaConfig {
            state_table: Some("memory".into()),
            ..config()
        },
    )
    .expect("handler")
    .with_state(Arc::new(trail_alerts::lambda::state::MemoryState::default()));
    let mut grouped = 0;
    for n in 0..20 {
        let key = format!("AWSLogs/123456789012/CloudTrail/us-east-1/2024/01/10/123456789012_CloudTrail_us-east-1_20240110T0855Z_{n:03}.json.gz");
        let mut e = s3_event(BUCKET, &key);
        e["Records"][0]["eventName"] = json!("ObjectRemoved:Delete");
        e["Records"][0]["eventTime"] = json!("2024-01-10T09:00:00.000Z");
        let response = h.handle(e).await.expect("handled");
        grouped += response["grouped"].as_u64().unwrap_or(0);
    }
    assert_eq!(
        published_rules(&publisher),
        ["trail-log-deleted"],
        "one alert now"
    );
    assert_eq!(grouped, 19, "the others wait for the group's notification");
}
