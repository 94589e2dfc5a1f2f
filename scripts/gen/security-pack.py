#!/usr/bin/env python3
"""Writes rules/security.yaml (`builtin:security`) and rules/self.yaml (`builtin:self`), the
optional packs: off unless named in RULES or --rules. Each rule's tests are real records from
tests/fixtures/real (Panther's CloudTrail test cases, Stratus Red Team detonations, the Invictus
IR dataset; sources in tests/fixtures/real/SOURCES.md), named by file and index, with the
expected verdict the rule must give; where no real record shows a case, a variant of a real
record (said so in the test's name). Run it after changing a rule here; the files are committed.
"""
import copy, glob, json, os, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pack_guidance import annotate  # noqa: E402


def load(name):
    """The records of a fixture file (by its name under tests/fixtures/real)."""
    path = glob.glob(os.path.join(ROOT, "tests", "fixtures", "real", "*", name))[0]
    data = json.load(open(path))
    items = data["Records"] if isinstance(data, dict) and "Records" in data else (data if isinstance(data, list) else [data])
    return [i["log"] if isinstance(i, dict) and isinstance(i.get("log"), dict) else i for i in items]


PANTHER = load("panther_cloudtrail_tests.json")
STRATUS = {n: load(f"aws.{n}.json") for n in ["exfiltration.ec2-share-ebs-snapshot", "initial-access.console-login-without-mfa",
                                            "defense-evasion.organizations-leave", "persistence.lambda-layer-extension"]}


def panther(i):
    return f"Panther's test #{i}", PANTHER[i]


def stratus(name, i=0):
    return f"Stratus Red Team {name} #{i}", STRATUS[name][i]


def variant(source, what, change):
    label, record = source
    r = copy.deepcopy(record)
    change(r)
    return f"{label}, {what}", r


def first(label_filter):
    for i, r in enumerate(PANTHER):
        if label_filter(r):
            return panther(i)
    raise SystemExit("no such record")


ok = {"errorCode": [{"exists": False}]}


def rule(rid, description, severity, pattern, cases, extra=None):
    out = [f"  - id: {rid}", f"    description: {json.dumps(description)}", f"    severity: {severity}",
           f"    pattern: {json.dumps(pattern)}"]
    for k, v in (extra or {}).items():
        out.append(f"    {k}: {json.dumps(v)}")
    out.append("    tests:")
    for expect, (label, record) in cases:
        verb = "fires on" if expect else "quiet on"
        out += [f"      - name: {json.dumps(verb + ' ' + label)}", f"        expect: {'true' if expect else 'false'}",
                f"        record: {json.dumps(record)}"]
    return "\n".join(out)


def drop(*path):
    def f(r):
        d = r
        for p in path[:-1]:
            d = d[p]
        d.pop(path[-1], None)
    return f


def setv(value, *path):
    def f(r):
        d = r
        for p in path[:-1]:
            d = d.setdefault(p, {})
        d[path[-1]] = value
    return f


console_mfa_no = first(lambda r: r["eventName"] == "ConsoleLogin" and r.get("userIdentity", {}).get("type") == "IAMUser"
                       and (r.get("additionalEventData") or {}).get("MFAUsed") == "No"
                       and (r.get("responseElements") or {}).get("ConsoleLogin") == "Success")
console_mfa_yes = first(lambda r: r["eventName"] == "ConsoleLogin" and (r.get("additionalEventData") or {}).get("MFAUsed") == "Yes")
console_assumed = first(lambda r: r["eventName"] == "ConsoleLogin" and r.get("userIdentity", {}).get("type") == "AssumedRole")
root_login = first(lambda r: r["eventName"] == "ConsoleLogin" and r.get("userIdentity", {}).get("type") == "Root")
iam_user_call = panther(183)

