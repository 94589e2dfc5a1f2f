//! The fast path (records no rule is filed under are checked, not built) must raise exactly the
//! alerts, and skip exactly the records, of the path that builds every record: on tricky
//! hand-made records, on real files, and on the shared benchmark corpus when it is there.

use std::process::Command;

use serde_json::{json, Value};
use trail_alerts::alert::AlertSource;
use trail_alerts::pipeline::{Mode, Pipeline, ReadCounts};
use trail_alerts::reader::Limits;
use trail_alerts::rules::{parse_document, RuleSet, RuleSource};

use crate::util::{fixture, gzip, json_fixture, root};

type Outcome = (Vec<(String, usize)>, Vec<String>, ReadCounts);

/// (fast path on this thread, fast path on three threads, every record built).
fn both(rules: &RuleSet, bytes: &[u8]) -> (Outcome, Outcome) {
    let source = AlertSource::File { path: "t".into() };
    let run = |mode: Mode| {
        let mut pipeline = Pipeline::new(rules, Limits::default());
        let mut alerts = Vec::new();
        let outcome = pipeline.run(std::io::Cursor::new(bytes.to_vec()), &source, mode, |a| {
            alerts.push((a.rule_id, a.record_index))
        });
        assert!(outcome.fault.is_none(), "unreadable: {:?}", outcome.fault);
        let skipped = outcome.unreadable.iter().map(ToString::to_string).collect();
        (alerts, skipped, outcome.stats)
    };
    let (inline, threaded, all) = (run(Mode::Inline), run(Mode::Threaded), run(Mode::Reference));
    assert_eq!(inline, threaded, "one thread and three disagree");
    (threaded, all)
}

fn failed_job() -> Value {
    let mut r = json_fixture("docs/BackupJobCompleted.json")["record"].clone();
    r["serviceEventDetails"]["state"] = json!("FAILED");
    r
}

/// Records that a raw-bytes reading could get wrong, each written out by hand.
fn tricky() -> Vec<Vec<u8>> {
    let job = failed_job().to_string();
    let body = job
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .expect("an object")
        .to_owned();
    let no_name = {
        let mut r = failed_job();
        r.as_object_mut().expect("object").remove("eventName");
        r.to_string()
    };
    let site = json_fixture("docs/SetSiteAddress.json")["record"].to_string();
    vec![
        job.clone(),
        // Escaped key and escaped value: unknown from the raw bytes, so parsed.
        job.replacen("\"eventName\"", "\"event\\u004eame\"", 1),
        job.replacen("\"BackupJobCompleted\"", "\"Backup\\u004aobCompleted\"", 1),
        // The name as an array, a number, null.
        job.replacen("\"BackupJobCompleted\"", "[\"BackupJobCompleted\"]", 1),
        job.replacen("\"BackupJobCompleted\"", "5", 1),
        job.replacen("\"BackupJobCompleted\"", "null", 1),
        // Duplicate keys: the last one wins, as when parsing.
        format!("{{\"eventName\": \"Nothing\", {body}}}"),
        format!("{{{body}, \"eventName\": \"Nothing\"}}"),
        // The key name as a value, and the name only deeper down.
        format!("{{\"note\": \"eventName\", \"x\": {{\"eventName\": \"BackupJobCompleted\"}}, \"eventSource\": \"backup.amazonaws.com\"}}"),
        format!("{{\"requestParameters\": {no_name}, \"eventName\" : \n \"BackupJobCompleted\" ,\"eventSource\":\"backup.amazonaws.com\",\"serviceEventDetails\":{{\"state\":\"EXPIRED\"}}}}"),
        no_name,
        site.clone(),
        site.replacen("\"outposts.amazonaws.com\"", "\"outposts.amazonaws.com\\u0000\"", 1),
        // Broken records.
        "\"a string\"".into(),
        "[1, 2]".into(),
        "42".into(),
        "{\"eventName\": }".into(),
        "{\"eventName\": \"X\" \"y\": 1}".into(),
        "{\"eventName\": \"\\uZZZZ\"}".into(),
        "{\"k\": [1, 2,]}".into(),
        // Nested past serde_json's recursion limit: building refuses it, so must the fast path.
        format!("{{\"a\": {}{}}}", "[".repeat(200), "]".repeat(200)),
        format!("{{\"a\": {}{}}}", "[".repeat(120), "]".repeat(120)),
    ]
    .into_iter()
    .map(String::into_bytes)
    .chain([
        // Not UTF-8 (an ISO-8859-1 'é'): building the record refuses it, so must checking.
        b"{\"eventName\": \"Caf\xe9\"}".to_vec(),
    ])
    .enumerate()
    // Each variant its own event: an eventID repeated within an object alerts once.
    .map(|(i, r)| {
        let text = String::from_utf8_lossy(&r).into_owned();
        if text.contains(EVENT_ID) {
            text.replace(EVENT_ID, &format!("{EVENT_ID}-{i}")).into_bytes()
        } else {
            r
        }
    })
    .collect()
}

