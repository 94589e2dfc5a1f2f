//! Helpers shared by the integration tests.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The sample trail files of `events/trails`, by key (as in the bucket `trail-alerts-demo`).
pub const K1: &str = "AWSLogs/123456789012/CloudTrail/us-east-1/2019/01/10/123456789012_CloudTrail_us-east-1_20190110T1350Z_BackupSamples0001.json.gz";
pub const K2: &str = "AWSLogs/o-exampleorgid/123456789012/CloudTrail/ca-central-1/2020/06/02/123456789012_CloudTrail_ca-central-1_20200602T0035Z_OrgPlanSamples01.json.gz";
pub const K3: &str = "AWSLogs/111122223333/CloudTrail/us-west-2/2020/08/14/111122223333_CloudTrail_us-west-2_20200814T1635Z_OutpostsSamples1.json.gz";

/// The alerts K1 raises with the built-in pack, by rule id, sorted.
pub const K1_RULES: [&str; 4] = [
    "backup-copy-job-failed",
    "backup-destructive-call",
    "backup-job-failed",
    "backup-restore-failed",
];

/// The alerts all three sample trails raise, by rule id, sorted.
pub const ALL_RULES: [&str; 8] = [
    "backup-copy-job-failed",
    "backup-destructive-call",
    "backup-job-failed",
    "backup-org-plan-changed",
    "backup-org-plan-changed",
    "backup-restore-failed",
    "outposts-call-failed",
    "outposts-change",
];

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// Reads a JSON fixture.
pub fn json_fixture(rel: &str) -> serde_json::Value {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The bytes of a sample trail file.
pub fn trail(key: &str) -> Vec<u8> {
    std::fs::read(root().join("events/trails").join(key)).expect("sample trail")
}

/// An `events/` payload, parsed.
pub fn event(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("events").join(name)).expect("event");
    serde_json::from_str(&text).expect("json")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// An SDK configuration that only ever talks to `endpoint` on loopback: region and credentials
/// are given, so the default chain asks nothing else (no instance metadata).
pub async fn loopback_sdk_config(
    endpoint: &str,
    loader: impl FnOnce(aws_config::ConfigLoader) -> aws_config::ConfigLoader,
) -> aws_config::SdkConfig {
    loader(aws_config::defaults(aws_config::BehaviorVersion::latest()))
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// An S3 client on a loopback configuration, with path-style addressing.
pub fn loopback_s3(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}
