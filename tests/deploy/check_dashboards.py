#!/usr/bin/env python3
"""Offline structure checks of grafana/dashboards/*.json and
grafana/provisioning/. Exit 1 and list every problem on failure.

Checks: valid JSON, schemaVersion >= 39, unique uids/titles, unique panel ids,
gridPos inside 24 columns without overlaps, every panel and target on the
${datasource} variable, no hard-coded datasource uid anywhere (the built-in
Grafana annotation excepted), a datasource variable of type prometheus, the
service/chain/model label_values variables, every variable reference defined,
every metric name one chainpulse exports, and (when promtool is installed)
every expression and variable selector parses as PromQL after substitution.
Provisioning files must point at the dashboards and a Prometheus datasource.
"""
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import dashlib  # noqa: E402

REQUIRED_VARS = ("service", "chain", "model")
EXPECTED = {"chainpulse-chain-kpis.json", "chainpulse-cost-tokens.json",
            "chainpulse-steps-errors.json", "chainpulse-health.json"}


def walk_datasources(node, path="$"):
    """Yield (path, datasource dict or str) for every 'datasource' key."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "datasource":
                yield f"{path}.{k}", v
            yield from walk_datasources(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_datasources(v, f"{path}[{i}]")


def check_dashboard(name, d, problems, exprs):
    err = lambda msg: problems.append(f"{name}: {msg}")  # noqa: E731
    if d.get("schemaVersion", 0) < 39:
        err(f"schemaVersion {d.get('schemaVersion')} < 39")
    for key in ("uid", "title"):
        if not d.get(key):
            err(f"missing {key}")
    if d.get("id") is not None:
        err("top-level id must be null for provisioning/import")
    if "__inputs" in d or "${DS_" in str(d):
        err("uses __inputs/${DS_...} export placeholders instead of the datasource variable")

    # datasource references: only ${datasource}, or the built-in annotation
    for path, ds in walk_datasources(d):
        if isinstance(ds, str):
            if ds not in ("${datasource}", "$datasource"):
                err(f"{path}: hard-coded datasource {ds!r}")
            continue
        if not isinstance(ds, dict):
            err(f"{path}: unexpected datasource {ds!r}")
            continue
        uid = ds.get("uid")
        if ds.get("type") == "grafana" and uid == "-- Grafana --" and path.startswith("$.annotations"):
            continue
        if uid != "${datasource}":
            err(f"{path}: datasource uid {uid!r} is not ${{datasource}}")

    # variables
    vars_ = dashlib.variables(d)
    names = [v.get("name") for v in vars_]
    if len(names) != len(set(names)):
        err(f"duplicate variable names {names}")
    ds_vars = [v for v in vars_ if v.get("type") == "datasource"]
    if not any(v.get("name") == "datasource" and v.get("query") == "prometheus" for v in ds_vars):
        err("no variable `datasource` of type datasource with query prometheus")
    for req in REQUIRED_VARS:
        if req not in names:
            err(f"missing template variable {req}")
    defined = set(names)
    for v in vars_:
        if v.get("type") != "query":
            continue
        q = dashlib.variable_query(v)
        parsed = dashlib.parse_label_values(q)
        if not parsed:
            err(f"variable {v['name']}: query {q!r} is not label_values(selector, label)")
            continue
        sel, label = parsed
        if v.get("datasource") != dashlib.DS_REF:
            err(f"variable {v['name']}: datasource is not ${{datasource}}")
        if v.get("definition") and v["definition"] != q:
            err(f"variable {v['name']}: definition differs from query")
        if not v.get("includeAll") or v.get("allValue") != ".*":
            err(f"variable {v['name']}: needs includeAll with allValue .*")
        if v.get("refresh") not in (1, 2):
            err(f"variable {v['name']}: refresh must be on load (1) or time range change (2)")
        if sel:
            undefined = dashlib.referenced_vars(sel) - defined
            if undefined:
                err(f"variable {v['name']}: references undefined {sorted(undefined)}")
            for m in dashlib.metric_names(sel) - dashlib.KNOWN_METRICS:
                err(f"variable {v['name']}: unknown metric {m}")
            exprs.append((f"{name} variable {v['name']}", sel, d))
        if v["name"] in REQUIRED_VARS and label != v["name"]:
            err(f"variable {v['name']} reads label {label!r}")

    # panels
    ids = []
    cells = {}
    used_vars = set()
    for p in dashlib.iter_panels(d):
        pid = p.get("id")
        ids.append(pid)
        title = p.get("title", f"#{pid}")
        gp = p.get("gridPos") or {}
        if not all(k in gp for k in ("x", "y", "w", "h")):
            err(f"panel {title!r}: missing gridPos")
        elif gp["x"] < 0 or gp["x"] + gp["w"] > 24:
            err(f"panel {title!r}: gridPos outside 24 columns")
        else:
            for x in range(gp["x"], gp["x"] + gp["w"]):
                for y in range(gp["y"], gp["y"] + gp["h"]):
                    if (x, y) in cells:
                        err(f"panel {title!r} overlaps {cells[(x, y)]!r}")
                        break
                    cells[(x, y)] = title
                else:
                    continue
                break
        used_vars |= dashlib.referenced_vars(title)
        if p.get("type") == "row":
            continue
        if p.get("datasource") != dashlib.DS_REF:
            err(f"panel {title!r}: datasource is not ${{datasource}}")
        targets = p.get("targets") or []
        if not targets:
            err(f"panel {title!r}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(refs) != len(set(refs)):
            err(f"panel {title!r}: duplicate refIds {refs}")
        if not p.get("description"):
            err(f"panel {title!r}: no description")
        for t in targets:
            expr = t.get("expr", "")
            if t.get("datasource") != dashlib.DS_REF:
                err(f"panel {title!r} {t.get('refId')}: target datasource is not ${{datasource}}")
            if not expr.strip():
                err(f"panel {title!r} {t.get('refId')}: empty expr")
                continue
            refd = dashlib.referenced_vars(expr)
            used_vars |= refd
            undefined = refd - defined - set(dashlib.BUILTINS)
            if undefined:
                err(f"panel {title!r} {t.get('refId')}: undefined variables {sorted(undefined)}")
            for m in dashlib.metric_names(expr) - dashlib.KNOWN_METRICS:
                err(f"panel {title!r} {t.get('refId')}: unknown metric {m}")
            # Time series of quantiles of the histograms that carry
            # exemplars show them (a stat panel cannot).
            if p.get("type") == "timeseries" and "histogram_quantile" in expr and any(h in expr for h in EXEMPLAR_HISTOGRAMS) \
                    and not t.get("exemplar"):
                err(f"panel {title!r} {t.get('refId')}: quantile of an exemplar histogram without exemplar: true")
            exprs.append((f"{name} panel {title!r} {t.get('refId')}", expr, d))
    dup = {i for i in ids if ids.count(i) > 1}
    if dup or None in ids:
        err(f"panel ids not unique/missing: {sorted(x for x in dup if x is not None)}")
    for v in vars_:
        sel = dashlib.variable_query(v) if v.get("type") == "query" else ""
        used_vars |= dashlib.referenced_vars(sel)
    used_vars |= dashlib.referenced_vars(json.dumps(d.get("panels", [])))
    for v in vars_:
        if v["name"] not in used_vars and v["name"] not in REQUIRED_VARS:
            err(f"variable {v['name']} is never used")


def promql_syntax(exprs, problems):
    promtool = shutil.which("promtool")
    if not promtool:
        print("WARN promtool not found: PromQL syntax of dashboard queries not checked")
        return
    rules = []
    labels = []
    for label, expr, d in exprs:
        try:
            sub = dashlib.substitute(expr, dashlib.default_values(d))
        except KeyError as e:
            problems.append(f"{label}: unknown variable {e}")
            continue
        rules.append({"record": f"dashboard_check_{len(rules)}", "expr": sub})
        labels.append(label)
    # one rule file per expression would be slow; check all, then bisect on error
    def run(chunk):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump({"groups": [{"name": "dashboards", "rules": chunk}]}, f)
        r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
        pathlib.Path(f.name).unlink()
        return r.returncode == 0, r.stdout + r.stderr
    ok, _ = run(rules)
    if ok:
        return
    for rule, label in zip(rules, labels):
        ok, out = run([rule])
        if not ok:
            problems.append(f"{label}: PromQL does not parse: {out.strip().splitlines()[-1]}")


EXEMPLAR_HISTOGRAMS = ("chainpulse_request_duration_seconds", "chainpulse_llm_duration_seconds",
                       "chainpulse_request_cost_usd")


def check_provisioning(problems):
    prov = dashlib.ROOT / "grafana" / "provisioning"
    ds_files = sorted((prov / "datasources").glob("*.yaml"))
    db_files = sorted((prov / "dashboards").glob("*.yaml"))
    if not ds_files or not db_files:
        problems.append("grafana/provisioning: need datasources/*.yaml and dashboards/*.yaml")
        return
    for f in ds_files:
        doc = yaml.safe_load(f.read_text())
        dss = doc.get("datasources") or []
        if doc.get("apiVersion") != 1 or not any(x.get("type") == "prometheus" for x in dss):
            problems.append(f"{f.name}: needs apiVersion 1 and a prometheus datasource")
        for x in dss:
            dest = (x.get("jsonData") or {}).get("exemplarTraceIdDestinations") or []
            if x.get("type") == "prometheus" and not any(
                    d.get("name") == "trace_id" and (d.get("datasourceUid") or "${__value.raw}" in d.get("url", ""))
                    for d in dest):
                problems.append(f"{f.name}: datasource {x.get('name')} needs exemplarTraceIdDestinations "
                                "for trace_id (url with ${__value.raw}, or datasourceUid)")
    for f in db_files:
        doc = yaml.safe_load(f.read_text())
        provs = doc.get("providers") or []
        if doc.get("apiVersion") != 1 or not provs:
            problems.append(f"{f.name}: needs apiVersion 1 and providers")
        for p in provs:
            if p.get("type") != "file" or not (p.get("options") or {}).get("path"):
                problems.append(f"{f.name}: provider {p.get('name')} needs type file and options.path")


def main():
    problems = []
    try:
        dashboards = dashlib.load_dashboards()
    except ValueError as e:
        print(f"FAIL invalid JSON: {e}")
        return 1
    missing = EXPECTED - set(dashboards)
    if missing:
        problems.append(f"missing dashboards: {sorted(missing)}")
    uids = [d.get("uid") for d in dashboards.values()]
    titles = [d.get("title") for d in dashboards.values()]
    if len(set(uids)) != len(uids) or len(set(titles)) != len(titles):
        problems.append("dashboard uids/titles are not unique")
    exprs = []
    for name, d in dashboards.items():
        check_dashboard(name, d, problems, exprs)
    promql_syntax(exprs, problems)
    check_provisioning(problems)
    for p in problems:
        print(f"FAIL {p}")
    n_panels = sum(1 for d in dashboards.values() for p in dashlib.iter_panels(d) if p.get("type") != "row")
    print(f"{len(dashboards)} dashboards, {n_panels} panels, {len(exprs)} expressions: "
          f"{'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
