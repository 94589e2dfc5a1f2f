//! History (issue "History: scan S3 directly, trial rules in shadow, and backfill…"): shadow
//! rules through the function against moto over HTTP — live alerts to SNS, shadow alerts as
//! JSON lines in S3, a retry rewriting the same object, a write failure publishing nothing.

use std::sync::Arc;

use serde_json::{json, Value};
use trail_alerts::lambda::aws::{S3Store, SnsPublisher};
use trail_alerts::lambda::config::s3_prefix;
use trail_alerts::lambda::{Handler, LambdaConfig};
use trail_alerts::rules::{parse_rule_document, RuleSet};

use crate::e2e::{clients, drain, topic_with_queue, upload, Aws, Moto};
use crate::util::root;

const TRAIL: &str = "history-trail";
const SHADOW: &str = "history-shadow";
const SAMPLE: &str = "AWSLogs/123456789012/CloudTrail/us-east-1/2019/01/10/123456789012_CloudTrail_us-east-1_20190110T1350Z_BackupSamples0001.json.gz";

/// The built-in pack and a shadow rule that fires on the sample's DeleteRecoveryPoint (which
/// the pack's live `backup-destructive-call` alerts on too).
fn rules() -> Arc<RuleSet> {
    let mut all = RuleSet::load(&[trail_alerts::rules::RuleSource::Builtin])
        .expect("builtin")
        .rules()
        .to_vec();
    let trial = parse_rule_document(
        "trial.yaml",
        "rules:\n  - id: trial-recovery-point-deleted\n    description: Trial of a narrower deletion rule\n    severity: critical\n    mode: shadow\n    pattern: {eventSource: [backup.amazonaws.com], eventName: [DeleteRecoveryPoint]}\n",
    )
    .expect("trial rule");
    all.extend(trial.rules);
    Arc::new(RuleSet::new(all).expect("set"))
}

async fn set_up(moto: &Moto) -> (Aws, String, String) {
    let aws = clients(moto).await;
    aws.s3
        .create_bucket()
        .bucket(TRAIL)
        .send()
        .await
        .expect("bucket");
    let bytes = std::fs::read(root().join("events/trails").join(SAMPLE)).expect("sample");
    upload(&aws, TRAIL, SAMPLE, bytes).await;
    let (topic, queue) = topic_with_queue(&aws, "history-alerts", false).await;
    (aws, topic, queue)
}

fn handler(aws: &Aws, topic: &str, shadow_prefix: &str) -> Handler<S3Store, SnsPublisher> {
    let config = LambdaConfig {
        alert_topic_arn: Some(topic.to_owned()),
        shadow_prefix: s3_prefix(shadow_prefix),
        ..LambdaConfig::default()
    };
    Handler::new(
        rules(),
        S3Store::new(aws.s3.clone()),
        SnsPublisher::new(aws.sns.clone()),
        config,
    )
    .expect("handler")
    .with_writer(Arc::new(S3Store::new(aws.s3.clone())))
}

async fn shadow_objects(aws: &Aws) -> Vec<(String, String)> {
    let listed = aws
        .s3
        .list_objects_v2()
        .bucket(SHADOW)
        .send()
        .await
        .expect("list");
    let mut out = Vec::new();
    for o in listed.contents() {
        let key = o.key().expect("key").to_owned();
        let body = aws
            .s3
            .get_object()
            .bucket(SHADOW)
            .key(&key)
            .send()
            .await
            .expect("get")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes();
        out.push((key, String::from_utf8(body.to_vec()).expect("utf-8")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_alerts_are_written_to_s3_and_never_published() {
    let moto = Moto::start();
    let (aws, topic, queue) = set_up(&moto).await;
    aws.s3
        .create_bucket()
        .bucket(SHADOW)
        .send()
        .await
        .expect("bucket");
    let h = handler(&aws, &topic, &format!("s3://{SHADOW}/trials"));
    let payload = json!({"s3Bucket": TRAIL, "s3ObjectKey": [SAMPLE]});
    let response = h.handle(payload.clone()).await.expect("invocation");
    assert_eq!(response["published"], 4, "{response}");
    assert_eq!(response["shadow"], 1, "{response}");
    let got = drain(&aws, &queue, 4).await;
    assert_eq!(got.len(), 4);
    assert!(
        got.iter()
            .all(|m| !m["Subject"].as_str().unwrap_or("").contains("trial-")),
        "a shadow alert was published: {got:?}"
    );

    let objects = shadow_objects(&aws).await;
    assert_eq!(objects.len(), 1, "{objects:?}");
    let (key, body) = &objects[0];
    assert!(
        key.starts_with("trials/2019/01/10/") && key.ends_with(".jsonl"),
        "{key}"
    );
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{body}");
    assert_eq!(lines[0]["rule"], "trial-recovery-point-deleted");
    assert_eq!(lines[0]["shadow"], true);
    assert_eq!(lines[0]["eventName"], "DeleteRecoveryPoint");
    assert_eq!(
        lines[0]["file"],
        format!("s3://{TRAIL}/{SAMPLE}"),
        "the line says where the record came from"
    );

    // A retried invocation rewrites the same object: still one object, one line.
    h.handle(payload).await.expect("retry");
    let again = shadow_objects(&aws).await;
    assert_eq!(again, objects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_write_that_fails_publishes_nothing() {
    let moto = Moto::start();
    let (aws, topic, queue) = set_up(&moto).await;
    // The shadow bucket does not exist.
    let h = handler(&aws, &topic, "s3://no-such-shadow-bucket/trials/");
    let err = h
        .handle(json!({"s3Bucket": TRAIL, "s3ObjectKey": [SAMPLE]}))
        .await
        .expect_err("the shadow write fails");
    let text = err.to_string();
    assert!(text.contains("shadow"), "{text}");
    assert!(drain(&aws, &queue, 0).await.is_empty(), "nothing published");
}
