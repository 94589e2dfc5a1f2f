//! trail-alerts: CloudTrail deliveries in, actionable alerts out.
//!
//! # Layout
//! The data flow, for the command line and the Lambda function alike: a log's bytes go through
//! the [`reader`] (decoded, split into records, the fields the [`index`] names peeked at), the
//! [`pipeline`] asks the index whether any rule could match each record, builds and matches the
//! ones it wants against the [`rules`], and raises [`alert`]s, which the [`cli`] prints and the
//! Lambda function (`lambda`) publishes to SNS.
//!
//! - [`pattern`]: Amazon EventBridge event patterns, compiled once and matched against JSON
//!   events; pure (no I/O, no async, no AWS types).
//! - [`index`]: the rule index — many patterns matched at a cost that does not grow with their
//!   number, and the fields a record's raw bytes must show for any rule to want it.
//! - [`model`]: the rule model — severity, the rule and its tests, key paths, dedup,
//!   thresholds, groups, absence, suppressions, summary templates — below `rules`, `policy` and
//!   `alert`, which all use it and none of which it uses.
//! - [`rules`]: rule documents (YAML, validated strictly), rule sources, the built-in pack, and
//!   the rule set over the index.
//! - [`reader`]: CloudTrail log files (gzip or plain) read one record at a time, in bounded
//!   memory: decoding, splitting, record verdicts, reading a record in part; and the other
//!   shapes records come in (arrays, newline-delimited, `lookup-events` output), which the
//!   command line reads too.
//! - [`pipeline`]: one log through reader, index and rules to alerts, in one of three modes
//!   (inline, threaded, reference).
//! - [`policy`]: alert management — dedup, threshold and group windows of event time,
//!   suppressions, roll-ups: one decision layer (`policy::store`) over the state store's port,
//!   run in memory by the command line and over DynamoDB by the function (`lambda::state` is
//!   the same module).
//! - [`alert`]: what a match tells the person on call, and ([`alert::render`]) every form it is
//!   shown in.
//! - [`keys`]: what an S3 key or file name says an object is (log, digest, other).
//! - [`walk`]: the files under a directory (logs for `scan`, known by name or content, and
//!   why the others were passed over; rule files for rule sources).
//! - [`time`]: `eventTime` timestamps and durations (`15m`) as numbers.
//! - [`config`]: settings shared by the command line and the function, from the environment.
//! - [`describe`]: how faults word values and error chains.
//! - `hash`: the word hasher of the small maps looked up per record, and the stable (FNV-1a)
//!   hash of ids kept outside the process.
//! - [`cli`]: the `trail-alerts` command line (the binary only parses arguments and calls it).
//! - `lambda` (cargo feature `lambda`, on by default): the function: payload shapes, ports and
//!   their AWS SDK and in-memory adapters, the handler, one object's policy, publishing, SNS
//!   messages. The command line needs none of it.

pub mod alert;
pub mod cli;
pub mod config;
pub mod describe;
mod hash;
pub mod index;
pub mod keys;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod layout;
pub mod model;
pub mod pattern;
pub mod pipeline;
pub mod policy;
pub mod reader;
pub mod rules;
#[cfg(feature = "s3")]
pub mod s3;
pub mod time;
pub mod walk;
