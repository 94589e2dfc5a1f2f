//! The organisation: the trail's bucket in a log-archive account, the function in a security
//! account. Against moto with `MOTO_S3_ALLOW_CROSSACCOUNT_ACCESS=false`, under which a bucket
//! answers only its own account (moto enforces no bucket policy, so "not granted" is the only
//! cross-account case it can play); moto's accounts are chosen by the credentials STS returns,
//! and its request recorder shows the STS calls. A refused AssumeRole (no trust), which moto
//! cannot play, comes from a stand-in STS on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;
use trail_alerts::lambda::config::ReadRole;
use trail_alerts::lambda::ports::aws::{S3Store, SnsPublisher};
use trail_alerts::lambda::ports::role::{trail_reader, SESSION_NAME};
use trail_alerts::lambda::{Handler, LambdaConfig};

use crate::e2e::{clients, drain, topic_with_queue, Moto};
use crate::history::moto_api;
use crate::util::{loopback_s3, loopback_sdk_config, s3_event, trail, K1, K2, K3};

const LOG_ARCHIVE: &str = "111111111111";
const SECURITY: &str = "123456789012"; // moto's default account: the test credentials' own
const BUCKET: &str = "org-trail-logs";
const READ_ROLE: &str = "arn:aws:iam::111111111111:role/trail-alerts-read";

/// An S3 client acting in the log-archive account (its administrator, through STS).
async fn log_archive_admin(endpoint: &str) -> aws_sdk_s3::Client {
    let sdk = loopback_sdk_config(endpoint, |l| l).await;
    let out = aws_sdk_sts::Client::new(&sdk)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{LOG_ARCHIVE}:role/admin"))
        .role_session_name("setup")
        .send()
        .await
        .expect("assume the log-archive admin");
    let c = out.credentials.expect("credentials");
    aws_sdk_s3::Client::from_conf(
        loopback_s3(&sdk)
            .config()
            .to_builder()
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                c.access_key_id,
                c.secret_access_key,
                Some(c.session_token),
                None,
                "log-archive admin",
            ))
            .build(),
    )
}

/// A recorded request's body (moto records bytes in base64).
fn body(r: &Value) -> String {
    let text = r["body"].as_str().unwrap_or("");
    if r["body_encoded"] == true {
        let bytes = aws_smithy_types::base64::decode(text).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        text.to_owned()
    }
}

/// moto with cross-account access locked, the security account's clients, and the
/// log-archive account's S3 (as its administrator) with the trail bucket made.
async fn log_archive(recording: &std::path::Path) -> (Moto, crate::e2e::Aws, aws_sdk_s3::Client) {
    let moto = Moto::start_with(&[("MOTO_S3_ALLOW_CROSSACCOUNT_ACCESS", "false")], recording);
    let aws = clients(&moto).await;
    let admin = log_archive_admin(&moto.endpoint).await;
    admin
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("bucket");
    (moto, aws, admin)
}

/// The moto recording's requests whose form body or URL names this action.
fn calls(recording: &std::path::Path, action: &str) -> Vec<Value> {
    std::fs::read_to_string(recording)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|mut r| {
            let body = body(&r);
            let named = body.contains(&format!("Action={action}&"))
                || body.ends_with(&format!("Action={action}"));
            r["body"] = Value::String(body);
            named.then_some(r)
        })
        .collect()
}

fn handler(
    store: S3Store,
    sns: aws_sdk_sns::Client,
    topic: &str,
) -> Handler<S3Store, SnsPublisher> {
    crate::util::handler(
        store,
        SnsPublisher::new(sns),
        LambdaConfig {
            alert_topic_arn: Some(topic.into()),
            ..LambdaConfig::default()
        },
    )
}

