#!/usr/bin/env python3
"""Writes docs/packs.md, the built-in packs, from the rule files compiled into the binary.

The packs and their files are read from src/rules/source.rs (BUILTIN and PACKS), the rules from
rules/*.yaml, so the page says what the binary holds. `--check` writes nothing and fails when the
page on disk differs from what would be written (`make lint` runs it), so it cannot drift.

usage: scripts/gen/packs-doc.py [--check]
"""
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "docs", "packs.md")


def packs():
    """[(pack name, [rule file])] in source.rs's order."""
    src = open(os.path.join(ROOT, "src", "rules", "source.rs")).read()
    builtin = src[src.index("pub const BUILTIN"):src.index("pub const PACKS")]
    optional = src[src.index("pub const PACKS"):src.index("pub enum RuleSource")]
    # Each document is `pack!("<file stem>")`, the file being rules/<file stem>.yaml.
    out = [("builtin", [f"rules/{stem}.yaml" for stem in re.findall(r'pack!\("([a-z-]+)"\)', builtin)])]
    for name, stem in re.findall(r'\(\s*"([a-z-]+)",\s*pack!\("([a-z-]+)"\)\s*\)', optional):
        out.append(("builtin:" + name, [f"rules/{stem}.yaml"]))
    return out


def source_of(rule):
    """Where the rule's matches come from, in the words of the README's tables."""
    if rule.get("absence"):
        return "CloudTrail (absence)"
    if rule.get("resolves"):
        return "CloudTrail (recovery)"
    p = rule.get("pattern") or {}
    src = p.get("source") or []
    dt = p.get("detail-type") or []
    if src == ["trail-alerts"]:
        return "trail-alerts' sweep"
    if src == ["aws.s3"] and "Object Deleted" in dt:
        return "S3 (removal notification)"
    if dt and not all(d.endswith("via CloudTrail") for d in dt):
        return "AWS Backup event" if src == ["aws.backup"] else "EventBridge event"
    return "CloudTrail"


def management(rule):
    parts = []
    d = rule.get("dedup")
    if d:
        parts.append("dedup per %s, %s" % (", ".join(d.get("key", ["rule"])), d.get("window")))
    t = rule.get("threshold")
    if t:
        parts.append("threshold %s within %s" % (t.get("count"), t.get("within")))
    g = rule.get("group")
    if g:
        parts.append("group per %s, %s" % (", ".join(g.get("by", ["rule"])), g.get("interval")))
    if rule.get("incident"):
        parts.append("incident " + rule["incident"])
    if rule.get("absence"):
        a = rule["absence"]
        parts.append("absence per %s, every %s" % (", ".join(a.get("key", [])), a.get("every")))
    return "; ".join(parts) or "every match"


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render():
    lines = [
        "# The built-in packs",
        "",
        "<!-- Written by scripts/gen/packs-doc.py from rules/*.yaml and src/rules/source.rs; "
        "`make lint` fails when it is stale. Do not edit by hand. -->",
        "",
        "`builtin` is on by default (`--rules builtin`, `RULES=builtin`); the optional packs are off "
        "unless named (`--rules builtin --rules builtin:security`, `RULES=builtin,builtin:security,builtin:self`). "
        "Every rule carries tests that fire and tests that stay quiet (`trail-alerts rules test`); "
        "`trail-alerts rules list [--tags]` lists what a rule set holds, with overrides applied. "
        "How to read a rule: [rules.md](rules.md).",
        "",
    ]
    for name, files in packs():
        rules = []
        for f in files:
            doc = yaml.safe_load(open(os.path.join(ROOT, f)))
            rules.extend((f, r) for r in doc.get("rules", []))
        tests = sum(len(r.get("tests", [])) for _, r in rules)
        lines += ["## `%s`: %d rules, %d tests" % (name, len(rules), tests), "",
                  "Files: " + ", ".join("`%s`" % f for f in files) + ".", "",
                  "| id | source | severity | enabled | fires on | alert management |",
                  "|---|---|---|---|---|---|"]
        for _, r in rules:
            lines.append("| `%s` | %s | %s | %s | %s | %s |" % (
                r["id"], source_of(r), r.get("severity", ""), "yes" if r.get("enabled", True) else "no",
                cell(r.get("description", "")), cell(management(r))))
        lines.append("")
        for f, r in rules:
            lines += ["### `%s`" % r["id"], "", cell(r.get("description", "")), ""]
            lines.append("- pattern: `%s`" % json.dumps(r.get("pattern"), separators=(", ", ": ")))
            if r.get("summary"):
                lines.append("- summary: `%s`" % r["summary"])
            if r.get("tags"):
                lines.append("- tags: " + ", ".join("`%s`" % t for t in r["tags"]))
            lines.append("- tests: %d, in `%s`" % (len(r.get("tests", [])), f))
            if r.get("runbook"):
                lines += ["- runbook:"] + ["  - " + step for step in r["runbook"].strip().split("\n")]
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main():
    text = render()
    if "--check" in sys.argv[1:]:
        have = open(OUT).read() if os.path.exists(OUT) else ""
        if have != text:
            print("docs/packs.md is stale: run scripts/gen/packs-doc.py and commit the result", file=sys.stderr)
            sys.exit(1)
        return
    with open(OUT, "w") as f:
        f.write(text)
    print("wrote", os.path.relpath(OUT, ROOT))


if __name__ == "__main__":
    main()
