#!/usr/bin/env python3
"""The peer to beat: what a typical Python Lambda does with a CloudTrail delivery.

The team's shared benchmark peer (shared/bench/python_baseline.py), unchanged but for this
paragraph, kept in the project so that `make bench` needs nothing beside the checkout.

Read the gzip'd object, json-load it whole, and test each record against a few
hand-written rules (failed AWS Backup jobs, destructive Backup API calls, mutating
Outposts calls). Prints the number of records and of matches, so that a run can be
checked against the project's own scan of the same file.

usage: python-peer.py FILE.json.gz [FILE ...]
"""
import gzip, json, sys

DESTRUCTIVE = {"DeleteBackupVault", "DeleteRecoveryPoint", "DeleteBackupPlan",
               "DeleteBackupSelection", "StopBackupJob", "PutBackupVaultLockConfiguration"}

def matches(r):
    src, name = r.get("eventSource"), r.get("eventName")
    if src == "backup.amazonaws.com":
        details = r.get("serviceEventDetails") or {}
        if name in ("BackupJobCompleted", "CopyJobCompleted", "RestoreCompleted"):
            state = details.get("state", details.get("status"))
            if state is not None and state != "COMPLETED":
                return True
        if name in DESTRUCTIVE and "errorCode" not in r:
            return True
    if src == "outposts.amazonaws.com" and r.get("readOnly") is False:
        return True
    return False

def main():
    records = hits = 0
    for path in sys.argv[1:]:
        with gzip.open(path, "rb") as f:
            log = json.load(f)
        for r in log.get("Records", []):
            records += 1
            hits += matches(r)
    print(f"{records} records, {hits} matches")

if __name__ == "__main__":
    main()
