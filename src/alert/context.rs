//! What an alert says beyond the record's own fields: who did it, as a person reads it; the
//! account's name, OU path and tags where they are known; and links a person clicks (the
//! CloudTrail event, the resource's console page, IAM Identity Center shortcuts into the right
//! account).
//!
//! Who and the links come from the record alone; the account's context comes from outside (the
//! rule files' `accounts:` map, or AWS Organizations in the function) and is attached with
//! [`super::Alert::with_account`], which never fails: an alert without it names the account id.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// An account as people know it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountInfo {
    pub name: Option<String>,
    /// From the root down, without the root: `["Prod", "Payments"]`.
    pub ou_path: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

impl AccountInfo {
    /// `Root/Prod/Payments`, or `None` when the OU path is unknown.
    pub fn ou(&self) -> Option<String> {
        (!self.ou_path.is_empty()).then(|| format!("Root/{}", self.ou_path.join("/")))
    }

    pub fn to_json(&self, id: &str) -> Value {
        json!({"id": id, "name": self.name, "ou": self.ou(), "tags": self.tags})
    }

    /// Another source's knowledge filling what this one lacks (this one wins).
    pub fn or(mut self, other: &AccountInfo) -> AccountInfo {
        if self.name.is_none() {
            self.name = other.name.clone();
        }
        if self.ou_path.is_empty() {
            self.ou_path = other.ou_path.clone();
        }
        for (k, v) in &other.tags {
            self.tags.entry(k.clone()).or_insert_with(|| v.clone());
        }
        self
    }
}

/// A link a person clicks: what it opens, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub title: String,
    pub url: String,
}

/// IAM Identity Center shortcut links: the portal's start URL (`https://d-….awsapps.com/start`)
/// and the permission set to open accounts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sso {
    pub start_url: String,
    pub permission_set: String,
}

impl Sso {
    /// A console URL opened through the portal, in `account` with the permission set.
    pub fn shortcut(&self, account: &str, destination: &str) -> String {
        format!(
            "{}/#/console?account_id={}&role_name={}&destination={}",
            self.start_url.trim_end_matches('/'),
            encode(account),
            encode(&self.permission_set),
            encode(destination)
        )
    }
}

/// Percent-encoding of everything but the unreserved characters (RFC 3986): what a record
/// puts into a URL cannot end it, add a parameter or break out of a Markdown link.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A string at a path of keys, if it is one and not empty.
fn at<'a>(record: &'a Value, keys: &[&str]) -> Option<&'a str> {
    crate::json::field_at(record, keys)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Who made the call, as a person reads it:
/// - an IAM Identity Center session (`…:assumed-role/AWSReservedSSO_<PermissionSet>_<hash>/<user>`)
///   → `alice@example.com via AdministratorAccess (IAM Identity Center)`;
/// - another assumed role → `role deploy-pipeline (session ci-1234)`;
/// - an IAM user → `IAM user mateo`; the root user → `root user of 123456789012`;
/// - a service (`AWSService`, or `invokedBy`) → `service backup.amazonaws.com`;
/// - a federated or web-identity user → that user's name.
///
/// A call a service made for a principal says both (`… through backup.amazonaws.com`).
/// `None` for a record without `userIdentity` (an EventBridge event of a service).
pub fn actor(record: &Value) -> Option<String> {
    let ui = crate::json::field(record, "userIdentity")?;
    let kind = at(ui, &["type"]).unwrap_or("");
    let arn = at(ui, &["arn"]).unwrap_or("");
    let invoked_by = at(ui, &["invokedBy"]);
    let who = match kind {
        "AssumedRole" => {
            let rest = arn.split_once(":assumed-role/").map(|(_, r)| r);
            let role = rest
                .and_then(|r| r.split('/').next())
                .or_else(|| at(ui, &["sessionContext", "sessionIssuer", "userName"]));
            let session = rest.and_then(|r| r.split_once('/')).map(|(_, s)| s);
            match (role, session) {
                (Some(role), Some(session)) => match permission_set(role) {
                    Some(set) => format!("{session} via {set} (IAM Identity Center)"),
                    None => format!("role {role} (session {session})"),
                },
                (Some(role), None) => format!("role {role}"),
                _ => at(ui, &["principalId"])
                    .unwrap_or("an assumed role")
                    .to_owned(),
            }
        }
        "IAMUser" => format!(
            "IAM user {}",
            at(ui, &["userName"])
                .or_else(|| arn.rsplit('/').next())
                .unwrap_or("?")
        ),
        "Root" => format!(
            "root user of {}",
            at(ui, &["accountId"]).unwrap_or("the account")
        ),
        "AWSService" => format!("service {}", invoked_by.unwrap_or("an AWS service")),
        "FederatedUser" => format!(
            "federated user {}",
            arn.rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or("?")
        ),
        "WebIdentityUser" | "SAMLUser" | "IdentityCenterUser" => at(ui, &["userName"])
            .or(at(ui, &["principalId"]))?
            .to_owned(),
        "AWSAccount" => format!(
            "account {}",
            at(ui, &["accountId"]).unwrap_or(at(ui, &["principalId"]).unwrap_or("?"))
        ),
        _ => {
            return at(ui, &["arn"])
                .or(invoked_by)
                .or(at(ui, &["principalId"]))
                .map(str::to_owned)
        }
    };
    Some(match invoked_by {
        Some(service) if kind != "AWSService" => format!("{who} through {service}"),
        _ => who,
    })
}

