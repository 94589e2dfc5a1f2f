//! Black-box tests of the `trail-alerts` binary: good files give the expected `jsonl`, every
//! bad-input class gives exit status 1 and a message that names the file (and record index).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{json, Value};

use crate::util::{gzip, ALL_RULES};

fn cmd() -> Command {
    crate::util::trail_alerts()
}

fn trails() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events/trails")
}

fn jsonl(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// A failed job service event in the documented shape.
fn failed_job() -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/docs/BackupJobCompleted.json"),
    )
    .expect("fixture");
    let mut record = serde_json::from_str::<Value>(&text).expect("json")["record"].clone();
    record["serviceEventDetails"]["state"] = json!("EXPIRED");
    record
}

#[test]
fn scan_jsonl_of_the_sample_trails() {
    let out = cmd()
        .args(["scan", "--format", "jsonl"])
        .arg(trails())
        .assert()
        .success();
    let lines = jsonl(&out.get_output().stdout);
    let mut rules: Vec<&str> = lines
        .iter()
        .map(|l| l["rule"].as_str().expect("rule"))
        .collect();
    rules.sort();
    assert_eq!(rules, ALL_RULES);
    for l in &lines {
        for key in [
            "rule",
            "severity",
            "eventID",
            "eventName",
            "eventSource",
            "eventTime",
            "account",
            "region",
            "subject",
            "file",
            "record",
        ] {
            assert!(
                l.get(key).is_some_and(|v| !v.is_null()),
                "{key} missing in {l}"
            );
        }
        assert!(l["subject"].as_str().expect("subject").len() <= 99);
    }
    let job = lines
        .iter()
        .find(|l| l["rule"] == "backup-job-failed")
        .expect("job alert");
    assert_eq!(job["severity"], "high");
    assert_eq!(job["eventID"], "5c1a3e0b-0f7a-4e38-9a55-0d6c3b6f7a01");
    assert_eq!(job["record"], 4);
    assert!(job["file"]
        .as_str()
        .expect("file")
        .ends_with("_BackupSamples0001.json.gz"));
    assert_eq!(
        job["subject"],
        "[HIGH] backup-job-failed: BackupJobCompleted FAILED in 123456789012/us-east-1"
    );
    let org = lines
        .iter()
        .find(|l| l["rule"] == "backup-org-plan-changed")
        .expect("org alert");
    assert!(org["file"]
        .as_str()
        .expect("file")
        .contains("/o-exampleorgid/"));
    assert!(out.get_output().stderr.is_empty());
}

