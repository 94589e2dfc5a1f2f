"""What to do, and the ATT&CK techniques, for the generated built-in rules: imported by
scripts/gen/resilience-pack.py and scripts/gen/trail-pack.py, which put each rule's `runbook:`
(one step a line: the chat message's next steps) and `tags:` after its severity. The hand-written
packs (rules/backup.yaml, rules/outposts.yaml) carry theirs in place. Tags follow SigmaHQ's
ATT&CK naming (tactic, then technique), and only where a technique applies.
"""
import json

BACKUP = "https://console.aws.amazon.com/backup/home"
TRAIL = "https://console.aws.amazon.com/cloudtrail/home"

RUNBOOK = {
    "backup-restore-test-failed": f"Open the restore testing job in the AWS Backup console ({BACKUP}#/restoretesting) and read its validation status message.\nCheck the restored resource and the validation script's output: the recovery point may not be usable.\nRe-run the restore test once the cause is fixed.",
    "backup-restore-testing-deleted": f"Confirm with the caller (principal above) that the restore testing plan or selection was meant to go.\nIf not, recreate it ({BACKUP}#/restoretesting): restores are untested until then.",
    "backup-vault-lock-compliance": f"Confirm the change was approved: once ChangeableForDays passes, the lock cannot be removed by anyone, AWS included.\nIf it was not, remove the lock before the grace time ends (DeleteBackupVaultLockConfiguration) in {BACKUP}#/backupvaults.",
    "backup-legal-hold-cancelled": f"Confirm with the caller that the legal hold was meant to end ({BACKUP}#/legalholds).\nIf not, place a new legal hold on the recovery points before they expire or are deleted.",
    "backup-airgap-mpa-changed": f"Check who changed the air-gapped vault or its multi-party approval team, and that the change was approved ({BACKUP}#/backupvaults).\nReview the approval team's members in AWS Organizations multi-party approval.",
    "backup-settings-changed": f"Open the Region's settings ({BACKUP}#/settings) and check which resource types are opted in, and the cross-account settings.\nOpt the resource types back in if the change was not meant: they are not backed up meanwhile.",
    "backup-recovery-point-disassociated": f"Find the recovery point in the vault ({BACKUP}#/backupvaults) and check that its disassociation was meant.\nA disassociated recovery point is no longer managed (no lifecycle, no restore from AWS Backup): take a new backup if it is needed.",
    "backup-audit-deleted": f"Check with the caller that the framework or report plan was meant to go ({BACKUP}#/compliance).\nRecreate it if not: compliance is neither checked nor reported until then.",
    "backup-event-job-failed": f"Open the job in the AWS Backup console ({BACKUP}#/jobs/backup) and read its status message.\nCommon causes: the backup role's permissions, a resource that no longer exists, a vault's access policy, a KMS key.\nStart an on-demand backup once fixed: the resource has no fresh recovery point until then.",
    "backup-event-job-completed-with-issues": f"Open the job ({BACKUP}#/jobs/backup) and read its status message: part of the resource may not be in the recovery point.\nFix the cause named there (files skipped, a VSS failure, …) before the next scheduled backup.",
    "backup-event-copy-job-failed": f"Open the copy job ({BACKUP}#/jobs/copy) and read its status message.\nCheck the destination vault's access policy and KMS key, and the cross-account or cross-Region settings.\nThe recovery point has no copy until a copy job completes: start one once fixed.",
    "backup-event-restore-job-failed": f"Open the restore job ({BACKUP}#/jobs/restore) and read its status message.\nCheck the restore role's permissions and the restore metadata; retry the restore once fixed.",
    "backup-event-recovery-point-problem": f"Open the recovery point in its vault ({BACKUP}#/backupvaults) and read its status message.\nAn EXPIRED point was not deleted (check the vault's access policy); a STOPPED continuous backup needs its resource's backups re-enabled; a PARTIAL one is missing resources.",
    "backup-event-vault-lock-changed": f"Check that the vault lock change was approved ({BACKUP}#/backupvaults): a lock turned off lets recovery points be deleted early.\nRestore the lock if the change was not meant.",
    "backup-event-region-opt-out": f"Open the Region's settings ({BACKUP}#/settings): the resource type named is no longer backed up there.\nOpt it back in if the change was not meant.",
    "backup-event-malware-found": f"Do not restore from the recovery point: isolate it, and find the last clean recovery point of the resource ({BACKUP}#/backupvaults).\nOpen the GuardDuty malware finding for what was found, and start incident response.",
    "trail-logging-stopped": f"Check in the CloudTrail console ({TRAIL}#/trails) whether the trail is still logging, and who stopped or deleted it (principal above).\nStart logging again (StartLogging) or recreate the trail: the account's activity is not recorded until then.\nTreat an unexplained stop as an incident: it is how an intruder hides.",
    "trail-changed": f"Compare the trail's settings ({TRAIL}#/trails) with your baseline: bucket, prefix, KMS key, multi-Region and organisation scope.\nA changed bucket or prefix means deliveries no longer reach this function.",
    "trail-management-events-dropped": f"Open the trail's event selectors ({TRAIL}#/trails) and check that management events are recorded again.\nRestore the selectors if the change was not meant: control-plane activity is invisible meanwhile.",
    "trail-bucket-notification-changed": "Check the trail bucket's event notifications (or EventBridge delivery) still reach this function: `trail-alerts doctor` checks them.\nRestore the notification configuration if it was replaced; recreate the bucket and trail delivery if it was deleted.",
    "trail-silent": f"Check the trail is logging ({TRAIL}#/trails) and the bucket's notifications reach this function (`trail-alerts doctor`).\nCheck the account and Region are still in the trail's scope (an organisation trail, a multi-Region trail).",
    "trail-bucket-lifecycle-changed": "Read the trail bucket's lifecycle rules (S3 console: the bucket's Management tab): logs must not expire before your retention.\nRestore them if the change was not meant, and set TRAIL_LOG_EXPIRY_DAYS to the expiry you keep.",
    "trail-log-deleted": "Find who deleted the log (requester, source address above) and whether the bucket's versioning or replication kept a copy.\nTreat an unexplained deletion as an incident: intruders delete the logs of what they did. Validate the trail's digests (aws cloudtrail validate-logs).",
    "security-root-used": "Find who used the root user and why (the account's owners): root is for the few tasks that need it.\nIf nobody did, treat it as an incident: change the root password, check its MFA and access keys (IAM console: https://console.aws.amazon.com/iam/home#/security_credentials).",
    "security-console-login-without-mfa": "Ask the user (principal above) to set up MFA, and require it (an IAM policy that denies without aws:MultiFactorAuthPresent).\nIf the sign-in was not theirs, disable the password and rotate their credentials.",
    "security-root-access-key-created": "Delete the root user's access keys (https://console.aws.amazon.com/iam/home#/security_credentials) unless a documented task needs them.\nIf nobody in the account created them, treat it as an incident: the root user is compromised.",
    "security-guardduty-disabled": "Re-enable GuardDuty in the account and Region (https://console.aws.amazon.com/guardduty/home), or restore the organisation's delegated administrator settings.\nFind who disabled it (principal above): threats go undetected meanwhile.",
    "security-securityhub-disabled": "Re-enable Security Hub or the standards (https://console.aws.amazon.com/securityhub/home) and find who disabled them.",
    "security-config-stopped": "Restart the configuration recorder and recreate the delivery channel (https://console.aws.amazon.com/config/home): configuration history is not recorded meanwhile.\nFind who stopped it (principal above).",
    "security-access-analyzer-deleted": "Recreate the analyzer (https://console.aws.amazon.com/access-analyzer/home) and find who deleted it: external access goes unreported meanwhile.",
    "security-account-left-organization": "Confirm the account was meant to leave (AWS Organizations console: https://console.aws.amazon.com/organizations/v2/home/accounts).\nIf not, treat it as an incident: the organisation's guardrails (SCPs, backup policies, the organisation trail) no longer apply to it.",
    "security-snapshot-shared-publicly": "Make the snapshot or image private again now (remove the 'all' group from its permissions), then find who shared it.\nAssume its data was copied: rotate any secrets it held.",
    "security-snapshot-shared-with-account": "Check the account it was shared with is one of the organisation's.\nIf not, remove the permission and treat it as possible exfiltration (principal above).",
    "security-s3-public-access-block-removed": "Restore Block Public Access on the bucket or the account (https://console.aws.amazon.com/s3/settings) unless the bucket is meant to be public.\nCheck the bucket's policy and ACLs for public grants.",
    "security-kms-key-deletion": "Cancel the key's deletion (CancelKeyDeletion) or enable it again (https://console.aws.amazon.com/kms/home) if it was not meant: data encrypted under it becomes unreadable for good once deleted.",
    "self-function-changed": "Check the change against your deployment pipeline: trail-alerts' code, configuration and triggers change only by deploying the stack.\nIf it was not a deployment, redeploy the stack and treat the change as an attempt to blind your alerting.",
    "self-topic-changed": "Compare the topic's policy and attributes with the template's: only the function may publish, and only the principals named in AlertSubscribers may subscribe.\nRedeploy the stack to restore them if the change was not a deployment.",
    "self-topic-subscribed": "Check the new subscription's endpoint and account (SNS console: the topic's subscriptions): alerts carry whole CloudTrail records.\nRemove it if it is not one of yours.",
    "self-state-table-changed": "Check the state table (dedup, thresholds, parked pages, the trail's progress): redeploy the stack if it was deleted or changed outside a deployment.",
    "self-schedule-changed": "Check trail-alerts' event rules and its sweep schedule are enabled and target the function; redeploy the stack if not.",
    "self-secret-changed": "Check the PagerDuty routing key (or other secret) still holds the right value: `trail-alerts doctor` reads it.\nIf nobody on the team changed it, rotate it in PagerDuty and find who did.",
}

