//! Configuration shared by the command line and the function, read once into typed values
//! through a lookup function, so that tests pass a map instead of mutating the process
//! environment; and the one definition of what a topic ARN looks like.

use crate::reader::{Limits, DEFAULT_MAX_DECOMPRESSED_BYTES, DEFAULT_MAX_RECORD_BYTES};
use crate::rules::{parse_sources, RuleSource};

/// A variable whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

/// Reads `MAX_DECOMPRESSED_BYTES` and `MAX_RECORD_BYTES` (bytes, or with a `KiB`/`MiB`/`GiB`
/// suffix); unset or empty means the default.
pub fn limits(lookup: impl Fn(&str) -> Option<String>) -> Result<Limits, ConfigError> {
    let max_decompressed_bytes =
        size(&lookup, "MAX_DECOMPRESSED_BYTES")?.unwrap_or(DEFAULT_MAX_DECOMPRESSED_BYTES);
    let max_record_bytes = match size(&lookup, "MAX_RECORD_BYTES")? {
        Some(n) => usize::try_from(n).map_err(|_| ConfigError {
            variable: "MAX_RECORD_BYTES",
            value: n.to_string(),
            reason: "too large for this machine".into(),
        })?,
        None => DEFAULT_MAX_RECORD_BYTES,
    };
    Ok(Limits {
        max_decompressed_bytes,
        max_record_bytes,
    })
}

/// Reads `RULES`: comma-separated rule sources; unset or empty means the default sources.
pub fn rule_sources(lookup: impl Fn(&str) -> Option<String>) -> Vec<RuleSource> {
    let list = lookup("RULES").unwrap_or_default();
    let texts: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    parse_sources(&texts)
}

/// Whether `arn` is an SNS topic ARN: `arn:<partition>:sns:<region>:<account>:<name>`, the
/// account twelve digits, the name 1 to 256 characters.
pub fn valid_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty()
        && parts[5].len() <= 256
}

fn size(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<Option<u64>, ConfigError> {
    let Some(raw) = lookup(variable) else {
        return Ok(None);
    };
    let text = raw.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let err = |reason: &str| ConfigError {
        variable,
        value: raw.clone(),
        reason: reason.into(),
    };
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| err("expected a whole number of bytes, optionally with KiB, MiB or GiB"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        _ => return Err(err("unknown unit; use KiB, MiB or GiB")),
    };
    let bytes = n.checked_mul(scale).ok_or_else(|| err("too large"))?;
    if bytes == 0 {
        return Err(err("must be greater than zero"));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_and_units() {
        assert_eq!(limits(env(&[])).unwrap(), Limits::default());
        let l = limits(env(&[
            ("MAX_DECOMPRESSED_BYTES", "512MiB"),
            ("MAX_RECORD_BYTES", "1048576"),
        ]))
        .unwrap();
        assert_eq!(l.max_decompressed_bytes, 512 << 20);
        assert_eq!(l.max_record_bytes, 1 << 20);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = limits(env(&[("MAX_RECORD_BYTES", "lots")])).unwrap_err();
        assert_eq!(e.variable, "MAX_RECORD_BYTES");
        assert!(e.to_string().starts_with("MAX_RECORD_BYTES=\"lots\""));
        assert!(limits(env(&[("MAX_DECOMPRESSED_BYTES", "0")])).is_err());
        assert!(limits(env(&[("MAX_DECOMPRESSED_BYTES", "5TiB")])).is_err());
    }

    #[test]
    fn rule_sources_default_to_builtin() {
        assert_eq!(rule_sources(env(&[])), vec![RuleSource::Builtin]);
        assert_eq!(
            rule_sources(env(&[("RULES", "builtin, ./more.yaml,")])),
            vec![RuleSource::Builtin, RuleSource::Path("./more.yaml".into())]
        );
    }

    #[test]
    fn topic_arns() {
        assert!(valid_topic_arn("arn:aws:sns:us-east-1:123456789012:alerts"));
        assert!(valid_topic_arn(
            "arn:aws-us-gov:sns:us-gov-west-1:123456789012:a.fifo"
        ));
        assert!(!valid_topic_arn("alerts"));
        assert!(!valid_topic_arn(
            "arn:aws:sqs:us-east-1:123456789012:alerts"
        ));
        assert!(!valid_topic_arn("arn:aws:sns:us-east-1:1234:alerts"));
        assert!(!valid_topic_arn("arn:aws:sns::123456789012:alerts"));
    }
}
