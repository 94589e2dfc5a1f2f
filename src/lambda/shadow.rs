//! Shadow rules (`mode: shadow`): evaluated like any rule, their alerts never published. The
//! function writes them as JSON lines (each alert's jsonl line with `"shadow": true`) to
//! `SHADOW_PREFIX`, one object per delivery, and counts them in its metrics — a new rule is
//! trialled on live traffic before it pages anyone.
//!
//! The object's key is a function of the delivery alone (`<prefix><YYYY>/<MM>/<DD>/<hash of
//! the source>.jsonl`, dated by the newest eventTime among the alerts), so a retried
//! invocation overwrites what it wrote instead of writing it twice. Without `SHADOW_PREFIX`
//! the lines go to the function's log.

use tracing::info;

use crate::alert::Alert;
use crate::rules::S3Object;

use super::ports::{FetchError, ObjectWriter};

/// Splits off the alerts of shadow rules: `(live, shadow)`.
pub fn split(alerts: Vec<Alert>) -> (Vec<Alert>, Vec<Alert>) {
    alerts.into_iter().partition(|a| !a.shadow)
}

/// The key of a delivery's shadow alerts under `prefix`.
pub fn key_for(prefix: &S3Object, origin: &str, shadow: &[Alert]) -> String {
    let newest = shadow
        .iter()
        .filter_map(|a| a.event.event_time.as_deref())
        .filter_map(crate::time::parse_timestamp)
        .max();
    let day = match newest {
        Some(t) => crate::time::format_timestamp(t)[..10].replace('-', "/"),
        None => "undated".to_owned(),
    };
    format!(
        "{}{day}/{:016x}.jsonl",
        prefix.key,
        super::state::stable_hash(origin.as_bytes())
    )
}

/// The JSON lines of shadow alerts.
pub fn lines(shadow: &[Alert]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in shadow {
        a.write_json_line(&mut out);
        out.push(b'\n');
    }
    out
}

/// Where shadow alerts go.
#[derive(Clone, Copy)]
pub struct Shadow<'a> {
    pub writer: Option<&'a dyn ObjectWriter>,
    pub prefix: Option<&'a S3Object>,
}

impl Shadow<'_> {
    /// Writes a delivery's shadow alerts (nothing when there are none). A failed write fails
    /// the delivery, with the store's verdict on retrying: a trial that silently lost its
    /// findings would be read as "the rule never fired".
    pub async fn write(&self, origin: &str, shadow: &[Alert]) -> Result<(), FetchError> {
        if shadow.is_empty() {
            return Ok(());
        }
        match (self.writer, self.prefix) {
            (Some(writer), Some(prefix)) => {
                let key = key_for(prefix, origin, shadow);
                writer.put(&prefix.bucket, &key, lines(shadow)).await?;
                info!(alerts = shadow.len(), object = %format!("s3://{}/{key}", prefix.bucket), "shadow alerts written");
            }
            _ => {
                for a in shadow {
                    info!(shadow = %a.json_line(), "shadow alert (SHADOW_PREFIX is not set)");
                }
            }
        }
        Ok(())
    }
}