/// The eventID of the documented BackupJobCompleted record.
const EVENT_ID: &str = "2e7e4fcf-0c52-467f-9fd0-f61c2fcf7d17";

fn delivery(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"{\"Records\": [".to_vec();
    out.extend(records.join(&b",\n"[..]));
    out.extend(b"]}");
    out
}

#[test]
fn tricky_records_give_the_same_alerts_and_skips() {
    let rules = RuleSet::load(&[RuleSource::Builtin]).expect("builtin");
    let doc = delivery(&tricky());
    let (fast, all) = both(&rules, &doc);
    assert_eq!(fast, all);
    assert!(fast.0.len() >= 5, "{:?}", fast.0);
    assert_eq!(fast.1.len(), 9, "{:?}", fast.1);
    assert!(
        fast.1[7].contains("recursion limit exceeded"),
        "{}",
        fast.1[7]
    );
    assert!(
        fast.1[8].contains("invalid unicode code point"),
        "{}",
        fast.1[8]
    );
    let (fast, all) = both(&rules, &gzip(&doc));
    assert_eq!(fast, all);
}

/// The newest `eventTime` is read from the peek for records that are not built, and must be
/// what building would read: each shape alone in a log, an unwanted record (GetObject) and a
/// wanted one (a failed backup), against the path that builds every record.
#[test]
fn event_times_of_records_not_built_are_those_of_built_ones() {
    let rules = RuleSet::load(&[RuleSource::Builtin]).expect("builtin");
    let t = "2024-02-29T23:59:59Z";
    let at = 1_709_251_199;
    let unwanted =
        |time: &str| format!("{{\"eventName\": \"GetObject\", \"eventTime\": {time}, \"z\": 1}}");
    let cases: Vec<(String, Option<i64>)> = vec![
        (unwanted(&format!("\"{t}\"")), Some(at)),
        (unwanted(&format!(" \n \"{t}\"")), Some(at)),
        (unwanted("\"2024-02-29T23:59:59.123Z\""), Some(at)),
        // Escaped: only building can read it.
        (unwanted("\"2024-02-29T23:59:5\\u0039Z\""), Some(at)),
        // In an array, a number, null, an object, not a time: no eventTime.
        (unwanted(&format!("[\"{t}\"]")), None),
        (unwanted(&format!("[1, \"{t}\"]")), None),
        (unwanted("1709251199"), None),
        (unwanted("null"), None),
        (unwanted(&format!("{{\"eventTime\": \"{t}\"}}")), None),
        (unwanted("\"yesterday\""), None),
        // Twice: the last one, as when parsing.
        (format!("{{\"eventTime\": \"2001-01-01T00:00:00Z\", \"eventName\": \"GetObject\", \"eventTime\": \"{t}\"}}"), Some(at)),
        // Only deeper down.
        (format!("{{\"eventName\": \"GetObject\", \"x\": {{\"eventTime\": \"{t}\"}}}}"), None),
        // A record that is built.
        ({
            let mut r = failed_job();
            r["eventTime"] = json!(t);
            r.to_string()
        }, Some(at)),
    ];
    for (record, expected) in cases {
        let doc = delivery(&[record.clone().into_bytes()]);
        let (fast, all) = both(&rules, &doc);
        assert_eq!(fast, all, "{record}");
        assert_eq!(fast.2.newest_event, expected, "{record}");
    }
    // Several records: the newest wins, whichever were built.
    let older = failed_job().to_string();
    let doc = delivery(&[
        older.into_bytes(),
        unwanted(&format!("\"{t}\"")).into_bytes(),
    ]);
    let (fast, all) = both(&rules, &doc);
    assert_eq!(fast, all);
    assert_eq!(fast.2.newest_event, Some(at));
    // Without event times: the same alerts and counts, no newest eventTime.
    let mut alerts = Vec::new();
    let outcome = Pipeline::new(&rules, Limits::default())
        .without_event_times()
        .run(
            std::io::Cursor::new(doc),
            &AlertSource::File { path: "t".into() },
            Mode::Threaded,
            |a| alerts.push((a.rule_id, a.record_index)),
        );
    assert_eq!(alerts, fast.0);
    assert_eq!(
        outcome.stats,
        ReadCounts {
            newest_event: None,
            ..fast.2
        }
    );
}

