#!/usr/bin/env python3
"""Storms through the real Lambda runtime API (issue 30), with no AWS account.

Starts moto_server (its request recorder on) and a PagerDuty Events API v2 stand-in on free
loopback ports, creates the trail bucket, the alert topic with an SQS queue on it, a second
topic without a subscriber, the state table and the routing key's secret, then runs
`cargo lambda watch` with the built-in pack plus one rule far too broad (every EC2 call, to
the second topic) and invokes it with `cargo lambda invoke`:

1. The storm as the issue filed it: one delivery of 2,800 records, 400 failed backup jobs of
   distinct volumes, 400 failures of one more volume and 2,000 quiet records. The first
   attempt must succeed with at most 400 DynamoDB requests; SNS gets one alert at once;
   PagerDuty gets one event and never answers 429. A redelivery tells nothing. The sweep tells
   the group's notification (400 more) and the volume's roll-up (399 more), and updates the
   one incident: 1 + 400 + 399 = 800 matches, each told once.
2. A match-everything delivery: N EC2 calls (default 60,000, about 75 MB of JSON), each a
   match. The function's peak resident memory (VmHWM of its process) must stay within the
   256 MiB the template gives it; the storm guard tells the rule's first 1,000 alerts and one
   storm message folding the rest.

The PagerDuty stand-in enforces PagerDuty's documented limit: 120 events a minute per routing
key (a sliding window), 429 with Retry-After beyond it.

usage: scripts/test/e2e-storm.py [--release] [--corpus FILE.json.gz] [--records N]
  --corpus  the match-everything delivery is this CloudTrail file (e.g. the shared benchmark's
            200,000-record corpus) instead of generated EC2 calls
  --release build the function with optimisations (for figures; `make e2e` uses the debug
            build CI has built already)
Run by `make e2e`; needs the .venv of `make setup`.
"""
import argparse, collections, urllib.request, gzip, importlib.util, json, os, random, subprocess, sys, tempfile, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("e2e_lambda", os.path.join(HERE, "e2e-lambda.py"))
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)
ROOT, VENV_BIN = e2e.ROOT, e2e.VENV_BIN

BUCKET = "storm-trail"
ACCOUNT, REGION = "481726354019", "eu-west-1"
ROUTING_KEY = "R0UT1NGKEYSTORM0000000000000000X"
LIMIT_MIB = 256


