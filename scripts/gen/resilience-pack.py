#!/usr/bin/env python3
"""Writes rules/backup-events.yaml and rules/backup-resilience.yaml: the resilience pack's
rules, each with tests that fire and tests that stay quiet. The native-event tests use AWS
Backup's own example events (tests/fixtures/eventbridge/aws-backup-events.json, from the AWS
Backup Developer Guide) and variants of them in the states the guide lists without an example;
the CloudTrail tests use the DeleteRecoveryPoint example of the guide's CloudTrail page with the
API call of each rule. Run it after changing a rule here; the files are committed.
"""
import copy, json, os
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pack_guidance import annotate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
EVENTS = json.load(open(os.path.join(ROOT, "tests/fixtures/eventbridge/aws-backup-events.json")))["events"]


def ev(name, **detail):
    e = copy.deepcopy(EVENTS[name])
    for k, v in detail.items():
        if v is None:
            e["detail"].pop(k, None)
        else:
            e["detail"][k] = v
    return e


def flow(v):
    return json.dumps(v, ensure_ascii=False)


# Failed jobs of one account and Region within 15 minutes page as one incident (a Region-wide
# outage is one page, not one per resource), while dedup per resource decides what is new.
GROUP = {"by": ["account", "region"], "interval": "15m"}


def rule(rid, description, severity, pattern, tests, enabled=True, dedup=None, group=None,
         incident=None):
    out = [f"  - id: {rid}", f"    description: {json.dumps(description)}", f"    severity: {severity}"]
    if not enabled:
        out.append("    enabled: false")
    out.append(f"    pattern: {flow(pattern)}")
    if dedup:
        out.append(f"    dedup: {flow(dedup)}")
    if group:
        out.append(f"    group: {flow(group)}")
    if incident:
        # One failure told by both paths (CloudTrail from S3, this event) is one alert.
        out.append(f"    incident: {incident}")
    out.append("    tests:")
    for name, expect, kind, value in tests:
        out.append(f"      - name: {json.dumps(name)}")
        out.append(f"        expect: {'true' if expect else 'false'}")
        out.append(f"        {kind}: {flow(value)}")
    return "\n".join(out)


def native(detail_type, detail):
    return {"source": ["aws.backup"], "detail-type": [detail_type], "detail": detail}


# The resource types AWS Backup's Region settings opt in and out (ResourceTypeOptInPreference).
RESOURCE_TYPES = ["Aurora", "CloudFormation", "DocumentDB", "DynamoDB", "EBS", "EC2", "EFS",
                  "FSx", "Neptune", "RDS", "Redshift", "Redshift Serverless", "S3",
                  "SAP HANA on Amazon EC2", "Storage Gateway", "Timestream", "VirtualMachine"]

