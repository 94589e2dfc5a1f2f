//! Faults between the function and AWS, injected into the real SDK clients with
//! `aws-smithy-mocks` (the SDK's own test utility): the SDK parses the injected responses as it
//! would AWS's, and the function's adapters (`S3Store`, `SnsPublisher`) and handler do the rest.
//! Every alert is either published or the invocation fails with the right retry verdict; retries
//! never publish an entry twice; S3 faults name the object and say whether a retry can help.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_sns::operation::publish_batch::PublishBatchOutput;
use aws_sdk_sns::types::{BatchResultErrorEntry, PublishBatchResultEntry};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_types::byte_stream::ByteStream;
use bytes::Bytes;
use serde_json::Value;
use trail_alerts::lambda::ports::aws::{S3Store, SnsPublisher};
use trail_alerts::lambda::ports::fakes::{FakeObjects, FakePublisher};
use trail_alerts::lambda::HandlerError;

use crate::util::{
    config, event, handler, loopback_s3, loopback_sdk_config, trail, BUCKET, K1, TOPIC,
};

fn store() -> FakeObjects {
    let mut s = FakeObjects::default();
    s.put(BUCKET, K1, trail(K1));
    s
}

/// The sample S3 notification for K1, handled with the sample trail in memory and alerts
/// published through this (mocked) SNS client.
async fn handle_publishing_to(sns: aws_sdk_sns::Client) -> Result<Value, HandlerError> {
    handler(store(), SnsPublisher::new(sns), config())
        .handle(event("s3-object-created.json"))
        .await
}

/// The sample S3 notification for K1, the object read through this S3 client and alerts
/// published in memory.
async fn handle_reading_from(s3: aws_sdk_s3::Client) -> Result<Value, HandlerError> {
    handler(S3Store::new(s3), FakePublisher::default(), config())
        .handle(event("s3-object-created.json"))
        .await
}

fn sns_error(status: u16, code: &str) -> aws_smithy_runtime_api::http::Response {
    let body = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected {code}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
    );
    aws_smithy_runtime_api::http::Response::new(
        status.try_into().expect("status"),
        aws_smithy_types::body::SdkBody::from(body),
    )
}

/// The entry ids of each PublishBatch call, as the SDK sent them.
type Calls = Arc<Mutex<Vec<Vec<String>>>>;

fn recording(
    calls: &Calls,
) -> impl Fn(&aws_sdk_sns::operation::publish_batch::PublishBatchInput) -> bool + Send + Sync + 'static
{
    let calls = Arc::clone(calls);
    move |req| {
        calls.lock().expect("calls").push(entry_ids(req));
        true
    }
}

/// The entry ids of a PublishBatch request, in order.
fn entry_ids(req: &aws_sdk_sns::operation::publish_batch::PublishBatchInput) -> Vec<String> {
    req.publish_batch_request_entries()
        .iter()
        .map(|e| e.id().to_owned())
        .collect()
}

fn accepted(ids: &[String]) -> PublishBatchOutput {
    PublishBatchOutput::builder()
        .set_successful(Some(
            ids.iter()
                .map(|id| {
                    PublishBatchResultEntry::builder()
                        .id(id)
                        .message_id(format!("m-{id}"))
                        .build()
                })
                .collect(),
        ))
        .build()
}

#[tokio::test]
async fn sns_5xx_and_throttling_fail_the_invocation_as_retryable() {
    for (status, code) in [
        (500, "InternalError"),
        (400, "Throttling"),
        (503, "ServiceUnavailable"),
    ] {
        let rule = mock!(aws_sdk_sns::Client::publish_batch)
            .sequence()
            .http_response(move || sns_error(status, code))
            .repeatedly()
            .build();
        let sns = mock_client!(aws_sdk_sns, RuleMode::Sequential, [&rule]);
        let err = handle_publishing_to(sns).await.expect_err("publish fails");
        assert!(err.retryable(), "{status} {code}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("PublishBatch to {TOPIC} failed")),
            "{err}"
        );
        assert!(err.to_string().contains(code), "{err}");
        assert_eq!(
            lambda_runtime::Diagnostic::from(err).error_type,
            "TrailAlerts.Retryable"
        );
    }
}

