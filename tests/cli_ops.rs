//! The command line as an ops engineer meets it (issue "The command line as an ops engineer
//! meets it"): no silent misses, rules that explain themselves, alerts a person can use,
//! output that fits a terminal. Each test pins one of the ways the CLI used to fail its users.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{json, Value};

use crate::util::{fixture, gzip, root, ALL_RULES};

fn cmd() -> Command {
    crate::util::trail_alerts()
}

fn stdout(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

fn stderr(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// Every sample trail file, and its file name alone.
fn sample_logs() -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut dirs = vec![root().join("events/trails")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).expect("dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let name = path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned();
                found.push((path, name));
            }
        }
    }
    found.sort();
    found
}

/// The records of a real file (a `Records` document or a JSON array).
fn real_records(rel: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(fixture(rel)).expect("fixture"))
        .expect("json");
    match doc {
        Value::Array(records) => records,
        mut doc => doc["Records"].take().as_array().cloned().expect("Records"),
    }
}

fn rule_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("rules.yaml");
    std::fs::write(&path, text).expect("write rules");
    path
}

/// `aws s3 cp --recursive s3://…/2019/01/10/ dl/` gives a flat folder of correctly named logs;
/// the scan used to print `0 files … 2 non-log files passed over` and exit 0.
#[test]
fn a_flat_folder_from_aws_s3_cp_is_scanned() {
    let dl = tempfile::tempdir().expect("tmp");
    for (path, name) in sample_logs() {
        std::fs::copy(&path, dl.path().join(name)).expect("copy");
    }
    let out = cmd()
        .args(["scan", "--format", "jsonl"])
        .arg(dl.path())
        .assert()
        .success();
    let mut rules: Vec<String> = jsonl(&stdout(&out))
        .iter()
        .map(|l| l["rule"].as_str().expect("rule").to_owned())
        .collect();
    rules.sort();
    assert_eq!(rules, ALL_RULES);
}

