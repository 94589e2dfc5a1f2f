//! Every way an S3 delivery reaches the function, reduced to the objects to read.
//!
//! - an S3 event notification (`Records[].s3`, keys form-URL-encoded: `+` is a space);
//! - the same wrapped in SNS (`Records[].Sns.Message`);
//! - SQS messages carrying any of these, or an SNS notification of them (`Records[].body`), each
//!   message judged on its own so that only failed messages return;
//! - CloudTrail's own SNS log-delivery notification (`{"s3Bucket": …, "s3ObjectKey": [ … ]}`, keys
//!   as they are), directly, through SNS or through SQS;
//! - EventBridge `Object Created` events from S3 (keys as they are);
//! - any other EventBridge event, directly or through SQS (or SNS): a CloudTrail event on
//!   EventBridge (its `detail` is a record) or a service's own event (AWS Backup's job, recovery
//!   point, vault, plan, Region setting and scan events, …), matched without reading S3;
//! - `s3:TestEvent`, which S3 sends when a notification is configured: acknowledged, nothing read.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sns::SnsEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::Value;

use crate::describe::json_kind;

/// An S3 object to read, with its key decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// What one notification asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Object(ObjectRef),
    /// An EventBridge event to match as it is (see [`crate::pattern::BusEvent`]).
    Event(Value),
    /// `s3:TestEvent`.
    Test,
    /// A notification about something other than a new object (e.g. `ObjectRemoved:*`).
    Ignored(String),
}

/// The payload of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Deliveries that succeed or fail together.
    Direct(Vec<Delivery>),
    /// SQS messages, each with its own deliveries (or the reason its body could not be read).
    Sqs(Vec<SqsMessage>),
    /// The schedule's `{"action": "sweep"}`: publish the roll-ups of closed windows.
    Sweep,
    /// A batch of keys from a Step Functions Distributed Map (`ItemReader` over
    /// `ListObjectsV2` or an S3 Inventory manifest, `ItemBatcher`): `{"Items": [{"Key": …},
    /// …], "BatchInput": {"bucket": …, "mode": "backfill" | "replay", "output": …, "run": …}}`.
    Batch(Batch),
}

/// A Distributed Map's batch of objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub objects: Vec<ObjectRef>,
    /// `mode: backfill`: findings are written to S3 instead of published; `None` (`mode:
    /// replay`): the objects are handled as if just delivered.
    pub backfill: Option<Backfill>,
}

/// Where a backfill writes its findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    /// `s3://bucket/prefix/`.
    pub output: crate::rules::S3Object,
    /// The run (the execution's name): findings go under `<prefix><run>/`.
    pub run: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsMessage {
    pub message_id: String,
    pub deliveries: Result<Vec<Delivery>, InputError>,
}

/// A payload (or message body) that is none of the known shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("unknown payload shape (top-level keys: {0}); expected an S3, SNS, SQS, EventBridge or CloudTrail notification")]
    UnknownShape(String),
    #[error("malformed {shape}: {reason}")]
    Malformed { shape: &'static str, reason: String },
}

/// Reads an invocation payload.
pub fn parse_payload(payload: &Value) -> Result<Payload, InputError> {
    if payload.get("action").and_then(Value::as_str) == Some("sweep") {
        return Ok(Payload::Sweep);
    }
    if payload.get("Items").is_some() && payload.get("BatchInput").is_some() {
        return parse_batch(payload).map(Payload::Batch);
    }
    if let Some(first) = payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
    {
        if first.get("eventSource").and_then(Value::as_str) == Some("aws:sqs") {
            return parse_sqs(payload).map(Payload::Sqs);
        }
    }
    parse_notification(payload).map(Payload::Direct)
}

