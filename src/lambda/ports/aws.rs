//! The ports implemented with the AWS SDK: with [`crate::s3`], the only module that imports `aws_sdk_*`.
//!
//! S3's configuration, client, errors and rule documents are in [`crate::s3`] (the command line
//! uses them too), re-exported here.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use serde_json::Value;

use crate::describe;

use super::{
    EntryFailure, FetchError, ObjectBody, ObjectStore, ObjectWriter, PublishCallError, Publisher,
};
use crate::lambda::input::ObjectRef;
use crate::lambda::message::OutMessage;
use crate::lambda::state::{
    Beat, Claim, Claimant, Due, Marker, MatchRef, NewWindow, PageStore, ParkedPage, Place,
    ProgressStore, StateStore, StoreError, WindowRef, WindowState, KEEP_AFTER_DUE, MAX_IDS,
    MAX_VALUES,
};
pub use crate::s3::{
    fetch_error, load_rules, read_rule_document, retries, s3_client, sdk_config, timeouts,
    ATTEMPT_TIMEOUT, CONNECT_TIMEOUT, MAX_ATTEMPTS, OPERATION_TIMEOUT, READ_TIMEOUT,
};

/// Reading objects with `GetObject`, streamed.
#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    /// The read role the client's credentials come from (`TRAIL_READ_ROLE_ARN`), if any: what
    /// a denial names.
    role: Option<String>,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Store { client, role: None }
    }

    /// A store whose client reads through `role` (`role::trail_reader`).
    pub fn reading_as(client: aws_sdk_s3::Client, role: &str) -> Self {
        S3Store {
            client,
            role: Some(role.to_owned()),
        }
    }
}

/// What to change when reading `object` was denied: the statement that would allow it, and
/// where it goes.
pub fn read_denied(object: &ObjectRef, role: Option<&str>, why: &str) -> String {
    let resource = format!("arn:aws:s3:::{}/{}", object.bucket, object.key);
    match role {
        Some(role) => format!(
            "s3:GetObject on {resource} as the read role {role} ({why}); the role's policy must \
             allow s3:GetObject on arn:aws:s3:::{}/<prefix>AWSLogs/* and kms:Decrypt on the \
             trail's key, and the bucket policy must not deny it (templates/log-archive.yaml \
             makes that role)",
            object.bucket
        ),
        None => format!(
            "s3:GetObject on {resource} as the function's role ({why}); in the bucket's account, \
             the bucket policy must allow the function's role s3:GetObject on \
             arn:aws:s3:::{}/<prefix>AWSLogs/* and the trail key's policy kms:Decrypt \
             (`trail-alerts doctor` prints both statements), or set TRAIL_READ_ROLE_ARN to a \
             read role in that account",
            object.bucket
        ),
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
            .map_err(|e| match fetch_error(e) {
                FetchError::AccessDenied(why) if why.ends_with(crate::s3::ACCESS_HINT) => {
                    let why = why.trim_end_matches(crate::s3::ACCESS_HINT);
                    FetchError::AccessDenied(read_denied(object, self.role.as_deref(), why))
                }
                other => other,
            })?;
        let (stream, size) = crate::s3::body_and_length(out);
        Ok(ObjectBody {
            stream: Box::new(stream),
            size,
        })
    }
}

#[async_trait]
impl ObjectWriter for S3Store {
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), FetchError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .body(body.into())
            .send()
            .await
            .map(|_| ())
            .map_err(fetch_error)
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

/// The state store on DynamoDB: one table, string keys `pk` and `sk`, TTL on `expires_at`.
/// A window is the item (`pk` = its id, `sk` = `w`); the sweep's due entries share the
/// partition `pk` = `due` (`sk` = due time, zero-padded, `#` window id), so that one `Query`
/// finds them. Other partitions: `wm` (the trail's progress), `hb#<rule>` (heartbeats), `page`
/// (parked pages), `budget` (the shared paging budget), `open` (open incidents), `obj` (objects
/// told in parts), `gm#<hash>` (group members' index). No `Scan`: `GetItem`, `BatchGetItem`,
/// `PutItem`, `UpdateItem`, `Query`, `BatchWriteItem`, `TransactWriteItems` (checked as its puts
/// and updates) and, for parked pages only, `DeleteItem`.
#[derive(Clone)]
pub struct DynamoState {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoState {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoState {
            client,
            table: table.into(),
        }
    }
}

use aws_sdk_dynamodb::types::{AttributeValue as Av, ReturnValue};

fn s(v: impl Into<String>) -> Av {
    Av::S(v.into())
}

fn n(v: impl ToString) -> Av {
    Av::N(v.to_string())
}

/// A DynamoDB call's fault as the store's: a failed condition is not one (the caller asks
/// for it); throttling, 5xx and network faults are retryable; a missing table or a denied call
/// is not.
fn store_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    e: SdkError<E>,
) -> StoreError {
    let code = e.code().unwrap_or_default().to_owned();
    let retryable = !matches!(
        code.as_str(),
        "ResourceNotFoundException"
            | "AccessDeniedException"
            | "ValidationException"
            | "UnrecognizedClientException"
    );
    StoreError {
        message: format!("{what}: {}", describe::chain(&e)),
        retryable,
    }
}

fn is_condition_failure<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

fn window_from(item: &HashMap<String, Av>) -> WindowState {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    WindowState {
        id: text("pk").unwrap_or_default(),
        rule: text("rule").unwrap_or_default(),
        key_value: text("key").unwrap_or_default(),
        window_start: num("window_start"),
        window_end: num("window_end"),
        count: num("count") as u64,
        needed: num("needed").max(1) as u64,
        claimed_by: text("claimed_by"),
        published: item
            .get("published")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        rolled: num("rolled") as u64,
        first_time: text("first_time"),
        first_id: text("first_id"),
        last_time: text("last_time"),
        last_id: text("last_id"),
        values: item
            .get("vals")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
        record: text("record"),
        source: text("source"),
    }
}

impl DynamoState {
    fn key(&self, id: &str) -> HashMap<String, Av> {
        HashMap::from([("pk".to_owned(), s(id)), ("sk".to_owned(), s("w"))])
    }

    async fn get(&self, id: &str) -> Result<Option<WindowState>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item().map(window_from))
    }
}

