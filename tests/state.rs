//! The state store end to end (issue "Alert management …"): the function's handler with its
//! real S3, SNS and DynamoDB adapters against a local moto server over HTTP, an SQS queue
//! subscribed to the topic receiving what a subscriber would. Dedup within a window and the
//! roll-up on the sweep, a threshold crossed across invocations, suppressions and their expiry,
//! 20 handlers racing on one key, a fault between claim and publish, a lost claim recovered by
//! the sweep, and a throttling store. Only 127.0.0.1 is ever contacted. moto runs through
//! `scripts/test/moto-serial.py` here: its threaded server can lose one of two UpdateItems racing on
//! an item (a roll-up once counted 17 of 19 racing matches), where DynamoDB applies each
//! request atomically.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value};
use trail_alerts::lambda::message::{OutMessage, MAX_BATCH_ENTRIES};
use trail_alerts::lambda::object::PART;
use trail_alerts::lambda::ports::aws::{DynamoState, S3Store, SnsPublisher};
use trail_alerts::lambda::ports::{EntryFailure, PublishCallError, Publisher};
use trail_alerts::lambda::state::Store;
use trail_alerts::lambda::{Handler, LambdaConfig};
use trail_alerts::rules::{parse_rule_document, RuleSet};

use crate::e2e::{clients, drain, topic_with_queue, upload, Aws, Moto};
use crate::util::{gzip, loopback_sdk_config};

const BUCKET: &str = "state-trail";
const TABLE: &str = "trail-alerts-state";
const VOL_A: &str = "arn:aws:ec2:us-east-1:123456789012:volume/vol-a";
const VOL_B: &str = "arn:aws:ec2:us-east-1:123456789012:volume/vol-b";

const RULES: &str = r#"rules:
  - id: job-failed
    description: A backup job failed
    severity: high
    pattern: {eventName: [BackupJobCompleted], serviceEventDetails: {state: [FAILED]}}
    dedup: {key: [serviceEventDetails.resourceArn], window: 1h, fields: [serviceEventDetails.backupJobId]}
  - id: copy-storm
    description: Many copy jobs failed
    severity: medium
    pattern: {eventName: [CopyJobCompleted], serviceEventDetails: {state: [FAILED]}}
    threshold: {count: 3, within: 15m, key: [recipientAccountId]}
"#;

fn job(event_name: &str, id: &str, time: &str, resource: &str) -> Value {
    json!({"eventVersion": "1.05", "eventTime": time, "eventSource": "backup.amazonaws.com",
           "eventName": event_name, "awsRegion": "us-east-1", "eventID": id,
           "eventType": "AwsServiceEvent", "recipientAccountId": "123456789012",
           "userIdentity": {"accountId": "123456789012", "invokedBy": "backup.amazonaws.com"},
           "serviceEventDetails": {"state": "FAILED", "backupJobId": format!("job-{id}"),
                                   "copyJobId": format!("copy-{id}"),
                                   "resourceArn": resource, "resourceType": "EBS"}})
}

/// A moto server with the trail bucket, the state table, and a topic with a queue.
struct Stack {
    moto: Moto,
    aws: Aws,
    dynamodb: aws_sdk_dynamodb::Client,
    topic: String,
    queue: String,
}

async fn stack() -> Stack {
    // One request at a time: DynamoDB's per-request atomicity, which moto's threaded server
    // lacks (two racing UpdateItems on an item can lose one).
    let moto = Moto::start_serial();
    let aws = clients(&moto).await;
    aws.s3
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("bucket");
    let shared = loopback_sdk_config(&moto.endpoint, |l| l).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&shared);
    crate::util::create_state_table(&dynamodb, TABLE).await;
    let (topic, queue) = topic_with_queue(&aws, "state-alerts", false).await;
    Stack {
        moto,
        aws,
        dynamodb,
        topic,
        queue,
    }
}

fn rules(extra: &str) -> Arc<RuleSet> {
    let doc = parse_rule_document("state.yaml", &format!("{RULES}{extra}")).expect("rules");
    Arc::new(
        RuleSet::new(doc.rules)
            .expect("set")
            .with_suppressions(doc.suppressions)
            .expect("suppressions"),
    )
}

fn config(stack: &Stack) -> LambdaConfig {
    LambdaConfig {
        alert_topic_arn: Some(stack.topic.clone()),
        state_table: Some(TABLE.into()),
        ..LambdaConfig::default()
    }
}

