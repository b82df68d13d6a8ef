#!/usr/bin/env python3
"""Lint deploy/prometheus/{recording,alert}-rules.yaml beyond promtool:

- every alert has labels.severity (critical|warning|info), annotations summary,
  description (showing {{ $value }}) and runbook_url
  docs/operations.md#<lower-cased alert name>, and that anchor is a heading of
  docs/operations.md;
- `for:` durations are at most 1h;
- every recording rule an alert uses exists, every metric is a chainpulse one;
- deploy/prometheus/tests/*.yaml hold, for every alert, a firing case (with
  exp_annotations carrying summary, description and runbook_url) and a
  not-firing case (exp_alerts: []).
"""
import pathlib
import re
import sys

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import dashlib  # noqa: E402

ROOT = dashlib.ROOT
PROM = ROOT / "deploy" / "prometheus"
DOC = ROOT / "docs" / "operations.md"
SEVERITIES = {"critical", "warning", "info"}
RECORD_RE = re.compile(r"\b([a-z_]+:[a-zA-Z0-9_]+:[a-zA-Z0-9_]+)\b")


def github_anchors(markdown):
    """Anchors GitHub derives from headings, plus explicit <a id/name>."""
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            text = re.sub(r"`", "", m.group(1)).strip().lower()
            text = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
            anchors.add(text)
    anchors |= set(re.findall(r'<a\s+(?:id|name)="([^"]+)"', markdown))
    return anchors


def duration_s(text):
    total = 0
    for num, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text):
        total += int(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400,
                             "w": 604800, "y": 31536000}[unit]
    return total


def main():
    problems = []
    rec = yaml.safe_load((PROM / "recording-rules.yaml").read_text())
    alerts_doc = yaml.safe_load((PROM / "alert-rules.yaml").read_text())
    records = {r["record"] for g in rec["groups"] for r in g["rules"] if "record" in r}
    alerts = [r for g in alerts_doc["groups"] for r in g["rules"] if "alert" in r]
    anchors = github_anchors(DOC.read_text()) if DOC.exists() else set()
    if not DOC.exists():
        problems.append("docs/operations.md is missing")

    all_rules = [r for doc in (rec, alerts_doc) for g in doc["groups"] for r in g["rules"]]
    for r in all_rules:
        for m in dashlib.metric_names(r["expr"]) - dashlib.KNOWN_METRICS:
            problems.append(f"{r.get('alert') or r.get('record')}: unknown metric {m}")
        for used in set(RECORD_RE.findall(r["expr"])) - records:
            problems.append(f"{r.get('alert') or r.get('record')}: uses undefined recording rule {used}")

    names = [a["alert"] for a in alerts]
    if len(names) != len(set(names)):
        problems.append("duplicate alert names")
    for a in alerts:
        n = a["alert"]
        labels, ann = a.get("labels") or {}, a.get("annotations") or {}
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{n}: severity {labels.get('severity')!r} not in {sorted(SEVERITIES)}")
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                problems.append(f"{n}: missing annotation {key}")
        if "$value" not in ann.get("description", ""):
            problems.append(f"{n}: description does not show {{{{ $value }}}}")
        want = f"docs/operations.md#{n.lower()}"
        if ann.get("runbook_url") != want:
            problems.append(f"{n}: runbook_url {ann.get('runbook_url')!r}, want {want!r}")
        if n.lower() not in anchors:
            problems.append(f"{n}: docs/operations.md has no heading/anchor #{n.lower()}")
        if "for" in a and duration_s(a["for"]) > 3600:
            problems.append(f"{n}: for: {a['for']} is longer than 1h")

    firing = {n: 0 for n in names}
    quiet = {n: 0 for n in names}
    test_files = sorted((PROM / "tests").glob("*.yaml"))
    if not test_files:
        problems.append("no promtool tests in deploy/prometheus/tests/")
    for tf in test_files:
        doc = yaml.safe_load(tf.read_text())
        for t in doc.get("tests", []):
            for case in t.get("alert_rule_test", []) or []:
                n = case.get("alertname")
                if n not in firing:
                    problems.append(f"{tf.name}: test for unknown alert {n}")
                    continue
                exp = case.get("exp_alerts") or []
                if not exp:
                    quiet[n] += 1
                    continue
                ok = all({"summary", "description", "runbook_url"} <= set(e.get("exp_annotations") or {})
                         for e in exp)
                if not ok:
                    problems.append(f"{tf.name}: {n} at {case.get('eval_time')}: exp_annotations "
                                    "must check summary, description and runbook_url")
                else:
                    firing[n] += 1
    for n in names:
        if not firing[n]:
            problems.append(f"{n}: no firing test case with exp_annotations")
        if not quiet[n]:
            problems.append(f"{n}: no not-firing test case (exp_alerts: [])")

    for p in problems:
        print(f"FAIL {p}")
    print(f"{len(alerts)} alerts, {len(records)} recording rules, "
          f"{sum(firing.values())} firing + {sum(quiet.values())} not-firing test cases: "
          f"{'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
