#!/usr/bin/env python3
"""Build the documentation-sample fixtures and the sample trail files from ../shared/docs.

The AWS Backup and AWS Outposts CloudTrail documentation pages print example log entries; some
are not valid JSON as published (an unquoted access key, keys wrapped in *...* by the page's
formatting, placeholders such as " account-id"). This script corrects exactly those faults and
writes:

- tests/fixtures/docs/<eventName>.json: one corrected record per file, with its source;
- events/trails/AWSLogs/...: gzip'd CloudTrail deliveries (standard key layout, an organization
  trail among them) built from those records and from variants with failed states, so that
  `make run` prints real alerts with no AWS account.

Deterministic: the same inputs give the same bytes (gzip mtime 0).

usage: scripts/gen/samples.py [SHARED_DIR]   (default: ../shared)
"""
import copy, gzip, io, json, os, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared")
DOCS = os.path.join(SHARED, "docs")
ACCOUNT = "123456789012"

BACKUP_PAGE = "AWS Backup Developer Guide, 'Logging AWS Backup API calls with CloudTrail' (shared/docs/aws-backup-cloudtrail-logging.txt)"
OUTPOSTS_PAGE = "AWS Outposts User Guide, 'Log AWS Outposts API calls using AWS CloudTrail' (shared/docs/aws-outposts-cloudtrail-logging.txt)"


def fix(text):
    text = re.sub(r'"\*([A-Za-z]+)\*"', r'"\1"', text)              # "*eventName*" -> "eventName"
    text = text.replace('"accessKeyId": aceess-key', '"accessKeyId": "AKIAIOSFODNN7EXAMPLE"')
    text = text.replace('" access-key"', '"AKIAIOSFODNN7EXAMPLE"')
    text = text.replace('" account-id"', '"%s"' % ACCOUNT)
    text = text.replace('" org-id"', '"o-exampleorgid"')
    return text


