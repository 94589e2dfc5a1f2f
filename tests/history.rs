//! History (issue "History: scan S3 directly, trial rules in shadow, and backfill…"): shadow
//! rules through the function against moto over HTTP — live alerts to SNS, shadow alerts as
//! JSON lines in S3, a retry rewriting the same object, a write failure publishing nothing.

use std::sync::Arc;

use serde_json::{json, Value};
use trail_alerts::lambda::config::s3_prefix;
use trail_alerts::lambda::ports::aws::{S3Store, SnsPublisher};
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

/// Every object of a bucket, with its text, in key order.
async fn objects_in(aws: &Aws, bucket: &str) -> Vec<(String, String)> {
    let listed = aws
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list");
    let mut out = Vec::new();
    for o in listed.contents() {
        let key = o.key().expect("key").to_owned();
        let body = aws
            .s3
            .get_object()
            .bucket(bucket)
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

    let objects = objects_in(&aws, SHADOW).await;
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
    let again = objects_in(&aws, SHADOW).await;
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

const ORG: &str = "org-history";
const ACCOUNTS: [&str; 2] = ["111122223333", "444455556666"];
const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

/// A failed backup job of `account`/`region` at `time`, and a read-only call beside it.
fn day_records(account: &str, region: &str, time: &str, id: &str) -> Vec<u8> {
    let job = json!({
        "eventVersion": "1.05", "eventTime": time, "eventSource": "backup.amazonaws.com",
        "eventName": "BackupJobCompleted", "awsRegion": region, "eventID": id,
        "eventType": "AwsServiceEvent", "recipientAccountId": account,
        "serviceEventDetails": {"state": "FAILED", "backupJobId": id,
            "resourceArn": format!("arn:aws:ec2:{region}:{account}:volume/vol-{id}"), "resourceType": "EBS"}
    });
    let read = json!({"eventVersion": "1.08", "eventTime": time, "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject", "awsRegion": region, "eventID": format!("{id}-r"), "recipientAccountId": account});
    crate::util::gzip(json!({"Records": [job, read]}).to_string().as_bytes())
}

/// An organisation trail's bucket under `corp/`: two accounts, two Regions, four days
/// (2024-01-08 to 11), a log a day each with one failed backup job at 08:00 — and beside the
/// logs, digest files, folder markers and a stray object.
async fn org_trail(aws: &Aws) {
    aws.s3
        .create_bucket()
        .bucket(ORG)
        .send()
        .await
        .expect("bucket");
    for account in ACCOUNTS {
        for region in REGIONS {
            for day in 8..=11 {
                let base = format!(
                    "corp/AWSLogs/o-exampleorg1/{account}/CloudTrail/{region}/2024/01/{day:02}/"
                );
                let name = format!(
                    "{account}_CloudTrail_{region}_202401{day:02}T0805Z_abcdefghijklmnop.json.gz"
                );
                let id = format!("{account}-{region}-{day}");
                let time = format!("2024-01-{day:02}T08:00:00Z");
                upload(
                    aws,
                    ORG,
                    &format!("{base}{name}"),
                    day_records(account, region, &time, &id),
                )
                .await;
                upload(aws, ORG, &base, Vec::new()).await;
                let digest = format!(
                    "corp/AWSLogs/o-exampleorg1/{account}/CloudTrail-Digest/{region}/2024/01/{day:02}/{account}_CloudTrail-Digest_{region}_trail_{region}_202401{day:02}T0805Z.json.gz"
                );
                upload(aws, ORG, &digest, crate::util::gzip(b"{}")).await;
            }
        }
    }
    upload(
        aws,
        ORG,
        "corp/AWSLogs/o-exampleorg1/111122223333/CloudTrail/us-east-1/2024/01/09/notes.txt",
        b"not a log".to_vec(),
    )
    .await;
}

/// Sends one HTTP request to moto's own API on loopback.
pub(crate) fn moto_api(endpoint: &str, path: &str) {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("moto");
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
}

/// The ListObjectsV2 calls moto recorded since the last reset.
fn list_calls(recording: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(recording)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| {
            r["method"] == "GET" && r["url"].as_str().is_some_and(|u| u.contains("list-type=2"))
        })
        .map(|r| r["url"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn scan_cmd(moto: &Moto) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("trail-alerts").expect("binary");
    c.env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("COLUMNS");
    c
}

/// `scan s3://` against an organisation trail on moto: the listing is narrowed to the days,
/// accounts and Regions asked for (counted in moto's own record of the calls), the logs found
/// are read, everything else beside them is passed over and said, and the alerts are those of
/// the time window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_reads_an_organisation_trail_from_s3_listing_only_the_days_asked_for() {
    let dir = tempfile::tempdir().expect("tmp");
    let recording = dir.path().join("moto-recording.jsonl");
    let moto = Moto::start_recording(&recording);
    let aws = clients(&moto).await;
    org_trail(&aws).await;

    moto_api(&moto.endpoint, "/moto-api/recorder/reset-recording");
    moto_api(&moto.endpoint, "/moto-api/recorder/start-recording");
    let out = scan_cmd(&moto)
        .args([
            "scan",
            "--format",
            "jsonl",
            "--verbose",
            "--since",
            "2024-01-09",
            "--until",
            "2024-01-10",
        ])
        .arg(format!("s3://{ORG}/corp"))
        .assert()
        .success();
    moto_api(&moto.endpoint, "/moto-api/recorder/stop-recording");
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    // Listed: AWSLogs/ (the organisation), the organisation (its accounts), each account's
    // Regions, then the day folders 09, 10 and 11 (the day after --until, for late
    // deliveries) of each account and Region: 1 + 1 + 2 + 2 × 2 × 3.
    let calls = list_calls(&recording);
    assert_eq!(calls.len(), 16, "{calls:#?}");
    assert!(
        calls
            .iter()
            .all(|u| !u.contains("2024%2F01%2F08") && !u.contains("2024/01/08")),
        "the 8th was listed: {calls:#?}"
    );
    assert!(
        stderr.contains("listed 12 logs in 16 ListObjectsV2 calls"),
        "{stderr}"
    );
    // Read: 12 logs; alerted: the failed jobs of the 9th (the 10th's and 11th's fall
    // outside --until); passed over: the folder markers and the stray object, said.
    let alerts: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl"))
        .collect();
    let mut ids: Vec<&str> = alerts
        .iter()
        .map(|a| a["eventID"].as_str().expect("eventID"))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "111122223333-eu-west-1-9",
            "111122223333-us-east-1-9",
            "444455556666-eu-west-1-9",
            "444455556666-us-east-1-9"
        ],
        "{stdout}"
    );
    assert!(alerts.iter().all(|a| a["file"]
        .as_str()
        .is_some_and(|f| f.starts_with(&format!("s3://{ORG}/corp/AWSLogs/o-exampleorg1/")))));
    assert!(
        stderr.contains("passed over s3://org-history/corp/AWSLogs/o-exampleorg1/111122223333/CloudTrail/us-east-1/2024/01/09/notes.txt: not named like a CloudTrail log"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/CloudTrail/us-east-1/2024/01/10/: an S3 folder marker"),
        "{stderr}"
    );

    // One account and one Region: AWSLogs/ once, then that account's day folders only.
    moto_api(&moto.endpoint, "/moto-api/recorder/reset-recording");
    moto_api(&moto.endpoint, "/moto-api/recorder/start-recording");
    let out = scan_cmd(&moto)
        .args([
            "scan",
            "--format",
            "jsonl",
            "--since",
            "2024-01-09",
            "--until",
            "2024-01-10",
        ])
        .args([
            "--account",
            "444455556666",
            "--region",
            "us-east-1",
            "--concurrency",
            "1",
        ])
        .arg(format!("s3://{ORG}/corp/"))
        .assert()
        .success();
    moto_api(&moto.endpoint, "/moto-api/recorder/stop-recording");
    assert_eq!(list_calls(&recording).len(), 1 + 3);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("444455556666-us-east-1-9"), "{stdout}");

    // A prefix down to a Region and a month, no dates: everything under it (4 days).
    let out = scan_cmd(&moto)
        .args(["scan", "-q", "--format", "jsonl"])
        .arg(format!(
            "s3://{ORG}/corp/AWSLogs/o-exampleorg1/111122223333/CloudTrail/eu-west-1/2024/01/"
        ))
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout)
            .lines()
            .count(),
        4
    );

    // --rules from S3.
    upload(
        &aws,
        ORG,
        "rules/mine.yaml",
        b"rules:\n  - id: any-read\n    description: d\n    severity: low\n    pattern: {eventName: [GetObject]}\n".to_vec(),
    )
    .await;
    let out = scan_cmd(&moto)
        .args(["scan", "-q", "--format", "jsonl", "--rules"])
        .arg(format!("s3://{ORG}/rules/mine.yaml"))
        .args(["--since", "2024-01-11", "--until", "2024-01-12"])
        .arg(format!("s3://{ORG}/corp"))
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(
        stdout.lines().all(|l| l.contains("\"rule\":\"any-read\"")),
        "{stdout}"
    );
}

