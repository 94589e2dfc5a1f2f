//! The AWS Lambda function: deliveries in (S3 log objects, EventBridge events, the sweep's
//! schedule), alerts out (SNS topics, chat, PagerDuty), state in DynamoDB.
//!
//! # Files
//! - [`accounts`]: the accounts' context the door adds to what it tells (the rule files'
//!   `accounts:`, AWS Organizations with its caches, IAM Identity Center links).
//! - [`config`]: the function's environment, read once.
//! - [`counts`]: what an invocation did, counted (the response and the metrics are made from
//!   it).
//! - [`doctor`]: `trail-alerts doctor` and the `{"doctor": {}}` payload: each thing the
//!   function needs tried in order, with the fix when it fails.
//! - [`door`]: the one door after matching that every path goes through: suppressions,
//!   recovery and shadow rules, heartbeats, admission, then shadow output, SNS, claims marked,
//!   and PagerDuty within its budget (parking what it cannot take).
//! - [`handler`]: payload in, response out, generic over the ports; typed errors mapped to
//!   `Diagnostic`.
//! - [`input`]: every payload shape a delivery arrives in, reduced to what to do.
//! - [`message`]: SNS messages (formats, attributes, FIFO ids, batching, SNS's limits).
//! - [`metrics`]: one CloudWatch Embedded Metric Format line per invocation.
//! - [`object`]: one object — what is read, the streamed read through the pipeline.
//! - [`pager`]: paging: which PagerDuty services an alert pages, the budget of events a minute
//!   per routing key, parked pages and their drain.
//! - [`ports`]: everything the function talks to (S3, SNS, DynamoDB, Secrets Manager/SSM,
//!   Organizations, PagerDuty), as traits, with the AWS adapters and the test stand-ins beside
//!   them.
//! - [`publish`]: an object's alerts to their topics, in batches, refused entries retried.
//! - [`shadow`]: shadow rules' alerts as JSON lines to `SHADOW_PREFIX`.
//!
//! [`state`] is `policy::store` (the decisions and the state store's ports, shared with the
//! command line) by the name the function's modules use.

pub mod accounts;
pub mod config;
pub mod counts;
pub mod doctor;
pub mod door;
pub mod handler;
pub mod input;
pub mod message;
pub mod metrics;
pub mod object;
pub mod pager;
pub mod ports;
pub mod publish;
pub mod shadow;

/// The state store's ports and the decisions over them (`policy::store`, shared with the command
/// line), by the name the function's modules use.
pub use crate::policy::store as state;
pub use config::LambdaConfig;
pub use handler::{Handler, HandlerError};