/// A log whose name says nothing is known by its content (gzip or plain); digests, Config
/// files, empty files and anything else are passed over, counted, and listed with --verbose.
#[test]
fn logs_are_known_by_content_and_the_rest_is_passed_over_with_reasons() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (first, _) = &sample_logs()[0];
    std::fs::copy(first, d.join("download.bin")).expect("copy");
    let plain = flate2::read::MultiGzDecoder::new(std::fs::File::open(first).expect("open"));
    let plain: Value = serde_json::from_reader(plain).expect("json");
    std::fs::write(d.join("plain.txt"), plain.to_string()).expect("write");
    std::fs::write(
        d.join("123456789012_CloudTrail-Digest_us-east-1_trail_us-east-1_20240101T000000Z.json.gz"),
        gzip(br#"{"awsAccountId":"123456789012","digestStartTime":"x"}"#),
    )
    .expect("write");
    std::fs::write(
        d.join("digest.json"),
        br#"{"awsAccountId":"1","digestStartTime":"x"}"#,
    )
    .expect("write");
    std::fs::write(
        d.join("config.json.gz"),
        gzip(br#"{"fileVersion":"1.0","configurationItems":[]}"#),
    )
    .expect("write");
    std::fs::write(
        d.join("123456789012_CloudTrail_us-east-1_20240101T0000Z_empty.json.gz"),
        b"",
    )
    .expect("write");
    std::fs::write(d.join("README.md"), b"# notes").expect("write");

    let out = cmd().arg("scan").arg(d).assert().success();
    let text = stdout(&out);
    let summary = text
        .lines()
        .find(|l| l.contains(" files, "))
        .expect("summary");
    assert!(summary.starts_with("2 files, "), "{summary}");
    assert!(
        summary.ends_with("; 5 non-log files passed over"),
        "{summary}"
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    let out = cmd().args(["scan", "--verbose"]).arg(d).assert().success();
    let err = stderr(&out);
    for want in [
        "config.json.gz: an AWS Config file",
        "digest.json: a CloudTrail digest file",
        "_CloudTrail-Digest_us-east-1_trail_us-east-1_20240101T000000Z.json.gz: a CloudTrail digest file (by its name)",
        "_empty.json.gz: empty (0 bytes)",
        "README.md: neither JSON nor gzip (it starts with '#')",
    ] {
        assert!(err.contains(want), "{want}\n---\n{err}");
    }
    assert_eq!(
        err.lines().filter(|l| l.contains("passed over")).count(),
        5,
        "{err}"
    );
}

/// 0 files scanned, exit 0 is the worst answer this tool can give: nothing read is exit 1,
/// with what was passed over.
#[test]
fn nothing_read_is_exit_1_and_says_what_was_passed_over() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("digest.json"), br#"{"awsAccountId":"1"}"#).expect("write");
    std::fs::write(dir.path().join("notes.txt"), b"hello").expect("write");
    let out = cmd().arg("scan").arg(dir.path()).assert().code(1);
    let err = stderr(&out);
    assert!(
        err.contains("no CloudTrail log read: 2 files passed over (1 a CloudTrail digest file, 1 neither JSON nor gzip (it starts with 'h')); --verbose lists them"),
        "{err}"
    );
    let empty = tempfile::tempdir().expect("tmp");
    let out = cmd().arg("scan").arg(empty.path()).assert().code(1);
    assert!(
        stderr(&out).contains("no files to read in"),
        "{}",
        stderr(&out)
    );
}

/// An empty object in a directory is skipped and counted (as the function does); an empty file
/// named on the command line is an error.
#[test]
fn an_empty_file_is_skipped_in_a_directory_and_an_error_when_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let (first, name) = &sample_logs()[0];
    std::fs::copy(first, dir.path().join(name)).expect("copy");
    let empty = dir
        .path()
        .join("123456789012_CloudTrail_us-east-1_20240101T0000Z_e.json.gz");
    std::fs::write(&empty, b"").expect("write");
    let out = cmd().arg("scan").arg(dir.path()).assert().success();
    assert!(
        stdout(&out).contains("; 1 non-log file passed over"),
        "{}",
        stdout(&out)
    );
    let out = cmd().arg("scan").arg(&empty).assert().code(1);
    assert!(
        stderr(&out).contains("the file is empty (0 bytes)"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("1 file (1 failed), "),
        "{}",
        stdout(&out)
    );
}

/// JSON arrays of records, newline-delimited records (CloudTrail Lake / Athena exports),
/// `aws cloudtrail lookup-events` output and single records are read, from files and standard
/// input, with the same per-record error reporting.
#[test]
fn other_shapes_of_records_are_read_with_per_record_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    // A real JSON array (Stratus Red Team detonation log) and the real failed job below.
    let array = fixture("real/stratus/aws.persistence.iam-create-admin-user.json");
    let rules = rule_file(
        d,
        "rules:\n  - id: iam-user-created\n    description: d\n    severity: high\n    pattern: {eventSource: [iam.amazonaws.com], eventName: [CreateUser]}\n",
    );
    let scan = |path: &Path| {
        cmd()
            .args(["scan", "--format", "jsonl", "--rules"])
            .arg(&rules)
            .arg(path)
            .assert()
    };
    let records = real_records("real/stratus/aws.persistence.iam-create-admin-user.json");
    let created = records
        .iter()
        .position(|r| r["eventName"] == "CreateUser")
        .expect("a CreateUser record");
    let lines = jsonl(&stdout(&scan(&array).success()));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["record"], created);

    // Newline-delimited, with a bad line and a line that is not an object.
    let mut ndjson = String::new();
    for r in &records {
        ndjson.push_str(&r.to_string());
        ndjson.push('\n');
    }
    ndjson.push_str("{\"eventName\": oops}\n[1]\n");
    let mut again = records[created].clone();
    again["eventID"] = json!("another-event");
    ndjson.push_str(&again.to_string());
    ndjson.push('\n');
    std::fs::write(d.join("export.ndjson.gz"), gzip(ndjson.as_bytes())).expect("write");
    let out = scan(&d.join("export.ndjson.gz")).code(1);
    let lines = jsonl(&stdout(&out));
    let indexes: Vec<&Value> = lines.iter().map(|l| &l["record"]).collect();
    let n = records.len();
    assert_eq!(
        indexes,
        [&json!(created), &json!(n + 2)],
        "a record after the bad ones is still read"
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("export.ndjson.gz: record {n} (byte ")),
        "{err}"
    );
    assert!(err.contains("invalid JSON"), "{err}");
    assert!(
        err.contains(&format!("record {} (byte ", n + 1))
            && err.contains("not a JSON object but an array"),
        "{err}"
    );

    // `aws cloudtrail lookup-events` output: records as JSON strings.
    let events: Vec<Value> = records
        .iter()
        .map(|r| json!({"EventId": r["eventID"], "EventName": r["eventName"], "CloudTrailEvent": r.to_string()}))
        .chain([json!({"EventId": "no-record"})])
        .collect();
    let lookup = d.join("lookup.json");
    std::fs::write(
        &lookup,
        serde_json::to_vec_pretty(&json!({"Events": events, "NextToken": "t"})).expect("json"),
    )
    .expect("write");
    let out = scan(&lookup).code(1);
    assert_eq!(jsonl(&stdout(&out)).len(), 1);
    assert!(
        stderr(&out).contains(&format!("record {} (byte ", records.len()))
            && stderr(&out).contains("not a lookup-events record: it has no CloudTrailEvent"),
        "{}",
        stderr(&out)
    );

    // One record, pretty-printed, and newline-delimited records on standard input.
    let one = d.join("one.json");
    std::fs::write(
        &one,
        serde_json::to_vec_pretty(&records[created]).expect("json"),
    )
    .expect("write");
    assert_eq!(jsonl(&stdout(&scan(&one).success())).len(), 1);
    let out = cmd()
        .args(["scan", "--format", "jsonl", "--rules"])
        .arg(&rules)
        .arg("-")
        .write_stdin(records.iter().map(|r| format!("{r}\n")).collect::<String>())
        .assert()
        .success();
    assert_eq!(jsonl(&stdout(&out)).len(), 1);
}

