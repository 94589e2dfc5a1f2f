//! trail-alerts: CloudTrail deliveries in, actionable alerts out.
//!
//! # Layout
//! - [`pattern`]: Amazon EventBridge event patterns, compiled once and matched against JSON
//!   events; pure (no I/O, no async, no AWS types).
//! - [`engine`]: an index over many patterns so that matching a record costs the same with ten
//!   rules or a thousand.
//! - [`reader`]: CloudTrail log files (gzip or plain) read one record at a time, in bounded
//!   memory, with every fault reported by byte offset or record index.

pub mod alert;
pub mod config;
pub mod engine;
mod json;
pub mod keys;
pub mod lambda;
pub mod pattern;
pub mod reader;
pub mod rules;
pub mod scan;
