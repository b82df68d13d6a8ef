#!/usr/bin/env python3
"""Evaluate every dashboard query against a live Prometheus.

    python3 tests/deploy/live_dashboards.py --prometheus http://127.0.0.1:9090 [--rules]

For every dashboard in grafana/dashboards/:
  * every query variable (label_values(selector, label)) is asked of
    /api/v1/label/<label>/values and must return at least one value;
  * every panel target is evaluated as an instant query, twice: with the
    query variables set to the All regex `.*`, and with each set to the
    busiest value label_values discovered (the one with the most samples in
    the last 10 minutes; chained: chain is discovered for that service, ...). Grafana built-ins: $__rate_interval=1m, $__interval=15s,
    $__range=5m (see dashlib.BUILTINS); custom variables use their default.
  * an expression fails if Prometheus reports an error, or if it returns no
    series or only NaN, unless it matches the allowlist;
  * every metric name the dashboards reference must exist in Prometheus,
    unless allowlisted.
With --rules it also asks /api/v1/rules: every loaded rule must evaluate
without error (health != err), every recording rule must produce data unless
allowlisted, and firing alerts are listed.

The allowlist (default tests/deploy/live_allow_empty.txt) holds one substring
per line; an empty expression, missing metric or empty recording rule is
accepted when its text contains an entry. Every entry must have a `#` comment
line directly above it saying why it is legitimately empty on a healthy demo.
Standard library only.
"""
import argparse
import json
import math
import pathlib
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import dashlib  # noqa: E402


def load_allowlist(path):
    entries, problems = [], []
    prev_comment = False
    for n, raw in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line:
            prev_comment = False
            continue
        if line.startswith("#"):
            prev_comment = True
            continue
        if not prev_comment:
            problems.append(f"{path}:{n}: entry {line!r} has no justification comment above it")
        entries.append(line)
        prev_comment = True  # consecutive entries may share one comment block
    return entries, problems


class Prom:
    def __init__(self, base, timeout=15):
        self.base = base.rstrip("/")
        self.timeout = timeout

    def get(self, path, **params):
        qs = urllib.parse.urlencode(params, doseq=True)
        url = f"{self.base}{path}?{qs}" if qs else f"{self.base}{path}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            try:
                body = json.load(e)
            except ValueError:
                return {"status": "error", "error": f"HTTP {e.code}"}
        except (urllib.error.URLError, OSError) as e:
            return {"status": "error", "error": str(e)}
        return body

    def query(self, expr, at):
        return self.get("/api/v1/query", query=expr, time=f"{at:.3f}")

    def label_values(self, label, selector, at):
        params = {"start": f"{at - 3600:.3f}", "end": f"{at:.3f}"}
        if selector:
            params["match[]"] = selector
        return self.get(f"/api/v1/label/{label}/values", **params)