def records_in(path):
    text = fix(open(path).read())
    dec = json.JSONDecoder()
    out, i = [], 0
    while True:
        i = text.find('{ "eventVersion"', i)
        if i < 0:
            return out
        rec, end = dec.raw_decode(text, i)
        out.append(rec)
        i = end


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_trail(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write(json.dumps({"Records": records}, separators=(",", ":")).encode())
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def main():
    backup = records_in(os.path.join(DOCS, "aws-backup-cloudtrail-logging.txt"))
    outposts = records_in(os.path.join(DOCS, "aws-outposts-cloudtrail-logging.txt"))
    by_name = {r["eventName"]: r for r in backup + outposts}
    expected = {"StartBackupJob", "StartRestoreJob", "DeleteRecoveryPoint", "BackupJobCompleted",
                "CreateOrganizationalBackupPlan", "DeleteOrganizationalBackupPlan", "SetSiteAddress"}
    missing = expected - set(by_name)
    if missing:
        sys.exit("records not found in the docs: %s" % sorted(missing))

    fixtures = os.path.join(ROOT, "tests", "fixtures", "docs")
    for name in sorted(expected):
        page = OUTPOSTS_PAGE if name == "SetSiteAddress" else BACKUP_PAGE
        write_json(os.path.join(fixtures, name + ".json"), {
            "source": page + "; corrected: quoted the access key, unwrapped *key* names, "
                             "replaced ' account-id' / ' org-id' placeholders",
            "record": by_name[name],
        })

    # Variants for the sample trails: failures shaped like the documented completion event.
    job_ok = by_name["BackupJobCompleted"]
    job_failed = copy.deepcopy(job_ok)
    job_failed["eventID"] = "5c1a3e0b-0f7a-4e38-9a55-0d6c3b6f7a01"
    job_failed["eventTime"] = "2019-01-10T09:02:11Z"
    job_failed["serviceEventDetails"].update({
        "state": "FAILED", "percentDone": 37, "backupJobId": "9B1C1E55-2D2A-4C0B-8E0C-3C1A9F1B7A42",
        "statusMessage": "Insufficient privileges to perform this action.",
        "resourceArn": "arn:aws:ec2:us-east-1:%s:volume/vol-0a1b2c3d4e5f60718" % ACCOUNT})
    copy_failed = {
        "eventVersion": "1.05",
        "userIdentity": {"accountId": ACCOUNT, "invokedBy": "backup.amazonaws.com"},
        "eventTime": "2019-01-10T10:15:00Z", "eventSource": "backup.amazonaws.com",
        "eventName": "CopyJobCompleted", "awsRegion": "us-east-1",
        "sourceIPAddress": "backup.amazonaws.com", "userAgent": "backup.amazonaws.com",
        "requestParameters": None, "responseElements": None,
        "eventID": "7d2e9f14-3b6a-4c1e-8f0d-2a5b7c9e1f03", "eventType": "AwsServiceEvent",
        "recipientAccountId": ACCOUNT,
        "serviceEventDetails": {
            "copyJobId": "C0PY1D00-1111-2222-3333-444455556666", "state": "FAILED",
            "statusMessage": "Access denied to the destination vault",
            "sourceBackupVaultArn": "arn:aws:backup:us-east-1:%s:backup-vault:BackupVault" % ACCOUNT,
            "destinationBackupVaultArn": "arn:aws:backup:us-west-2:%s:backup-vault:DRVault" % ACCOUNT,
            "resourceArn": "arn:aws:ec2:us-east-1:%s:volume/vol-06692095a6a421233" % ACCOUNT,
            "resourceType": "EBS"}}
    restore_failed = {
        "eventVersion": "1.05",
        "userIdentity": {"accountId": ACCOUNT, "invokedBy": "backup.amazonaws.com"},
        "eventTime": "2019-01-10T14:01:12Z", "eventSource": "backup.amazonaws.com",
        "eventName": "RestoreCompleted", "awsRegion": "us-east-1",
        "sourceIPAddress": "backup.amazonaws.com", "userAgent": "backup.amazonaws.com",
        "requestParameters": None, "responseElements": None,
        "eventID": "3f0c7a2e-9d4b-4b8e-a1c6-5e2f8d7b6c04", "eventType": "AwsServiceEvent",
        "recipientAccountId": ACCOUNT,
        "serviceEventDetails": {
            "restoreJobId": "9808E090-8C76-CCB8-4CEA-407CF6AC4C43", "status": "FAILED",
            "statusMessage": "Volume size exceeds quota",
            "recoveryPointArn": "arn:aws:ec2:us-east-1::snapshot/snap-00a129455bdbc9d99",
            "resourceType": "EBS"}}
    outposts_denied = copy.deepcopy(by_name["SetSiteAddress"])
    outposts_denied.update({"eventID": "0b7e4c2d-6a1f-4d3e-9b8c-7f6e5d4c3b05", "eventName": "UpdateSite",
                            "eventTime": "2020-08-14T16:40:02Z", "errorCode": "AccessDeniedException",
                            "errorMessage": "User is not authorized to perform: outposts:UpdateSite",
                            "responseElements": None})
    outposts_read = copy.deepcopy(by_name["SetSiteAddress"])
    outposts_read.update({"eventID": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c06", "eventName": "ListSites",
                          "readOnly": True, "requestParameters": None, "responseElements": None})

    trails = os.path.join(ROOT, "events", "trails", "AWSLogs")
    day = lambda acct, region, date: os.path.join(acct, "CloudTrail", region, *date.split("-"))
    write_trail(os.path.join(trails, day(ACCOUNT, "us-east-1", "2019-01-10"),
                             "%s_CloudTrail_us-east-1_20190110T1350Z_BackupSamples0001.json.gz" % ACCOUNT),
                [by_name["StartBackupJob"], by_name["StartRestoreJob"], by_name["DeleteRecoveryPoint"],
                 job_ok, job_failed, copy_failed, restore_failed])
    write_trail(os.path.join(trails, "o-exampleorgid", day(ACCOUNT, "ca-central-1", "2020-06-02"),
                             "%s_CloudTrail_ca-central-1_20200602T0035Z_OrgPlanSamples01.json.gz" % ACCOUNT),
                [by_name["CreateOrganizationalBackupPlan"], by_name["DeleteOrganizationalBackupPlan"]])
    write_trail(os.path.join(trails, day("111122223333", "us-west-2", "2020-08-14"),
                             "111122223333_CloudTrail_us-west-2_20200814T1635Z_OutpostsSamples1.json.gz"),
                [by_name["SetSiteAddress"], outposts_denied, outposts_read])
    print("wrote %d fixtures and 3 sample trail files" % len(expected))


if __name__ == "__main__":
    main()
