//! End to end through the real AWS SDK over HTTP, against a local moto server that each test
//! starts on a free loopback port and stops when it ends: a bucket holds trail files, the
//! function's S3 and SNS adapters read and publish, an SQS queue subscribed to the topic receives
//! what a subscriber would. Only 127.0.0.1 is ever contacted.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{json, Value};
use trail_alerts::lambda::ports::aws::{S3Store, SnsPublisher};
use trail_alerts::lambda::{Handler, LambdaConfig};
use trail_alerts::rules::parse_sources;

use crate::util::{
    gzip, loopback_s3, loopback_sdk_config, root, trail, ALL_RULES, K1, K1_RULES, K2, K3,
};

/// A moto server on a free loopback port, killed on drop.
pub(crate) struct Moto {
    child: Child,
    pub(crate) endpoint: String,
}

impl Moto {
    pub(crate) fn start() -> Moto {
        let exe = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .or_else(|| Some(root().join(".venv/bin/moto_server")).filter(|p| p.exists()))
            .unwrap_or_else(|| PathBuf::from("moto_server"));
        Self::launch(Command::new(&exe), &exe)
    }

    /// moto that records every request to `file` once asked to (`POST
    /// /moto-api/recorder/start-recording`): how many calls of a kind a client made.
    pub(crate) fn start_recording(file: &std::path::Path) -> Moto {
        let exe = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .or_else(|| Some(root().join(".venv/bin/moto_server")).filter(|p| p.exists()))
            .unwrap_or_else(|| PathBuf::from("moto_server"));
        let mut command = Command::new(&exe);
        command.env("MOTO_RECORDER_FILEPATH", file);
        Self::launch(command, &exe)
    }

    /// moto with these environment variables (e.g. `MOTO_S3_ALLOW_CROSSACCOUNT_ACCESS=false`,
    /// under which a bucket answers only its own account), recording to `file` once asked to.
    pub(crate) fn start_with(envs: &[(&str, &str)], file: &std::path::Path) -> Moto {
        let exe = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .or_else(|| Some(root().join(".venv/bin/moto_server")).filter(|p| p.exists()))
            .unwrap_or_else(|| PathBuf::from("moto_server"));
        let mut command = Command::new(&exe);
        command
            .env("MOTO_RECORDER_FILEPATH", file)
            .envs(envs.iter().copied());
        Self::launch(command, &exe)
    }

    /// moto answering one request at a time (`scripts/test/moto-serial.py`): each DynamoDB write
    /// atomic, as DynamoDB's are — moto's threaded server can lose one of two updates racing
    /// on an item. For the tests that race invocations on the state store.
    pub(crate) fn start_serial() -> Moto {
        let python = std::env::var_os("MOTO_PYTHON")
            .map(PathBuf::from)
            .or_else(|| Some(root().join(".venv/bin/python")).filter(|p| p.exists()))
            .unwrap_or_else(|| PathBuf::from("python3"));
        let mut command = Command::new(&python);
        command.arg(root().join("scripts/test/moto-serial.py"));
        Self::launch(command, &python)
    }

    fn launch(mut command: Command, exe: &std::path::Path) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} ({e}); run `make setup` to install moto",
                    exe.display()
                )
            });
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {addr} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            endpoint: format!("http://{addr}"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Aws {
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) sns: aws_sdk_sns::Client,
    pub(crate) sqs: aws_sdk_sqs::Client,
}

pub(crate) async fn clients(moto: &Moto) -> Aws {
    let shared = loopback_sdk_config(&moto.endpoint, |l| l).await;
    let s3 = loopback_s3(&shared);
    Aws {
        s3,
        sns: aws_sdk_sns::Client::new(&shared),
        sqs: aws_sdk_sqs::Client::new(&shared),
    }
}

/// A topic with an SQS queue subscribed to it; returns (topic ARN, queue URL).
/// A standard topic of this name (no subscriber): its ARN.
pub(crate) async fn topic(aws: &Aws, name: &str) -> String {
    topic_arn(aws.sns.create_topic().name(name)).await
}

async fn topic_arn(
    create: aws_sdk_sns::operation::create_topic::builders::CreateTopicFluentBuilder,
) -> String {
    create
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .expect("arn")
        .to_owned()
}