/// A bucket that cannot be listed: the error names the prefix and says a retry cannot help;
/// nothing read is exit 1. A bucket with nothing where the scan looked says where it looked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_says_which_listing_failed_and_whether_a_retry_can_help() {
    let moto = Moto::start();
    let out = scan_cmd(&moto)
        .args([
            "scan",
            "s3://no-such-history-bucket/corp",
            "--since",
            "2024-01-09",
        ])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("listing s3://no-such-history-bucket/corp/AWSLogs/: no such object (NoSuchKey or NoSuchBucket) (retrying cannot help)"),
        "{stderr}"
    );
    let aws = clients(&moto).await;
    aws.s3
        .create_bucket()
        .bucket("empty-history-bucket")
        .send()
        .await
        .expect("bucket");
    let out = scan_cmd(&moto)
        .args([
            "scan",
            "s3://empty-history-bucket/trails",
            "--since",
            "2024-01-09",
        ])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("s3://empty-history-bucket/trails: nothing found under s3://empty-history-bucket/trails/AWSLogs/"),
        "{stderr}"
    );
}

const FINDINGS: &str = "history-findings";

/// A Distributed Map batch as `ItemReader` (ListObjectsV2) and `ItemBatcher` hand it over.
fn batch(keys: &[String], mode: &str) -> Value {
    let items: Vec<Value> = keys
        .iter()
        .map(|k| json!({"Etag": "\"0\"", "Key": k, "LastModified": 1704873600, "Size": 100, "StorageClass": "STANDARD"}))
        .collect();
    json!({"Items": items, "BatchInput": {"bucket": ORG, "mode": mode,
        "output": format!("s3://{FINDINGS}/backfill/"), "run": "exec-0001"}})
}

