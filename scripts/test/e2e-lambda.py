#!/usr/bin/env python3
"""The function through the real Lambda runtime API, end to end, with no AWS account.

Starts moto_server on a free loopback port; creates the bucket `trail-alerts-demo` with the
sample trail files of events/trails, an SNS topic and an SQS queue subscribed to it; runs
`cargo lambda watch` (the runtime API emulator, which builds and starts trail-alerts-lambda with
AWS_ENDPOINT_URL pointing at moto); invokes it with `cargo lambda invoke --data-file events/…`;
reads the alerts back from the queue and checks them. Everything listens on 127.0.0.1 and is
stopped at the end, whatever happens.

usage: scripts/test/e2e-lambda.py   (run by `make e2e`; needs the .venv of `make setup`)
"""
import datetime, gzip, json, os, signal, socket, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
BUCKET = "trail-alerts-demo"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, what, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited early with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{what} did not listen on 127.0.0.1:{port} within {seconds} s")


def start(cmd, env=None, log=None):
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc):
    if proc and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def topic_with_queue(sns, sqs, topic_name, queue_name):
    """A topic and an SQS queue subscribed to it: the topic's ARN and the queue's URL."""
    topic = sns.create_topic(Name=topic_name)["TopicArn"]
    queue = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, queue


def drain(sqs, queue, expected, wait=15):
    """The SNS envelopes on an SQS queue, each deleted once read: until `expected` have come and
    the queue is quiet, or `wait` seconds."""
    got, deadline = [], time.time() + wait
    while time.time() < deadline:
        ms = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for m in ms:
            got.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        if not ms and len(got) >= expected:
            break
    return got


def create_state_table(dynamodb, name):
    """The state table as template.yaml creates it (string keys pk and sk, on demand)."""
    dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}])