fn parse_batch(payload: &Value) -> Result<Batch, InputError> {
    let bad = |reason: String| InputError::Malformed {
        shape: "Distributed Map batch",
        reason,
    };
    let input = payload
        .get("BatchInput")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("BatchInput is not an object".into()))?;
    let text = |key: &str| input.get(key).and_then(Value::as_str).map(str::trim);
    let bucket = text("bucket");
    let items = payload
        .get("Items")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Items is not a list".into()))?;
    let objects = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            // ListObjectsV2 items carry the key alone (the bucket comes in BatchInput); S3
            // Inventory manifest items carry their bucket.
            let key = item
                .get("Key")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("Items[{i}] has no Key")))?;
            let bucket = item
                .get("Bucket")
                .and_then(Value::as_str)
                .or(bucket)
                .filter(|b| !b.is_empty())
                .ok_or_else(|| {
                    bad(format!(
                        "Items[{i}] has no Bucket, and BatchInput no bucket"
                    ))
                })?;
            Ok(ObjectRef {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let backfill = match text("mode") {
        Some("replay") => None,
        Some("backfill") => {
            let output = text("output")
                .and_then(super::config::s3_prefix)
                .ok_or_else(|| bad("BatchInput.output must be s3://bucket/prefix/".into()))?;
            let run = text("run")
                .filter(|r| !r.is_empty() && !r.contains('/'))
                .ok_or_else(|| bad("BatchInput.run must name the run (no '/')".into()))?;
            Some(Backfill {
                output,
                run: run.to_owned(),
            })
        }
        other => {
            return Err(bad(format!(
                "BatchInput.mode is {other:?}; expected \"backfill\" (findings to S3) or \"replay\" (alerts published)"
            )))
        }
    };
    Ok(Batch { objects, backfill })
}

fn parse_sqs(payload: &Value) -> Result<Vec<SqsMessage>, InputError> {
    let event: SqsEvent =
        serde_json::from_value(payload.clone()).map_err(|e| InputError::Malformed {
            shape: "SQS event",
            reason: e.to_string(),
        })?;
    Ok(event
        .records
        .into_iter()
        .enumerate()
        .map(|(i, m)| SqsMessage {
            message_id: m.message_id.unwrap_or_else(|| format!("#{i}")),
            deliveries: match m.body {
                Some(body) => parse_body(&body),
                None => Err(InputError::Malformed {
                    shape: "SQS message",
                    reason: "no body".into(),
                }),
            },
        })
        .collect())
}

/// A message body (SQS or SNS) is itself one of the notification shapes, as JSON text.
fn parse_body(body: &str) -> Result<Vec<Delivery>, InputError> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| InputError::NotJson(e.to_string()))?;
    parse_notification(&value)
}

/// Any shape but SQS (SQS inside SQS does not happen).
fn parse_notification(v: &Value) -> Result<Vec<Delivery>, InputError> {
    if let Some(records) = v.get("Records").and_then(Value::as_array) {
        let source = records.first().and_then(|r| {
            r.get("eventSource")
                .or_else(|| r.get("EventSource"))
                .and_then(Value::as_str)
        });
        return match source {
            Some("aws:s3") => parse_s3(v),
            Some("aws:sns") => parse_sns(v),
            None if records.is_empty() => Ok(Vec::new()),
            other => Err(InputError::UnknownShape(format!(
                "Records from {}",
                other.unwrap_or("an unnamed source")
            ))),
        };
    }
    // An SNS notification as SQS receives it from a subscription (raw delivery off).
    if v.get("Type").and_then(Value::as_str) == Some("Notification") {
        let message =
            v.get("Message")
                .and_then(Value::as_str)
                .ok_or_else(|| InputError::Malformed {
                    shape: "SNS notification",
                    reason: "no Message string".into(),
                })?;
        return parse_body(message);
    }
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(vec![Delivery::Test]);
    }
    if let (Some(bucket), Some(keys)) = (v.get("s3Bucket"), v.get("s3ObjectKey")) {
        return parse_cloudtrail(bucket, keys);
    }
    if let (Some(source), Some(detail_type), Some(_)) = (
        v.get("source").and_then(Value::as_str),
        v.get("detail-type").and_then(Value::as_str),
        v.get("detail"),
    ) {
        if source == "aws.s3" && detail_type == "Object Created" {
            return parse_eventbridge(v);
        }
        // The envelope as EventBridge defines it (a time that is not a time, resources that
        // are not ARNs, … are refused with what was wrong); the event is matched as it is.
        serde_json::from_value::<EventBridgeEvent<Value>>(v.clone()).map_err(|e| {
            InputError::Malformed {
                shape: "EventBridge event",
                reason: e.to_string(),
            }
        })?;
        return Ok(vec![Delivery::Event(v.clone())]);
    }
    let keys: Vec<String> = match v {
        Value::Object(m) => m.keys().take(8).map(|k| format!("{k:?}")).collect(),
        other => vec![format!("not an object but {}", json_kind(other))],
    };
    Err(InputError::UnknownShape(keys.join(", ")))
}