fn handler<P: Publisher>(stack: &Stack, rules: &Arc<RuleSet>, publisher: P) -> Handler<S3Store, P> {
    Handler::new(
        Arc::clone(rules),
        S3Store::new(stack.aws.s3.clone()),
        publisher,
        config(stack),
    )
    .expect("handler")
    .with_state(Arc::new(DynamoState::new(stack.dynamodb.clone(), TABLE)))
}

fn sns(stack: &Stack) -> SnsPublisher {
    SnsPublisher::new(stack.aws.sns.clone())
}

/// Uploads a log object of these records and returns the S3 notification for it.
async fn object(stack: &Stack, name: &str, records: &[Value]) -> Value {
    let key = format!(
        "AWSLogs/123456789012/CloudTrail/us-east-1/2024/01/10/123456789012_CloudTrail_us-east-1_20240110T0800Z_{name}.json.gz"
    );
    let body = gzip(json!({"Records": records}).to_string().as_bytes());
    upload(&stack.aws, BUCKET, &key, body).await;
    json!({"s3Bucket": BUCKET, "s3ObjectKey": [key]})
}

fn subjects(messages: &[Value]) -> Vec<String> {
    let mut s: Vec<String> = messages
        .iter()
        .map(|m| m["Subject"].as_str().unwrap_or("").to_owned())
        .collect();
    s.sort();
    s
}

