#!/usr/bin/env python3
"""A day of an organisation trail for `make bench`: a folder of many small gzip'd CloudTrail
deliveries (default 5,000 files, 600,000 records), named and laid out as CloudTrail writes them
(AWSLogs/o-…/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_<time>_<id>.json.gz),
from the same records and at the same rate of AWS Backup events as the corpus generator
(scripts/bench/make-corpus.py, whose functions it uses). Deterministic.

usage: make-folder.py OUT_DIR [--files N] [--records N]
"""
import argparse, gzip, importlib.util, json, os, random, uuid

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "make-corpus.py")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--records", type=int, default=600_000)
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS)
    corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpus)
    rng = random.Random(9689)
    base = corpus.real_records()
    accounts = ["123456789012", "210987654321", "111122223333", "444455556666"]
    regions = ["us-east-1", "eu-west-1", "ap-southeast-2"]
    per_file = a.records // a.files
    i = 0
    for n in range(a.files):
        account, region = accounts[n % len(accounts)], regions[n // len(accounts) % len(regions)]
        minute = n * 1440 // a.files
        stamp = "20230710T%02d%02dZ" % (minute // 60, minute % 60)
        folder = os.path.join(a.out, "AWSLogs", "o-exampleorg1", account, "CloudTrail", region,
                              "2023", "07", "10")
        os.makedirs(folder, exist_ok=True)
        name = "%s_CloudTrail_%s_%s_%016x.json.gz" % (account, region, stamp, rng.getrandbits(64))
        records = []
        for _ in range(per_file):
            if i % 500 == 499:
                r = corpus.backup_event(rng, i)
            else:
                r = dict(base[i % len(base)])
            r["eventID"] = str(uuid.UUID(int=rng.getrandbits(128)))
            records.append(r)
            i += 1
        with open(os.path.join(folder, name), "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(json.dumps({"Records": records}, separators=(",", ":")).encode())
    print(f"{a.out}: {a.files} files, {i} records")


if __name__ == "__main__":
    main()
