//! The PagerDuty destination (issue "Where ops teams work"): against a local stand-in of the
//! Events API v2 on loopback that checks every request's schema and answers as scripted, with
//! moto for the trail bucket, the topic and the routing key's secret. A failed backup triggers,
//! the completed one resolves with the same dedup key; 429 then 202 pages once; a refused event
//! is a non-retryable error; the routing key comes from Secrets Manager or SSM.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trail_alerts::lambda::aws::{read_routing_key, S3Store, SnsPublisher};
use trail_alerts::lambda::pager::{HttpPager, Pager, Paging};
use trail_alerts::lambda::{Handler, LambdaConfig};
use trail_alerts::rules::{parse_rule_document, RuleSet, Severity};

use crate::e2e::{clients, drain, topic_with_queue, upload, Moto};
use crate::util::{gzip, loopback_sdk_config};

/// A stand-in of `POST /v2/enqueue`: records every request body, checks it against the
/// Events API v2 schema, answers with the scripted statuses (then 202).
struct StandIn {
    url: String,
    requests: Arc<Mutex<Vec<Value>>>,
    accepted: Arc<Mutex<Vec<Value>>>,
}

fn schema_errors(e: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    if !e["routing_key"].is_string() {
        errs.push("routing_key".to_owned());
    }
    let action = e["event_action"].as_str().unwrap_or("");
    if !matches!(action, "trigger" | "resolve" | "acknowledge") {
        errs.push(format!("event_action {action:?}"));
    }
    match e["dedup_key"].as_str() {
        Some(k) if !k.is_empty() && k.chars().count() <= 255 => {}
        _ => errs.push("dedup_key".to_owned()),
    }
    if action == "trigger" {
        let p = &e["payload"];
        match p["summary"].as_str() {
            Some(s) if !s.is_empty() && s.chars().count() <= 1024 => {}
            _ => errs.push("payload.summary".to_owned()),
        }
        if p["source"].as_str().is_none_or(str::is_empty) {
            errs.push("payload.source".to_owned());
        }
        if !matches!(
            p["severity"].as_str(),
            Some("critical" | "error" | "warning" | "info")
        ) {
            errs.push("payload.severity".to_owned());
        }
        if let Some(t) = p["timestamp"].as_str() {
            if trail_alerts::time::parse_timestamp(t).is_none() {
                errs.push("payload.timestamp".to_owned());
            }
        }
    }
    errs
}

async fn stand_in(script: Vec<u16>) -> StandIn {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let (req, acc) = (Arc::clone(&requests), Arc::clone(&accepted));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (req, acc, script) = (Arc::clone(&req), Arc::clone(&acc), Arc::clone(&script));
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 65536];
                let body = loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let head = text[..end].to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            assert!(head.starts_with("post /v2/enqueue "), "{head}");
                            assert!(head.contains("content-type: application/json"), "{head}");
                            break text[end + 4..end + 4 + len].to_owned();
                        }
                    }
                };
                let event: Value = serde_json::from_str(&body).expect("a JSON body");
                let errors = schema_errors(&event);
                req.lock().expect("lock").push(event.clone());
                let status = if errors.is_empty() {
                    script.lock().expect("lock").pop_front().unwrap_or(202)
                } else {
                    400
                };
                if status == 202 {
                    acc.lock().expect("lock").push(event);
                }
                let answer = if errors.is_empty() {
                    r#"{"status":"success","message":"Event processed"}"#.to_owned()
                } else {
                    json!({"status": "invalid event", "errors": errors}).to_string()
                };
                let reason = match status {
                    202 => "Accepted",
                    429 => "Too Many Requests",
                    400 => "Bad Request",
                    _ => "Error",
                };
                let response = format!(
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    StandIn {
        url: format!("http://{addr}/v2/enqueue"),
        requests,
        accepted,
    }
}