/// Far past every window of 2024: every window is due.
const LATER: i64 = 4_102_444_800;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dedup_within_a_window_rolls_up_on_the_sweep() {
    let stack = stack().await;
    let rules = rules("");
    let h = handler(&stack, &rules, sns(&stack));
    let first = object(
        &stack,
        "a",
        &[
            job("BackupJobCompleted", "e1", "2024-01-10T08:05:00Z", VOL_A),
            job("BackupJobCompleted", "e2", "2024-01-10T08:10:00Z", VOL_A),
            job("BackupJobCompleted", "e3", "2024-01-10T08:15:00Z", VOL_B),
            job("BackupJobCompleted", "e4", "2024-01-10T08:20:00Z", VOL_A),
        ],
    )
    .await;
    let response = h.handle(first.clone()).await.expect("first object");
    assert_eq!(response["published"], 2, "{response}");
    assert_eq!(drain(&stack.aws, &stack.queue, 2).await.len(), 2);
    // A redelivery of the same object publishes nothing again; another object's repeats of the
    // same resource in the same hour are held back too.
    let response = h.handle(first).await.expect("redelivery");
    assert_eq!(response["published"], 0, "{response}");
    let second = object(
        &stack,
        "b",
        &[job(
            "BackupJobCompleted",
            "e5",
            "2024-01-10T08:59:59Z",
            VOL_A,
        )],
    )
    .await;
    assert_eq!(h.handle(second).await.expect("second")["published"], 0);
    assert!(drain(&stack.aws, &stack.queue, 0).await.is_empty());

    // The sweep, once the window is closed: one roll-up for vol-a (3 more), none for vol-b.
    let done = h.sweep(LATER).await.expect("sweep");
    assert_eq!(done.rollups, 1, "{done:?}");
    let got = drain(&stack.aws, &stack.queue, 1).await;
    assert_eq!(
        subjects(&got),
        ["[HIGH] job-failed: 3 more in 2024-01-10T08:00:00Z..2024-01-10T09:00:00Z (roll-up)"]
    );
    let doc: Value =
        serde_json::from_str(got[0]["Message"].as_str().expect("message")).expect("json");
    assert_eq!(doc["record"]["more"], 3);
    assert_eq!(doc["record"]["matches"], 4);
    assert_eq!(doc["record"]["key"], json!([VOL_A]));
    assert_eq!(doc["record"]["firstEventID"], "e1");
    assert_eq!(doc["record"]["lastEventID"], "e5");
    assert_eq!(
        doc["record"]["values"],
        json!([
            "serviceEventDetails.backupJobId=job-e1",
            "serviceEventDetails.backupJobId=job-e2",
            "serviceEventDetails.backupJobId=job-e4",
            "serviceEventDetails.backupJobId=job-e5"
        ])
    );
    // A second sweep tells nothing twice.
    assert_eq!(h.sweep(LATER).await.expect("again").rollups, 0);
    assert!(drain(&stack.aws, &stack.queue, 0).await.is_empty());
    // Before the window closes plus the lateness allowance, nothing is due.
    let early = object(
        &stack,
        "c",
        &[
            job("BackupJobCompleted", "f1", "2024-02-01T10:00:00Z", VOL_A),
            job("BackupJobCompleted", "f2", "2024-02-01T10:01:00Z", VOL_A),
        ],
    )
    .await;
    h.handle(early).await.expect("early");
    drain(&stack.aws, &stack.queue, 1).await;
    let window_end = 1_706_781_600 + 3600;
    assert_eq!(
        h.sweep(window_end + 60).await.expect("too early").rollups,
        0
    );
    assert_eq!(h.sweep(window_end + 15 * 60).await.expect("due").rollups, 1);
    drop(stack.moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_threshold_is_crossed_across_invocations() {
    let stack = stack().await;
    let rules = rules("");
    let h = handler(&stack, &rules, sns(&stack));
    let times = [
        "2024-01-10T08:00:00Z",
        "2024-01-10T08:05:00Z",
        "2024-01-10T08:10:00Z",
        "2024-01-10T08:14:00Z",
    ];
    let mut published = Vec::new();
    for (i, t) in times.iter().enumerate() {
        let id = format!("c{i}");
        let payload = object(&stack, &id, &[job("CopyJobCompleted", &id, t, VOL_A)]).await;
        published.push(h.handle(payload).await.expect("object")["published"].as_u64());
    }
    assert_eq!(published, [Some(0), Some(0), Some(1), Some(0)]);
    let got = drain(&stack.aws, &stack.queue, 1).await;
    assert_eq!(got.len(), 1);
    assert!(got[0]["Subject"]
        .as_str()
        .expect("subject")
        .starts_with("[MEDIUM] copy-storm: CopyJobCompleted FAILED"));
    assert_eq!(
        h.sweep(LATER).await.expect("sweep").rollups,
        1,
        "the fourth is rolled up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suppressions_apply_until_they_expire() {
    let stack = stack().await;
    let suppression = |expires: &str| {
        format!(
            "suppressions:\n  - id: vol-b-migration\n    rules: [job-*]\n    pattern: {{serviceEventDetails: {{resourceArn: [\"{VOL_B}\"]}}}}\n    reason: vol-b is being migrated\n    owner: storage\n    expires: \"{expires}\"\n"
        )
    };
    for (expires, wanted) in [("2999-12-31", 0), ("2020-01-01", 1)] {
        let rules = rules(&suppression(expires));
        let h = handler(&stack, &rules, sns(&stack));
        let id = format!("s-{expires}");
        let payload = object(
            &stack,
            &id,
            &[job(
                "BackupJobCompleted",
                &id,
                "2024-03-01T08:00:00Z",
                VOL_B,
            )],
        )
        .await;
        let response = h.handle(payload).await.expect("object");
        assert_eq!(
            response["published"], wanted,
            "expires {expires}: {response}"
        );
        drain(&stack.aws, &stack.queue, wanted as usize).await;
    }
}

/// Twenty invocations race on one key, each with its own object: one alert, and the sweep's
/// one roll-up tells the other nineteen.
/// Each payload to an invocation of its own, all let go at once: the alerts they published.
async fn race(stack: &Stack, rules: &Arc<RuleSet>, payloads: Vec<Value>) -> u64 {
    let barrier = Arc::new(tokio::sync::Barrier::new(payloads.len()));
    let tasks: Vec<_> = payloads
        .into_iter()
        .map(|payload| {
            let h = handler(stack, rules, sns(stack));
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                h.handle(payload).await.expect("invocation")["published"]
                    .as_u64()
                    .expect("published")
            })
        })
        .collect();
    let mut published = 0;
    for t in tasks {
        published += t.await.expect("task");
    }
    published
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn twenty_racing_invocations_publish_one_alert_and_one_rollup() {
    let stack = stack().await;
    let rules = rules("");
    let mut payloads = Vec::new();
    for i in 0..20 {
        let id = format!("r{i:02}");
        let time = format!("2024-01-10T08:{i:02}:00Z");
        payloads.push(object(&stack, &id, &[job("BackupJobCompleted", &id, &time, VOL_A)]).await);
    }
    let published = race(&stack, &rules, payloads).await;
    assert_eq!(published, 1, "exactly one first alert");
    assert_eq!(drain(&stack.aws, &stack.queue, 1).await.len(), 1);
    let h = handler(&stack, &rules, sns(&stack));
    assert_eq!(h.sweep(LATER).await.expect("sweep").rollups, 1);
    let got = drain(&stack.aws, &stack.queue, 1).await;
    assert_eq!(got.len(), 1);
    assert!(
        got[0]["Subject"]
            .as_str()
            .expect("subject")
            .contains(": 19 more in "),
        "{}",
        got[0]["Subject"]
    );
}

/// Eight invocations race, each with the same 30 new volumes' failures (its own eventIDs):
/// a delivery of that many windows creates the new ones 100 to a transaction, each on
/// condition that it does not exist. Exactly one alert per volume goes out, and every match is
/// counted once (the sweep's roll-ups say 7 more for each volume).
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn racing_deliveries_of_many_new_windows_claim_each_once() {
    let stack = stack().await;
    let rules = rules("");
    const VOLUMES: usize = 30;
    const RACERS: usize = 8;
    let mut payloads = Vec::new();
    for r in 0..RACERS {
        let records: Vec<Value> = (0..VOLUMES)
            .map(|v| {
                let volume = format!("arn:aws:ec2:us-east-1:123456789012:volume/vol-race{v:02}");
                let time = format!("2024-05-01T08:{:02}:{r:02}Z", v);
                job(
                    "BackupJobCompleted",
                    &format!("race-{r}-{v}"),
                    &time,
                    &volume,
                )
            })
            .collect();
        payloads.push(object(&stack, &format!("race{r}"), &records).await);
    }
    let published = race(&stack, &rules, payloads).await;
    assert_eq!(published, VOLUMES as u64, "one alert per volume");
    assert_eq!(
        drain(&stack.aws, &stack.queue, VOLUMES).await.len(),
        VOLUMES
    );
    let h = handler(&stack, &rules, sns(&stack));
    assert_eq!(h.sweep(LATER).await.expect("sweep").rollups, VOLUMES as u64);
    let got = drain(&stack.aws, &stack.queue, VOLUMES).await;
    assert_eq!(got.len(), VOLUMES);
    for m in &got {
        let subject = m["Subject"].as_str().expect("subject");
        assert!(
            subject.contains(&format!(": {} more in ", RACERS - 1)),
            "{subject}"
        );
    }
}

/// SNS fails the calls in `fail` (counted from 0) as retryable; with `told`, the eventIDs of
/// the alerts the real SNS accepted are recorded.
struct Flaky<P> {
    inner: P,
    calls: AtomicU32,
    fail: std::ops::Range<u32>,
    told: Option<Arc<Mutex<Vec<String>>>>,
}

impl<P> Flaky<P> {
    /// Fails the first `n` calls.
    fn first(inner: P, n: u32) -> Self {
        Flaky {
            inner,
            calls: AtomicU32::new(0),
            fail: 0..n,
            told: None,
        }
    }
}

#[async_trait]
impl<P: Publisher> Publisher for Flaky<P> {
    async fn publish_batch(
        &self,
        topic: &str,
        entries: &[OutMessage],
    ) -> Result<Vec<EntryFailure>, PublishCallError> {
        if self
            .fail
            .contains(&self.calls.fetch_add(1, Ordering::SeqCst))
        {
            return Err(PublishCallError {
                message: "InternalError: injected".into(),
                retryable: true,
            });
        }
        let failed = self.inner.publish_batch(topic, entries).await?;
        if let Some(told) = &self.told {
            let mut told = told.lock().expect("told");
            for e in entries
                .iter()
                .filter(|e| failed.iter().all(|f| f.id != e.id))
            {
                let doc: Value = serde_json::from_str(&e.body).expect("alert document");
                told.push(
                    doc["event"]["eventID"]
                        .as_str()
                        .expect("eventID")
                        .to_owned(),
                );
            }
        }
        Ok(failed)
    }
}

/// SNS fails the first publish: the invocation fails, retryable, with its claim taken but not
/// marked; the retry publishes it once, a further redelivery nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fault_between_claim_and_publish_loses_nothing() {
    let stack = stack().await;
    let rules = rules("");
    let flaky = handler(&stack, &rules, Flaky::first(sns(&stack), 1));
    let payload = object(
        &stack,
        "fault",
        &[job(
            "BackupJobCompleted",
            "x1",
            "2024-04-01T08:00:00Z",
            VOL_A,
        )],
    )
    .await;
    let err = flaky
        .handle(payload.clone())
        .await
        .expect_err("publish failed");
    assert!(err.retryable(), "{err}");
    assert!(drain(&stack.aws, &stack.queue, 0).await.is_empty());
    // The retry: the claim is this event's and not published, so it is published now.
    assert_eq!(
        flaky.handle(payload.clone()).await.expect("retry")["published"],
        1
    );
    assert_eq!(drain(&stack.aws, &stack.queue, 1).await.len(), 1);
    assert_eq!(
        flaky.handle(payload).await.expect("redelivery")["published"],
        0
    );
    assert!(drain(&stack.aws, &stack.queue, 0).await.is_empty());

    // A claim whose invocation is never retried: the sweep publishes it from the store.
    let lost = handler(&stack, &rules, Flaky::first(sns(&stack), 1));
    let payload = object(
        &stack,
        "lost",
        &[job(
            "BackupJobCompleted",
            "y1",
            "2024-04-02T08:00:00Z",
            VOL_B,
        )],
    )
    .await;
    lost.handle(payload)
        .await
        .expect_err("publish failed, never retried");
    let done = lost.sweep(LATER).await.expect("sweep");
    assert_eq!(done.recovered, 1, "{done:?}");
    let got = drain(&stack.aws, &stack.queue, 1).await;
    assert_eq!(got.len(), 1);
    let doc: Value =
        serde_json::from_str(got[0]["Message"].as_str().expect("message")).expect("json");
    assert_eq!(doc["event"]["eventID"], "y1");
    assert_eq!(doc["source"]["bucket"], BUCKET);
}

/// An object whose matches are many is told in parts as it is read (memory holds a part, not
/// the object's alerts). A fault between parts fails the delivery; the retry reads the object
/// again, skips the part the first try told (its note in the state store) and tells the rest;
/// a redelivery tells nothing. Rules without dedup keep no claims, so the note is what keeps
/// them from being told twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_object_told_in_parts_resumes_after_a_fault_and_tells_nothing_twice() {
    let stack = stack().await;
    let doc = parse_rule_document(
        "parts.yaml",
        "rules:\n  - id: every-job\n    description: Every backup job\n    severity: low\n    pattern: {eventName: [BackupJobCompleted]}\n",
    )
    .expect("rules");
    let rules = Arc::new(RuleSet::new(doc.rules).expect("set"));
    let n = 2 * PART + 300;
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let volume = format!("arn:aws:ec2:us-east-1:123456789012:volume/vol-{i:08}");
            job(
                "BackupJobCompleted",
                &format!("p{i}"),
                "2024-04-03T08:00:00Z",
                &volume,
            )
        })
        .collect();
    // A topic of its own without a subscriber (moto's fan-out to SQS costs 20 ms a message).
    let topic = crate::e2e::topic(&stack.aws, "parts").await;
    let told = Arc::new(Mutex::new(Vec::new()));
    // The first call of the second part fails (a part is PART alerts, 10 to a call).
    let flaky = |storm_limit: usize| {
        Handler::new(
            Arc::clone(&rules),
            S3Store::new(stack.aws.s3.clone()),
            Flaky {
                inner: sns(&stack),
                calls: AtomicU32::new(0),
                fail: {
                    let at = (PART / MAX_BATCH_ENTRIES) as u32;
                    at..at + 1
                },
                told: Some(Arc::clone(&told)),
            },
            LambdaConfig {
                storm_limit,
                alert_topic_arn: Some(topic.clone()),
                ..config(&stack)
            },
        )
        .expect("handler")
        .with_state(Arc::new(DynamoState::new(stack.dynamodb.clone(), TABLE)))
    };
    let taken = |told: &Arc<Mutex<Vec<String>>>| std::mem::take(&mut *told.lock().expect("told"));

    // Every match an alert (the storm guard's limit above them).
    let payload = object(&stack, "parts", &records).await;
    let handler = flaky(n + 1);
    let err = handler
        .handle(payload.clone())
        .await
        .expect_err("the second part's publish failed");
    assert!(err.retryable(), "{err}");
    assert_eq!(
        told.lock().expect("told").len(),
        PART,
        "the first part, told"
    );
    let retry = handler.handle(payload.clone()).await.expect("retry");
    assert_eq!(retry["published"], (n - PART) as u64, "{retry}");
    let redelivery = handler.handle(payload).await.expect("redelivery");
    assert_eq!(redelivery["published"], 0, "{redelivery}");
    let mut ids = taken(&told);
    assert_eq!(ids.len(), n, "every match told once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no match told twice");

    // With the default storm guard: the first part's alerts, then the rest folded into one
    // storm message at the end (the call that fails); the retry tells the message alone.
    let payload = object(&stack, "parts-storm", &records).await;
    let handler = flaky(PART);
    handler
        .handle(payload.clone())
        .await
        .expect_err("the storm message's publish failed");
    let retry = handler.handle(payload.clone()).await.expect("retry");
    assert_eq!(
        (retry["published"].as_u64(), retry["folded"].as_u64()),
        (Some(1), Some((n - PART) as u64)),
        "{retry}"
    );
    let redelivery = handler.handle(payload).await.expect("redelivery");
    assert_eq!(redelivery["published"], 0, "{redelivery}");
    assert_eq!(
        redelivery["folded"].as_u64().unwrap_or(0),
        0,
        "{redelivery}"
    );
    let ids = taken(&told);
    assert_eq!(ids.len(), PART + 1);
    assert!(ids[PART].starts_with("storm-every-job-"), "{}", ids[PART]);
}

