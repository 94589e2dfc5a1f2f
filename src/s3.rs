//! S3 through the AWS SDK, for the function and for the command line (`scan s3://…`,
//! `--rules s3://…`): the SDK configuration with deliberate timeouts and retries, the client,
//! what a failed call means (and whether retrying can help), rule documents read from S3.
//!
//! Timeouts and retries are set so that a missing bucket or object, a denied key or an
//! unreachable endpoint fails in seconds, not minutes: 3 s to connect, 10 s to read, 15 s per
//! attempt, 3 attempts with the standard (jittered, exponential) back-off, 45 s per operation;
//! the SDK's stalled-stream protection ends a body that stops flowing.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::describe;
use crate::rules::{RuleError, RuleSet, RuleSource, S3Object};

/// Why an object could not be read (or written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("no such object (NoSuchKey or NoSuchBucket)")]
    NotFound,
    /// What was denied and, where known, the statement that would allow it.
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("transient failure: {0}")]
    Transient(String),
    #[error("{0}")]
    Other(String),
}

impl FetchError {
    /// Whether trying again later can help.
    pub fn retryable(&self) -> bool {
        matches!(self, FetchError::Transient(_))
    }
}

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

/// A fetched log's body as a stream, with its length as S3 told it (`Content-Length`): the
/// hint by which the reader streams a large log from its first bytes
/// ([`crate::pipeline::Pipeline::run_sized`]).
pub fn body_and_length(
    out: aws_sdk_s3::operation::get_object::GetObjectOutput,
) -> (impl tokio::io::AsyncBufRead, Option<u64>) {
    let length = out.content_length().and_then(|n| u64::try_from(n).ok());
    (out.body.into_async_read(), length)
}

/// What a denial says when the caller knows no more about the object than its name.
pub const ACCESS_HINT: &str = "; check the caller's s3:GetObject and kms:Decrypt permissions";

/// A role the caller was configured to read through could not be assumed (no trust, a wrong
/// external id, no `sts:AssumeRole` in the caller's policy): retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the read role {role} could not be assumed ({reason}); its trust policy must allow the \
     function's role to call sts:AssumeRole (with sts:ExternalId when TRAIL_READ_EXTERNAL_ID is \
     set), and the function's role must be allowed sts:AssumeRole on it"
)]
pub struct RoleRefused {
    pub role: String,
    pub reason: String,
}

/// The `RoleRefused` somewhere in an error's chain of sources.
fn role_refused<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a RoleRefused> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<RoleRefused>() {
            return Some(r);
        }
        next = e.source();
    }
    None
}

