#!/usr/bin/env python3
"""Source of the chainpulse Grafana dashboards.

    python3 grafana/generate.py          # (re)write grafana/dashboards/*.json
    python3 grafana/generate.py --check  # exit 1 if a committed JSON is stale

The JSON files are what Grafana loads (provisioning or manual import); they are
generated from this file so that ids, layout, datasource references and
variables stay uniform. Edit here, not in the JSON. No dependencies beyond the
Python standard library.
"""
import argparse
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39

# Label filters shared by the queries.
SC = 'service=~"$service", chain=~"$chain"'
SCM = 'service=~"$service", chain=~"$chain", model=~"$model"'
JI = 'job=~"$job", instance=~"$instance"'
RI = "$__rate_interval"


# ---------------------------------------------------------------- variables
def datasource_var():
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_var(name, label, query, multi=True):
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": dict(DS),
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
        "includeAll": True,
        "allValue": ".*",
        "multi": multi,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }


def custom_var(name, label, values, default):
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "current": {"selected": True, "text": default, "value": default},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [
            {"selected": v == default, "text": v, "value": v} for v in values
        ],
        "skipUrlSync": False,
    }


def standard_vars():
    return [
        datasource_var(),
        query_var("service", "Service", "label_values(chainpulse_requests_total, service)"),
        query_var("chain", "Chain",
                  'label_values(chainpulse_requests_total{service=~"$service"}, chain)'),
        query_var("model", "Model",
                  'label_values(chainpulse_llm_calls_total{service=~"$service", chain=~"$chain"}, model)'),
    ]


# ------------------------------------------------------------------- panels
def target(expr, legend="__auto", ref="A", instant=False, fmt=None, exemplar=False):
    t = {
        "datasource": dict(DS),
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if fmt:
        t["format"] = fmt
    if exemplar:
        # chainpulse's duration and cost histograms carry OpenMetrics
        # exemplars (trace_id, span_id): Grafana draws them as points on the
        # panel, each linking to its trace (datasource
        # exemplarTraceIdDestinations, grafana/provisioning/datasources).
        t["exemplar"] = True
    return t


def targets(*specs, **kw):
    """specs: (expr, legend) tuples; refIds A, B, C..."""
    return [target(e, l, chr(ord("A") + i), **kw) for i, (e, l) in enumerate(specs)]


def with_exemplars(tgts, count=1):
    """The first `count` targets (the histogram quantiles) show exemplars."""
    for t in tgts[:count]:
        t["exemplar"] = True
    return tgts


TARGET_LINE = {
    "matcher": {"id": "byRegexp", "options": "^target.*"},
    "properties": [
        {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
        {"id": "custom.fillOpacity", "value": 0},
        {"id": "custom.lineWidth", "value": 2},
        {"id": "color", "value": {"fixedColor": "red", "mode": "fixed"}},
    ],
}


def thresholds(*steps):
    out = [{"color": "green", "value": None}]
    for value, color in steps:
        out.append({"color": color, "value": value})
    return {"mode": "absolute", "steps": out}


def timeseries(title, desc, tgts, unit="short", w=12, h=8, overrides=None,
               stack=False, threshold_lines=None, min_zero=True):
    custom = {
        "drawStyle": "line",
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        "axisPlacement": "auto",
        "thresholdsStyle": {"mode": "line" if threshold_lines else "off"},
    }
    defaults = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"}}
    if min_zero:
        defaults["min"] = 0
    if threshold_lines:
        defaults["thresholds"] = thresholds(*threshold_lines)
    return {
        "type": "timeseries",
        "title": title,
        "description": desc,
        "datasource": dict(DS),
        "targets": tgts,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                       "calcs": ["mean", "max", "lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "_w": w, "_h": h,
    }


def stat(title, desc, tgts, unit="short", w=4, h=4, steps=(), decimals=None,
         color_mode="value", reduce="lastNotNull"):
    defaults = {"unit": unit, "thresholds": thresholds(*steps), "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": desc,
        "datasource": dict(DS),
        "targets": tgts,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": color_mode,
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": [reduce], "fields": "", "values": False},
            "textMode": "auto",
        },
        "_w": w, "_h": h,
    }


def red_first(*steps):
    """Thresholds where low values are bad (availability, budget left)."""
    out = [{"color": "red", "value": None}]
    for value, color in steps:
        out.append({"color": color, "value": value})
    return {"mode": "absolute", "steps": out}


def bargauge(title, desc, tgts, unit="percentunit", w=12, h=8, th=None, minv=None, maxv=None):
    defaults = {"unit": unit, "thresholds": th or thresholds(), "color": {"mode": "thresholds"}}
    if minv is not None:
        defaults["min"] = minv
    if maxv is not None:
        defaults["max"] = maxv
    return {
        "type": "bargauge",
        "title": title,
        "description": desc,
        "datasource": dict(DS),
        "targets": tgts,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "displayMode": "gradient",
            "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showUnfilled": True,
            "valueMode": "color",
        },
        "_w": w, "_h": h,
    }


def table(title, desc, tgts, unit="short", w=12, h=8, sort_by="Value"):
    return {
        "type": "table",
        "title": title,
        "description": desc,
        "datasource": dict(DS),
        "targets": tgts,
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"align": "auto"}}, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm",
                    "sortBy": [{"displayName": sort_by, "desc": True}]},
        "transformations": [
            {"id": "organize", "options": {"excludeByName": {"Time": True}}},
        ],
        "_w": w, "_h": h,
    }


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_w": 24, "_h": 1}