/// Regression: checking a record without building it (serde's `IgnoredAny`) let pass what
/// building refuses — a number out of range (`1e400`, or 400 digits) and half a surrogate pair
/// (`\ud800`) — so a record no rule wanted was counted as read where the reference reported it
/// unreadable. The splitter now sends such records to be built.
#[test]
fn numbers_out_of_range_and_lone_surrogates_are_refused_by_both_paths() {
    let rules = RuleSet::load(&[RuleSource::Builtin]).expect("builtin");
    let long = format!("{{\"z\": 1{}}}", "0".repeat(400));
    let records: Vec<Vec<u8>> = [
        r#"{"z": 1e400}"#,
        r#"{"z": -1.5E+999, "eventName": "GetObject"}"#,
        long.as_str(),
        r#"{"z": "\ud800"}"#,
        r#"{"z": "\udc00\ud800x"}"#,
        r#"{"z": 1e300, "ok": "\ud83d\ude00"}"#,
        r#"{"eventName": "GetObject"}"#,
    ]
    .iter()
    .map(|r| r.as_bytes().to_vec())
    .collect();
    let doc = delivery(&records);
    let (fast, all) = both(&rules, &doc);
    assert_eq!(fast, all);
    assert_eq!(fast.1.len(), 5, "{:?}", fast.1);
    assert!(fast.1[0].contains("number out of range"), "{}", fast.1[0]);
    assert_eq!(fast.2.records, 2);
}

/// Regression (found by the bad-input catalogue, fixed in fe01aca): a record nested past
/// serde_json's recursion limit was accepted by the fast path's check, though building it
/// fails; the two paths reported different skips.
#[test]
fn records_nested_past_the_parsers_limit_are_refused_by_both_paths() {
    let rules = RuleSet::load(&[RuleSource::Builtin]).expect("builtin");
    let deep = format!("{{\"a\": {}{}}}", "[".repeat(200), "]".repeat(200)).into_bytes();
    let doc = delivery(&[deep, b"{\"b\": 1}".to_vec()]);
    let (fast, all) = both(&rules, &doc);
    assert_eq!(fast, all);
    assert_eq!(fast.1.len(), 1, "{:?}", fast.1);
    assert!(fast.1[0].starts_with("record 0 "), "{}", fast.1[0]);
    assert!(
        fast.1[0].contains("recursion limit exceeded"),
        "{}",
        fast.1[0]
    );
    assert_eq!(fast.2.records, 1);
}

#[test]
fn real_files_and_many_rules_give_the_same_alerts() {
    let mut records: Vec<Vec<u8>> = Vec::new();
    for entry in std::fs::read_dir(fixture("real/invictus")).expect("dir") {
        let doc: Value = serde_json::from_str(
            &std::fs::read_to_string(entry.expect("entry").path()).expect("read"),
        )
        .expect("json");
        records.extend(
            doc["Records"]
                .as_array()
                .expect("records")
                .iter()
                .map(|r| r.to_string().into_bytes()),
        );
    }
    records.extend(tricky());
    let doc = gzip(&delivery(&records));
    let builtin = RuleSet::load(&[RuleSource::Builtin]).expect("builtin");
    let (fast, all) = both(&builtin, &doc);
    assert_eq!(fast, all);
    // A thousand rules, some on eventNames the real files hold, one evaluated on every record.
    let mut yaml = String::from("rules:\n");
    for (i, name) in [
        "ListBuckets",
        "GetObject",
        "DescribeInstances",
        "AssumeRole",
        "ConsoleLogin",
    ]
    .iter()
    .cycle()
    .take(990)
    .enumerate()
    {
        yaml.push_str(&format!(
            "  - id: r{i}\n    description: d\n    severity: low\n    pattern: {{eventName: [{name}{}], userIdentity: {{type: [{{anything-but: Root}}]}}}}\n",
            if i % 2 == 0 { "" } else { "X" }
        ));
    }
    yaml.push_str("  - id: any-error\n    description: d\n    severity: low\n    pattern: {errorCode: [{exists: true}]}\n");
    let mut rules = builtin.rules().to_vec();
    rules.extend(parse_document("gen.yaml", &yaml).expect("generated rules"));
    let many = RuleSet::new(rules).expect("set");
    let (fast, all) = both(&many, &doc);
    assert_eq!(fast, all);
    assert!(fast.0.len() > 50, "{}", fast.0.len());
}