#[async_trait]
impl StateStore for DynamoState {
    async fn count(
        &self,
        w: &WindowRef,
        m: &MatchRef,
        needed: u64,
        due_at: i64,
    ) -> Result<WindowState, StoreError> {
        let id = w.id();
        let expires = due_at + KEEP_AFTER_DUE;
        // Counted once per event id: the condition fails when this event was counted before
        // (a retried invocation) — or when the window remembers as many ids as it keeps.
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(&id)))
            .update_expression(
                "ADD #count :one, #ids :ids \
                 SET #rule = :rule, #key = :key, window_start = :ws, window_end = :we, \
                 needed = :needed, first_time = if_not_exists(first_time, :t), \
                 first_id = if_not_exists(first_id, :id), last_time = :t, last_id = :id, \
                 expires_at = :exp",
            )
            .condition_expression(
                "attribute_not_exists(#ids) OR (NOT contains(#ids, :id) AND size(#ids) < :cap)",
            )
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#ids", "ids")
            .expression_attribute_names("#rule", "rule")
            .expression_attribute_names("#key", "key")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ids", Av::Ss(vec![m.event_id.clone()]))
            .expression_attribute_values(":rule", s(&w.rule))
            .expression_attribute_values(":key", s(&w.key_value))
            .expression_attribute_values(":ws", n(w.window.start))
            .expression_attribute_values(":we", n(w.window.end))
            .expression_attribute_values(":needed", n(needed))
            .expression_attribute_values(":t", s(&m.event_time))
            .expression_attribute_values(":id", s(&m.event_id))
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":cap", n(MAX_IDS))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let mut state = match counted {
            Ok(out) => out.attributes().map(window_from).unwrap_or_default(),
            Err(e) if is_condition_failure(&e) => {
                let state = self.get(&id).await?.unwrap_or_default();
                let seen = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(self.key(&id)))
                    .projection_expression("#ids")
                    .expression_attribute_names("#ids", "ids")
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| store_error("GetItem", e))?
                    .item()
                    .and_then(|i| i.get("ids"))
                    .and_then(|v| v.as_ss().ok())
                    .is_some_and(|ids| ids.contains(&m.event_id));
                if seen {
                    state
                } else {
                    // The window remembers no more ids: count without remembering.
                    let out = self
                        .client
                        .update_item()
                        .table_name(&self.table)
                        .set_key(Some(self.key(&id)))
                        .update_expression("ADD #count :one SET last_time = :t, last_id = :id")
                        .expression_attribute_names("#count", "count")
                        .expression_attribute_values(":one", n(1))
                        .expression_attribute_values(":t", s(&m.event_time))
                        .expression_attribute_values(":id", s(&m.event_id))
                        .return_values(ReturnValue::AllNew)
                        .send()
                        .await
                        .map_err(|e| store_error("UpdateItem", e))?;
                    out.attributes().map(window_from).unwrap_or_default()
                }
            }
            Err(e) => return Err(store_error("UpdateItem", e)),
        };
        // The roll-up's distinct values, while the window keeps fewer than it may.
        if !m.values.is_empty() && state.values.len() < MAX_VALUES {
            let added = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(self.key(&id)))
                .update_expression("ADD vals :v")
                .condition_expression("attribute_not_exists(vals) OR size(vals) < :cap")
                .expression_attribute_values(":v", Av::Ss(m.values.clone()))
                .expression_attribute_values(":cap", n(MAX_VALUES))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match added {
                Ok(out) => {
                    if let Some(item) = out.attributes() {
                        state = window_from(item);
                    }
                }
                Err(e) if is_condition_failure(&e) => {}
                Err(e) => return Err(store_error("UpdateItem", e)),
            }
        }
        // Due for the sweep at the window's end plus the lateness allowance. Writing the entry
        // again clears its `done`, so that matches arriving after a sweep are told too.
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("due"))
            .item("sk", s(format!("{due_at:012}#{id}")))
            .item("window", s(&id))
            .item("due_at", n(due_at))
            .item("expires_at", n(expires))
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        Ok(state)
    }

    async fn claim(
        &self,
        w: &WindowRef,
        event_id: &str,
        record: Option<&str>,
        source: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(&w.id())))
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(claimed_by) OR claimed_by = :id)",
            )
            .expression_attribute_values(":id", s(event_id))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":src", s(source));
        // A record too large to keep is stored as "" (so that no later writer's record can
        // land on this claim: `count_many` sets it only where none is).
        update = update
            .update_expression(
                "SET claimed_by = :id, claimed_at = :now, #source = :src, #record = :rec",
            )
            .expression_attribute_names("#record", "record")
            .expression_attribute_values(":rec", s(record.unwrap_or("")));
        match update
            .expression_attribute_names("#source", "source")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    async fn mark_published(&self, window: &str, event_id: &str) -> Result<(), StoreError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(window)))
            .update_expression("SET published = :yes")
            .condition_expression("claimed_by = :id")
            .expression_attribute_values(":yes", Av::Bool(true))
            .expression_attribute_values(":id", s(event_id))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    async fn due(&self, now: i64) -> Result<Vec<Due>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, Av>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :due AND sk <= :upto")
                .filter_expression("attribute_not_exists(done)")
                .expression_attribute_values(":due", s("due"))
                .expression_attribute_values(":upto", s(format!("{now:012}~")))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            for item in page.items() {
                let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                if let (Some(entry), Some(window)) = (text("sk"), text("window")) {
                    out.push(Due { entry, window });
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    async fn window(&self, id: &str) -> Result<Option<WindowState>, StoreError> {
        self.get(id).await
    }

    async fn mark_rolled(&self, window: &str, from: u64, to: u64) -> Result<bool, StoreError> {
        let cond = if from == 0 {
            "attribute_not_exists(rolled) OR rolled = :from"
        } else {
            "rolled = :from"
        };
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(window)))
            .update_expression("SET rolled = :to")
            .condition_expression(cond)
            .expression_attribute_values(":from", n(from))
            .expression_attribute_values(":to", n(to))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    async fn finish(&self, due: &Due) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("due"))
            .key("sk", s(&due.entry))
            .update_expression("SET done = :yes")
            .expression_attribute_values(":yes", Av::Bool(true))
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", e))?;
        Ok(())
    }

    /// Up to 100 claims per TransactWriteItems, each conditional on its claim; when one's
    /// condition fails (another claimed it) the chunk is marked one by one instead.
    async fn mark_all_published(&self, claims: &[Claim]) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
        let mut seen = std::collections::HashSet::new();
        let claims: Vec<&Claim> = claims
            .iter()
            .filter(|c| seen.insert(c.window.clone()))
            .collect();
        for chunk in claims.chunks(100) {
            let items = chunk
                .iter()
                .map(|c| {
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(self.key(&c.window)))
                        .update_expression("SET published = :yes")
                        .condition_expression("claimed_by = :id")
                        .expression_attribute_values(":yes", Av::Bool(true))
                        .expression_attribute_values(":id", s(&c.event_id))
                        .build()
                        .map(|u| TransactWriteItem::builder().update(u).build())
                        .map_err(|e| StoreError {
                            message: format!("TransactWriteItems: {e}"),
                            retryable: false,
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let written = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            if written.is_err() {
                for c in chunk {
                    self.mark_published(&c.window, &c.event_id).await?;
                }
            }
        }
        Ok(())
    }

    /// One delivery's matches of a window: one UpdateItem per 100 matches, conditional on none
    /// of their eventIDs being counted before and on the window remembering them all. With a
    /// claimant, the first write claims the window unless claimed (`if_not_exists`: of racing
    /// writers one wins, as the claim's own condition does), and stores the claimant's record
    /// with it — or `""` when the record is too large to keep, so that a later writer's record
    /// never lands on another's claim.
    async fn count_many(
        &self,
        w: &WindowRef,
        matches: &[MatchRef],
        needed: u64,
        claimant: Option<Claimant<'_>>,
        members: &[String],
    ) -> Result<Option<WindowState>, StoreError> {
        let id = w.id();
        let expires = w.window.end + KEEP_AFTER_DUE;
        let mut state = None;
        for (c, chunk) in matches.chunks(COUNT_CHUNK).enumerate() {
            let (first, last) = (&chunk[0], &chunk[chunk.len() - 1]);
            let ids: Vec<String> = chunk.iter().map(|m| m.event_id.clone()).collect();
            let mut values: Vec<String> = Vec::new();
            for v in chunk.iter().flat_map(|m| &m.values) {
                if values.len() < MAX_VALUES && !values.contains(v) {
                    values.push(v.clone());
                }
            }
            let mut add = vec!["#count :n", "#ids :ids"];
            let mut set = vec![
                "#rule = :rule",
                "#key = :key",
                "window_start = :ws",
                "window_end = :we",
                "needed = :needed",
                "first_time = if_not_exists(first_time, :ft)",
                "first_id = if_not_exists(first_id, :fi)",
                "last_time = :lt",
                "last_id = :li",
                "expires_at = :exp",
            ];
            let absent: Vec<String> = (0..ids.len())
                .map(|i| format!("NOT contains(#ids, :i{i})"))
                .collect();
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(self.key(&id)))
                .condition_expression(format!(
                    "attribute_not_exists(#ids) OR (size(#ids) <= :room AND {})",
                    absent.join(" AND ")
                ))
                .expression_attribute_names("#count", "count")
                .expression_attribute_names("#ids", "ids")
                .expression_attribute_names("#rule", "rule")
                .expression_attribute_names("#key", "key")
                .expression_attribute_values(":n", n(chunk.len()))
                .expression_attribute_values(":ids", Av::Ss(ids.clone()))
                .expression_attribute_values(":rule", s(&w.rule))
                .expression_attribute_values(":key", s(&w.key_value))
                .expression_attribute_values(":ws", n(w.window.start))
                .expression_attribute_values(":we", n(w.window.end))
                .expression_attribute_values(":needed", n(needed))
                .expression_attribute_values(":ft", s(&first.event_time))
                .expression_attribute_values(":fi", s(&first.event_id))
                .expression_attribute_values(":lt", s(&last.event_time))
                .expression_attribute_values(":li", s(&last.event_id))
                .expression_attribute_values(":exp", n(expires))
                .expression_attribute_values(":room", n(MAX_IDS.saturating_sub(ids.len())))
                .return_values(ReturnValue::AllNew);
            for (i, event_id) in ids.iter().enumerate() {
                update = update.expression_attribute_values(format!(":i{i}"), s(event_id));
            }
            if !values.is_empty() {
                add.push("vals :v");
                update = update.expression_attribute_values(":v", Av::Ss(values));
            }
            if c == 0 && !members.is_empty() {
                add.push("#open :open");
                update = update
                    .expression_attribute_names("#open", "open")
                    .expression_attribute_values(
                        ":open",
                        Av::Ss(members.iter().map(|m| member_hash(m)).collect()),
                    );
            }
            if let (0, Some(claim)) = (c, claimant) {
                set.extend([
                    "claimed_by = if_not_exists(claimed_by, :cb)",
                    "claimed_at = if_not_exists(claimed_at, :now)",
                    "#source = if_not_exists(#source, :src)",
                    "#record = if_not_exists(#record, :rec)",
                ]);
                if claim.told {
                    // Told by the rule's group: never published on its own by the sweep.
                    set.push("published = :yes");
                    update = update.expression_attribute_values(":yes", Av::Bool(true));
                }
                update = update
                    .expression_attribute_names("#source", "source")
                    .expression_attribute_names("#record", "record")
                    .expression_attribute_values(":cb", s(claim.event_id))
                    .expression_attribute_values(":now", n(claim.now))
                    .expression_attribute_values(":src", s(claim.source))
                    .expression_attribute_values(":rec", s(claim.record.unwrap_or("")));
            }
            let out = update
                .update_expression(format!("ADD {} SET {}", add.join(", "), set.join(", ")))
                .send()
                .await;
            match out {
                Ok(out) => state = out.attributes().map(window_from),
                Err(e) if is_condition_failure(&e) => return Ok(None),
                Err(e) => return Err(store_error("UpdateItem", e)),
            }
        }
        Ok(state)
    }

    /// Each window as `count_many` would leave it after counting its matches into nothing, put
    /// on condition that the window does not exist, up to 100 (and 3 MiB) to a
    /// TransactWriteItems. A transaction that finds some windows existing is cancelled whole,
    /// naming them: those are left to `count_many` and the rest is tried once more.
    async fn create_many(
        &self,
        new: &[NewWindow<'_>],
    ) -> Result<Vec<Option<WindowState>>, StoreError> {
        let mut out: Vec<Option<WindowState>> = vec![None; new.len()];
        // Windows that fit one write, with their items.
        let mut items: Vec<(usize, HashMap<String, Av>, usize)> = Vec::new();
        for (k, nw) in new.iter().enumerate() {
            if let Some(item) = new_window_item(nw) {
                let size = item_size(&item);
                items.push((k, item, size));
            }
        }
        let mut batch: Vec<(usize, HashMap<String, Av>)> = Vec::new();
        let mut bytes = 0;
        let mut batches = Vec::new();
        for (k, item, size) in items {
            if !batch.is_empty() && (batch.len() == 100 || bytes + size > TRANSACTION_BYTES) {
                batches.push(std::mem::take(&mut batch));
                bytes = 0;
            }
            bytes += size;
            batch.push((k, item));
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        for batch in batches {
            let mut batch = batch;
            for attempt in 0..2 {
                match self.put_new(&batch).await? {
                    None => {
                        for (k, item) in &batch {
                            out[*k] = Some(window_from(item));
                        }
                        break;
                    }
                    // Existing windows named: the others once more without them.
                    Some(existing) if attempt == 0 && existing.iter().any(|e| *e) => {
                        batch = batch
                            .into_iter()
                            .zip(existing)
                            .filter(|(_, exists)| !exists)
                            .map(|(b, _)| b)
                            .collect();
                        if batch.is_empty() {
                            break;
                        }
                    }
                    Some(_) => break,
                }
            }
        }
        Ok(out)
    }

    /// Due entries and members' index items, 25 to a BatchWriteItem; what DynamoDB leaves
    /// unprocessed is sent again with back-off, and still unprocessed after that is a
    /// retryable fault (nothing has been published yet).
    async fn put_markers(&self, markers: &[Marker]) -> Result<(), StoreError> {
        let mut seen = std::collections::HashSet::new();
        let mut requests = Vec::new();
        for m in markers {
            let (pk, sk, extra): (String, String, Vec<(&str, Av)>) = match m {
                Marker::Due { window, due_at } => (
                    "due".into(),
                    format!("{due_at:012}#{window}"),
                    vec![
                        ("window", s(window)),
                        ("due_at", n(due_at)),
                        ("expires_at", n(due_at + KEEP_AFTER_DUE)),
                    ],
                ),
                Marker::Member {
                    member,
                    group,
                    expires,
                } => (
                    member_pk(member),
                    group.clone(),
                    vec![("expires_at", n(expires))],
                ),
            };
            if !seen.insert((pk.clone(), sk.clone())) {
                continue;
            }
            let mut item = HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))]);
            item.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
            requests.push(put_request(item)?);
        }
        self.write_batches(&requests).await
    }

    /// Resolves `member` in each group its index names; a group left with no open member is
    /// returned by its key.
    async fn leave(&self, member: &str) -> Result<Vec<String>, StoreError> {
        let hash = member_hash(member);
        let mut emptied = Vec::new();
        for item in self.query_all(&member_pk(member)).await? {
            let Some(group) = item.get("sk").and_then(|v| v.as_s().ok()) else {
                continue;
            };
            let out = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(self.key(group)))
                .update_expression("DELETE #open :m")
                .condition_expression("contains(#open, :h)")
                .expression_attribute_names("#open", "open")
                .expression_attribute_values(":m", Av::Ss(vec![hash.clone()]))
                .expression_attribute_values(":h", s(&hash))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match out {
                Ok(out) => {
                    let Some(attrs) = out.attributes() else {
                        continue;
                    };
                    // DynamoDB removes a set whose last element is deleted.
                    if attrs.get("open").is_none() {
                        let text = |k: &str| attrs.get(k).and_then(|v| v.as_s().ok()).cloned();
                        if let (Some(rule), Some(key)) = (text("rule"), text("key")) {
                            emptied.push(crate::lambda::state::group_key(&rule, &key));
                        }
                    }
                }
                // Not an open member (resolved before): nothing to do.
                Err(e) if is_condition_failure(&e) => {}
                Err(e) => return Err(store_error("UpdateItem", e)),
            }
        }
        Ok(emptied)
    }
}