#[test]
fn scan_text_has_aligned_lines_and_a_summary() {
    let out = cmd().arg("scan").arg(trails()).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    // 8 alerts, the summary line, and the alerts per rule (7 rules alerted).
    assert_eq!(lines.len(), 16, "{text}");
    assert!(
        lines[8].starts_with("3 files, 12 records (0 skipped), 8 alerts; 1 recovery in "),
        "{}",
        lines[8]
    );
    assert_eq!(lines[9], "  backup-copy-job-failed   1");
    assert_eq!(lines[12], "  backup-org-plan-changed  2");
    let column = |l: &str| l.find("20").expect("time column");
    assert!(
        lines[..8].iter().all(|l| column(l) == column(lines[0])),
        "{text}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("HIGH      backup-job-failed ")));
}

#[test]
fn stdin_and_files_of_any_name_are_read_gzip_or_plain() {
    let doc = serde_json::to_vec(&json!({"Records": [failed_job()]})).expect("json");
    let out = cmd()
        .args(["scan", "--format", "jsonl", "-"])
        .write_stdin(gzip(&doc))
        .assert()
        .success();
    let lines = jsonl(&out.get_output().stdout);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["file"], "-");
    assert_eq!(
        lines[0]["subject"],
        "[HIGH] backup-job-failed: BackupJobCompleted EXPIRED in 123456789012/us-east-1"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let odd = dir.path().join("not-a-log-name.txt");
    std::fs::write(&odd, &doc).expect("write");
    let out = cmd()
        .args(["scan", "--format", "jsonl"])
        .arg(&odd)
        .assert()
        .success();
    assert_eq!(jsonl(&out.get_output().stdout).len(), 1);
}

#[test]
fn directories_pass_over_digests_and_other_objects() {
    let dir = tempfile::tempdir().expect("tmp");
    let day = dir
        .path()
        .join("AWSLogs/123456789012/CloudTrail/us-east-1/2024/01/01");
    let digest_day = dir
        .path()
        .join("AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/01/01");
    std::fs::create_dir_all(&day).expect("mkdir");
    std::fs::create_dir_all(&digest_day).expect("mkdir");
    let doc = serde_json::to_vec(&json!({"Records": [failed_job()]})).expect("json");
    std::fs::write(
        day.join("123456789012_CloudTrail_us-east-1_20240101T0000Z_abc.json.gz"),
        gzip(&doc),
    )
    .expect("write");
    std::fs::write(
        digest_day.join(
            "123456789012_CloudTrail-Digest_us-east-1_trail_us-east-1_20240101T000000Z.json.gz",
        ),
        gzip(br#"{"digestStartTime":"x","logFiles":[]}"#),
    )
    .expect("write");
    std::fs::write(dir.path().join("README.txt"), "not a log").expect("write");
    let out = cmd().arg("scan").arg(dir.path()).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains("1 file, 1 record (0 skipped), 1 alert in "),
        "{text}"
    );
    assert!(text.contains("; 2 non-log files passed over"), "{text}");
}

/// Many files are read at once, one per core, yet the output is what reading them in turn
/// gives: the same alerts in the same order, every fault reported in file order, the same
/// summary counts.
#[test]
fn many_files_at_once_give_what_reading_them_in_turn_gives() {
    let dir = tempfile::tempdir().expect("tmp");
    let day = dir
        .path()
        .join("AWSLogs/123456789012/CloudTrail/us-east-1/2024/01/01");
    std::fs::create_dir_all(&day).expect("mkdir");
    let mut names = Vec::new();
    for i in 0..40 {
        let mut records: Vec<Value> = (0..(i % 7))
            .map(|j| {
                let mut r = failed_job();
                r["eventID"] = json!(format!("e-{i}-{j}"));
                r
            })
            .collect();
        if i % 9 == 4 {
            records.push(json!("not a record"));
        }
        let bytes = serde_json::to_vec(&json!({"Records": records})).expect("json");
        let name = day.join(format!(
            "123456789012_CloudTrail_us-east-1_20240101T00{i:02}Z_f{i:02}.json.gz"
        ));
        let bytes = if i == 13 {
            b"{\"Records\": [".to_vec()
        } else {
            gzip(&bytes)
        };
        std::fs::write(&name, bytes).expect("write");
        names.push(name);
    }
    // Reading is compared here, so every match is shown: dedup across files (the built-in
    // pack's backup-job-failed holds repeats of one resource back) is tested in alerting.rs.
    let together = cmd()
        .args(["scan", "--format", "jsonl", "--no-dedup"])
        .arg(dir.path())
        .assert()
        .failure();
    let together = together.get_output();
    let (mut stdout, mut stderr) = (Vec::new(), String::new());
    for name in &names {
        let one = cmd()
            .args(["scan", "--format", "jsonl", "--no-dedup"])
            .arg(name)
            .output()
            .expect("run");
        stdout.extend(one.stdout);
        stderr.push_str(&String::from_utf8_lossy(&one.stderr));
    }
    assert_eq!(jsonl(&together.stdout), jsonl(&stdout));
    assert_eq!(
        jsonl(&together.stdout).len(),
        (0..40).map(|i| i % 7).sum::<usize>() - 6
    );
    assert_eq!(String::from_utf8_lossy(&together.stderr), stderr);
    let text = cmd()
        .args(["scan", "--no-dedup"])
        .arg(dir.path())
        .assert()
        .failure();
    let summary = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
    assert!(
        summary.contains("40 files (1 failed), 109 records (3 skipped), 109 alerts in "),
        "{summary}"
    );
    // With the pack's dedup (one alert per resource an hour), the same scan: one alert, the
    // other 108 matches held back and told in one roll-up; and the same read in parallel or
    // in turn (one core).
    let text = cmd().arg("scan").arg(dir.path()).assert().failure();
    let summary = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
    assert!(
        summary.contains(
            "40 files (1 failed), 109 records (3 skipped), 1 alert from 109 matches (108 held \
             back by dedup or threshold, 0 suppressed; 1 roll-up)"
        ),
        "{summary}"
    );
}

/// Every bad-input class: exit 1, the file named on standard error with what was wrong.
#[test]
fn bad_inputs_exit_1_and_name_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = serde_json::to_vec(&json!({"Records": [failed_job()]})).expect("json");
    let mut truncated = gzip(&good);
    truncated.truncate(truncated.len() / 2);
    let bomb = {
        let doc = format!(
            r#"{{"Records":[{}]}}"#,
            vec![r#"{"eventName":"x"}"#; 100_000].join(",")
        );
        gzip(doc.as_bytes())
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.json.gz",
            truncated,
            "gzip data is corrupt or truncated",
        ),
        (
            "binary.bin",
            vec![0u8, 159, 146, 150, 7, 7],
            "expected a JSON object",
        ),
        (
            "invalid.json",
            b"{\"Records\": [ {\"a\": 1} oops".to_vec(),
            "',' or ']' between records",
        ),
        (
            "norecords.json",
            br#"{"foo": []}"#.to_vec(),
            "no \"Records\" array",
        ),
        (
            "notarray.json",
            br#"{"Records": "x"}"#.to_vec(),
            "\"Records\" at byte 12 is a string \"x\", not an array",
        ),
        ("empty.json.gz", Vec::new(), "the file is empty"),
        (
            "digest.json.gz",
            gzip(br#"{"digestStartTime":"x","digestPublicKeyFingerprint":"y","logFiles":[]}"#),
            "CloudTrail digest file",
        ),
        ("bomb.json.gz", bomb, "MAX_DECOMPRESSED_BYTES"),
    ];
    for (name, bytes, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).expect("write");
        let out = cmd()
            .env("MAX_DECOMPRESSED_BYTES", "1MiB")
            .args(["scan", "--format", "jsonl"])
            .arg(&path)
            .assert()
            .code(1);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains(&path.display().to_string()),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(want), "{name}: wanted {want:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let missing = dir.path().join("missing.json.gz");
    let out = cmd().arg("scan").arg(&missing).assert().code(1);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("missing.json.gz"));
}