/// The function in the security account reads the organisation trail's bucket in the
/// log-archive account: denied with its own credentials (the error names the object, the
/// principal and the fix, and is not retried), read through the read role with one AssumeRole
/// for every object of a warm instance, the alerts published in its own account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_archive_bucket_is_read_through_the_read_role_with_one_sts_call() {
    let dir = tempfile::tempdir().expect("tmp");
    let recording = dir.path().join("moto.jsonl");
    let (moto, aws, admin) = log_archive(&recording).await;
    let keys = [K1, K2, K3].map(|k| {
        format!(
            "AWSLogs/o-exampleorgid/{}",
            k.trim_start_matches("AWSLogs/")
                .trim_start_matches("o-exampleorgid/")
        )
    });
    for (key, source) in keys.iter().zip([K1, K2, K3]) {
        admin
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from(trail(source)))
            .send()
            .await
            .expect("put in the log-archive account");
    }
    let (topic, queue) = topic_with_queue(&aws, "security-alerts", false).await;
    assert!(topic.contains(&format!(":{SECURITY}:")), "{topic}");
    let sdk = loopback_sdk_config(&moto.endpoint, |l| l).await;

    // Its own credentials: the bucket is not its account's.
    let direct = handler(S3Store::new(loopback_s3(&sdk)), aws.sns.clone(), &topic);
    let err = direct
        .handle(s3_event(BUCKET, &keys[0]))
        .await
        .expect_err("denied across accounts");
    let text = err.to_string();
    assert!(!err.retryable(), "{text}");
    for needle in [
        &format!("s3://{BUCKET}/{}", keys[0]) as &str,
        "access denied",
        "as the function's role",
        &format!("arn:aws:s3:::{BUCKET}/<prefix>AWSLogs/*"),
        "kms:Decrypt",
        "TRAIL_READ_ROLE_ARN",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }

    // Through the read role: one AssumeRole, however many objects.
    moto_api(&moto.endpoint, "/moto-api/recorder/reset-recording");
    moto_api(&moto.endpoint, "/moto-api/recorder/start-recording");
    let role = ReadRole {
        arn: READ_ROLE.into(),
        external_id: Some("org-9f2c".into()),
    };
    let reader = S3Store::reading_as(trail_reader(&sdk, Some(&role)), READ_ROLE);
    let function = handler(reader, aws.sns.clone(), &topic);
    let mut published = 0;
    let mut took = Vec::new();
    for key in &keys {
        let started = std::time::Instant::now();
        let out = function
            .handle(s3_event(BUCKET, key))
            .await
            .expect("read through the role");
        took.push(started.elapsed().as_millis());
        published += out["published"].as_u64().expect("published");
    }
    moto_api(&moto.endpoint, "/moto-api/recorder/stop-recording");
    eprintln!("objects read through the read role (ms each, the first assumes it): {took:?}");
    let assumed = calls(&recording, "AssumeRole");
    assert_eq!(assumed.len(), 1, "{assumed:#?}");
    let body = assumed[0]["body"].as_str().unwrap();
    for part in [
        "RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2Ftrail-alerts-read",
        "ExternalId=org-9f2c",
        &format!("RoleSessionName={SESSION_NAME}"),
    ] {
        assert!(body.contains(part), "{part:?} not in {body}");
    }
    // Every GetObject was signed with the role's credentials (moto answers the object only to
    // the log-archive account, so it could not be otherwise; said here all the same).
    let recorded = std::fs::read_to_string(&recording).unwrap_or_default();
    let get_count = recorded
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["method"] == "GET" && r["url"].as_str().is_some_and(|u| u.contains(BUCKET)))
        .inspect(|r| {
            let auth = r["headers"]["Authorization"].as_str().unwrap_or("");
            assert!(
                !auth.contains("Credential=test/"),
                "signed with the function's own key: {auth}"
            );
        })
        .count();
    assert_eq!(get_count, 3);
    let messages = drain(&aws, &queue, published as usize).await;
    assert_eq!(messages.len() as u64, published);
    assert!(published >= 8, "{published}");
}