/// The function keeps reading only CloudTrail's S3 format.
#[test]
fn the_function_reads_only_cloudtrails_s3_format() {
    use trail_alerts::alert::AlertSource;
    use trail_alerts::pipeline::{Mode, Pipeline};
    use trail_alerts::reader::Limits;
    use trail_alerts::rules::{RuleSet, RuleSource};
    let rules = RuleSet::load(&[RuleSource::Builtin]).expect("builtin");
    let array = std::fs::read(fixture(
        "real/stratus/aws.persistence.iam-create-admin-user.json",
    ))
    .expect("fixture");
    let source = AlertSource::S3 {
        bucket: "b".into(),
        key: "k".into(),
    };
    let outcome = Pipeline::new(&rules, Limits::default()).run(
        std::io::Cursor::new(array),
        &source,
        Mode::Threaded,
        |_| {},
    );
    let fault = outcome
        .fault
        .expect("an array is not a CloudTrail log object")
        .to_string();
    assert!(fault.contains("expected a JSON object ('{')"), "{fault}");
}

/// `explain`: for each rule, matched or not, and why.
#[test]
fn explain_says_why_each_rule_matches_or_not() {
    let dir = tempfile::tempdir().expect("tmp");
    let record = crate::util::json_fixture("docs/BackupJobCompleted.json")["record"].clone();
    let mut failed = record.clone();
    failed["serviceEventDetails"]["state"] = json!("FAILED");
    let path = dir.path().join("record.json");
    std::fs::write(&path, failed.to_string()).expect("write");
    let out = cmd().arg("explain").arg(&path).assert().success();
    let text = stdout(&out);
    assert!(
        text.starts_with("record 0 (BackupJobCompleted):\n"),
        "{text}"
    );
    let line = |id: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("{id}: {text}"))
            .to_owned()
    };
    assert!(
        line("backup-job-failed").ends_with(
            "matches: eventSource = \"backup.amazonaws.com\", eventName = \"BackupJobCompleted\", serviceEventDetails.state = \"FAILED\""
        ),
        "{text}"
    );
    assert!(
        line("backup-job-completed").contains(
            "no match: serviceEventDetails.state: wanted \"COMPLETED\"; found \"FAILED\""
        ),
        "{text}"
    );
    assert!(line("outposts-change").contains(
        "no match: eventSource: wanted \"outposts.amazonaws.com\"; found \"backup.amazonaws.com\""
    ), "{text}");
    let out = cmd()
        .args(["explain", "--rule", "backup-job-*"])
        .arg(&path)
        .assert()
        .success();
    // The record line, then backup-job-failed, -recovered and -completed.
    assert_eq!(stdout(&out).lines().count(), 4, "{}", stdout(&out));
    let out = cmd()
        .args(["explain", "--rule", "nope"])
        .arg(&path)
        .assert()
        .code(2);
    assert!(stderr(&out).contains("no rule matches \"nope\""));
}

