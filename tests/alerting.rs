//! Alert management (issue "Alert management: deduplication with roll-ups, thresholds and
//! suppressions"): the rule language, and its semantics as `scan` applies them in memory — event
//! time windows, dedup with roll-ups, thresholds, suppressions and their expiry — and the
//! function's start-up refusal of what it cannot yet keep state for.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{json, Value};

fn cmd() -> Command {
    crate::util::trail_alerts()
}

fn out(a: &assert_cmd::assert::Assert) -> (String, String) {
    let o = a.get_output();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A failed backup job of `resource` at `time`.
fn failure(id: &str, time: &str, resource: &str) -> Value {
    json!({"eventVersion": "1.05", "eventTime": time, "eventSource": "backup.amazonaws.com",
           "eventName": "BackupJobCompleted", "awsRegion": "us-east-1", "eventID": id,
           "eventType": "AwsServiceEvent", "recipientAccountId": "123456789012",
           "userIdentity": {"accountId": "123456789012", "invokedBy": "backup.amazonaws.com"},
           "serviceEventDetails": {"state": "FAILED", "backupJobId": format!("job-{id}"),
                                   "resourceArn": resource, "resourceType": "EBS"}})
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn log(dir: &Path, records: &[Value]) -> PathBuf {
    write(dir, "log.json", &json!({"Records": records}).to_string())
}

const VOL_A: &str = "arn:aws:ec2:us-east-1:123456789012:volume/vol-a";
const VOL_B: &str = "arn:aws:ec2:us-east-1:123456789012:volume/vol-b";

/// The first failure per resource in each hour of event time alerts; the rest are counted and
/// told in one roll-up per window, with the first and last event and the distinct values;
/// `--no-dedup` shows every match. Event time decides, not file order.
#[test]
fn dedup_alerts_once_per_key_and_window_and_rolls_up_the_rest() {
    let dir = tempfile::tempdir().expect("tmp");
    let records = [
        failure("e1", "2024-01-10T08:05:00Z", VOL_A),
        failure("e2", "2024-01-10T08:10:00Z", VOL_A),
        failure("e3", "2024-01-10T08:20:00Z", VOL_B),
        // The next hour: a new window.
        failure("e4", "2024-01-10T09:01:00Z", VOL_A),
        // Late: delivered after the 09:01 one, but it belongs to the 08:00 window.
        failure("e5", "2024-01-10T08:59:59Z", VOL_A),
    ];
    let logs = log(dir.path(), &records);
    let a = cmd()
        .args(["scan", "--format", "jsonl", "--rule", "backup-job-failed"])
        .arg(&logs)
        .assert()
        .success();
    let (stdout, _) = out(&a);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let alerts: Vec<&str> = lines
        .iter()
        .filter(|l| l.get("rollup").is_none())
        .map(|l| l["eventID"].as_str().expect("id"))
        .collect();
    assert_eq!(alerts, ["e1", "e3", "e4"]);
    let rollups: Vec<&Value> = lines.iter().filter(|l| l["rollup"] == true).collect();
    assert_eq!(rollups.len(), 1, "{stdout}");
    let r = rollups[0];
    assert_eq!(r["rule"], "backup-job-failed");
    assert_eq!(r["key"], json!(["123456789012", "us-east-1", VOL_A]));
    assert_eq!(r["windowStart"], "2024-01-10T08:00:00Z");
    assert_eq!(r["windowEnd"], "2024-01-10T09:00:00Z");
    assert_eq!(r["more"], 2);
    // The window's first and last matches: the alert's, and the last held back.
    assert_eq!(
        (&r["firstEventID"], &r["lastEventID"]),
        (&json!("e1"), &json!("e5"))
    );
    // The distinct values of the window's matches, the alert's included (as the function's
    // store keeps them: `scan` decides through the same layer).
    assert_eq!(
        r["values"]["serviceEventDetails.backupJobId"],
        json!(["job-e1", "job-e2", "job-e5"])
    );

    let a = cmd()
        .args(["scan", "--rule", "backup-job-failed"])
        .arg(&logs)
        .assert()
        .success();
    let (text, _) = out(&a);
    assert!(
        text.contains("ROLL-UP   backup-job-failed [\"123456789012\",\"us-east-1\",\"arn:aws:ec2:us-east-1:123456789012:volume/vol-a\"]: 2 more in 2024-01-10T08:00:00Z..2024-01-10T09:00:00Z"),
        "{text}"
    );
    assert!(
        text.contains(
            "3 alerts from 5 matches (2 held back by dedup or threshold, 0 suppressed; 1 roll-up)"
        ),
        "{text}"
    );
    assert!(
        text.contains("  backup-job-failed  3 (of 5 matches)"),
        "{text}"
    );

    let a = cmd()
        .args([
            "scan",
            "--format",
            "jsonl",
            "--no-dedup",
            "--rule",
            "backup-job-failed",
        ])
        .arg(&logs)
        .assert()
        .success();
    let (stdout, _) = out(&a);
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert!(!stdout.contains("rollup"));
}

fn rules_with(dir: &Path, extra: &str) -> PathBuf {
    write(
        dir,
        "rules.yaml",
        &format!(
            "rules:\n  - id: failures\n    description: d\n    severity: high\n    pattern: {{eventName: [BackupJobCompleted], serviceEventDetails: {{state: [FAILED]}}}}\n{extra}"
        ),
    )
}

/// A threshold raises nothing below its count, one alert at the match that reaches it, and
/// rolls up the matches after it.
#[test]
fn a_threshold_alerts_when_it_is_crossed() {
    let dir = tempfile::tempdir().expect("tmp");
    let rules = rules_with(
        dir.path(),
        "    threshold: {count: 3, within: 15m, key: [recipientAccountId]}\n",
    );
    let scan = |records: &[Value]| -> Vec<Value> {
        let logs = log(dir.path(), records);
        let a = cmd()
            .args(["scan", "--format", "jsonl", "--rules"])
            .arg(&rules)
            .arg(&logs)
            .assert()
            .success();
        out(&a)
            .0
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    };
    let two = [
        failure("t1", "2024-01-10T08:00:00Z", VOL_A),
        failure("t2", "2024-01-10T08:05:00Z", VOL_B),
    ];
    assert!(scan(&two).is_empty(), "below the threshold");
    let mut four = two.to_vec();
    four.push(failure("t3", "2024-01-10T08:14:59Z", VOL_A));
    four.push(failure("t4", "2024-01-10T08:14:59Z", VOL_B));
    let lines = scan(&four);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0]["eventID"], "t3",
        "the third match crosses the threshold"
    );
    assert_eq!(
        (&lines[1]["rollup"], &lines[1]["more"]),
        (&json!(true), &json!(1))
    );
    // The same four spread over two 15-minute windows cross nothing.
    let spread = [
        failure("s1", "2024-01-10T08:00:00Z", VOL_A),
        failure("s2", "2024-01-10T08:14:00Z", VOL_A),
        failure("s3", "2024-01-10T08:15:00Z", VOL_A),
        failure("s4", "2024-01-10T08:29:00Z", VOL_A),
    ];
    assert!(scan(&spread).is_empty());
}