def main():
    import boto3  # installed with moto[server]

    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    moto_port, lambda_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    moto = watch = None
    log_path = os.path.join(ROOT, "target", "e2e-lambda-watch.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    try:
        moto = start([os.path.join(VENV_BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], env)
        wait_for_port(moto_port, moto, "moto_server", 30)
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
        s3, sns, sqs = boto3.client("s3", **kw), boto3.client("sns", **kw), boto3.client("sqs", **kw)
        s3.create_bucket(Bucket=BUCKET)
        trails = os.path.join(ROOT, "events", "trails")
        for dirpath, _, files in os.walk(trails):
            for f in files:
                path = os.path.join(dirpath, f)
                s3.upload_file(path, BUCKET, os.path.relpath(path, trails).replace(os.sep, "/"))
        topic, queue = topic_with_queue(sns, sqs, "trail-alerts", "trail-alerts-subscriber")
        # The state store of the pack's dedup rules.
        create_state_table(boto3.client("dynamodb", **kw), "trail-alerts-state")

        fn_env = dict(env, AWS_ENDPOINT_URL=endpoint, ALERT_TOPIC_ARN=topic, RUST_LOG="info",
                      STATE_TABLE="trail-alerts-state")
        invoked = []
        with open(log_path, "w") as log:
            watch = start(["cargo", "lambda", "watch", "--ignore-changes", "--invoke-address", "127.0.0.1",
                           "--invoke-port", str(lambda_port)], fn_env, log)
            wait_for_port(lambda_port, watch, "cargo lambda watch", 120)

            def invoke(event):
                invoked.append(event)
                r = subprocess.run(["cargo", "lambda", "invoke", "trail-alerts-lambda", "--invoke-address", "127.0.0.1",
                                    "--invoke-port", str(lambda_port), "--data-file", os.path.join("events", event),
                                    "--output-format", "json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
                if r.returncode != 0:
                    sys.exit(f"invoke {event} failed: {r.stderr.strip()}\n(see {log_path})")
                return json.loads(r.stdout)

            def receive(expected):
                return drain(sqs, queue, expected)

            failures = []
            response = invoke("s3-object-created.json")
            got = receive(4)
            subjects = sorted(m["Subject"] for m in got)
            want = sorted([
                "[HIGH] backup-copy-job-failed: CopyJobCompleted FAILED in 123456789012/us-east-1",
                "[HIGH] backup-destructive-call: DeleteRecoveryPoint in 123456789012/us-east-1",
                "[HIGH] backup-job-failed: BackupJobCompleted FAILED in 123456789012/us-east-1",
                "[HIGH] backup-restore-failed: RestoreCompleted FAILED in 123456789012/us-east-1",
            ])
            if subjects != want:
                failures.append(f"s3-object-created.json: subjects {subjects}, wanted {want}")
            if response.get("published") != 4:
                failures.append(f"s3-object-created.json: response {response}")
            doc = json.loads(next(m["Message"] for m in got if "backup-job-failed" in m["Subject"]))
            if doc["source"] != {"bucket": BUCKET, "key": "AWSLogs/123456789012/CloudTrail/us-east-1/2019/01/10/123456789012_CloudTrail_us-east-1_20190110T1350Z_BackupSamples0001.json.gz"}:
                failures.append(f"document source: {doc['source']}")

            response = invoke("sqs-partial-garbage.json")
            got = receive(4)
            if response != {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}:
                failures.append(f"sqs-partial-garbage.json: response {response}")
            # Its two good messages deliver the three sample objects again, one of them the object
            # read above: with the state store, that object's dedup'd alerts (backup-job-failed,
            # backup-copy-job-failed) are not published twice; its other two and the four of the
            # other objects are (6 without the store).
            subjects = sorted(m["Subject"] for m in got)
            if len(got) != 4 or any("backup-job-failed" in s or "backup-copy-job-failed" in s for s in subjects):
                failures.append(f"sqs-partial-garbage.json: {subjects}")

            response = invoke("s3-test-event.json")
            if receive(0):
                failures.append("s3-test-event.json published something")

            # Log tamper: a sample log removed from the bucket is an alert naming it and the
            # deleter.
            response = invoke("s3-object-removed.json")
            got = receive(1)
            summaries = [json.loads(m["Message"])["summary"] for m in got]
            if len(got) != 1 or not got[0]["Subject"].startswith("[CRITICAL] trail-log-deleted") \
                    or "AIDAEXAMPLEINTRUDER" not in summaries[0] or "BackupSamples0001" not in summaries[0]:
                failures.append(f"s3-object-removed.json: {[m['Subject'] for m in got]} {summaries}")
            if (response.get("events"), response.get("published")) != (1, 1):
                failures.append(f"s3-object-removed.json: response {response}")

            # EventBridge events: AWS Backup's own, through SQS with a CloudTrail event on
            # EventBridge, and one of a kind no rule knows.
            response = invoke("eventbridge-backup-job-failed.json")
            got = receive(1)
            want = ["[HIGH] backup-event-job-failed: Backup Job State Change FAILED in 1112233445566/us-west-2"]
            if [m["Subject"] for m in got] != want:
                failures.append(f"eventbridge-backup-job-failed.json: {[m['Subject'] for m in got]}, wanted {want}")
            elif json.loads(got[0]["Message"])["event"]["eventID"] != "710b0398-d48e-f3c3-afca-cfeb2fdaa656":
                failures.append(f"eventbridge-backup-job-failed.json: document {got[0]['Message'][:300]}")
            if (response.get("events"), response.get("published")) != (1, 1):
                failures.append(f"eventbridge-backup-job-failed.json: response {response}")

            response = invoke("sqs-eventbridge-events.json")
            got = receive(2)
            subjects = sorted(m["Subject"] for m in got)
            want = sorted([
                "[HIGH] backup-event-copy-job-failed: Copy Job State Change FAILED in 1112233445566/us-west-2",
                "[HIGH] backup-destructive-call: DeleteBackupVault in 123456789012/us-east-1",
            ])
            if subjects != want:
                failures.append(f"sqs-eventbridge-events.json: subjects {subjects}, wanted {want}")
            if response != {"batchItemFailures": []}:
                failures.append(f"sqs-eventbridge-events.json: response {response}")

            # The schedule's sweep, through the same runtime API: every window of the 2019-2020
            # samples is long closed; none held a repeat, so no roll-up.
            response = invoke("scheduled-sweep.json")
            if response.get("rollups") != 0 or response.get("due", 0) < 1:
                failures.append(f"scheduled-sweep.json: response {response}")
            if receive(0):
                failures.append("scheduled-sweep.json published something")

            response = invoke("eventbridge-unknown-detail-type.json")
            if receive(0):
                failures.append("eventbridge-unknown-detail-type.json published something")
            if (response.get("events"), response.get("alerts")) != (1, 0):
                failures.append(f"eventbridge-unknown-detail-type.json: response {response}")

            # A backfill batch from the state machine's Distributed Map: findings to S3, a
            # summary back, nothing published.
            s3.create_bucket(Bucket="trail-alerts-history")
            response = invoke("stepfunctions-backfill-batch.json")
            got = receive(0)
            found = s3.list_objects_v2(Bucket="trail-alerts-history").get("Contents", [])
            lines = []
            for o in found:
                lines += s3.get_object(Bucket="trail-alerts-history", Key=o["Key"])["Body"].read().decode().splitlines()
            rules = sorted(json.loads(l)["rule"] for l in lines)
            if (response.get("mode") != "backfill" or response.get("objects") != 4 or response.get("skippedObjects") != 1
                    or response.get("alerts") != 8 or response.get("failed") != [] or got or len(found) != 1
                    or not found[0]["Key"].startswith("findings/sample-backfill/findings/") or len(rules) != 8
                    or response.get("findings") != f"s3://trail-alerts-history/{found[0]['Key']}"):
                failures.append(f"stepfunctions-backfill-batch.json: response {response}, findings {[o['Key'] for o in found]}, "
                                f"rules {rules}, published {len(got)}")

            # `{"doctor": {}}`: the checks made as the function's own role, the report returned;
            # nothing published.
            response = invoke("doctor.json")
            got = receive(0)
            checks = {c["check"]: c["outcome"] for c in response.get("doctor", [])}
            if (response.get("passed") is not True or checks.get("credentials") != "ok" or checks.get("rules") != "ok"
                    or checks.get(f"topic {topic}") != "ok" or checks.get("state table trail-alerts-state") != "ok" or got):
                failures.append(f"doctor.json: response {response}, published {len(got)}")

        # One CloudWatch Embedded Metric Format line per invocation, in the function's output.
        emf = []
        with open(log_path, errors="replace") as log:
            for line in log:
                pos = line.find('{"')
                if '"_aws"' in line and pos >= 0:
                    try:
                        emf.append(json.loads(line[pos:]))
                    except ValueError:
                        pass
        reads = [d for d in emf if d.get("Objects", 0) >= 1]
        if len(emf) < 5 or not reads:
            failures.append(f"EMF: {len(emf)} metric lines in the function's output")
        else:
            d = reads[0]
            directive = d["_aws"]["CloudWatchMetrics"][0]
            names = {m["Name"] for m in directive["Metrics"]}
            if directive["Namespace"] != "TrailAlerts" or not {"Objects", "Records", "AlertsPublished", "DeliveryLag"} <= names \
                    or any(not isinstance(d.get(n), (int, float)) for n in names) or not isinstance(d["_aws"]["Timestamp"], int):
                failures.append(f"EMF line: {d}")
            # The delivery lag: now minus the newest eventTime of the object read (every record,
            # built or not).
            sample = os.path.join(trails, "AWSLogs/123456789012/CloudTrail/us-east-1/2019/01/10/"
                                  "123456789012_CloudTrail_us-east-1_20190110T1350Z_BackupSamples0001.json.gz")
            with gzip.open(sample, "rt") as f:
                newest = max(datetime.datetime.strptime(r["eventTime"], "%Y-%m-%dT%H:%M:%SZ")
                             .replace(tzinfo=datetime.timezone.utc).timestamp() for r in json.load(f)["Records"])
            lag = d["_aws"]["Timestamp"] / 1000 - newest
            if abs(d.get("DeliveryLag", -1) - lag) > 2:
                failures.append(f"EMF DeliveryLag {d.get('DeliveryLag')}, wanted about {lag:.0f} (now - newest eventTime)")

        if failures:
            sys.exit("e2e-lambda FAILED:\n  " + "\n  ".join(failures) + f"\n(see {log_path})")
        print(f"e2e-lambda: {len(invoked)} invocations through the Lambda runtime API, all as expected")
        print(f"e2e-lambda: {len(invoked)} passed, 0 failed")
    finally:
        stop(watch)
        stop(moto)


if __name__ == "__main__":
    main()