fn place_from(item: &HashMap<String, Av>) -> Place {
    let text = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let num = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    Place {
        account: text("account"),
        region: text("region"),
        first: num("first"),
        newest: num("newest"),
        last_delivery: num("last_delivery"),
        silent_alerted: item.contains_key("silent"),
    }
}

fn beat_from(item: &HashMap<String, Av>) -> Beat {
    let text = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let num = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    Beat {
        key_value: text("key"),
        account: text("account"),
        region: text("region"),
        last_seen: num("last_seen").unwrap_or(0),
        alerted_for: num("alerted_for"),
    }
}

impl DynamoState {
    async fn query_all(&self, pk: &str) -> Result<Vec<HashMap<String, Av>>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, Av>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}

/// How long a parked page waits for PagerDuty at most (DynamoDB TTL); the `PagesParked` alarm
/// fires within the hour.
pub const KEEP_PARKED_PAGE: i64 = 7 * 86_400;

/// A token no other parking of a page shares: the time, the process and a counter.
fn park_version(now: i64) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{now}-{nanos:09}-{}-{n}", std::process::id())
}

/// Parked pages: partition `page`, one item per dedup key (`sk`), replaced by a later parking
/// of the key; removed once sent (`DeleteItem`, on this partition only: the template's IAM
/// condition), unless a later parking replaced it meanwhile.
#[async_trait]
impl PageStore for DynamoState {
    async fn park(&self, dedup_key: &str, event: &Value, now: i64) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("page"))
            .item("sk", s(dedup_key))
            .item("event", s(event.to_string()))
            .item("parked_at", n(now))
            .item("version", s(park_version(now)))
            .item("expires_at", n(now + KEEP_PARKED_PAGE))
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        Ok(())
    }

    async fn parked(&self, limit: usize) -> Result<Vec<ParkedPage>, StoreError> {
        let items = if limit == 1 {
            // Is anything parked: one item is enough.
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s("page"))
                .consistent_read(true)
                .limit(1)
                .send()
                .await
                .map_err(|e| store_error("Query", e))?
                .items()
                .to_vec()
        } else {
            self.query_all("page").await?
        };
        let mut pages: Vec<ParkedPage> = items
            .iter()
            .filter_map(|item| {
                let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                Some(ParkedPage {
                    dedup_key: text("sk")?,
                    event: serde_json::from_str(&text("event")?).ok()?,
                    parked_at: item
                        .get("parked_at")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    version: text("version").unwrap_or_default(),
                })
            })
            .collect();
        pages.sort_by(|a, b| (a.parked_at, &a.version).cmp(&(b.parked_at, &b.version)));
        pages.truncate(limit);
        Ok(pages)
    }

    async fn unpark(&self, page: &ParkedPage) -> Result<(), StoreError> {
        match self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s("page"))
            .key("sk", s(&page.dedup_key))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", s(&page.version))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(store_error("DeleteItem", e)),
        }
    }

    /// One item per routing key (`pk` = `budget`): the send times of the last span, and a
    /// version. Read consistently, pruned, extended by what is granted and put back on
    /// condition that the version is still the one read; an instance that lost the race reads
    /// again (up to five times, then takes nothing: the events are parked).
    async fn take_shared(
        &self,
        key: &str,
        wanted: usize,
        limit: usize,
        span_ms: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        if wanted == 0 {
            return Ok(0);
        }
        for _ in 0..5 {
            let item = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s("budget"))
                .key("sk", s(key))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| store_error("GetItem", e))?;
            let item = item.item();
            let version = item
                .and_then(|i| i.get("version"))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok());
            let mut sent: Vec<i64> = item
                .and_then(|i| i.get("sent"))
                .and_then(|v| v.as_s().ok())
                .map(|t| t.split(',').filter_map(|x| x.parse().ok()).collect())
                .unwrap_or_default();
            sent.retain(|t| now_ms - t < span_ms);
            let granted = wanted.min(limit.saturating_sub(sent.len()));
            if granted == 0 {
                return Ok(0);
            }
            sent.extend(std::iter::repeat_n(now_ms, granted));
            let text: Vec<String> = sent.iter().map(i64::to_string).collect();
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s("budget"))
                .item("sk", s(key))
                .item("sent", s(text.join(",")))
                .item("version", n(version.unwrap_or(0) + 1))
                .item("expires_at", n(now_ms / 1000 + 2 * span_ms / 1000 + 60));
            let put = match version {
                Some(v) => put
                    .condition_expression("version = :v")
                    .expression_attribute_values(":v", n(v)),
                None => put.condition_expression("attribute_not_exists(pk)"),
            };
            match put.send().await {
                Ok(_) => return Ok(granted),
                Err(e) if is_condition_failure(&e) => continue,
                Err(e) => return Err(store_error("PutItem", e)),
            }
        }
        Ok(0)
    }

    /// One item per key (`pk` = `open`, the key hashed), put 25 to a BatchWriteItem.
    async fn note_open(&self, keys: &[String], expires: i64) -> Result<(), StoreError> {
        let mut requests = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for key in keys.iter().filter(|k| seen.insert(k.as_str())) {
            let item = HashMap::from([
                ("pk".to_owned(), s("open")),
                ("sk".to_owned(), s(beat_sk(key))),
                ("key".to_owned(), s(key)),
                ("expires_at".to_owned(), n(expires)),
            ]);
            requests.push(put_request(item)?);
        }
        self.write_batches(&requests).await
    }

    /// 100 keys to a consistent BatchGetItem; keys DynamoDB leaves unprocessed are asked again.
    async fn open_of(&self, keys: &[String]) -> Result<Vec<String>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = std::collections::HashSet::new();
        let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
        let distinct: Vec<&String> = distinct.into_iter().collect();
        for chunk in distinct.chunks(100) {
            let wanted: Vec<HashMap<String, Av>> = chunk
                .iter()
                .map(|k| {
                    HashMap::from([
                        ("pk".to_owned(), s("open")),
                        ("sk".to_owned(), s(beat_sk(k))),
                    ])
                })
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(wanted))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError {
                        message: format!("BatchGetItem: {e}"),
                        retryable: false,
                    })?,
            );
            for _ in 0..BATCH_TRIES {
                let Some(ask) = pending.take() else { break };
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ask)
                    .send()
                    .await
                    .map_err(|e| store_error("BatchGetItem", e))?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    if let Some(k) = item.get("key").and_then(|v| v.as_s().ok()) {
                        found.insert(k.clone());
                    }
                }
                pending = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
            }
            if pending.is_some() {
                return Err(StoreError {
                    message: format!(
                        "BatchGetItem: keys still unprocessed after {BATCH_TRIES} tries"
                    ),
                    retryable: true,
                });
            }
        }
        Ok(keys
            .iter()
            .filter(|k| found.contains(*k))
            .cloned()
            .collect())
    }

    async fn close_open(&self, keys: &[String]) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
        let mut requests = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for key in keys.iter().filter(|k| seen.insert(k.as_str())) {
            let delete = DeleteRequest::builder()
                .key("pk", s("open"))
                .key("sk", s(beat_sk(key)))
                .build()
                .map_err(|e| StoreError {
                    message: format!("BatchWriteItem: {e}"),
                    retryable: false,
                })?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        self.write_batches(&requests).await
    }
}

