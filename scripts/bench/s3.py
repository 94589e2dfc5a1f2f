#!/usr/bin/env python3
"""`make bench-s3`: `trail-alerts scan s3://…` against a local moto server.

A 1,000-object organisation-trail tree (the shared corpus's first 200,000 records, 200 per
gzip'd log, 2 accounts x 2 Regions x 250 logs over 5 days) is uploaded to moto on loopback;
the release binary (with the `s3` feature) scans it with 1 and 16 concurrent fetches, side by
side under hyperfine, and once more under /usr/bin/time for peak memory. Prints objects per
second, MB per second (compressed, as fetched) and peak resident memory for each.
"""
import gzip, json, os, re, socket, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
BIN = os.path.join(ROOT, "target", "release", "trail-alerts")
CORPUS = os.path.join(ROOT, "target", "bench", "corpus-200000.json.gz")
BUCKET = "bench-trail"
OBJECTS = 1000
RUNS = int(os.environ.get("RUNS", "3"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    import boto3
    if not os.path.exists(CORPUS):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench", "make-corpus.py"),
                        CORPUS, "--records", "200000"], check=True)
    subprocess.run(["cargo", "build", "--locked", "--release", "--no-default-features", "--features", "s3",
                    "--bin", "trail-alerts"], cwd=ROOT, check=True, capture_output=True)
    port = free_port()
    moto = subprocess.Popen([os.path.join(VENV_BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("moto_server did not start")
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        s3.create_bucket(Bucket=BUCKET)
        with gzip.open(CORPUS, "rt") as f:
            records = json.load(f)["Records"]
        per = len(records) // OBJECTS
        total = 0
        places = [(a, r) for a in ("111122223333", "444455556666") for r in ("eu-west-1", "us-east-1")]
        for i in range(OBJECTS):
            account, region = places[i % 4]
            day = 1 + (i // 4) % 5
            body = gzip.compress(json.dumps({"Records": records[i * per:(i + 1) * per]}).encode())
            total += len(body)
            key = (f"AWSLogs/o-benchorg001/{account}/CloudTrail/{region}/2024/01/{day:02}/"
                   f"{account}_CloudTrail_{region}_202401{day:02}T{i % 24:02}{i % 60:02}Z_{i:016d}.json.gz")
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                   AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
        print(f"== {OBJECTS} objects, {total / 1e6:.1f} MB gzip'd, {len(records)} records; {os.cpu_count()} cores")
        cmds = {c: f"{BIN} scan -q --format jsonl --concurrency {c} s3://{BUCKET}/" for c in (1, 16)}
        subprocess.run(["hyperfine", "-N", "--warmup", "1", "--runs", str(RUNS), "--export-json",
                        os.path.join(ROOT, "target", "bench", "s3.json")]
                       + [x for c, cmd in cmds.items() for x in ("-n", f"concurrency {c}", cmd)],
                       env=env, check=True)
        results = json.load(open(os.path.join(ROOT, "target", "bench", "s3.json")))["results"]
        for (c, cmd), r in zip(cmds.items(), results):
            t = subprocess.run(["/usr/bin/time", "-v"] + cmd.split(), env=env, capture_output=True, text=True)
            rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t.stderr).group(1))
            alerts = len(t.stdout.splitlines())
            print(f"concurrency {c:>2}: {r['mean']:.2f} s, {OBJECTS / r['mean']:.0f} objects/s, "
                  f"{total / r['mean'] / 1e6:.1f} MB/s, peak RSS {rss / 1024:.0f} MiB, {alerts} alerts")
    finally:
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
