#!/usr/bin/env python3
"""Does `trail-alerts rules import sigma` convert exactly? An independent evaluator of the Sigma
specification (below, written from the specification, not from the converter) and the converted
rules run by `trail-alerts scan` must agree on every record.

The Sigma semantics this evaluator implements (Sigma specification, "Rules" and "Modifiers"):
- a field path is dotted; a list met on the way holds when any element does;
- values compare with the field's text (a JSON true is "true", 42 is "42"), ignoring case
  unless |cased (Unicode case folding); `*` is any text and `?` one character, `\\*` and `\\?`
  literal; |contains, |startswith and |endswith put `*` around, before or after the value;
- null means the field is missing or null; |exists true means present;
- a list of values is OR (|all: AND); a selection's fields are AND; a list of selections is OR;
- conditions: and, or, not, parentheses, `1 of`/`all of` a name, a glob or `them`.

Records: every real record in tests/fixtures/real (CloudTrail files, arrays, Panther's test
cases), and records generated from each rule's detection to reach its boundaries: each
selection's values alone and together, each field removed, set to null, its case changed, text
added before and after, booleans and numbers for their text.

usage: scripts/test/sigma-agree.py [--rules-dir tests/fixtures/sigma/cloudtrail] [--keep DIR]
(run by `make sigma`, part of `make test`; needs the .venv of `make setup` for PyYAML)
"""
import argparse, fnmatch, json, os, re, subprocess, sys, tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---- the evaluator ----

def values_at(record, path):
    """The values at a dotted path; lists met on the way are expanded (any element)."""
    current = [record]
    for part in path.split("."):
        nxt = []
        for v in current:
            if isinstance(v, list):
                v = [x for x in v]
            else:
                v = [v]
            for x in v:
                if isinstance(x, dict) and part in x:
                    y = x[part]
                    nxt.extend(y if isinstance(y, list) else [y])
        current = nxt
    return current


def text_of(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    if isinstance(v, str):
        return v
    return None  # null, objects: no text


def glob_regex(value, ci):
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value) and value[i + 1] in "*?\\":
            lit = value[i + 1]
            out.append(re.escape(lit.casefold() if ci else lit))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        else:
            out.append(re.escape(c.casefold() if ci else c))
        i += 1
    return re.compile("".join(out), re.S)


def value_holds(field_value, value, shape, ci):
    t = text_of(field_value)
    if t is None:
        return False
    v = str(value) if not isinstance(value, bool) else ("true" if value else "false")
    if shape == "contains":
        v = "*" + v + "*"
    elif shape == "startswith":
        v = v + "*"
    elif shape == "endswith":
        v = "*" + v
    return glob_regex(v, ci).fullmatch(t.casefold() if ci else t) is not None


def field_holds(record, key, value):
    parts = key.split("|")
    path, mods = parts[0], parts[1:]
    found = values_at(record, path)
    if "exists" in mods:
        return bool(found) == bool(value)
    shape = next((m for m in mods if m in ("contains", "startswith", "endswith")), None)
    ci = "cased" not in mods
    values = value if isinstance(value, list) else [value]

    def one(v):
        if v is None:
            return not found or any(x is None for x in found)
        return any(value_holds(x, v, shape, ci) for x in found)

    return all(one(v) for v in values) if "all" in mods else any(one(v) for v in values)


def selection_holds(record, sel):
    if isinstance(sel, dict):
        return all(field_holds(record, k, v) for k, v in sel.items())
    return any(selection_holds(record, s) for s in sel)


def tokenize(cond):
    return re.findall(r"\(|\)|[^\s()]+", cond)


def evaluate(detection, record):
    sels = {k: v for k, v in detection.items() if k != "condition"}
    toks = tokenize(detection["condition"])
    pos = 0

    def peek(w):
        return pos < len(toks) and toks[pos].lower() == w

    def expr_or():
        nonlocal pos
        v = expr_and()
        while peek("or"):
            pos += 1
            r = expr_and()
            v = v or r
        return v

    def expr_and():
        nonlocal pos
        v = expr_not()
        while peek("and"):
            pos += 1
            r = expr_not()
            v = v and r
        return v

    def expr_not():
        nonlocal pos
        if peek("not"):
            pos += 1
            return not expr_not()
        return atom()

    def atom():
        nonlocal pos
        t = toks[pos]
        pos += 1
        if t == "(":
            v = expr_or()
            assert toks[pos] == ")"
            pos += 1
            return v
        if t in ("1", "all", "any") and peek("of"):
            pos += 1
            target = toks[pos]
            pos += 1
            names = [n for n in sels if (not n.startswith("_")) if target == "them" or fnmatch.fnmatchcase(n, target)]
            results = [selection_holds(record, sels[n]) for n in names]
            return any(results) if t in ("1", "any") else all(results)
        return selection_holds(record, sels[t])

    v = expr_or()
    assert pos == len(toks), detection["condition"]
    return v


# ---- records ----

def real_records():
    out = []
    base = os.path.join(ROOT, "tests", "fixtures", "real")
    for d, _, files in sorted(os.walk(base)):
        for f in sorted(files):
            if not f.endswith(".json"):
                continue
            with open(os.path.join(d, f)) as fh:
                try:
                    data = json.load(fh)
                except ValueError:
                    continue
            items = data["Records"] if isinstance(data, dict) and "Records" in data else (
                data if isinstance(data, list) else [data])
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("log"), dict):
                    item = item["log"]
                if isinstance(item, dict) and "eventName" in item and "eventSource" in item:
                    out.append(item)
    return out


