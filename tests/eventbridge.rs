//! EventBridge events as the function's input (issue "AWS Backup's own events and a complete
//! resilience pack"): AWS Backup's own example events through the handler and the pack,
//! CloudTrail events on EventBridge against the same records from S3, SQS-wrapped events,
//! unknown detail-types, publish faults — and the traps of the published examples.

use std::sync::Arc;

use serde_json::{json, Value};
use trail_alerts::lambda::ports::fakes::{FakeObjects, FakePublisher, Script};
use trail_alerts::lambda::ports::PublishCallError;
use trail_alerts::pattern::{detail_type_for, source_for, Pattern};
use trail_alerts::reader::{LogReader, Parsed};

use crate::util::{
    config, handler, json_fixture, published_rules, root, trails, ALL_RULES, BUCKET, K1, K2, K3,
};

/// AWS Backup's example events, by name.
fn examples() -> Vec<(String, Value)> {
    let doc = json_fixture("eventbridge/aws-backup-events.json");
    doc["events"]
        .as_object()
        .expect("events")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn handle(
    payload: Value,
    publisher: FakePublisher,
) -> (Result<Value, String>, Arc<FakePublisher>) {
    let publisher = Arc::new(publisher);
    let result = handler(FakeObjects::default(), Arc::clone(&publisher), config())
        .handle(payload)
        .await
        .map_err(|e| e.to_string());
    (result, publisher)
}

/// Every example event of the AWS Backup guide goes through the handler; the pack raises
/// exactly the alerts an operator wants from each, and nothing from the others.
#[tokio::test]
async fn every_aws_backup_example_event_is_read_and_judged_by_the_pack() {
    let wanted: &[(&str, &str)] = &[
        ("backup-job-failed", "backup-event-job-failed"),
        ("backup-job-aborted", "backup-event-job-failed"),
        ("backup-job-expired", "backup-event-job-failed"),
        ("backup-vault-modified", "backup-event-vault-lock-changed"),
        ("copy-job-failed", "backup-event-copy-job-failed"),
        ("restore-job-failed", "backup-event-restore-job-failed"),
        ("scan-job-threats-found", "backup-event-malware-found"),
    ];
    let events = examples();
    assert_eq!(events.len(), 22, "the examples kept");
    let mut detail_types = std::collections::BTreeSet::new();
    for (name, event) in &events {
        detail_types.insert(
            event["detail-type"]
                .as_str()
                .expect("detail-type")
                .to_owned(),
        );
        let (result, publisher) = handle(event.clone(), FakePublisher::default()).await;
        let response = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(response["events"], 1, "{name}: {response}");
        let expected: Vec<&str> = wanted
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, r)| *r)
            .collect();
        assert_eq!(published_rules(&publisher), expected, "{name}");
        assert_eq!(response["published"], expected.len(), "{name}");
    }
    assert_eq!(
        detail_types.into_iter().collect::<Vec<_>>(),
        [
            "Backup Job State Change",
            "Backup Plan State Change",
            "Backup Vault State Change",
            "Copy Job State Change",
            "Recovery Point Index State Change",
            "Recovery Point State Change",
            "Region Setting State Change",
            "Restore Job State Change",
            "Scan Job State Change",
        ]
    );
}