/// A key value's sort key: its hash (a key value may pass DynamoDB's 1 KiB sort key limit).
fn beat_sk(key: &str) -> String {
    format!("{:016x}", crate::lambda::state::stable_hash(key.as_bytes()))
}

/// A group member's index item: which groups an alert key joined (`pk` = `gm#<hash>`).
fn member_pk(member: &str) -> String {
    format!(
        "gm#{:016x}",
        crate::lambda::state::stable_hash(member.as_bytes())
    )
}

/// A member's hash in a group's `open` set.
fn member_hash(member: &str) -> String {
    format!(
        "{:016x}",
        crate::lambda::state::stable_hash(member.as_bytes())
    )
}

/// Matches counted in one conditional write (each adds a `NOT contains` term; DynamoDB allows
/// expressions of 4 KB).
const COUNT_CHUNK: usize = 100;
/// Items per BatchWriteItem (DynamoDB's limit), and tries for the items it leaves unprocessed.
const BATCH_ITEMS: usize = 25;
const BATCH_TRIES: u32 = 6;

#[async_trait]
impl ProgressStore for DynamoState {
    async fn progress(
        &self,
        account: &str,
        region: &str,
        newest: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let sk = format!("{account}#{region}");
        let old = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("wm"))
            .key("sk", s(&sk))
            .update_expression(
                "SET account = :a, #region = :r, #first = if_not_exists(#first, :t), \
                 last_delivery = :now REMOVE silent",
            )
            .expression_attribute_names("#region", "region")
            .expression_attribute_names("#first", "first")
            .expression_attribute_values(":a", s(account))
            .expression_attribute_values(":r", s(region))
            .expression_attribute_values(":t", n(newest))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", e))?;
        let was_silent = old.attributes().is_some_and(|a| a.contains_key("silent"));
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("wm"))
            .key("sk", s(&sk))
            .update_expression("SET newest = :t")
            .condition_expression("attribute_not_exists(newest) OR newest < :t")
            .expression_attribute_values(":t", n(newest))
            .send()
            .await
        {
            Ok(_) => Ok(was_silent),
            Err(e) if is_condition_failure(&e) => Ok(was_silent),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    async fn places(&self) -> Result<Vec<Place>, StoreError> {
        Ok(self.query_all("wm").await?.iter().map(place_from).collect())
    }

    async fn mark_silent(
        &self,
        account: &str,
        region: &str,
        last_delivery: i64,
    ) -> Result<bool, StoreError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("wm"))
            .key("sk", s(format!("{account}#{region}")))
            .update_expression("SET silent = :yes")
            .condition_expression("last_delivery = :ld AND attribute_not_exists(silent)")
            .expression_attribute_values(":yes", Av::Bool(true))
            .expression_attribute_values(":ld", n(last_delivery))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    async fn heartbeat(&self, rule: &str, beat: &Beat) -> Result<Option<Beat>, StoreError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("hb#{rule}")))
            .key("sk", s(beat_sk(&beat.key_value)))
            .update_expression(
                "SET #key = :key, account = :a, #region = :r, last_seen = :t REMOVE alerted_for",
            )
            .condition_expression("attribute_not_exists(last_seen) OR last_seen < :t")
            .expression_attribute_names("#key", "key")
            .expression_attribute_names("#region", "region")
            .expression_attribute_values(":key", s(&beat.key_value))
            .expression_attribute_values(":a", s(&beat.account))
            .expression_attribute_values(":r", s(&beat.region))
            .expression_attribute_values(":t", n(beat.last_seen))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .attributes()
                .map(beat_from)
                .filter(|before| before.alerted_for.is_some())),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    async fn heartbeats(&self, rule: &str) -> Result<Vec<Beat>, StoreError> {
        Ok(self
            .query_all(&format!("hb#{rule}"))
            .await?
            .iter()
            .map(beat_from)
            .collect())
    }

    async fn mark_missing(&self, rule: &str, beat: &Beat) -> Result<bool, StoreError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("hb#{rule}")))
            .key("sk", s(beat_sk(&beat.key_value)))
            .update_expression(
                "SET alerted_for = :ls, #key = :key, account = :a, #region = :r, \
                 last_seen = if_not_exists(last_seen, :ls)",
            )
            .condition_expression(
                "(attribute_not_exists(last_seen) OR last_seen = :ls) AND \
                 attribute_not_exists(alerted_for)",
            )
            .expression_attribute_names("#key", "key")
            .expression_attribute_names("#region", "region")
            .expression_attribute_values(":ls", n(beat.last_seen))
            .expression_attribute_values(":key", s(&beat.key_value))
            .expression_attribute_values(":a", s(&beat.account))
            .expression_attribute_values(":r", s(&beat.region))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    async fn parts_told(&self, object: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("obj"))
            .key("sk", s(object_sk(object)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item().and_then(|item| {
            let parts = item.get("parts")?.as_n().ok()?.parse().ok()?;
            let fingerprint = u64::from_str_radix(item.get("rules")?.as_s().ok()?, 16).ok()?;
            Some((parts, fingerprint))
        }))
    }

    async fn note_parts_told(
        &self,
        object: &str,
        parts: u64,
        fingerprint: u64,
        expires: i64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("obj"))
            .item("sk", s(object_sk(object)))
            .item("object", s(object))
            .item("parts", n(parts))
            .item("rules", s(format!("{fingerprint:016x}")))
            .item("expires_at", n(expires))
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        Ok(())
    }
}