/// Alerts say why they fired (`matched`) and who did what from where.
#[test]
fn alerts_carry_what_matched_and_who() {
    let out = cmd()
        .args(["scan", "--format", "jsonl"])
        .arg(root().join("events/trails"))
        .assert()
        .success();
    let lines = jsonl(&stdout(&out));
    let failed_call = lines
        .iter()
        .find(|l| l["rule"] == "outposts-call-failed")
        .expect("outposts-call-failed");
    assert_eq!(
        failed_call["matched"],
        json!({"eventSource": "outposts.amazonaws.com", "errorCode": "AccessDeniedException"})
    );
    assert_eq!(failed_call["errorCode"], "AccessDeniedException");
    assert_eq!(
        failed_call["principal"],
        "arn:aws:sts::111122223333:assumed-role/example/jdoe"
    );
    assert!(failed_call["sourceIPAddress"].is_string());
    let destructive = lines
        .iter()
        .find(|l| l["rule"] == "backup-destructive-call")
        .expect("backup-destructive-call");
    // A field matched by its absence is shown as null.
    assert_eq!(destructive["matched"]["errorCode"], Value::Null);
    assert_eq!(destructive["errorCode"], Value::Null);
}

/// Rules that load but can never match a CloudTrail record are warned about, all at once; a
/// document with several faulty rules reports every one.
#[test]
fn rules_that_can_never_match_are_warned_about_and_every_fault_is_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let rules = rule_file(
        dir.path(),
        r#"rules:
  - id: native-backup-event
    description: pasted from an EventBridge rule for AWS Backup's own events
    severity: high
    pattern: {source: [aws.backup], detail-type: [Backup Job State Change], detail: {state: [FAILED]}}
  - id: short-event-source
    description: d
    severity: low
    pattern: {eventSource: [backup]}
"#,
    );
    let out = cmd()
        .args(["rules", "list", "--rules"])
        .arg(&rules)
        .assert()
        .success();
    let err = stderr(&out);
    assert!(err.contains("warning: ") && err.contains("rule \"native-backup-event\" at $.pattern.detail-type: \"Backup Job State Change\" is AWS Backup's own EventBridge event"), "{err}");
    assert!(
        err.contains("match eventName \"BackupJobCompleted\" with serviceEventDetails.state"),
        "{err}"
    );
    assert!(err.contains("rule \"short-event-source\" at $.pattern.eventSource: \"backup\" is not an AWS service endpoint name"), "{err}");
    assert!(
        err.contains("did you mean \"backup.amazonaws.com\"?"),
        "{err}"
    );

    let bad = rule_file(
        dir.path(),
        "rules:\n  - id: a\n    description: d\n    severity: urgent\n    pattern: {eventName: [X]}\n  - id: b\n    description: d\n    severity: low\n    pattern: {eventName: X}\n",
    );
    let out = cmd()
        .args(["rules", "test", "--rules"])
        .arg(&bad)
        .assert()
        .code(1);
    let err = stderr(&out);
    assert!(err.contains("2 faults in the rules:"), "{err}");
    assert!(err.contains("rule \"a\" at $.rules[0].severity"), "{err}");
    assert!(
        err.contains("rule \"b\" at $.rules[1].pattern.eventName"),
        "{err}"
    );
}