/// A stand-in STS on loopback that answers GetCallerIdentity as the function's role, and every
/// other request with this status and error code, counting those.
fn sts_stand_in(status: u16, code: &'static str) -> (String, Arc<AtomicUsize>) {
    crate::util::stand_in(move |request| {
        if request.contains("Action=GetCallerIdentity") {
            let body = format!(
                "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                 <GetCallerIdentityResult><Arn>arn:aws:sts::{SECURITY}:assumed-role/trail-alerts-function/fn</Arn>\
                 <UserId>AROAEXAMPLE:fn</UserId><Account>{SECURITY}</Account></GetCallerIdentityResult>\
                 <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
            );
            return (false, 200, "text/xml", String::new(), body);
        }
        let body = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
             <Type>Sender</Type><Code>{code}</Code><Message>User: \
             arn:aws:sts::{SECURITY}:assumed-role/trail-alerts-function/fn is not authorized \
             to perform: sts:AssumeRole on resource: {READ_ROLE}</Message></Error>\
             <RequestId>0</RequestId></ErrorResponse>"
        );
        (true, status, "text/xml", String::new(), body)
    })
}

/// A read role whose trust does not name the function: the object's error names the role and
/// the trust policy to fix, and is not retried (one STS call, no retry storm); STS throttling
/// stays retryable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_read_role_is_named_and_not_retried_while_throttling_is_retried() {
    let role = ReadRole {
        arn: READ_ROLE.into(),
        external_id: None,
    };
    let (url, count) = sts_stand_in(403, "AccessDenied");
    let sdk = loopback_sdk_config(&url, |l| l).await;
    let reader = S3Store::reading_as(trail_reader(&sdk, Some(&role)), READ_ROLE);
    let function = handler(reader, aws_sdk_sns::Client::new(&sdk), crate::util::TOPIC);
    let err = function
        .handle(s3_event(BUCKET, K2))
        .await
        .expect_err("the role cannot be assumed");
    let text = err.to_string();
    assert!(!err.retryable(), "{text}");
    for needle in [
        &format!("the read role {READ_ROLE} could not be assumed") as &str,
        "AccessDenied",
        "trust policy",
        "sts:AssumeRole",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "AccessDenied is not retried"
    );

    let (url, count) = sts_stand_in(400, "Throttling");
    let sdk = loopback_sdk_config(&url, |l| l).await;
    let reader = S3Store::reading_as(trail_reader(&sdk, Some(&role)), READ_ROLE);
    let function = handler(reader, aws_sdk_sns::Client::new(&sdk), crate::util::TOPIC);
    let err = function
        .handle(s3_event(BUCKET, K2))
        .await
        .expect_err("throttled");
    assert!(err.retryable(), "{err}");
    assert!(count.load(Ordering::SeqCst) >= 1);
}