/// The most a window-creating transaction carries (DynamoDB allows 4 MB).
const TRANSACTION_BYTES: usize = 3 << 20;

impl DynamoState {
    /// Writes these requests 25 to a BatchWriteItem; what DynamoDB leaves unprocessed is sent
    /// again with back-off, and still unprocessed after that is a retryable fault.
    async fn write_batches(
        &self,
        requests: &[aws_sdk_dynamodb::types::WriteRequest],
    ) -> Result<(), StoreError> {
        for batch in requests.chunks(BATCH_ITEMS) {
            let mut pending = batch.to_vec();
            let mut wait = std::time::Duration::from_millis(50);
            for attempt in 0.. {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending.clone())
                    .send()
                    .await
                    .map_err(|e| store_error("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt + 1 >= BATCH_TRIES {
                    return Err(StoreError {
                        message: format!(
                            "BatchWriteItem: {} items still unprocessed after {BATCH_TRIES} tries",
                            pending.len()
                        ),
                        retryable: true,
                    });
                }
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        Ok(())
    }

    /// Puts new windows in one transaction, each on condition that it does not exist: `None`
    /// when all were created; else, when the transaction was cancelled, whether each window
    /// exists (all `false` when the cancellation named no window, such as a conflict with
    /// another transaction).
    async fn put_new(
        &self,
        batch: &[(usize, HashMap<String, Av>)],
    ) -> Result<Option<Vec<bool>>, StoreError> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
        let items = batch
            .iter()
            .map(|(_, item)| {
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item.clone()))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map(|p| TransactWriteItem::builder().put(p).build())
                    .map_err(|e| StoreError {
                        message: format!("TransactWriteItems: {e}"),
                        retryable: false,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(None),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(t)) => {
                    let reasons = t.cancellation_reasons();
                    Ok(Some(
                        (0..batch.len())
                            .map(|i| {
                                reasons.get(i).and_then(|r| r.code())
                                    == Some("ConditionalCheckFailed")
                            })
                            .collect(),
                    ))
                }
                // Whatever else went wrong, `count_many` writes these windows and says so.
                _ => Ok(Some(vec![false; batch.len()])),
            },
        }
    }
}