events = [
    rule("backup-event-job-failed",
         "AWS Backup says a backup job FAILED, was ABORTED, EXPIRED before it could start, or ended PARTIAL (AWS Backup's own event).",
         "high",
         native("Backup Job State Change", {"state": ["FAILED", "ABORTED", "EXPIRED", "PARTIAL"]}),
         [("fires on the documented FAILED job", True, "event", ev("backup-job-failed")),
          ("fires on the documented ABORTED job", True, "event", ev("backup-job-aborted")),
          ("fires on the documented EXPIRED job", True, "event", ev("backup-job-expired")),
          ("fires on a PARTIAL job", True, "event", ev("backup-job-completed", state="PARTIAL")),
          ("quiet on the documented COMPLETED job", False, "event", ev("backup-job-completed")),
          ("quiet on the documented RUNNING job", False, "event", ev("backup-job-running")),
          ("quiet on PENDING", False, "event", ev("backup-job-pending")),
          ("quiet on the near-empty CREATED event", False, "event", ev("backup-job-created")),
          ("quiet on a Copy Job event in the FAILED state", False, "event", ev("copy-job-failed"))],
         dedup={"key": ["account", "region", "detail.resourceArn"], "window": "1h",
                "fields": ["detail.state", "detail.backupJobId"]},
         group=GROUP, incident="backup-job-failed"),
    rule("backup-event-job-completed-with-issues",
         "A backup job COMPLETED with a status message: the console's \"Completed with issues\" (AWS Backup's own event).",
         "medium",
         native("Backup Job State Change", {"state": ["COMPLETED"], "statusMessage": [{"anything-but": ""}]}),
         [("fires on a COMPLETED job with a status message", True, "event",
           ev("backup-job-completed", statusMessage="Windows VSS backup attempt failed because of timeout on VSS enabled volumes.")),
          ("quiet on the documented COMPLETED job (no status message)", False, "event", ev("backup-job-completed")),
          ("quiet on a COMPLETED job with an empty status message", False, "event", ev("backup-job-completed", statusMessage="")),
          ("quiet on the documented FAILED job", False, "event", ev("backup-job-failed"))]),
    rule("backup-event-copy-job-failed",
         "AWS Backup says a copy job FAILED, was ABORTED or ended PARTIAL (AWS Backup's own event).",
         "high",
         native("Copy Job State Change", {"state": ["FAILED", "ABORTED", "PARTIAL"]}),
         [("fires on the documented FAILED copy job (destinationRecoveryPointArn: {})", True, "event", ev("copy-job-failed")),
          ("quiet on the documented COMPLETED copy job", False, "event", ev("copy-job-completed")),
          ("quiet on the documented CREATED copy job", False, "event", ev("copy-job-created"))],
         dedup={"key": ["account", "region", "detail.resourceArn", "detail.destinationBackupVaultArn"],
                "window": "1h", "fields": ["detail.state", "detail.copyJobId"]},
         group=GROUP, incident="backup-copy-job-failed"),
    rule("backup-event-restore-job-failed",
         "AWS Backup says a restore job FAILED or was ABORTED (AWS Backup's own event; `status` in some events, `state` in others).",
         "high",
         native("Restore Job State Change", {"$or": [{"status": ["FAILED", "ABORTED"]}, {"state": ["FAILED", "ABORTED"]}]}),
         [("fires on the documented FAILED restore (status)", True, "event", ev("restore-job-failed")),
          ("fires on an ABORTED restore written with state", True, "event", ev("restore-job-created", state="ABORTED")),
          ("quiet on the documented COMPLETED restore", False, "event", ev("restore-job-completed")),
          ("quiet on the documented CREATED restore", False, "event", ev("restore-job-created"))]),
    rule("backup-event-recovery-point-problem",
         "A recovery point is EXPIRED (retention passed but it was not deleted), STOPPED (continuous backup broken) or PARTIAL (AWS Backup's own event).",
         "high",
         native("Recovery Point State Change", {"$or": [{"status": ["EXPIRED", "STOPPED", "PARTIAL"]}, {"state": ["EXPIRED", "STOPPED", "PARTIAL"]}]}),
         [("fires on an EXPIRED recovery point", True, "event", ev("recovery-point-completed", status="EXPIRED")),
          ("fires on a STOPPED recovery point", True, "event", ev("recovery-point-completed", status="STOPPED")),
          ("fires on a PARTIAL recovery point written with state", True, "event", ev("recovery-point-completed", status=None, state="PARTIAL")),
          ("quiet on the documented COMPLETED recovery point", False, "event", ev("recovery-point-completed"))]),
    rule("backup-event-vault-lock-changed",
         "A backup vault's lock was turned on, changed or turned OFF (AWS Backup's own vault event with isLocked).",
         "high",
         native("Backup Vault State Change", {"isLocked": [{"exists": True}]}),
         [("fires on the documented MODIFIED vault with isLocked", True, "event", ev("backup-vault-modified")),
          ("fires on a vault whose lock was turned off", True, "event", ev("backup-vault-modified", isLocked="false")),
          ("quiet on the documented CREATED vault", False, "event", ev("backup-vault-created"))]),
    rule("backup-event-region-opt-out",
         "A resource type was opted out of AWS Backup in a Region: it is no longer backed up there (AWS Backup's own Region setting event).",
         "medium",
         native("Region Setting State Change",
                {"$or": [{"ResourceTypeOptInPreference": {t: [False, "false"]}} for t in RESOURCE_TYPES]}),
         [("fires when Aurora is opted out", True, "event", ev("region-setting-modified", ResourceTypeOptInPreference={"Aurora": False})),
          ("fires when DynamoDB is opted out beside an opt-in", True, "event",
           ev("region-setting-modified", ResourceTypeOptInPreference={"Aurora": True, "DynamoDB": "false"})),
          ("quiet on the documented opt-in", False, "event", ev("region-setting-modified"))]),
    rule("backup-event-malware-found",
         "A malware scan of a recovery point found threats (AWS Backup's own scan job event, GuardDuty scanner).",
         "critical",
         native("Scan Job State Change", {"scanResult": {"scanResultStatus": ["THREATS_FOUND"]}}),
         [("fires on the documented THREATS_FOUND scan", True, "event", ev("scan-job-threats-found")),
          ("quiet on the documented NO_THREATS_FOUND scan completed with issues", False, "event", ev("scan-job-completed-with-issues")),
          ("quiet on the documented FAILED scan", False, "event", ev("scan-job-failed"))]),
]