fn pager(url: &str) -> HttpPager {
    let mut p = HttpPager::new(url).expect("pager");
    p.backoff = std::time::Duration::from_millis(10);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_429_and_5xx_and_refuses_a_bad_event() {
    let s = stand_in(vec![429, 503]).await;
    let event = json!({"routing_key": "R", "event_action": "trigger", "dedup_key": "k",
                       "payload": {"summary": "s", "source": "a/b", "severity": "error"}});
    pager(&s.url)
        .enqueue(&event)
        .await
        .expect("429, 503, then 202");
    assert_eq!(s.requests.lock().expect("lock").len(), 3);
    assert_eq!(s.accepted.lock().expect("lock").len(), 1);

    let s = stand_in(vec![500, 500, 500, 500]).await;
    let err = pager(&s.url).enqueue(&event).await.expect_err("always 500");
    assert!(err.retryable, "{err}");
    assert!(err.message.contains("after 4 attempts"), "{err}");

    let s = stand_in(vec![]).await;
    let bad = json!({"routing_key": "R", "event_action": "explode", "dedup_key": "k"});
    let err = pager(&s.url).enqueue(&bad).await.expect_err("refused");
    assert!(!err.retryable, "{err}");
    assert!(
        err.message.contains("HTTP 400") && err.message.contains("event_action"),
        "{err}"
    );
    assert_eq!(
        s.requests.lock().expect("lock").len(),
        1,
        "a refused event is not retried"
    );
}

const RULES: &str = r#"rules:
  - id: job-failed
    description: A backup job failed
    severity: high
    pattern: {eventName: [BackupJobCompleted], serviceEventDetails: {state: [FAILED]}}
    dedup: {key: [serviceEventDetails.resourceArn], window: 1h}
    runbook: "Open the job in the AWS Backup console"
  - id: job-recovered
    description: The next backup of the resource completed
    severity: info
    pattern: {eventName: [BackupJobCompleted], serviceEventDetails: {state: [COMPLETED]}}
    resolves: [job-failed]
  - id: job-noted
    description: Low severity, not paged
    severity: low
    pattern: {eventName: [BackupJobCompleted], serviceEventDetails: {state: [EXPIRED]}}
"#;

fn job(id: &str, state: &str) -> Value {
    json!({"eventVersion": "1.05", "eventTime": "2024-08-01T02:00:00Z", "eventSource": "backup.amazonaws.com",
           "eventName": "BackupJobCompleted", "awsRegion": "us-east-1", "eventID": id,
           "eventType": "AwsServiceEvent", "recipientAccountId": "123456789012",
           "serviceEventDetails": {"state": state, "backupJobId": format!("job-{id}"),
                                   "resourceArn": "arn:aws:ec2:us-east-1:123456789012:volume/vol-a"}})
}

/// End to end: a failed backup pages (`trigger`, the alert key as dedup key) and goes to SNS;
/// the completed one resolves the same key and publishes nothing to SNS; a low-severity alert
/// goes to SNS only; a 429 then 202 pages once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_backup_triggers_and_the_completed_one_resolves() {
    let moto = Moto::start();
    let aws = clients(&moto).await;
    aws.s3
        .create_bucket()
        .bucket("pager-trail")
        .send()
        .await
        .expect("bucket");
    let (topic, queue) = topic_with_queue(&aws, "pager-alerts", false).await;
    let s = stand_in(vec![429]).await;
    let doc = parse_rule_document("pager.yaml", RULES).expect("rules");
    let rules = Arc::new(RuleSet::new(doc.rules).expect("set"));
    let shared = loopback_sdk_config(&moto.endpoint, |l| l).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&shared);
    let attr = |name: &str| {
        aws_sdk_dynamodb::types::AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind| {
        aws_sdk_dynamodb::types::KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    dynamodb
        .create_table()
        .table_name("pager-state")
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", aws_sdk_dynamodb::types::KeyType::Hash))
        .key_schema(key("sk", aws_sdk_dynamodb::types::KeyType::Range))
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .expect("table");
    let h = Handler::new(
        rules,
        S3Store::new(aws.s3.clone()),
        SnsPublisher::new(aws.sns.clone()),
        LambdaConfig {
            alert_topic_arn: Some(topic),
            state_table: Some("pager-state".into()),
            ..LambdaConfig::default()
        },
    )
    .expect("handler")
    .with_state(Arc::new(trail_alerts::lambda::aws::DynamoState::new(
        dynamodb,
        "pager-state",
    )))
    .with_paging(Paging {
        pager: Box::new(pager(&s.url)),
        routing_key: "R0UT1NGKEY".into(),
        min_severity: Severity::High,
    });
    let deliver = |name: &'static str, records: Vec<Value>| {
        let aws = &aws;
        async move {
            let key = format!("AWSLogs/123456789012/CloudTrail/us-east-1/2024/08/01/123456789012_CloudTrail_us-east-1_20240801T0300Z_{name}.json.gz");
            upload(
                aws,
                "pager-trail",
                &key,
                gzip(json!({"Records": records}).to_string().as_bytes()),
            )
            .await;
            json!({"s3Bucket": "pager-trail", "s3ObjectKey": [key]})
        }
    };
    let failed = deliver("a", vec![job("e1", "FAILED"), job("e2", "EXPIRED")]).await;
    let response = h.handle(failed).await.expect("failed backup");
    assert_eq!(response["published"], 2, "{response}");
    assert_eq!(drain(&aws, &queue, 2).await.len(), 2);
    let completed = deliver("b", vec![job("e3", "COMPLETED")]).await;
    let response = h.handle(completed).await.expect("completed backup");
    assert_eq!(
        response["published"], 0,
        "a resolution is not an SNS alert: {response}"
    );

    let requests = s.requests.lock().expect("lock").clone();
    let accepted = s.accepted.lock().expect("lock").clone();
    assert_eq!(requests.len(), 3, "the 429 was retried once: {requests:?}");
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    let (trigger, resolve) = (&accepted[0], &accepted[1]);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(resolve["event_action"], "resolve");
    // One key for the failed and the completed backup of the resource.
    let key = r#"job-failed|["arn:aws:ec2:us-east-1:123456789012:volume/vol-a"]"#;
    assert_eq!(trigger["dedup_key"], key);
    assert_eq!(resolve["dedup_key"], key);
    assert_eq!(trigger["routing_key"], "R0UT1NGKEY");
    let p = &trigger["payload"];
    assert_eq!(
        (&p["severity"], &p["source"], &p["class"]),
        (
            &json!("error"),
            &json!("123456789012/us-east-1"),
            &json!("job-failed")
        )
    );
    assert_eq!(p["timestamp"], "2024-08-01T02:00:00Z");
    assert_eq!(
        p["custom_details"]["runbook"],
        "Open the job in the AWS Backup console"
    );
    assert!(p["summary"]
        .as_str()
        .expect("summary")
        .starts_with("[HIGH] job-failed: BackupJobCompleted FAILED"));
    drop(moto);
}

