#!/usr/bin/env python3
"""`make lint`: templates/member.yaml is fit for a service-managed StackSet — the checks
cfn-lint does not make.

A StackSet deploys the template once per Region in every account of the chosen OUs, so:
  - no account-wide name: IAM is global to an account, and a named role (RoleName,
    ManagedPolicyName, GroupName, UserName, InstanceProfileName) created in a second Region
    collides with the first; no resource carries a physical name at all (Name, RuleName, ...)
  - no Region or account written into it: no literal Region (except GlobalEventsRegion's
    default) and no 12-digit account id; AWS::Region only in the condition IsGlobalEventsRegion
  - every EventBridge rule sends to the central bus (the CentralEventBusArn parameter) with a
    role of the template, and nothing else
  - global services' events are forwarded from GlobalEventsRegion alone: the CloudTrail rule's
    pattern outside that Region leaves out every global-only service (IAM, Organizations,
    CloudFront, Route 53), and in that Region leaves out none

  check-stackset.py [TEMPLATE]   prints every fault; exit 1 on any
  check-stackset.py --self-test  breaks templates/member.yaml in each way above, expects a fault
"""
import copy
import os
import re
import sys

from cfnlint.decode import cfn_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = os.path.join(ROOT, "templates", "member.yaml")
IAM_NAMES = {"RoleName", "ManagedPolicyName", "GroupName", "UserName", "InstanceProfileName"}
NAMES = IAM_NAMES | {"Name", "RuleName", "BucketName", "TopicName", "QueueName", "FunctionName",
                     "TableName", "LogGroupName", "AliasName", "StateMachineName"}
GLOBAL_ONLY = ["iam.amazonaws.com", "organizations.amazonaws.com", "cloudfront.amazonaws.com",
               "route53.amazonaws.com"]
REGION = re.compile(r"\b[a-z]{2}(-gov)?-[a-z]+-[0-9]\b")
ACCOUNT = re.compile(r"(?<![0-9])[0-9]{12}(?![0-9])")


