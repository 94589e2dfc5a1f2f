#!/usr/bin/env python3
"""`make lint`: every SNS topic and SQS queue that something in template.yaml sends to is
encrypted with a key the sender may use — the check cfn-lint does not make.

A CloudWatch alarm publishing to a topic under the AWS-managed key alias/aws/sns is valid
CloudFormation, deploys cleanly and never delivers: that key's policy cannot be changed to let
cloudwatch.amazonaws.com use it. The same holds for EventBridge targets and dead-letter queues
(events.amazonaws.com) and for SNS's deliveries to encrypted queues (sns.amazonaws.com).

Senders, and the principal that must use the key:
  - AWS::CloudWatch::Alarm AlarmActions / OKActions / InsufficientDataActions: cloudwatch.amazonaws.com
  - AWS::Events::Rule Targets[].Arn and Targets[].DeadLetterConfig.Arn: events.amazonaws.com
  - AWS::SNS::Subscription with Protocol sqs: sns.amazonaws.com
  - an IAM policy (AWS::Serverless::Function Policies, AWS::IAM::Role Policies) allowing
    sns:Publish or sqs:SendMessage: that role, an IAM principal of this account

A destination declared in the template is judged by its own encryption:
  - none: a fault, unless its Metadata says why (`TrailAlerts: {Unencrypted: <reason>}`)
  - SqsManagedSseEnabled (SSE-SQS, no KMS): any sender
  - the AWS-managed key (alias/aws/sns, alias/aws/sqs): only IAM principals of this account
  - a key of the template (AWS::KMS::Key): a service principal needs an Allow in the key policy
    for kms:GenerateDataKey* and kms:Decrypt (with no aws:Source* condition for EventBridge, whose
    KMS requests do not carry them); an IAM principal needs the key policy to delegate to the
    account's IAM policies and its own policy to allow kms:GenerateDataKey and kms:Decrypt on it
  - a key named by a parameter: only an IAM principal whose policy allows both on that parameter
A destination named by a parameter (a topic the user brings) may be sent to only by IAM
principals, whose policy must allow both KMS actions on the parameter that the template's
Metadata `TrailAlerts::TopicKeys` names for it (`{<topic parameter>: <key parameter>}`).
Fn::If is followed into both branches.

  check-topic-keys.py [TEMPLATE]   prints every fault with its resource path; exit 1 on any
  check-topic-keys.py --self-test  breaks template.yaml in each way above and expects a fault
"""
import copy
import os
import re
import sys

from cfnlint.decode import cfn_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AWS_MANAGED = re.compile(r"(^|:)alias/aws/(sns|sqs)$")
KINDS = {"AWS::SNS::Topic": "topic", "AWS::SQS::Queue": "queue"}
SEND = {"topic": "sns:Publish", "queue": "sqs:SendMessage"}
EVENTBRIDGE = "events.amazonaws.com"


def refs(node):
    """The logical ids and parameters a value refers to (Ref, GetAtt, Sub)."""
    out = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::GetAtt":
                out.add(v[0] if isinstance(v, list) else v.split(".")[0])
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                out |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                if isinstance(v, list):
                    out |= refs(v[1])
            else:
                out |= refs(v)
    elif isinstance(node, list):
        for v in node:
            out |= refs(v)
    return out


def branches(node):
    """The values a property may take: both sides of Fn::If, never AWS::NoValue."""
    if isinstance(node, dict) and "Fn::If" in node:
        _, yes, no = node["Fn::If"]
        return branches(yes) + branches(no)
    if node == {"Ref": "AWS::NoValue"}:
        return []
    return [node]


def listed(node):
    """The items of a list property, through Fn::If at either level."""
    out = []
    for value in branches(node):
        for item in value if isinstance(value, list) else [value]:
            out += branches(item)
    return out


def as_list(v):
    return v if isinstance(v, list) else [v]


def allows(actions, wanted):
    """Whether an Action value (string or list, with * wildcards) covers `wanted`."""
    for a in as_list(actions):
        if isinstance(a, str) and re.fullmatch(re.escape(a).replace(r"\*", ".*"), wanted, re.I):
            return True
    return False