/// Summaries name what was acted on for the common services, on real records; a rule may
/// write its own.
#[test]
fn summaries_name_what_was_acted_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut records = Vec::new();
    records.extend(real_records(
        "real/stratus/aws.initial-access.console-login-without-mfa.json",
    ));
    records.extend(real_records("real/plaso/aws_cloudtrail.json"));
    for f in std::fs::read_dir(fixture("real/invictus")).expect("invictus") {
        records.extend(real_records(&format!(
            "real/invictus/{}",
            f.expect("entry").file_name().to_string_lossy()
        )));
    }
    let wanted = [
        "ConsoleLogin",
        "CreateUser",
        "DeleteTrail",
        "PutBucketPolicy",
    ];
    let mut picked: Vec<Value> = records
        .iter()
        .filter(|r| {
            r.get("insightDetails").is_some()
                || wanted.contains(&r["eventName"].as_str().unwrap_or(""))
        })
        .cloned()
        .collect();
    // A failed sign-in, made from the real one.
    let mut failed = picked
        .iter()
        .find(|r| r["eventName"] == "ConsoleLogin")
        .expect("ConsoleLogin")
        .clone();
    failed["responseElements"]["ConsoleLogin"] = json!("Failure");
    failed["errorMessage"] = json!("Failed authentication");
    failed["eventID"] = json!("a-failed-sign-in");
    picked.push(failed);
    let logs = dir.path().join("picked.json");
    std::fs::write(&logs, json!({"Records": picked}).to_string()).expect("write");
    let rules = rule_file(
        dir.path(),
        r#"rules:
  - id: watched
    description: d
    severity: low
    pattern: {$or: [{eventName: [ConsoleLogin, CreateUser, DeleteTrail, PutBucketPolicy]}, {insightDetails: {state: [{exists: true}]}}]}
  - id: templated
    description: d
    severity: low
    summary: "{userIdentity.arn} changed the policy of bucket {requestParameters.bucketName} ({errorCode})"
    pattern: {eventName: [PutBucketPolicy]}
"#,
    );
    let out = cmd()
        .args(["scan", "--format", "jsonl", "--rules"])
        .arg(&rules)
        .arg(&logs)
        .assert()
        .success();
    let summaries: Vec<String> = jsonl(&stdout(&out))
        .iter()
        .map(|l| l["summary"].as_str().expect("summary").to_owned())
        .collect();
    let has = |prefix: &str| {
        assert!(
            summaries.iter().any(|s| s.starts_with(prefix)),
            "{prefix}\n---\n{summaries:#?}"
        )
    };
    has("Console sign-in by stratus-red-team-nmfalu-jfzdtsvchl succeeded without MFA from ");
    has("Console sign-in by stratus-red-team-nmfalu-jfzdtsvchl failed (Failed authentication) without MFA from ");
    has("CreateUser by arn:aws:iam::123456789012:user/Alice on user Bob");
    has("DeleteTrail by ");
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("DeleteTrail by ") && s.contains(" on trail ")),
        "{summaries:#?}"
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("PutBucketPolicy by ") && s.contains(" on bucket ")),
        "{summaries:#?}"
    );
    has("Insight ApiCallRateInsight started: an unusual rate of UpdateInstanceInformation calls to ssm.amazonaws.com");
    has("Insight ApiCallRateInsight ended: ");
    assert!(
        summaries
            .iter()
            .any(|s| s.contains(" changed the policy of bucket ") && s.ends_with("(?)")),
        "{summaries:#?}"
    );
    let bad = rule_file(
        dir.path(),
        "rules:\n  - id: t\n    description: d\n    severity: low\n    summary: \"{userIdentity.arn deleted\"\n    pattern: {eventName: [X]}\n",
    );
    let out = cmd()
        .args(["rules", "list", "--rules"])
        .arg(&bad)
        .assert()
        .code(1);
    assert!(
        stderr(&out).contains(
            "rule \"t\" at $.rules[0].summary: the placeholder opened at character 0 is not closed"
        ),
        "{}",
        stderr(&out)
    );
}