#[test]
fn bad_records_are_reported_with_their_index_and_the_rest_still_alert() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("mixed.json");
    let doc = format!(
        r#"{{"Records":[{}, "not an object", {{"broken": }}, {}]}}"#,
        failed_job(),
        {
            let mut other = failed_job();
            other["eventID"] = json!("another-event");
            other
        }
    );
    std::fs::write(&path, doc).expect("write");
    let out = cmd()
        .args(["scan", "--format", "jsonl", "--no-dedup"])
        .arg(&path)
        .assert()
        .code(1);
    let lines = jsonl(&out.get_output().stdout);
    assert_eq!(
        lines
            .iter()
            .map(|l| l["record"].as_u64().expect("index"))
            .collect::<Vec<_>>(),
        [0, 3]
    );
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("{}: record 1 (byte ", path.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("not a JSON object but a string"),
        "{stderr}"
    );
    assert!(stderr.contains("record 2 (byte "), "{stderr}");
    assert!(stderr.contains("invalid JSON"), "{stderr}");
}

#[test]
fn invalid_rules_exit_1_naming_file_rule_and_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let rules = dir.path().join("mine.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: mine\n    description: d\n    severity: high\n    pattern:\n      detail:\n        state: [{numeric: [\">\"]}]\n",
    )
    .expect("write");
    for args in [vec!["rules", "test"], vec!["rules", "list"], vec!["scan"]] {
        let mut c = cmd();
        c.args(&args).arg("--rules").arg(&rules);
        if args == ["scan"] {
            c.arg(trails());
        }
        let out = c.assert().code(1);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains(&format!(
                "{}: rule \"mine\" at $.rules[0].pattern.detail.state[0].numeric: \"numeric\" takes one or two",
                rules.display()
            )),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn duplicate_ids_across_sources_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let rules = dir.path().join("dup.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: backup-job-failed\n    description: d\n    severity: high\n    pattern: {eventName: [X]}\n",
    )
    .expect("write");
    let out = cmd()
        .args(["rules", "list", "--rules", "builtin", "--rules"])
        .arg(&rules)
        .assert()
        .code(1);
    assert!(String::from_utf8_lossy(&out.get_output().stderr)
        .contains("rule id \"backup-job-failed\" is already defined in builtin:rules/backup.yaml"));
}

