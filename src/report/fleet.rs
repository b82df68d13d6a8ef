//! `chainpulse report --prometheus URL`: the KPI table of a whole fleet of
//! sidecars, from the Prometheus (or Thanos / Mimir) that scrapes them.
//!
//! Each sidecar's KPI API only knows its own pod; Prometheus already holds
//! every replica's counters and histogram buckets, and those add up exactly:
//! counters and cumulative buckets are summed across replicas per (service,
//! chain), so requests, errors, tokens and cost are exact sums, not
//! estimates. Nothing needs the recording rules in `deploy/prometheus/`.
//!
//! * **Windows.** `--window all` sums the current counter values (everything
//!   since each replica started, like the KPI API's `all`). A range such as
//!   `5m` takes, per series, the difference of its latest value and its
//!   value `5m` earlier (`x - x offset 5m`) — the raw difference of two
//!   scrapes, not `increase()`, whose extrapolation to the window edges
//!   yields fractional request counts. A series born inside the window
//!   counts from zero; a series that reset (a replica restarted) counts
//!   from its reset, so the report flags the reset and calls those counts a
//!   lower bound.
//! * **Latency SLOs at the bucket edges.** "P95 ≤ 2 s" holds exactly when at
//!   least 95 % of requests took ≤ 2 s, and the `le="2"` bucket counts those
//!   requests exactly. So a latency target is checked from the bucket it sits
//!   on, never from an interpolated quantile. chainpulse's buckets have edges
//!   on the default targets (1, 2, 3 s; `export::names::LATENCY_BUCKETS`); a
//!   target between edges is checked against both bracketing edges and is
//!   "undetermined" when they disagree.
//! * **Quantiles** come from Prometheus' `histogram_quantile`, which
//!   interpolates linearly inside a bucket; the report gives the bucket the
//!   quantile lies in, which is all the data can say.

use super::promql::{Client, Sample};
use super::ReportArgs;
use crate::config::SloConfig;
use crate::export::names::{
    CACHE_LOOKUPS, LLM_COST_TOTAL, LLM_TOKENS_TOTAL, REQUESTS_TOTAL, REQUEST_COST,
    REQUEST_DURATION, SLO_TARGET,
};
use anyhow::{bail, Context};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// What the report is computed over: label matchers and a window.
pub struct Scope {
    /// Matchers without braces: `namespace="x",service="y"` (may be empty).
    matchers: String,
    /// `None` for `all`, else a PromQL duration such as `5m`.
    range: Option<String>,
}

impl Scope {
    pub fn new(
        selector: Option<&str>,
        window: &str,
        service: Option<&str>,
        chain: Option<&str>,
    ) -> anyhow::Result<Scope> {
        let mut parts = Vec::new();
        if let Some(s) = selector.map(str::trim).filter(|s| !s.is_empty()) {
            let inner = s
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .with_context(|| {
                    format!("--selector must be label matchers in braces, like '{{namespace=\"prod\"}}', got {s:?}")
                })?
                .trim();
            if !inner.is_empty() {
                parts.push(inner.to_owned());
            }
        }
        let quote = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        if let Some(s) = service {
            parts.push(format!("service=\"{}\"", quote(s)));
        }
        if let Some(c) = chain {
            parts.push(format!("chain=\"{}\"", quote(c)));
        }
        let range = match window {
            "all" => None,
            w if is_duration(w) => Some(w.to_owned()),
            w => bail!(
                "--window must be \"all\" or a Prometheus duration (30s, 5m, 1h, 1d, 1h30m), got {w:?}"
            ),
        };
        Ok(Scope {
            matchers: parts.join(","),
            range,
        })
    }

    /// `name{matchers,extra}`.
    fn select(&self, name: &str, extra: &str) -> String {
        let m: Vec<&str> = [self.matchers.as_str(), extra]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        format!("{name}{{{}}}", m.join(","))
    }

    /// The window's increase of a counter (or bucket) series, per series:
    /// the current value for `all`, else the raw difference to the value
    /// one window ago; series born (or reset) inside the window count from
    /// zero.
    fn delta(&self, name: &str, extra: &str) -> String {
        let x = self.select(name, extra);
        match &self.range {
            None => x,
            Some(w) => format!("(({x} - {x} offset {w}) >= 0 or {x})"),
        }
    }
}