/// An alert from a native event is as good as one from CloudTrail: its subject, summary,
/// attributes and document name the job, resource, vault, state and message, with the event's
/// id and time.
#[tokio::test]
async fn alerts_from_native_events_say_what_happened() {
    let events = examples();
    let event = |name: &str| {
        events
            .iter()
            .find(|(n, _)| n == name)
            .expect(name)
            .1
            .clone()
    };
    let (result, publisher) = handle(event("backup-job-failed"), FakePublisher::default()).await;
    result.expect("handled");
    let messages = publisher.messages();
    let (_, m) = &messages[0];
    assert_eq!(
        m.subject,
        "[HIGH] backup-event-job-failed: Backup Job State Change FAILED in 1112233445566/us-west-2"
    );
    let attr = |k: &str| {
        m.attributes
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(attr("eventSource"), "aws.backup");
    assert_eq!(attr("eventName"), "Backup Job State Change");
    assert_eq!(attr("state"), "FAILED");
    let doc: Value = serde_json::from_str(&m.body).expect("json document");
    // The statusMessage of the example is wrapped in quotes; the summary is not.
    assert_eq!(
        doc["summary"],
        "Backup job 34176239-e96d-4e1d-9fad-529dbb3c3556 for type resource \
         arn:aws:service:us-west-2:1112233445566:resource-type/resource-id in vault \
         9ab3e749-82c6-4342-9320-5edbf4918b86 ended FAILED: Backup job failed because backup vault \
         arn:aws:backup:us-west-2:1112233445566:backup-vault:9ab3e749-82c6-4342-9320-5edbf4918b86 \
         does not exist."
    );
    assert_eq!(
        doc["event"]["eventID"],
        "710b0398-d48e-f3c3-afca-cfeb2fdaa656"
    );
    assert_eq!(doc["event"]["eventTime"], "2020-07-29T20:15:26Z");
    assert_eq!(
        doc["matched"],
        json!({"source": "aws.backup", "detail-type": "Backup Job State Change", "detail.state": "FAILED"})
    );
    assert_eq!(doc["record"], event("backup-job-failed"));
    assert_eq!(
        doc["source"]["eventbridge"],
        json!({"id": "710b0398-d48e-f3c3-afca-cfeb2fdaa656", "source": "aws.backup", "detail-type": "Backup Job State Change"})
    );

    for (name, summary) in [
        (
            "scan-job-threats-found",
            "Malware scan job 4d5fc12e-7e33-4336-a981-bbe43c300298 for EC2 resource \
             arn:aws:ec2:us-west-2:1112233445566:instance/i-0515aee7de03f58e1 in vault \
             9ab3e749-82c6-4342-9320-5edbf4918b86 ended THREATS_FOUND: An AWS Backup scan job was \
             successful completed.",
        ),
        ("backup-vault-modified", "Vault vaultName MODIFIED (vault lock on)"),
        (
            "copy-job-failed",
            "Copy job 47C8EF56-74D8-059D-1301-C5BE1D5C926E for EC2 resource \
             arn:aws:ec2:us-west-2:1112233445566:instance/i-0515aee7de03f58e1 in vault \
             55aa945e-c46a-421b-aa27-f94b074e31b7 to \
             arn:aws:backup:us-west-2:1112233445566:backup-vault:55aa945e-c46a-421b-aa27-f94b074e31b7 \
             ended FAILED: Access denied exception while trying to list tags",
        ),
    ] {
        let (result, publisher) = handle(event(name), FakePublisher::default()).await;
        result.expect("handled");
        let doc: Value =
            serde_json::from_str(&publisher.messages()[0].1.body).expect("json document");
        assert_eq!(doc["summary"], summary, "{name}");
    }
    // A Region opt-out and a completed-with-issues job, made from the examples.
    let mut opt_out = event("region-setting-modified");
    opt_out["detail"]["ResourceTypeOptInPreference"] = json!({"Aurora": false, "EBS": true});
    let (result, publisher) = handle(opt_out, FakePublisher::default()).await;
    result.expect("handled");
    let doc: Value = serde_json::from_str(&publisher.messages()[0].1.body).expect("json");
    assert_eq!(
        doc["summary"],
        "Region settings MODIFIED: no longer backed up: Aurora; opted in: EBS"
    );
    let mut issues = event("backup-job-completed");
    issues["detail"]["statusMessage"] = json!("Windows VSS backup attempt failed");
    let (result, publisher) = handle(issues, FakePublisher::default()).await;
    result.expect("handled");
    assert_eq!(
        published_rules(&publisher),
        ["backup-event-job-completed-with-issues"]
    );
    let doc: Value = serde_json::from_str(&publisher.messages()[0].1.body).expect("json");
    assert!(
        doc["summary"]
            .as_str()
            .expect("summary")
            .ends_with("ended COMPLETED with issues: Windows VSS backup attempt failed"),
        "{}",
        doc["summary"]
    );
}

/// The EventBridge event CloudTrail's integration builds from a record.
fn on_eventbridge(record: &Value) -> Value {
    let s = |k: &str| record.get(k).cloned().unwrap_or(Value::Null);
    let event_source = record["eventSource"].as_str().expect("eventSource");
    let event_type = record["eventType"].as_str().expect("eventType");
    json!({
        "version": "0",
        "id": format!("eb-{}", record["eventID"].as_str().unwrap_or("x")),
        "detail-type": detail_type_for(event_type).expect("a CloudTrail detail-type"),
        "source": source_for(event_source).expect("a source"),
        "account": s("recipientAccountId"),
        "time": s("eventTime"),
        "region": s("awsRegion"),
        "resources": [],
        "detail": record,
    })
}

/// A CloudTrail event on EventBridge raises exactly the alerts its record raises from S3:
/// record-form and envelope-form rules alike.
#[tokio::test]
async fn cloudtrail_events_on_eventbridge_raise_what_their_records_raise_from_s3() {
    let mut from_eventbridge = Vec::new();
    let mut records = 0;
    for key in [K1, K2, K3] {
        let bytes = std::fs::read(root().join("events/trails").join(key)).expect("trail");
        for item in LogReader::new(&bytes[..], Default::default()).expect("log") {
            let Parsed::Record { record, .. } = item.expect("record") else {
                panic!("unreadable sample record")
            };
            records += 1;
            let (result, publisher) =
                handle(on_eventbridge(&record), FakePublisher::default()).await;
            let response = result.expect("handled");
            assert_eq!(
                (response["events"].as_u64(), response["records"].as_u64()),
                (Some(1), Some(1))
            );
            from_eventbridge.extend(published_rules(&publisher));
        }
    }
    assert_eq!(records, 12);
    from_eventbridge.sort();
    assert_eq!(from_eventbridge, ALL_RULES);

    // The same from S3, for the record.
    let publisher = Arc::new(FakePublisher::default());
    let payload = json!({"s3Bucket": BUCKET, "s3ObjectKey": [K1, K2, K3]});
    handler(trails(), Arc::clone(&publisher), config())
        .handle(payload)
        .await
        .expect("from S3");
    assert_eq!(published_rules(&publisher), ALL_RULES);
}

/// Through SQS: each message on its own; an event of a kind no rule knows is acknowledged and
/// counted, not failed; a body that is no event returns alone.
#[tokio::test]
async fn sqs_wrapped_and_unknown_events() {
    let events = examples();
    let failed_job = events
        .iter()
        .find(|(n, _)| n == "backup-job-failed")
        .expect("example")
        .1
        .clone();
    let unknown = json!({"version": "0", "id": "u-1", "source": "aws.foo", "detail-type": "Something Happened",
                         "account": "123456789012", "time": "2024-01-01T00:00:00Z", "region": "us-east-1",
                         "resources": [], "detail": {"x": 1}});
    let sqs = json!({"Records": [
        {"messageId": "m-job", "eventSource": "aws:sqs", "body": failed_job.to_string()},
        {"messageId": "m-unknown", "eventSource": "aws:sqs", "body": unknown.to_string()},
        {"messageId": "m-garbage", "eventSource": "aws:sqs", "body": "{\"hello\": 1}"},
    ]});
    let (result, publisher) = handle(sqs, FakePublisher::default()).await;
    assert_eq!(
        result.expect("batch"),
        json!({"batchItemFailures": [{"itemIdentifier": "m-garbage"}]})
    );
    assert_eq!(published_rules(&publisher), ["backup-event-job-failed"]);

    let (result, publisher) = handle(unknown, FakePublisher::default()).await;
    let response = result.expect("acknowledged");
    assert_eq!(
        (
            &response["events"],
            &response["alerts"],
            &response["published"]
        ),
        (&json!(1), &json!(0), &json!(0))
    );
    assert!(publisher.messages().is_empty());
}

/// A failure to publish an event's alert fails the invocation, retryable, so that EventBridge's
/// retry and dead-letter queue take over.
#[tokio::test]
async fn a_publish_failure_fails_the_event_for_a_retry() {
    let event = examples()
        .into_iter()
        .find(|(n, _)| n == "scan-job-threats-found")
        .expect("example")
        .1;
    let publisher = Arc::new(FakePublisher::scripted(vec![Script::Fail(
        PublishCallError {
            message: "Throttling: Rate exceeded".into(),
            retryable: true,
        },
    )]));
    let err = handler(FakeObjects::default(), Arc::clone(&publisher), config())
        .handle(event)
        .await
        .expect_err("publish failed");
    assert!(err.retryable());
    assert!(
        err.to_string()
            .contains("EventBridge event 60ce181d-67c7-496b-90fb-69636b42daee"),
        "{err}"
    );
    assert!(
        err.to_string().contains("Throttling: Rate exceeded"),
        "{err}"
    );
}

/// The traps of the published examples, as EventBridge's own semantics judge them: numbers
/// written as strings are strings (`numeric` never matches `"0"`), `state` in some events and
/// `status` in others, `destinationRecoveryPointArn: {}` is an object (no value), near-empty
/// CREATED events lack most fields.
#[test]
fn the_traps_of_the_published_examples() {
    let events = examples();
    let event = |name: &str| {
        events
            .iter()
            .find(|(n, _)| n == name)
            .expect(name)
            .1
            .clone()
    };
    let matches = |pattern: Value, event: &Value| {
        Pattern::compile(&pattern)
            .expect("pattern")
            .matches_native(event)
    };
    let failed = event("backup-job-failed");
    assert_eq!(failed["detail"]["bytesTransferred"], "0");
    assert!(!matches(
        json!({"detail": {"bytesTransferred": [{"numeric": ["=", 0]}]}}),
        &failed
    ));
    assert!(matches(
        json!({"detail": {"bytesTransferred": ["0"]}}),
        &failed
    ));
    // percentDone is a number in the same event.
    assert!(matches(
        json!({"detail": {"percentDone": [{"numeric": ["=", 0]}]}}),
        &failed
    ));
    let restore = event("restore-job-failed");
    assert!(!matches(json!({"detail": {"state": ["FAILED"]}}), &restore));
    assert!(matches(json!({"detail": {"status": ["FAILED"]}}), &restore));
    let copy = event("copy-job-failed");
    assert!(!matches(
        json!({"detail": {"destinationRecoveryPointArn": [{"exists": true}]}}),
        &copy
    ));
    assert!(matches(
        json!({"detail": {"destinationRecoveryPointArn": [{"exists": false}]}}),
        &copy
    ));
    let created = event("backup-job-created");
    assert!(!matches(
        json!({"detail": {"resourceArn": [{"prefix": "arn:"}]}}),
        &created
    ));
    // A record-form pattern never matches a service's own event.
    assert!(!matches(json!({"eventName": [{"exists": false}]}), &failed));
}
