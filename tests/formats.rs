//! Every output format, whole, against golden files in `tests/fixtures/golden/` (each reviewed
//! by eye when written; `UPDATE_GOLDEN=1 make integration` rewrites them, and the diff is then
//! reviewed before it is committed).
//!
//! Two alerts: the AWS Backup guide's BackupJobCompleted record turned FAILED, with a French
//! and Japanese status message and a runbook; and a record whose every text runs past the
//! formats' limits (SNS subject 99 ASCII characters, chat title 250 and description 4,000,
//! PagerDuty summary 1,024 and dedup key 255).

use std::path::PathBuf;

use serde_json::{json, Value};
use trail_alerts::alert::{Alert, AlertSource};
use trail_alerts::lambda::message::{attributes_json, AlertFormat, OutMessage};
use trail_alerts::lambda::pager;
use trail_alerts::rules::{parse_document, Rule};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// Compares `actual` with the golden file `name`, or writes it under `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).expect("golden dir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (UPDATE_GOLDEN=1 writes it; review it)",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {}:\n  golden: {:?}\n  output: {:?}",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("json") + "\n"
}

const RULES: &str = r#"rules:
  - id: backup-job-failed
    description: "An AWS Backup job ended in a state other than COMPLETED."
    severity: high
    pattern:
      eventSource: [backup.amazonaws.com]
      eventName: [BackupJobCompleted]
      serviceEventDetails: {state: [{anything-but: COMPLETED}]}
    dedup: {key: [recipientAccountId, awsRegion, serviceEventDetails.resourceArn], window: 1h}
    runbook: |
      Open the job in the AWS Backup console: https://console.aws.amazon.com/backup
      Check the role's permissions (iamRoleArn) and the resource's state
  - id: odd-user-agent
    description: "A call made with a user agent that looks like Markdown."
    severity: high
    summary: "{eventName} by {userIdentity.arn} with user agent {userAgent}"
    pattern: {userAgent: [{prefix: "["}]}
  - id: everything-long
    description: "A rule whose every text is long: the limits of each format. Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua."
    severity: critical
    pattern: {eventName: [{prefix: "Very"}]}
    dedup: {key: [requestParameters.name], window: 1d}
"#;

fn rule(id: &str) -> Rule {
    parse_document("golden.yaml", RULES)
        .expect("rules")
        .into_iter()
        .find(|r| r.id == id)
        .expect("rule")
}

fn failed_backup() -> Alert {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/docs/BackupJobCompleted.json"),
        )
        .expect("fixture"),
    )
    .expect("json");
    let mut record = doc["record"].clone();
    record["serviceEventDetails"]["state"] = json!("FAILED");
    record["serviceEventDetails"]["statusMessage"] =
        json!("Échec de la sauvegarde : accès refusé — バックアップに失敗しました");
    Alert::new(
        &rule("backup-job-failed"),
        &record,
        AlertSource::S3 {
            bucket: "org-trail".into(),
            key: "AWSLogs/o-exampleorgid/123456789012/CloudTrail/us-east-1/2019/01/10/123456789012_CloudTrail_us-east-1_20190110T0830Z_abcdefghijklmnop.json.gz".into(),
        },
        3,
    )
}

fn at_the_limits() -> Alert {
    let record = json!({
        "eventVersion": "1.08",
        "eventTime": "2024-02-29T23:59:59Z",
        "eventSource": "example.amazonaws.com",
        "eventName": format!("Very{}", "Long".repeat(40)),
        "awsRegion": "ap-southeast-2",
        "eventID": "00000000-0000-4000-8000-000000000000",
        "eventType": "AwsApiCall",
        "recipientAccountId": "210987654321",
        "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::210987654321:assumed-role/{}/ünïcødé-session", "r".repeat(120))},
        "sourceIPAddress": "XXX.XXX.XXX.XXX",
        "errorCode": "ValidationException",
        "errorMessage": "ℵ ".repeat(3000),
        "requestParameters": {"name": "ñ".repeat(400)},
    });
    Alert::new(
        &rule("everything-long"),
        &record,
        AlertSource::File {
            path: "logs/long.json".into(),
        },
        0,
    )
}

