//! The AWS Lambda function: S3 deliveries in, SNS alerts out.
//!
//! # Layout
//! - [`accounts`]: the accounts' context the door adds to what it tells (the rule files'
//!   `accounts:`, AWS Organizations with its caches, IAM Identity Center links).
//! - [`input`]: every payload shape a delivery arrives in (S3 notifications, EventBridge events,
//!   the sweep's schedule), reduced to what to do.
//! - [`ports`]: the two traits the handler needs — reading an object, publishing a batch.
//! - [`handler`]: payload in, response out, generic over the ports; typed errors mapped to
//!   `Diagnostic`.
//! - [`object`]: one object — what is read, the streamed read through the pipeline.
//! - [`door`]: the one door after matching that every path goes through: suppressions,
//!   recovery and shadow rules, heartbeats, admission, then shadow output, SNS, claims marked,
//!   and PagerDuty within its budget (parking what it cannot take).
//! - [`pager`]: the PagerDuty Events v2 destination (trigger, resolve, retries, the budget of
//!   events a minute, parked pages).
//! - [`publish`]: an object's alerts to their topics, in batches, refused entries retried.
//! - [`message`]: SNS messages (formats, attributes, FIFO ids, batching, SNS's limits).
//! - [`state`]: the state store — dedup, threshold and group windows, admission per window,
//!   the trail's progress, heartbeats, parked pages, the shared paging budget and open
//!   incidents (ports, protocol, and an in-memory adapter); it is `policy::store`, which the
//!   command line decides through too; DynamoDB in `aws`.
//! - [`doctor`]: `trail-alerts doctor` and the `{"doctor": {}}` payload: each thing the
//!   function needs tried in order, with the fix when it fails.
//! - [`metrics`]: one CloudWatch Embedded Metric Format line per invocation.
//! - [`totals`]: what an invocation did, counted (the response and the metrics are made from it).
//! - [`config`]: the function's environment, read once.
//! - [`aws`]: the ports on the AWS SDK (with [`role`], the only modules that import
//!   `aws_sdk_*`).
//! - [`role`]: the trail's read role in a log-archive account (`TRAIL_READ_ROLE_ARN`), assumed
//!   once and kept by the S3 client's identity cache.
//! - [`memory`]: the ports in memory, for unit tests.

pub mod accounts;
pub mod aws;
pub mod config;
pub mod doctor;
pub mod door;
pub mod handler;
pub mod input;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod object;
pub mod pager;
pub mod ports;
pub mod publish;
pub mod role;
pub mod shadow;
pub mod totals;

/// The state store's ports and the decisions over them (`policy::store`, shared with the command
/// line), by the name the function's modules use.
pub use crate::policy::store as state;
pub use config::LambdaConfig;
pub use handler::{Handler, HandlerError};
