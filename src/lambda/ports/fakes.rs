//! In-memory ports: objects in a map, published messages in a list, and scripted SNS refusals.
//! The handler's black-box tests use them (`tests/handler.rs`, `tests/catalogue.rs`, and
//! `tests/faults.rs` beside the SDK adapters); the function itself never does.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    EntryFailure, FetchError, ObjectBody, ObjectStore, ObjectWriter, PublishCallError, Publisher,
};
use crate::lambda::input::ObjectRef;
use crate::lambda::message::OutMessage;

/// Objects written, in memory: `(bucket, key) → body`.
#[derive(Default)]
pub struct FakeWriter {
    pub objects: Mutex<std::collections::BTreeMap<(String, String), Vec<u8>>>,
}

#[async_trait]
impl ObjectWriter for FakeWriter {
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), FetchError> {
        self.objects
            .lock()
            .expect("lock")
            .insert((bucket.into(), key.into()), body);
        Ok(())
    }
}

/// Objects held in memory; a missing one is `NotFound`, unless a fault is scripted for it.
#[derive(Default)]
pub struct FakeObjects {
    objects: HashMap<(String, String), Vec<u8>>,
    faults: HashMap<(String, String), FetchError>,
}

impl FakeObjects {
    pub fn put(&mut self, bucket: &str, key: &str, bytes: Vec<u8>) {
        self.objects.insert((bucket.into(), key.into()), bytes);
    }

    pub fn fail(&mut self, bucket: &str, key: &str, error: FetchError) {
        self.faults.insert((bucket.into(), key.into()), error);
    }
}

#[async_trait]
impl ObjectStore for FakeObjects {
    async fn open(&self, object: &ObjectRef) -> Result<ObjectBody, FetchError> {
        let id = (object.bucket.clone(), object.key.clone());
        if let Some(e) = self.faults.get(&id) {
            return Err(e.clone());
        }
        match self.objects.get(&id) {
            Some(bytes) => Ok(ObjectBody {
                size: Some(bytes.len() as u64),
                stream: Box::new(std::io::Cursor::new(bytes.clone())),
            }),
            None => Err(FetchError::NotFound),
        }
    }
}

/// What a scripted `PublishBatch` call does.
#[derive(Debug, Clone)]
pub enum Script {
    /// Refuse the entries at these positions of the batch (retryable unless `sender_fault`).
    Refuse {
        positions: Vec<usize>,
        sender_fault: bool,
    },
    /// Fail the whole call.
    Fail(PublishCallError),
}

/// Records every published message, per topic; follows a script of refusals, then accepts.
#[derive(Default)]
pub struct FakePublisher {
    pub published: Mutex<Vec<(String, OutMessage)>>,
    pub calls: Mutex<u32>,
    script: Mutex<VecDeque<Script>>,
}

impl FakePublisher {
    pub fn scripted(steps: Vec<Script>) -> Self {
        FakePublisher {
            script: Mutex::new(steps.into()),
            ..FakePublisher::default()
        }
    }

    pub fn messages(&self) -> Vec<(String, OutMessage)> {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Publisher for FakePublisher {
    async fn publish_batch(
        &self,
        topic: &str,
        entries: &[OutMessage],
    ) -> Result<Vec<EntryFailure>, PublishCallError> {
        if let Ok(mut calls) = self.calls.lock() {
            *calls += 1;
        }
        let step = self.script.lock().ok().and_then(|mut s| s.pop_front());
        let refused: Vec<(usize, bool)> = match step {
            Some(Script::Fail(e)) => return Err(e),
            Some(Script::Refuse {
                positions,
                sender_fault,
            }) => positions.into_iter().map(|p| (p, sender_fault)).collect(),
            None => Vec::new(),
        };
        let mut failures = Vec::new();
        let mut published = self.published.lock().map_err(|_| PublishCallError {
            message: "poisoned".into(),
            retryable: false,
        })?;
        for (i, m) in entries.iter().enumerate() {
            match refused.iter().find(|(p, _)| *p == i) {
                Some((_, sender_fault)) => failures.push(EntryFailure {
                    id: m.id.clone(),
                    code: if *sender_fault {
                        "InvalidParameter"
                    } else {
                        "InternalError"
                    }
                    .into(),
                    message: "scripted refusal".into(),
                    sender_fault: *sender_fault,
                }),
                None => published.push((topic.to_owned(), m.clone())),
            }
        }
        Ok(failures)
    }
}
