//! The state store's contract, one suite over both stores: every scenario below runs the
//! function's admission (`state::admit`) against the in-memory store and against DynamoDB
//! (moto over HTTP), and the two must decide alike — the same alerts out, as many held,
//! gathered and waiting, the same windows left behind. The DynamoDB adapter takes other paths
//! than the memory store for the same decisions (one conditional write per window, new windows
//! created a hundred to a transaction, counting match by match on a redelivery), so this is
//! what holds those paths to the semantics.

use std::sync::Arc;

use serde_json::{json, Value};
use trail_alerts::alert::{Alert, AlertSource};
use trail_alerts::lambda::ports::aws::DynamoState;
use trail_alerts::lambda::state::{
    admit, Admitted, Beat, MemoryState, PageStore, ProgressStore, StateStore, WindowState,
};
use trail_alerts::rules::{parse_rule_document, RuleSet};

use crate::e2e::Moto;
use crate::util::loopback_sdk_config;

const RULES: &str = r#"rules:
  - id: dedup
    description: one alert per volume and hour
    severity: high
    pattern: {eventName: [BackupJobCompleted], serviceEventDetails: {state: [FAILED]}}
    dedup: {key: [serviceEventDetails.resourceArn], window: 1h}
  - id: threshold
    description: the third copy failure of an account in 15 minutes
    severity: medium
    pattern: {eventName: [CopyJobCompleted]}
    threshold: {count: 3, within: 15m, key: [recipientAccountId]}
  - id: grouped
    description: restores grouped per account and Region
    severity: high
    pattern: {eventName: [RestoreJobCompleted]}
    dedup: {key: [serviceEventDetails.resourceArn], window: 1h}
    group: {by: [recipientAccountId, awsRegion], interval: 15m}
  - id: waiting
    description: deletions grouped with a wait
    severity: high
    pattern: {eventName: [DeleteRecoveryPoint]}
    dedup: {key: [serviceEventDetails.resourceArn], window: 1h}
    group: {by: [recipientAccountId, awsRegion], interval: 15m, wait: 2m}
"#;

/// 2024-08-01T02:00:00Z, and the wall clock the scenarios run at.
const T0: i64 = 1_722_477_600;
const NOW: i64 = T0 + 3600;

fn record(name: &str, n: usize, volume: &str) -> Value {
    json!({"eventVersion": "1.08", "eventSource": "backup.amazonaws.com", "eventName": name,
           "awsRegion": "eu-west-1", "eventTime": trail_alerts::time::format_timestamp(T0 + n as i64),
           "eventID": format!("{name}-{n:06}"), "eventType": "AwsServiceEvent",
           "recipientAccountId": "481726354019",
           "serviceEventDetails": {"state": "FAILED",
               "resourceArn": format!("arn:aws:ec2:eu-west-1:481726354019:volume/{volume}")}})
}

fn rules() -> RuleSet {
    RuleSet::new(
        parse_rule_document("stores.yaml", RULES)
            .expect("rules")
            .rules,
    )
    .expect("set")
}

