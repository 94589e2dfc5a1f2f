//! The reader and the built-in pack on real third-party CloudTrail data
//! (`tests/fixtures/real/`, sources in its SOURCES.md): every record is read, none is skipped,
//! and the built-in pack raises nothing on records that are not AWS Backup or Outposts events.

use serde_json::{json, Value};
use trail_alerts::alert::AlertSource;
use trail_alerts::pipeline::{Mode, Pipeline};
use trail_alerts::reader::{Limits, LogReader, Parsed};
use trail_alerts::rules::{RuleSet, RuleSource};

use crate::util::{fixture, gzip};

fn read_text(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).expect("fixture")
}

fn envelope(records: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "Records": records })).expect("serialize")
}

/// Every real delivery, as (name, bytes of a CloudTrail log, expected record count).
fn deliveries() -> Vec<(String, Vec<u8>, usize)> {
    let mut out = Vec::new();
    for dir in ["invictus", "plaso", "trailscraper"] {
        let mut entries: Vec<_> = std::fs::read_dir(fixture(&format!("real/{dir}")))
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let bytes = std::fs::read(&path).expect("read");
            let plain = if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut s = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut s)
                    .expect("inflate");
                s
            } else {
                bytes.clone()
            };
            let doc: Value = serde_json::from_slice(&plain).expect("json");
            let n = doc["Records"].as_array().expect("Records").len();
            out.push((path.display().to_string(), bytes, n));
        }
    }
    for entry in std::fs::read_dir(fixture("real/stratus")).expect("dir") {
        let path = entry.expect("entry").path();
        let records: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let n = records.len();
        out.push((path.display().to_string(), gzip(&envelope(records)), n));
    }
    let panther: Vec<Value> =
        serde_json::from_str(&read_text("real/panther/panther_cloudtrail_tests.json"))
            .expect("json");
    let logs: Vec<Value> = panther.into_iter().map(|t| t["log"].clone()).collect();
    let n = logs.len();
    out.push(("panther".into(), envelope(logs), n));
    let otrf: Vec<Value> = read_text("real/otrf/ec2_proxy_s3_exfiltration_2020-09-14011940.json")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("ndjson"))
        .collect();
    let n = otrf.len();
    out.push(("otrf".into(), gzip(&envelope(otrf)), n));
    let docs: Vec<Value> = serde_json::from_str(&read_text(
        "real/aws-docs/cloudtrail_user_guide_examples.json",
    ))
    .expect("json");
    for (i, d) in docs.iter().enumerate() {
        let j = &d["json"];
        if let Some(records) = j.get("Records").and_then(Value::as_array) {
            out.push((
                format!("aws-docs[{i}]"),
                serde_json::to_vec(j).expect("ser"),
                records.len(),
            ));
        } else if j.get("eventVersion").is_some() {
            out.push((format!("aws-docs[{i}]"), envelope(vec![j.clone()]), 1));
        }
    }
    out
}

#[test]
fn every_real_record_is_read_and_none_is_skipped() {
    let all = deliveries();
    assert!(all.len() >= 30, "{}", all.len());
    let mut total = 0;
    for (name, bytes, expected) in &all {
        let items: Vec<Parsed> = LogReader::new(&bytes[..], Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let skipped: Vec<String> = items
            .iter()
            .filter_map(|i| match i {
                Parsed::Unreadable(e) => Some(e.to_string()),
                Parsed::Record { .. } => None,
            })
            .collect();
        assert!(skipped.is_empty(), "{name}: {skipped:?}");
        assert_eq!(items.len(), *expected, "{name}");
        total += expected;
    }
    assert!(total > 950, "{total}");
}

/// The pack stays quiet on third-party records except where it should speak: AWS Backup and
/// Outposts events, and the calls that blind the pipeline (the real Stratus Red Team and
/// Invictus DeleteTrail records must fire `trail-logging-stopped`).
#[test]
fn the_builtin_pack_is_quiet_on_records_that_are_not_backup_or_outposts_events() {
    let rules = RuleSet::load(&[RuleSource::Builtin]).expect("builtin");
    let mut pipeline = Pipeline::new(&rules, Limits::default());
    let mut alerts = Vec::new();
    for (name, bytes, _) in deliveries() {
        let source = AlertSource::File { path: name.clone() };
        let outcome = pipeline.run(std::io::Cursor::new(bytes), &source, Mode::Inline, |a| {
            alerts.push(a)
        });
        assert!(outcome.fault.is_none(), "{name}: {:?}", outcome.fault);
        assert!(
            outcome.unreadable.is_empty(),
            "{name}: {:?}",
            outcome.unreadable
        );
    }
    let mut blinding = Vec::new();
    for a in &alerts {
        let src = a.event.event_source.as_deref().unwrap_or("");
        if a.rule_id.starts_with("trail-") {
            assert!(
                src == "cloudtrail.amazonaws.com" || src == "s3.amazonaws.com",
                "{} fired on {src}",
                a.rule_id
            );
            blinding.push((
                a.rule_id.clone(),
                a.event.event_name.clone().unwrap_or_default(),
            ));
            continue;
        }
        assert!(
            src == "backup.amazonaws.com" || src == "outposts.amazonaws.com",
            "{} fired on {src} {:?} in {}",
            a.rule_id,
            a.event.event_name,
            a.source.display()
        );
    }
    blinding.sort();
    blinding.dedup();
    // Stratus Red Team's cloudtrail-delete, -stop, -event-selectors and the Invictus
    // incident's UpdateTrail.
    let pairs: Vec<(&str, &str)> = blinding
        .iter()
        .map(|(r, e)| (r.as_str(), e.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            // The Invictus incident's Stratus Red Team "CloudTrail lifecycle rule" detonation.
            ("trail-bucket-lifecycle-changed", "PutBucketLifecycle"),
            ("trail-changed", "UpdateTrail"),
            ("trail-logging-stopped", "DeleteTrail"),
            ("trail-logging-stopped", "StopLogging"),
            ("trail-management-events-dropped", "PutEventSelectors"),
        ]
    );
}

#[test]
fn real_non_log_documents_are_refused_with_what_they_are() {
    let docs: Vec<Value> = serde_json::from_str(&read_text(
        "real/aws-docs/cloudtrail_user_guide_examples.json",
    ))
    .expect("json");
    let digest = docs
        .iter()
        .find(|d| d["json"].get("digestStartTime").is_some())
        .expect("digest example");
    let err = LogReader::new(
        &serde_json::to_vec(&digest["json"]).expect("ser")[..],
        Limits::default(),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("CloudTrail digest file"), "{err}");
    let sns = docs
        .iter()
        .find(|d| d["json"].get("s3ObjectKey").is_some())
        .expect("SNS example");
    let err = LogReader::new(
        &serde_json::to_vec(&sns["json"]).expect("ser")[..],
        Limits::default(),
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("no \"Records\" array; top-level keys: \"s3Bucket\", \"s3ObjectKey\""),
        "{err}"
    );
}