security = [
    rule("security-root-used", "The account's root user made a call, in the console or with its keys (not an AWS service acting for it).", "high",
         # The console signs root in (invokedBy signin.amazonaws.com): that is root used too.
         {"userIdentity": {"type": ["Root"], "invokedBy": [{"exists": False}, "signin.amazonaws.com"]}, "eventType": [{"anything-but": ["AwsServiceEvent"]}]},
         [(True, root_login), (True, panther(314)),
          (False, variant(panther(314), "invoked by an AWS service", setv("cloudformation.amazonaws.com", "userIdentity", "invokedBy"))),
          (False, iam_user_call)],
         {"dedup": {"key": ["recipientAccountId"], "window": "1h"}}),
    rule("security-console-login-without-mfa", "An IAM user or the root user signed in to the console without MFA (Identity Center and federated sign-ins are not IAM users and are left out).", "high",
         {"eventSource": ["signin.amazonaws.com"], "eventName": ["ConsoleLogin"], "userIdentity": {"type": ["IAMUser", "Root"]},
          "responseElements": {"ConsoleLogin": ["Success"]}, "additionalEventData": {"MFAUsed": ["No"]}},
         [(True, stratus("initial-access.console-login-without-mfa")), (True, console_mfa_no), (False, console_mfa_yes),
          (False, console_assumed),
          (False, variant(stratus("initial-access.console-login-without-mfa"), "the sign-in failed", setv("Failure", "responseElements", "ConsoleLogin")))]),
    rule("security-root-access-key-created", "Access keys were created for the root user (CreateAccessKey by root for itself).", "critical",
         dict({"eventSource": ["iam.amazonaws.com"], "eventName": ["CreateAccessKey"], "userIdentity": {"type": ["Root"]},
               "requestParameters": {"userName": [{"exists": False}]}}, **ok),
         [(True, panther(314)), (False, panther(315)), (False, panther(183))]),
    rule("security-guardduty-disabled", "A GuardDuty detector was deleted or disabled.", "high",
         dict({"eventSource": ["guardduty.amazonaws.com"],
               "$or": [{"eventName": ["DeleteDetector"]}, {"eventName": ["UpdateDetector"], "requestParameters": {"enable": [False]}}]}, **ok),
         [(True, variant(panther(204), "as GuardDuty's DeleteDetector", lambda r: r.update(eventSource="guardduty.amazonaws.com", eventName="DeleteDetector", requestParameters={"detectorId": "12abc34d567e8fa901bc2d34e56789f0"}))),
          (True, variant(panther(204), "as GuardDuty's UpdateDetector with enable false", lambda r: r.update(eventSource="guardduty.amazonaws.com", eventName="UpdateDetector", requestParameters={"detectorId": "12abc34d567e8fa901bc2d34e56789f0", "enable": False}))),
          (False, variant(panther(204), "as GuardDuty's UpdateDetector with enable true", lambda r: r.update(eventSource="guardduty.amazonaws.com", eventName="UpdateDetector", requestParameters={"detectorId": "12abc34d567e8fa901bc2d34e56789f0", "enable": True})))]),
    rule("security-securityhub-disabled", "Security Hub was disabled, or its standards were.", "high",
         dict({"eventSource": ["securityhub.amazonaws.com"], "eventName": ["DisableSecurityHub", "BatchDisableStandards"]}, **ok),
         [(True, variant(panther(204), "as Security Hub's DisableSecurityHub", lambda r: r.update(eventSource="securityhub.amazonaws.com", eventName="DisableSecurityHub", requestParameters={}))),
          (False, variant(panther(204), "as Security Hub's EnableSecurityHub", lambda r: r.update(eventSource="securityhub.amazonaws.com", eventName="EnableSecurityHub", requestParameters={})))]),
    rule("security-config-stopped", "AWS Config's recorder was stopped or deleted, or its delivery channel deleted.", "high",
         dict({"eventSource": ["config.amazonaws.com"], "eventName": ["StopConfigurationRecorder", "DeleteConfigurationRecorder", "DeleteDeliveryChannel"]}, **ok),
         [(True, panther(60)), (True, panther(63)), (False, panther(64))]),
    rule("security-access-analyzer-deleted", "An IAM Access Analyzer analyzer was deleted.", "medium",
         dict({"eventSource": ["access-analyzer.amazonaws.com"], "eventName": ["DeleteAnalyzer"]}, **ok),
         [(True, variant(panther(204), "as Access Analyzer's DeleteAnalyzer", lambda r: r.update(eventSource="access-analyzer.amazonaws.com", eventName="DeleteAnalyzer", requestParameters={"analyzerName": "org"}))),
          (False, variant(panther(204), "as Access Analyzer's CreateAnalyzer", lambda r: r.update(eventSource="access-analyzer.amazonaws.com", eventName="CreateAnalyzer", requestParameters={"analyzerName": "org"})))]),
    rule("security-account-left-organization", "An account left the organisation, or was removed from it.", "high",
         dict({"eventSource": ["organizations.amazonaws.com"], "eventName": ["LeaveOrganization", "RemoveAccountFromOrganization"]}, **ok),
         [(False, stratus("defense-evasion.organizations-leave", 1)),
          (True, variant(stratus("defense-evasion.organizations-leave", 1), "as if it had succeeded", lambda r: [r.pop("errorCode", None), r.pop("errorMessage", None)])),
          (False, panther(22))]),
    rule("security-snapshot-shared-publicly", "An EBS snapshot, an AMI or an RDS snapshot was made public.", "critical",
         dict({"$or": [
             {"eventSource": ["ec2.amazonaws.com"], "eventName": ["ModifySnapshotAttribute"], "requestParameters": {"createVolumePermission": {"add": {"items": {"group": ["all"]}}}}},
             {"eventSource": ["ec2.amazonaws.com"], "eventName": ["ModifyImageAttribute"], "requestParameters": {"launchPermission": {"add": {"items": {"group": ["all"]}}}}},
             {"eventSource": ["rds.amazonaws.com"], "eventName": ["ModifyDBSnapshotAttribute", "ModifyDBClusterSnapshotAttribute"],
              "requestParameters": {"attributeName": ["restore"], "valuesToAdd": ["all"]}}]}, **ok),
         [(True, panther(399)), (False, panther(400)), (False, panther(401)), (False, panther(402)), (True, panther(5)),
          (False, panther(6)), (False, panther(7)), (False, panther(9)),
          (True, variant(panther(298), "shared with all", setv(["all"], "requestParameters", "valuesToAdd"))), (False, panther(298))]),
    rule("security-snapshot-shared-with-account", "An EBS snapshot, an AMI or an RDS snapshot was shared with another account (check it is one of the organisation's: the record names the account, not its organisation).", "high",
         dict({"$or": [
             {"eventSource": ["ec2.amazonaws.com"], "eventName": ["ModifySnapshotAttribute"], "requestParameters": {"createVolumePermission": {"add": {"items": {"userId": [{"exists": True}]}}}}},
             {"eventSource": ["ec2.amazonaws.com"], "eventName": ["ModifyImageAttribute"], "requestParameters": {"launchPermission": {"add": {"items": {"userId": [{"exists": True}]}}}}},
             {"eventSource": ["rds.amazonaws.com"], "eventName": ["ModifyDBSnapshotAttribute", "ModifyDBClusterSnapshotAttribute"],
              "requestParameters": {"attributeName": ["restore"], "valuesToAdd": [{"anything-but": "all"}]}}]}, **ok),
         [(True, stratus("exfiltration.ec2-share-ebs-snapshot")), (True, panther(402)), (True, panther(10)), (True, panther(298)),
          (False, panther(299)), (False, panther(399)), (False, panther(5))]),
    rule("security-s3-public-access-block-removed", "S3 Block Public Access was removed or weakened, for a bucket or the account.", "high",
         dict({"eventSource": ["s3.amazonaws.com"], "$or": [
             {"eventName": ["DeleteBucketPublicAccessBlock", "DeleteAccountPublicAccessBlock"]},
             {"eventName": ["PutBucketPublicAccessBlock", "PutAccountPublicAccessBlock"], "requestParameters": {"PublicAccessBlockConfiguration": {"BlockPublicAcls": [False]}}},
             {"eventName": ["PutBucketPublicAccessBlock", "PutAccountPublicAccessBlock"], "requestParameters": {"PublicAccessBlockConfiguration": {"IgnorePublicAcls": [False]}}},
             {"eventName": ["PutBucketPublicAccessBlock", "PutAccountPublicAccessBlock"], "requestParameters": {"PublicAccessBlockConfiguration": {"BlockPublicPolicy": [False]}}},
             {"eventName": ["PutBucketPublicAccessBlock", "PutAccountPublicAccessBlock"], "requestParameters": {"PublicAccessBlockConfiguration": {"RestrictPublicBuckets": [False]}}}]}, **ok),
         [(True, panther(348)), (False, panther(349)), (False, panther(351)), (False, panther(350)),
          (True, variant(panther(350), "with BlockPublicPolicy false", setv({"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False, "RestrictPublicBuckets": True}, "requestParameters", "PublicAccessBlockConfiguration"))),
          (False, variant(panther(350), "with every setting true", setv({"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}, "requestParameters", "PublicAccessBlockConfiguration")))]),
    rule("security-kms-key-deletion", "A KMS key was scheduled for deletion or disabled.", "high",
         dict({"eventSource": ["kms.amazonaws.com"], "eventName": ["ScheduleKeyDeletion", "DisableKey"]}, **ok),
         [(True, panther(204)), (True, panther(205)), (True, panther(207)), (False, panther(208))]),
]

NAMED = "*trail-alerts*"
fn_change = panther(223)
self_rules = [
    rule("self-function-changed", "trail-alerts' own function was changed: its code, configuration, concurrency, permissions or triggers (a function whose name has trail-alerts in it).", "critical",
         dict({"eventSource": ["lambda.amazonaws.com"],
               "eventName": [{"prefix": p} for p in ["UpdateFunctionCode", "UpdateFunctionConfiguration", "PutFunctionConcurrency", "DeleteFunction",
                                                     "RemovePermission", "AddPermission", "UpdateEventSourceMapping", "DeleteEventSourceMapping", "PutFunctionEventInvokeConfig"]],
               "requestParameters": {"functionName": [{"wildcard": NAMED}]}}, **ok),
         [(True, variant(fn_change, "on a function named trail-alerts-Function-1A2B", setv("trail-alerts-Function-1A2B", "requestParameters", "functionName"))),
          (True, variant(stratus("persistence.lambda-layer-extension"), "on trail-alerts' function (its ARN)", setv("arn:aws:lambda:us-east-1:712967571683:function:trail-alerts-Function-1A2B", "requestParameters", "functionName"))),
          (False, fn_change), (False, stratus("persistence.lambda-layer-extension"))]),
    rule("self-topic-changed", "An alert topic of trail-alerts was changed: its policy, attributes or permissions, or it was deleted.", "high",
         dict({"eventSource": ["sns.amazonaws.com"], "eventName": ["SetTopicAttributes", "DeleteTopic", "AddPermission", "RemovePermission", "PutDataProtectionPolicy"],
               "requestParameters": {"topicArn": [{"wildcard": NAMED}]}}, **ok),
         [(True, variant(panther(204), "as SNS SetTopicAttributes on trail-alerts' topic", lambda r: r.update(eventSource="sns.amazonaws.com", eventName="SetTopicAttributes", requestParameters={"topicArn": "arn:aws:sns:us-east-1:123456789012:trail-alerts-AlertTopic-1A2B", "attributeName": "Policy"}))),
          (False, variant(panther(204), "as SNS SetTopicAttributes on another topic", lambda r: r.update(eventSource="sns.amazonaws.com", eventName="SetTopicAttributes", requestParameters={"topicArn": "arn:aws:sns:us-east-1:123456789012:billing", "attributeName": "Policy"})))]),
    rule("self-topic-subscribed", "Someone subscribed to an alert topic of trail-alerts (alerts carry whole CloudTrail records: check the endpoint is one of yours).", "medium",
         dict({"eventSource": ["sns.amazonaws.com"], "eventName": ["Subscribe"], "requestParameters": {"topicArn": [{"wildcard": NAMED}]}}, **ok),
         [(True, variant(panther(204), "as SNS Subscribe to trail-alerts' topic from another account", lambda r: r.update(eventSource="sns.amazonaws.com", eventName="Subscribe", requestParameters={"topicArn": "arn:aws:sns:us-east-1:123456789012:trail-alerts-AlertTopic-1A2B", "protocol": "https", "endpoint": "https://collector.example.net/in"}))),
          (False, variant(panther(204), "as SNS Subscribe to another topic", lambda r: r.update(eventSource="sns.amazonaws.com", eventName="Subscribe", requestParameters={"topicArn": "arn:aws:sns:us-east-1:123456789012:billing", "protocol": "email", "endpoint": "a@example.com"})))]),
    rule("self-state-table-changed", "trail-alerts' state table was deleted or changed (its TTL, capacity or policy).", "high",
         dict({"eventSource": ["dynamodb.amazonaws.com"], "eventName": ["DeleteTable", "UpdateTable", "UpdateTimeToLive", "PutResourcePolicy", "DeleteResourcePolicy"],
               "requestParameters": {"tableName": [{"wildcard": NAMED}]}}, **ok),
         [(True, variant(panther(204), "as DynamoDB DeleteTable on trail-alerts' table", lambda r: r.update(eventSource="dynamodb.amazonaws.com", eventName="DeleteTable", requestParameters={"tableName": "trail-alerts-StateTable-1A2B"}))),
          (False, variant(panther(204), "as DynamoDB DeleteTable on another table", lambda r: r.update(eventSource="dynamodb.amazonaws.com", eventName="DeleteTable", requestParameters={"tableName": "orders"})))]),
    rule("self-schedule-changed", "An event rule or schedule of trail-alerts (its delivery rules, its sweep) was disabled, deleted or retargeted.", "high",
         dict({"$or": [
             {"eventSource": ["events.amazonaws.com"], "eventName": ["DisableRule", "DeleteRule", "PutRule"], "requestParameters": {"name": [{"wildcard": NAMED}]}},
             {"eventSource": ["events.amazonaws.com"], "eventName": ["RemoveTargets", "PutTargets"], "requestParameters": {"rule": [{"wildcard": NAMED}]}},
             {"eventSource": ["scheduler.amazonaws.com"], "eventName": ["DeleteSchedule", "UpdateSchedule"], "requestParameters": {"name": [{"wildcard": NAMED}]}}]}, **ok),
         [(True, variant(panther(204), "as EventBridge DisableRule on trail-alerts' sweep", lambda r: r.update(eventSource="events.amazonaws.com", eventName="DisableRule", requestParameters={"name": "trail-alerts-SweepSchedule-1A2B"}))),
          (True, variant(panther(204), "as EventBridge RemoveTargets from trail-alerts' rule", lambda r: r.update(eventSource="events.amazonaws.com", eventName="RemoveTargets", requestParameters={"rule": "trail-alerts-BackupEvents-1A2B", "ids": ["fn"]}))),
          (False, variant(panther(204), "as EventBridge DisableRule on another rule", lambda r: r.update(eventSource="events.amazonaws.com", eventName="DisableRule", requestParameters={"name": "nightly-report"})))]),
    rule("self-secret-changed", "A secret or parameter of trail-alerts (a PagerDuty routing key, say) was changed or deleted.", "high",
         dict({"$or": [
             {"eventSource": ["secretsmanager.amazonaws.com"], "eventName": ["PutSecretValue", "UpdateSecret", "DeleteSecret", "PutResourcePolicy"], "requestParameters": {"secretId": [{"wildcard": NAMED}]}},
             {"eventSource": ["ssm.amazonaws.com"], "eventName": ["PutParameter", "DeleteParameter"], "requestParameters": {"name": [{"wildcard": NAMED}]}}]}, **ok),
         [(True, variant(panther(204), "as Secrets Manager PutSecretValue on trail-alerts' key", lambda r: r.update(eventSource="secretsmanager.amazonaws.com", eventName="PutSecretValue", requestParameters={"secretId": "trail-alerts/pagerduty"}))),
          (True, variant(panther(204), "as SSM DeleteParameter on trail-alerts' key", lambda r: r.update(eventSource="ssm.amazonaws.com", eventName="DeleteParameter", requestParameters={"name": "/trail-alerts/pagerduty"}))),
          (False, variant(panther(204), "as Secrets Manager PutSecretValue on another secret", lambda r: r.update(eventSource="secretsmanager.amazonaws.com", eventName="PutSecretValue", requestParameters={"secretId": "db/password"})))]),
]

HEADER_SECURITY = """# Optional pack `builtin:security` (off unless named: RULES=builtin,builtin:security): a security
# baseline — the root user used, console sign-ins without MFA, root access keys, GuardDuty,
# Security Hub, Config and Access Analyzer turned off, an account leaving the organisation,
# snapshots and AMIs made public or shared, S3 Block Public Access removed, KMS keys scheduled
# for deletion. Tests are real records of tests/fixtures/real (named by source and index), and
# variants of them where no real record shows the case. Generated by scripts/gen/security-pack.py.
rules:
"""
HEADER_SELF = """# Optional pack `builtin:self` (off unless named): changes to trail-alerts itself — its function,
# its topics (policy, subscriptions), its state table, its event rules and schedules, its
# secrets. It knows them by "trail-alerts" in their names: deploy the stack with a name that has
# it (the template's own named resources carry it too). Generated by scripts/gen/security-pack.py.
rules:
"""
with open(os.path.join(ROOT, "rules/security.yaml"), "w") as f:
    f.write(annotate(HEADER_SECURITY + "\n".join(security) + "\n"))
with open(os.path.join(ROOT, "rules/self.yaml"), "w") as f:
    f.write(annotate(HEADER_SELF + "\n".join(self_rules) + "\n"))