# ------------------------------------------------------------------- layout
def layout(items):
    """Assign ids and gridPos left to right, wrapping at 24 columns."""
    panels, x, y, line_h = [], 0, 0, 0
    for pid, p in enumerate(items, start=1):
        w, h = p.pop("_w"), p.pop("_h")
        if p["type"] == "row" or x + w > 24:
            y += line_h
            x, line_h = 0, 0
        p["id"] = pid
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        panels.append(p)
        x += w
        line_h = max(line_h, h)
        if p["type"] == "row":
            y += h
            x, line_h = 0, 0
    return panels


def dashboard(uid, title, description, items, variables, tags=()):
    return {
        "annotations": {"list": [{
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }]},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [{
            "asDropdown": True,
            "icon": "external link",
            "includeVars": True,
            "keepTime": True,
            "tags": ["chainpulse"],
            "targetBlank": False,
            "title": "chainpulse",
            "type": "dashboards",
        }],
        "panels": layout(items),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["chainpulse", *tags],
        "templating": {"list": variables},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# ------------------------------------------------------ PromQL building blocks
def err_ratio(by, window, sel=SC):
    """Error ratio of root runs; 0 (not empty) where a chain had no errors."""
    grp = f"sum by ({by}) " if by else "sum "
    return (f'({grp}(rate(chainpulse_requests_total{{{sel}, status="error"}}[{window}]))'
            f" or 0 * {grp}(rate(chainpulse_requests_total{{{sel}}}[{window}])))"
            f" / {grp}(rate(chainpulse_requests_total{{{sel}}}[{window}]))")


def quantile(q, metric, by, sel=SC, window=RI):
    by_le = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({by_le}) (rate({metric}_bucket{{{sel}}}[{window}])))"


def slo_target(kpi, by="service, chain", sel=SC):
    return f'max by ({by}) (chainpulse_slo_target{{kpi="{kpi}", {sel}}})'