/// A suppression silences the matches of the rules it lists whose records match its pattern,
/// and counts them; once expired it stops applying, and listing or testing the rules warns.
#[test]
fn suppressions_silence_until_they_expire() {
    let dir = tempfile::tempdir().expect("tmp");
    let suppression = |expires: &str| {
        format!(
            "suppressions:\n  - id: vol-a-maintenance\n    rules: [fail*]\n    pattern: {{serviceEventDetails: {{resourceArn: [\"{VOL_A}\"]}}}}\n    reason: volume A is being migrated (CHG-1234)\n    owner: storage-team\n    expires: \"{expires}\"\n"
        )
    };
    let records = [
        failure("p1", "2024-01-10T08:00:00Z", VOL_A),
        failure("p2", "2024-01-10T08:01:00Z", VOL_B),
        failure("p3", "2024-01-10T08:02:00Z", VOL_A),
    ];
    let logs = log(dir.path(), &records);
    let rules = rules_with(dir.path(), &suppression("2999-12-31"));
    let a = cmd()
        .args(["scan", "--rules"])
        .arg(&rules)
        .arg(&logs)
        .assert()
        .success();
    let (text, err) = out(&a);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("HIGH")).count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("1 alert from 3 matches (0 held back by dedup or threshold, 2 suppressed"),
        "{text}"
    );
    assert!(
        text.contains("  suppressed by vol-a-maintenance: 2"),
        "{text}"
    );
    assert!(err.is_empty(), "{err}");

    let rules = rules_with(dir.path(), &suppression("2020-01-31"));
    let a = cmd()
        .args(["scan", "--format", "jsonl", "--rules"])
        .arg(&rules)
        .arg(&logs)
        .assert()
        .success();
    let (stdout, err) = out(&a);
    assert_eq!(
        stdout.lines().count(),
        3,
        "an expired suppression silences nothing"
    );
    assert!(err.contains("suppression vol-a-maintenance"), "{err}");
    assert!(
        err.contains("expired on 2020-01-31 (owner storage-team)"),
        "{err}"
    );
    for sub in [["rules", "list"], ["rules", "test"]] {
        let a = cmd()
            .args(sub)
            .arg("--rules")
            .arg(&rules)
            .assert()
            .success();
        assert!(out(&a).1.contains("expired on 2020-01-31"), "{sub:?}");
    }

    // Who, why and until when are required.
    let bad = rules_with(
        dir.path(),
        "suppressions:\n  - id: s\n    rules: [failures]\n    pattern: {eventName: [X]}\n    reason: r\n    expires: 2030-01-01\n",
    );
    let a = cmd()
        .args(["rules", "list", "--rules"])
        .arg(&bad)
        .assert()
        .code(1);
    assert!(
        out(&a)
            .1
            .contains("at $.suppressions[0].owner: missing: every suppression needs owner"),
        "{}",
        out(&a).1
    );
}

