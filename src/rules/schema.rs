//! The CloudTrail record's documented fields (the CloudTrail User Guide's "CloudTrail record
//! contents" for management, data, network activity and Insights events), for the checks made
//! when rules load and for the Sigma import.

/// The top-level fields of a CloudTrail record.
pub const RECORD_FIELDS: [&str; 32] = [
    "eventVersion",
    "userIdentity",
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "errorMessage",
    "requestParameters",
    "responseElements",
    "additionalEventData",
    "requestID",
    "eventID",
    "eventType",
    "apiVersion",
    "managementEvent",
    "readOnly",
    "resources",
    "recipientAccountId",
    "serviceEventDetails",
    "sharedEventID",
    "vpcEndpointId",
    "vpcEndpointAccountId",
    "eventCategory",
    "addendum",
    "sessionCredentialFromConsole",
    "edgeDeviceDetails",
    "tlsDetails",
    "eventContext",
    "insightDetails",
];

/// Top-level fields CloudTrail always writes as one string.
const TEXT_FIELDS: [&str; 17] = [
    "eventVersion",
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "errorMessage",
    "requestID",
    "eventID",
    "eventType",
    "recipientAccountId",
    "sharedEventID",
    "vpcEndpointId",
    "vpcEndpointAccountId",
    "eventCategory",
];

/// Whether CloudTrail writes this path as text, whatever it holds: a number or a boolean given
/// for it never matches (patterns compare types). Account ids and ARNs anywhere are text.
pub fn written_as_text(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    TEXT_FIELDS.contains(&path)
        || path.starts_with("userIdentity.")
        || ["accountId", "AccountId", "arn", "Arn", "ARN"]
            .iter()
            .any(|s| last.ends_with(s))
}

/// Whether CloudTrail writes this path with one value, never a list: the text fields, the
/// flags, the caller's identity and the TLS details.
pub fn single_valued(path: &str) -> bool {
    TEXT_FIELDS.contains(&path)
        || [
            "readOnly",
            "managementEvent",
            "apiVersion",
            "sessionCredentialFromConsole",
        ]
        .contains(&path)
        || path.starts_with("userIdentity.") && !path.contains("webIdFederationData")
        || path.starts_with("tlsDetails.")
}
