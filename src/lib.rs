//! trail-alerts: CloudTrail deliveries in, actionable alerts out.
//!
//! The data flow, for the command line and the Lambda function alike: a log's bytes go through
//! the [`reader`] (decoded, split into records, the fields the [`index`] names peeked at); the
//! [`pipeline`] asks the index whether any rule could match each record, builds the ones it
//! wants and matches them against the [`rules`] (the matcher: [`pattern`]s filed in the
//! [`index`]), and raises [`alert`]s; the [`policy`] decides which of them are told (dedup,
//! thresholds, groups, suppressions); the [`cli`] prints them, the function (`lambda`)
//! publishes them. `docs/architecture.md` draws the same picture with the words used here.
//!
//! # Files
//! - [`alert`]: what a match tells the person on call, and ([`alert::render`]) every form it is
//!   shown in.
//! - `bin`: the two binaries, `trail-alerts` and `trail-alerts-lambda`; they only wire.
//! - [`cli`]: the `trail-alerts` command line.
//! - [`config`]: settings shared by the command line and the function, from the environment.
//! - [`describe`]: how faults word values and error chains.
//! - `hash`: the word hasher of the small maps looked up per record, byte-string equality, and
//!   the stable (FNV-1a) hash of ids kept outside the process (`stable_hash`).
//! - [`index`]: the rule index — many patterns matched at a cost that does not grow with their
//!   number, and the fields a record's raw bytes must show for any rule to want it.
//! - [`json`]: compact JSON written straight into a buffer, as serde_json writes it, for the
//!   per-alert JSON lines; fields of small objects found without hashing their keys.
//! - [`keys`]: what an S3 object key or file name says an object is (log, digest, other).
//! - `lambda` (cargo feature `lambda`, on by default): the function — payload shapes, the
//!   handler, the door after matching, and the ports it talks to with their adapters.
//! - [`layout`]: CloudTrail's key layout, for listing only the S3 folders a scan asks for.
//! - [`model`]: the rule model — severity, the rule and its tests, key paths, dedup,
//!   thresholds, groups, absence, suppressions, summary templates — below `rules`, `policy` and
//!   `alert`, which all use it and none of which it uses.
//! - [`pattern`]: Amazon EventBridge event patterns, compiled once and matched against JSON
//!   events; pure (no I/O, no async, no AWS types).
//! - [`pipeline`]: one log through reader, index and rules to alerts, in one of three modes
//!   (inline, threaded, reference).
//! - [`policy`]: alert management — dedup, threshold and group windows of event time,
//!   suppressions, roll-ups: one decision layer (`policy::store`) over the state store's
//!   ports, run in memory by the command line and over DynamoDB by the function.
//! - [`reader`]: CloudTrail log files (gzip or plain) read one record at a time, in bounded
//!   memory, and the other shapes records come in (arrays, one a line, `lookup-events` output).
//! - [`rules`]: rule documents (YAML, validated strictly), rule sources, the built-in packs, the
//!   Sigma import, and the rule set over the index.
//! - `s3` (cargo feature `s3`): S3 through the AWS SDK, for the function and `scan s3://`.
//! - [`time`]: `eventTime` timestamps and durations (`15m`) as numbers.
//! - [`walk`]: the files under a directory (logs for `scan`, rule files for rule sources), and
//!   opening them through their directory, held open (`Opener`).
//!
//! # Words
//! One word per thing (`docs/architecture.md` has the whole glossary): a **delivery** is one
//! thing handed to the function to read (a log object or an EventBridge event); **counts** are
//! numbers added up (`ReadCounts`, `ScanCounts`, `DoorCounts`, `InvocationCounts`,
//! `PageCounts`, `SweepCounts`); an **outcome** is how one thing ended (`ReadOutcome`,
//! `ObjectOutcome`); the **matcher** is patterns and index, the **policy** judges what is told;
//! a **key** alone is an S3 object key, an **alert key** names an alert's incident (PagerDuty's
//! `dedup_key`), a **key value** is the values at a rule's key paths, a **routing key** is a
//! PagerDuty service's.

pub mod alert;
pub mod cli;
pub mod config;
pub mod describe;
mod hash;
pub mod index;
pub mod json;
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

/// Turns transparent huge pages off for this process, as the binaries do first thing. Their
/// allocator (mimalloc) maps its arenas aligned to 2 MiB, and with huge pages on, the first
/// byte touched in one committed and zeroed all 2 MiB: resident memory doubled (11 to 21 MiB
/// for a scan) and the kernel's page zeroing was a twentieth of a folder's scan. The working
/// set here is a few MiB, which huge pages do not help.
pub fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes no pointers; a failure (an old kernel) changes nothing.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