#[test]
fn rules_test_runs_every_embedded_test() {
    let out = cmd().args(["rules", "test"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().filter(|l| l.starts_with("ok    ")).count() >= 98,
        "{text}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("FAIL")), "{text}");
    assert!(
        lines.last().expect("summary").starts_with("38 rules, "),
        "{text}"
    );

    let dir = tempfile::tempdir().expect("tmp");
    let rules = dir.path().join("failing.yaml");
    std::fs::write(
        &rules,
        r#"rules:
  - id: wrong
    description: d
    severity: low
    pattern: {eventName: [X], requestParameters: {force: [true]}, errorCode: [{exists: false}]}
    tests:
      - name: should fire
        expect: true
        record: {eventName: Y}
      - name: field absent
        expect: true
        record: {eventName: X}
      - name: a string met a boolean
        expect: true
        record: {eventName: X, requestParameters: {force: "true"}}
      - name: should stay quiet
        expect: false
        record: {eventName: X, requestParameters: {force: true}}
"#,
    )
    .expect("write");
    let out = cmd()
        .args(["rules", "test", "--rules"])
        .arg(&rules)
        .assert()
        .code(1);
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    // Each failure says where the record parted from the pattern, and how.
    for want in [
        "FAIL  wrong: should fire\n      expected the rule to fire; it did not: eventName: wanted \"X\"; found \"Y\"",
        "FAIL  wrong: field absent\n      expected the rule to fire; it did not: requestParameters.force: wanted true; found the field is absent",
        "FAIL  wrong: a string met a boolean\n      expected the rule to fire; it did not: requestParameters.force: wanted true; found \"true\" (a string, where the pattern compares booleans)",
        "FAIL  wrong: should stay quiet\n      expected the rule to stay quiet; it fired on eventName = \"X\", requestParameters.force = true, errorCode absent",
        "1 rule, 4 tests: 0 passed, 4 failed",
    ] {
        assert!(text.contains(want), "{want}\n---\n{text}");
    }
}

#[test]
fn rules_list_shows_id_severity_enabled_description() {
    let out = cmd().args(["rules", "list"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 39, "{text}");
    assert!(lines[0].starts_with("ID "));
    assert!(lines.iter().any(|l| l.starts_with("backup-job-completed ")
        && l.contains(" info ")
        && l.contains(" no ")));
    assert!(lines.iter().any(|l| l.starts_with("outposts-change ")
        && l.contains(" medium ")
        && l.contains(" yes ")));
}

/// A bad rule set fails the function's cold start, before the runtime loop, with the rule named.
#[cfg(feature = "lambda")]
#[test]
fn the_function_refuses_to_start_on_bad_rules_or_configuration() {
    let dir = tempfile::tempdir().expect("tmp");
    let rules = dir.path().join("bad.yaml");
    std::fs::write(&rules, "rules:\n  - id: bad\n    description: d\n    severity: severe\n    pattern: {eventName: [X]}\n").expect("write");
    let lambda = || {
        let mut c = Command::cargo_bin("trail-alerts-lambda").expect("binary");
        c.env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1")
            .env(
                "ALERT_TOPIC_ARN",
                "arn:aws:sns:us-east-1:123456789012:alerts",
            )
            .timeout(std::time::Duration::from_secs(20));
        c
    };
    let out = lambda().env("RULES", &rules).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!(
            "rules: {}: rule \"bad\" at $.rules[0].severity: \"severe\" is not one of",
            rules.display()
        )),
        "{stderr}"
    );
    let out = lambda().env("ALERT_FORMAT", "xml").assert().failure();
    assert!(String::from_utf8_lossy(&out.get_output().stderr)
        .contains("configuration: ALERT_FORMAT=\"xml\""));
    let out = lambda().env_remove("ALERT_TOPIC_ARN").assert().failure();
    assert!(String::from_utf8_lossy(&out.get_output().stderr)
        .contains("rule \"backup-job-failed\" has no topic and ALERT_TOPIC_ARN is not set"));
}

/// `scan` names the accounts the rule files name (`accounts:`, here a document of its own),
/// and says who did it; `--rule` keeps the rule files' suppressions and accounts.
#[test]
fn scan_names_the_accounts_the_rule_files_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let accounts = dir.path().join("accounts.yaml");
    std::fs::write(
        &accounts,
        "accounts:\n  \"123456789012\": {name: backup-demo, ou: Root/Prod/Backup, tags: {team: storage}}\n",
    )
    .expect("write");
    let out = cmd()
        .args(["scan", "--format", "jsonl", "--rules", "builtin", "--rules"])
        .arg(&accounts)
        .arg(trails())
        .assert()
        .success();
    let lines = jsonl(&out.get_output().stdout);
    let named: Vec<&Value> = lines
        .iter()
        .filter(|l| l["account"] == "123456789012")
        .collect();
    assert!(!named.is_empty());
    for l in &named {
        assert_eq!(l["accountName"], "backup-demo", "{l}");
        assert!(
            l["subject"]
                .as_str()
                .unwrap()
                .contains(": backup-demo (123456789012) "),
            "{l}"
        );
    }
    assert!(lines
        .iter()
        .filter(|l| l["account"] != "123456789012")
        .all(|l| l["accountName"].is_null()));
    assert!(named.iter().any(|l| l["actor"].is_string()));

    // --rule keeps what the files say besides rules: a suppression still silences.
    let suppress = dir.path().join("quiet.yaml");
    std::fs::write(
        &suppress,
        "suppressions:\n  - id: demo-account\n    rules: [backup-job-failed]\n    pattern: {recipientAccountId: [\"123456789012\"]}\n    reason: a demo account\n    owner: storage\n    expires: 2099-01-01\nrules: []\n",
    )
    .expect("write");
    let out = cmd()
        .args([
            "scan",
            "--format",
            "jsonl",
            "--rule",
            "backup-job-failed",
            "--rules",
            "builtin",
            "--rules",
        ])
        .arg(&suppress)
        .arg(trails())
        .assert()
        .success();
    let lines = jsonl(&out.get_output().stdout);
    assert!(
        lines.iter().all(|l| l["account"] != "123456789012"),
        "{lines:?}"
    );
}

