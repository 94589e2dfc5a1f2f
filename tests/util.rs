//! Helpers shared by the integration tests.

#![allow(dead_code)] // Without the `lambda` feature, the function's helpers go unused.

use std::io::Write;
use std::path::{Path, PathBuf};

#[cfg(feature = "lambda")]
pub use function::*;

/// The bucket the sample payloads of `events/` name, and the function's default topic.
pub const BUCKET: &str = "trail-alerts-demo";
pub const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:trail-alerts";

/// The sample trail files of `events/trails`, by key (as in the bucket `trail-alerts-demo`).
pub const K1: &str = "AWSLogs/123456789012/CloudTrail/us-east-1/2019/01/10/123456789012_CloudTrail_us-east-1_20190110T1350Z_BackupSamples0001.json.gz";
pub const K2: &str = "AWSLogs/o-exampleorgid/123456789012/CloudTrail/ca-central-1/2020/06/02/123456789012_CloudTrail_ca-central-1_20200602T0035Z_OrgPlanSamples01.json.gz";
pub const K3: &str = "AWSLogs/111122223333/CloudTrail/us-west-2/2020/08/14/111122223333_CloudTrail_us-west-2_20200814T1635Z_OutpostsSamples1.json.gz";

/// The alerts K1 raises with the built-in pack, by rule id, sorted.
pub const K1_RULES: [&str; 4] = [
    "backup-copy-job-failed",
    "backup-destructive-call",
    "backup-job-failed",
    "backup-restore-failed",
];

/// The alerts all three sample trails raise, by rule id, sorted.
pub const ALL_RULES: [&str; 8] = [
    "backup-copy-job-failed",
    "backup-destructive-call",
    "backup-job-failed",
    "backup-org-plan-changed",
    "backup-org-plan-changed",
    "backup-restore-failed",
    "outposts-call-failed",
    "outposts-change",
];

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// Reads a JSON fixture.
pub fn json_fixture(rel: &str) -> serde_json::Value {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The bytes of a sample trail file.
pub fn trail(key: &str) -> Vec<u8> {
    std::fs::read(root().join("events/trails").join(key)).expect("sample trail")
}

/// An `events/` payload, parsed.
pub fn event(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("events").join(name)).expect("event");
    serde_json::from_str(&text).expect("json")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// The set-ups of the Lambda function's tests.
#[cfg(feature = "lambda")]
mod function {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::{json, Value};
    use trail_alerts::lambda::ports::fakes::{FakeObjects, FakePublisher};
    use trail_alerts::lambda::ports::{ObjectStore, Publisher};
    use trail_alerts::lambda::{Handler, LambdaConfig};
    use trail_alerts::rules::{RuleSet, RuleSource};

    use super::{event, trail, BUCKET, K1, K2, K3, TOPIC};

    /// An SDK configuration that only ever talks to `endpoint` on loopback: region and credentials
    /// are given, so the default chain asks nothing else (no instance metadata).
    pub async fn loopback_sdk_config(
        endpoint: &str,
        loader: impl FnOnce(aws_config::ConfigLoader) -> aws_config::ConfigLoader,
    ) -> aws_config::SdkConfig {
        loader(aws_config::defaults(aws_config::BehaviorVersion::latest()))
            .endpoint_url(endpoint)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await
    }

    /// An S3 client on a loopback configuration, with path-style addressing.
    pub fn loopback_s3(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(config)
                .force_path_style(true)
                .build(),
        )
    }

    /// The built-in pack.
    pub fn builtin() -> Arc<RuleSet> {
        Arc::new(RuleSet::load(&[RuleSource::Builtin]).expect("builtin"))
    }

    /// The function's configuration in the handler tests: the default topic, and back-off short
    /// enough not to slow the tests.
    pub fn config() -> LambdaConfig {
        LambdaConfig {
            alert_topic_arn: Some(TOPIC.into()),
            publish_backoff: Duration::from_millis(1),
            ..LambdaConfig::default()
        }
    }

    /// The three sample trail files, in memory, under their keys in [`BUCKET`].
    pub fn trails() -> FakeObjects {
        let mut store = FakeObjects::default();
        for key in [K1, K2, K3] {
            store.put(BUCKET, key, trail(key));
        }
        store
    }

    /// A handler over these ports with the built-in pack.
    pub fn handler<S: ObjectStore, P: Publisher>(
        store: S,
        publisher: P,
        config: LambdaConfig,
    ) -> Handler<S, P> {
        Handler::new(builtin(), store, publisher, config).expect("handler")
    }

    /// The rule ids of the messages published so far, sorted.
    pub fn published_rules(publisher: &FakePublisher) -> Vec<String> {
        let mut rules: Vec<String> = publisher
            .messages()
            .iter()
            .map(|(_, m)| {
                m.attributes
                    .iter()
                    .find(|(k, _)| k == "rule")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect();
        rules.sort();
        rules
    }

    /// `events/s3-object-created.json` for another bucket and (form-encoded) key.
    pub fn s3_event(bucket: &str, key_encoded: &str) -> Value {
        let mut e = event("s3-object-created.json");
        e["Records"][0]["s3"]["bucket"]["name"] = json!(bucket);
        e["Records"][0]["s3"]["object"]["key"] = json!(key_encoded);
        e
    }

    /// The state store's table as `template.yaml` makes it: string keys `pk` (hash) and `sk`
    /// (range), on demand.
    pub async fn create_state_table(dynamodb: &aws_sdk_dynamodb::Client, name: &str) {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute")
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("key")
        };
        dynamodb
            .create_table()
            .table_name(name)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("table");
    }
}

/// An HTTP server on loopback that answers each request with what `answer` makes of its text:
/// whether to count it, the status, the content type, extra headers and the body. Returns its
/// URL and the count. For the faults moto cannot play (a refused AssumeRole, Organizations
/// throttling).
pub fn stand_in(
    answer: impl Fn(&str) -> (bool, u16, &'static str, String, String) + Send + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 16384];
            let n = s.read(&mut buf).unwrap_or(0);
            let (counted, status, content_type, headers, body) =
                answer(&String::from_utf8_lossy(&buf[..n]));
            if counted {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let _ = write!(
                s,
                "HTTP/1.1 {status} Answer\r\ncontent-type: {content_type}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, count)
}

/// The `trail-alerts` binary, with none of the environment that changes what it prints or reads
/// (limits, terminal width, colour) inherited from the shell running the tests.
pub fn trail_alerts() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("trail-alerts").expect("binary");
    for var in [
        "MAX_DECOMPRESSED_BYTES",
        "MAX_RECORD_BYTES",
        "COLUMNS",
        "NO_COLOR",
        "CLICOLOR_FORCE",
    ] {
        c.env_remove(var);
    }
    c
}