fn day_keys(day: u32) -> Vec<String> {
    let mut keys = Vec::new();
    for account in ACCOUNTS {
        for region in REGIONS {
            let base = format!(
                "corp/AWSLogs/o-exampleorg1/{account}/CloudTrail/{region}/2024/01/{day:02}/"
            );
            keys.push(base.clone());
            keys.push(format!(
                "{base}{account}_CloudTrail_{region}_202401{day:02}T0805Z_abcdefghijklmnop.json.gz"
            ));
        }
    }
    keys
}

/// The backfill batch shape end to end on moto: S3 in, findings out as JSON lines (nothing
/// published), a summary per batch; a retried batch rewrites the same object; an object that
/// is gone is listed in the summary; S3 Inventory items (with their bucket) read the same; a
/// replay batch publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_batches_write_findings_to_s3_and_publish_nothing() {
    let moto = Moto::start();
    let aws = clients(&moto).await;
    org_trail(&aws).await;
    aws.s3
        .create_bucket()
        .bucket(FINDINGS)
        .send()
        .await
        .expect("bucket");
    let (topic, queue) = topic_with_queue(&aws, "backfill-alerts", false).await;
    let h = handler(&aws, &topic, &format!("s3://{SHADOW}/unused/"));

    let mut keys = day_keys(9);
    keys.push(
        "corp/AWSLogs/o-exampleorg1/111122223333/CloudTrail/us-east-1/2024/01/09/gone.json.gz"
            .into(),
    );
    keys.push("corp/AWSLogs/o-exampleorg1/111122223333/CloudTrail/us-east-1/2024/01/09/111122223333_CloudTrail_us-east-1_20240109T2355Z_gonegonegonegone.json.gz".into());
    let summary = h.handle(batch(&keys, "backfill")).await.expect("batch");
    assert_eq!(summary["mode"], "backfill");
    assert_eq!(summary["objects"], 10, "{summary}");
    assert_eq!(
        summary["skippedObjects"], 5,
        "4 folder markers and a stray name: {summary}"
    );
    assert_eq!(summary["records"], 8, "{summary}");
    assert_eq!(summary["alerts"], 4, "{summary}");
    let failed = summary["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 1, "{summary}");
    assert!(failed[0]["object"]
        .as_str()
        .unwrap()
        .ends_with("gonegonegonegone.json.gz"));
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("no such object"),
        "{summary}"
    );
    let written = objects_in(&aws, FINDINGS).await;
    assert_eq!(written.len(), 1, "{written:?}");
    let (key, body) = &written[0];
    assert!(
        key.starts_with("backfill/exec-0001/findings/") && key.ends_with(".jsonl"),
        "{key}"
    );
    assert_eq!(summary["findings"], format!("s3://{FINDINGS}/{key}"));
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|l| l["rule"] == "backup-job-failed"));
    assert!(
        drain(&aws, &queue, 0).await.is_empty(),
        "a backfill publishes nothing"
    );

    // Retried: the same object, rewritten.
    h.handle(batch(&keys, "backfill")).await.expect("retry");
    assert_eq!(objects_in(&aws, FINDINGS).await, written);

    // S3 Inventory manifest items carry their bucket.
    let items: Vec<Value> = day_keys(10)
        .iter()
        .map(|k| json!({"Bucket": ORG, "Key": k}))
        .collect();
    let summary = h
        .handle(json!({"Items": items, "BatchInput": {"mode": "backfill", "output": format!("s3://{FINDINGS}/backfill/"), "run": "exec-0002"}}))
        .await
        .expect("inventory batch");
    assert_eq!(summary["alerts"], 4, "{summary}");

    // Replay: the same shape, alerts published.
    let response = h
        .handle(batch(&day_keys(11), "replay"))
        .await
        .expect("replay");
    assert_eq!(response["published"], 4, "{response}");
    assert_eq!(drain(&aws, &queue, 4).await.len(), 4);

    // A malformed batch is refused, naming what is wrong.
    let err = h
        .handle(json!({"Items": [{"Key": "k"}], "BatchInput": {"bucket": ORG, "mode": "rewind"}}))
        .await
        .expect_err("bad mode");
    assert!(err.to_string().contains("BatchInput.mode"), "{err}");
}

