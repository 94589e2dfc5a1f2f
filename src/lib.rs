//! trail-alerts: CloudTrail deliveries in, actionable alerts out.
//!
//! # Layout
//! - [`pattern`]: Amazon EventBridge event patterns, compiled once and matched against JSON
//!   events; pure (no I/O, no async, no AWS types).
//! - [`engine`]: an index over many patterns so that matching a record costs the same with ten
//!   rules or a thousand.

pub mod engine;
pub mod pattern;