/// The rule language is validated as strictly as the rest, with the JSON path.
#[test]
fn dedup_threshold_and_group_are_validated_with_their_path() {
    let dir = tempfile::tempdir().expect("tmp");
    for (extra, want) in [
        (
            "    dedup: {window: 1w}\n",
            "at $.rules[0].dedup.window: \"1w\" is not a duration",
        ),
        (
            "    dedup: {key: [recipientAccountId]}\n",
            "at $.rules[0].dedup.window: missing",
        ),
        (
            "    dedup: {window: 1h, key: [\"a..b\"]}\n",
            "at $.rules[0].dedup.key[0]: \"a..b\" is not a record path",
        ),
        (
            "    dedup: {window: 1h, keys: [a]}\n",
            "at $.rules[0].dedup.keys: unknown key",
        ),
        (
            "    threshold: {count: 0, within: 1h}\n",
            "at $.rules[0].threshold.count: 0 is not a whole number of at least 1",
        ),
        (
            "    threshold: {count: 2}\n",
            "at $.rules[0].threshold.within: missing",
        ),
        (
            "    dedup: {window: 1h}\n    threshold: {count: 2, within: 1h}\n",
            "at $.rules[0].threshold: a rule has dedup or threshold, not both",
        ),
        (
            "    group: {by: [awsRegion]}\n",
            "at $.rules[0].group.interval: missing: group needs its interval",
        ),
        (
            "    group: {by: [awsRegion], interval: 15m, wait: 20m}\n",
            "at $.rules[0].group.wait: a wait (20m) longer than the group's interval (15m)",
        ),
        (
            "    group: {by: awsRegion, interval: 15m}\n",
            "at $.rules[0].group.by: expected a list of dotted record paths",
        ),
        (
            "    group: {by: [awsRegion], every: 15m}\n",
            "at $.rules[0].group.every: unknown key; group has by, wait, interval",
        ),
        (
            "    incident: Backup Job\n",
            "at $.rules[0].incident: expected an incident name",
        ),
        (
            "    group: {interval: 15m}\n    resolves: [other]\n",
            "at $.rules[0].group: a recovery rule raises no alerts of its own to group",
        ),
    ] {
        let rules = rules_with(dir.path(), extra);
        let a = cmd()
            .args(["rules", "list", "--rules"])
            .arg(&rules)
            .assert()
            .code(1);
        assert!(out(&a).1.contains(want), "{extra}: {}", out(&a).1);
    }
}