class Template:
    def __init__(self, doc):
        self.doc = doc
        self.resources = doc.get("Resources", {})
        self.parameters = doc.get("Parameters", {})
        self.topic_keys = doc.get("Metadata", {}).get("TrailAlerts::TopicKeys", {})
        self.faults = []

    def fault(self, path, message):
        self.faults.append(f"{path}: {message}")

    def kind(self, name):
        return KINDS.get(self.resources.get(name, {}).get("Type"))

    # -- who sends where ------------------------------------------------------------------
    def senders(self):
        """(path, principal, destination) for every send in the template. A principal is
        ("service", name) or ("role", path, statements)."""
        for name, res in self.resources.items():
            kind, props = res.get("Type"), res.get("Properties", {})
            if kind == "AWS::CloudWatch::Alarm":
                for field in ("AlarmActions", "OKActions", "InsufficientDataActions"):
                    for i, action in enumerate(listed(props.get(field, []))):
                        for dest in self.destinations(action):
                            yield f"Resources.{name}.Properties.{field}[{i}]", ("service", "cloudwatch.amazonaws.com"), dest
            elif kind == "AWS::Events::Rule":
                for i, target in enumerate(listed(props.get("Targets", []))):
                    for field, value in (("Arn", target.get("Arn")),
                                         ("DeadLetterConfig.Arn", target.get("DeadLetterConfig", {}).get("Arn"))):
                        for dest in self.destinations(value):
                            yield f"Resources.{name}.Properties.Targets[{i}].{field}", ("service", EVENTBRIDGE), dest
            elif kind == "AWS::SNS::Subscription" and props.get("Protocol") == "sqs":
                for dest in self.destinations(props.get("Endpoint")):
                    yield f"Resources.{name}.Properties.Endpoint", ("service", "sns.amazonaws.com"), dest
            if kind == "AWS::Serverless::Function":
                # Lambda sends to the on-failure destination with the function's own role.
                on_failure = props.get("EventInvokeConfig", {}).get("DestinationConfig", {}).get("OnFailure", {})
                statements = [st for _, sts in self.role_policies(name, res) for st in sts]
                for dest in self.destinations(on_failure.get("Destination")):
                    yield (f"Resources.{name}.Properties.EventInvokeConfig.DestinationConfig.OnFailure",
                           ("role", f"Resources.{name}.Properties", statements), dest)
            for path, statements in self.role_policies(name, res):
                for j, st in enumerate(statements):
                    if st.get("Effect") != "Allow":
                        continue
                    for want in ("topic", "queue"):
                        if not allows(st.get("Action", []), SEND[want]):
                            continue
                        for dest in self.destinations(st.get("Resource"), want):
                            yield f"{path}[{j}]", ("role", path, statements), dest

    def role_policies(self, name, res):
        """(path, statements) of each inline policy of a function or role."""
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::Serverless::Function":
            for i, policy in enumerate(as_list(props.get("Policies", []))):
                if isinstance(policy, dict) and "Statement" in policy:
                    yield f"Resources.{name}.Properties.Policies[{i}].Statement", listed(policy["Statement"])
        elif res.get("Type") == "AWS::IAM::Role":
            for i, policy in enumerate(props.get("Policies", [])):
                doc = policy.get("PolicyDocument", {})
                yield f"Resources.{name}.Properties.Policies[{i}].PolicyDocument.Statement", listed(doc.get("Statement", []))

    def destinations(self, value, want=None):
        """("resource"|"parameter", name) of each topic or queue a value names."""
        out = []
        for name in sorted(refs(value) if value is not None else ()):
            if name in self.resources and self.kind(name) and (want is None or self.kind(name) == want):
                out.append(("resource", name))
            elif name in self.parameters and name in self.topic_keys:
                out.append(("parameter", name))
            elif name in self.parameters and want is not None and re.search(r"Topic|Queue", name):
                out.append(("parameter", name))
        return out

    # -- may the principal use the key ----------------------------------------------------
    def check(self):
        for path, principal, (how, name) in self.senders():
            who = principal[1] if principal[0] == "service" else f"the role of {principal[1].split('.Properties')[0]}"
            if how == "parameter":
                self.check_parameter_destination(path, principal, who, name)
            else:
                self.check_resource_destination(path, principal, who, name)
        return self.faults

    def check_parameter_destination(self, path, principal, who, name):
        if principal[0] == "service":
            return self.fault(path, f"{who} sends to {name}, a topic or queue the user brings: its key policy is out of "
                                    "the template's sight; send to a topic of the stack instead")
        key = self.topic_keys.get(name)
        if key is None:
            return self.fault(path, f"{who} publishes to {name}, whose KMS key (if any) no parameter names: add a key "
                                    "parameter and list it under Metadata TrailAlerts::TopicKeys")
        if key not in self.parameters:
            return self.fault("Metadata.TrailAlerts::TopicKeys", f"{name} maps to {key}, which is not a parameter")
        if not self.role_grants(principal[2], key):
            self.fault(path, f"{who} publishes to {name} but is not allowed kms:GenerateDataKey and kms:Decrypt on "
                             f"{key}, the keys of such topics")

    def check_resource_destination(self, path, principal, who, name):
        res = self.resources[name]
        props = res.get("Properties", {})
        where = f"Resources.{name}"
        if props.get("SqsManagedSseEnabled") is True and "KmsMasterKeyId" not in props:
            return
        keys = branches(props["KmsMasterKeyId"]) if "KmsMasterKeyId" in props else [None]
        for key in keys:
            if key is None:
                reason = res.get("Metadata", {}).get("TrailAlerts", {}).get("Unencrypted")
                if not reason:
                    self.fault(f"{where}.Properties", f"{who} sends to {name}, which is not encrypted and whose "
                                                      "Metadata TrailAlerts.Unencrypted does not say why")
                continue
            if isinstance(key, str) and AWS_MANAGED.search(key):
                if principal[0] == "service":
                    self.fault(f"{where}.Properties.KmsMasterKeyId",
                               f"{who} sends to {name} ({path}), but {name} is encrypted with the AWS-managed key "
                               f"{key}, whose key policy cannot let {who} use it: nothing would be delivered. Use a "
                               "customer-managed key whose policy allows it")
                continue
            targets = refs(key)
            own = [k for k in targets if self.resources.get(k, {}).get("Type") == "AWS::KMS::Key"]
            params = [k for k in targets if k in self.parameters]
            if own:
                self.check_own_key(path, principal, who, name, own[0])
            elif params:
                if principal[0] == "service":
                    self.fault(f"{where}.Properties.KmsMasterKeyId",
                               f"{who} sends to {name} ({path}), encrypted with the key in parameter {params[0]}, "
                               "whose policy the template cannot see: use a key of the stack")
                elif not self.role_grants(principal[2], params[0]):
                    self.fault(path, f"{who} sends to {name}, encrypted with the key in {params[0]}, but is not "
                                     f"allowed kms:GenerateDataKey and kms:Decrypt on {params[0]}")
            else:
                self.fault(f"{where}.Properties.KmsMasterKeyId", f"cannot tell which key {key!r} is")

    def check_own_key(self, path, principal, who, name, key):
        statements = listed(self.resources[key].get("Properties", {}).get("KeyPolicy", {}).get("Statement", []))
        where = f"Resources.{key}.Properties.KeyPolicy"
        if principal[0] == "service":
            for st in statements:
                services = as_list(st.get("Principal", {}).get("Service", [])) if isinstance(st.get("Principal"), dict) else []
                if st.get("Effect") != "Allow" or principal[1] not in services:
                    continue
                if not (allows(st.get("Action", []), "kms:GenerateDataKey") and allows(st.get("Action", []), "kms:Decrypt")):
                    continue
                conditions = {k for c in st.get("Condition", {}).values() for k in c}
                source = sorted(k for k in conditions if k.lower().startswith("aws:source"))
                if principal[1] == EVENTBRIDGE and source:
                    return self.fault(where, f"{who} is granted {key} only under {source}, which EventBridge's KMS "
                                             "requests do not carry: every delivery would be refused")
                return
            self.fault(where, f"{who} sends to {name} ({path}), but the key policy of {key} does not allow {who} "
                              "kms:GenerateDataKey* and kms:Decrypt: nothing would be delivered")
        else:
            delegated = any(st.get("Effect") == "Allow" and isinstance(st.get("Principal"), dict)
                            and ":root" in str(st["Principal"].get("AWS", "")) and allows(st.get("Action", []), "kms:Decrypt")
                            for st in statements)
            if not delegated:
                self.fault(where, f"the key policy of {key} does not let the account's IAM policies grant its use, "
                                  f"so {who} cannot publish to {name}")
            if not self.role_grants(principal[2], key):
                self.fault(path, f"{who} sends to {name}, encrypted with {key}, but is not allowed "
                                 f"kms:GenerateDataKey and kms:Decrypt on it")

    @staticmethod
    def role_grants(statements, key):
        ok = {"kms:GenerateDataKey": False, "kms:Decrypt": False}
        for st in statements:
            if st.get("Effect") == "Allow" and (key in refs(st.get("Resource")) or st.get("Resource") == "*"):
                for action in ok:
                    ok[action] |= allows(st.get("Action", []), action)
        return all(ok.values())


