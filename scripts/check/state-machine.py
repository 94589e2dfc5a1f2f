#!/usr/bin/env python3
"""`make lint`: the backfill state machine in template.yaml against the Amazon States Language
rules that can be checked offline (cfn-lint checks the template around it).

The definition is JSON text under !Sub: each ${...} is replaced by the parameter's default (a
number stays a number) or a sample ARN/name, then the JSON is parsed and checked: the fields
each state type allows; one of Next/End where it is needed; every Next and Default naming a
state of the same block; every state reachable; `.$` fields holding paths; Retry rules; the
Distributed Map's ItemReader, ItemBatcher, ProcessorConfig, MaxConcurrency,
ToleratedFailurePercentage and ResultWriter; the Lambda task's FunctionName. Also that both
Maps share one ItemProcessor, and that the function it invokes fits an Express child
execution's five minutes. Exits 1 with every fault, each with its JSON path.
"""
import json, os, re, sys

from cfnlint.decode import cfn_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COMMON = {"Type", "Comment", "InputPath", "OutputPath", "QueryLanguage", "Assign"}
FIELDS = {
    "Task": COMMON | {"Resource", "Parameters", "ResultPath", "ResultSelector", "Retry", "Catch",
                      "TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds", "HeartbeatSecondsPath",
                      "Credentials", "Next", "End"},
    "Pass": COMMON | {"Parameters", "Result", "ResultPath", "Next", "End"},
    "Choice": COMMON | {"Choices", "Default"},
    "Wait": COMMON | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath", "Next", "End"},
    "Succeed": COMMON,
    "Fail": COMMON - {"OutputPath", "InputPath"} | {"Error", "Cause", "ErrorPath", "CausePath"},
    "Parallel": COMMON | {"Branches", "Parameters", "ResultPath", "ResultSelector", "Retry", "Catch", "Next", "End"},
    "Map": COMMON | {"ItemProcessor", "Iterator", "ItemsPath", "ItemSelector", "Parameters", "ItemReader",
                     "ItemBatcher", "ResultWriter", "MaxConcurrency", "MaxConcurrencyPath",
                     "ToleratedFailurePercentage", "ToleratedFailurePercentagePath",
                     "ToleratedFailureCount", "ToleratedFailureCountPath", "Label", "ResultPath",
                     "ResultSelector", "Retry", "Catch", "Next", "End"},
}
TERMINAL = {"Choice", "Succeed", "Fail"}
COMPARISONS = {"IsPresent", "IsNull", "IsString", "IsNumeric", "IsBoolean", "IsTimestamp",
               "StringEquals", "StringEqualsPath", "StringMatches", "NumericEquals", "NumericLessThan",
               "NumericGreaterThan", "NumericLessThanEquals", "NumericGreaterThanEquals",
               "BooleanEquals", "TimestampEquals", "TimestampLessThan", "TimestampGreaterThan"}
READERS = {"arn:aws:states:::s3:listObjectsV2": {"Bucket"}, "arn:aws:states:::s3:getObject": {"Bucket", "Key"}}

faults = []


def fault(path, message):
    faults.append(f"{path}: {message}")