fn parse_s3(v: &Value) -> Result<Vec<Delivery>, InputError> {
    let event: S3Event = serde_json::from_value(v.clone()).map_err(|e| InputError::Malformed {
        shape: "S3 event",
        reason: e.to_string(),
    })?;
    event
        .records
        .into_iter()
        .map(|r| {
            let name = r.event_name.clone().unwrap_or_default();
            // A removal is told as S3's own `Object Deleted` event (the trail-log-deleted rule
            // names the object and the deleter): trail logs are evidence.
            if name.starts_with("ObjectRemoved:") || name.starts_with("LifecycleExpiration:") {
                return object_deleted(&r, &name).map(Delivery::Event);
            }
            if !name.starts_with("ObjectCreated:") {
                return Ok(Delivery::Ignored(name));
            }
            let bucket = r.s3.bucket.name.ok_or_else(|| InputError::Malformed {
                shape: "S3 event",
                reason: "a record has no bucket name".into(),
            })?;
            let raw = r.s3.object.key.ok_or_else(|| InputError::Malformed {
                shape: "S3 event",
                reason: "a record has no object key".into(),
            })?;
            let key = decode_form(&raw).ok_or_else(|| InputError::Malformed {
                shape: "S3 event",
                reason: format!("object key {raw:?} is not valid URL encoding of UTF-8"),
            })?;
            Ok(Delivery::Object(ObjectRef { bucket, key }))
        })
        .collect()
}

fn parse_sns(v: &Value) -> Result<Vec<Delivery>, InputError> {
    let event: SnsEvent = serde_json::from_value(v.clone()).map_err(|e| InputError::Malformed {
        shape: "SNS event",
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for r in event.records {
        out.extend(parse_body(&r.sns.message)?);
    }
    Ok(out)
}

fn parse_cloudtrail(bucket: &Value, keys: &Value) -> Result<Vec<Delivery>, InputError> {
    let malformed = |reason: &str| InputError::Malformed {
        shape: "CloudTrail notification",
        reason: reason.into(),
    };
    let bucket = bucket
        .as_str()
        .ok_or_else(|| malformed("s3Bucket is not a string"))?;
    let keys = keys
        .as_array()
        .ok_or_else(|| malformed("s3ObjectKey is not a list"))?;
    keys.iter()
        .map(|k| {
            k.as_str()
                .map(|key| {
                    Delivery::Object(ObjectRef {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                    })
                })
                .ok_or_else(|| malformed("an s3ObjectKey entry is not a string"))
        })
        .collect()
}

/// An S3 notification of a removal as S3's own EventBridge `Object Deleted` event (the
/// fields S3 puts there: bucket, object, requester, source address, reason, deletion type),
/// so that one rule matches removals however they arrive.
fn object_deleted(
    r: &aws_lambda_events::event::s3::S3EventRecord,
    name: &str,
) -> Result<Value, InputError> {
    let malformed = |reason: &str| InputError::Malformed {
        shape: "S3 event",
        reason: reason.into(),
    };
    let bucket =
        r.s3.bucket
            .name
            .clone()
            .ok_or_else(|| malformed("a record has no bucket name"))?;
    let raw =
        r.s3.object
            .key
            .clone()
            .ok_or_else(|| malformed("a record has no object key"))?;
    let key = decode_form(&raw).ok_or_else(|| InputError::Malformed {
        shape: "S3 event",
        reason: format!("object key {raw:?} is not valid URL encoding of UTF-8"),
    })?;
    // The notification does not say the bucket's account: the log's own account (its key's
    // `AWSLogs/[o-…/]<account>/`) names whose trail lost it.
    let mut parts = key.split('/').skip_while(|p| *p != "AWSLogs").skip(1);
    let account = match parts.next() {
        Some(org) if org.starts_with("o-") => parts.next(),
        other => other,
    }
    .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
    .unwrap_or_default()
    .to_owned();
    let lifecycle = name.starts_with("LifecycleExpiration:");
    let marker = name.ends_with("DeleteMarkerCreated");
    let requester = r.principal_id.principal_id.clone().unwrap_or_default();
    let requester = requester
        .strip_prefix("AWS:")
        .unwrap_or(&requester)
        .to_owned();
    let time = crate::time::format_timestamp(r.event_time.timestamp());
    let sequencer = r.s3.object.sequencer.clone().unwrap_or_default();
    Ok(serde_json::json!({
        "version": "0",
        "id": format!("s3-notification-{bucket}-{sequencer}"),
        "detail-type": "Object Deleted",
        "source": "aws.s3",
        "account": account,
        "time": time,
        "region": r.aws_region.clone().unwrap_or_default(),
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "sequencer": sequencer, "version-id": r.s3.object.version_id},
            "request-id": r.response_elements.get("x-amz-request-id"),
            "requester": if lifecycle { "s3.amazonaws.com".to_owned() } else { requester },
            "source-ip-address": r.request_parameters.source_ip_address,
            "reason": if lifecycle { "Lifecycle Expiration" } else { "DeleteObject" },
            "deletion-type": if marker { "Delete Marker Created" } else { "Permanently Deleted" },
            "notification": name,
        }
    }))
}

