//! `scan s3://bucket/[prefix]`: the objects CloudTrail's layout and the narrowing leave
//! (`crate::layout`, listed by `crate::s3::list_logs`), fetched `--concurrency` at a time, each
//! streamed through the same pipeline as a file on a blocking thread, written in key order.
//! Keys that name no log (digests, folder markers, anything else) and empty objects are passed
//! over and counted, as in a directory.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::io::SyncIoBridge;

use super::{pipeline_for, FileDone, ScanOutput};
use crate::alert::{Alert, AlertSource};
use crate::keys::{classify, KeyKind};
use crate::layout::Narrowing;
use crate::reader::Limits;
use crate::rules::RuleSet;
use crate::s3::{fetch_error, list_logs, s3_client, sdk_config, with_verdict, Listed};
use crate::walk::{PassedOver, Why};

/// `s3://bucket/prefix` as (bucket, prefix).
pub(super) fn parse_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_owned(), prefix.to_owned()))
}

/// What listing the S3 URLs found besides the logs.
#[derive(Default)]
pub(super) struct S3Scan {
    pub passed_over: Vec<PassedOver>,
    /// Logs found (read or failed).
    pub logs: usize,
    pub list_calls: u64,
}

/// Why a listed key is passed over, if it is.
fn passed_over(o: &Listed) -> Option<Why> {
    match classify(&o.key) {
        _ if o.key.ends_with('/') => Some(Why::FolderMarker),
        KeyKind::Digest => Some(Why::DigestName),
        kind if kind.has_records() && o.size == 0 => Some(Why::Empty),
        kind if kind.has_records() => None,
        _ => Some(Why::NotALogName),
    }
}

/// Lists every URL, then reads the logs found; what each gives goes to `report` in key order.
/// A listing or fetch that fails is reported with the object or prefix and whether a retry
/// can help, and makes the scan incomplete.
pub(super) fn scan(
    urls: &[(String, String)],
    narrowing: &Narrowing,
    concurrency: usize,
    rules: &Arc<RuleSet>,
    limits: Limits,
    report: &mut ScanOutput<'_>,
) -> io::Result<S3Scan> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = s3_client(&sdk_config().await);
        let mut found = S3Scan::default();
        let mut logs: Vec<(String, Listed)> = Vec::new();
        for (bucket, prefix) in urls {
            let listing = list_logs(&client, bucket, prefix, narrowing, concurrency).await;
            found.list_calls += listing.list_calls;
            if listing.objects.is_empty() && listing.errors.is_empty() {
                // Nothing at all: say where it looked, which is where a wrong prefix shows.
                let root = crate::layout::Start::parse(prefix).root;
                eprintln!(
                    "trail-alerts: s3://{bucket}/{prefix}: nothing found under s3://{bucket}/{root} \
                     for the days, accounts and Regions asked for (a trail with a key prefix \
                     writes under <prefix>/AWSLogs/)"
                );
            }
            for e in &listing.errors {
                eprintln!("trail-alerts: {e}");
                report.all_read = false;
            }
            for o in listing.objects {
                match passed_over(&o) {
                    Some(why) => found.passed_over.push(PassedOver {
                        path: PathBuf::from(format!("s3://{bucket}/{}", o.key)),
                        why,
                    }),
                    None => logs.push((bucket.clone(), o)),
                }
            }
        }
        found.logs = logs.len();
        let total_bytes: u64 = logs.iter().map(|(_, o)| o.size).sum();
        report.progress.expect(logs.len() as u64, total_bytes);
        let started = Instant::now();
        let mut next = 0;
        let mut tasks = tokio::task::JoinSet::new();
        let mut waiting: BTreeMap<usize, FileDone> = BTreeMap::new();
        let mut expected = 0;
        let mut read_bytes = 0;
        while expected < logs.len() {
            while tasks.len() < concurrency.max(1) && next < logs.len() {
                let (bucket, object) = logs[next].clone();
                let (client, rules) = (client.clone(), Arc::clone(rules));
                let i = next;
                tasks.spawn(async move { (i, read(client, bucket, object, rules, limits).await) });
                next += 1;
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            let (i, file) = done.map_err(io::Error::other)?;
            waiting.insert(i, file);
            while let Some(file) = waiting.remove(&expected) {
                read_bytes += logs[expected].1.size;
                expected += 1;
                for a in &file.alerts {
                    report.alert(a);
                }
                report.file_done(&file.name, file.outcome)?;
                let alerts = report.counts.shown;
                report
                    .progress
                    .objects(expected as u64, read_bytes, alerts, started.elapsed());
            }
        }
        Ok(found)
    })
}

/// Fetches one object and streams it through the pipeline on a blocking thread.
async fn read(
    client: aws_sdk_s3::Client,
    bucket: String,
    object: Listed,
    rules: Arc<RuleSet>,
    limits: Limits,
) -> FileDone {
    let name = format!("s3://{bucket}/{}", object.key);
    let fetched = client
        .get_object()
        .bucket(&bucket)
        .key(&object.key)
        .send()
        .await;
    let (body, size) = match fetched {
        Ok(out) => crate::s3::body_and_length(out),
        Err(e) => {
            return FileDone {
                name,
                alerts: Vec::new(),
                outcome: Err(io::Error::other(with_verdict(&fetch_error(e)))),
                worker: None,
            }
        }
    };
    let input = SyncIoBridge::new(body);
    let source = AlertSource::S3 {
        bucket,
        key: object.key,
    };
    let joined = tokio::task::spawn_blocking(move || {
        let mut alerts: Vec<Alert> = Vec::new();
        let outcome = pipeline_for(&rules, limits).run_sized(
            input,
            size,
            &source,
            crate::pipeline::Mode::Inline,
            |a| alerts.push(a),
        );
        (alerts, outcome)
    })
    .await;
    match joined {
        Ok((alerts, outcome)) => FileDone {
            name,
            alerts,
            outcome: Ok(outcome),
            worker: None,
        },
        Err(e) => FileDone {
            name,
            alerts: Vec::new(),
            outcome: Err(io::Error::other(format!("the reading task failed: {e}"))),
            worker: None,
        },
    }
}