# ================================================================ dashboards
def chain_kpis():
    items = [row("Overview")]
    items += [
        stat("Requests/s", "Root runs (chain requests) per second, all selected chains.",
             targets((f"sum(rate(chainpulse_requests_total{{{SC}}}[{RI}]))", "req/s")),
             unit="reqps", decimals=2),
        stat("Error rate", "Share of root runs that ended with status=error.",
             targets((err_ratio("", RI), "error rate")),
             unit="percentunit", steps=((0.001, "orange"), (0.01, "red")), decimals=2),
        stat("P95 latency", "95th percentile of root-run duration over all selected chains.",
             targets((quantile(0.95, "chainpulse_request_duration_seconds", ""), "p95")),
             unit="s", steps=((2, "orange"), (3, "red")), decimals=2),
        stat("Availability ($slo_window)",
             "1 - error ratio of root runs over the SLO window, all selected chains.",
             targets((f"1 - ({err_ratio('', '$slo_window')})", "availability")),
             unit="percentunit", decimals=3),
        stat("Worst error budget left ($slo_window)",
             "Lowest remaining error budget among the selected chains: "
             "1 - error ratio / (1 - availability target).",
             targets((f"min(1 - ({err_ratio('service, chain', '$slo_window')})"
                      f" / on (service, chain) (1 - {slo_target('availability')}))",
                      "budget left")),
             unit="percentunit", decimals=1),
        stat("Chains", "Chains that served requests in the last 5 minutes.",
             targets((f"count(sum by (service, chain) (rate(chainpulse_requests_total{{{SC}}}[5m])) > 0)",
                      "chains")), decimals=0),
    ]
    items[-2]["fieldConfig"]["defaults"]["thresholds"] = red_first((0.25, "orange"), (0.5, "green"))
    items[-3]["fieldConfig"]["defaults"]["thresholds"] = red_first((0.999, "green"))

    items.append(row("Latency per chain (dashed: target from chainpulse_slo_target)"))
    for q, kpi, label in ((0.50, "latency_p50_seconds", "P50"),
                          (0.95, "latency_p95_seconds", "P95"),
                          (0.99, "latency_p99_seconds", "P99")):
        items.append(timeseries(
            f"{label} latency by chain",
            f"{label} of root-run duration per service/chain; dashed lines are the "
            f"{kpi} targets exported by chainpulse. Exemplar points are recent requests "
            f"(slowest / failed per bucket), each linking to its trace.",
            with_exemplars(targets((quantile(q, "chainpulse_request_duration_seconds", "service, chain"),
                                    "{{service}}/{{chain}}"),
                                   (slo_target(kpi), "target {{service}}/{{chain}}"))),
            unit="s", w=8, overrides=[TARGET_LINE]))

    items.append(row("Traffic and errors"))
    items += [
        timeseries("Requests/s by chain", "Root runs per second per service/chain.",
                   targets((f"sum by (service, chain) (rate(chainpulse_requests_total{{{SC}}}[{RI}]))",
                            "{{service}}/{{chain}}")), unit="reqps", w=8),
        timeseries("Error rate by chain",
                   "Share of root runs with status=error; dashed: error_rate target.",
                   targets((err_ratio("service, chain", RI), "{{service}}/{{chain}}"),
                           (slo_target("error_rate"), "target {{service}}/{{chain}}")),
                   unit="percentunit", w=8, overrides=[TARGET_LINE]),
        timeseries("Throughput (floor if configured)",
                   "Requests/s per chain; dashed: the throughput_rps floor, drawn only where "
                   "slo.min_throughput_rps sets one (none by default: live traffic has no floor).",
                   targets((f"sum by (service, chain) (rate(chainpulse_requests_total{{{SC}}}[5m]))",
                            "{{service}}/{{chain}}"),
                           (slo_target("throughput_rps"), "target {{service}}/{{chain}}")),
                   unit="reqps", w=8, overrides=[TARGET_LINE]),
    ]

    items.append(row("SLO and error budget"))
    budget_by_chain = (f"1 - ({err_ratio('service, chain', '$slo_window')})"
                       f" / on (service, chain) (1 - {slo_target('availability')})")
    items += [
        bargauge("Availability by chain ($slo_window)",
                 "1 - error ratio of root runs over the SLO window.",
                 targets((f"1 - ({err_ratio('service, chain', '$slo_window')})",
                          "{{service}}/{{chain}}")),
                 w=8, th=red_first((0.99, "orange"), (0.999, "green")), minv=0.99, maxv=1),
        bargauge("Error budget left by chain ($slo_window)",
                 "Remaining share of the error budget: 1 - error ratio / (1 - availability target). "
                 "Negative: the SLO is broken for this window.",
                 targets((budget_by_chain, "{{service}}/{{chain}}")),
                 w=8, th=red_first((0.25, "orange"), (0.5, "green")), minv=0, maxv=1),
        timeseries("Error budget burn rate (1h)",
                   "Error ratio over 1h divided by the error budget (1 - availability target). "
                   "1 = budget lasts exactly the SLO window; 6 and 14.4 are the slow/fast burn "
                   "alert thresholds.",
                   targets((f"({err_ratio('service, chain', '1h')})"
                            f" / on (service, chain) (1 - {slo_target('availability')})",
                            "{{service}}/{{chain}}")),
                   w=8, threshold_lines=((6, "orange"), (14.4, "red"))),
    ]
    variables = standard_vars() + [custom_var(
        "slo_window", "SLO window", ["1h", "1d", "7d", "28d", "30d"], "30d")]
    return dashboard("chainpulse-chain-kpis", "chainpulse / Chain KPIs",
                     "Latency percentiles, throughput, errors, availability and error budget "
                     "per LangChain chain, from chainpulse.", items, variables, tags=("slo",))


