#!/usr/bin/env python3
"""The organisation through the real Lambda runtime API: accounts' names from AWS
Organizations, routes to the team's topic, and a bad rule object that does not stop alerting.

On moto (loopback): an organisation whose account payments-prod sits in Root/Prod/Payments; a
default topic and the payments team's topic, each with an SQS queue; the state table; a rule
object in S3 whose `routes:` send the Payments OU's alerts to the team's topic. Then, through
`cargo lambda watch` / `cargo lambda invoke` with ACCOUNT_CONTEXT=organizations:

1. AWS Backup's failed-job event from payments-prod reaches the team's topic, its subject
   naming the account, and pages the team's PagerDuty service (its routing key in SSM); the
   same event from an account outside the organisation takes the default route, named by its
   id, and pages the central service (PAGERDUTY_ROUTING_KEY_SECRET); `{"doctor": {}}` passes,
   having read both keys. PagerDuty is a stand-in on loopback.
2. A bad rule object is uploaded and the function cold-starts again: it alerts on the last rule
   set that loaded (the event still reaches the team's topic), its log names the fault, and its
   metrics count RulesFallback.

usage: scripts/test/e2e-org.py   (run by `make e2e`; needs the .venv of `make setup`)
"""
import json, os, subprocess, sys

import importlib.util

