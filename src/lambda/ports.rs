//! The two things the handler does to the outside world, as small traits: read an object,
//! publish a batch of messages. `aws.rs` implements them with the AWS SDK; `memory.rs` in memory
//! for unit tests.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncRead;

use super::input::ObjectRef;
use super::message::OutMessage;

/// An object's body, streamed.
pub type ObjectBody = Box<dyn AsyncRead + Send + Unpin>;

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