fn alerts(rules: &RuleSet, records: &[Value]) -> Vec<Alert> {
    let source = AlertSource::S3 {
        bucket: "stores-trail".into(),
        key: "AWSLogs/481726354019/CloudTrail/eu-west-1/2024/08/01/x.json.gz".into(),
    };
    records
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            rules
                .rules()
                .iter()
                .filter(|rule| {
                    rule.pattern
                        .matches(&trail_alerts::pattern::Event::record(r))
                })
                .map(|rule| Alert::new(rule, r, source.clone(), i))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What admission decided, in a form two stores can be compared by.
#[derive(Debug, PartialEq)]
struct Decided {
    out: Vec<(String, String, String)>,
    held: u64,
    grouped: u64,
    waiting: u64,
    claims: usize,
}

impl From<Admitted> for Decided {
    fn from(a: Admitted) -> Self {
        Decided {
            out: a
                .alerts
                .iter()
                .map(|x| {
                    (
                        x.rule_id.clone(),
                        x.event.event_id.clone().unwrap_or_default(),
                        x.alert_key.clone(),
                    )
                })
                .collect(),
            held: a.held,
            grouped: a.grouped,
            waiting: a.waiting,
            claims: a.claims.len(),
        }
    }
}

/// Admits a delivery's alerts, then marks their claims published as the door does once SNS
/// took them.
async fn decide(store: &dyn StateStore, rules: &RuleSet, records: &[Value]) -> Decided {
    let admitted = admit(store, rules, alerts(rules, records), 900, NOW)
        .await
        .expect("admit");
    store
        .mark_all_published(&admitted.claims)
        .await
        .expect("mark published");
    admitted.into()
}

/// A window as both stores must leave it (ids and store-private fields left out): its count,
/// claim and first and last eventIDs.
fn seen(w: Option<WindowState>) -> String {
    w.map_or("none".into(), |w| {
        format!(
            "count {} claimed by {:?} first {:?} last {:?}",
            w.count, w.claimed_by, w.first_id, w.last_id
        )
    })
}

/// Every scenario, in order, on one store: what each delivery decided, and the windows after.
async fn scenarios(store: &dyn StateStore) -> Vec<String> {
    let rules = rules();
    let mut log = Vec::new();
    // Dedup: three failures of one volume in one delivery, then the same delivery again.
    let d: Vec<Value> = (0..3)
        .map(|n| record("BackupJobCompleted", n, "vol-a"))
        .collect();
    log.push(format!("dedup {:?}", decide(store, &rules, &d).await));
    log.push(format!("dedup again {:?}", decide(store, &rules, &d).await));
    // A threshold crossed across deliveries.
    let t: Vec<Value> = (0..4)
        .map(|n| record("CopyJobCompleted", 10 + n, "vol-t"))
        .collect();
    log.push(format!(
        "threshold 2 {:?}",
        decide(store, &rules, &t[..2]).await
    ));
    log.push(format!(
        "threshold 3rd {:?}",
        decide(store, &rules, &t[2..3]).await
    ));
    log.push(format!(
        "threshold 4th {:?}",
        decide(store, &rules, &t[3..]).await
    ));
    // A group of twelve new volumes (a storm of new windows), then it redelivered.
    let g: Vec<Value> = (0..12)
        .map(|n| record("RestoreJobCompleted", 20 + n, &format!("vol-g{n:02}")))
        .collect();
    log.push(format!("group {:?}", decide(store, &rules, &g).await));
    log.push(format!("group again {:?}", decide(store, &rules, &g).await));
    // Many new windows of an ungrouped rule, one of which exists already.
    let m: Vec<Value> = (0..15)
        .map(|n| record("BackupJobCompleted", 40 + n, &format!("vol-m{n:02}")))
        .chain([record("BackupJobCompleted", 60, "vol-a")])
        .collect();
    log.push(format!("many {:?}", decide(store, &rules, &m).await));
    log.push(format!("many again {:?}", decide(store, &rules, &m).await));
    // A group with a wait: its first alert waits.
    let w: Vec<Value> = (0..3)
        .map(|n| record("DeleteRecoveryPoint", 70 + n, &format!("vol-w{n}")))
        .collect();
    log.push(format!("wait {:?}", decide(store, &rules, &w).await));
    log.push(format!("wait again {:?}", decide(store, &rules, &w).await));
    // The windows left behind.
    for a in alerts(
        &rules,
        &[d[0].clone(), t[0].clone(), m[0].clone(), m[15].clone()],
    ) {
        let rule = rules
            .rules()
            .iter()
            .find(|r| r.id == a.rule_id)
            .expect("rule");
        let (w, _) = trail_alerts::lambda::state::window_of(rule, &a).expect("window");
        let state = store.window(&w.id()).await.expect("window");
        log.push(format!("window {} {}", a.rule_id, seen(state)));
    }
    for a in alerts(&rules, &[g[0].clone(), w[0].clone()]) {
        let rule = rules
            .rules()
            .iter()
            .find(|r| r.id == a.rule_id)
            .expect("rule");
        let (gw, _) = trail_alerts::lambda::state::group_of(rule, &a).expect("group");
        let state = store.window(&gw.id()).await.expect("window");
        log.push(format!("group window {} {}", a.rule_id, seen(state)));
    }
    log
}

/// The progress store's and the page store's decisions, step by step: heartbeats and absence
/// alerts taken once (what the function's sweep and the command line's absence audit decide
/// through), an object's parts told, the shared paging budget and open incidents.
async fn progress_and_pages<S: ProgressStore + PageStore + ?Sized>(store: &S) -> Vec<String> {
    let beat = |last_seen: i64| Beat {
        key_value: "[\"vol-a\"]".into(),
        account: "481726354019".into(),
        region: "eu-west-1".into(),
        last_seen,
        alerted_for: None,
    };
    let mut log = Vec::new();
    let mut say = |what: &str, v: String| log.push(format!("{what}: {v}"));
    say(
        "first beat",
        format!("{:?}", store.heartbeat("r", &beat(T0)).await.expect("beat")),
    );
    say(
        "missing",
        format!("{:?}", store.mark_missing("r", &beat(T0)).await),
    );
    say(
        "missing again",
        format!("{:?}", store.mark_missing("r", &beat(T0)).await),
    );
    let back = store
        .heartbeat("r", &beat(T0 + 100_000))
        .await
        .expect("beat");
    say(
        "back",
        format!("{:?}", back.map(|b| (b.last_seen, b.alerted_for))),
    );
    say(
        "missing before",
        format!("{:?}", store.mark_missing("r", &beat(T0)).await),
    );
    let expected = Beat {
        key_value: "[\"vol-never\"]".into(),
        account: "*".into(),
        region: "*".into(),
        ..beat(T0)
    };
    say(
        "expected",
        format!("{:?}", store.mark_missing("r", &expected).await),
    );
    say(
        "parts before",
        format!("{:?}", store.parts_told("s3://b/k").await),
    );
    store
        .note_parts_told("s3://b/k", 3, 42, T0 + 86_400)
        .await
        .expect("note");
    say("parts", format!("{:?}", store.parts_told("s3://b/k").await));
    let ms = NOW * 1000;
    for (wanted, at) in [
        (100, ms),
        (50, ms + 1_000),
        (30, ms + 61_000),
        (100, ms + 62_000),
    ] {
        let granted = store.take_shared("rk", wanted, 120, 61_000, at).await;
        say(
            &format!("budget {wanted} at +{}s", (at - ms) / 1000),
            format!("{granted:?}"),
        );
    }
    store
        .note_open(&["k1".into(), "k2".into()], NOW + 86_400)
        .await
        .expect("open");
    say(
        "open",
        format!(
            "{:?}",
            store
                .open_of(&["k2".into(), "k3".into(), "k1".into()])
                .await
        ),
    );
    store.close_open(&["k1".into()]).await.expect("close");
    say(
        "open after",
        format!("{:?}", store.open_of(&["k1".into(), "k2".into()]).await),
    );
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_decide_alike() {
    let memory = scenarios(&MemoryState::default()).await;
    let moto = Moto::start();
    let shared = loopback_sdk_config(&moto.endpoint, |l| l).await;
    let client = aws_sdk_dynamodb::Client::new(&shared);
    crate::util::create_state_table(&client, "stores-state").await;
    let table = DynamoState::new(client, "stores-state");
    let dynamo: Arc<dyn StateStore> = Arc::new(table.clone());
    let dynamo = scenarios(dynamo.as_ref()).await;
    let (memory_pages, dynamo_pages) = (
        progress_and_pages(&MemoryState::default()).await,
        progress_and_pages(&table).await,
    );
    assert_eq!(memory_pages, dynamo_pages);
    for want in [
        "first beat: None",
        "missing: Ok(true)",
        "missing again: Ok(false)",
        "back: Some((1722477600, Some(1722477600)))",
        "missing before: Ok(false)",
        "expected: Ok(true)",
        "parts before: Ok(None)",
        "parts: Ok(Some((3, 42)))",
        "budget 100 at +0s: Ok(100)",
        "budget 50 at +1s: Ok(20)",
        "budget 30 at +61s: Ok(30)",
        "budget 100 at +62s: Ok(90)",
        "open: Ok([\"k2\", \"k1\"])",
        "open after: Ok([\"k2\"])",
    ] {
        assert!(
            memory_pages.iter().any(|l| l == want),
            "{want}: {memory_pages:#?}"
        );
    }
    assert_eq!(memory.len(), dynamo.len());
    for (m, d) in memory.iter().zip(&dynamo) {
        assert_eq!(m, d, "the memory store (left) and DynamoDB (right) differ");
    }
    // And what they agree on is what the rules say: (scenario, alerts out, held, gathered,
    // waiting).
    let expect = [
        ("dedup", 1, 2, 0, 0),
        ("dedup again", 0, 3, 0, 0),
        ("threshold 2", 0, 2, 0, 0),
        ("threshold 3rd", 1, 0, 0, 0),
        ("threshold 4th", 0, 1, 0, 0),
        ("group", 1, 0, 11, 0),
        // Counted before, each once: a redelivery of a group's matches is counted in the
        // group again, not told.
        ("group again", 0, 0, 12, 0),
        ("many", 15, 1, 0, 0),
        ("many again", 0, 16, 0, 0),
        ("wait", 0, 0, 2, 1),
        ("wait again", 0, 0, 2, 1),
    ];
    for (line, (name, out, held, grouped, waiting)) in memory.iter().zip(expect) {
        let counts = format!("held: {held}, grouped: {grouped}, waiting: {waiting}");
        assert!(
            line.starts_with(&format!("{name} Decided")) && line.contains(&counts),
            "{line}: wanted {counts}"
        );
        let listed = line.split(", held:").next().unwrap_or_default();
        let alerts_out = listed.matches("(\"").count();
        assert_eq!(alerts_out, out, "{line}");
    }
    // Every match counted once, whichever delivery or redelivery brought it; the threshold
    // claimed by its third match.
    for window in [
        "window dedup count 4 claimed by Some(\"BackupJobCompleted-000000\")",
        "window threshold count 4 claimed by Some(\"CopyJobCompleted-000012\")",
        "group window grouped count 12 ",
        "group window waiting count 3 ",
    ] {
        assert!(
            memory.iter().any(|l| l.starts_with(window)),
            "{window}: {memory:#?}"
        );
    }
}