/// The permission set behind an Identity Center role name (`AWSReservedSSO_<set>_<hash>`).
fn permission_set(role: &str) -> Option<&str> {
    let rest = role.strip_prefix("AWSReservedSSO_")?;
    let (set, hash) = rest.rsplit_once('_')?;
    (!set.is_empty() && !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(set)
}

fn console(region: &str, service: &str, fragment: &str) -> String {
    let region = encode(region);
    format!("https://{region}.console.aws.amazon.com/{service}/home?region={region}#{fragment}")
}

/// The links of an alert on `record` (a CloudTrail record or an EventBridge event) in `region`:
/// the CloudTrail event history page for the event, and the console page of the AWS Backup
/// vault, recovery point and jobs, the trail, or the outpost it is about.
pub fn links(record: &Value, region: Option<&str>) -> Vec<Link> {
    let Some(region) = region.filter(|r| !r.is_empty()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let cloudtrail_record = crate::json::field(record, "eventID").is_some()
        && crate::json::field(record, "eventSource").is_some();
    if cloudtrail_record {
        if let Some(id) = at(record, &["eventID"]) {
            out.push(Link {
                title: "CloudTrail event".into(),
                url: console(region, "cloudtrailv2", &format!("/events/{}", encode(id))),
            });
        }
    }
    // Where a Backup record or event names its vault, recovery point or job.
    let first = |paths: &[&[&str]]| paths.iter().find_map(|keys| at(record, keys));
    let vault = first(&[
        &["serviceEventDetails", "backupVaultName"],
        &["requestParameters", "backupVaultName"],
        &["detail", "backupVaultName"],
    ])
    .map(str::to_owned)
    .or_else(|| {
        first(&[
            &["serviceEventDetails", "backupVaultArn"],
            &["detail", "backupVaultArn"],
        ])
        .and_then(|arn| arn.rsplit(':').next())
        .map(str::to_owned)
    });
    let recovery_point = first(&[
        &["serviceEventDetails", "recoveryPointArn"],
        &["requestParameters", "recoveryPointArn"],
        &["detail", "recoveryPointArn"],
    ])
    .or_else(|| {
        crate::json::field(record, "resources")
            .and_then(Value::as_array)
            .and_then(|rs| {
                rs.iter()
                    .filter_map(Value::as_str)
                    .find(|r| r.contains(":recovery-point:"))
            })
    });
    if let Some(vault) = &vault {
        if let Some(rp) = recovery_point {
            out.push(Link {
                title: "Recovery point".into(),
                url: console(
                    region,
                    "backup",
                    &format!("/backupvaults/details/{}/{}", encode(vault), encode(rp)),
                ),
            });
        }
        out.push(Link {
            title: format!("Backup vault {vault}"),
            url: console(
                region,
                "backup",
                &format!("/backupvaults/details/{}", encode(vault)),
            ),
        });
    }
    let job = first(&[
        &["serviceEventDetails", "backupJobId"],
        &["serviceEventDetails", "copyJobId"],
        &["serviceEventDetails", "restoreJobId"],
        &["detail", "backupJobId"],
        &["detail", "copyJobId"],
        &["detail", "restoreJobId"],
    ]);
    if job.is_some() {
        out.push(Link {
            title: "AWS Backup jobs".into(),
            url: console(region, "backup", "/jobs"),
        });
    }
    let source = at(record, &["eventSource"]).unwrap_or("");
    if source == "cloudtrail.amazonaws.com" {
        if let Some(trail) = first(&[
            &["requestParameters", "name"],
            &["requestParameters", "trailName"],
        ]) {
            let arn = if trail.starts_with("arn:") {
                trail.to_owned()
            } else {
                let account = at(record, &["recipientAccountId"]).unwrap_or("");
                format!("arn:aws:cloudtrail:{region}:{account}:trail/{trail}")
            };
            out.push(Link {
                title: "Trail".into(),
                url: console(region, "cloudtrailv2", &format!("/trails/{}", encode(&arn))),
            });
        }
    }
    if source == "outposts.amazonaws.com" {
        let outpost = first(&[
            &["requestParameters", "outpostId"],
            &["requestParameters", "OutpostIdentifier"],
            &["responseElements", "outpost", "outpostId"],
        ]);
        if let Some(id) = outpost {
            out.push(Link {
                title: format!("Outpost {id}"),
                url: console(
                    region,
                    "outposts",
                    &format!("OutpostDetails:OutpostId={}", encode(id)),
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_did_it() {
        let sso = json!({"userIdentity": {"type": "AssumedRole",
            "arn": "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_Access_0a1b2c3d4e5f6a7b/alice@example.com",
            "sessionContext": {"sessionIssuer": {"userName": "AWSReservedSSO_Admin_Access_0a1b2c3d4e5f6a7b"}}}});
        assert_eq!(
            actor(&sso).unwrap(),
            "alice@example.com via Admin_Access (IAM Identity Center)"
        );
        let role = json!({"userIdentity": {"type": "AssumedRole",
            "arn": "arn:aws:sts::123456789012:assumed-role/deploy-pipeline/ci-1234"}});
        assert_eq!(
            actor(&role).unwrap(),
            "role deploy-pipeline (session ci-1234)"
        );
        let via = json!({"userIdentity": {"type": "AssumedRole",
            "arn": "arn:aws:sts::123456789012:assumed-role/AWSBackupDefaultServiceRole/AWSBackup-AWSBackupDefaultServiceRole",
            "invokedBy": "backup.amazonaws.com"}});
        assert_eq!(
            actor(&via).unwrap(),
            "role AWSBackupDefaultServiceRole (session AWSBackup-AWSBackupDefaultServiceRole) through backup.amazonaws.com"
        );
        for (ui, who) in [
            (
                json!({"type": "IAMUser", "userName": "mateo", "arn": "arn:aws:iam::1:user/mateo"}),
                "IAM user mateo",
            ),
            (
                json!({"type": "Root", "accountId": "123456789012", "arn": "arn:aws:iam::123456789012:root"}),
                "root user of 123456789012",
            ),
            (
                json!({"type": "AWSService", "invokedBy": "backup.amazonaws.com"}),
                "service backup.amazonaws.com",
            ),
            (
                json!({"type": "FederatedUser", "arn": "arn:aws:sts::1:federated-user/bob"}),
                "federated user bob",
            ),
            (
                json!({"type": "AWSAccount", "accountId": "111122223333"}),
                "account 111122223333",
            ),
        ] {
            assert_eq!(actor(&json!({"userIdentity": ui})).unwrap(), who);
        }
        assert_eq!(actor(&json!({"source": "aws.backup"})), None);
        // Not Identity Center: a role merely named like it.
        assert_eq!(permission_set("AWSReservedSSO_"), None);
        assert_eq!(permission_set("MyRole_x"), None);
    }

    #[test]
    fn links_are_encoded_console_pages() {
        let record = json!({"eventID": "5c1a3e0b-0f7a", "eventSource": "backup.amazonaws.com",
            "eventName": "BackupJobCompleted", "recipientAccountId": "123456789012",
            "serviceEventDetails": {"backupJobId": "9B1C", "backupVaultName": "Vault (prod)",
                "recoveryPointArn": "arn:aws:ec2:us-east-1::snapshot/snap-1"}});
        let l = links(&record, Some("us-east-1"));
        let urls: Vec<&str> = l.iter().map(|l| l.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://us-east-1.console.aws.amazon.com/cloudtrailv2/home?region=us-east-1#/events/5c1a3e0b-0f7a",
                "https://us-east-1.console.aws.amazon.com/backup/home?region=us-east-1#/backupvaults/details/Vault%20%28prod%29/arn%3Aaws%3Aec2%3Aus-east-1%3A%3Asnapshot%2Fsnap-1",
                "https://us-east-1.console.aws.amazon.com/backup/home?region=us-east-1#/backupvaults/details/Vault%20%28prod%29",
                "https://us-east-1.console.aws.amazon.com/backup/home?region=us-east-1#/jobs",
            ]
        );
        // Nothing a record says can end the URL or start a Markdown link's text.
        assert!(l
            .iter()
            .all(|l| !l.url.contains([' ', ')', '(', ']', '[', '<', '>'])));
        assert!(links(&record, None).is_empty());
        let sso = Sso {
            start_url: "https://d-9067example.awsapps.com/start/".into(),
            permission_set: "ReadOnlyAccess".into(),
        };
        assert_eq!(
            sso.shortcut("123456789012", "https://us-east-1.console.aws.amazon.com/backup/home?region=us-east-1#/jobs"),
            "https://d-9067example.awsapps.com/start/#/console?account_id=123456789012&role_name=ReadOnlyAccess&destination=https%3A%2F%2Fus-east-1.console.aws.amazon.com%2Fbackup%2Fhome%3Fregion%3Dus-east-1%23%2Fjobs"
        );
    }
}
