//! Matching throughput with 10 and with 1,000 rules over the records of the shared benchmark
//! corpus (`scripts/bench/make-corpus.py`; set `TRAIL_ALERTS_CORPUS` to use another file).
//! Only matching is measured: records are parsed before timing starts.
//!
//! `cargo bench --bench matcher` — criterion reports records per second for each rule count.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};
use trail_alerts::index::{PatternIndex, Scratch};
use trail_alerts::pattern::Pattern;

const CORPUS_RECORDS: usize = 20_000;

fn corpus() -> Vec<Value> {
    let path = std::env::var_os("TRAIL_ALERTS_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            let out = manifest.join(format!(
                "target/bench-corpus/corpus-{CORPUS_RECORDS}.json.gz"
            ));
            let script = manifest.join("scripts/bench/make-corpus.py");
            if !out.exists() {
                // Written under another name and renamed when whole: an interrupted run never
                // leaves a cut corpus to be measured next time.
                std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
                let part = out.with_extension("gz.part");
                let status = Command::new("python3")
                    .arg(&script)
                    .arg(&part)
                    .args(["--records", &CORPUS_RECORDS.to_string()])
                    .status()
                    .expect("run make-corpus.py");
                assert!(status.success(), "make-corpus.py failed");
                std::fs::rename(&part, &out).expect("rename the corpus");
            }
            out
        });
    let file = std::fs::File::open(&path).expect("open corpus");
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("inflate corpus");
    let mut doc: Value = serde_json::from_str(&text).expect("parse corpus");
    match doc["Records"].take() {
        Value::Array(records) => records,
        _ => panic!("no Records in {}", path.display()),
    }
}

/// Ten rules shaped like the built-in pack (`rules/`).
fn pack_like() -> Vec<Value> {
    vec![
        json!({"eventSource": ["backup.amazonaws.com"], "eventName": ["BackupJobCompleted"], "serviceEventDetails": {"state": [{"anything-but": "COMPLETED"}]}}),
        json!({"eventSource": ["backup.amazonaws.com"], "eventName": ["CopyJobCompleted"], "serviceEventDetails": {"state": [{"anything-but": "COMPLETED"}]}}),
        json!({"eventSource": ["backup.amazonaws.com"], "eventName": ["RestoreCompleted"], "serviceEventDetails": {"$or": [{"state": [{"anything-but": "COMPLETED"}]}, {"status": [{"anything-but": "COMPLETED"}]}]}}),
        json!({"eventSource": ["backup.amazonaws.com"], "eventName": ["ReportJobCompleted"], "serviceEventDetails": {"state": [{"anything-but": "COMPLETED"}]}}),
        json!({"eventSource": ["backup.amazonaws.com"], "eventName": ["BackupSelectionDeletedDueToSLRDeletion"]}),
        json!({"eventSource": ["backup.amazonaws.com"], "eventName": ["DeleteBackupVault", "DeleteRecoveryPoint", "DeleteBackupPlan", "DeleteBackupSelection", "StopBackupJob"], "errorCode": [{"exists": false}]}),
        json!({"eventSource": ["backup.amazonaws.com"], "eventName": ["PutBackupVaultNotifications", "DeleteBackupVaultNotifications"]}),
        json!({"source": ["aws.backup"], "detail": {"eventName": ["CreateOrganizationalBackupPlan", "UpdateOrganizationalBackupPlan", "DeleteOrganizationalBackupPlan"]}}),
        json!({"eventSource": ["outposts.amazonaws.com"], "readOnly": [false], "errorCode": [{"exists": false}]}),
        json!({"eventSource": ["outposts.amazonaws.com"], "errorCode": [{"exists": true}]}),
    ]
}

/// 990 more rules on other eventNames, with the operators users write.
fn generated(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let name = format!("GeneratedCall{i}");
            match i % 6 {
                0 => json!({"eventName": [name], "errorCode": [{"exists": true}]}),
                1 => json!({"eventName": [name], "userIdentity": {"type": [{"anything-but": "Root"}]}}),
                2 => json!({"eventName": [name, format!("{name}V2")], "sourceIPAddress": [{"cidr": "10.0.0.0/8"}]}),
                3 => json!({"detail-type": ["AWS API Call via CloudTrail"], "detail": {"eventName": [name]}}),
                4 => json!({"eventName": [name], "requestParameters": {"bucketName": [{"prefix": "prod-"}]}}),
                _ => json!({"eventName": [name], "awsRegion": [{"wildcard": "us-*-1"}], "readOnly": [false]}),
            }
        })
        .collect()
}

fn index(patterns: &[Value]) -> PatternIndex {
    let mut idx = PatternIndex::new();
    for p in patterns {
        idx.push(Pattern::compile(p).expect("bench pattern compiles"));
    }
    idx
}

fn bench(c: &mut Criterion) {
    let records = corpus();
    let small = pack_like();
    let mut large = small.clone();
    large.extend(generated(990));
    let mut group = c.benchmark_group("match");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(20);
    for (label, patterns) in [("10", &small), ("1000", &large)] {
        let idx = index(patterns);
        let mut scratch = Scratch::default();
        group.bench_with_input(BenchmarkId::new("rules", label), &records, |b, records| {
            b.iter(|| {
                let mut hits = 0usize;
                for r in records {
                    idx.matching(r, &mut scratch, |_| hits += 1);
                }
                hits
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