def regex_escape(value):
    """Escape a label value for a PromQL =~ regex inside a double-quoted string."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\\\1", value)


def busiest(prom, selector, label, values, at):
    """The value of `label` with the most samples in the last 10 minutes.

    label_values also lists a value that appeared a moment ago (say a trace
    released at its timeout with an inferred root, named after a child span):
    its series has one sample, so any rate() over it is legitimately empty.
    Grafana users pick the value they care about; the check picks the one
    with the most history, ties broken alphabetically.
    """
    if not selector:
        return values[0]
    r = prom.query(f"sum by ({label}) (count_over_time({selector}[10m]))", at)
    counts = {}
    if r.get("status") == "success":
        for s in r["data"].get("result", []):
            v = s.get("metric", {}).get(label)
            if v is not None:
                counts[v] = float(s["value"][1])
    return max(values, key=lambda v: (counts.get(v, 0.0), [-ord(c) for c in v]))


def has_data(result):
    data = result.get("data", {})
    rtype, res = data.get("resultType"), data.get("result")
    if rtype == "scalar":
        return not math.isnan(float(res[1]))
    if not res:
        return False
    for s in res:
        vals = [s["value"]] if "value" in s else s.get("values", [])
        if any(not math.isnan(float(v[1])) for v in vals):
            return True
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090")
    ap.add_argument("--allow", default=str(pathlib.Path(__file__).resolve().parent / "live_allow_empty.txt"))
    ap.add_argument("--modes", default="all,first", help="comma list of: all, first")
    ap.add_argument("--rules", action="store_true", help="also check the rules Prometheus has loaded")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every expression")
    args = ap.parse_args()

    prom = Prom(args.prometheus)
    allow, problems = load_allowlist(args.allow)
    used_allow = set()

    def allowed(text):
        hits = [a for a in allow if a in text]
        used_allow.update(hits)
        return bool(hits)

    failures, empties_allowed, ok_count = [], [], 0
    at = time.time()
    names = prom.get("/api/v1/label/__name__/values")
    if names.get("status") != "success":
        print(f"FAIL cannot reach Prometheus at {args.prometheus}: {names.get('error')}")
        return 1
    known = set(names["data"])

    dashboards = dashlib.load_dashboards()
    referenced = set()
    for fname, d in dashboards.items():
        vars_ = dashlib.variables(d)
        base = dashlib.default_values(d)
        # ---- variables: discover values, chained on the busiest value of earlier ones
        first = dict(base)
        for v in vars_:
            if v.get("type") != "query":
                continue
            sel, label = dashlib.parse_label_values(dashlib.variable_query(v))
            for mode_vals, mode in ((base, "all"), (first, "first")):
                sub = dashlib.substitute(sel, mode_vals) if sel else None
                r = prom.label_values(label, sub, at)
                where = f"{fname} variable {v['name']} [{mode}]: label_values({sub}, {label})"
                if r.get("status") != "success":
                    failures.append(f"ERROR {where}: {r.get('error')}")
                    continue
                values = sorted(r["data"])
                if mode == "first":
                    pick = busiest(prom, sub, label, values, at) if values else None
                    first[v["name"]] = regex_escape(pick) if pick is not None else ".*"
                if values:
                    ok_count += 1
                    if args.verbose:
                        print(f"ok    {where} -> {values[:5]}")
                elif allowed(sel or label):
                    empties_allowed.append(where)
                else:
                    failures.append(f"EMPTY {where}")
        # ---- panel targets
        modes = {"all": base, "first": first}
        for p in dashlib.iter_panels(d):
            for t in p.get("targets", []) or []:
                expr = t.get("expr", "")
                if not expr:
                    continue
                referenced |= dashlib.metric_names(expr)
                for mode in args.modes.split(","):
                    sub = dashlib.substitute(expr, modes[mode])
                    where = f"{fname} panel {p.get('title')!r} {t.get('refId')} [{mode}]"
                    r = prom.query(sub, at)
                    if r.get("status") != "success":
                        failures.append(f"ERROR {where}: {r.get('error')}\n      {sub}")
                    elif has_data(r):
                        ok_count += 1
                        if args.verbose:
                            print(f"ok    {where}")
                    elif allowed(expr):
                        empties_allowed.append(where)
                    else:
                        absent = sorted(m for m in dashlib.metric_names(expr) if m not in known)
                        why = f" (not exported: {', '.join(absent)})" if absent else ""
                        failures.append(f"EMPTY {where}{why}\n      {sub}")

    missing = sorted(m for m in referenced if m not in known)
    for m in missing:
        if allowed(m):
            empties_allowed.append(f"metric {m} not exported")
        else:
            failures.append(f"MISSING metric {m} is referenced by a dashboard but Prometheus has never seen it")

    # ---- rules loaded into this Prometheus
    if args.rules:
        r = prom.get("/api/v1/rules")
        if r.get("status") != "success":
            failures.append(f"ERROR /api/v1/rules: {r.get('error')}")
        else:
            groups = r["data"]["groups"]
            if not groups:
                failures.append("ERROR --rules given but Prometheus has no rules loaded")
            firing = []
            for g in groups:
                for rule in g["rules"]:
                    name = rule["name"]
                    if rule.get("health") == "err":
                        failures.append(f"ERROR rule {name} ({g['name']}): {rule.get('lastError')}")
                        continue
                    if rule.get("health") != "ok":
                        failures.append(f"ERROR rule {name} ({g['name']}) not evaluated yet "
                                        f"(health {rule.get('health')})")
                        continue
                    if rule["type"] == "recording":
                        q = prom.query(name, at)
                        if q.get("status") == "success" and has_data(q):
                            ok_count += 1
                        elif allowed(rule["query"]):
                            empties_allowed.append(f"recording rule {name}")
                        else:
                            absent = sorted(m for m in dashlib.metric_names(rule["query"]) if m not in known)
                            why = f" (not exported: {', '.join(absent)})" if absent else ""
                            failures.append(f"EMPTY recording rule {name}{why}\n      {rule['query']}")
                    else:
                        ok_count += 1
                        for a in rule.get("alerts", []):
                            firing.append(f"{name} {a['state']} {a['labels']} value={a.get('value')}")
            for f in firing:
                print(f"alert {f}")

    for p in problems:
        failures.append(f"ALLOWLIST {p}")
    for a in allow:
        if a not in used_allow:
            print(f"note  allowlist entry {a!r} matched nothing in this run (stale?)")
    for e in empties_allowed:
        print(f"allow {e}")
    for f in failures:
        print(f"FAIL  {f}")
    not_exported = [m for m in missing if not any(a in m for a in allow)]
    if not_exported:
        print(f"note  metrics the dashboards use that this chainpulse does not export: {', '.join(not_exported)}")
    print(f"live dashboards: {ok_count} ok, {len(empties_allowed)} allowed empty, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
