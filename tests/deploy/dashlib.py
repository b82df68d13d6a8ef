"""Shared helpers for the production-kit checks: dashboards, variables, PromQL
substitution, and the metric names of the chainpulse contract."""
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
DS_REF = {"type": "prometheus", "uid": "${datasource}"}

# Metric families chainpulse exports (docs: /work/notes/contract.md, README).
# Histograms are listed by base name; _bucket/_sum/_count are derived.
CONTRACT_COUNTERS_GAUGES = {
    "chainpulse_requests_total", "chainpulse_runs_total", "chainpulse_llm_calls_total",
    "chainpulse_llm_tokens_total", "chainpulse_errors_total",
    "chainpulse_spans_received_total", "chainpulse_spans_rejected_total",
    "chainpulse_otlp_requests_total", "chainpulse_otlp_requests_rejected_total",
    "chainpulse_inflight_export_requests", "chainpulse_assembly_inferred_roots_total",
    "chainpulse_assembly_late_spans_total", "chainpulse_cardinality_limit", "chainpulse_assembly_traces",
    "chainpulse_assembly_spans", "chainpulse_assembly_evictions_total",
    "chainpulse_cardinality_series", "chainpulse_cardinality_overflow_total",
    "chainpulse_build_info", "process_resident_memory_bytes", "process_cpu_seconds_total",
    # issue 3: cost / SLO
    "chainpulse_llm_cost_usd_total", "chainpulse_llm_unpriced_calls_total",
    "chainpulse_cache_lookups_total", "chainpulse_slo_target", "chainpulse_budget_usd",
    # issue 4: forwarding
    "chainpulse_forward_spans_total", "chainpulse_forward_queue_spans",
    "chainpulse_forward_queue_bytes", "chainpulse_forward_oldest_age_seconds",
    "chainpulse_forward_queue_max_bytes", "chainpulse_forward_batches_total",
    "chainpulse_forward_failed_spans_total", "chainpulse_forward_wal_corrupt_tails_total",
    "chainpulse_forward_redactions_total", "chainpulse_forward_truncated_values_total",
    "chainpulse_sampling_decisions_total",
    # Prometheus itself
    "up", "ALERTS",
}
CONTRACT_HISTOGRAMS = {
    "chainpulse_request_duration_seconds", "chainpulse_run_duration_seconds",
    "chainpulse_llm_duration_seconds", "chainpulse_llm_time_to_first_token_seconds",
    "chainpulse_request_cost_usd", "chainpulse_forward_send_duration_seconds",
}
KNOWN_METRICS = set(CONTRACT_COUNTERS_GAUGES)
for _h in CONTRACT_HISTOGRAMS:
    KNOWN_METRICS |= {_h + "_bucket", _h + "_sum", _h + "_count"}

# A metric name, but not the middle of a level:metric:operation rule name.
METRIC_RE = re.compile(r"(?<![\w:])((?:chainpulse|process)_[a-zA-Z0-9_]+)\b(?!:)")
# $1, $2 ... are label_replace back-references, not variables (Grafana leaves
# them alone too), so a variable name must not start with a digit.
VAR_RE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)\]\]")
LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(?:(?P<sel>.+?)\s*,\s*)?(?P<label>[a-zA-Z_]\w*)\s*\)\s*$",
                             re.S)

# Grafana's built-in variables and the values used to evaluate them outside
# Grafana (the live check scrapes every 1s, so 1m holds plenty of samples).
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}


def load_dashboards():
    out = {}
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        out[path.name] = json.loads(path.read_text())
    return out


def iter_panels(dash):
    """All panels, including those nested in collapsed rows."""
    for p in dash.get("panels", []):
        yield p
        for sub in p.get("panels", []) or []:
            yield sub


def variables(dash):
    return dash.get("templating", {}).get("list", [])


def variable_query(var):
    q = var.get("query")
    if isinstance(q, dict):
        q = q.get("query", "")
    return q or ""


def parse_label_values(query):
    m = LABEL_VALUES_RE.match(query)
    if not m:
        return None
    return m.group("sel"), m.group("label")


def referenced_vars(text):
    return {a or b or c for a, b, c in VAR_RE.findall(text)}


def substitute(text, values):
    """Replace $var, ${var}, ${var:fmt} and [[var]] with values[var] (or a
    builtin). Raises KeyError for an unknown variable."""
    def rep(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in values:
            return values[name]
        if name in BUILTINS:
            return BUILTINS[name]
        raise KeyError(name)
    return VAR_RE.sub(rep, text)


def default_values(dash, query_value=".*"):
    """Variable values: query variables -> query_value (the All regex),
    custom/constant/interval -> their current value."""
    vals = {}
    for v in variables(dash):
        t = v.get("type")
        if t == "query":
            vals[v["name"]] = query_value
        elif t == "datasource":
            vals[v["name"]] = "prometheus"
        else:
            cur = v.get("current", {}).get("value")
            if isinstance(cur, list):
                cur = cur[0] if cur else ""
            vals[v["name"]] = cur if cur is not None else ""
    return vals


def metric_names(expr):
    return set(METRIC_RE.findall(expr))