TAGS = {
    "backup-restore-testing-deleted": ["attack.defense-impairment", "attack.t1685"],
    "backup-legal-hold-cancelled": ["attack.impact", "attack.t1490"],
    "backup-airgap-mpa-changed": ["attack.impact", "attack.t1490"],
    "backup-settings-changed": ["attack.impact", "attack.t1490"],
    "backup-recovery-point-disassociated": ["attack.impact", "attack.t1490"],
    "backup-audit-deleted": ["attack.defense-impairment", "attack.t1685"],
    "backup-event-vault-lock-changed": ["attack.impact", "attack.t1490"],
    "backup-event-region-opt-out": ["attack.impact", "attack.t1490"],
    "trail-logging-stopped": ["attack.defense-impairment", "attack.t1685.002"],
    "trail-changed": ["attack.defense-impairment", "attack.t1685.002"],
    "trail-management-events-dropped": ["attack.defense-impairment", "attack.t1685.002"],
    "trail-bucket-notification-changed": ["attack.defense-impairment", "attack.t1685.002"],
    "trail-silent": ["attack.defense-impairment", "attack.t1685.002"],
    "trail-bucket-lifecycle-changed": ["attack.defense-impairment", "attack.t1685.002"],
    "trail-log-deleted": ["attack.defense-impairment", "attack.t1070"],
    "security-root-used": ["attack.privilege-escalation", "attack.t1078.004"],
    "security-console-login-without-mfa": ["attack.initial-access", "attack.t1078.004"],
    "security-root-access-key-created": ["attack.persistence", "attack.t1098.001"],
    "security-guardduty-disabled": ["attack.defense-impairment", "attack.t1685"],
    "security-securityhub-disabled": ["attack.defense-impairment", "attack.t1685"],
    "security-config-stopped": ["attack.defense-impairment", "attack.t1685"],
    "security-access-analyzer-deleted": ["attack.defense-impairment", "attack.t1685"],
    "security-account-left-organization": ["attack.defense-impairment", "attack.t1666"],
    "security-snapshot-shared-publicly": ["attack.exfiltration", "attack.t1537"],
    "security-snapshot-shared-with-account": ["attack.exfiltration", "attack.t1537"],
    "security-s3-public-access-block-removed": ["attack.exfiltration", "attack.t1537"],
    "security-kms-key-deletion": ["attack.impact", "attack.t1485"],
    "self-function-changed": ["attack.defense-impairment", "attack.t1685"],
    "self-topic-changed": ["attack.defense-impairment", "attack.t1685"],
    "self-topic-subscribed": ["attack.collection", "attack.t1530"],
    "self-state-table-changed": ["attack.defense-impairment", "attack.t1685"],
    "self-schedule-changed": ["attack.defense-impairment", "attack.t1685"],
    "self-secret-changed": ["attack.defense-impairment", "attack.t1685"],
}


def annotate(text):
    """The pack's text with each rule's runbook and tags after its severity line."""
    out, rule = [], None
    for line in text.split("\n"):
        if line.startswith("  - id: "):
            rule = line[len("  - id: "):].strip()
        out.append(line)
        if rule and line.startswith("    severity: "):
            if rule in RUNBOOK:
                out.append(f"    runbook: {json.dumps(RUNBOOK[rule])}")
            if rule in TAGS:
                out.append(f"    tags: {json.dumps(TAGS[rule])}")
            rule = None
    return "\n".join(out)