#[tokio::test]
async fn entries_sns_refuses_are_retried_alone_and_never_published_twice() {
    let calls: Calls = Arc::default();
    // First call: SNS refuses two of the four entries (a transient fault on its side).
    let first = mock!(aws_sdk_sns::Client::publish_batch)
        .match_requests(recording(&calls))
        .then_compute_output(|req| {
            let ids = entry_ids(req);
            PublishBatchOutput::builder()
                .set_successful(Some(
                    ids[..2]
                        .iter()
                        .map(|id| PublishBatchResultEntry::builder().id(id).build())
                        .collect(),
                ))
                .set_failed(Some(
                    ids[2..]
                        .iter()
                        .map(|id| {
                            BatchResultErrorEntry::builder()
                                .id(id)
                                .code("InternalFailure")
                                .sender_fault(false)
                                .build()
                                .expect("entry")
                        })
                        .collect(),
                ))
                .build()
        });
    let then = mock!(aws_sdk_sns::Client::publish_batch)
        .match_requests(recording(&calls))
        .then_compute_output(|req| {
            let ids = entry_ids(req);
            accepted(&ids)
        });
    let sns = mock_client!(aws_sdk_sns, RuleMode::Sequential, [&first, &then]);
    let response = handle_publishing_to(sns)
        .await
        .expect("published in the end");
    assert_eq!(response["published"], 4);
    let calls = calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].len(), 4);
    assert_eq!(
        calls[1],
        calls[0][2..].to_vec(),
        "only the refused entries are sent again"
    );
}

#[tokio::test]
async fn a_sender_fault_is_not_retried() {
    let calls: Calls = Arc::default();
    let rule = mock!(aws_sdk_sns::Client::publish_batch)
        .match_requests(recording(&calls))
        .then_compute_output(|req| {
            let id = req.publish_batch_request_entries()[0].id().to_owned();
            PublishBatchOutput::builder()
                .set_failed(Some(vec![BatchResultErrorEntry::builder()
                    .id(id)
                    .code("InvalidParameter")
                    .message("Message too long")
                    .sender_fault(true)
                    .build()
                    .expect("entry")]))
                .build()
        });
    let sns = mock_client!(aws_sdk_sns, RuleMode::Sequential, [&rule]);
    let err = handle_publishing_to(sns).await.expect_err("refused");
    assert!(!err.retryable(), "{err}");
    assert!(
        err.to_string()
            .contains("InvalidParameter (Message too long)"),
        "{err}"
    );
    assert_eq!(calls.lock().expect("calls").len(), 1);
}

fn s3_error(status: u16, code: &str, message: &str) -> aws_smithy_runtime_api::http::Response {
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>r</RequestId></Error>");
    aws_smithy_runtime_api::http::Response::new(
        status.try_into().expect("status"),
        aws_smithy_types::body::SdkBody::from(body),
    )
}