def cost_tokens():
    cost = f"chainpulse_llm_cost_usd_total{{{SCM}}}"
    tokens = f"chainpulse_llm_tokens_total{{{SCM}}}"
    lookups = f"chainpulse_cache_lookups_total{{{SC}}}"
    hits = f'chainpulse_cache_lookups_total{{{SC}, result="hit"}}'
    # Not filtered by $model: the model variable lists models seen in token
    # metrics, and an unpriced model is exactly one the user has to spot.
    unpriced = 'chainpulse_llm_unpriced_calls_total'
    budget_hour_service = ('max by (service) (label_replace(chainpulse_budget_usd{window="hour", '
                           'scope="service"}, "service", "$1", "name", "(.*)"))')
    items = [row("Overview")]
    items += [
        stat("Cost per hour", "LLM spend rate, extrapolated to USD per hour.",
             targets((f"sum(rate({cost}[{RI}])) * 3600", "USD/h")), unit="currencyUSD", decimals=2),
        stat("Cost in range", "LLM spend over the selected time range.",
             targets((f"sum(increase({cost}[$__range]))", "USD")), unit="currencyUSD", decimals=2),
        stat("Cost per request", "Average LLM cost of one root run (chain request).",
             targets((f"sum(rate(chainpulse_request_cost_usd_sum{{{SC}}}[{RI}]))"
                      f" / sum(rate(chainpulse_request_cost_usd_count{{{SC}}}[{RI}]))",
                      "USD/request")), unit="currencyUSD", decimals=4),
        stat("Cache hit rate", "Share of LLM cache lookups that hit.",
             targets((f"sum(rate({hits}[{RI}])) / sum(rate({lookups}[{RI}]))",
                      "hit rate")), unit="percentunit", decimals=1),
        stat("Hourly budget used", "Spend of the last hour over the global hourly budget "
             "(chainpulse_budget_usd{window=\"hour\", scope=\"global\"}).",
             targets(("sum(rate(chainpulse_llm_cost_usd_total[1h])) * 3600"
                      ' / on () max(chainpulse_budget_usd{window="hour", scope="global"})', "used")),
             unit="percentunit", steps=((0.8, "orange"), (1, "red")), decimals=1),
        stat("Unpriced calls in range",
             "LLM calls to models without a price: their cost is missing from every cost panel.",
             targets((f"sum(increase({unpriced}[$__range])) or vector(0)", "calls")),
             steps=((1, "orange"),), decimals=0),
    ]

    items.append(row("Cost"))
    items += [
        timeseries("Cost per hour by chain", "LLM spend rate per service/chain, USD per hour.",
                   targets((f"sum by (service, chain) (rate({cost}[{RI}])) * 3600",
                            "{{service}}/{{chain}}")), unit="currencyUSD", w=8, stack=True),
        timeseries("Cost per hour by model", "LLM spend rate per provider/model, USD per hour.",
                   targets((f"sum by (provider, model) (rate({cost}[{RI}])) * 3600",
                            "{{provider}}/{{model}}")), unit="currencyUSD", w=8, stack=True),
        timeseries("Cost per request by chain", "Average and P95 LLM cost of one root run; "
                   "exemplar points are the costliest recent requests, each linking to its trace.",
                   with_exemplars(targets((f"sum by (service, chain) (rate(chainpulse_request_cost_usd_sum{{{SC}}}[{RI}]))"
                            f" / sum by (service, chain) (rate(chainpulse_request_cost_usd_count{{{SC}}}[{RI}]))",
                            "avg {{service}}/{{chain}}"),
                           (quantile(0.95, "chainpulse_request_cost_usd", "service, chain"),
                            "p95 {{service}}/{{chain}}")), 2),
                   unit="currencyUSD", w=8),
    ]

    items.append(row("Tokens"))
    items += [
        timeseries("Tokens/s by model and type",
                   "Token throughput per model and type (input, output, cache_read, cache_write, "
                   "reasoning).",
                   targets((f"sum by (model, type) (rate({tokens}[{RI}]))", "{{model}} {{type}}")),
                   w=12),
        bargauge("Tokens by type in range", "Tokens over the selected range, per type.",
                 targets((f"sum by (type) (increase({tokens}[$__range]))", "{{type}}")),
                 unit="short", w=6),
        bargauge("Tokens by model in range", "Tokens over the selected range, per model.",
                 targets((f"sum by (model) (increase({tokens}[$__range]))", "{{model}}")),
                 unit="short", w=6),
        timeseries("Tokens per request by chain",
                   "Input + output tokens per root run, per service/chain.",
                   targets((f'sum by (service, chain) (rate(chainpulse_llm_tokens_total{{{SC}, type=~"input|output"}}[{RI}]))'
                            f" / sum by (service, chain) (rate(chainpulse_requests_total{{{SC}}}[{RI}]))",
                            "{{service}}/{{chain}}")), w=12),
        timeseries("Prompt-cache read tokens/s by model",
                   "Tokens served from the provider's prompt cache (type=cache_read) and written "
                   "to it (cache_write).",
                   targets((f'sum by (model, type) (rate(chainpulse_llm_tokens_total{{{SCM}, type=~"cache_read|cache_write"}}[{RI}]))',
                            "{{model}} {{type}}")), w=12),
    ]

    items.append(row("Cache, budget and pricing"))
    items += [
        timeseries("Cache hit rate by chain", "Share of LLM cache lookups that hit, per chain.",
                   targets((f"sum by (service, chain) (rate({hits}[{RI}]))"
                            f" / sum by (service, chain) (rate({lookups}[{RI}]))",
                            "{{service}}/{{chain}}")), unit="percentunit", w=8),
        timeseries("Hourly budget burn",
                   "Spend of the last hour over the hourly budget: per service (scope=service) and "
                   "for the fleet (scope=global). Over 1 (red line) = over budget.",
                   targets(("sum by (service) (rate(chainpulse_llm_cost_usd_total[1h])) * 3600"
                            f" / on (service) {budget_hour_service}", "{{service}}"),
                           ("sum(rate(chainpulse_llm_cost_usd_total[1h])) * 3600"
                            ' / on () max(chainpulse_budget_usd{window="hour", scope="global"})', "global")),
                   unit="percentunit", w=8, threshold_lines=((1, "red"),)),
        timeseries("Unpriced calls/s by model",
                   "Calls to models missing from the price table; add a price to fix.",
                   targets((f"sum by (model) (rate({unpriced}[{RI}]))", "{{model}}")), w=8),
    ]
    return dashboard("chainpulse-cost-tokens", "chainpulse / Cost and tokens",
                     "LLM spend, cost per request, token usage, cache hit rate and budgets, "
                     "from chainpulse.", items, standard_vars(), tags=("cost",))