/// AWS Backup's events as the member template forwards them to the central bus: EventBridge
/// keeps each event's own `account` and `region` when it crosses accounts, so the rule on the
/// central bus hands the function events of many accounts and Regions. Backup events of two
/// accounts in two Regions each, and a CloudTrail call from a member account, each published
/// (through SNS on moto, received on SQS) naming the account and Region it happened in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_events_of_member_accounts_and_regions_arrive_through_the_central_bus() {
    let dir = tempfile::tempdir().expect("tmp");
    let moto = Moto::start_with(&[], &dir.path().join("moto.jsonl"));
    let aws = clients(&moto).await;
    let (topic, queue) = topic_with_queue(&aws, "org-alerts", false).await;
    let function = handler(S3Store::new(aws.s3.clone()), aws.sns.clone(), &topic);
    let failed = crate::util::event("eventbridge-backup-job-failed.json");
    let mut expected = Vec::new();
    for (n, (account, region)) in [
        ("222222222222", "eu-west-1"),
        ("222222222222", "us-east-1"),
        ("333333333333", "eu-west-1"),
        ("333333333333", "ap-southeast-2"),
    ]
    .into_iter()
    .enumerate()
    {
        let text = failed
            .to_string()
            .replace("1112233445566", account)
            .replace("us-west-2", region)
            .replace(
                "710b0398-d48e-f3c3-afca-cfeb2fdaa656",
                &format!("710b0398-0000-0000-0000-00000000000{n}"),
            );
        let event: Value = serde_json::from_str(&text).expect("event");
        assert_eq!(event["account"], account);
        let out = function.handle(event).await.expect("central bus event");
        assert_eq!(out["published"], 1, "{out}");
        expected.push((account.to_owned(), region.to_owned()));
    }
    // A CloudTrail call forwarded from a member account (detail-type "AWS API Call via
    // CloudTrail"), the shape the member template's CloudTrail rule forwards.
    let call = serde_json::json!({
        "version": "0", "id": "6f3b0d2e-1111-2222-3333-444455556666",
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.backup",
        "account": "333333333333", "time": "2026-11-30T10:00:00Z", "region": "eu-west-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.08", "eventTime": "2026-11-30T10:00:00Z",
            "eventSource": "backup.amazonaws.com", "eventName": "DeleteBackupVault",
            "awsRegion": "eu-west-1", "sourceIPAddress": "198.51.100.7",
            "userAgent": "aws-cli/2.15.0",
            "userIdentity": {"type": "AssumedRole", "accountId": "333333333333",
                "arn": "arn:aws:sts::333333333333:assumed-role/Admin/alice"},
            "requestParameters": {"backupVaultName": "payments-vault"},
            "responseElements": null, "eventID": "0b9e1c52-5b7d-4d2e-9a0a-7f1a2c3d4e5f",
            "readOnly": false, "eventType": "AwsApiCall", "managementEvent": true,
            "recipientAccountId": "333333333333", "eventCategory": "Management"
        }
    });
    let out = function.handle(call).await.expect("CloudTrail call");
    assert!(out["published"].as_u64().unwrap_or(0) >= 1, "{out}");
    expected.push(("333333333333".into(), "eu-west-1".into()));

    let messages = drain(&aws, &queue, expected.len()).await;
    let mut got: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            let attrs = &m["MessageAttributes"];
            let account = attrs["account"]["Value"]
                .as_str()
                .expect("account")
                .to_owned();
            let region = attrs["region"]["Value"]
                .as_str()
                .expect("region")
                .to_owned();
            let subject = m["Subject"].as_str().expect("subject");
            assert!(
                subject.contains(&format!("{account}/{region}")),
                "{subject}"
            );
            (account, region)
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}

/// The function knows its trail buckets (ALLOWED_BUCKETS): the rule about a bucket's
/// notifications being replaced or the bucket deleted speaks of those alone; the same call on
/// another bucket is counted as suppressed, not alerted; a call naming no bucket still alerts.
#[tokio::test]
async fn bucket_notification_rules_speak_of_the_trail_buckets_only() {
    use trail_alerts::lambda::ports::fakes::{FakeObjects, FakePublisher};
    use trail_alerts::rules::{RuleSet, RuleSource};

    let call = |name: &str, bucket: Option<&str>, n: usize| {
        let mut r = serde_json::json!({
            "eventVersion": "1.08", "eventTime": "2026-11-30T08:00:00Z",
            "eventSource": "s3.amazonaws.com", "eventName": name, "awsRegion": "us-east-1",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/Mateo", "accountId": "123456789012"},
            "sourceIPAddress": "198.51.100.7", "userAgent": "console.amazonaws.com",
            "requestParameters": {}, "responseElements": null,
            "eventID": format!("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4{n}"), "readOnly": false,
            "eventType": "AwsApiCall", "managementEvent": true,
            "recipientAccountId": "123456789012", "eventCategory": "Management"
        });
        if let Some(b) = bucket {
            r["requestParameters"]["bucketName"] = Value::String(b.into());
        }
        r
    };
    let records = serde_json::json!({"Records": [
        call("DeleteBucket", Some(crate::util::BUCKET), 0),
        call("PutBucketNotificationConfiguration", Some(crate::util::BUCKET), 1),
        call("DeleteBucket", Some("scratch-bucket-of-a-developer"), 2),
        call("PutBucketNotificationConfiguration", Some("another-teams-bucket"), 3),
        call("DeleteBucket", None, 4),
    ]});
    let key = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/30/123456789012_CloudTrail_us-east-1_20261130T0805Z_bucketcalls00001.json.gz";
    let mut store = FakeObjects::default();
    store.put(
        crate::util::BUCKET,
        key,
        crate::util::gzip(records.to_string().as_bytes()),
    );
    let config = LambdaConfig {
        allowed_buckets: Some(vec![crate::util::BUCKET.into()]),
        ..crate::util::config()
    };
    let rules = config
        .scoped(RuleSet::load(&[RuleSource::Builtin]).expect("builtin"))
        .expect("scoped");
    let publisher = Arc::new(FakePublisher::default());
    let function =
        Handler::new(Arc::new(rules), store, Arc::clone(&publisher), config).expect("handler");
    let out = function
        .handle(s3_event(crate::util::BUCKET, key))
        .await
        .expect("handled");
    let alerted: Vec<String> = publisher
        .messages()
        .iter()
        .filter(|(_, m)| {
            m.attributes
                .iter()
                .any(|(k, v)| k == "rule" && v == "trail-bucket-notification-changed")
        })
        .map(|(_, m)| m.body.clone())
        .collect();
    assert_eq!(alerted.len(), 3, "{out}");
    assert!(alerted
        .iter()
        .all(|b| !b.contains("scratch-bucket") && !b.contains("another-teams-bucket")));
    assert_eq!(out["suppressed"], 2, "{out}");

    // Without ALLOWED_BUCKETS, every bucket's calls alert, as before.
    let broad = crate::util::config();
    let rules = broad
        .scoped(RuleSet::load(&[RuleSource::Builtin]).expect("builtin"))
        .expect("rules");
    assert!(rules.suppressions().is_empty());
}