/// The SNS message of a format: subject, attributes and body.
fn sns(alert: &Alert, format: AlertFormat) -> String {
    let m = OutMessage::new("a0".into(), alert, format, false);
    let mut out = format!(
        "Subject: {}\nMessageStructure: {}\nAttributes: {}\n\n",
        m.subject,
        if m.structured { "json" } else { "-" },
        attributes_json(&m)
    );
    match format {
        AlertFormat::Text => out.push_str(&m.body),
        _ => out.push_str(&pretty(
            &serde_json::from_str::<Value>(&m.body).expect("json body"),
        )),
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn every_format(name: &str, alert: &Alert) {
    for (format, ext) in [
        (AlertFormat::Json, "json.txt"),
        (AlertFormat::Text, "text.txt"),
        (AlertFormat::PerProtocol, "per-protocol.txt"),
        (AlertFormat::Chat, "chat.txt"),
    ] {
        golden(&format!("{name}.sns.{ext}"), &sns(alert, format));
    }
    golden(
        &format!("{name}.pagerduty.json"),
        &pretty(&pager::event_for(alert, "R0UT1NGKEY")),
    );
    golden(&format!("{name}.jsonl.json"), &pretty(&alert.json_line()));
}

/// A record written by someone who wants to phish the operations channel: every value it
/// chooses (user agent, session name, error message, Region) carries Markdown links, Slack
/// control sequences and mentions.
fn hostile() -> Alert {
    let record = json!({
        "eventVersion": "1.08",
        "eventTime": "2026-11-30T10:00:00Z",
        "eventSource": "sts.amazonaws.com",
        "eventName": "GetCallerIdentity",
        "awsRegion": "us-east-1",
        "eventID": "11111111-2222-4333-8444-555555555555",
        "eventType": "AwsApiCall",
        "recipientAccountId": "123456789012",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0a1b2c/alice@example.com"},
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "[Re-authenticate here](https://evil.example/login) <!channel> <https://evil.example|AWS console> @here *urgent* `code` _x_ ~y~ # | ! & > <@U024BE7LH>",
        "errorCode": "AccessDenied <!here>",
        "errorMessage": "[click](https://evil.example)",
    });
    Alert::new(
        &rule("odd-user-agent"),
        &record,
        AlertSource::File {
            path: "logs/hostile.json".into(),
        },
        0,
    )
}

#[test]
fn a_hostile_record_is_inert_in_chat() {
    let alert = hostile();
    every_format("hostile", &alert);
    let chat = alert.chat();
    let content = &chat["content"];
    let shown = format!(
        "{} {} {}",
        content["title"], content["description"], content["keywords"]
    );
    // No Markdown link, no Slack control sequence or link, no mention survives.
    for live in [
        "[Re-authenticate here](https",
        "](https://evil",
        "<!channel>",
        "<!here>",
        "<https://",
        "<@U024BE7LH>",
        "@here",
        "*urgent*",
    ] {
        assert!(!shown.contains(live), "{live:?} is live in {shown}");
    }
    let description = content["description"].as_str().unwrap();
    assert!(
        description.contains(r"\[Re-authenticate here\]\(https://evil.example/login\)"),
        "{description}"
    );
    assert!(description.contains(r"&lt;\!channel&gt;"), "{description}");
    assert!(description.contains("@\u{2060}here"), "{description}");
    // The rule's own Markdown (its labels) stays Markdown.
    assert!(description.contains("*By:* "), "{description}");
    assert!(description.contains("AWSReservedSSO\\_Admin\\_0a1b2c/alice@\u{2060}example.com"));
    assert_eq!(
        chat["metadata"]["summary"],
        "[HIGH] odd-user-agent: GetCallerIdentity AccessDenied &lt;!here&gt; in 123456789012/us-east-1"
    );
}

/// The failed backup with its account's context: the name, OU path and tags AWS Organizations
/// (or the rule files' `accounts:`) give, and IAM Identity Center shortcut links.
fn enriched() -> Alert {
    use trail_alerts::alert::context::{AccountInfo, Sso};
    let info = AccountInfo {
        name: Some("payments-prod".into()),
        ou_path: vec!["Prod".into(), "Payments".into()],
        tags: [("team", "payments"), ("cost-center", "4711")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    };
    let sso = Sso {
        start_url: "https://d-9067example.awsapps.com/start".into(),
        permission_set: "ReadOnlyAccess".into(),
    };
    failed_backup().with_account(Some(info), Some(&sso))
}

#[test]
fn an_alert_with_its_accounts_context_in_every_format() {
    let alert = enriched();
    every_format("enriched", &alert);
    assert_eq!(
        alert.subject,
        "[HIGH] backup-job-failed: payments-prod (123456789012) us-east-1 BackupJobCompleted FAILED"
    );
    let chat = alert.chat();
    assert_eq!(
        chat["content"]["title"],
        ":red_circle: [HIGH] backup-job-failed — payments-prod (123456789012)/us-east-1"
    );
    let page = pager::event_for(&alert, "k");
    assert_eq!(
        page["payload"]["custom_details"]["account"]["name"],
        "payments-prod"
    );
    assert_eq!(
        page["payload"]["custom_details"]["account"]["ou"],
        "Root/Prod/Payments"
    );
    let links = page["links"].as_array().expect("links");
    assert!(links.iter().any(|l| l["href"].as_str().unwrap().starts_with(
        "https://d-9067example.awsapps.com/start/#/console?account_id=123456789012&role_name=ReadOnlyAccess&destination=https%3A%2F%2Fus-east-1.console.aws.amazon.com%2Fcloudtrailv2"
    )));
    let text = alert.text(1 << 20);
    assert!(text.contains("Account:    payments-prod (123456789012)   Region: us-east-1"));
    assert!(text.contains("OU:         Root/Prod/Payments"));
    assert!(text.contains("Tags:       cost-center=4711, team=payments"));
    // The place comes first: a long name pushes the event's words out, not the place.
    let long = failed_backup().with_account(
        Some(trail_alerts::alert::context::AccountInfo {
            name: Some("a-very-long-account-name".into()),
            ..Default::default()
        }),
        None,
    );
    assert_eq!(
        long.subject,
        "[HIGH] backup-job-failed: a-very-long-account-name (123456789012) us-east-1 BackupJobCompleted FAILED"
            .chars()
            .take(96)
            .collect::<String>()
            + "..."
    );
    // What is not known leaves the alert as it was.
    let plain = failed_backup().with_account(None, None);
    assert_eq!(plain.subject, failed_backup().subject);
}

#[test]
fn a_failed_backup_in_every_format() {
    let alert = failed_backup();
    every_format("failed-backup", &alert);
    // What the golden files were reviewed for, asserted as well.
    let chat = alert.chat();
    assert_eq!(
        chat["metadata"]["threadId"],
        r#"backup-job-failed|["123456789012","us-east-1","arn:aws:ec2:us-east-1:123456789012:volume/vol-06692095a6a421233"]"#
    );
    assert!(chat["content"]["description"]
        .as_str()
        .unwrap()
        .contains("バックアップに失敗しました"));
    let page = pager::event_for(&alert, "k");
    assert_eq!(page["dedup_key"], chat["metadata"]["threadId"]);
    assert_eq!(page["payload"]["severity"], "error");
    assert!(alert.subject.is_ascii());
}

#[test]
fn texts_past_every_limit_are_cut_where_each_format_says() {
    let alert = at_the_limits();
    every_format("at-the-limits", &alert);
    assert_eq!(alert.subject.chars().count(), 99);
    assert!(alert.subject.is_ascii() && !alert.subject.contains('\n'));
    let chat = alert.chat();
    let count = |v: &Value| v.as_str().expect("string").chars().count();
    // The title holds only the rule id (64 characters at most), account and Region: it stays
    // under its 250 (the cut itself is unit-tested with a forged 300-character account).
    assert!(count(&chat["content"]["title"]) <= 250);
    assert_eq!(count(&chat["content"]["description"]), 4000);
    let page = pager::event_for(&alert, "k");
    assert_eq!(count(&page["payload"]["summary"]), pager::MAX_SUMMARY);
    assert_eq!(count(&page["dedup_key"]), pager::MAX_DEDUP_KEY);
    assert!(page["dedup_key"].as_str().unwrap().ends_with('…'));
}