def steps_errors():
    SCK = SC + ', kind=~"$kind"'
    runs = f"chainpulse_runs_total{{{SCK}}}"
    items = [row("Steps")]
    items += [
        timeseries("P95 latency by step", "95th percentile duration of every run (step) by kind/step.",
                   targets((quantile(0.95, "chainpulse_run_duration_seconds", "kind, step", SCK),
                            "{{kind}} {{step}}")), unit="s", w=12),
        timeseries("P95 latency by kind", "95th percentile run duration per kind "
                   "(llm, retriever, tool, ...).",
                   targets((quantile(0.95, "chainpulse_run_duration_seconds", "kind", SCK), "{{kind}}")),
                   unit="s", w=12),
        table("Slowest steps (P95 over range)", "Top 10 steps by 95th percentile duration "
              "over the selected time range.",
              targets((f"topk(10, {quantile(0.95, 'chainpulse_run_duration_seconds', 'service, chain, kind, step', SCK, '$__range')})",
                       "__auto"), instant=True, fmt="table"),
              unit="s", w=12),
        table("Time spent per step (share of range)", "Top 10 steps by total time spent "
              "(sum of durations) over the selected range, as seconds per second.",
              targets((f"topk(10, sum by (service, chain, kind, step) (rate(chainpulse_run_duration_seconds_sum{{{SCK}}}[$__range])))",
                       "__auto"), instant=True, fmt="table"),
              unit="s", w=12),
        timeseries("Runs/s by kind", "Runs (all steps, not only roots) per second per kind.",
                   targets((f"sum by (kind) (rate({runs}[{RI}]))", "{{kind}}")),
                   unit="ops", w=12, stack=True),
        timeseries("Step error ratio", "Share of runs with status=error per kind/step.",
                   targets((f'(sum by (kind, step) (rate(chainpulse_runs_total{{{SCK}, status="error"}}[{RI}]))'
                            f" or 0 * sum by (kind, step) (rate({runs}[{RI}])))"
                            f" / sum by (kind, step) (rate({runs}[{RI}]))", "{{kind}} {{step}}")),
                   unit="percentunit", w=12),
    ]

    items.append(row("LLM calls"))
    items += [
        timeseries("LLM latency by model (P50/P95)", "LLM call duration percentiles per model.",
                   with_exemplars(targets(
                       (quantile(0.5, "chainpulse_llm_duration_seconds", "model", SCM), "p50 {{model}}"),
                       (quantile(0.95, "chainpulse_llm_duration_seconds", "model", SCM), "p95 {{model}}")), 2),
                   unit="s", w=8),
        timeseries("Time to first token by model (P50/P95)",
                   "Streaming latency until the first token, for calls that report it.",
                   targets((quantile(0.5, "chainpulse_llm_time_to_first_token_seconds", "model", SCM),
                            "p50 {{model}}"),
                           (quantile(0.95, "chainpulse_llm_time_to_first_token_seconds", "model", SCM),
                            "p95 {{model}}")),
                   unit="s", w=8),
        timeseries("LLM calls/s by model and status", "LLM calls per second.",
                   targets((f"sum by (model, status) (rate(chainpulse_llm_calls_total{{{SCM}}}[{RI}]))",
                            "{{model}} {{status}}")), unit="ops", w=8, stack=True),
    ]

    items.append(row("Errors"))
    items += [
        timeseries("Errors/s by type", "Errors per second by error_type (exception class or code).",
                   targets((f"sum by (error_type) (rate(chainpulse_errors_total{{{SCK}}}[{RI}]))",
                            "{{error_type}}")), unit="ops", w=8, stack=True),
        timeseries("Errors/s by kind", "Errors per second by the kind of run that raised them.",
                   targets((f"sum by (kind) (rate(chainpulse_errors_total{{{SCK}}}[{RI}]))", "{{kind}}")),
                   unit="ops", w=8, stack=True),
        table("Top error types (range)", "Most frequent errors over the selected time range.",
              targets((f"topk(10, sum by (service, chain, kind, error_type) (increase(chainpulse_errors_total{{{SCK}}}[$__range])))",
                       "__auto"), instant=True, fmt="table"),
              w=8),
    ]
    variables = standard_vars() + [
        query_var("kind", "Kind",
                  'label_values(chainpulse_runs_total{service=~"$service", chain=~"$chain"}, kind)')]
    return dashboard("chainpulse-steps-errors", "chainpulse / Steps and errors",
                     "Per-step latency (retriever, llm, tool, ...), LLM time to first token, and "
                     "errors by type, from chainpulse.", items, variables, tags=("steps",))