/// `30s`, `5m`, `1h30m`: digits followed by a unit, repeated.
fn is_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// A quantile from `histogram_quantile` and the bucket it lies in.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Quantile {
    pub value: f64,
    /// The quantile lies in `(bucket_lower, bucket_upper]`; `bucket_upper`
    /// is `None` for the `+Inf` bucket (then `value` is the highest finite
    /// edge, a lower bound).
    pub bucket_lower: f64,
    pub bucket_upper: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetQuantiles {
    pub p50: Option<Quantile>,
    pub p95: Option<Quantile>,
    pub p99: Option<Quantile>,
}

/// One KPI against its target.
#[derive(Debug, Clone, Serialize)]
pub struct FleetCheck {
    pub kpi: &'static str,
    pub target: f64,
    pub comparison: &'static str,
    /// `chainpulse_slo_target` as the sidecars export it, or `default` when
    /// no sidecar exported one for this chain.
    pub target_source: &'static str,
    /// For latency: the fraction of requests at or under the target.
    pub value: Option<f64>,
    /// `pass`, `fail`, `no_data`, or `undetermined` (a latency target
    /// between bucket edges whose two edges disagree).
    pub status: &'static str,
    /// How the verdict was reached, in words.
    pub basis: String,
}

/// The KPIs of one (service, chain) across every replica.
#[derive(Debug, Clone, Serialize)]
pub struct FleetChain {
    pub service: String,
    pub chain: String,
    /// Distinct scrape targets (`instance`) reporting this chain.
    pub replicas: u64,
    pub requests: u64,
    pub errors: u64,
    /// `sum(rate(...[window]))`; none for `all`.
    pub throughput_rps: Option<f64>,
    pub latency_seconds: FleetQuantiles,
    pub error_rate: Option<f64>,
    pub availability: Option<f64>,
    pub tokens_input: u64,
    pub tokens_output: u64,
    pub cost_usd: f64,
    /// Cost per fully priced request (the request cost histogram's sum /
    /// count; requests with an unpriced call are not in it).
    pub cost_per_request_usd: Option<f64>,
    pub unpriced_requests: u64,
    /// Cache hits / cache lookups (per lookup; the KPI API counts requests).
    pub cache_hit_rate: Option<f64>,
    /// Counter resets in the window (replica restarts): counts are then a
    /// lower bound.
    pub counter_resets: u64,
    pub kpis: Vec<FleetCheck>,
    /// No KPI fails (undetermined ones do not count as met).
    pub targets_met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub prometheus: String,
    pub window: String,
    pub selector: String,
    /// Evaluation time, Unix seconds.
    pub time: f64,
    pub chains: Vec<FleetChain>,
}

type Key = (String, String);

fn key(s: &Sample) -> Key {
    (s.label("service").to_owned(), s.label("chain").to_owned())
}

/// Sums a query's samples per (service, chain) and the value of `by`.
fn by_chain(samples: &[Sample], by: Option<&str>) -> BTreeMap<(Key, String), f64> {
    let mut out = BTreeMap::new();
    for s in samples {
        let sub = by.map_or(String::new(), |b| s.label(b).to_owned());
        *out.entry((key(s), sub)).or_insert(0.0) += s.value;
    }
    out
}

/// Counts from Prometheus are integers stored as floats.
fn count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

pub async fn run(args: &ReportArgs, url: &str) -> anyhow::Result<()> {
    let auth =
        super::promql::Auth::from_args(args.bearer_token.as_deref(), args.basic_auth.as_deref())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_secs_f64();
    let client = Client::new(url, auth, now)?;
    let scope = Scope::new(
        args.selector.as_deref(),
        &args.window,
        args.service.as_deref(),
        args.chain.as_deref(),
    )?;
    let report = collect(&client, &scope, url, &args.window, args.selector.as_deref()).await?;
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&report)?),
        _ => print!("{}", render(&report)?),
    }
    Ok(())
}