/// A backfill reads an object in the function's bounded parts too, and tells a storming rule
/// as the function would have: its first `STORM_LIMIT` alerts, then one storm finding folding
/// the rest, so that a batch's findings stay bounded however many records match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_folds_a_storming_rule_into_one_finding() {
    let moto = Moto::start();
    let aws = clients(&moto).await;
    for bucket in [ORG, FINDINGS] {
        aws.s3
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket");
    }
    let (topic, _) = topic_with_queue(&aws, "storming-backfill", false).await;
    let h = handler(&aws, &topic, &format!("s3://{SHADOW}/unused/"));
    let key = "corp/AWSLogs/o-exampleorg1/111122223333/CloudTrail/us-east-1/2024/01/20/111122223333_CloudTrail_us-east-1_20240120T0000Z_stormstormstorm1.json.gz";
    let records: Vec<Value> = (0..1300)
        .map(|n| {
            json!({"eventVersion": "1.05", "eventSource": "backup.amazonaws.com",
                   "eventTime": format!("2024-01-20T{:02}:{:02}:00Z", n / 60 % 24, n % 60),
                   "eventName": "BackupJobCompleted", "awsRegion": "us-east-1",
                   "eventID": format!("storm-{n:05}"), "eventType": "AwsServiceEvent",
                   "recipientAccountId": "111122223333",
                   "serviceEventDetails": {"state": "FAILED", "backupJobId": format!("job-{n}"),
                       "resourceArn": format!("arn:aws:ec2:us-east-1:111122223333:volume/vol-{n}"),
                       "resourceType": "EBS"}})
        })
        .collect();
    upload(
        &aws,
        ORG,
        key,
        crate::util::gzip(json!({"Records": records}).to_string().as_bytes()),
    )
    .await;
    let summary = h
        .handle(batch(&[key.to_owned()], "backfill"))
        .await
        .expect("batch");
    assert_eq!(
        (&summary["alerts"], &summary["folded"]),
        (&json!(1300), &json!(300)),
        "{summary}"
    );
    let written = objects_in(&aws, FINDINGS).await;
    let lines: Vec<Value> = written[0]
        .1
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 1001, "1,000 alerts and one storm finding");
    let storm = &lines[1000];
    assert_eq!(storm["rule"], "backup-job-failed");
    assert!(
        storm["subject"]
            .as_str()
            .is_some_and(|s| s.contains("300 more matches folded")),
        "{storm}"
    );
}