/// S3's `Object Created` event on EventBridge: the object to read.
fn parse_eventbridge(v: &Value) -> Result<Vec<Delivery>, InputError> {
    let bucket = v.pointer("/detail/bucket/name").and_then(Value::as_str);
    let key = v.pointer("/detail/object/key").and_then(Value::as_str);
    match (bucket, key) {
        (Some(bucket), Some(key)) => Ok(vec![Delivery::Object(ObjectRef {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })]),
        _ => Err(InputError::Malformed {
            shape: "EventBridge Object Created event",
            reason: "no detail.bucket.name or detail.object.key".into(),
        }),
    }
}

/// Decodes an S3 notification key: `+` is a space, `%XX` a byte; the result must be UTF-8.
pub fn decode_form(raw: &str) -> Option<String> {
    let plus_decoded = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(bucket: &str, key: &str) -> Delivery {
        Delivery::Object(ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
        })
    }

    fn s3_event(key: &str) -> Value {
        json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2024-01-01T00:00:00.000Z", "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AWS:X"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {}, "s3": {"s3SchemaVersion": "1.0", "configurationId": "c",
            "bucket": {"name": "trail-bucket", "ownerIdentity": {"principalId": "X"}, "arn": "arn:aws:s3:::trail-bucket"},
            "object": {"key": key, "size": 10, "eTag": "e", "sequencer": "1"}}
        }]})
    }

    #[test]
    fn s3_keys_are_form_decoded() {
        assert_eq!(
            decode_form("a+b%2Bc%20d%C3%A9").as_deref(),
            Some("a b+c dé")
        );
        assert_eq!(decode_form("%FF"), None);
        let p = parse_payload(&s3_event("my+prefix/AWSLogs/x%3Ay.json.gz")).unwrap();
        assert_eq!(
            p,
            Payload::Direct(vec![object(
                "trail-bucket",
                "my prefix/AWSLogs/x:y.json.gz"
            )])
        );
    }

    #[test]
    fn sns_and_sqs_wrapping() {
        let s3 = s3_event("k.json.gz");
        let sns_notification = json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
                                      "Message": s3.to_string(), "Timestamp": "2024-01-01T00:00:00.000Z"});
        let sqs = json!({"Records": [
            {"messageId": "a", "body": s3.to_string(), "eventSource": "aws:sqs"},
            {"messageId": "b", "body": sns_notification.to_string(), "eventSource": "aws:sqs"},
            {"messageId": "c", "body": "garbage {", "eventSource": "aws:sqs"},
            {"messageId": "d", "body": json!({"s3Bucket": "b", "s3ObjectKey": ["x y+z.json.gz"]}).to_string(), "eventSource": "aws:sqs"},
        ]});
        let Payload::Sqs(messages) = parse_payload(&sqs).unwrap() else {
            panic!("not SQS")
        };
        assert_eq!(
            messages[0].deliveries,
            Ok(vec![object("trail-bucket", "k.json.gz")])
        );
        assert_eq!(
            messages[1].deliveries,
            Ok(vec![object("trail-bucket", "k.json.gz")])
        );
        assert!(matches!(
            messages[2].deliveries,
            Err(InputError::NotJson(_))
        ));
        // CloudTrail's own notification carries keys as they are: '+' stays '+'.
        assert_eq!(
            messages[3].deliveries,
            Ok(vec![object("b", "x y+z.json.gz")])
        );
        assert_eq!(messages[3].message_id, "d");
    }

    #[test]
    fn test_events_eventbridge_and_unknown_shapes() {
        let test = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-01-01T00:00:00.000Z", "Bucket": "b", "RequestId": "r", "HostId": "h"});
        assert_eq!(
            parse_payload(&test).unwrap(),
            Payload::Direct(vec![Delivery::Test])
        );
        let eb = json!({"version": "0", "detail-type": "Object Created", "source": "aws.s3",
                        "detail": {"bucket": {"name": "b"}, "object": {"key": "raw key+1.json.gz"}}});
        assert_eq!(
            parse_payload(&eb).unwrap(),
            Payload::Direct(vec![object("b", "raw key+1.json.gz")])
        );
        // Any other event is matched as it is: S3's own Object Deleted, AWS Backup's events,
        // CloudTrail events on EventBridge; through SQS too.
        for event in [
            json!({"detail-type": "Object Deleted", "source": "aws.s3", "detail": {}}),
            json!({"detail-type": "Backup Job State Change", "source": "aws.backup", "detail": {"state": "FAILED"}}),
            json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.backup", "detail": {"eventName": "DeleteBackupVault"}}),
        ] {
            assert_eq!(
                parse_payload(&event).unwrap(),
                Payload::Direct(vec![Delivery::Event(event.clone())])
            );
            let sqs = json!({"Records": [{"messageId": "m1", "eventSource": "aws:sqs", "body": event.to_string()}]});
            let Payload::Sqs(messages) = parse_payload(&sqs).unwrap() else {
                panic!("SQS")
            };
            assert_eq!(
                messages[0].deliveries,
                Ok(vec![Delivery::Event(event.clone())])
            );
        }
        let bad_time = json!({"detail-type": "Backup Job State Change", "source": "aws.backup",
                              "time": "yesterday", "detail": {}});
        let err = parse_payload(&bad_time).unwrap_err().to_string();
        assert!(err.starts_with("malformed EventBridge event: "), "{err}");
        let err = parse_payload(&json!({"hello": "world"})).unwrap_err();
        assert_eq!(err.to_string(), "unknown payload shape (top-level keys: \"hello\"); expected an S3, SNS, SQS, EventBridge or CloudTrail notification");
        assert!(parse_payload(&json!([1])).is_err());
    }

    #[test]
    fn removals_are_told_as_s3s_object_deleted_events() {
        let mut e = s3_event("AWSLogs/1/CloudTrail/us-east-1/2024/01/10/k%2B1.json.gz");
        e["Records"][0]["eventName"] = json!("ObjectRemoved:Delete");
        e["Records"][0]["userIdentity"] = json!({"principalId": "AWS:AIDAEXAMPLE"});
        let Payload::Direct(d) = parse_payload(&e).unwrap() else {
            panic!("direct")
        };
        let [Delivery::Event(event)] = d.as_slice() else {
            panic!("{d:?}")
        };
        assert_eq!(event["detail-type"], "Object Deleted");
        assert_eq!(
            event["detail"]["object"]["key"],
            "AWSLogs/1/CloudTrail/us-east-1/2024/01/10/k+1.json.gz"
        );
        assert_eq!(event["detail"]["requester"], "AIDAEXAMPLE");
        assert_eq!(event["account"], "", "no account in the key");
        assert_eq!(event["detail"]["reason"], "DeleteObject");
        e["Records"][0]["eventName"] = json!("LifecycleExpiration:DeleteMarkerCreated");
        let Payload::Direct(d) = parse_payload(&e).unwrap() else {
            panic!("direct")
        };
        let [Delivery::Event(event)] = d.as_slice() else {
            panic!("{d:?}")
        };
        assert_eq!(event["detail"]["reason"], "Lifecycle Expiration");
        assert_eq!(event["detail"]["deletion-type"], "Delete Marker Created");
        // An organisation trail's log names its account after the organisation's id.
        e["Records"][0]["s3"]["object"]["key"] =
            json!("AWSLogs/o-exampleorgid/123456789012/CloudTrail/us-east-1/2024/01/10/k.json.gz");
        let Payload::Direct(d) = parse_payload(&e).unwrap() else {
            panic!("direct")
        };
        let [Delivery::Event(event)] = d.as_slice() else {
            panic!("{d:?}")
        };
        assert_eq!(event["account"], "123456789012");
        // Other notifications (a restore, a replication) are still acknowledged, not read.
        e["Records"][0]["eventName"] = json!("ObjectRestore:Completed");
        assert_eq!(
            parse_payload(&e).unwrap(),
            Payload::Direct(vec![Delivery::Ignored("ObjectRestore:Completed".into())])
        );
    }
}