/// A store that throttles every call (a loopback server answering DynamoDB's
/// ProvisionedThroughputExceededException): the invocation fails as retryable and nothing is
/// published.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttling_store_fails_the_invocation_for_a_retry() {
    let stack = stack().await;
    let rules = rules("");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let calls = Arc::new(AtomicU32::new(0));
    let served = Arc::clone(&calls);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            let served = Arc::clone(&served);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read the request head and its body (Content-Length).
                loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= head_end + 4 + len {
                            break;
                        }
                    }
                }
                served.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"Rate of requests exceeds the allowed throughput."}"#;
                let response = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\nx-amzn-requestid: t\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    let throttled =
        aws_sdk_dynamodb::Client::new(&loopback_sdk_config(&format!("http://{addr}"), |l| l).await);
    let h = Handler::new(
        Arc::clone(&rules),
        S3Store::new(stack.aws.s3.clone()),
        sns(&stack),
        config(&stack),
    )
    .expect("handler")
    .with_state(Arc::new(DynamoState::new(throttled, TABLE)) as Arc<dyn Store>);
    let payload = object(
        &stack,
        "throttled",
        &[
            job("BackupJobCompleted", "z1", "2024-05-01T08:00:00Z", VOL_A),
            job("DeleteBackupVault", "z2", "2024-05-01T08:01:00Z", VOL_A),
        ],
    )
    .await;
    let err = h.handle(payload).await.expect_err("the store throttles");
    assert!(err.retryable(), "{err}");
    assert!(
        err.to_string().contains("ProvisionedThroughputExceeded"),
        "{err}"
    );
    assert!(calls.load(Ordering::SeqCst) >= 1);
    assert!(
        drain(&stack.aws, &stack.queue, 0).await.is_empty(),
        "nothing published"
    );
}