/// `routes:` in a rule file: `routes test` says where an alert would go and which routes
/// decided; `rules test` runs the files' `route_tests:` with the rules' own tests.
#[test]
fn routes_are_tested_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        r#"accounts:
  "481726354019": {name: payments-prod, ou: Root/Prod/Payments, tags: {team: payments}}
routes:
  - match: {ous: ["Root/Prod/Payments*"], severities: [high, critical]}
    to: {topics: ["arn:aws:sns:eu-west-1:111122223333:payments-oncall"],
         chat_topics: ["arn:aws:sns:eu-west-1:111122223333:payments-chat"]}
    continue: true
  - match: {account_tags: {team: [payments]}}
    to: {topics: ["arn:aws:sns:eu-west-1:111122223333:payments-all"], pagerduty: [ssm:/pd/payments]}
route_tests:
  - name: payments' failed backups reach the on-call and the team
    account: "481726354019"
    rule: backup-job-failed
    expect: {topics: ["arn:aws:sns:eu-west-1:111122223333:payments-oncall", "arn:aws:sns:eu-west-1:111122223333:payments-all"],
             chat_topics: ["arn:aws:sns:eu-west-1:111122223333:payments-chat"], pagerduty: [ssm:/pd/payments]}
  - name: other accounts take the default route
    account: "210987654321"
    rule: backup-job-failed
    expect: default
