#!/usr/bin/env python3
"""Build a large CloudTrail log file for benchmarks from real records.

The team's shared benchmark generator (shared/bench/make-corpus.py), kept in the project so that
`make bench` and the tests need nothing beside the checkout. It reads the records of the 55
invictus-ir/aws_dataset files (MIT; sources in tests/fixtures/real/SOURCES.md) from
benches/data/invictus-records.json.gz, in the path order the shared generator reads them, and
writes the same bytes as the shared generator for the same arguments.

The records are the real ones from the invictus-ir dataset (MIT), repeated until the
file holds --records records; each copy gets a fresh eventID so that nothing is a
duplicate. A sprinkle of AWS Backup service events and Outposts calls (shaped like the
AWS documentation's examples) is mixed in at a fixed rate so that rules have matches.
The output is one gzip member holding {"Records":[...]}, exactly like a CloudTrail
delivery. Deterministic: the same arguments give the same bytes.

usage: make-corpus.py OUT.json.gz [--records N] [--backup-every K]
"""
import argparse, gzip, json, os, random, uuid

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDS = os.path.join(HERE, "..", "..", "benches", "data", "invictus-records.json.gz")

def real_records():
    with gzip.open(RECORDS, "rt") as f:
        return json.load(f)["Records"]

def backup_event(rng, i):
    state = rng.choice(["COMPLETED", "COMPLETED", "COMPLETED", "FAILED", "ABORTED", "EXPIRED"])
    return {
        "eventVersion": "1.05",
        "userIdentity": {"accountId": "123456789012", "invokedBy": "backup.amazonaws.com"},
        "eventTime": "2023-07-10T12:%02d:%02dZ" % (i // 60 % 60, i % 60),
        "eventSource": "backup.amazonaws.com",
        "eventName": "BackupJobCompleted",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "backup.amazonaws.com",
        "userAgent": "backup.amazonaws.com",
        "requestParameters": None,
        "responseElements": None,
        "eventType": "AwsServiceEvent",
        "recipientAccountId": "123456789012",
        "serviceEventDetails": {
            "completionDate": {"seconds": 1547108091, "nanos": 906000000},
            "state": state,
            "percentDone": 100 if state == "COMPLETED" else rng.randint(0, 99),
            "backupJobId": str(uuid.UUID(int=rng.getrandbits(128))).upper(),
            "backupVaultName": "BackupVault",
            "backupVaultArn": "arn:aws:backup:us-east-1:123456789012:backup-vault:BackupVault",
            "recoveryPointArn": "arn:aws:ec2:us-east-1::snapshot/snap-%017x" % rng.getrandbits(68),
            "resourceArn": "arn:aws:ec2:us-east-1:123456789012:volume/vol-%017x" % rng.getrandbits(68),
            "creationDate": {"seconds": 1547101638, "nanos": 272000000},
            "backupSizeInBytes": 8589934592,
            "iamRoleArn": "arn:aws:iam::123456789012:role/AWSBackup",
            "resourceType": "EBS",
        },
    }

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--backup-every", type=int, default=500)
    a = ap.parse_args()
    rng = random.Random(9689)
    base = real_records()
    out = []
    for i in range(a.records):
        if a.backup_every and i % a.backup_every == a.backup_every - 1:
            r = backup_event(rng, i)
        else:
            r = dict(base[i % len(base)])
        r["eventID"] = str(uuid.UUID(int=rng.getrandbits(128)))
        out.append(r)
    with open(a.out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(json.dumps({"Records": out}, separators=(",", ":")).encode())
    print(f"{a.out}: {a.records} records, {os.path.getsize(a.out)} bytes compressed")

if __name__ == "__main__":
    main()