/// A record with ESC and BEL in its errorMessage, scanned as text: nothing reaches the terminal
/// unescaped; rows fit COLUMNS (cut with `…`), `--wide` does not cut; colour by severity only
/// on a terminal or when forced, never with NO_COLOR.
#[test]
fn text_output_fits_the_terminal_and_never_passes_a_control_character() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut record =
        real_records("real/stratus/aws.persistence.iam-create-admin-user.json")[0].clone();
    record["errorCode"] = json!("AccessDenied");
    record["errorMessage"] = json!("denied\u{1b}[2J\u{7}\u{202e} by policy \u{9b}31m");
    let logs = dir.path().join("r.json");
    std::fs::write(&logs, json!({"Records": [record]}).to_string()).expect("write");
    let rules = rule_file(
        dir.path(),
        "rules:\n  - id: iam-failures\n    description: d\n    severity: critical\n    pattern: {eventSource: [iam.amazonaws.com], errorCode: [{exists: true}]}\n",
    );
    let scan = |extra: &[&str], env: &[(&str, &str)]| {
        let mut c = cmd();
        c.arg("scan")
            .args(extra)
            .arg("--rules")
            .arg(&rules)
            .arg(&logs);
        for (k, v) in env {
            c.env(k, v);
        }
        stdout(&c.assert().success())
    };
    let wide = scan(&["--wide"], &[("COLUMNS", "80")]);
    let row = wide.lines().next().expect("row");
    assert!(
        row.contains("denied\\x1b[2J\\x07\\u{202e} by policy \\x9b31m"),
        "{row:?}"
    );
    assert!(
        !wide.chars().any(|c| c.is_control() && c != '\n'),
        "{wide:?}"
    );
    assert!(row.chars().count() > 80);

    let fitted = scan(&[], &[("COLUMNS", "80")]);
    for line in fitted.lines().take(2) {
        assert!(line.chars().count() <= 80, "{line:?}");
    }
    assert!(
        fitted
            .lines()
            .nth(1)
            .expect("summary line of the alert")
            .ends_with('…'),
        "{fitted}"
    );

    let piped = scan(&[], &[]);
    assert!(!piped.contains('\u{1b}'), "no colour into a pipe");
    let forced = scan(&[], &[("CLICOLOR_FORCE", "1")]);
    assert!(
        forced.starts_with("\u{1b}[1;31mCRITICAL\u{1b}[0m"),
        "{forced:?}"
    );
    let no_color = scan(&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!no_color.contains('\u{1b}'), "{no_color:?}");

    // The SNS subject and text body of the same alert.
    use trail_alerts::alert::{Alert, AlertSource};
    use trail_alerts::rules::RuleSet;
    let set = RuleSet::load(&trail_alerts::rules::parse_sources(&[rules
        .display()
        .to_string()]))
    .expect("rules");
    let alert = Alert::new(
        &set.rules()[0],
        &record,
        AlertSource::File { path: "r".into() },
        0,
    );
    assert!(alert
        .subject
        .chars()
        .all(|c| c.is_ascii_graphic() || c == ' '));
    let body = alert.text(256 * 1024);
    assert!(
        !body.chars().any(|c| c.is_control() && c != '\n'),
        "{body:?}"
    );
}