class PagerDuty:
    """PagerDuty's Events API v2 on loopback: 120 events per minute per routing key."""

    def __init__(self, per_minute=120):
        self.per_minute, self.lock = per_minute, threading.Lock()
        self.accepted, self.refused = [], 0
        self.times = collections.defaultdict(collections.deque)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                status, headers, answer = outer.answer(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2/enqueue"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, event):
        if event.get("event_action") not in ("trigger", "acknowledge", "resolve") or not event.get("routing_key"):
            return 400, {}, {"status": "invalid event", "errors": ["event_action and routing_key are required"]}
        with self.lock:
            now, times = time.monotonic(), self.times[event["routing_key"]]
            while times and now - times[0] >= 60:
                times.popleft()
            if len(times) >= self.per_minute:
                self.refused += 1
                return 429, {"Retry-After": str(int(60 - (now - times[0])) + 1)}, {"status": "throttled"}
            times.append(now)
            self.accepted.append(event)
        return 202, {}, {"status": "success", "message": "Event processed", "dedup_key": event.get("dedup_key")}


def job_ended(n, volume, state="FAILED"):
    return {"eventVersion": "1.08", "eventSource": "backup.amazonaws.com", "eventName": "BackupJobCompleted",
            "awsRegion": REGION, "eventTime": f"2024-08-01T02:{n // 60 % 60:02}:{n % 60:02}Z",
            "eventID": f"00000000-0000-4000-8000-{n:012}", "eventType": "AwsServiceEvent",
            "recipientAccountId": ACCOUNT,
            "serviceEventDetails": {"state": state, "backupJobId": f"job-{n}", "backupVaultName": "Default",
                                    "resourceType": "EBS",
                                    "resourceArn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/{volume}"}}


def quiet(n):
    """A call no rule here wants (not EC2: the broad rule must not see the storm's records)."""
    return {"eventVersion": "1.08", "eventSource": "cloudtrail.amazonaws.com", "eventName": "LookupEvents",
            "awsRegion": REGION, "eventTime": "2024-08-01T02:03:00Z", "eventID": f"10000000-0000-4000-8000-{n:012}",
            "eventType": "AwsApiCall", "recipientAccountId": ACCOUNT, "readOnly": True,
            "userIdentity": {"type": "AssumedRole", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/alice"}}


def ec2_call(n, rng):
    """An EC2 API call of about the corpus's average size (1.2 KB)."""
    instances = [{"instanceId": f"i-{rng.getrandbits(64):017x}"[:19]} for _ in range(1 + n % 3)]
    return {"eventVersion": "1.08", "eventSource": "ec2.amazonaws.com",
            "eventName": ("DescribeInstances", "RunInstances", "CreateTags", "DescribeVolumes")[n % 4],
            "awsRegion": REGION, "eventTime": f"2024-08-01T{n // 3600 % 24:02}:{n // 60 % 60:02}:{n % 60:02}Z",
            "eventID": f"20000000-0000-4000-8000-{n:012}", "eventType": "AwsApiCall", "recipientAccountId": ACCOUNT,
            "readOnly": n % 4 in (0, 3), "sourceIPAddress": "autoscaling.amazonaws.com",
            "userAgent": "autoscaling.amazonaws.com aws-sdk-java/1.12.261 Linux/5.10 OpenJDK_64-Bit_Server_VM",
            "requestID": f"{rng.getrandbits(128):032x}",
            "userIdentity": {"type": "AssumedRole", "principalId": f"AROAEXAMPLE{n % 97:04}:AutoScaling",
                             "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSServiceRoleForAutoScaling/AutoScaling",
                             "accountId": ACCOUNT, "invokedBy": "autoscaling.amazonaws.com",
                             "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE",
                                                                  "arn": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
                                                                  "accountId": ACCOUNT, "userName": "AWSServiceRoleForAutoScaling"},
                                                "attributes": {"creationDate": "2024-08-01T00:00:00Z", "mfaAuthenticated": "false"}}},
            "requestParameters": {"instancesSet": {"items": instances}, "filterSet": {},
                                  "tagSet": {"items": [{"key": "aws:autoscaling:groupName", "value": f"web-{n % 13}"}]}},
            "responseElements": {"requestId": f"{rng.getrandbits(128):032x}", "_return": True},
            "managementEvent": True, "eventCategory": "Management", "tlsDetails": None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--release", action="store_true")
    ap.add_argument("--corpus")
    ap.add_argument("--records", type=int, default=60_000)
    args = ap.parse_args()
    import boto3  # installed with moto[server]

    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    work = os.path.join(ROOT, "target", "e2e-storm")
    os.makedirs(work, exist_ok=True)
    recording = os.path.join(work, "moto-recording.jsonl")
    log_path = os.path.join(work, "watch.log")
    moto_port, lambda_port = e2e.free_port(), e2e.free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    pd = PagerDuty()
    moto = watch = None
    failures, figures = [], []
    try:
        moto = e2e.start([os.path.join(VENV_BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                         dict(env, MOTO_RECORDER_FILEPATH=recording))
        e2e.wait_for_port(moto_port, moto, "moto_server", 30)
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
        s3, sns, sqs = boto3.client("s3", **kw), boto3.client("sns", **kw), boto3.client("sqs", **kw)
        s3.create_bucket(Bucket=BUCKET)
        topic, queue = e2e.topic_with_queue(sns, sqs, "storm-alerts", "storm-alerts")
        broad_topic = sns.create_topic(Name="storm-broad")["TopicArn"]
        e2e.create_state_table(boto3.client("dynamodb", **kw), "storm-state")
        boto3.client("secretsmanager", **kw).create_secret(Name="storm/pagerduty", SecretString=ROUTING_KEY)
        broad = os.path.join(work, "every-ec2-call.yaml")
        with open(broad, "w") as f:
            f.write("rules:\n  - id: every-ec2-call\n    description: \"Every EC2 API call (far too broad, a storm)\"\n"
                    f"    severity: low\n    topic: {broad_topic}\n    pattern: {{eventSource: [ec2.amazonaws.com]}}\n")

        def put(name, records=None, body=None):
            key = (f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2024/08/01/"
                   f"{ACCOUNT}_CloudTrail_{REGION}_20240801T0300Z_{name}.json.gz")
            s3.put_object(Bucket=BUCKET, Key=key, Body=body or gzip.compress(json.dumps({"Records": records}).encode()))
            # S3's notification for it: the sample event with this bucket and key.
            with open(os.path.join(ROOT, "events", "s3-object-created.json")) as f:
                event = json.load(f)
            record = event["Records"][0]["s3"]
            record["bucket"].update(name=BUCKET, arn=f"arn:aws:s3:::{BUCKET}")
            record["object"]["key"] = key
            return event

        storm = [job_ended(n, f"vol-{n:04}") for n in range(400)]
        storm += [job_ended(n, "vol-retried") for n in range(400, 800)]
        storm += [quiet(n) for n in range(2000)]
        storm_event = put("storm", storm)
        if args.corpus:
            with open(args.corpus, "rb") as f:
                big_body = f.read()
            with gzip.open(args.corpus, "rt") as f:
                big_matches = sum(1 for r in json.load(f)["Records"] if r.get("eventSource") == "ec2.amazonaws.com")
            big_name = os.path.basename(args.corpus)
        else:
            rng = random.Random(30)
            big_body = gzip.compress(json.dumps({"Records": [ec2_call(n, rng) for n in range(args.records)]}).encode(), 6)
            big_matches, big_name = args.records, f"{args.records} generated EC2 calls"
        big_event = put("everything", body=big_body)
        big_size = len(gzip.decompress(big_body))

        fn_env = dict(env, AWS_ENDPOINT_URL=endpoint, ALERT_TOPIC_ARN=topic, STATE_TABLE="storm-state",
                      RULES=f"builtin,{broad}", PAGERDUTY_ROUTING_KEY_SECRET="storm/pagerduty",
                      PAGERDUTY_URL=pd.url, PAGERDUTY_ALLOW_LOOPBACK_HTTP="true",
                      RUST_LOG="info")
        cmd = ["cargo", "lambda", "watch", "--ignore-changes", "--invoke-address", "127.0.0.1",
               "--invoke-port", str(lambda_port), "--timeout", "900"]
        if args.release:
            cmd.append("--release")
        with open(log_path, "w") as log:
            watch = e2e.start(cmd, fn_env, log)
            e2e.wait_for_port(lambda_port, watch, "cargo lambda watch", 1200)

            def invoke(event):
                started = time.monotonic()
                try:
                    r = subprocess.run(["cargo", "lambda", "invoke", "trail-alerts-lambda", "--invoke-address",
                                        "127.0.0.1", "--invoke-port", str(lambda_port), "--data-ascii", json.dumps(event),
                                        "--output-format", "json"], cwd=ROOT, env=env, capture_output=True, text=True,
                                       timeout=900)
                except subprocess.TimeoutExpired:
                    sys.exit(f"e2e-storm: an invocation took over 900 s (see {log_path})")
                took = time.monotonic() - started
                if r.returncode != 0:
                    return {"error": r.stderr.strip()[-2000:]}, took
                return json.loads(r.stdout), took

            def receive(expected, wait=15):
                return e2e.drain(sqs, queue, expected, wait)

            def dynamodb_requests():
                with open(recording) as f:
                    return sum(1 for line in f if "DynamoDB_20120810." in line)

            def expect(what, got, want):
                if got != want:
                    failures.append(f"{what}: {got!r}, wanted {want!r}")

            # A first invocation starts the function (and builds it under --release), so that
            # the storm's own time is measured.
            invoke({"action": "sweep"})
            def e2e_api(path):
                urllib.request.urlopen(urllib.request.Request(endpoint + path, method="POST"), timeout=30).read()

            e2e_api("/moto-api/recorder/reset-recording")
            e2e_api("/moto-api/recorder/start-recording")
            response, took = invoke(storm_event)
            e2e_api("/moto-api/recorder/stop-recording")
            requests = dynamodb_requests()
            expect("storm response", {k: response.get(k) for k in ("records", "alerts", "published", "grouped", "held")},
                   {"records": 2800, "alerts": 800, "published": 1, "grouped": 400, "held": 399})
            if requests > 400:
                failures.append(f"storm: {requests} DynamoDB requests, wanted at most 400")
            first = receive(1)
            expect("storm: SNS messages at once", len(first), 1)
            group_key = f'backup-job-failed|group|["{ACCOUNT}","{REGION}"]'
            expect("storm: PagerDuty events", [e.get("dedup_key") for e in pd.accepted], [group_key])
            figures.append(f"storm (2,800 records, 800 matches): first invocation {response.get('error') and 'FAILED' or 'succeeded'} "
                           f"in {took:.1f} s through the runtime API, {requests} DynamoDB requests, "
                           f"{len(first)} SNS alert at once, {len(pd.accepted)} PagerDuty event, {pd.refused} refused (429)")

            again, _ = invoke(storm_event)
            expect("redelivery: published", again.get("published"), 0)
            expect("redelivery: PagerDuty events", len(pd.accepted), 1)

            swept, _ = invoke({"action": "sweep"})
            expect("sweep: roll-ups", swept.get("rollups"), 2)
            told = receive(2)
            subjects = sorted(m.get("Subject", "") for m in told)
            if len(told) != 2 or not any("400 more" in s and "(group)" in s for s in subjects) \
                    or not any("399 more" in s and "(roll-up)" in s for s in subjects):
                failures.append(f"sweep: SNS subjects {subjects}")
            expect("sweep: PagerDuty events (one incident)", [e.get("dedup_key") for e in pd.accepted], [group_key] * 2)
            expect("PagerDuty 429s", pd.refused, 0)
            figures.append(f"storm accounted for: 1 alert + 400 in the group's notification + 399 in the roll-up = 800 "
                           f"matches; redelivery published {again.get('published')}; PagerDuty {len(pd.accepted)} "
                           f"events for one incident, {pd.refused} refused")

            # The match-everything delivery.
            response, took = invoke(big_event)
            pid = function_pid()
            peak = peak_mib(pid) if pid else None
            expect("everything: matches", response.get("alerts"), big_matches)
            expect("everything: published (the guard's 1,000 and its storm message)", response.get("published"), 1001)
            expect("everything: folded", response.get("folded"), big_matches - 1000)
            if peak is None:
                failures.append("everything: the function's process was not found to read its peak memory")
            elif peak > LIMIT_MIB:
                failures.append(f"everything: peak resident memory {peak:.0f} MiB, over the function's {LIMIT_MIB} MiB")
            figures.append(f"match-everything ({big_name}, {big_size / 1e6:.0f} MB of JSON, {big_matches} matches): "
                           f"{took:.1f} s, peak resident memory of the function's process {peak and round(peak)} MiB "
                           f"(limit {LIMIT_MIB} MiB); published {response.get('published')}, folded {response.get('folded')}")
    finally:
        e2e.stop(watch)
        e2e.stop(moto)
        pd.server.shutdown()
    for f in figures:
        print("e2e-storm:", f)
    if failures:
        sys.exit("e2e-storm FAILED:\n  " + "\n  ".join(failures) + f"\n(see {log_path})")
    print("e2e-storm: passed")


def function_pid():
    """The function's process under `cargo lambda watch` (the newest trail-alerts-lambda)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0]
        except OSError:
            continue
        if os.path.basename(argv0) == b"trail-alerts-lambda":
            found.append(int(pid))
    return max(found) if found else None


def peak_mib(pid):
    """VmHWM: the process's peak resident set (kB in /proc), in MiB, as Lambda's MemorySize."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


if __name__ == "__main__":
    main()