/// The item of a window new to the store, as `count_many` leaves it after counting `nw`'s
/// matches: `None` when they need more than one write (or repeat an eventID).
fn new_window_item(nw: &NewWindow<'_>) -> Option<HashMap<String, Av>> {
    let (first, last) = (nw.matches.first()?, nw.matches.last()?);
    let ids: Vec<String> = nw.matches.iter().map(|m| m.event_id.clone()).collect();
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    if ids.len() > COUNT_CHUNK || distinct.len() != ids.len() {
        return None;
    }
    let mut values: Vec<String> = Vec::new();
    for v in nw.matches.iter().flat_map(|m| &m.values) {
        if values.len() < MAX_VALUES && !values.contains(v) {
            values.push(v.clone());
        }
    }
    let w = nw.w;
    let mut item = HashMap::from([
        ("pk".to_owned(), s(w.id())),
        ("sk".to_owned(), s("w")),
        ("count".to_owned(), n(ids.len())),
        ("ids".to_owned(), Av::Ss(ids)),
        ("rule".to_owned(), s(&w.rule)),
        ("key".to_owned(), s(&w.key_value)),
        ("window_start".to_owned(), n(w.window.start)),
        ("window_end".to_owned(), n(w.window.end)),
        ("needed".to_owned(), n(nw.needed)),
        ("first_time".to_owned(), s(&first.event_time)),
        ("first_id".to_owned(), s(&first.event_id)),
        ("last_time".to_owned(), s(&last.event_time)),
        ("last_id".to_owned(), s(&last.event_id)),
        ("expires_at".to_owned(), n(w.window.end + KEEP_AFTER_DUE)),
    ]);
    if !values.is_empty() {
        item.insert("vals".into(), Av::Ss(values));
    }
    if !nw.members.is_empty() {
        let open = nw.members.iter().map(|m| member_hash(m)).collect();
        item.insert("open".into(), Av::Ss(open));
    }
    if let Some(claim) = nw.claimant {
        item.insert("claimed_by".into(), s(claim.event_id));
        item.insert("claimed_at".into(), n(claim.now));
        item.insert("source".into(), s(claim.source));
        item.insert("record".into(), s(claim.record.unwrap_or("")));
        if claim.told {
            item.insert("published".into(), Av::Bool(true));
        }
    }
    Some(item)
}

/// About how many bytes an item weighs in a request.
fn item_size(item: &HashMap<String, Av>) -> usize {
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    Av::S(t) | Av::N(t) => t.len(),
                    Av::Ss(list) => list.iter().map(|t| t.len() + 1).sum(),
                    _ => 8,
                }
        })
        .sum()
}

/// A `BatchWriteItem` put of this item.
fn put_request(
    item: HashMap<String, Av>,
) -> Result<aws_sdk_dynamodb::types::WriteRequest, StoreError> {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(|e| StoreError {
            message: format!("BatchWriteItem: {e}"),
            retryable: false,
        })?;
    Ok(WriteRequest::builder().put_request(put).build())
}

/// An object's item in the `obj` partition: its name hashed (S3 keys may be longer than a sort
/// key may be), the name itself kept beside it.
fn object_sk(object: &str) -> String {
    format!(
        "{:016x}",
        crate::lambda::state::stable_hash(object.as_bytes())
    )
}