pub fn fetch_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> FetchError {
    if let Some(refused) = role_refused(&e) {
        return FetchError::AccessDenied(refused.to_string());
    }
    match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("").to_owned();
            let message = se.err().message().unwrap_or("").to_owned();
            match (status, code.as_str()) {
                (404, _) | (_, "NoSuchKey" | "NoSuchBucket") => FetchError::NotFound,
                (403, _)
                | (_, "AccessDenied" | "KMS.AccessDeniedException" | "KMS.DisabledException") => {
                    FetchError::AccessDenied(format!("{code}: {message}{ACCESS_HINT}"))
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
    load_fetched(sources, &fetch_rule_documents(client, sources).await)
}

/// The `s3://` rule documents of these sources, each read or why not.
pub async fn fetch_rule_documents(
    client: &aws_sdk_s3::Client,
    sources: &[RuleSource],
) -> HashMap<S3Object, Result<String, String>> {
    let mut fetched = HashMap::new();
    for source in sources {
        if let RuleSource::S3(object) = source {
            let text = read_rule_document(client, &object.bucket, &object.key).await;
            fetched.insert(object.clone(), text);
        }
    }
    fetched
}

/// The sources loaded with their `s3://` documents as given.
pub fn load_fetched(
    sources: &[RuleSource],
    fetched: &HashMap<S3Object, Result<String, String>>,
) -> Result<RuleSet, RuleError> {
    RuleSet::load_with(sources, |object: &S3Object| {
        fetched
            .get(object)
            .cloned()
            .unwrap_or_else(|| Err("not read".into()))
    })
}

/// An object a listing found: its key and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

/// What listing a prefix found, and what it cost.
#[derive(Debug, Default)]
pub struct Listing {
    /// In key order.
    pub objects: Vec<Listed>,
    /// `ListObjectsV2` calls made.
    pub list_calls: u64,
    /// Prefixes that could not be listed, each with why and whether a retry can help.
    pub errors: Vec<String>,
}

/// `… (a retry can help)` or `… (retrying cannot help)`.
pub fn with_verdict(e: &FetchError) -> String {
    format!(
        "{e} ({})",
        if e.retryable() {
            "a retry can help"
        } else {
            "retrying cannot help"
        }
    )
}

/// One `ListObjectsV2` walk of a prefix (every page): the folders under it with `delimiter`,
/// else the objects.
async fn list_prefix(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    folders: bool,
    calls: &mut u64,
) -> Result<(Vec<String>, Vec<Listed>), FetchError> {
    let (mut found_folders, mut found) = (Vec::new(), Vec::new());
    let mut token = None;
    loop {
        let mut request = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take());
        if folders {
            request = request.delimiter("/");
        }
        *calls += 1;
        let page = request.send().await.map_err(fetch_error)?;
        found_folders.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
        found.extend(page.contents().iter().filter_map(|o| {
            Some(Listed {
                key: o.key()?.to_owned(),
                size: o.size().unwrap_or(0).max(0) as u64,
            })
        }));
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => return Ok((found_folders, found)),
        }
    }
}

/// Lists the objects under `s3://bucket/prefix` that the narrowing asks for, walking
/// CloudTrail's layout (`crate::layout`): organisation, account and Region folders are listed
/// (or named), day folders are named, and only they are listed whole, `concurrency` at a time.
pub async fn list_logs(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    narrowing: &crate::layout::Narrowing,
    concurrency: usize,
) -> Listing {
    use crate::layout::{follow, step, Next, Start};
    let mut listing = Listing::default();
    let start = Start::parse(prefix);
    let mut queue = vec![step(
        &start.root,
        crate::layout::Level::Top,
        &start.fixed,
        &start.partial,
        narrowing,
    )];
    let mut leaves = Vec::new();
    while let Some(next) = queue.pop() {
        match next {
            Next::Nothing => {}
            Next::Objects(prefixes) => leaves.extend(prefixes),
            Next::Named(prefixes, level) => {
                queue.extend(prefixes.iter().map(|p| step(p, level, &[], "", narrowing)))
            }
            Next::Folders(p, level) => {
                match list_prefix(client, bucket, &p, true, &mut listing.list_calls).await {
                    Ok((folders, _)) => queue.extend(
                        folders
                            .iter()
                            .filter_map(|f| follow(f, level, narrowing))
                            .map(|(f, at)| step(&f, at, &[], "", narrowing)),
                    ),
                    Err(e) => listing
                        .errors
                        .push(format!("listing s3://{bucket}/{p}: {}", with_verdict(&e))),
                }
            }
        }
    }
    // The leaves, listed whole, a few at a time.
    leaves.sort();
    leaves.dedup();
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for leaf in leaves {
        let (client, bucket, semaphore) = (client.clone(), bucket.to_owned(), semaphore.clone());
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let mut calls = 0;
            let listed = list_prefix(&client, &bucket, &leaf, false, &mut calls).await;
            (leaf, calls, listed)
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((_, calls, Ok((_, objects)))) => {
                listing.list_calls += calls;
                listing.objects.extend(objects);
            }
            Ok((leaf, calls, Err(e))) => {
                listing.list_calls += calls;
                listing.errors.push(format!(
                    "listing s3://{bucket}/{leaf}: {}",
                    with_verdict(&e)
                ));
            }
            Err(e) => listing.errors.push(format!("a listing task failed: {e}")),
        }
    }
    listing.objects.sort_by(|a, b| a.key.cmp(&b.key));
    listing.objects.dedup_by(|a, b| a.key == b.key);
    listing.errors.sort();
    listing
}
