//! Telling CloudTrail log objects from everything else a trail's bucket holds, by key.
//!
//! CloudTrail writes `[prefix/]AWSLogs/[o-org/]<account>/CloudTrail/<region>/YYYY/MM/DD/
//! <account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz`; Insights logs go under
//! `CloudTrail-Insight/` with `_CloudTrail-Insight_` in the name, digest files under
//! `CloudTrail-Digest/` with `_CloudTrail-Digest_`. Anything else (AWS Config snapshots, folder
//! markers, objects of other tools) is `Other`.

/// What an object key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A CloudTrail log file (management and data events).
    Log,
    /// A CloudTrail Insights log file (it holds `Records` too).
    InsightLog,
    /// A digest file (integrity validation): no records.
    Digest,
    /// Anything else.
    Other,
}

impl KeyKind {
    /// Whether objects of this kind hold CloudTrail records to read.
    pub fn has_records(self) -> bool {
        matches!(self, KeyKind::Log | KeyKind::InsightLog)
    }
}

/// Classifies an S3 object key (`/` separated): by its name, which must sit under the folder
/// CloudTrail writes that kind of file to.
pub fn classify(key: &str) -> KeyKind {
    classify_with(key, true)
}

/// Classifies a file by its name alone, wherever it sits: `aws s3 cp --recursive` of one day's
/// folder gives a flat folder of correctly named logs.
pub fn classify_name(name: &str) -> KeyKind {
    classify_with(name.rsplit('/').next().unwrap_or(name), false)
}

fn classify_with(key: &str, check_folders: bool) -> KeyKind {
    if key.ends_with('/') {
        return KeyKind::Other;
    }
    let name = key.rsplit('/').next().unwrap_or(key);
    let Some(stem) = name
        .strip_suffix(".json.gz")
        .or_else(|| name.strip_suffix(".json"))
    else {
        return KeyKind::Other;
    };
    // <account>_<kind>_<region>_…
    let mut parts = stem.split('_');
    let (Some(account), Some(kind), Some(region)) = (parts.next(), parts.next(), parts.next())
    else {
        return KeyKind::Other;
    };
    if !is_account(account) || region.is_empty() {
        return KeyKind::Other;
    }
    let rest: Vec<&str> = parts.collect();
    let folder_ok = |folder: &str| {
        // When the key has folders, the file must sit under the matching CloudTrail folder.
        !check_folders || !key.contains('/') || key.split('/').any(|segment| segment == folder)
    };
    match kind {
        "CloudTrail" if rest.len() == 2 && is_timestamp(rest[0]) && folder_ok("CloudTrail") => {
            KeyKind::Log
        }
        "CloudTrail-Insight"
            if rest.len() == 2 && is_timestamp(rest[0]) && folder_ok("CloudTrail-Insight") =>
        {
            KeyKind::InsightLog
        }
        "CloudTrail-Digest" if folder_ok("CloudTrail-Digest") => KeyKind::Digest,
        _ => KeyKind::Other,
    }
}

/// The account, Region and delivery time a log's file name (or key) carries:
/// `<account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<id>.json[.gz]` — how far the trail has got
/// for that account and Region.
pub fn log_name_parts(key: &str) -> Option<(String, String, i64)> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = name
        .strip_suffix(".json.gz")
        .or_else(|| name.strip_suffix(".json"))?;
    let mut parts = stem.split('_');
    let (account, kind, region, time) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if !is_account(account) || !kind.starts_with("CloudTrail") || !is_timestamp(time) {
        return None;
    }
    let t = crate::time::parse_timestamp(&format!(
        "{}-{}-{}T{}:{}:00Z",
        &time[0..4],
        &time[4..6],
        &time[6..8],
        &time[9..11],
        &time[11..13]
    ))?;
    Some((account.to_owned(), region.to_owned(), t))
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `20230710T1145Z`
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 14
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..13].iter().all(u8::is_ascii_digit)
        && b[13] == b'Z'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys() {
        for key in [
            "AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/10/123456789012_CloudTrail_us-east-1_20230710T1145Z_7xgocspSowgK0Gto.json.gz",
            "my prefix/AWSLogs/123456789012/CloudTrail/eu-west-1/2023/07/10/123456789012_CloudTrail_eu-west-1_20230710T1145Z_abc.json.gz",
            "AWSLogs/o-exampleorgid/111122223333/CloudTrail/us-west-2/2024/01/01/111122223333_CloudTrail_us-west-2_20240101T0000Z_x.json.gz",
            "218007301253_CloudTrail_us-east-1_20230710T1145Z_7xgocspSowgK0Gto.json",
        ] {
            assert_eq!(classify(key), KeyKind::Log, "{key}");
        }
    }

    #[test]
    fn insight_digest_and_other_keys() {
        assert_eq!(
            classify("AWSLogs/123456789012/CloudTrail-Insight/us-east-1/2024/01/01/123456789012_CloudTrail-Insight_us-east-1_20240101T0000Z_x.json.gz"),
            KeyKind::InsightLog
        );
        assert_eq!(
            classify("AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/01/01/123456789012_CloudTrail-Digest_us-east-1_trail_us-east-1_20240101T000000Z.json.gz"),
            KeyKind::Digest
        );
        for key in [
            "AWSLogs/123456789012/Config/us-east-1/2024/1/1/ConfigSnapshot/123456789012_Config_us-east-1_ConfigSnapshot_20240101T000000Z_x.json.gz",
            "AWSLogs/123456789012/CloudTrail/us-east-1/2024/01/01/",
            "AWSLogs/123456789012/CloudTrail/",
            "notes.txt",
            "AWSLogs/123456789012/CloudTrail/us-east-1/2024/01/01/123456789012_CloudTrail_us-east-1_bad_x.json.gz",
            "AWSLogs/123456789012/Other/us-east-1/123456789012_CloudTrail_us-east-1_20240101T0000Z_x.json.gz",
            "AWSLogs/12345/CloudTrail/us-east-1/2024/01/01/12345_CloudTrail_us-east-1_20240101T0000Z_x.json.gz",
        ] {
            assert_eq!(classify(key), KeyKind::Other, "{key}");
        }
        assert!(KeyKind::Log.has_records() && KeyKind::InsightLog.has_records());
        assert_eq!(
            log_name_parts("dl/123456789012_CloudTrail_us-east-1_20240101T0805Z_x.json.gz"),
            Some(("123456789012".into(), "us-east-1".into(), 1_704_096_300))
        );
        assert_eq!(log_name_parts("notes.json"), None);
        // By name alone, wherever the file sits.
        assert_eq!(
            classify_name("dl/123456789012_CloudTrail_us-east-1_20240101T0000Z_x.json.gz"),
            KeyKind::Log
        );
        assert!(!KeyKind::Digest.has_records() && !KeyKind::Other.has_records());
    }
}