/// PagerDuty: the default service (`PAGERDUTY_ROUTING_KEY_SECRET`) and every service the
/// routes name, each routing key read once here; `None` when nothing pages.
pub async fn paging(
    sdk: &aws_config::SdkConfig,
    config: &crate::lambda::LambdaConfig,
    rules: &crate::rules::RuleSet,
    has_table: bool,
) -> Result<Option<crate::lambda::pager::Paging>, String> {
    let routed: Vec<(String, String)> = crate::lambda::pager::services_named(rules)
        .into_iter()
        .filter(|(spec, _)| {
            spec != crate::rules::routes::DEFAULT_SERVICE
                && Some(spec) != config.pagerduty_secret.as_ref()
        })
        .collect();
    if config.pagerduty_secret.is_none() {
        crate::lambda::pager::uncovered(rules, |spec| {
            spec != crate::rules::routes::DEFAULT_SERVICE
        })?;
        if routed.is_empty() {
            return Ok(None);
        }
    }
    if !has_table {
        return Err(
            "PagerDuty (PAGERDUTY_ROUTING_KEY_SECRET or a route's pagerduty:) needs STATE_TABLE: \
             pages PagerDuty cannot take at once (its limit of events a minute, an outage) are \
             parked there for the sweep; without it they would fail the invocation and Lambda's \
             retry would publish its alerts again"
                .into(),
        );
    }
    let pager = Box::new(crate::lambda::pager::HttpPager::new(&config.pagerduty_url)?);
    let mut paging = match &config.pagerduty_secret {
        Some(spec) => {
            let key = read_routing_key(sdk, spec)
                .await
                .map_err(|e| format!("PAGERDUTY_ROUTING_KEY_SECRET: {e}"))?;
            crate::lambda::pager::Paging::new(pager, key, config.pagerduty_min_severity)
                .default_spec(spec)
        }
        None => crate::lambda::pager::Paging::routed_only(pager, config.pagerduty_min_severity),
    }
    .per_minute(config.pagerduty_events_per_minute);
    for (spec, origin) in &routed {
        let key = read_routing_key(sdk, spec)
            .await
            .map_err(|e| format!("{origin}: the PagerDuty service's routing key: {e}"))?;
        paging = paging.with_service(spec, key);
    }
    tracing::info!(
        url = %config.pagerduty_url,
        default = config.pagerduty_secret.is_some(),
        routed = routed.len(),
        "PagerDuty destination"
    );
    Ok(Some(paging))
}

/// The PagerDuty routing key, read once at cold start: `ssm:/parameter/name` reads an SSM
/// SecureString (decrypted); anything else names a Secrets Manager secret (ARN or name). Either
/// holds the key, or JSON with a `routing_key` member. The key is never logged; errors name
/// only where it was looked for.
pub async fn read_routing_key(config: &SdkConfig, spec: &str) -> Result<String, String> {
    let key = if let Some(name) = spec.strip_prefix("ssm:") {
        aws_sdk_ssm::Client::new(config)
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| format!("SSM parameter {name}: {}", describe::chain(&e)))?
            .parameter()
            .and_then(|p| p.value())
            .map(str::to_owned)
            .ok_or_else(|| format!("SSM parameter {name} has no value"))?
    } else {
        let secret = aws_sdk_secretsmanager::Client::new(config)
            .get_secret_value()
            .secret_id(spec)
            .send()
            .await
            .map_err(|e| format!("secret {spec}: {}", describe::chain(&e)))?
            .secret_string()
            .map(str::to_owned)
            .ok_or_else(|| format!("secret {spec} has no string value"))?;
        secret
    };
    // The key itself, or JSON with a `routing_key` member (in a secret or a parameter alike).
    let key = match serde_json::from_str::<serde_json::Value>(&key) {
        Ok(serde_json::Value::Object(v)) => v
            .get("routing_key")
            .and_then(|k| k.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("{spec} is JSON without a routing_key"))?,
        _ => key,
    };
    let key = key.trim().to_owned();
    if key.is_empty() {
        return Err(format!("the routing key in {spec} is empty"));
    }
    Ok(key)
}

/// AWS Organizations through the SDK (`ACCOUNT_CONTEXT=organizations`): in the management
/// account or the delegated administrator directly, or through `ORG_READ_ROLE_ARN`.
pub struct SdkOrganizations {
    client: aws_sdk_organizations::Client,
}

impl SdkOrganizations {
    pub fn new(sdk: &SdkConfig, role: Option<&str>) -> Self {
        let conf = aws_sdk_organizations::config::Builder::from(sdk);
        let conf = match role {
            Some(arn) => conf.credentials_provider(super::role::RoleCredentials::new(
                sdk,
                crate::lambda::config::ReadRole {
                    arn: arn.to_owned(),
                    external_id: None,
                },
            )),
            None => conf,
        };
        SdkOrganizations {
            client: aws_sdk_organizations::Client::from_conf(conf.build()),
        }
    }
}

fn org_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    call: &str,
    e: SdkError<E, aws_sdk_organizations::config::http::HttpResponse>,
) -> String {
    match e.code() {
        Some(code) => format!("{call}: {code}: {}", e.message().unwrap_or("")),
        None => format!("{call}: {}", describe::chain(&e)),
    }
}

#[async_trait]
impl super::Organizations for SdkOrganizations {
    async fn accounts(&self) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_accounts()
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| org_error("ListAccounts", e))?;
            for a in page.accounts() {
                if let (Some(id), Some(name)) = (a.id(), a.name()) {
                    out.push((id.to_owned(), name.to_owned()));
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    async fn parent(&self, child: &str) -> Result<(String, bool), String> {
        let out = self
            .client
            .list_parents()
            .child_id(child)
            .send()
            .await
            .map_err(|e| org_error("ListParents", e))?;
        let p = out
            .parents()
            .first()
            .ok_or_else(|| format!("ListParents: {child} has no parent"))?;
        Ok((
            p.id().unwrap_or("").to_owned(),
            p.r#type() == Some(&aws_sdk_organizations::types::ParentType::Root),
        ))
    }

    async fn ou_name(&self, ou: &str) -> Result<String, String> {
        let out = self
            .client
            .describe_organizational_unit()
            .organizational_unit_id(ou)
            .send()
            .await
            .map_err(|e| org_error("DescribeOrganizationalUnit", e))?;
        Ok(out
            .organizational_unit()
            .and_then(|u| u.name())
            .unwrap_or(ou)
            .to_owned())
    }

    async fn tags(
        &self,
        account: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, String> {
        let mut out = std::collections::BTreeMap::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_tags_for_resource()
                .resource_id(account)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| org_error("ListTagsForResource", e))?;
            for t in page.tags() {
                out.insert(t.key().to_owned(), t.value().to_owned());
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }
}

/// Accounts' context kept in the state table (partition `account`), so that a cold start asks
/// Organizations nothing it learnt within the TTL. Best effort: a failed read or write of the
/// cache only means Organizations is asked.
#[async_trait]
impl super::AccountCache for DynamoState {
    async fn get(
        &self,
        ids: &[String],
        now: u64,
    ) -> HashMap<String, crate::alert::context::AccountInfo> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut out = HashMap::new();
        for chunk in ids.chunks(100) {
            let keys: Vec<HashMap<String, Av>> = chunk
                .iter()
                .map(|id| {
                    HashMap::from([("pk".to_owned(), s("account")), ("sk".to_owned(), s(id))])
                })
                .collect();
            let Ok(ask) = KeysAndAttributes::builder().set_keys(Some(keys)).build() else {
                continue;
            };
            let Ok(answer) = self
                .client
                .batch_get_item()
                .request_items(&self.table, ask)
                .send()
                .await
            else {
                continue;
            };
            for item in answer
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                let fresh = item
                    .get("fresh_until")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|t| now < t);
                let id = item.get("sk").and_then(|v| v.as_s().ok());
                let ctx = item
                    .get("ctx")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|t| serde_json::from_str::<Value>(t).ok());
                if let (true, Some(id), Some(ctx)) = (fresh, id, ctx) {
                    out.insert(id.clone(), account_info_of(&ctx));
                }
            }
        }
        out
    }

    async fn put(&self, found: &HashMap<String, crate::alert::context::AccountInfo>, expires: u64) {
        let requests: Vec<aws_sdk_dynamodb::types::WriteRequest> = found
            .iter()
            .filter_map(|(id, info)| {
                let item = HashMap::from([
                    ("pk".to_owned(), s("account")),
                    ("sk".to_owned(), s(id)),
                    ("ctx".to_owned(), s(info.to_json(id).to_string())),
                    ("fresh_until".to_owned(), Av::N(expires.to_string())),
                    (
                        "expires_at".to_owned(),
                        Av::N((expires + 86_400).to_string()),
                    ),
                ]);
                put_request(item).ok()
            })
            .collect();
        if let Err(e) = self.write_batches(&requests).await {
            tracing::debug!(error = %e.message, "accounts' context not cached in the state table");
        }
    }
}