DOC_RECORD = json.loads("""{"eventVersion": "1.05", "userIdentity": {"type": "Root", "principalId": "123456789012", "arn": "arn:aws:iam::123456789012:root", "accountId": "123456789012", "accessKeyId": "AKIAIOSFODNN7EXAMPLE", "sessionContext": {"attributes": {"mfaAuthenticated": "false", "creationDate": "2019-01-10T12:24:50Z"}}}, "eventTime": "2019-01-10T14:52:42Z", "eventSource": "backup.amazonaws.com", "eventName": "DeleteRecoveryPoint", "awsRegion": "us-east-1", "sourceIPAddress": "12.34.567.89", "userAgent": "aws-internal/3 aws-sdk-java/1.11.465", "requestParameters": {"backupVaultName": "Default", "recoveryPointArn": "arn:aws:ec2:us-east-1::snapshot/snap-05f426fd9daab3433"}, "responseElements": null, "requestID": "f1f1b33a-48da-436c-9a8f-7574f1ab5fd7", "eventID": "2dd70080-5aba-4a79-9a0f-92647c9f0846", "eventType": "AwsApiCall", "recipientAccountId": "123456789012"}""")


def call(name, params=None, error=None):
    r = copy.deepcopy(DOC_RECORD)
    r["eventName"] = name
    r["requestParameters"] = params if params is not None else {"backupVaultName": "Default"}
    if error:
        r["errorCode"] = error
        r["errorMessage"] = f"User is not authorized to perform backup:{name}"
    return r


def succeeded(names):
    return {"eventSource": ["backup.amazonaws.com"], "eventName": names, "errorCode": [{"exists": False}]}


def api_rule(rid, description, severity, names, quiet_params=None):
    tests = [(f"fires on a successful {n}", True, "record", call(n)) for n in names]
    tests.append((f"quiet on a {names[0]} refused with AccessDeniedException", False, "record",
                  call(names[0], error="AccessDeniedException")))
    tests.append(("quiet on the documented DeleteRecoveryPoint", False, "record", DOC_RECORD))
    return rule(rid, description, severity, succeeded(names), tests)