pub(crate) async fn topic_with_queue(aws: &Aws, name: &str, fifo: bool) -> (String, String) {
    let suffix = if fifo { ".fifo" } else { "" };
    let mut topic = aws.sns.create_topic().name(format!("{name}{suffix}"));
    let mut queue = aws.sqs.create_queue().queue_name(format!("{name}{suffix}"));
    if fifo {
        topic = topic.attributes("FifoTopic", "true");
        queue = queue.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
    }
    let topic_arn = topic_arn(topic).await;
    let queue_url = queue
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_owned();
    let attrs = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes");
    let queue_arn = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("arn")
        .clone();
    aws.sns
        .subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .expect("subscribe");
    (topic_arn, queue_url)
}

/// Everything that arrives on the queue within a few seconds, as SNS envelopes.
pub(crate) async fn drain(aws: &Aws, queue_url: &str, expected: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = aws
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(if out.len() >= expected { 1 } else { 2 })
            .send()
            .await
            .expect("receive");
        let batch = r.messages();
        for m in batch {
            out.push(serde_json::from_str(m.body().expect("body")).expect("SNS envelope"));
            aws.sqs
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().expect("handle"))
                .send()
                .await
                .expect("delete");
        }
        if (batch.is_empty() && out.len() >= expected) || Instant::now() > deadline {
            return out;
        }
    }
}

pub(crate) async fn upload(aws: &Aws, bucket: &str, key: &str, bytes: Vec<u8>) {
    aws.s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .expect("put");
}

fn handler(aws: &Aws, topic: &str) -> Handler<S3Store, SnsPublisher> {
    crate::util::handler(
        S3Store::new(aws.s3.clone()),
        SnsPublisher::new(aws.sns.clone()),
        LambdaConfig {
            alert_topic_arn: Some(topic.into()),
            ..LambdaConfig::default()
        },
    )
}

/// A moto server with a bucket, a topic and a queue subscribed to it, all named `name`.
struct Stack {
    _moto: Moto,
    aws: Aws,
    bucket: &'static str,
    topic: String,
    queue: String,
}

async fn stack(name: &'static str, fifo: bool) -> Stack {
    let moto = Moto::start();
    let aws = clients(&moto).await;
    aws.s3
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .expect("bucket");
    let (topic, queue) = topic_with_queue(&aws, name, fifo).await;
    Stack {
        _moto: moto,
        aws,
        bucket: name,
        topic,
        queue,
    }
}

/// An `events/` payload pointed at another bucket.
fn payload(file: &str, bucket: &str) -> Value {
    let text = std::fs::read_to_string(root().join("events").join(file)).expect("event");
    serde_json::from_str(&text.replace("trail-alerts-demo", bucket)).expect("json")
}