"#,
    )
    .expect("write");
    let out = cmd()
        .args(["routes", "test", "--rules", "builtin", "--rules"])
        .arg(&routes)
        .args(["--account", "481726354019", "--rule", "backup-job-failed"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains("topic       arn:aws:sns:eu-west-1:111122223333:payments-oncall"),
        "{text}"
    );
    assert!(
        text.contains("chat topic  arn:aws:sns:eu-west-1:111122223333:payments-chat"),
        "{text}"
    );
    assert!(text.contains("pagerduty   ssm:/pd/payments"), "{text}");
    assert!(text.contains("decided by  "), "{text}");
    assert!(text.contains("routes.yaml $.routes[0], then "), "{text}");
    // A medium alert skips the first route; another account takes the default route.
    let out = cmd()
        .args(["routes", "test", "--rules", "builtin", "--rules"])
        .arg(&routes)
        .args([
            "--account",
            "481726354019",
            "--rule",
            "backup-job-failed",
            "--severity",
            "medium",
        ])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        !text.contains("payments-oncall") && text.contains("payments-all"),
        "{text}"
    );
    let out = cmd()
        .args(["routes", "test", "--rules", "builtin", "--rules"])
        .arg(&routes)
        .args([
            "--account",
            "210987654321",
            "--rule",
            "backup-job-failed",
            "--ou",
            "Root/Sandbox",
        ])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.starts_with("default route"), "{text}");
    assert!(text.contains("pagerduty   default ("), "{text}");

    let out = cmd()
        .args(["rules", "test", "--rules", "builtin", "--rules"])
        .arg(&routes)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains("ok    route: payments' failed backups reach the on-call and the team"),
        "{text}"
    );
    assert!(
        text.contains("ok    route: other accounts take the default route"),
        "{text}"
    );

    // A route test that does not hold fails, saying where the alert went instead.
    let wrong = std::fs::read_to_string(&routes).unwrap().replace(
        "expect: default",
        "expect: {topics: [\"arn:aws:sns:eu-west-1:111122223333:payments-all\"]}",
    );
    std::fs::write(&routes, wrong).unwrap();
    let out = cmd()
        .args(["rules", "test", "--rules", "builtin", "--rules"])
        .arg(&routes)
        .assert()
        .code(1);
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains("FAIL  route: other accounts take the default route"),
        "{text}"
    );
    assert!(text.contains("went to the default route"), "{text}");
}