def paths(node, path):
    """`.$` fields hold a path (`$…`, or `$$…` for the context object)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k.endswith(".$") and not (isinstance(v, str) and v.startswith("$")):
                fault(f"{path}.{k}", f"a '.$' field holds a path, found {v!r}")
            paths(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            paths(v, f"{path}[{i}]")


def check_retry(rules, path):
    if not isinstance(rules, list) or not rules:
        return fault(path, "Retry is a non-empty list")
    for i, r in enumerate(rules):
        p = f"{path}[{i}]"
        unknown = set(r) - {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy", "Comment"}
        if unknown:
            fault(p, f"unknown fields {sorted(unknown)}")
        errors = r.get("ErrorEquals")
        if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
            fault(p, "ErrorEquals is a non-empty list of error names")
        elif "States.ALL" in errors and (len(errors) > 1 or i != len(rules) - 1):
            fault(p, "States.ALL stands alone, in the last retrier")
        if not (isinstance(r.get("IntervalSeconds", 1), int) and r.get("IntervalSeconds", 1) >= 1):
            fault(p, "IntervalSeconds is a positive integer")
        if not (isinstance(r.get("MaxAttempts", 3), int) and r.get("MaxAttempts", 3) >= 0):
            fault(p, "MaxAttempts is a non-negative integer")
        if not (isinstance(r.get("BackoffRate", 2.0), (int, float)) and r.get("BackoffRate", 2.0) >= 1):
            fault(p, "BackoffRate is a number of at least 1")
        if r.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
            fault(p, "JitterStrategy is FULL or NONE")


def check_map(state, path):
    proc = state.get("ItemProcessor")
    if not isinstance(proc, dict):
        return fault(path, "a Map has an ItemProcessor")
    config = proc.get("ProcessorConfig", {})
    distributed = config.get("Mode") == "DISTRIBUTED"
    if distributed and config.get("ExecutionType") not in ("EXPRESS", "STANDARD"):
        fault(f"{path}.ItemProcessor.ProcessorConfig", "a distributed Map's ExecutionType is EXPRESS or STANDARD")
    check_block(proc, f"{path}.ItemProcessor")
    reader = state.get("ItemReader")
    if reader is not None:
        if not distributed:
            fault(path, "ItemReader needs a DISTRIBUTED ItemProcessor")
        needed = READERS.get(reader.get("Resource"))
        if needed is None:
            fault(f"{path}.ItemReader.Resource", f"not an S3 reader: {reader.get('Resource')!r}")
        else:
            params = reader.get("Parameters", {})
            for name in needed:
                if name not in params and f"{name}.$" not in params:
                    fault(f"{path}.ItemReader.Parameters", f"{name} is missing")
        input_type = reader.get("ReaderConfig", {}).get("InputType")
        if reader.get("Resource") == "arn:aws:states:::s3:getObject" and input_type not in ("CSV", "JSON", "JSONL", "MANIFEST", "PARQUET"):
            fault(f"{path}.ItemReader.ReaderConfig.InputType", f"expected CSV, JSON, JSONL, MANIFEST or PARQUET, found {input_type!r}")
    batcher = state.get("ItemBatcher")
    if batcher is not None:
        n = batcher.get("MaxItemsPerBatch")
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            fault(f"{path}.ItemBatcher.MaxItemsPerBatch", f"a positive integer, found {n!r}")
        if "BatchInput" in batcher and not isinstance(batcher["BatchInput"], dict):
            fault(f"{path}.ItemBatcher.BatchInput", "an object")
    c = state.get("MaxConcurrency", 0)
    if not (isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 10000):
        fault(f"{path}.MaxConcurrency", f"an integer from 0 to 10,000, found {c!r}")
    t = state.get("ToleratedFailurePercentage", 0)
    if not (isinstance(t, (int, float)) and 0 <= t <= 100):
        fault(f"{path}.ToleratedFailurePercentage", f"from 0 to 100, found {t!r}")
    writer = state.get("ResultWriter")
    if writer is not None:
        if writer.get("Resource") != "arn:aws:states:::s3:putObject":
            fault(f"{path}.ResultWriter.Resource", "arn:aws:states:::s3:putObject")
        params = writer.get("Parameters", {})
        if not ({"Bucket", "Bucket.$"} & set(params)):
            fault(f"{path}.ResultWriter.Parameters", "Bucket is missing")


def check_block(block, path):
    states = block.get("States")
    start = block.get("StartAt")
    if not isinstance(states, dict) or not states:
        return fault(path, "States is a non-empty object")
    if start not in states:
        fault(f"{path}.StartAt", f"{start!r} names no state")
    edges = {}
    for name, state in states.items():
        p = f"{path}.States.{name}"
        if len(name) > 80:
            fault(p, "a state name has at most 80 characters")
        kind = state.get("Type")
        if kind not in FIELDS:
            fault(p, f"unknown Type {kind!r}")
            continue
        unknown = set(state) - FIELDS[kind]
        if unknown:
            fault(p, f"fields a {kind} state does not have: {sorted(unknown)}")
        targets = []
        if kind not in TERMINAL:
            has_next, has_end = "Next" in state, state.get("End") is True
            if has_next == has_end:
                fault(p, "exactly one of Next and End: true")
            if has_next:
                targets.append(state["Next"])
        if kind == "Choice":
            choices = state.get("Choices")
            if not isinstance(choices, list) or not choices:
                fault(p, "Choices is a non-empty list")
                choices = []
            for i, rule in enumerate(choices):
                if "Next" not in rule:
                    fault(f"{p}.Choices[{i}]", "a choice rule has Next")
                else:
                    targets.append(rule["Next"])
                check_rule(rule, f"{p}.Choices[{i}]", top=True)
            if "Default" in state:
                targets.append(state["Default"])
        if kind == "Task":
            resource = state.get("Resource", "")
            if not (isinstance(resource, str) and resource.startswith("arn:")):
                fault(f"{p}.Resource", f"an ARN, found {resource!r}")
            if resource == "arn:aws:states:::lambda:invoke" and "FunctionName" not in state.get("Parameters", {}):
                fault(f"{p}.Parameters", "lambda:invoke needs FunctionName")
        if "Retry" in state:
            check_retry(state["Retry"], f"{p}.Retry")
        if kind == "Map":
            check_map(state, p)
        for t in targets:
            if t not in states:
                fault(p, f"goes to {t!r}, which is no state of this block")
        edges[name] = targets
    seen, todo = set(), [start]
    while todo:
        n = todo.pop()
        if n in seen or n not in edges:
            continue
        seen.add(n)
        todo.extend(edges[n])
    for name in states:
        if name not in seen:
            fault(f"{path}.States.{name}", "unreachable from StartAt")


def check_rule(rule, path, top):
    ops = [k for k in rule if k in COMPARISONS]
    if "And" in rule or "Or" in rule:
        subs = rule.get("And", rule.get("Or"))
        if not isinstance(subs, list) or not subs:
            fault(path, "And/Or holds a non-empty list")
        for i, sub in enumerate(subs or []):
            check_rule(sub, f"{path}.{'And' if 'And' in rule else 'Or'}[{i}]", top=False)
    elif "Not" in rule:
        check_rule(rule["Not"], f"{path}.Not", top=False)
    else:
        if len(ops) != 1:
            fault(path, f"one comparison operator, found {ops}")
        if not str(rule.get("Variable", "")).startswith("$"):
            fault(path, "Variable is a path")
    if not top and "Next" in rule:
        fault(path, "only a top-level choice rule has Next")


def main():
    template = cfn_yaml.load(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "template.yaml"))
    resources = template["Resources"]
    props = resources["BackfillStateMachine"]["Properties"]
    sub = props["DefinitionString"]["Fn::Sub"]
    text = sub if isinstance(sub, str) else sub[0]
    params = template["Parameters"]

    def value(m):
        name = m.group(1)
        if name in params:
            d = params[name].get("Default")
            return str(d) if params[name]["Type"] == "Number" else str(d or "sample")
        return {"HistoryBucket": "stack-historybucket-1a2b3c",
                "BackfillFunction.Arn": "arn:aws:lambda:us-east-1:123456789012:function:stack-BackfillFunction-1a2b"
                }.get(name, "sample")

    try:
        definition = json.loads(re.sub(r"\$\{([^}!]+)\}", value, text))
    except ValueError as e:
        sys.exit(f"check-state-machine: the definition is not JSON once substituted: {e}")
    unknown = set(definition) - {"Comment", "StartAt", "States", "Version", "TimeoutSeconds", "QueryLanguage"}
    if unknown:
        fault("$", f"unknown top-level fields {sorted(unknown)}")
    paths(definition, "$")
    check_block(definition, "$")
    maps = [s for s in definition["States"].values() if s.get("Type") == "Map"]
    if len({json.dumps(m.get("ItemProcessor"), sort_keys=True) for m in maps}) > 1:
        fault("$.States", "the Maps' ItemProcessors differ: a listing and a manifest must be read alike")
    timeout = resources["BackfillFunction"]["Properties"].get("Timeout",
                                                              template.get("Globals", {}).get("Function", {}).get("Timeout", 3))
    if int(timeout) > 300:
        fault("BackfillFunction.Timeout", f"{timeout} s is past an Express child execution's 300 s")
    if faults:
        sys.exit("check-state-machine: " + str(len(faults)) + " fault(s):\n  " + "\n  ".join(faults))
    print(f"check-state-machine: {sum(1 for _ in re.finditer(chr(34) + 'Type' + chr(34), json.dumps(definition)))} states checked, no fault")


if __name__ == "__main__":
    main()