_spec = importlib.util.spec_from_file_location(
    "e2e_lambda", os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e-lambda.py"))
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

_spec = importlib.util.spec_from_file_location(
    "e2e_storm", os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e-storm.py"))
storm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(storm)

ROOT, VENV_BIN = e2e.ROOT, e2e.VENV_BIN
OUTSIDER = "999988887777"
DEFAULT_KEY, PAYMENTS_KEY = "DEFAULTR0UT1NGKEY000000000000000", "PAYMENTSR0UT1NGKEY00000000000000"


def main():
    import boto3  # installed with moto[server]

    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    moto_port = e2e.free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    moto = watch = None
    log_path = os.path.join(ROOT, "target", "e2e-org-watch.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    failures = []
    try:
        moto = e2e.start([os.path.join(VENV_BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], env)
        e2e.wait_for_port(moto_port, moto, "moto_server", 30)
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
        s3, sns, sqs = boto3.client("s3", **kw), boto3.client("sns", **kw), boto3.client("sqs", **kw)
        org = boto3.client("organizations", **kw)
        org.create_organization(FeatureSet="ALL")
        root = org.list_roots()["Roots"][0]["Id"]
        prod = org.create_organizational_unit(ParentId=root, Name="Prod")["OrganizationalUnit"]["Id"]
        payments_ou = org.create_organizational_unit(ParentId=prod, Name="Payments")["OrganizationalUnit"]["Id"]
        account = org.create_account(AccountName="payments-prod", Email="payments@example.com")["CreateAccountStatus"]["AccountId"]
        org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=payments_ou)
        default_topic, default_q = e2e.topic_with_queue(sns, sqs, "org-default", "org-default")
        team_topic, team_q = e2e.topic_with_queue(sns, sqs, "payments", "payments")
        new_topic, new_q = e2e.topic_with_queue(sns, sqs, "payments-new", "payments-new")
        e2e.create_state_table(boto3.client("dynamodb", **kw), "org-state")
        s3.create_bucket(Bucket="team-rules")
        # The central service's key in Secrets Manager, the payments team's in SSM (JSON).
        boto3.client("secretsmanager", **kw).create_secret(Name="pd/central", SecretString=DEFAULT_KEY)
        boto3.client("ssm", **kw).put_parameter(Name="/pd/payments", Type="SecureString",
                                                Value=json.dumps({"routing_key": PAYMENTS_KEY}))
        pagerduty = storm.PagerDuty()
        good = ("routes:\n  - match: {ous: [\"Root/Prod/Payments\"]}\n"
                f"    to: {{topics: [\"{team_topic}\"], pagerduty: [ssm:/pd/payments]}}\n")
        s3.put_object(Bucket="team-rules", Key="team.yaml", Body=good.encode())

        fn_env = dict(env, AWS_ENDPOINT_URL=endpoint, ALERT_TOPIC_ARN=default_topic, STATE_TABLE="org-state",
                      RULES="builtin,s3://team-rules/team.yaml", ACCOUNT_CONTEXT="organizations", RUST_LOG="info",
                      PAGERDUTY_ROUTING_KEY_SECRET="pd/central", PAGERDUTY_URL=pagerduty.url,
                      PAGERDUTY_ALLOW_LOOPBACK_HTTP="true")
        with open(os.path.join(ROOT, "events", "eventbridge-backup-job-failed.json")) as f:
            failed_job = f.read()

        regions = {1: "us-west-2", 2: "eu-central-1", 3: "ap-southeast-2", 10: "us-west-2"}

        def event(acct, n):
            # Another job, of another resource, in a Region of its own each phase: the pack's
            # dedup holds a repeat, and its group gathers a second failure of an account and
            # Region into the group's notification.
            return (failed_job.replace("1112233445566", acct).replace("us-west-2", regions[n])
                    .replace("710b0398-d48e-f3c3-afca-cfeb2fdaa656", f"710b0398-0000-0000-0000-{n:012d}")
                    .replace("resource-type/resource-id", f"resource-type/resource-{n}"))

        def receive(queue, expected):
            return e2e.drain(sqs, queue, expected)

        for phase in (1, 2):  # phase 2 also puts a fixed document back in force
            if phase == 2:
                e2e.stop(watch)
                s3.put_object(Bucket="team-rules", Key="team.yaml",
                              Body=good.replace("ous:", "oos:").encode())
            lambda_port = e2e.free_port()
            with open(log_path, "w") as log:
                watch = e2e.start(["cargo", "lambda", "watch", "--ignore-changes", "--invoke-address", "127.0.0.1",
                                   "--invoke-port", str(lambda_port)], fn_env, log)
                e2e.wait_for_port(lambda_port, watch, "cargo lambda watch", 120)

                def invoke(payload):
                    r = subprocess.run(["cargo", "lambda", "invoke", "trail-alerts-lambda", "--invoke-address", "127.0.0.1",
                                        "--invoke-port", str(lambda_port), "--data-ascii", payload,
                                        "--output-format", "json"], cwd=ROOT, env=env, capture_output=True, text=True,
                                       timeout=900)
                    if r.returncode != 0:
                        sys.exit(f"invoke failed: {r.stderr.strip()}\n(see {log_path})")
                    return json.loads(r.stdout)

                response = invoke(event(account, phase))
                team = receive(team_q, 1)
                want = f"[HIGH] backup-event-job-failed: payments-prod ({account}) {regions[phase]} Backup Job State"
                if response.get("published") != 1 or len(team) != 1 or not team[0]["Subject"].startswith(want):
                    failures.append(f"phase {phase}: payments' alert: response {response}, team topic got "
                                    f"{[m.get('Subject') for m in team]}")
                elif team[0]["MessageAttributes"].get("accountName", {}).get("Value") != "payments-prod":
                    failures.append(f"phase {phase}: no accountName attribute: {team[0]['MessageAttributes']}")
                if phase == 2:
                    # A good document again, routing to another topic: the next sweep puts it in
                    # force on this instance, without a cold start.
                    s3.put_object(Bucket="team-rules", Key="team.yaml", Body=good.replace(team_topic, new_topic).encode())
                    invoke('{"action": "sweep"}')
                    invoke(event(account, 3))
                    moved = receive(new_q, 1)
                    if len(moved) != 1 or receive(team_q, 0):
                        failures.append(f"phase 2: after the sweep, the new rules' topic got {len(moved)}")
                if phase == 1:
                    invoke(event(OUTSIDER, 10))
                    default = receive(default_q, 1)
                    if [m["Subject"] for m in default] != [
                            f"[HIGH] backup-event-job-failed: Backup Job State Change FAILED in {OUTSIDER}/us-west-2"]:
                        failures.append(f"outsider: default topic got {[m.get('Subject') for m in default]}")
                    report = invoke('{"doctor": {}}')
                    if report.get("passed") is not True:
                        failures.append(f"doctor: {report}")
                    # Paged: payments-prod's failure to the payments service only, the
                    # outsider's to the central one (the default route).
                    paged = sorted((e["routing_key"], e["payload"]["group"]) for e in pagerduty.accepted
                                   if e["event_action"] == "trigger")
                    if paged != sorted([(PAYMENTS_KEY, account), (DEFAULT_KEY, OUTSIDER)]):
                        failures.append(f"phase 1: pages went {paged}")
            with open(log_path, errors="replace") as f:
                text = f.read()
            fallback = "alerting on the last rule set that loaded" in text
            emf = [json.loads(line[line.find('{"'):]) for line in text.splitlines()
                   if '"_aws"' in line and line.find('{"') >= 0]
            counted = any(d.get("RulesFallback") == 1 for d in emf)
            if phase == 1 and (fallback or counted):
                failures.append("phase 1: the function says it fell back, with good rules")
            if phase == 2 and not (fallback and counted and "$.routes[0].match.oos" in text):
                failures.append(f"phase 2: fallback logged {fallback}, RulesFallback counted {counted}, "
                                f"fault named {'$.routes[0].match.oos' in text} (see {log_path})")
            if phase == 2:
                back = "the rule documents load again" in text
                last = [d for d in emf if d.get("Events", 0) >= 1][-1:]
                if not back or not last or last[0].get("RulesFallback") is not None:
                    failures.append(f"phase 2: back on the current rules logged {back}, last metrics {last}")
        if failures:
            sys.exit("e2e-org FAILED:\n  " + "\n  ".join(failures))
        print(f"e2e-org: payments-prod ({account}) named and routed to its team's topic and PagerDuty service, an "
              "outsider on the default route and the central service, doctor passed; a bad rule object: still routed on the last rule set that loaded, the fault "
              "logged, RulesFallback counted; a fixed one in force again at the next sweep, without a cold start")
        print("e2e-org: passed")
    finally:
        e2e.stop(watch)
        e2e.stop(moto)


if __name__ == "__main__":
    main()