def health():
    fwd = f"chainpulse_forward_spans_total{{{JI}}}"
    items = [row("Ingest")]
    items += [
        stat("Targets up", "chainpulse instances Prometheus scrapes successfully.",
             targets((f"count(up{{{JI}}} == 1 and on (job, instance) chainpulse_build_info)", "up")),
             decimals=0),
        stat("Spans in/s", "OTLP spans received per second, all protocols.",
             targets((f"sum(rate(chainpulse_spans_received_total{{{JI}}}[{RI}]))", "spans/s")),
             unit="ops", decimals=1),
        stat("Spans rejected/s", "Spans chainpulse refused (malformed, too large, over limits).",
             targets((f"sum(rate(chainpulse_spans_rejected_total{{{JI}}}[{RI}])) or vector(0)", "rejected/s")),
             unit="ops", steps=((0.001, "orange"),), decimals=2),
        stat("Export requests rejected/s", "Whole OTLP export requests refused "
             "(bad content type, decode error, body too large).",
             targets((f"sum(rate(chainpulse_otlp_requests_rejected_total{{{JI}}}[{RI}])) or vector(0)", "rejected/s")),
             unit="reqps", steps=((0.001, "orange"),), decimals=2),
        stat("Forward failures/s", "Spans that failed or were dropped on the way to upstream "
             "destinations.",
             targets((f'sum(rate(chainpulse_forward_spans_total{{{JI}, result=~"failed|dropped"}}[{RI}])) or vector(0)',
                      "failed/s")),
             unit="ops", steps=((0.001, "red"),), decimals=2),
        stat("Version", "chainpulse build versions running.",
             targets((f"count by (version) (chainpulse_build_info{{{JI}}})", "{{version}}")),
             decimals=0, color_mode="none"),
        timeseries("Spans received/s by protocol", "Spans in per OTLP protocol "
                   "(grpc, http_protobuf, http_json).",
                   targets((f"sum by (protocol) (rate(chainpulse_spans_received_total{{{JI}}}[{RI}]))",
                            "{{protocol}}")), unit="ops", w=8, stack=True),
        timeseries("Rejected spans/s by reason", "Spans refused, by reason.",
                   targets((f"sum by (reason) (rate(chainpulse_spans_rejected_total{{{JI}}}[{RI}]))",
                            "{{reason}}")), unit="ops", w=8),
        timeseries("OTLP export requests/s", "Export requests received per protocol, and requests "
                   "in flight.",
                   targets((f"sum by (protocol) (rate(chainpulse_otlp_requests_total{{{JI}}}[{RI}]))",
                            "{{protocol}}"),
                           (f"sum(chainpulse_inflight_export_requests{{{JI}}})", "in flight")),
                   unit="reqps", w=8),
        timeseries("Rejected export requests/s", "OTLP export requests refused, by protocol and reason.",
                   targets((f"sum by (protocol, reason) (rate(chainpulse_otlp_requests_rejected_total{{{JI}}}[{RI}]))",
                            "{{protocol}} {{reason}}")), unit="reqps", w=8),
    ]

    items.append(row("Trace assembly and cardinality"))
    items += [
        timeseries("Assembly buffer", "Traces and spans waiting in the assembly buffer for their "
                   "root run to finish.",
                   targets((f"sum by (instance) (chainpulse_assembly_traces{{{JI}}})", "traces {{instance}}"),
                           (f"sum by (instance) (chainpulse_assembly_spans{{{JI}}})", "spans {{instance}}")),
                   w=8),
        timeseries("Assembly evictions/s", "Traces evicted before completion: timeout (root never "
                   "arrived) or capacity (buffer full).",
                   targets((f"sum by (reason) (rate(chainpulse_assembly_evictions_total{{{JI}}}[{RI}]))",
                            "{{reason}}")), unit="ops", w=8),
        timeseries("Late spans and inferred roots/s", "Spans that arrived after their trace was "
                   "emitted, and traces whose root had to be inferred (root span missing).",
                   targets((f"sum(rate(chainpulse_assembly_late_spans_total{{{JI}}}[{RI}]))", "late spans"),
                           (f"sum(rate(chainpulse_assembly_inferred_roots_total{{{JI}}}[{RI}]))",
                            "inferred roots")), unit="ops", w=8),
        timeseries("Cardinality use per metric family", "Label sets chainpulse holds per family "
                   "over its limit (chainpulse_cardinality_limit); at 100 % new label sets "
                   "overflow.",
                   targets((f"max by (family) (chainpulse_cardinality_series{{{JI}}}"
                            f" / on (job, instance, family) chainpulse_cardinality_limit{{{JI}}})",
                            "{{family}}")),
                   unit="percentunit", w=8, threshold_lines=((0.8, "orange"), (1, "red"))),
        timeseries("Cardinality overflow/s", "Label sets folded into the overflow series because a "
                   "family hit its limit.",
                   targets((f"sum by (family) (rate(chainpulse_cardinality_overflow_total{{{JI}}}[{RI}]))",
                            "{{family}}")), unit="ops", w=8),
        timeseries("Chain requests/s by service", "Root runs chainpulse turned into KPIs.",
                   targets((f"sum by (service) (rate(chainpulse_requests_total{{service=~\"$service\"}}[{RI}]))",
                            "{{service}}")), unit="reqps", w=8),
        timeseries("LLM calls/s by model", "LLM runs seen, for the model filter.",
                   targets((f"sum by (model) (rate(chainpulse_llm_calls_total{{{SCM}}}[{RI}]))",
                            "{{model}}")), unit="ops", w=8),
    ]

    items.append(row("Forwarding"))
    items += [
        timeseries("Forwarded spans/s", "Spans per destination and result (sent, retried, failed, "
                   "dropped).",
                   targets((f"sum by (destination, result) (rate({fwd}[{RI}]))",
                            "{{destination}} {{result}}")), unit="ops", w=8),
        timeseries("Forward queue", "Spans and bytes queued per destination.",
                   targets((f"sum by (destination) (chainpulse_forward_queue_spans{{{JI}}})",
                            "spans {{destination}}"),
                           (f"sum by (destination) (chainpulse_forward_queue_bytes{{{JI}}})",
                            "bytes {{destination}}")),
                   w=8, overrides=[{"matcher": {"id": "byRegexp", "options": "^bytes.*"},
                                    "properties": [{"id": "unit", "value": "bytes"},
                                                   {"id": "custom.axisPlacement", "value": "right"}]}]),
        timeseries("Oldest queued span age", "Age of the oldest span waiting per destination; "
                   "alert above 2m.",
                   targets((f"max by (destination) (chainpulse_forward_oldest_age_seconds{{{JI}}})",
                            "{{destination}}")), unit="s", w=8, threshold_lines=((120, "red"),)),
        timeseries("Forward send latency (P95)", "95th percentile duration of one export call "
                   "to the destination.",
                   targets((quantile(0.95, "chainpulse_forward_send_duration_seconds", "destination", JI),
                            "{{destination}}")), unit="s", w=12),
        timeseries("Forward failure ratio", "Failed or dropped spans over all forwarded spans.",
                   targets((f'(sum by (destination) (rate(chainpulse_forward_spans_total{{{JI}, result=~"failed|dropped"}}[{RI}]))'
                            f" or 0 * sum by (destination) (rate({fwd}[{RI}])))"
                            f" / sum by (destination) (rate({fwd}[{RI}]))", "{{destination}}")),
                   unit="percentunit", w=12),
        timeseries("Forward queue fill", "Queued bytes over queue.max_bytes per destination; at "
                   "100% chainpulse pushes back on the app (or drops, with on_full = drop).",
                   targets((f"max by (destination) (chainpulse_forward_queue_bytes{{{JI}}}"
                            f" / chainpulse_forward_queue_max_bytes{{{JI}}})", "{{destination}}")),
                   unit="percentunit", w=12, threshold_lines=((0.8, "red"),)),
        timeseries("Back-pressure refusals/s", "Export requests refused because a forwarding "
                   "queue was full (RESOURCE_EXHAUSTED / 503; the app's SDK retries).",
                   targets((f'sum by (instance) (rate(chainpulse_otlp_requests_rejected_total{{{JI}, reason="queue_full"}}[{RI}]))',
                            "{{instance}}")), unit="reqps", w=12),
    ]

    items.append(row("Process"))
    only_cp = f"and on (job, instance) chainpulse_build_info{{{JI}}}"
    items += [
        timeseries("Resident memory", "process_resident_memory_bytes of each chainpulse "
                   "(sidecar limit in the example manifests: 128 MiB).",
                   targets((f"process_resident_memory_bytes {only_cp}", "{{instance}}")),
                   unit="bytes", w=12, threshold_lines=((128 * 1024 * 1024, "red"),)),
        timeseries("CPU", "CPU cores used by each chainpulse.",
                   targets((f"rate(process_cpu_seconds_total[{RI}]) {only_cp}", "{{instance}}")),
                   unit="short", w=12),
    ]
    variables = standard_vars() + [
        query_var("job", "Job", "label_values(chainpulse_build_info, job)"),
        query_var("instance", "Instance", 'label_values(chainpulse_build_info{job=~"$job"}, instance)'),
    ]
    return dashboard("chainpulse-health", "chainpulse / Health",
                     "chainpulse itself: spans in and rejected, assembly buffer, cardinality, "
                     "forwarding queues and failures, memory and CPU.", items, variables,
                     tags=("health",))


DASHBOARDS = {
    "chainpulse-chain-kpis.json": chain_kpis,
    "chainpulse-cost-tokens.json": cost_tokens,
    "chainpulse-steps-errors.json": steps_errors,
    "chainpulse-health.json": health,
}


def render(fn):
    return json.dumps(fn(), indent=2, sort_keys=False) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, fn in DASHBOARDS.items():
        text = render(fn)
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote grafana/dashboards/{name}")
    if stale:
        print("stale dashboards (run python3 grafana/generate.py): " + ", ".join(stale))
        return 1
    if args.check:
        print(f"{len(DASHBOARDS)} dashboards match grafana/generate.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