def load(path):
    return cfn_yaml.load(path)


def self_test(path):
    """Each way of breaking the shipped template must give a fault; the template none."""
    base = load(path)
    assert not Template(copy.deepcopy(base)).check(), "the shipped template has faults"

    def broken(mutate):
        doc = copy.deepcopy(base)
        mutate(doc)
        return Template(doc).check()

    r = lambda doc: doc["Resources"]
    function_statements = lambda doc: r(doc)["Function"]["Properties"]["Policies"][0]["Statement"]

    def without_sid(statements, sid):
        keep = []
        for st in statements:
            inner = branches(st)
            if not any(isinstance(x, dict) and x.get("Sid") == sid for x in inner):
                keep.append(st)
        assert len(keep) == len(statements) - 1, f"no statement {sid}"
        statements[:] = keep

    def events_rule_to_ops_topic(doc):
        r(doc)["BackupEventsRule"]["Properties"]["Targets"].append({"Id": "ops", "Arn": {"Ref": "OpsTopic"}})

    def eventbridge_granted_with_source_condition(doc):
        events_rule_to_ops_topic(doc)
        r(doc)["OpsTopicKey"]["Properties"]["KeyPolicy"]["Statement"].append({
            "Effect": "Allow", "Principal": {"Service": EVENTBRIDGE},
            "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}})

    def kms_queue_for_dead_letters(doc):
        q = r(doc)["EventsDeadLetterQueue"]["Properties"]
        del q["SqsManagedSseEnabled"]
        q["KmsMasterKeyId"] = "alias/aws/sqs"

    cases = {
        "ops topic under alias/aws/sns": (
            lambda doc: r(doc)["OpsTopic"]["Properties"].update(KmsMasterKeyId="alias/aws/sns"),
            "AWS-managed key"),
        "ops key policy without CloudWatch": (
            lambda doc: r(doc)["OpsTopicKey"]["Properties"]["KeyPolicy"]["Statement"].pop(1),
            "does not allow cloudwatch.amazonaws.com"),
        "ops topic unencrypted, no reason": (
            lambda doc: r(doc)["OpsTopic"]["Properties"].pop("KmsMasterKeyId"),
            "not encrypted"),
        "function without the topic-key grant": (
            lambda doc: without_sid(function_statements(doc), "UseTopicKeys"),
            "not allowed kms:GenerateDataKey and kms:Decrypt"),
        "key parameter unmapped": (
            lambda doc: doc["Metadata"]["TrailAlerts::TopicKeys"].pop("ChatTopicArn"),
            "no parameter names"),
        "EventBridge rule to the ops topic": (events_rule_to_ops_topic, "does not allow events.amazonaws.com"),
        "EventBridge granted under aws:SourceAccount": (eventbridge_granted_with_source_condition,
                                                       "do not carry"),
        "dead-letter queue under alias/aws/sqs": (kms_queue_for_dead_letters, "AWS-managed key alias/aws/sqs"),
        "alarm to a topic the user brings": (
            lambda doc: r(doc)["FunctionErrorsAlarm"]["Properties"].update(AlarmActions=[{"Ref": "ChatTopicArn"}]),
            "out of the template's sight"),
    }
    failed = 0
    for name, (mutate, expected) in cases.items():
        faults = broken(mutate)
        ok = any(expected in f for f in faults)
        print(f"{'ok' if ok else 'FAILED'}: {name}" + ("" if ok else f" (faults: {faults})"))
        failed += not ok
    # An unencrypted topic with its reason stated is accepted.
    doc = copy.deepcopy(base)
    r(doc)["OpsTopic"]["Properties"].pop("KmsMasterKeyId")
    r(doc)["OpsTopic"]["Metadata"] = {"TrailAlerts": {"Unencrypted": "operations data only"}}
    ok = not Template(doc).check()
    print(f"{'ok' if ok else 'FAILED'}: an unencrypted topic whose reason is stated")
    failed += not ok
    return 1 if failed else 0


def main(argv):
    if argv[:1] == ["--self-test"]:
        return self_test(argv[1] if len(argv) > 1 else os.path.join(ROOT, "template.yaml"))
    path = argv[0] if argv else os.path.join(ROOT, "template.yaml")
    faults = Template(load(path)).check()
    for f in faults:
        print(f"{path}: {f}", file=sys.stderr)
    if not faults:
        print(f"{os.path.basename(path)}: every topic and queue sent to is encrypted with a key its senders may use")
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