/// `--since`/`--until` (eventTime), `--rule`/`--exclude`/`--min-severity`, `-q`.
#[test]
fn alerts_are_filtered_by_time_rule_and_severity() {
    let trails = root().join("events/trails");
    let rules_of = |args: &[&str]| -> Vec<String> {
        let out = cmd()
            .args(["scan", "--format", "jsonl"])
            .args(args)
            .arg(&trails)
            .assert()
            .success();
        let mut r: Vec<String> = jsonl(&stdout(&out))
            .iter()
            .map(|l| l["rule"].as_str().expect("rule").to_owned())
            .collect();
        r.sort();
        r
    };
    assert_eq!(rules_of(&["--since", "2020-01-01"]).len(), 4);
    assert_eq!(
        rules_of(&[
            "--since",
            "2020-06-02T00:34:10Z",
            "--until",
            "2020-08-14T16:35:00Z"
        ]),
        ["backup-org-plan-changed", "outposts-change"]
    );
    assert_eq!(
        rules_of(&["--rule", "outposts-*"]),
        ["outposts-call-failed", "outposts-change"]
    );
    assert_eq!(
        rules_of(&["--exclude", "backup-*"]),
        ["outposts-call-failed", "outposts-change"]
    );
    assert_eq!(rules_of(&["--min-severity", "high"]).len(), 4);
    assert!(rules_of(&["--since", "1h"]).is_empty());

    let out = cmd()
        .args(["scan", "--rule", "bakup-job-failed"])
        .arg(&trails)
        .assert()
        .code(2);
    assert!(
        stderr(&out).contains("no rule matches \"bakup-job-failed\""),
        "{}",
        stderr(&out)
    );
    let out = cmd()
        .args(["scan", "--since", "yesterday"])
        .arg(&trails)
        .assert()
        .code(2);
    // Every usage error exits 2, whether the parser or the command finds it (they once split
    // between 1 and 2); a file that cannot be read exits 1.
    for args in [
        &["scan", "--min-severity", "bogus"][..],
        &["scan", "--exclude", "nope"],
        &["scan", "--until", "2020-13-01"],
        &["scan", "--no-such-flag"],
    ] {
        cmd().args(args).arg(&trails).assert().code(2);
    }
    cmd()
        .args(["explain", "/nonexistent/record.json"])
        .assert()
        .code(1);
    assert!(
        stderr(&out).contains("--since \"yesterday\": expected a time"),
        "{}",
        stderr(&out)
    );

    let out = cmd()
        .args(["scan", "--since", "2020-01-01"])
        .arg(&trails)
        .assert()
        .success();
    assert!(
        stdout(&out).contains(" alerts (5 more outside --since/--until) in "),
        "{}",
        stdout(&out)
    );
    let out = cmd().args(["scan", "-q"]).arg(&trails).assert().success();
    assert_eq!(
        stdout(&out).lines().count(),
        8,
        "alerts only: {}",
        stdout(&out)
    );
}

/// Whether a record alerts must not depend on which other rules are loaded: an event delivered
/// twice used to be judged once per object, by the first rule that matched either copy.
#[test]
fn a_repeated_event_alerts_once_per_rule_whatever_else_is_loaded() {
    let dir = tempfile::tempdir().expect("tmp");
    let base = real_records("real/stratus/aws.persistence.iam-create-admin-user.json")
        .into_iter()
        .find(|r| r["eventName"] == "CreateUser")
        .expect("CreateUser");
    let mut first = base.clone();
    first["eventName"] = json!("GetUser");
    let mut second = base.clone();
    second["eventID"] = first["eventID"].clone();
    let logs = dir.path().join("twice.json");
    std::fs::write(&logs, json!({"Records": [first, second]}).to_string()).expect("write");
    let wanted = "  - id: user-created\n    description: d\n    severity: low\n    pattern: {eventName: [CreateUser]}\n";
    let unrelated = "  - id: any-iam\n    description: d\n    severity: low\n    pattern: {eventSource: [iam.amazonaws.com], eventName: [GetUser]}\n";
    let alerted = |rules: &str| -> Vec<String> {
        let path = rule_file(dir.path(), rules);
        let out = cmd()
            .args(["scan", "--format", "jsonl", "--rules"])
            .arg(path)
            .arg(&logs)
            .assert()
            .success();
        jsonl(&stdout(&out))
            .iter()
            .map(|l| format!("{} {}", l["rule"].as_str().unwrap_or(""), l["record"]))
            .collect()
    };
    assert_eq!(alerted(&format!("rules:\n{wanted}")), ["user-created 1"]);
    assert_eq!(
        alerted(&format!("rules:\n{unrelated}{wanted}")),
        ["any-iam 0", "user-created 1"]
    );
}