resilience = [
    rule("backup-restore-test-failed",
         "A restore test's validation was reported FAILED or TIMED_OUT (PutRestoreValidationResult): a restore that was tested does not work.",
         "high",
         {"eventSource": ["backup.amazonaws.com"], "eventName": ["PutRestoreValidationResult"],
          "requestParameters": {"validationStatus": ["FAILED", "TIMED_OUT"]}},
         [("fires on a FAILED validation", True, "record",
           call("PutRestoreValidationResult", {"restoreJobId": "1B234A56-789B-01CD-2A34-4567A08901FD", "validationStatus": "FAILED", "validationStatusMessage": "database did not start"})),
          ("fires on a TIMED_OUT validation", True, "record",
           call("PutRestoreValidationResult", {"restoreJobId": "1B234A56-789B-01CD-2A34-4567A08901FD", "validationStatus": "TIMED_OUT"})),
          ("quiet on a SUCCESSFUL validation", False, "record",
           call("PutRestoreValidationResult", {"restoreJobId": "1B234A56-789B-01CD-2A34-4567A08901FD", "validationStatus": "SUCCESSFUL"}))]),
    api_rule("backup-restore-testing-deleted",
             "A restore testing plan or selection was deleted: restores are no longer tested.",
             "medium", ["DeleteRestoreTestingPlan", "DeleteRestoreTestingSelection"]),
    rule("backup-vault-lock-compliance",
         "A vault lock was set in compliance mode (PutBackupVaultLockConfiguration with ChangeableForDays): it cannot be changed or removed once its grace period ends.",
         "high",
         {"eventSource": ["backup.amazonaws.com"], "eventName": ["PutBackupVaultLockConfiguration"],
          "requestParameters": {"changeableForDays": [{"exists": True}]}, "errorCode": [{"exists": False}]},
         [("fires on a compliance-mode lock", True, "record",
           call("PutBackupVaultLockConfiguration", {"backupVaultName": "Default", "minRetentionDays": 7, "maxRetentionDays": 365, "changeableForDays": 3})),
          ("quiet on a governance-mode lock (no changeableForDays)", False, "record",
           call("PutBackupVaultLockConfiguration", {"backupVaultName": "Default", "minRetentionDays": 7})),
          ("quiet on a refused compliance-mode lock", False, "record",
           call("PutBackupVaultLockConfiguration", {"backupVaultName": "Default", "changeableForDays": 3}, error="AccessDeniedException"))]),
    api_rule("backup-legal-hold-cancelled",
             "A legal hold on recovery points was cancelled (CancelLegalHold): they can be deleted again.",
             "high", ["CancelLegalHold"]),
    api_rule("backup-airgap-mpa-changed",
             "A logically air-gapped vault, its multi-party approval team, or a restore-access vault was created, associated, disassociated or revoked.",
             "medium", ["CreateLogicallyAirGappedBackupVault", "AssociateBackupVaultMpaApprovalTeam",
                        "DisassociateBackupVaultMpaApprovalTeam", "CreateRestoreAccessBackupVault",
                        "RevokeRestoreAccessBackupVault"]),
    api_rule("backup-settings-changed",
             "AWS Backup's Region settings (resource types opted in or out) or global settings (cross-account backup, …) were changed.",
             "medium", ["UpdateRegionSettings", "UpdateGlobalSettings"]),
    api_rule("backup-recovery-point-disassociated",
             "A recovery point was disassociated from its backup vault (DisassociateRecoveryPoint): AWS Backup no longer manages it.",
             "high", ["DisassociateRecoveryPoint"]),
    api_rule("backup-audit-deleted",
             "A Backup Audit Manager framework or report plan was deleted: compliance is no longer checked or reported.",
             "medium", ["DeleteFramework", "DeleteReportPlan"]),
]

HEADER_EVENTS = """# Built-in rules: AWS Backup's own EventBridge events (source aws.backup), which tell what
# CloudTrail never shows: jobs that EXPIRED or ended PARTIAL, "completed with issues", recovery
# points EXPIRED/STOPPED/PARTIAL, vault lock changes, Region opt-outs, malware found. They fire
# only on events EventBridge delivers to the function (template parameter BackupEvents); a
# CloudTrail record from S3 never matches them. Test events are the AWS Backup Developer Guide's
# examples (tests/fixtures/eventbridge/aws-backup-events.json) and variants of them in the states
# the guide lists without an example. Generated by scripts/gen/resilience-pack.py.
rules:
"""
HEADER_CT = """# Built-in rules: the AWS Backup resilience calls CloudTrail records — restore testing, vault
# lock in compliance mode, legal holds, logically air-gapped vaults and multi-party approval,
# Region and global settings, disassociated recovery points, Backup Audit Manager. Test records
# are the AWS Backup Developer Guide's DeleteRecoveryPoint example with each rule's call.
# Generated by scripts/gen/resilience-pack.py.
rules:
"""
with open(os.path.join(ROOT, "rules/backup-events.yaml"), "w") as f:
    f.write(annotate(HEADER_EVENTS + "\n".join(events) + "\n"))
with open(os.path.join(ROOT, "rules/backup-resilience.yaml"), "w") as f:
    f.write(annotate(HEADER_CT + "\n".join(resilience) + "\n"))