fn rules_of(messages: &[Value]) -> Vec<String> {
    let mut r: Vec<String> = messages
        .iter()
        .map(|m| {
            m["MessageAttributes"]["rule"]["Value"]
                .as_str()
                .expect("rule attribute")
                .to_owned()
        })
        .collect();
    r.sort();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_shape_publishes_what_a_subscriber_receives() {
    let Stack {
        _moto,
        aws,
        bucket,
        topic,
        queue,
    } = stack("e2e-shapes", false).await;
    for key in [K1, K2, K3] {
        upload(&aws, bucket, key, trail(key)).await;
    }
    let h = handler(&aws, &topic);
    for (file, expected) in [
        ("s3-object-created.json", K1_RULES.to_vec()),
        ("sns-s3-object-created.json", K1_RULES.to_vec()),
        ("sqs-s3-object-created.json", K1_RULES.to_vec()),
        ("sqs-sns-s3-object-created.json", K1_RULES.to_vec()),
        (
            "eventbridge-object-created.json",
            vec!["outposts-call-failed", "outposts-change"],
        ),
        ("cloudtrail-sns-notification.json", ALL_RULES.to_vec()),
        ("sqs-cloudtrail-notification.json", ALL_RULES.to_vec()),
        ("s3-test-event.json", vec![]),
    ] {
        let response = h
            .handle(payload(file, bucket))
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        if let Some(failures) = response.get("batchItemFailures") {
            assert_eq!(failures, &json!([]), "{file}");
        }
        let messages = drain(&aws, &queue, expected.len()).await;
        assert_eq!(rules_of(&messages), expected, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_carries_subject_document_and_attributes() {
    let Stack {
        _moto,
        aws,
        bucket,
        topic,
        queue,
    } = stack("e2e-message", false).await;
    upload(&aws, bucket, K1, trail(K1)).await;
    handler(&aws, &topic)
        .handle(payload("s3-object-created.json", bucket))
        .await
        .expect("ok");
    let messages = drain(&aws, &queue, 4).await;
    let job = messages
        .iter()
        .find(|m| m["MessageAttributes"]["rule"]["Value"] == "backup-job-failed")
        .expect("job alert");
    assert_eq!(job["Type"], "Notification");
    assert_eq!(job["TopicArn"], topic);
    assert_eq!(
        job["Subject"],
        "[HIGH] backup-job-failed: BackupJobCompleted FAILED in 123456789012/us-east-1"
    );
    let attrs = &job["MessageAttributes"];
    for (name, value) in [
        ("severity", "high"),
        ("account", "123456789012"),
        ("region", "us-east-1"),
        ("eventSource", "backup.amazonaws.com"),
        ("eventName", "BackupJobCompleted"),
        ("eventID", "5c1a3e0b-0f7a-4e38-9a55-0d6c3b6f7a01"),
        ("state", "FAILED"),
    ] {
        assert_eq!(
            attrs[name],
            json!({"Type": "String", "Value": value}),
            "{name}"
        );
    }
    let doc: Value =
        serde_json::from_str(job["Message"].as_str().expect("message")).expect("JSON document");
    assert_eq!(
        doc["rule"],
        json!({"id": "backup-job-failed", "description": "An AWS Backup job ended in a state other than COMPLETED (FAILED, ABORTED, EXPIRED, …).", "severity": "high"})
    );
    assert_eq!(doc["source"], json!({"bucket": bucket, "key": K1}));
    assert_eq!(
        doc["event"]["eventID"],
        "5c1a3e0b-0f7a-4e38-9a55-0d6c3b6f7a01"
    );
    assert_eq!(
        doc["record"]["serviceEventDetails"]["statusMessage"],
        "Insufficient privileges to perform this action."
    );
    assert!(doc["summary"]
        .as_str()
        .expect("summary")
        .starts_with("Backup job 9B1C1E55-2D2A-4C0B-8E0C-3C1A9F1B7A42 for EBS resource"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_files_without_matches_publish_nothing_and_org_keys_with_spaces_work() {
    let Stack {
        _moto,
        aws,
        bucket,
        topic,
        queue,
    } = stack("e2e-real", false).await;
    let h = handler(&aws, &topic);
    // Real third-party deliveries (invictus-ir, gzip'd under their delivery keys; trailscraper as
    // published): no Backup or Outposts events.
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(root().join("tests/fixtures/real/invictus")).expect("dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let key = format!("AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10/{name}.gz");
        upload(
            &aws,
            bucket,
            &key,
            gzip(&std::fs::read(&path).expect("read")),
        )
        .await;
        keys.push(key);
    }
    let ts = "AWSLogs/111111111111/CloudTrail/eu-central-1/2017/12/11/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz";
    upload(&aws, bucket, ts, std::fs::read(root().join("tests/fixtures/real/trailscraper/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz")).expect("read")).await;
    keys.push(ts.to_owned());
    let response = h
        .handle(json!({"s3Bucket": bucket, "s3ObjectKey": keys}))
        .await
        .expect("ok");
    assert_eq!(response["objects"], 4);
    assert!(
        response["records"].as_u64().expect("records") > 270,
        "{response}"
    );
    // One alert: the Invictus incident holds Stratus Red Team's "CloudTrail lifecycle rule"
    // detonation (PutBucketLifecycle on its trail bucket, so that the logs expire in a day):
    // trail-bucket-lifecycle-changed, as it should (no ALLOWED_BUCKETS here to narrow it).
    assert_eq!(response["alerts"], 1, "{response}");
    let told = drain(&aws, &queue, 1).await;
    assert_eq!(told.len(), 1);
    assert!(
        told[0]["Subject"]
            .as_str()
            .is_some_and(|s| s.contains("trail-bucket-lifecycle-changed")),
        "{}",
        told[0]["Subject"]
    );

    // An organization trail under a prefix with a space, announced by an S3 notification whose
    // key is form-URL-encoded.
    let key = format!("trail logs/{K2}");
    upload(&aws, bucket, &key, trail(K2)).await;
    let mut event = payload("s3-object-created.json", bucket);
    event["Records"][0]["s3"]["object"]["key"] = json!(format!("trail+logs/{K2}"));
    h.handle(event).await.expect("ok");
    let messages = drain(&aws, &queue, 2).await;
    assert_eq!(
        rules_of(&messages),
        ["backup-org-plan-changed", "backup-org-plan-changed"]
    );
    let doc: Value =
        serde_json::from_str(messages[0]["Message"].as_str().expect("message")).expect("json");
    assert_eq!(doc["source"]["key"], key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_and_buckets_fail_in_seconds_without_retry() {
    let Stack {
        _moto, aws, topic, ..
    } = stack("e2e-missing", false).await;
    let h = handler(&aws, &topic);
    for bucket in ["e2e-missing", "e2e-no-such-bucket"] {
        let started = Instant::now();
        let err = h
            .handle(payload("s3-object-created.json", bucket))
            .await
            .expect_err("missing");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(!err.retryable(), "{err}");
        assert!(err.to_string().contains("no such object"), "{err}");
        assert!(
            err.to_string().contains(&format!("s3://{bucket}/{K1}")),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_topics_deduplicate_a_redelivered_object() {
    let Stack {
        _moto,
        aws,
        bucket,
        topic,
        queue,
    } = stack("e2e-fifo", true).await;
    upload(&aws, bucket, K1, trail(K1)).await;
    let h = handler(&aws, &topic);
    h.handle(payload("s3-object-created.json", bucket))
        .await
        .expect("first delivery");
    h.handle(payload("s3-object-created.json", bucket))
        .await
        .expect("redelivery");
    let messages = drain(&aws, &queue, 4).await;
    assert_eq!(
        rules_of(&messages).len(),
        4,
        "a redelivered object alerts once: {messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_read_from_s3_at_cold_start() {
    let Stack { _moto, aws, .. } = stack("e2e-rules", false).await;
    let doc = "rules:\n  - id: team-rule\n    description: Any DeleteRecoveryPoint\n    severity: critical\n    pattern: {eventName: [DeleteRecoveryPoint]}\n";
    upload(
        &aws,
        "e2e-rules",
        "rules/team.yaml",
        doc.as_bytes().to_vec(),
    )
    .await;
    let sources = parse_sources(&["builtin", "s3://e2e-rules/rules/team.yaml"]);
    let rules = trail_alerts::lambda::ports::aws::load_rules(&aws.s3, &sources)
        .await
        .expect("rules");
    assert_eq!(rules.rules().len(), 39);
    assert_eq!(rules.rules()[38].origin, "s3://e2e-rules/rules/team.yaml");
    let err = trail_alerts::lambda::ports::aws::load_rules(
        &aws.s3,
        &parse_sources(&["s3://e2e-rules/rules/missing.yaml"]),
    )
    .await
    .expect_err("missing")
    .to_string();
    assert!(
        err.starts_with("s3://e2e-rules/rules/missing.yaml: no such object"),
        "{err}"
    );
    upload(&aws, "e2e-rules", "rules/bad.yaml", b"rules:\n  - id: bad\n    description: d\n    severity: high\n    pattern: {eventName: X}\n".to_vec()).await;
    let err = trail_alerts::lambda::ports::aws::load_rules(
        &aws.s3,
        &parse_sources(&["s3://e2e-rules/rules/bad.yaml"]),
    )
    .await
    .expect_err("bad")
    .to_string();
    assert_eq!(err, "s3://e2e-rules/rules/bad.yaml: rule \"bad\" at $.rules[0].pattern.eventName: expected an array of values or a nested object, found a string; write [\"X\"]");
}