/// Queries Prometheus and builds the report.
pub async fn collect(
    client: &Client,
    scope: &Scope,
    url: &str,
    window: &str,
    selector: Option<&str>,
) -> anyhow::Result<FleetReport> {
    let sc = "service, chain";
    let q_requests = format!(
        "sum by ({sc}, status) ({})",
        scope.delta(REQUESTS_TOTAL, "")
    );
    let q_tokens = format!(
        "sum by ({sc}, type) ({})",
        scope.delta(LLM_TOKENS_TOTAL, "type=~\"input|output\"")
    );
    let q_cost = format!("sum by ({sc}) ({})", scope.delta(LLM_COST_TOTAL, ""));
    let q_rcost_sum = format!(
        "sum by ({sc}) ({})",
        scope.delta(&format!("{REQUEST_COST}_sum"), "")
    );
    let q_rcost_count = format!(
        "sum by ({sc}) ({})",
        scope.delta(&format!("{REQUEST_COST}_count"), "")
    );
    let q_cache = format!("sum by ({sc}, result) ({})", scope.delta(CACHE_LOOKUPS, ""));
    let q_buckets = format!(
        "sum by ({sc}, le) ({})",
        scope.delta(&format!("{REQUEST_DURATION}_bucket"), "")
    );
    let q_targets = format!("max by ({sc}, kpi) ({})", scope.select(SLO_TARGET, ""));
    let q_replicas = format!(
        "count by ({sc}) (count by ({sc}, instance) ({}))",
        scope.select(&format!("{REQUEST_DURATION}_count"), "")
    );

    let requests = by_chain(&client.query(&q_requests).await?, Some("status"));
    let tokens = by_chain(&client.query(&q_tokens).await?, Some("type"));
    let cost = by_chain(&client.query(&q_cost).await?, None);
    let rcost_sum = by_chain(&client.query(&q_rcost_sum).await?, None);
    let rcost_count = by_chain(&client.query(&q_rcost_count).await?, None);
    let cache = by_chain(&client.query(&q_cache).await?, Some("result"));
    let targets = by_chain(&client.query(&q_targets).await?, Some("kpi"));
    let replicas = by_chain(&client.query(&q_replicas).await?, None);
    let mut buckets: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
    for s in client.query(&q_buckets).await? {
        let le = match s.label("le") {
            "+Inf" | "Inf" => f64::INFINITY,
            le => le
                .parse()
                .with_context(|| format!("bucket with a bad le label {le:?}"))?,
        };
        buckets.entry(key(&s)).or_default().push((le, s.value));
    }
    for b in buckets.values_mut() {
        b.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut quantiles: BTreeMap<(Key, u32), f64> = BTreeMap::new();
    for q in [50u32, 95, 99] {
        let promql = format!("histogram_quantile({}, {q_buckets})", f64::from(q) / 100.0);
        for s in client.query(&promql).await? {
            quantiles.insert((key(&s), q), s.value);
        }
    }
    let (throughput, resets) = match &scope.range {
        None => (BTreeMap::new(), BTreeMap::new()),
        Some(w) => {
            let sel = scope.select(REQUESTS_TOTAL, "");
            let t = by_chain(
                &client
                    .query(&format!("sum by ({sc}) (rate({sel}[{w}]))"))
                    .await?,
                None,
            );
            let r = by_chain(
                &client
                    .query(&format!("sum by ({sc}) (resets({sel}[{w}]))"))
                    .await?,
                None,
            );
            (t, r)
        }
    };

    let mut chains: Vec<Key> = requests.keys().map(|(k, _)| k.clone()).collect();
    chains.dedup();
    let defaults = SloConfig::default().targets_for("", "");
    let mut out = Vec::new();
    for k in chains {
        let get = |m: &BTreeMap<(Key, String), f64>, sub: &str| {
            m.get(&(k.clone(), sub.to_owned())).copied()
        };
        let ok = count(get(&requests, "ok").unwrap_or(0.0));
        let errors = count(get(&requests, "error").unwrap_or(0.0));
        let n = ok + errors;
        let error_rate = (n > 0).then(|| errors as f64 / n as f64);
        let availability = error_rate.map(|e| 1.0 - e);
        let priced = count(get(&rcost_count, "").unwrap_or(0.0));
        let hits = get(&cache, "hit").unwrap_or(0.0);
        let lookups = hits + get(&cache, "miss").unwrap_or(0.0);
        let b = buckets.get(&k).cloned().unwrap_or_default();
        let quantile = |q: u32| {
            let value = *quantiles.get(&(k.clone(), q))?;
            if !value.is_finite() {
                return None;
            }
            let (bucket_lower, bucket_upper) = bucket_of(&b, f64::from(q) / 100.0)?;
            Some(Quantile {
                value,
                bucket_lower,
                bucket_upper,
            })
        };
        let latency = FleetQuantiles {
            p50: quantile(50),
            p95: quantile(95),
            p99: quantile(99),
        };
        let throughput_rps = get(&throughput, "");
        let target = |kpi: &str, default: Option<f64>| match get(&targets, kpi) {
            Some(v) => Some((v, "chainpulse_slo_target")),
            None => default.map(|d| (d, "default")),
        };
        let mut kpis = Vec::new();
        for (kpi, q, default) in [
            ("latency_p50_seconds", 50, defaults.latency_p50_seconds),
            ("latency_p95_seconds", 95, defaults.latency_p95_seconds),
            ("latency_p99_seconds", 99, defaults.latency_p99_seconds),
        ] {
            if let Some((t, source)) = target(kpi, Some(default)) {
                kpis.push(latency_check(kpi, q, t, source, &b));
            }
        }
        let plain =
            |kpi, value: Option<f64>, (t, source): (f64, &'static str), cmp: &'static str| {
                let status = match value {
                    None => "no_data",
                    Some(v) if (cmp == "<=" && v <= t) || (cmp == ">=" && v >= t) => "pass",
                    Some(_) => "fail",
                };
                FleetCheck {
                    kpi,
                    target: t,
                    comparison: cmp,
                    target_source: source,
                    value,
                    status,
                    basis: match value {
                        None => "no requests".to_owned(),
                        Some(_) => "exact counter sums".to_owned(),
                    },
                }
            };
        if let Some(t) = target("error_rate", Some(defaults.error_rate)) {
            kpis.push(plain("error_rate", error_rate, t, "<="));
        }
        if let Some(t) = target("availability", Some(defaults.availability)) {
            kpis.push(plain("availability", availability, t, ">="));
        }
        // No default floor: only where a sidecar exports one (> 0).
        if let Some(t) = target("throughput_rps", None).filter(|t| t.0 > 0.0) {
            let mut c = plain("throughput_rps", throughput_rps, t, ">=");
            c.basis = match &scope.range {
                Some(w) => format!("sum of rate() over {w}"),
                None => "no rate for window all: use a window such as 5m".to_owned(),
            };
            kpis.push(c);
        }
        let targets_met = kpis
            .iter()
            .all(|c| c.status == "pass" || c.status == "no_data");
        out.push(FleetChain {
            service: k.0.clone(),
            chain: k.1.clone(),
            replicas: count(get(&replicas, "").unwrap_or(0.0)),
            requests: n,
            errors,
            throughput_rps,
            latency_seconds: latency,
            error_rate,
            availability,
            tokens_input: count(get(&tokens, "input").unwrap_or(0.0)),
            tokens_output: count(get(&tokens, "output").unwrap_or(0.0)),
            cost_usd: get(&cost, "").unwrap_or(0.0),
            cost_per_request_usd: (priced > 0)
                .then(|| get(&rcost_sum, "").unwrap_or(0.0) / priced as f64),
            unpriced_requests: n.saturating_sub(priced),
            cache_hit_rate: (lookups > 0.0).then(|| hits / lookups),
            counter_resets: count(get(&resets, "").unwrap_or(0.0)),
            kpis,
            targets_met,
        });
    }
    Ok(FleetReport {
        prometheus: url.to_owned(),
        window: window.to_owned(),
        selector: selector.unwrap_or("").to_owned(),
        time: client.time,
        chains: out,
    })
}

/// The bucket `(lower, upper]` holding quantile `q` of cumulative buckets
/// sorted by edge, found as Prometheus' `histogram_quantile` finds it (the
/// first bucket whose count reaches the rank). `None` without observations.
pub fn bucket_of(buckets: &[(f64, f64)], q: f64) -> Option<(f64, Option<f64>)> {
    let total = buckets.last().filter(|(le, _)| le.is_infinite())?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    for &(le, c) in buckets {
        if c >= rank {
            return Some((lower, le.is_finite().then_some(le)));
        }
        lower = le;
    }
    None
}

/// Checks "the `q`th percentile ≤ `t`" as "at least `q` % of requests took
/// ≤ `t`", read from the bucket whose edge is `t`, or from the two edges
/// around it.
pub fn latency_check(
    kpi: &'static str,
    q: u32,
    t: f64,
    source: &'static str,
    buckets: &[(f64, f64)],
) -> FleetCheck {
    let mut check = FleetCheck {
        kpi,
        target: t,
        comparison: "<=",
        target_source: source,
        value: None,
        status: "no_data",
        basis: "no requests".to_owned(),
    };
    let Some(total) = buckets
        .last()
        .filter(|(le, _)| le.is_infinite())
        .map(|b| b.1)
        .filter(|&n| n > 0.0)
    else {
        return check;
    };
    // At least q % of `total` requests: compared in integers, so 19 of 20
    // is exactly 95 % whatever 0.95 rounds to in binary.
    let meets = |within: f64| count(within) * 100 >= u64::from(q) * count(total);
    let pct = |within: f64| within / total * 100.0;
    let on_edge = buckets
        .iter()
        .find(|(le, _)| (le - t).abs() <= 1e-9 * t.abs().max(1.0));
    if let Some(&(le, within)) = on_edge {
        check.value = Some(within / total);
        check.status = if meets(within) { "pass" } else { "fail" };
        check.basis = format!(
            "{:.3} % of {} requests ≤ {} s (bucket le=\"{le}\"), need ≥ {q} %",
            pct(within),
            count(total),
            le
        );
        return check;
    }
    let below = buckets.iter().rev().find(|(le, _)| *le < t);
    let above = buckets.iter().find(|(le, _)| *le > t);
    let (lo_edge, lo) = below.map_or((0.0, 0.0), |b| *b);
    let (hi_edge, hi) = above.map_or((f64::INFINITY, total), |b| *b);
    check.status = if meets(lo) {
        check.value = Some(lo / total);
        "pass"
    } else if !meets(hi) {
        check.value = Some(hi / total);
        "fail"
    } else {
        "undetermined"
    };
    check.basis = format!(
        "target {t} s is not a bucket edge: {:.3} % ≤ {lo_edge} s, {:.3} % ≤ {hi_edge} s, need ≥ {q} %",
        pct(lo),
        pct(hi)
    );
    check
}

/// The text table.
pub fn render(r: &FleetReport) -> anyhow::Result<String> {
    let mut out = String::new();
    let sel = if r.selector.is_empty() {
        "all series"
    } else {
        &r.selector
    };
    writeln!(
        out,
        "fleet report from {} (window {}, {sel})",
        r.prometheus, r.window
    )?;
    if r.chains.is_empty() {
        writeln!(out, "no requests in window {}", r.window)?;
        return Ok(out);
    }
    let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.3}%", v * 100.0));
    let quant = |q: &Option<Quantile>| match q {
        None => "-".to_owned(),
        Some(q) => match q.bucket_upper {
            Some(u) => format!("{:.3}s (in {}–{} s)", q.value, q.bucket_lower, u),
            None => format!("> {} s (+Inf bucket)", q.bucket_lower),
        },
    };
    for c in &r.chains {
        writeln!(
            out,
            "\n{} / {}  ({} replica{})",
            c.service,
            c.chain,
            c.replicas,
            if c.replicas == 1 { "" } else { "s" }
        )?;
        writeln!(
            out,
            "  requests {}  errors {}  throughput {}",
            c.requests,
            c.errors,
            c.throughput_rps
                .map_or("- (window all)".into(), |v| format!("{v:.2} req/s"))
        )?;
        let l = &c.latency_seconds;
        writeln!(
            out,
            "  latency  P50 {}  P95 {}  P99 {}",
            quant(&l.p50),
            quant(&l.p95),
            quant(&l.p99)
        )?;
        writeln!(
            out,
            "  error rate {}  availability {}  cache hit rate {} (per lookup)",
            pct(c.error_rate),
            pct(c.availability),
            pct(c.cache_hit_rate)
        )?;
        writeln!(
            out,
            "  tokens in {} out {}  cost ${:.6}  per request {}  unpriced requests {}",
            c.tokens_input,
            c.tokens_output,
            c.cost_usd,
            c.cost_per_request_usd
                .map_or("-".into(), |v| format!("${v:.6}")),
            c.unpriced_requests
        )?;
        if c.counter_resets > 0 {
            writeln!(
                out,
                "  warning: {} counter reset(s) in the window (a replica restarted): counts are a lower bound",
                c.counter_resets
            )?;
        }
        for k in &c.kpis {
            let status = match k.status {
                "pass" => "met",
                "fail" => "NOT MET",
                "undetermined" => "UNDETERMINED",
                _ => "no data",
            };
            let default = if k.target_source == "default" {
                " (default)"
            } else {
                ""
            };
            writeln!(
                out,
                "  {:<20} {} {}{default}  {status:<12} {}",
                k.kpi, k.comparison, k.target, k.basis
            )?;
        }
        writeln!(
            out,
            "  targets {}",
            if c.targets_met { "met" } else { "NOT met" }
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: &[(f64, f64)]) -> Vec<(f64, f64)> {
        v.to_vec()
    }

    #[test]
    fn durations_and_scopes() {
        for ok in ["5m", "30s", "1h30m", "2d", "500ms"] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in ["", "5", "m", "5x", "-5m", "5m "] {
            assert!(!is_duration(bad), "{bad}");
        }
        let s = Scope::new(Some(r#"{namespace="prod"}"#), "5m", Some("a\"b"), None).expect("scope");
        assert_eq!(
            s.select("x", "le=\"1\""),
            r#"x{namespace="prod",service="a\"b",le="1"}"#
        );
        assert_eq!(
            s.delta("x", ""),
            r#"((x{namespace="prod",service="a\"b"} - x{namespace="prod",service="a\"b"} offset 5m) >= 0 or x{namespace="prod",service="a\"b"})"#
        );
        let all = Scope::new(None, "all", None, None).expect("scope");
        assert_eq!(all.delta("x", ""), "x{}");
        assert!(Scope::new(Some("namespace=prod"), "5m", None, None).is_err());
        assert!(Scope::new(None, "five minutes", None, None).is_err());
    }

    #[test]
    fn quantile_buckets_as_prometheus_finds_them() {
        let h = b(&[(1.0, 10.0), (2.0, 18.0), (3.0, 20.0), (f64::INFINITY, 20.0)]);
        assert_eq!(bucket_of(&h, 0.5), Some((0.0, Some(1.0))));
        assert_eq!(bucket_of(&h, 0.9), Some((1.0, Some(2.0))));
        assert_eq!(bucket_of(&h, 0.95), Some((2.0, Some(3.0))));
        let tail = b(&[(1.0, 1.0), (f64::INFINITY, 4.0)]);
        assert_eq!(bucket_of(&tail, 0.99), Some((1.0, None)));
        assert_eq!(bucket_of(&b(&[(f64::INFINITY, 0.0)]), 0.5), None);
    }

    #[test]
    fn latency_targets_read_at_their_edge() {
        // 19 of 20 requests ≤ 2 s: exactly 95 %, met; 18 of 20 is not.
        let met = b(&[(1.0, 10.0), (2.0, 19.0), (3.0, 20.0), (f64::INFINITY, 20.0)]);
        let c = latency_check("latency_p95_seconds", 95, 2.0, "default", &met);
        assert_eq!((c.status, c.value), ("pass", Some(0.95)));
        assert!(c.basis.contains("le=\"2\""), "{}", c.basis);
        let not = b(&[(1.0, 10.0), (2.0, 18.0), (3.0, 20.0), (f64::INFINITY, 20.0)]);
        assert_eq!(latency_check("p", 95, 2.0, "default", &not).status, "fail");
        // Between edges: decided when both edges agree, else undetermined.
        assert_eq!(latency_check("p", 95, 2.5, "d", &met).status, "pass");
        let t = b(&[(2.0, 10.0), (3.0, 20.0), (f64::INFINITY, 20.0)]);
        let u = latency_check("p", 95, 2.5, "d", &t);
        assert_eq!(u.status, "undetermined");
        assert!(u.basis.contains("not a bucket edge"), "{}", u.basis);
        let f = b(&[(2.0, 10.0), (3.0, 18.0), (f64::INFINITY, 20.0)]);
        assert_eq!(latency_check("p", 95, 2.5, "d", &f).status, "fail");
        assert_eq!(
            latency_check("p", 95, 2.0, "d", &b(&[(f64::INFINITY, 0.0)])).status,
            "no_data"
        );
    }
}
