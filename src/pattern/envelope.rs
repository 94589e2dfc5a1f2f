//! The EventBridge event that CloudTrail's integration builds from a record, for patterns written
//! in the envelope form (`source`, `detail-type`, `detail`, …).
//!
//! It is never materialised as JSON: the matcher asks it for fields, and `detail` is the record.

use serde_json::Value;

/// The EventBridge envelope around one CloudTrail record.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub(crate) record: &'a Value,
    pub(crate) version: Value,
    pub(crate) source: Option<Value>,
    pub(crate) detail_type: Option<Value>,
    pub(crate) account: Option<&'a Value>,
    pub(crate) region: Option<&'a Value>,
    pub(crate) time: Option<&'a Value>,
    pub(crate) id: Option<&'a Value>,
    pub(crate) resources: Value,
}

impl<'a> Envelope<'a> {
    /// Builds the envelope fields from a record: `source` = `aws.` + the service part of
    /// `eventSource`, `detail-type` from `eventType`, `account` = `recipientAccountId`,
    /// `region` = `awsRegion`, `time` = `eventTime`, `id` = `eventID`, `resources` = `[]`,
    /// `version` = `"0"`, `detail` = the record.
    pub fn new(record: &'a Value) -> Self {
        let text = |key: &str| record.get(key).and_then(Value::as_str);
        Envelope {
            record,
            version: Value::String("0".into()),
            source: text("eventSource").and_then(source_for).map(Value::String),
            detail_type: text("eventType")
                .and_then(detail_type_for)
                .map(|d| Value::String(d.into())),
            account: record.get("recipientAccountId"),
            region: record.get("awsRegion"),
            time: record.get("eventTime"),
            id: record.get("eventID"),
            resources: Value::Array(Vec::new()),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match key {
            "detail" => Some(self.record),
            "source" => self.source.as_ref(),
            "detail-type" => self.detail_type.as_ref(),
            "account" => self.account,
            "region" => self.region,
            "time" => self.time,
            "id" => self.id,
            "version" => Some(&self.version),
            "resources" => Some(&self.resources),
            _ => None,
        }
    }
}

/// `backup.amazonaws.com` → `backup`: the service a CloudTrail `eventSource` names.
pub fn service_of(event_source: &str) -> Option<&str> {
    service_len(event_source.as_bytes()).map(|n| &event_source[..n])
}

/// The length of the service part of an `eventSource` given as bytes (up to the first `.`);
/// `None` when it is empty. The one definition [`service_of`] and the rule index share.
pub fn service_len(event_source: &[u8]) -> Option<usize> {
    let n = event_source
        .iter()
        .position(|b| *b == b'.')
        .unwrap_or(event_source.len());
    (n > 0).then_some(n)
}

/// `backup.amazonaws.com` → `aws.backup`: the `source` EventBridge gives a CloudTrail event.
pub fn source_for(event_source: &str) -> Option<String> {
    service_of(event_source).map(|service| format!("aws.{service}"))
}

/// The `detail-type` EventBridge gives a CloudTrail event of this `eventType`.
///
/// The EventBridge user guide lists sign-in events as "AWS Console Signin via CloudTrail", but
/// the events EventBridge delivers (and the rules users already have) spell it
/// "AWS Console Sign In via CloudTrail"; the delivered spelling is used so pasted rules work.
pub fn detail_type_for(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "AwsApiCall" => "AWS API Call via CloudTrail",
        "AwsServiceEvent" => "AWS Service Event via CloudTrail",
        "AwsConsoleSignIn" => "AWS Console Sign In via CloudTrail",
        "AwsConsoleAction" => "AWS Console Action via CloudTrail",
        "AwsCloudTrailInsight" => "AWS Insight via CloudTrail",
        _ => return None,
    })
}

/// The `eventType` of CloudTrail events EventBridge gives this `detail-type`: the inverse of
/// [`detail_type_for`].
pub fn event_type_for(detail_type: &str) -> Option<&'static str> {
    [
        "AwsApiCall",
        "AwsServiceEvent",
        "AwsConsoleSignIn",
        "AwsConsoleAction",
        "AwsCloudTrailInsight",
    ]
    .into_iter()
    .find(|t| detail_type_for(t) == Some(detail_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_come_from_the_record() {
        let record = json!({
            "eventSource": "backup.amazonaws.com",
            "eventType": "AwsServiceEvent",
            "recipientAccountId": "123456789012",
            "awsRegion": "us-east-1",
            "eventTime": "2019-01-10T08:24:39Z",
            "eventID": "2e7e4fcf",
        });
        let e = Envelope::new(&record);
        assert_eq!(e.get("source"), Some(&json!("aws.backup")));
        assert_eq!(
            e.get("detail-type"),
            Some(&json!("AWS Service Event via CloudTrail"))
        );
        assert_eq!(e.get("account"), Some(&json!("123456789012")));
        assert_eq!(e.get("region"), Some(&json!("us-east-1")));
        assert_eq!(e.get("time"), Some(&json!("2019-01-10T08:24:39Z")));
        assert_eq!(e.get("detail"), Some(&record));
        assert_eq!(e.get("resources"), Some(&json!([])));
        assert_eq!(e.get("nope"), None);
    }

    #[test]
    fn unknown_or_missing_fields_are_absent() {
        let record = json!({"eventType": "AwsVpceEvent"});
        let e = Envelope::new(&record);
        assert_eq!(e.get("source"), None);
        assert_eq!(e.get("detail-type"), None);
        assert_eq!(source_for("s3.amazonaws.com").as_deref(), Some("aws.s3"));
        assert_eq!(source_for(""), None);
        assert_eq!(service_of("backup.amazonaws.com"), Some("backup"));
        assert_eq!(service_of(".amazonaws.com"), None);
    }
}