/// `overrides:` turn a built-in rule off or change its severity, dedup, runbook or topic; `rules
/// list` shows which override changed a rule; an override naming no rule is refused with its
/// path, like a mistyped `--rule`.
#[test]
fn overrides_tune_built_in_rules() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("team.yaml");
    std::fs::write(
        &file,
        r#"overrides:
  - rule: backup-copy-job-failed
    enabled: false
  - rule: backup-restore-*
    severity: critical
    runbook: "Page the storage on-call: https://wiki.example.com/restore"
"#,
    )
    .expect("write");
    let out = cmd()
        .args(["scan", "--format", "jsonl", "--rules", "builtin", "--rules"])
        .arg(&file)
        .arg(trails())
        .assert()
        .success();
    let lines = jsonl(&out.get_output().stdout);
    assert!(lines.iter().all(|l| l["rule"] != "backup-copy-job-failed"));
    let restore: Vec<&Value> = lines
        .iter()
        .filter(|l| l["rule"] == "backup-restore-failed")
        .collect();
    assert!(!restore.is_empty());
    assert!(restore.iter().all(|l| l["severity"] == "critical"));
    let out = cmd()
        .args(["rules", "list", "--rules", "builtin", "--rules"])
        .arg(&file)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("overridden by "), "{text}");
    assert!(text.contains("team.yaml $.overrides[0]"), "{text}");
    let copy = text
        .lines()
        .find(|l| l.starts_with("backup-copy-job-failed "))
        .expect("listed");
    assert!(copy.contains(" no "), "{copy}");
    std::fs::write(
        &file,
        "overrides:\n  - rule: backup-jobb-failed\n    enabled: false\n",
    )
    .unwrap();
    let out = cmd()
        .args(["rules", "test", "--rules", "builtin", "--rules"])
        .arg(&file)
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("$.overrides[0].rule"), "{err}");
    assert!(
        err.contains("\"backup-jobb-failed\" names no loaded rule"),
        "{err}"
    );
}

/// `rules import sigma` over SigmaHQ's 57 CloudTrail rules: 46 converted exactly, 11 refused
/// with their reasons in the summary and the report; the rule file loads, its derived tests
/// pass, `rules list --tags` shows ATT&CK tags, and a real record of Stratus Red Team's
/// "CloudTrail delete" detonation raises the converted rule with its Sigma id and licence.
#[test]
fn sigma_rules_are_imported_exactly_or_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let (out, report) = (dir.path().join("sigma.yaml"), dir.path().join("report.md"));
    let sigma =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sigma/cloudtrail");
    let run = cmd()
        .args(["rules", "import", "sigma"])
        .arg(&sigma)
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .assert()
        .success();
    let summary = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(
        summary
            .contains("57 rules read, 46 converted exactly, 11 refused, 0 not for AWS CloudTrail"),
        "{summary}"
    );
    assert!(
        summary.contains("9  case-insensitive |contains"),
        "{summary}"
    );
    let listing = std::fs::read_to_string(&report).expect("report");
    assert_eq!(
        listing
            .lines()
            .filter(|l| l.contains("| converted: `sigma-"))
            .count(),
        46
    );
    assert!(
        listing.contains(r"refused: userIdentity.arn\|re: \|re (a regular expression)"),
        "{listing}"
    );
    let tested = cmd()
        .args(["rules", "test", "--rules"])
        .arg(&out)
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&tested.get_output().stdout)
        .contains("46 rules, 48 tests: 48 passed, 0 failed"));
    let listed = cmd()
        .args(["rules", "list", "--tags", "--rules"])
        .arg(&out)
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&listed.get_output().stdout).contains("attack.t1685.002"));
    let scanned = cmd()
        .args(["scan", "--format", "jsonl", "--rules"])
        .arg(&out)
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/real/stratus/aws.defense-evasion.cloudtrail-delete.json"),
        )
        .assert();
    let lines = jsonl(&scanned.get_output().stdout);
    let hit = lines
        .iter()
        .find(|l| l["rule"] == "sigma-aws-cloudtrail-important-change")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(hit["sigmaId"], "4db60cc0-36fb-42b7-9b58-a5b53019fb74");
    assert_eq!(hit["license"], "DRL-1.1");

    // Never a silent zero: no files (a usage error: 2), or nothing converted (1), says so.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("dir");
    let run = cmd()
        .args(["rules", "import", "sigma"])
        .arg(&empty)
        .assert()
        .code(2);
    assert!(
        String::from_utf8_lossy(&run.get_output().stderr).contains("no .yml or .yaml files under")
    );
    let windows = empty.join("w.yml");
    std::fs::write(
        &windows,
        "title: x\nlogsource: {product: windows}\ndetection: {sel: {a: b}, condition: sel}\n",
    )
    .expect("write");
    let run = cmd()
        .args(["rules", "import", "sigma"])
        .arg(&windows)
        .arg("--out")
        .arg(dir.path().join("none.yaml"))
        .assert()
        .code(1);
    let said = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(
        said.contains("no rule was converted") && said.contains("1 not for AWS CloudTrail"),
        "{said}"
    );
    // The file written still loads (it holds no rules).
    cmd()
        .args(["rules", "list", "--rules"])
        .arg(dir.path().join("none.yaml"))
        .assert()
        .success();
}

