//! Everything the function talks to, as small traits (ports), with the adapters beside them:
//!
//! | port | what it is for | on AWS (or the network) | stands in for it in tests |
//! |---|---|---|---|
//! | [`ObjectStore`] | reading trail objects | [`aws::S3Store`] (S3, through [`role`] in a log-archive account) | [`fakes::FakeObjects`]; moto's S3 |
//! | [`ObjectWriter`] | shadow rules' lines, a backfill's findings | [`aws::S3Store`] | [`fakes::FakeWriter`]; moto's S3 |
//! | [`Publisher`] | alerts to SNS topics | [`aws::SnsPublisher`] | [`fakes::FakePublisher`]; moto's SNS |
//! | [`StateStore`], [`PageStore`], [`ProgressStore`] | windows and claims, parked pages and the paging budget, the trail's progress | [`aws::DynamoState`] (DynamoDB) | [`MemoryState`] (also the command line's store); moto's DynamoDB, dynalite |
//! | [`Pager`] | PagerDuty Events v2 | [`pagerduty::HttpPager`] (its routing keys read by [`aws::read_routing_key`] from Secrets Manager or SSM) | a loopback HTTP server that plays PagerDuty's limits |
//! | [`Organizations`], [`AccountCache`] | accounts' names, OUs and tags | [`aws::SdkOrganizations`], [`aws::DynamoState`] | the tests' own maps; moto's Organizations |
//!
//! The state store's ports are `policy::store`'s, shared with the command line (which has no
//! AWS code): they are named here so that this table is the whole list. Only [`aws`] and [`role`]
//! import `aws_sdk_*`; only [`pagerduty`] speaks HTTP itself.
//!
//! # Files
//! - [`aws`]: the adapters on the AWS SDK (S3, SNS, DynamoDB, Organizations, Secrets
//!   Manager/SSM for routing keys, the last good rules kept in the state table).
//! - [`role`]: the trail's read role in a log-archive account (`TRAIL_READ_ROLE_ARN`), assumed
//!   once and kept by the S3 client's identity cache.
//! - [`pagerduty`]: the Events API over HTTPS, with retries.
//! - [`fakes`]: in-memory stand-ins for unit and handler tests; the function never uses them.

pub mod aws;
pub mod fakes;
pub mod pagerduty;
pub mod role;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::Value;

pub use crate::alert::context::AccountInfo;
pub use crate::policy::store::{MemoryState, PageStore, ProgressStore, StateStore};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::lambda::input::ObjectRef;
use crate::lambda::message::OutMessage;

/// An object's body, streamed, with its length when the store tells it (S3's
/// `Content-Length`): a hint that spares a large log being read ahead to tell whether it is
/// small enough to be inflated whole.
pub struct ObjectBody {
    pub stream: Box<dyn AsyncRead + Send + Unpin>,
    pub size: Option<u64>,
}

/// Reading objects.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn open(&self, object: &ObjectRef) -> Result<ObjectBody, FetchError>;
}

/// Writing objects: shadow rules' alerts, a backfill's findings.
#[async_trait]
pub trait ObjectWriter: Send + Sync {
    /// Writes (or overwrites) one object; the errors are those of reading, with the same
    /// verdict on retrying.
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), FetchError>;
}

pub use crate::s3::FetchError;

/// Publishing alerts.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes up to ten messages to one topic in one call; returns the entries SNS refused.
    /// An `Err` means the call itself failed (after the SDK's own retries).
    async fn publish_batch(
        &self,
        topic: &str,
        entries: &[OutMessage],
    ) -> Result<Vec<EntryFailure>, PublishCallError>;
}

/// A shared publisher publishes: a test keeps one handle and gives the handler the other.
#[async_trait]
impl<P: Publisher + ?Sized> Publisher for Arc<P> {
    async fn publish_batch(
        &self,
        topic: &str,
        entries: &[OutMessage],
    ) -> Result<Vec<EntryFailure>, PublishCallError> {
        (**self).publish_batch(topic, entries).await
    }
}

/// One entry SNS refused inside a `PublishBatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFailure {
    pub id: String,
    pub code: String,
    pub message: String,
    /// SNS's verdict: the request itself is wrong and retrying it cannot help.
    pub sender_fault: bool,
}

/// A `PublishBatch` call that failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PublishCallError {
    pub message: String,
    pub retryable: bool,
}

/// A PagerDuty call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PagerDuty: {message}")]
pub struct PagerError {
    pub message: String,
    /// 429, 5xx or a network fault: trying again can help.
    pub retryable: bool,
    /// How long PagerDuty asked to wait (`Retry-After` of a 429).
    pub retry_after: Option<Duration>,
}

/// Sending one event to the Events API.
#[async_trait]
pub trait Pager: Send + Sync {
    async fn enqueue(&self, event: &Value) -> Result<(), PagerError>;
}

/// What Organizations answers, one call at a time: the seam the tests and the SDK adapter
/// share.
#[async_trait]
pub trait Organizations: Send + Sync {
    /// Every account's id and name (all pages).
    async fn accounts(&self) -> Result<Vec<(String, String)>, String>;
    /// The parent of an account or OU: its id, and whether it is the root.
    async fn parent(&self, child: &str) -> Result<(String, bool), String>;
    /// An OU's name.
    async fn ou_name(&self, ou: &str) -> Result<String, String>;
    /// An account's tags.
    async fn tags(&self, account: &str) -> Result<BTreeMap<String, String>, String>;
}

/// A persistent cache of accounts' context (the state table), read before Organizations.
#[async_trait]
pub trait AccountCache: Send + Sync {
    /// The cached context of these accounts, still fresh at `now`.
    async fn get(&self, ids: &[String], now: u64) -> HashMap<String, AccountInfo>;
    /// Keeps these until `expires`.
    async fn put(&self, found: &HashMap<String, AccountInfo>, expires: u64);
}
