"""What to do, and the ATT&CK techniques, for the generated built-in rules: imported by
scripts/gen-resilience-pack.py and scripts/gen-trail-pack.py, which put each rule's `runbook:`
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