/// `trail-alerts doctor` as an operator runs it, with the function's environment.
fn doctor(moto: &Moto, env: &[(&str, &str)]) -> (bool, String) {
    let mut c = assert_cmd::Command::cargo_bin("trail-alerts").expect("binary");
    c.arg("doctor")
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    for var in [
        "ALERT_TOPIC_ARN",
        "ALLOWED_BUCKETS",
        "TRAIL_KEY_PREFIX",
        "TRAIL_READ_ROLE_ARN",
        "TRAIL_READ_EXTERNAL_ID",
        "STATE_TABLE",
        "RULES",
        "TOPIC_FORMATS",
        "PAGERDUTY_ROUTING_KEY_SECRET",
        "CENTRAL_EVENT_BUS_ARN",
        "ORGANIZATION_ID",
        "AWS_ENDPOINT_URL_STS",
    ] {
        c.env_remove(var);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The line of one check.
fn line<'a>(report: &'a str, starts: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(starts)))
        .unwrap_or_else(|| panic!("no {starts:?} check in\n{report}"))
}

/// `doctor` against the organisation on moto: everything in place passes (exit 0); the log-archive
/// bucket read without the role fails naming the principal and the bucket-policy statement;
/// with the read role it passes; a topic whose policy denies publishing, a missing table and a
/// table of other keys each fail with their fix (exit 1). Nothing is written or published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_tries_each_thing_and_names_the_fix() {
    let dir = tempfile::tempdir().expect("tmp");
    let recording = dir.path().join("moto.jsonl");
    let (moto, aws, admin) = log_archive(&recording).await;
    let older = "org/AWSLogs/o-exampleorgid/222222222222/CloudTrail/eu-west-1/2026/11/30/222222222222_CloudTrail_eu-west-1_20261130T0800Z_older000000001.json.gz";
    let newer = "org/AWSLogs/o-exampleorgid/222222222222/CloudTrail/eu-west-1/2026/12/01/222222222222_CloudTrail_eu-west-1_20261201T0800Z_newer000000001.json.gz";
    for (key, source) in [(older, K1), (newer, K2)] {
        admin
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from(trail(source)))
            .send()
            .await
            .expect("put");
    }
    let (topic, _queue) = topic_with_queue(&aws, "doctor-alerts", false).await;
    let sdk = loopback_sdk_config(&moto.endpoint, |l| l).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    crate::util::create_state_table(&ddb, "doctor-state").await;
    let env = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("ALERT_TOPIC_ARN", topic.clone()),
            ("ALLOWED_BUCKETS", BUCKET.to_owned()),
            ("TRAIL_KEY_PREFIX", "org/".to_owned()),
            ("STATE_TABLE", "doctor-state".to_owned()),
        ];
        v.extend(extra.iter().map(|(k, val)| (*k, (*val).to_owned())));
        v
    };
    let run = |v: Vec<(&'static str, String)>| {
        let pairs: Vec<(&str, &str)> = v.iter().map(|(k, s)| (*k, s.as_str())).collect();
        doctor(&moto, &pairs)
    };

    // The bucket is the log-archive account's: listing it without the role is refused.
    let (ok, report) = run(env(&[]));
    assert!(!ok, "{report}");
    let list = line(&report, "list s3://org-trail-logs/org/AWSLogs/");
    assert!(list.starts_with("FAIL"), "{report}");
    assert!(
        list.contains("access denied as arn:aws:sts::123456789012:user/moto"),
        "{report}"
    );
    assert!(
        report.contains(r#""Action": "s3:ListBucket", "Resource": "arn:aws:s3:::org-trail-logs""#),
        "{report}"
    );

    // Through the read role: every check passes, the newest log found and read.
    moto_api(&moto.endpoint, "/moto-api/recorder/reset-recording");
    moto_api(&moto.endpoint, "/moto-api/recorder/start-recording");
    let started = std::time::Instant::now();
    let (ok, report) = run(env(&[
        ("TRAIL_READ_ROLE_ARN", READ_ROLE),
        ("TRAIL_READ_EXTERNAL_ID", "org-9f2c"),
    ]));
    let took = started.elapsed();
    moto_api(&moto.endpoint, "/moto-api/recorder/stop-recording");
    assert!(ok, "{report}");
    for check in [
        "credentials",
        "rules",
        "read role arn:aws:iam::111111111111:role/trail-alerts-read",
        "list s3://org-trail-logs/org/AWSLogs/",
        "read s3://org-trail-logs/",
        "topic arn:aws:sns:us-east-1:123456789012:doctor-alerts",
        "state table doctor-state",
    ] {
        assert!(line(&report, check).starts_with("ok"), "{check}: {report}");
    }
    assert!(line(&report, "list s3://").contains(newer), "{report}");
    assert!(
        line(&report, "read s3://").contains("2 records"),
        "{report}"
    );
    assert!(line(&report, "PagerDuty").starts_with("skip"), "{report}");
    eprintln!(
        "doctor, every check passing, against moto: {} ms\n{report}",
        took.as_millis()
    );
    // Nothing published, nothing written to the table.
    assert!(calls(&recording, "Publish").is_empty());
    assert!(calls(&recording, "PublishBatch").is_empty());
    let scan = ddb
        .scan()
        .table_name("doctor-state")
        .send()
        .await
        .expect("scan");
    assert_eq!(scan.count(), 0);

    // A topic whose policy denies publishing; a missing table.
    aws.sns
        .set_topic_attributes()
        .topic_arn(&topic)
        .attribute_name("Policy")
        .attribute_value(
            serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Deny", "Principal": "*", "Action": "sns:Publish", "Resource": &topic}
            ]})
            .to_string(),
        )
        .send()
        .await
        .expect("policy");
    let (ok, report) = run(env(&[
        ("TRAIL_READ_ROLE_ARN", READ_ROLE),
        ("TRAIL_READ_EXTERNAL_ID", "org-9f2c"),
        ("STATE_TABLE", "no-such-table"),
    ]));
    assert!(!ok, "{report}");
    let t = line(&report, "topic ");
    assert!(
        t.starts_with("FAIL") && t.contains("denies sns:Publish"),
        "{report}"
    );
    let table = line(&report, "state table no-such-table");
    assert!(
        table.starts_with("FAIL") && table.contains("no table no-such-table"),
        "{report}"
    );

    // A table of other keys.
    ddb.create_table()
        .table_name("other-keys")
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .expect("attr"),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .expect("key"),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .expect("table");
    let (_, report) = run(env(&[("STATE_TABLE", "other-keys")]));
    let table = line(&report, "state table other-keys");
    assert!(table.starts_with("FAIL"), "{report}");
    assert!(
        report.contains("string keys pk (partition) and sk (sort)"),
        "{report}"
    );

    // The central bus: without a policy, the organisation's events are refused; open to every
    // account, it is refused too; admitting the organisation, it passes.
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let bus = events
        .create_event_bus()
        .name("trail-alerts-org")
        .send()
        .await
        .expect("bus")
        .event_bus_arn()
        .expect("arn")
        .to_owned();
    let with_bus = || {
        env(&[
            ("CENTRAL_EVENT_BUS_ARN", bus.as_str()),
            ("ORGANIZATION_ID", "o-a1b2c3d4e5"),
            ("TRAIL_READ_ROLE_ARN", READ_ROLE),
        ])
    };
    let (ok, report) = run(with_bus());
    assert!(!ok);
    let b = line(&report, "central bus ");
    assert!(
        b.starts_with("FAIL") && b.contains("admits no account of the organisation"),
        "{report}"
    );
    assert!(
        report.contains(r#""aws:PrincipalOrgID":"o-a1b2c3d4e5""#),
        "{report}"
    );
    let policy = |condition: bool| {
        let mut statement = serde_json::json!({"Sid": "OrganisationAccountsSendEvents",
            "Effect": "Allow", "Principal": "*", "Action": "events:PutEvents", "Resource": &bus});
        if condition {
            statement["Condition"] =
                serde_json::json!({"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}});
        }
        serde_json::json!({"Version": "2012-10-17", "Statement": [statement]}).to_string()
    };
    events
        .put_permission()
        .event_bus_name("trail-alerts-org")
        .policy(policy(false))
        .send()
        .await
        .expect("open policy");
    let (_, report) = run(with_bus());
    assert!(
        line(&report, "central bus ").contains("lets any AWS account put events"),
        "{report}"
    );
    events
        .put_permission()
        .event_bus_name("trail-alerts-org")
        .policy(policy(true))
        .send()
        .await
        .expect("organisation policy");
    let (_, report) = run(with_bus());
    let b = line(&report, "central bus ");
    assert!(
        b.starts_with("ok") && b.contains("o-a1b2c3d4e5"),
        "{report}"
    );
}

/// doctor with a read role whose trust does not name the function (a stand-in STS refuses the
/// AssumeRole): the read role's check fails naming the trust statement to add, with the
/// function's role as its principal, and the trail's checks are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_trust_statement_a_refused_read_role_needs() {
    let dir = tempfile::tempdir().expect("tmp");
    let moto = Moto::start_with(&[], &dir.path().join("moto.jsonl"));
    let (sts, _count) = sts_stand_in(403, "AccessDenied");
    let (ok, report) = doctor(
        &moto,
        &[
            ("AWS_ENDPOINT_URL_STS", sts.as_str()),
            ("ALLOWED_BUCKETS", BUCKET),
            ("TRAIL_READ_ROLE_ARN", READ_ROLE),
            ("TRAIL_READ_EXTERNAL_ID", "org-9f2c"),
        ],
    );
    assert!(!ok, "{report}");
    assert!(line(&report, "credentials").contains("assumed-role/trail-alerts-function"));
    let role = line(&report, "read role ");
    assert!(role.starts_with("FAIL"), "{report}");
    for needle in [
        r#""Principal": {"AWS": "arn:aws:iam::123456789012:role/trail-alerts-function"}"#,
        r#""Action": "sts:AssumeRole""#,
        r#""sts:ExternalId": "org-9f2c""#,
        "in account 111111111111",
    ] {
        assert!(report.contains(needle), "{needle:?} not in\n{report}");
    }
    assert!(line(&report, "list s3://").starts_with("skip"), "{report}");
}