/// `scan` and `explain` take files of EventBridge events too, matched as the function matches
/// what EventBridge delivers: AWS Backup's own event raises a `backup-event-*` rule, an "AWS
/// API Call via CloudTrail" event its record's rule; an item that is not an event is named by
/// index and byte offset, and the others are still read.
#[test]
fn eventbridge_events_are_scanned_and_explained_locally() {
    let dir = tempfile::tempdir().expect("tmp");
    let backup: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("events/eventbridge-backup-job-failed.json"),
        )
        .expect("event"),
    )
    .expect("json");
    let stop_logging = serde_json::json!({
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.cloudtrail",
        "account": "123456789012", "time": "2024-08-01T02:00:00Z", "region": "us-east-1",
        "resources": [],
        "detail": {"eventVersion": "1.08", "eventSource": "cloudtrail.amazonaws.com",
            "eventName": "StopLogging", "awsRegion": "us-east-1", "eventTime": "2024-08-01T02:00:00Z",
            "eventID": "0c8c8a6f-0000-4000-8000-000000000001", "eventType": "AwsApiCall",
            "recipientAccountId": "123456789012",
            "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/ops/alice"},
            "requestParameters": {"name": "arn:aws:cloudtrail:us-east-1:123456789012:trail/org"}}
    });
    let array = dir.path().join("events.json");
    std::fs::write(
        &array,
        serde_json::json!([backup, stop_logging]).to_string(),
    )
    .expect("write");
    let out = cmd()
        .args(["scan", "--format", "jsonl"])
        .arg(&array)
        .assert()
        .success();
    let rules: Vec<String> = jsonl(&out.get_output().stdout)
        .iter()
        .map(|l| l["rule"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(rules, ["backup-event-job-failed", "trail-logging-stopped"]);

    // One a line, with a line that is not an event: named, the others read, exit 1.
    let lines = dir.path().join("events.jsonl");
    std::fs::write(
        &lines,
        format!("{backup}\n{{\"eventName\": \"x\"}}\n{stop_logging}\n"),
    )
    .expect("write");
    let out = cmd()
        .args(["scan", "--format", "jsonl"])
        .arg(&lines)
        .assert()
        .code(1);
    assert_eq!(jsonl(&out.get_output().stdout).len(), 2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("record 1 (byte "), "{err}");
    assert!(err.contains("not an EventBridge event"), "{err}");

    let out = cmd()
        .args([
            "explain",
            "--rule",
            "backup-event-job-failed",
            "--rule",
            "trail-logging-stopped",
        ])
        .arg(&array)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let (first, second) = text
        .split_once("event 1 (AWS API Call via CloudTrail):")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        first.starts_with("event 0 (Backup Job State Change):"),
        "{text}"
    );
    let line = |part: &str, rule: &str| {
        part.lines()
            .find(|l| l.trim_start().starts_with(rule))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line(first, "backup-event-job-failed").contains("matches: source = \"aws.backup\""),
        "{text}"
    );
    assert!(
        line(second, "trail-logging-stopped").contains("matches: "),
        "{text}"
    );
    assert!(
        line(second, "backup-event-job-failed").contains("no match"),
        "{text}"
    );
}