/// A rule test can assert dedup and threshold over a sequence of records; a failing one says
/// what the grouping is.
#[test]
fn rule_tests_assert_sequences() {
    let dir = tempfile::tempdir().expect("tmp");
    let seq = json!([
        failure("q1", "2024-01-10T08:00:00Z", VOL_A),
        failure("q2", "2024-01-10T08:30:00Z", VOL_A)
    ]);
    let rules = rules_with(
        dir.path(),
        &format!("    dedup: {{key: [serviceEventDetails.resourceArn], window: 1h}}\n    tests:\n      - name: twice in an hour\n        records: {seq}\n        expect_alerts: 1\n      - name: wrong on purpose\n        records: {seq}\n        expect_alerts: 2\n"),
    );
    let a = cmd()
        .args(["rules", "test", "--rules"])
        .arg(&rules)
        .assert()
        .code(1);
    let (text, _) = out(&a);
    assert!(text.contains("ok    failures: twice in an hour"), "{text}");
    assert!(
        text.contains("FAIL  failures: wrong on purpose\n      expected 2 alerts from the 2 records; they raised 1 (one alert per serviceEventDetails.resourceArn per 1h)"),
        "{text}"
    );
}

/// The function has no state store yet: a user rule with dedup or a threshold stops its start
/// with a message naming the rule; the built-in pack's own dedup defaults fall back to one
/// alert per match (the handler starts).
#[test]
fn the_function_refuses_user_dedup_rules_until_it_has_a_state_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let rules = rules_with(dir.path(), "    dedup: {window: 1h}\n");
    let a = Command::cargo_bin("trail-alerts-lambda")
        .expect("binary")
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env(
            "ALERT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:alerts",
        )
        .env("RULES", &rules)
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .failure();
    let err = out(&a).1;
    assert!(
        err.contains(
            "rule \"failures\" asks for one alert per the rule per 1h: that needs the state store"
        ),
        "{err}"
    );
}

/// A completed backup of `resource` in `account` at `time`.
fn completed(id: &str, time: &str, account: &str, resource: &str) -> Value {
    let mut r = failure(id, time, resource);
    r["recipientAccountId"] = json!(account);
    r["serviceEventDetails"]["state"] = json!("COMPLETED");
    r
}

