//! The ports implemented with the AWS SDK: the only module that imports `aws_sdk_*`.
//!
//! Timeouts and retries are set deliberately so that a missing bucket or object, a denied key or
//! an unreachable endpoint fails in seconds, not minutes: 3 s to connect, 10 s to read, 15 s per
//! attempt, 3 attempts with the standard (jittered, exponential) back-off, 45 s per operation;
//! the SDK's stalled-stream protection ends a body that stops flowing.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

use crate::describe;
use crate::rules::{RuleError, RuleSet, RuleSource, S3Object};

use super::input::ObjectRef;
use super::message::OutMessage;
use super::ports::{
    EntryFailure, FetchError, ObjectBody, ObjectStore, PublishCallError, Publisher,
};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(45);
pub const MAX_ATTEMPTS: u32 = 3;

/// The SDK configuration from the standard chain (environment, profile, container/instance
/// credentials, `AWS_ENDPOINT_URL`), with this function's timeouts and retries.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .retry_config(retries())
        .load()
        .await
}

/// The function's deliberate timeouts.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The function's retry limit (standard mode: jittered exponential back-off).
pub fn retries() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS)
}

/// S3 clients; path-style addressing when an endpoint is set (local S3 emulators).
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let builder = aws_sdk_s3::config::Builder::from(config);
    let builder = if std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
    {
        builder.force_path_style(true)
    } else {
        builder
    };
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// Reading objects with `GetObject`, streamed.
#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Store { client }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn open(&self, object: &ObjectRef) -> Result<ObjectBody, FetchError> {
        let out = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(fetch_error)?;
        Ok(Box::new(out.body.into_async_read()))
    }
}

fn fetch_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> FetchError {
    match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("").to_owned();
            let message = se.err().message().unwrap_or("").to_owned();
            match (status, code.as_str()) {
                (404, _) | (_, "NoSuchKey" | "NoSuchBucket") => FetchError::NotFound,
                (403, _)
                | (_, "AccessDenied" | "KMS.AccessDeniedException" | "KMS.DisabledException") => {
                    FetchError::AccessDenied(format!("{code}: {message}"))
                }
                (500..=599, _)
                | (_, "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout") => {
                    FetchError::Transient(format!("{status} {code}: {message}"))
                }
                _ => FetchError::Other(format!("{status} {code}: {message}")),
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            FetchError::Transient(describe::chain(&e))
        }
        _ => FetchError::Other(describe::chain(&e)),
    }
}

/// Publishing with `PublishBatch`.
#[derive(Clone)]
pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
}

impl SnsPublisher {
    pub fn new(client: aws_sdk_sns::Client) -> Self {
        SnsPublisher { client }
    }
}

#[async_trait]
impl Publisher for SnsPublisher {
    async fn publish_batch(
        &self,
        topic: &str,
        entries: &[OutMessage],
    ) -> Result<Vec<EntryFailure>, PublishCallError> {
        let built = entries
            .iter()
            .map(entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PublishCallError {
                message: format!("building the request: {e}"),
                retryable: false,
            })?;
        let out = self
            .client
            .publish_batch()
            .topic_arn(topic)
            .set_publish_batch_request_entries(Some(built))
            .send()
            .await
            .map_err(|e| {
                let retryable = match &e {
                    SdkError::ServiceError(se) => {
                        let status = se.raw().status().as_u16();
                        status >= 500
                            || matches!(
                                se.err().code(),
                                Some(
                                    "Throttling"
                                        | "ThrottledException"
                                        | "KMSThrottling"
                                        | "InternalError"
                                )
                            )
                    }
                    SdkError::TimeoutError(_)
                    | SdkError::DispatchFailure(_)
                    | SdkError::ResponseError(_) => true,
                    _ => false,
                };
                let code = e.code().unwrap_or("").to_owned();
                PublishCallError {
                    message: format!("{code} {}", describe::chain(&e)).trim().to_owned(),
                    retryable,
                }
            })?;
        Ok(out
            .failed()
            .iter()
            .map(|f| EntryFailure {
                id: f.id().to_owned(),
                code: f.code().to_owned(),
                message: f.message().unwrap_or("").to_owned(),
                sender_fault: f.sender_fault(),
            })
            .collect())
    }
}

fn entry(m: &OutMessage) -> Result<PublishBatchRequestEntry, aws_sdk_sns::error::BuildError> {
    let mut attributes = HashMap::new();
    for (name, value) in &m.attributes {
        attributes.insert(
            name.clone(),
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()?,
        );
    }
    let mut b = PublishBatchRequestEntry::builder()
        .id(&m.id)
        .message(&m.body)
        .subject(&m.subject)
        .set_message_attributes(Some(attributes))
        .set_message_group_id(m.group_id.clone())
        .set_message_deduplication_id(m.dedup_id.clone());
    if m.structured {
        b = b.message_structure("json");
    }
    b.build()
}

/// Reads an `s3://bucket/key` rule document at cold start (at most 4 MiB).
pub async fn read_rule_document(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<String, String> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| fetch_error(e).to_string())?;
    if out.content_length().unwrap_or(0) > 4 << 20 {
        return Err("larger than 4 MiB; a rule document is small".into());
    }
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| describe::chain(&e))?
        .into_bytes();
    String::from_utf8(bytes.to_vec()).map_err(|_| "not UTF-8 text".into())
}

/// Loads the rule sources at cold start: the `s3://` documents are read first, through S3, then
/// every source is loaded in order as the command line loads it.
pub async fn load_rules(
    client: &aws_sdk_s3::Client,
    sources: &[RuleSource],
) -> Result<RuleSet, RuleError> {
    let mut fetched = HashMap::new();
    for source in sources {
        if let RuleSource::S3(object) = source {
            let text = read_rule_document(client, &object.bucket, &object.key).await;
            fetched.insert(object.clone(), text);
        }
    }
    RuleSet::load_with(sources, |object: &S3Object| {
        fetched
            .get(object)
            .cloned()
            .unwrap_or_else(|| Err("not read".into()))
    })
}