/// The state store's cost in wall time, against moto (not a timed test: run it with
/// `cargo test --test integration state_store_cost -- --ignored --nocapture`): one object of 100
/// failures of distinct resources (100 alerts), handled with and without the store, side by
/// side, 5 times each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, run by hand"]
async fn state_store_cost_per_alert() {
    let stack = stack().await;
    let grouped = rules("");
    let plain = {
        let doc = parse_rule_document(
            "plain.yaml",
            "rules:\n  - id: job-failed\n    description: d\n    severity: high\n    pattern: {eventName: [BackupJobCompleted], serviceEventDetails: {state: [FAILED]}}\n",
        )
        .expect("rules");
        Arc::new(RuleSet::new(doc.rules).expect("set"))
    };
    let with_store = handler(&stack, &grouped, sns(&stack));
    let without = Handler::new(
        plain,
        S3Store::new(stack.aws.s3.clone()),
        sns(&stack),
        LambdaConfig {
            alert_topic_arn: Some(stack.topic.clone()),
            ..LambdaConfig::default()
        },
    )
    .expect("handler");
    let (mut t_with, mut t_without) = (Vec::new(), Vec::new());
    for run in 0..5 {
        let records: Vec<Value> = (0..100)
            .map(|i| {
                let id = format!("m{run}-{i}");
                let resource = format!("arn:aws:ec2:us-east-1:123456789012:volume/vol-{run}-{i}");
                job("BackupJobCompleted", &id, "2024-06-01T08:00:00Z", &resource)
            })
            .collect();
        let payload = object(&stack, &format!("cost{run}"), &records).await;
        let started = std::time::Instant::now();
        assert_eq!(
            without.handle(payload.clone()).await.expect("plain")["published"],
            100
        );
        t_without.push(started.elapsed().as_secs_f64());
        let started = std::time::Instant::now();
        assert_eq!(
            with_store.handle(payload).await.expect("store")["published"],
            100
        );
        t_with.push(started.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (w, wo) = (median(&mut t_with), median(&mut t_without));
    println!(
        "100 alerts: without the store {:.0} ms, with it {:.0} ms ({:.2}x; {:.1} ms per alert for the store)",
        wo * 1e3,
        w * 1e3,
        w / wo,
        (w - wo) * 10.0
    );
}

/// Uploads a log of `account` delivered at `stamp` (`YYYYMMDDTHHmmZ`, as CloudTrail names its
/// files) and returns the notification for it.
async fn delivery_at(stack: &Stack, account: &str, stamp: &str, records: &[Value]) -> Value {
    let key = format!(
        "AWSLogs/{account}/CloudTrail/us-east-1/2024/01/01/{account}_CloudTrail_us-east-1_{stamp}_d.json.gz"
    );
    let body = gzip(json!({"Records": records}).to_string().as_bytes());
    upload(&stack.aws, BUCKET, &key, body).await;
    json!({"s3Bucket": BUCKET, "s3ObjectKey": [key]})
}

fn completed(id: &str, time: &str, account: &str, resource: &str) -> Value {
    let mut r = job("BackupJobCompleted", id, time, resource);
    r["recipientAccountId"] = json!(account);
    r["serviceEventDetails"]["state"] = json!("COMPLETED");
    r
}

fn details(messages: &[Value]) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = messages
        .iter()
        .map(|m| {
            let doc: Value =
                serde_json::from_str(m["Message"].as_str().expect("message")).expect("json");
            (
                doc["record"]["detail-type"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                doc["record"]["detail"].clone(),
            )
        })
        .collect();
    out.sort_by_key(|(t, d)| (t.clone(), d.to_string()));
    out
}

/// What did not happen, end to end: heartbeats of an absence rule across deliveries of two
/// accounts, the sweep raising "missing" for a resource whose trail has passed its deadline and
/// for an expected one never seen — but not for the account whose trail is delayed, which
/// raises "trail silent" instead — then resolutions when the heartbeat and the deliveries come
/// back. A second sweep raises nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missed_heartbeats_and_silent_trails_through_the_sweep() {
    let stack = stack().await;
    let vol = |n: &str| format!("arn:aws:ec2:us-east-1:111111111111:volume/{n}");
    let extra = format!(
        "  - id: nightly\n    description: every resource backs up nightly\n    severity: high\n    pattern: {{eventName: [BackupJobCompleted], serviceEventDetails: {{state: [COMPLETED]}}}}\n    absence: {{key: [serviceEventDetails.resourceArn], every: 26h, expect: [\"{}\"]}}\n  - id: trail-silent\n    description: silence\n    severity: high\n    pattern: {{source: [trail-alerts], detail-type: [Trail Silent, Trail Silent Resolved]}}\n",
        vol("vol-c")
    );
    let rules = rules(&extra);
    let h = handler(&stack, &rules, sns(&stack));
    let (a1, a2) = ("111111111111", "222222222222");
    for payload in [
        delivery_at(
            &stack,
            a1,
            "20240101T0300Z",
            &[
                completed("a1", "2024-01-01T02:00:00Z", a1, &vol("vol-a")),
                completed("b1", "2024-01-01T02:00:00Z", a1, &vol("vol-b")),
            ],
        )
        .await,
        delivery_at(
            &stack,
            a2,
            "20240101T0300Z",
            &[completed("z1", "2024-01-01T02:00:00Z", a2, &vol("vol-z"))],
        )
        .await,
        delivery_at(
            &stack,
            a1,
            "20240102T0300Z",
            &[completed("a2", "2024-01-02T02:00:00Z", a1, &vol("vol-a"))],
        )
        .await,
        delivery_at(
            &stack,
            a1,
            "20240103T0300Z",
            &[completed("a3", "2024-01-03T02:00:00Z", a1, &vol("vol-a"))],
        )
        .await,
    ] {
        let response = h.handle(payload).await.expect("delivery");
        assert_eq!(
            response["published"], 0,
            "heartbeats are not alerts: {response}"
        );
    }
    // The sweep, now: acct1's trail reached 2024-01-03T02:00 (the newest eventTime read; the
    // log was delivered at 03:00) — vol-b (last 01-01 02:00) is
    // overdue, and vol-c was expected from the start; acct2's trail stopped at 01-01 03:00, before
    // vol-z's deadline: no missed backup there.
    let now = trail_alerts::policy::now();
    let done = h.sweep(now).await.expect("sweep");
    assert_eq!(done.watched, 2, "{done:?}");
    let got = details(&drain(&stack.aws, &stack.queue, 2).await);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter()
            .all(|(t, d)| t == "Heartbeat Missing" && d["state"] == "MISSING"),
        "{got:?}"
    );
    let keys: Vec<&str> = got
        .iter()
        .map(|(_, d)| d["key"].as_str().expect("key"))
        .collect();
    assert!(
        keys.contains(&format!("[\"{}\"]", vol("vol-b")).as_str()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("[\"{}\"]", vol("vol-c")).as_str()),
        "{keys:?}"
    );
    let b = got
        .iter()
        .find(|(_, d)| d["key"].as_str().is_some_and(|k| k.contains("vol-b")))
        .expect("vol-b");
    assert_eq!(
        (&b.1["lastSeen"], &b.1["overdueSince"], &b.1["watermark"]),
        (
            &json!("2024-01-01T02:00:00Z"),
            &json!("2024-01-02T04:00:00Z"),
            &json!("2024-01-03T02:00:00Z")
        )
    );
    assert_eq!(b.1["alertKey"], format!("nightly|[\"{}\"]", vol("vol-b")));
    // Nothing twice.
    assert_eq!(h.sweep(now).await.expect("again").watched, 0);

    // Seven hours later, neither account has delivered: both trails are silent (and so is the
    // whole pipeline).
    let later = now + 7 * 3600;
    assert_eq!(h.sweep(later).await.expect("silence").watched, 2);
    let got = details(&drain(&stack.aws, &stack.queue, 2).await);
    assert!(
        got.iter()
            .all(|(t, d)| t == "Trail Silent" && d["wholePipeline"] == true),
        "{got:?}"
    );
    assert_eq!(h.sweep(later).await.expect("again").watched, 0);

    // vol-b backs up again, in a new delivery of acct1: the heartbeat resolves its absence and
    // the delivery resolves acct1's silence.
    let back = delivery_at(
        &stack,
        a1,
        "20240104T0300Z",
        &[completed("b4", "2024-01-04T02:00:00Z", a1, &vol("vol-b"))],
    )
    .await;
    let response = h.handle(back).await.expect("back");
    assert_eq!(response["published"], 2, "{response}");
    let got = details(&drain(&stack.aws, &stack.queue, 2).await);
    let types: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        ["Heartbeat Resolved", "Trail Silent Resolved"],
        "{got:?}"
    );
    assert_eq!(
        got[0].1["alertKey"],
        format!("nightly|[\"{}\"]", vol("vol-b"))
    );
    // Overdue from 01-02 04:00 until 01-04 02:00.
    assert_eq!(got[0].1["missingFor"], "46h");
    assert_eq!(got[1].1["alertKey"], "trail-silent|111111111111/us-east-1");
}