/// Without a state store the pure path gives the same pairing: the recovery rule's match
/// resolves the failed rule's key, computed on the completed backup's record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_rules_trigger_and_resolve_the_same_dedup_key() {
    let doc = parse_rule_document("keyed.yaml", RULES).expect("rules");
    let rules = RuleSet::new(doc.rules).expect("set");
    let s = stand_in(vec![]).await;
    let paging = Paging {
        pager: Box::new(pager(&s.url)),
        routing_key: "R".into(),
        min_severity: Severity::High,
    };
    let failed = trail_alerts::alert::Alert::new(
        rules
            .rules()
            .iter()
            .find(|r| r.id == "job-failed")
            .expect("rule"),
        &job("e1", "FAILED"),
        trail_alerts::alert::AlertSource::File { path: "f".into() },
        0,
    );
    let recovered = trail_alerts::alert::Alert::new(
        rules
            .rules()
            .iter()
            .find(|r| r.id == "job-recovered")
            .expect("rule"),
        &job("e3", "COMPLETED"),
        trail_alerts::alert::AlertSource::File { path: "f".into() },
        1,
    );
    let (alerts, resolves) =
        trail_alerts::lambda::pager::resolutions(&rules, vec![failed, recovered]);
    paging.send(&alerts, &resolves).await.expect("sent");
    let accepted = s.accepted.lock().expect("lock").clone();
    assert_eq!(accepted.len(), 2);
    let key = r#"job-failed|["arn:aws:ec2:us-east-1:123456789012:volume/vol-a"]"#;
    assert_eq!(
        (&accepted[0]["event_action"], &accepted[0]["dedup_key"]),
        (&json!("trigger"), &json!(key))
    );
    assert_eq!(
        (&accepted[1]["event_action"], &accepted[1]["dedup_key"]),
        (&json!("resolve"), &json!(key))
    );
}

/// The routing key at cold start, from Secrets Manager (plain or JSON) or SSM, against moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routing_key_is_read_from_secrets_manager_or_ssm() {
    let moto = Moto::start();
    let config = loopback_sdk_config(&moto.endpoint, |l| l).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    secrets
        .create_secret()
        .name("pd/plain")
        .secret_string("KEY-PLAIN")
        .send()
        .await
        .expect("secret");
    secrets
        .create_secret()
        .name("pd/json")
        .secret_string(r#"{"routing_key": "KEY-JSON"}"#)
        .send()
        .await
        .expect("secret");
    aws_sdk_ssm::Client::new(&config)
        .put_parameter()
        .name("/trail-alerts/pagerduty")
        .value("KEY-SSM")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("parameter");
    assert_eq!(
        read_routing_key(&config, "pd/plain").await.expect("plain"),
        "KEY-PLAIN"
    );
    assert_eq!(
        read_routing_key(&config, "pd/json").await.expect("json"),
        "KEY-JSON"
    );
    assert_eq!(
        read_routing_key(&config, "ssm:/trail-alerts/pagerduty")
            .await
            .expect("ssm"),
        "KEY-SSM"
    );
    let err = read_routing_key(&config, "pd/missing")
        .await
        .expect_err("missing");
    assert!(err.starts_with("secret pd/missing: "), "{err}");
}