def plain(value):
    """A text a Sigma value's wildcards match: `*` as text, `?` as one letter."""
    if not isinstance(value, str):
        return value
    return re.sub(r"\\([*?\\])", r"\1", re.sub(r"(?<!\\)\*", "abc", re.sub(r"(?<!\\)\?", "q", value)))


def put(record, path, value):
    parts = path.split(".")
    for p in parts[:-1]:
        record = record.setdefault(p, {})
        if not isinstance(record, dict):
            return
    record[parts[-1]] = value


def drop(record, path):
    parts = path.split(".")
    for p in parts[:-1]:
        record = record.get(p)
        if not isinstance(record, dict):
            return
    record.pop(parts[-1], None)


def generated(detection):
    """Records at the rule's boundaries: each selection's first alternative alone and all
    together, then each field of those removed, null, case-swapped, padded, and its other
    values; texts true/false and numbers as JSON values."""
    sels = [v for k, v in detection.items() if k != "condition"]
    fields = []  # (path, modifiers, value)
    seeds = []
    for sel in sels:
        alts = sel if isinstance(sel, list) else [sel]
        for alt in alts:
            if not isinstance(alt, dict):
                continue
            rec = {}
            for key, v in alt.items():
                path, *mods = key.split("|")
                vs = v if isinstance(v, list) else [v]
                for x in vs:
                    fields.append((path, mods, x))
                first = vs[0]
                if "exists" in mods:
                    if first:
                        put(rec, path, "present")
                    continue
                put(rec, path, plain(first))
            seeds.append(rec)
    together = {}
    for s in seeds:
        together = merge(together, s)
    seeds.append(together)
    out = [json.loads(json.dumps(s)) for s in seeds]
    for s in seeds:
        for path, mods, x in fields:
            for variant in variants(x):
                r = json.loads(json.dumps(s))
                if variant is DROP:
                    drop(r, path)
                else:
                    put(r, path, variant)
                out.append(r)
    return out


DROP = object()


def variants(x):
    if x is None or isinstance(x, bool):
        return [DROP, None, "x"]
    p = plain(x)
    vs = [DROP, None, p, p.swapcase(), p.upper(), "x" + p, p + "x", "x" + p + "x", p[1:], p[:-1], ""]
    if p.lower() in ("true", "false"):
        vs.append(p.lower() == "true")
    if re.fullmatch(r"-?\d+", p or "-"):
        vs.append(int(p))
    return vs


def merge(a, b):
    out = json.loads(json.dumps(a))
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


# ---- the comparison ----

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules-dir", default=os.path.join(ROOT, "tests", "fixtures", "sigma", "cloudtrail"))
    ap.add_argument("--binary", default=None, help="trail-alerts (default: cargo run)")
    ap.add_argument("--keep", default=None, help="keep the converted rules, report and records here")
    a = ap.parse_args()
    tool = [a.binary] if a.binary else ["cargo", "run", "--locked", "--quiet", "--bin", "trail-alerts", "--"]
    work = a.keep or tempfile.mkdtemp(prefix="sigma-agree-")
    os.makedirs(work, exist_ok=True)
    converted, report = os.path.join(work, "sigma-rules.yaml"), os.path.join(work, "report.md")
    r = subprocess.run(tool + ["rules", "import", "sigma", a.rules_dir, "--out", converted, "--report", report],
                       cwd=ROOT, capture_output=True, text=True)
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        sys.exit(f"sigma-agree: the import failed ({r.returncode})")
    with open(converted) as f:
        ours = {rule["sigma"]["id"]: rule["id"] for rule in yaml.safe_load(f)["rules"]}
    sigma = {}
    for name in sorted(os.listdir(a.rules_dir)):
        with open(os.path.join(a.rules_dir, name)) as f:
            doc = yaml.safe_load(f)
        if doc.get("id") in ours:
            sigma[doc["id"]] = doc
    records = real_records()
    real = len(records)
    for doc in sigma.values():
        records.extend(generated(doc["detection"]))
    for n, rec in enumerate(records):
        rec["eventID"] = f"agree-{n:06d}"
        rec.setdefault("eventVersion", "1.08")
    path = os.path.join(work, "records.jsonl")
    with open(path, "w") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    r = subprocess.run(tool + ["scan", "--format", "jsonl", "--quiet", "--rules", converted, path],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode not in (0, 1) or not r.stdout and r.stderr:
        sys.exit(f"sigma-agree: scan failed ({r.returncode}): {r.stderr}")
    got = set()
    for line in r.stdout.splitlines():
        alert = json.loads(line)
        got.add((alert["rule"], alert["eventID"]))
    want = set()
    for sid, doc in sigma.items():
        for rec in records:
            if evaluate(doc["detection"], rec):
                want.add((ours[sid], rec["eventID"]))
    by_id = {rec["eventID"]: rec for rec in records}
    missing, extra = sorted(want - got), sorted(got - want)
    print(f"sigma-agree: {len(sigma)} converted rules x {len(records)} records ({real} real, "
          f"{len(records) - real} generated at the rules' boundaries): {len(want)} matches by the "
          f"reference evaluator, {len(got)} by the converted rules; {len(missing)} missed, {len(extra)} extra")
    for kind, pairs in (("missed", missing), ("extra", extra)):
        for rule, event in pairs[:20]:
            print(f"  {kind}: {rule} on {json.dumps(by_id[event])[:400]}")
    if missing or extra:
        sys.exit("sigma-agree: FAILED (the converted rules and the Sigma evaluator disagree)")
    print("sigma-agree: passed")


if __name__ == "__main__":
    main()