/// In the chat format (`TOPIC_FORMATS`), an alert and its roll-up land in one thread: the
/// alert key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_messages_thread_an_alert_with_its_rollup() {
    let stack = stack().await;
    let rules = rules("");
    let h = Handler::new(
        Arc::clone(&rules),
        S3Store::new(stack.aws.s3.clone()),
        sns(&stack),
        LambdaConfig {
            topic_formats: vec![(
                stack.topic.clone(),
                trail_alerts::lambda::message::AlertFormat::Chat,
            )],
            ..config(&stack)
        },
    )
    .expect("handler")
    .with_state(Arc::new(DynamoState::new(stack.dynamodb.clone(), TABLE)));
    let payload = object(
        &stack,
        "chat",
        &[
            job("BackupJobCompleted", "k1", "2024-07-01T08:00:00Z", VOL_A),
            job("BackupJobCompleted", "k2", "2024-07-01T08:10:00Z", VOL_A),
        ],
    )
    .await;
    h.handle(payload).await.expect("object");
    h.sweep(LATER).await.expect("sweep");
    let got = drain(&stack.aws, &stack.queue, 2).await;
    assert_eq!(got.len(), 2);
    let chats: Vec<Value> = got
        .iter()
        .map(|m| serde_json::from_str(m["Message"].as_str().expect("message")).expect("chat json"))
        .collect();
    let threads: Vec<&Value> = chats.iter().map(|c| &c["metadata"]["threadId"]).collect();
    assert_eq!(threads[0], threads[1], "{chats:?}");
    assert_eq!(threads[0], &json!(format!("job-failed|[\"{VOL_A}\"]")));
    let titles: Vec<&str> = chats
        .iter()
        .map(|c| c["content"]["title"].as_str().expect("title"))
        .collect();
    assert!(
        titles
            .iter()
            .any(|t| t.starts_with(":red_circle: [HIGH] job-failed")),
        "{titles:?}"
    );
    assert!(
        titles
            .iter()
            .any(|t| t.starts_with(":repeat: [HIGH] job-failed")),
        "{titles:?}"
    );
}