/// `AccountInfo::to_json` read back.
fn account_info_of(v: &Value) -> crate::alert::context::AccountInfo {
    let ou = v.get("ou").and_then(Value::as_str).unwrap_or("");
    crate::alert::context::AccountInfo {
        name: v.get("name").and_then(Value::as_str).map(str::to_owned),
        ou_path: ou
            .strip_prefix("Root")
            .unwrap_or(ou)
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        tags: v
            .get("tags")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The last rule set that loaded, kept in the state table (partition `rules`, item
/// `last-good`: its `s3://` documents, gzip'd JSON), so that one bad rule object uploaded to S3
/// does not stop alerting: the cold start that cannot load the rules as they are now loads them
/// as they last were, says so, and counts `RulesFallback` in every invocation's metrics.
pub struct LastGoodRules {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// What kept rules became at a cold start.
#[derive(Debug)]
pub struct RulesLoaded {
    pub rules: crate::rules::RuleSet,
    /// The fault that made the cold start use the last good documents, and when those were
    /// kept (Unix seconds); `None`: the rules as they are now.
    pub fallback: Option<(String, u64)>,
}

/// The most a kept rule set may weigh, compressed (a DynamoDB item holds 400 KB).
const LAST_GOOD_MAX: usize = 350 * 1024;

impl LastGoodRules {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        LastGoodRules {
            client,
            table: table.into(),
        }
    }

    fn key() -> HashMap<String, Av> {
        HashMap::from([
            ("pk".to_owned(), s("rules")),
            ("sk".to_owned(), s("last-good")),
        ])
    }

    /// Keeps these documents as the last good ones.
    async fn keep(
        &self,
        docs: &[(crate::rules::S3Object, String)],
        now: u64,
    ) -> Result<(), String> {
        use std::io::Write as _;
        let json = serde_json::to_vec(
            &docs
                .iter()
                .map(
                    |(o, text)| serde_json::json!({"bucket": o.bucket, "key": o.key, "text": text}),
                )
                .collect::<Vec<_>>(),
        )
        .map_err(|e| e.to_string())?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json).map_err(|e| e.to_string())?;
        let packed = gz.finish().map_err(|e| e.to_string())?;
        if packed.len() > LAST_GOOD_MAX {
            return Err(format!(
                "the rule documents weigh {} bytes compressed, more than a state-table item holds",
                packed.len()
            ));
        }
        let mut item = Self::key();
        item.insert(
            "docs".into(),
            Av::B(aws_sdk_dynamodb::primitives::Blob::new(packed)),
        );
        item.insert("kept_at".into(), Av::N(now.to_string()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| describe::chain(&e))?;
        Ok(())
    }

    /// The last good documents, and when they were kept.
    async fn last(&self) -> Option<(HashMap<crate::rules::S3Object, Result<String, String>>, u64)> {
        use std::io::Read as _;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key()))
            .consistent_read(true)
            .send()
            .await
            .ok()?;
        let item = out.item()?;
        let packed = item.get("docs")?.as_b().ok()?;
        let kept_at = item
            .get("kept_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(packed.as_ref())
            .read_to_end(&mut json)
            .ok()?;
        let docs: Vec<Value> = serde_json::from_slice(&json).ok()?;
        let map = docs
            .iter()
            .filter_map(|d| {
                Some((
                    crate::rules::S3Object {
                        bucket: d.get("bucket")?.as_str()?.to_owned(),
                        key: d.get("key")?.as_str()?.to_owned(),
                    },
                    Ok(d.get("text")?.as_str()?.to_owned()),
                ))
            })
            .collect();
        Some((map, kept_at))
    }

    /// Loads the rules as they are now and, when they load, keeps them as the last good ones;
    /// no fallback (the instance already on the last good ones retries with this).
    pub async fn load_current(
        &self,
        s3: &aws_sdk_s3::Client,
        sources: &[crate::rules::RuleSource],
        now: u64,
    ) -> Result<crate::rules::RuleSet, crate::rules::RuleError> {
        let fetched = crate::s3::fetch_rule_documents(s3, sources).await;
        let rules = crate::s3::load_fetched(sources, &fetched)?;
        let docs: Vec<(crate::rules::S3Object, String)> = fetched
            .iter()
            .filter_map(|(o, t)| t.as_ref().ok().map(|t| (o.clone(), t.clone())))
            .collect();
        if !docs.is_empty() {
            if let Err(e) = self.keep(&docs, now).await {
                tracing::warn!(error = %e, "the rules loaded but could not be kept as the last good ones");
            }
        }
        Ok(rules)
    }

    /// Loads the rules as they are now and keeps them as the last good ones; when they do not
    /// load, loads the last good ones instead (naming the fault), if there are any and they
    /// load with the same sources; else the fault.
    pub async fn load(
        &self,
        s3: &aws_sdk_s3::Client,
        sources: &[crate::rules::RuleSource],
        now: u64,
    ) -> Result<RulesLoaded, crate::rules::RuleError> {
        match self.load_current(s3, sources, now).await {
            Ok(rules) => Ok(RulesLoaded {
                rules,
                fallback: None,
            }),
            Err(fault) => {
                let Some((kept, kept_at)) = self.last().await else {
                    return Err(fault);
                };
                match crate::s3::load_fetched(sources, &kept) {
                    Ok(rules) => Ok(RulesLoaded {
                        rules,
                        fallback: Some((fault.to_string(), kept_at)),
                    }),
                    Err(_) => Err(fault),
                }
            }
        }
    }
}
