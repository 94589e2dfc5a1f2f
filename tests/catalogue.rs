//! The catalogue of hostile or broken input, through the Lambda handler (in-memory ports): each
//! class with its documented outcome — the error text that names the object, or a skip — and
//! never a panic. The command line's view of the same classes is in `cli.rs`.

use serde_json::{json, Value};
use trail_alerts::lambda::ports::fakes::{FakeObjects, FakePublisher};
use trail_alerts::lambda::LambdaConfig;
use trail_alerts::reader::Limits;

use crate::util::{config, event, gzip, handler, json_fixture, trail, BUCKET, K1};

const LOG_KEY: &str = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/01/01/123456789012_CloudTrail_us-east-1_20240101T0000Z_Catalogue0000001.json.gz";

/// What the function must do with an object.
enum Outcome {
    /// Fails, non-retryable, with this text in the error (which also names the object).
    Fails(&'static str),
    /// Succeeds, skipping the object (not a log, or empty).
    SkippedObject,
    /// Succeeds with these counts: records read, records skipped, alerts published.
    Reads {
        records: u64,
        skipped: u64,
        published: u64,
    },
}

fn failed_job(id: &str) -> Value {
    let mut r = json_fixture("docs/BackupJobCompleted.json")["record"].clone();
    r["serviceEventDetails"]["state"] = json!("FAILED");
    r["eventID"] = json!(id);
    r
}

fn s3_event(key_encoded: &str) -> Value {
    let mut e = event("s3-object-created.json");
    e["Records"][0]["s3"]["object"]["key"] = json!(key_encoded);
    e
}

async fn run(key: &str, bytes: Vec<u8>, payload: Value, limits: Limits) -> Result<Value, String> {
    let mut store = FakeObjects::default();
    store.put(BUCKET, key, bytes);
    let config = LambdaConfig { limits, ..config() };
    handler(store, FakePublisher::default(), config)
        .handle(payload)
        .await
        .map_err(|e| {
            assert!(!e.retryable(), "{e} should not be retried");
            e.to_string()
        })
}

#[tokio::test]
async fn every_class_of_bad_object_has_its_documented_outcome() {
    let good = serde_json::to_vec(&json!({"Records": [failed_job("ok-1")]})).expect("json");
    let mut truncated = gzip(&good);
    truncated.truncate(truncated.len() / 2);
    let bomb = gzip(
        format!(
            r#"{{"Records":[{}]}}"#,
            vec![r#"{"eventName":"x"}"#; 200_000].join(",")
        )
        .as_bytes(),
    );
    let ten_mb = {
        let mut r = failed_job("big-1");
        r["requestParameters"] = json!({"blob": "x".repeat(10 << 20)});
        serde_json::to_vec(&json!({"Records": [r, failed_job("after-big")]})).expect("json")
    };
    let deep = format!(
        r#"{{"Records":[{}{}{}, {}]}}"#,
        r#"{"a":"#,
        "[".repeat(10_000) + &"]".repeat(10_000),
        "}",
        failed_job("after-deep")
    );
    let odd_types = json!({"Records": [
        {"eventName": 5, "eventSource": ["backup.amazonaws.com"], "userIdentity": "nobody",
         "serviceEventDetails": {"state": {"nested": true}}, "eventTime": 12},
        failed_job("typed-ok"),
    ]});
    let cases: Vec<(&str, Vec<u8>, Limits, Outcome)> = vec![
        (
            "truncated gzip",
            truncated,
            Limits::default(),
            Outcome::Fails("gzip data is corrupt or truncated"),
        ),
        (
            "a non-gzip binary",
            vec![0x00, 0x9f, 0x92, 0x96, 0xff],
            Limits::default(),
            Outcome::Fails("expected a JSON object ('{'), found byte 0x00"),
        ),
        (
            "invalid JSON",
            b"{\"Records\": [ {\"a\": 1} oops ]}".to_vec(),
            Limits::default(),
            Outcome::Fails("expected ',' or ']' between records"),
        ),
        (
            "valid JSON without Records",
            b"{\"foo\": []}".to_vec(),
            Limits::default(),
            Outcome::Fails("no \"Records\" array; top-level keys: \"foo\""),
        ),
        (
            "Records not an array",
            b"{\"Records\": {\"a\": 1}}".to_vec(),
            Limits::default(),
            Outcome::Fails("\"Records\" at byte 12 is an object, not an array"),
        ),
        (
            "a record that is not an object",
            format!(r#"{{"Records": ["text", {}]}}"#, failed_job("r-1")).into_bytes(),
            Limits::default(),
            Outcome::Reads {
                records: 1,
                skipped: 1,
                published: 1,
            },
        ),
        (
            "fields of unexpected types",
            serde_json::to_vec(&odd_types).expect("json"),
            Limits::default(),
            Outcome::Reads {
                records: 2,
                skipped: 0,
                published: 1,
            },
        ),
        (
            "a 10 MB field",
            gzip(&ten_mb),
            Limits::default(),
            Outcome::Reads {
                records: 2,
                skipped: 0,
                published: 2,
            },
        ),
        (
            "a 10 MB field over MAX_RECORD_BYTES",
            gzip(&ten_mb),
            Limits {
                max_record_bytes: 1 << 20,
                ..Limits::default()
            },
            Outcome::Reads {
                records: 1,
                skipped: 1,
                published: 1,
            },
        ),
        (
            "deeply nested JSON",
            deep.into_bytes(),
            Limits::default(),
            Outcome::Reads {
                records: 1,
                skipped: 1,
                published: 1,
            },
        ),
        (
            "a decompression bomb",
            bomb,
            Limits {
                max_decompressed_bytes: 1 << 20,
                ..Limits::default()
            },
            Outcome::Fails("MAX_DECOMPRESSED_BYTES"),
        ),
        (
            "a 0-byte object",
            Vec::new(),
            Limits::default(),
            Outcome::SkippedObject,
        ),
    ];
    for (name, bytes, limits, outcome) in cases {
        let result = run(LOG_KEY, bytes, s3_event(LOG_KEY), limits).await;
        match outcome {
            Outcome::Fails(text) => {
                let err = result.expect_err(name);
                assert!(err.contains(text), "{name}: {err}");
                assert!(
                    err.contains(&format!("s3://{BUCKET}/{LOG_KEY}")),
                    "{name}: {err}"
                );
            }
            Outcome::SkippedObject => {
                let r = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(r["skippedObjects"], 1, "{name}: {r}");
            }
            Outcome::Reads {
                records,
                skipped,
                published,
            } => {
                let r = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    (
                        r["records"].as_u64(),
                        r["skippedRecords"].as_u64(),
                        r["published"].as_u64()
                    ),
                    (Some(records), Some(skipped), Some(published)),
                    "{name}: {r}"
                );
            }
        }
    }
}

#[tokio::test]
async fn digest_files_and_odd_keys() {
    let digest = "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/01/01/123456789012_CloudTrail-Digest_us-east-1_t_us-east-1_20240101T000000Z.json.gz";
    let r = run(
        digest,
        gzip(b"{\"logFiles\":[]}"),
        s3_event(digest),
        Limits::default(),
    )
    .await
    .expect("skipped");
    assert_eq!(r["skippedObjects"], 1);
    // Spaces, '+', "%2B" and non-ASCII: S3 sends them form-URL-encoded.
    for (raw, encoded) in [
        ("my logs/", "my+logs/"),
        ("a+b/", "a%2Bb/"),
        ("literal%2B/", "literal%252B/"),
        ("journaux-é/", "journaux-%C3%A9/"),
    ] {
        let key = format!("{raw}{K1}");
        let r = run(
            &key,
            trail(K1),
            s3_event(&format!("{encoded}{K1}")),
            Limits::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(r["published"], 4, "{raw}: {r}");
    }
}

#[tokio::test]
async fn unknown_payloads_and_garbage_in_a_batch() {
    let err = run(
        LOG_KEY,
        Vec::new(),
        json!({"detail": "?"}),
        Limits::default(),
    )
    .await
    .expect_err("unknown");
    assert!(err.starts_with("unknown payload shape"), "{err}");
    let err = run(
        LOG_KEY,
        Vec::new(),
        json!(["not", "an", "object"]),
        Limits::default(),
    )
    .await
    .expect_err("array");
    assert!(err.contains("not an object but an array"), "{err}");
    // One garbage body among good ones: only that message fails.
    let r = run(
        K1,
        trail(K1),
        event("sqs-partial-garbage.json"),
        Limits::default(),
    )
    .await;
    // (The third message names an object that is not in this store: it fails too.)
    assert_eq!(
        r.expect("batch"),
        json!({"batchItemFailures": [{"itemIdentifier": "msg-1"}, {"itemIdentifier": "msg-2"}]})
    );
}