/// `scan` audits absence rules over a folder of historical logs: a gap between backups (the
/// resource came back: resolved), a resource that stopped, an expected one that never
/// reported — judged against each account and Region's own progress (the newest eventTime of
/// its logs; the delivery time in a log's name when none of its records has one), so that an
/// account whose logs stop early raises no false "missed backup".
#[test]
fn scan_audits_absence_rules_against_each_accounts_progress() {
    let dir = tempfile::tempdir().expect("tmp");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("dir");
    let acct1 = "111111111111";
    let acct2 = "222222222222";
    let vol = |n: &str| format!("arn:aws:ec2:us-east-1:111111111111:volume/{n}");
    // One delivery a day per account at 03:00, holding that night's backups.
    let mut days: Vec<(String, &str, Vec<Value>)> = Vec::new();
    for day in 1..=6 {
        let t = format!("2024-01-{day:02}T02:00:00Z");
        let mut r1 = Vec::new();
        if day != 3 && day != 4 {
            r1.push(completed(&format!("a{day}"), &t, acct1, &vol("vol-a")));
        }
        if day == 1 {
            r1.push(completed("b1", &t, acct1, &vol("vol-b")));
        }
        days.push((format!("2024010{day}T0300Z"), acct1, r1));
        // Account 2's trail stops delivering after day 2 (a delayed trail).
        if day <= 2 {
            days.push((
                format!("2024010{day}T0300Z"),
                acct2,
                vec![completed(&format!("c{day}"), &t, acct2, &vol("vol-z"))],
            ));
        }
    }
    for (stamp, account, records) in &days {
        write(
            &logs,
            &format!("{account}_CloudTrail_us-east-1_{stamp}_x.json"),
            &json!({"Records": records}).to_string(),
        );
    }
    let rules = write(
        dir.path(),
        "absence.yaml",
        &format!(
            "rules:\n  - id: nightly-backup\n    description: d\n    severity: high\n    pattern: {{eventName: [BackupJobCompleted], serviceEventDetails: {{state: [COMPLETED]}}}}\n    absence: {{key: [serviceEventDetails.resourceArn], every: 26h, expect: [\"{}\"]}}\n",
            vol("vol-c")
        ),
    );
    let a = cmd()
        .args(["scan", "--format", "jsonl", "--rules"])
        .arg(&rules)
        .arg(&logs)
        .assert()
        .success();
    let (stdout, _) = out(&a);
    let gaps: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let find = |resource: &str| -> Vec<&Value> {
        gaps.iter()
            .filter(|g| g["key"] == json!([vol(resource)]))
            .collect()
    };
    // vol-a: backed up on the 2nd, then the 5th: missing from 04:00 on the 3rd, resolved.
    let a_gaps = find("vol-a");
    assert_eq!(a_gaps.len(), 1, "{stdout}");
    assert_eq!(a_gaps[0]["overdueSince"], "2024-01-03T04:00:00Z");
    assert_eq!(a_gaps[0]["resolvedAt"], "2024-01-05T02:00:00Z");
    // vol-b: once, on the 1st; the trail went on to the 6th: still missing.
    let b_gaps = find("vol-b");
    assert_eq!(b_gaps.len(), 1, "{stdout}");
    assert_eq!(
        (&b_gaps[0]["lastSeen"], &b_gaps[0]["resolvedAt"]),
        (&json!("2024-01-01T02:00:00Z"), &Value::Null)
    );
    // The trail's progress is the newest eventTime read (02:00 on the 6th; that log was
    // delivered at 03:00).
    assert_eq!(b_gaps[0]["watermark"], "2024-01-06T02:00:00Z");
    // vol-c: expected, never seen.
    assert_eq!(find("vol-c").len(), 1, "{stdout}");
    assert_eq!(find("vol-c")[0]["lastSeen"], Value::Null);
    // vol-z (account 2): its trail stops on the 2nd, before the deadline: no false alarm.
    assert!(find("vol-z").is_empty(), "{stdout}");
    // Heartbeats are not alerts.
    assert!(gaps.iter().all(|g| g["absence"] == true), "{stdout}");

    let a = cmd()
        .args(["scan", "--rules"])
        .arg(&rules)
        .arg(&logs)
        .assert()
        .success();
    let (text, _) = out(&a);
    assert!(text.contains("GAP       nightly-backup"), "{text}");
    assert!(text.contains("(resolved)"), "{text}");
    assert!(text.contains("MISSING   nightly-backup"), "{text}");
    assert!(
        text.contains("; absence: 7 heartbeats, 2 missing, 1 gap resolved"),
        "{text}"
    );

    // The function does not watch for absence yet: it refuses the rule at cold start.
    let a = Command::cargo_bin("trail-alerts-lambda")
        .expect("binary")
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env(
            "ALERT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:alerts",
        )
        .env("RULES", &rules)
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .failure();
    assert!(
        out(&a)
            .1
            .contains("rule \"nightly-backup\" is an absence rule"),
        "{}",
        out(&a).1
    );
}