def walk(node, path):
    """Every (path, value) below node."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def is_ref(node, name):
    return isinstance(node, dict) and node.get("Ref") == name


def branch(pattern, which):
    """The pattern of one branch of an Fn::If (0: in the global Region, 1: elsewhere)."""
    if isinstance(pattern, dict) and "Fn::If" in pattern:
        cond, yes, no = pattern["Fn::If"]
        if cond != "IsGlobalEventsRegion":
            return None
        return yes if which == 0 else no
    return pattern


def excluded(pattern):
    """The event sources a pattern leaves out with anything-but on detail.eventSource."""
    out = set()
    for matcher in ((pattern or {}).get("detail") or {}).get("eventSource") or []:
        if isinstance(matcher, dict) and "anything-but" in matcher:
            ab = matcher["anything-but"]
            out |= set(ab if isinstance(ab, list) else [ab])
    return out


def check(template):
    faults = []
    resources = template.get("Resources", {})
    params = template.get("Parameters", {})
    for lid, res in resources.items():
        props = res.get("Properties", {}) or {}
        for name in NAMES & set(props):
            kind = "an account-wide IAM name" if name in IAM_NAMES else "a physical name"
            faults.append(f"Resources.{lid}.Properties.{name}: {kind} collides across the StackSet's Regions or accounts")
    for path, value in walk(resources, "Resources"):
        if isinstance(value, str):
            if REGION.search(value):
                faults.append(f"{path}: a Region written into the template ({value!r})")
            if ACCOUNT.search(value):
                faults.append(f"{path}: an account id written into the template ({value!r})")
        if is_ref(value, "AWS::Region"):
            faults.append(f"{path}: AWS::Region outside the condition IsGlobalEventsRegion")
    for name, cond in (template.get("Conditions") or {}).items():
        for path, value in walk(cond, f"Conditions.{name}"):
            if is_ref(value, "AWS::Region") and name != "IsGlobalEventsRegion":
                faults.append(f"{path}: AWS::Region outside the condition IsGlobalEventsRegion")
    for pname, p in params.items():
        for path, value in walk(p, f"Parameters.{pname}"):
            if isinstance(value, str) and ACCOUNT.search(value) and path.endswith(".Default"):
                faults.append(f"{path}: an account id as a default")
            if isinstance(value, str) and REGION.search(value) and path.endswith(".Default") \
                    and pname != "GlobalEventsRegion":
                faults.append(f"{path}: a Region as a default")
    rules = {lid: r for lid, r in resources.items() if r.get("Type") == "AWS::Events::Rule"}
    if not rules:
        faults.append("Resources: no EventBridge rule")
    for lid, rule in rules.items():
        props = rule.get("Properties", {}) or {}
        if "EventBusName" in props:
            faults.append(f"Resources.{lid}.Properties.EventBusName: member rules listen on the default bus")
        for i, target in enumerate(props.get("Targets") or []):
            where = f"Resources.{lid}.Properties.Targets[{i}]"
            if not is_ref(target.get("Arn"), "CentralEventBusArn"):
                faults.append(f"{where}.Arn: not the central bus (Ref CentralEventBusArn)")
            role = target.get("RoleArn")
            if not (isinstance(role, dict) and "Fn::GetAtt" in role
                    and (role["Fn::GetAtt"][0] if isinstance(role["Fn::GetAtt"], list)
                         else role["Fn::GetAtt"].split(".")[0]) in resources):
                faults.append(f"{where}.RoleArn: no role of the template to send with")
    ct = [lid for lid, r in rules.items()
          if "CloudTrailEventSources" in str(r.get("Properties", {}).get("EventPattern"))]
    for lid in ct:
        pattern = rules[lid]["Properties"]["EventPattern"]
        here, elsewhere = branch(pattern, 0), branch(pattern, 1)
        if here is None or elsewhere is None or here is elsewhere:
            faults.append(f"Resources.{lid}.Properties.EventPattern: not chosen by IsGlobalEventsRegion")
            continue
        missing = [s for s in GLOBAL_ONLY if s not in excluded(elsewhere)]
        if missing:
            faults.append(f"Resources.{lid}.Properties.EventPattern: outside GlobalEventsRegion forwards {', '.join(missing)} (forwarded twice)")
        if excluded(here) & set(GLOBAL_ONLY):
            faults.append(f"Resources.{lid}.Properties.EventPattern: in GlobalEventsRegion leaves out global services (never forwarded)")
    return faults


def self_test(path):
    base = cfn_yaml.load(path)
    assert check(base) == [], check(base)
    res = base["Resources"]
    ct = next(l for l, r in res.items() if r["Type"] == "AWS::Events::Rule" and "CloudTrail" in l)
    breaks = {
        "a named role": lambda t: t["Resources"]["ForwardRole"]["Properties"].__setitem__("RoleName", "trail-alerts-forward"),
        "a named rule": lambda t: t["Resources"]["BackupEventsRule"]["Properties"].__setitem__("Name", "trail-alerts-backup"),
        "a Region literal": lambda t: t["Resources"]["BackupEventsRule"]["Properties"].__setitem__("Description", "forwards from eu-west-1"),
        "an account literal": lambda t: t["Resources"]["BackupEventsRule"]["Properties"]["Targets"][0].__setitem__("Arn", "arn:aws:events:us-east-1:111122223333:event-bus/x"),
        "AWS::Region elsewhere": lambda t: t["Resources"]["BackupEventsRule"]["Properties"].__setitem__("Description", {"Ref": "AWS::Region"}),
        "no role": lambda t: t["Resources"]["BackupEventsRule"]["Properties"]["Targets"][0].pop("RoleArn"),
        "a custom bus": lambda t: t["Resources"]["BackupEventsRule"]["Properties"].__setitem__("EventBusName", "custom"),
        "IAM forwarded everywhere": lambda t: t["Resources"][ct]["Properties"]["EventPattern"]["Fn::If"][2]["detail"]["eventSource"][0]["anything-but"].remove("iam.amazonaws.com"),
        "one pattern everywhere": lambda t: t["Resources"][ct]["Properties"].__setitem__("EventPattern", t["Resources"][ct]["Properties"]["EventPattern"]["Fn::If"][1]),
        "globals left out in the global Region": lambda t: t["Resources"][ct]["Properties"]["EventPattern"]["Fn::If"].__setitem__(1, t["Resources"][ct]["Properties"]["EventPattern"]["Fn::If"][2]),
    }
    failed = []
    for name, brk in breaks.items():
        t = copy.deepcopy(base)
        brk(t)
        if not check(t):
            failed.append(name)
    if failed:
        print("check-stackset self-test: no fault for " + ", ".join(failed))
        return 1
    print(f"check-stackset self-test: each of {len(breaks)} breakages found")
    return 0


def main(argv):
    if argv and argv[0] == "--self-test":
        return self_test(argv[1] if len(argv) > 1 else DEFAULT)
    path = argv[0] if argv else DEFAULT
    faults = check(cfn_yaml.load(path))
    for f in faults:
        print(f"{os.path.relpath(path, ROOT)}: {f}")
    if faults:
        return 1
    print(f"{os.path.relpath(path, ROOT)}: fit for a StackSet (no names, Regions or accounts written in; global events from one Region)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