#[tokio::test]
async fn s3_faults_name_the_object_and_say_whether_a_retry_can_help() {
    for (status, code, message, retryable, says) in [
        (
            403,
            "AccessDenied",
            "Access Denied",
            false,
            "access denied: s3:GetObject on arn:aws:s3:::trail-alerts-demo/AWSLogs/123456789012/CloudTrail/us-east-1/2019/01/10/123456789012_CloudTrail_us-east-1_20190110T1350Z_BackupSamples0001.json.gz as the function's role (AccessDenied: Access Denied)",
        ),
        (
            403,
            "AccessDenied",
            "User is not authorized to perform: kms:Decrypt",
            false,
            "kms:Decrypt",
        ),
        (
            400,
            "KMS.DisabledException",
            "The key is disabled",
            false,
            "(KMS.DisabledException: The key is disabled)",
        ),
        (
            404,
            "NoSuchKey",
            "The specified key does not exist.",
            false,
            "no such object",
        ),
        (
            503,
            "SlowDown",
            "Please reduce your request rate.",
            true,
            "transient failure: 503 SlowDown",
        ),
        (
            500,
            "InternalError",
            "We encountered an internal error.",
            true,
            "transient failure: 500 InternalError",
        ),
    ] {
        let rule = mock!(aws_sdk_s3::Client::get_object)
            .sequence()
            .http_response(move || s3_error(status, code, message))
            .repeatedly()
            .build();
        let s3 = mock_client!(aws_sdk_s3, RuleMode::Sequential, [&rule]);
        let err = handle_reading_from(s3).await.expect_err("fails");
        assert_eq!(err.retryable(), retryable, "{code}: {err}");
        assert!(
            err.to_string().contains(&format!("s3://{BUCKET}/{K1}")),
            "{err}"
        );
        assert!(err.to_string().contains(says), "{code}: {err}");
    }
}

/// A body that hands out some bytes, then breaks off like a reset connection.
struct BreaksOff(Option<Bytes>);

impl http_body::Body for BreaksOff {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(Some(match self.0.take() {
            Some(bytes) => Ok(http_body::Frame::data(bytes)),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            )),
        }))
    }
}

/// Regression: a transport error under gzip was reported as "gzip data is corrupt" with its
/// cause hidden, and not retried (fixed in 9402e7b). It is an I/O error with its cause.
#[tokio::test]
async fn a_body_that_breaks_off_mid_stream_is_a_retryable_io_error_not_corrupt_gzip() {
    let whole = trail(K1);
    let half = Bytes::copy_from_slice(&whole[..whole.len() / 2]);
    let rule = mock!(aws_sdk_s3::Client::get_object).then_output(move || {
        GetObjectOutput::builder()
            .body(ByteStream::from_body_1_x(BreaksOff(Some(half.clone()))))
            .build()
    });
    let s3 = mock_client!(aws_sdk_s3, RuleMode::Sequential, [&rule]);
    let err = handle_reading_from(s3).await.expect_err("broken body");
    assert!(err.retryable(), "{err}");
    assert!(
        err.to_string().contains(&format!("s3://{BUCKET}/{K1}")),
        "{err}"
    );
    assert!(
        err.to_string().contains("connection reset by peer"),
        "{err}"
    );
    assert!(!err.to_string().contains("gzip data is corrupt"), "{err}");
}

/// An endpoint on loopback that accepts connections and never answers.
fn silent_endpoint() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, format!("http://{addr}"))
}

/// A slow S3 (it never answers) fails the object within the function's deliberate timeouts —
/// the production values of `aws::timeouts` and `aws::retries`, not test values — with the
/// object named, as a retryable fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_s3_fails_within_the_deliberate_timeouts() {
    let (listener, endpoint) = silent_endpoint();
    // Accept and hold connections without a word.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(16).flatten() {
            held.push(stream);
        }
    });
    // The function's own timeouts and retries, against the silent endpoint only.
    let shared = loopback_sdk_config(&endpoint, |l| {
        l.timeout_config(trail_alerts::lambda::ports::aws::timeouts())
            .retry_config(trail_alerts::lambda::ports::aws::retries())
    })
    .await;
    let s3 = loopback_s3(&shared);
    let started = std::time::Instant::now();
    let err = handle_reading_from(s3).await.expect_err("silent");
    let took = started.elapsed();
    assert!(
        took <= trail_alerts::lambda::ports::aws::OPERATION_TIMEOUT + Duration::from_secs(5),
        "{took:?}"
    );
    assert!(err.retryable(), "{err}");
    assert!(
        err.to_string().contains(&format!("s3://{BUCKET}/{K1}")),
        "{err}"
    );
    assert!(err.to_string().contains("transient failure"), "{err}");
}