#[test]
fn rules_test_counts_in_words() {
    let dir = tempfile::tempdir().expect("tmp");
    let rules = rule_file(
        dir.path(),
        "rules:\n  - id: lonely\n    description: d\n    severity: low\n    pattern: {eventName: [X]}\n",
    );
    let out = cmd()
        .args(["rules", "test", "--rules"])
        .arg(&rules)
        .assert()
        .success();
    assert_eq!(
        stdout(&out),
        "1 rule, 0 tests: 0 passed, 0 failed (1 rule has no tests)\n"
    );
}

/// CloudTrail Insights records are matchable like any other (the documented example rule, on
/// plaso's real Insights records): issue "AWS Backup's own events and a complete resilience
/// pack".
#[test]
fn insights_records_are_matchable_like_any_other() {
    let rules = root().join("rules/examples/cloudtrail-insights.yaml");
    let out = cmd()
        .args(["rules", "test", "--rules"])
        .arg(&rules)
        .assert()
        .success();
    assert!(stdout(&out).ends_with("1 rule, 2 tests: 2 passed, 0 failed\n"));
    let out = cmd()
        .args(["scan", "--format", "jsonl", "--rules"])
        .arg(&rules)
        .arg(fixture("real/plaso/aws_cloudtrail.json"))
        .assert()
        .success();
    let lines = jsonl(&stdout(&out));
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["summary"],
        "Unusual ApiCallRateInsight for UpdateInstanceInformation (ssm.amazonaws.com) in 123456789012/us-east-1"
    );
    assert_eq!(lines[0]["eventName"], Value::Null);
}

/// Shadow rules (`mode: shadow`) alert in `scan`, marked as such and counted apart; `rules
/// list` says so.
#[test]
fn scan_marks_shadow_rules_alerts() {
    let dir = tempfile::tempdir().expect("tmp");
    let rules = rule_file(
        dir.path(),
        "rules:\n  - id: trial-recovery-point-deleted\n    description: A trial\n    severity: critical\n    mode: shadow\n    pattern: {eventSource: [backup.amazonaws.com], eventName: [DeleteRecoveryPoint]}\n",
    );
    let trails = root().join("events/trails");
    let out = cmd()
        .args(["scan", "--rules", "builtin", "--rules"])
        .arg(&rules)
        .arg(&trails)
        .assert()
        .success();
    let text = stdout(&out);
    let shadow: Vec<&str> = text.lines().filter(|l| l.contains("[shadow]")).collect();
    assert_eq!(shadow.len(), 1, "{text}");
    assert!(
        shadow[0].starts_with("CRITICAL  trial-recovery-point-deleted")
            && shadow[0].contains("[shadow] DeleteRecoveryPoint by "),
        "{}",
        shadow[0]
    );
    assert!(
        text.contains("9 alerts (1 of them from shadow rules, which the function never publishes)"),
        "{text}"
    );
    let out = cmd()
        .args(["scan", "--format", "jsonl", "--rules"])
        .arg(&rules)
        .arg(&trails)
        .assert()
        .success();
    let lines = jsonl(&stdout(&out));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["shadow"], true);
    let out = cmd()
        .args(["rules", "list", "--rules"])
        .arg(&rules)
        .assert()
        .success();
    assert!(
        stdout(&out).contains("trial-recovery-point-deleted  critical  shadow "),
        "{}",
        stdout(&out)
    );
}