/// Rules of every shape the index files differently — nested fields, prefixes, suffixes,
/// wildcards, ignore-case forms, `$or`, the envelope form, numbers, CIDR, `anything-but`,
/// `exists` both ways, arrays of objects — give exactly the alerts of building every record,
/// on the real files and the tricky records; and most of them fire, so the comparison is not
/// empty.
#[test]
fn rules_of_every_shape_give_the_same_alerts_as_building_every_record() {
    let mut records: Vec<Vec<u8>> = Vec::new();
    for dir in ["invictus", "stratus"] {
        for entry in std::fs::read_dir(fixture(&format!("real/{dir}"))).expect("dir") {
            let doc: Value = serde_json::from_str(
                &std::fs::read_to_string(entry.expect("entry").path()).expect("read"),
            )
            .expect("json");
            let list = doc.get("Records").unwrap_or(&doc);
            records.extend(
                list.as_array()
                    .expect("records")
                    .iter()
                    .map(|r| r.to_string().into_bytes()),
            );
        }
    }
    records.extend(tricky());
    let doc = gzip(&delivery(&records));
    let shapes = [
        "{userIdentity: {type: [IAMUser]}, eventSource: [s3.amazonaws.com]}",
        "{userIdentity: {type: [Root]}}",
        "{userAgent: [{prefix: '[S3Console'}]}",
        "{userAgent: [{prefix: {equals-ignore-case: 'apn/1.0'}}]}",
        "{eventName: [{suffix: Bucket}]}",
        "{eventName: [{suffix: {equals-ignore-case: PARAMETER}}]}",
        "{eventName: [{wildcard: 'Get*Policy'}]}",
        "{eventName: [{wildcard: '*Acl'}]}",
        "{eventName: [{equals-ignore-case: decrypt}]}",
        "{requestParameters: {bucketName: [{prefix: ''}]}}",
        "{$or: [{requestParameters: {bucketName: [{exists: true}]}}, {errorCode: [AccessDenied]}]}",
        "{source: [aws.kms], detail-type: [AWS API Call via CloudTrail]}",
        "{detail: {eventName: [GenerateDataKey]}, region: [{prefix: us-}]}",
        "{eventSource: [{anything-but: [s3.amazonaws.com, kms.amazonaws.com]}], readOnly: [true]}",
        "{sourceIPAddress: [{cidr: 0.0.0.0/0}], eventName: [{prefix: List}]}",
        "{eventVersion: [{numeric: ['>=', 1.08]}], eventName: [{prefix: Describe}]}",
        "{resources: {ARN: [{prefix: 'arn:aws:kms'}]}}",
        "{resources: {type: [AWS::KMS::Key], ARN: [{suffix: x}]}}",
        "{errorCode: [{exists: false}], eventName: [PutObject]}",
        "{tlsDetails: {tlsVersion: [TLSv1.2]}, requestParameters: {encryptionContext: [{exists: true}]}}",
        "{additionalEventData: {SignatureVersion: [SigV4]}, eventName: [{anything-but: {prefix: Get}}]}",
    ];
    let mut yaml = String::from("rules:\n");
    for (i, shape) in shapes.iter().enumerate() {
        yaml.push_str(&format!(
            "  - id: shape-{i}\n    description: d\n    severity: low\n    pattern: {shape}\n"
        ));
    }
    let mut rules = RuleSet::load(&[RuleSource::Builtin])
        .expect("builtin")
        .rules()
        .to_vec();
    rules.extend(parse_document("shapes.yaml", &yaml).expect("shape rules"));
    let set = RuleSet::new(rules).expect("set");
    let (fast, all) = both(&set, &doc);
    assert_eq!(fast, all);
    let fired: std::collections::BTreeSet<&str> =
        fast.0.iter().map(|(rule, _)| rule.as_str()).collect();
    assert!(
        fired.len() >= 15,
        "only {} rules fired: {fired:?}",
        fired.len()
    );
}

/// The benchmark corpus (20,000 records), built by the project's own generator
/// (`scripts/bench/make-corpus.py`, the same bytes as the team's shared one) from the real
/// invictus records in `benches/data`.
#[test]
fn the_benchmark_corpus_gives_the_same_alerts() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("corpus.json.gz");
    let status = Command::new("python3")
        .arg(root().join("scripts/bench/make-corpus.py"))
        .arg(&out)
        .args(["--records", "20000"])
        .status()
        .expect("python3");
    assert!(status.success(), "scripts/bench/make-corpus.py failed");
    let bytes = std::fs::read(&out).expect("corpus");
    let rules = RuleSet::load(&[RuleSource::Builtin]).expect("builtin");
    let (fast, all) = both(&rules, &bytes);
    assert_eq!(fast.2.records, 20_000);
    assert!(!fast.0.is_empty());
    assert_eq!(fast, all);
}
