//! The production KPIs per (service, chain), over sliding windows, against
//! their SLO targets; and the top spenders by user, session, chain and model.
//!
//! Memory is bounded twice: at most `kpi.max_chains` (service, chain) pairs
//! are tracked (later ones fold into one `__overflow__` entry), and each
//! top-spenders sketch keeps `kpi.top_capacity` keys (Space-Saving: the
//! heaviest keys are always kept, with a stated error bound).

use super::recent::{RecentBy, RecentRequest, RecentRequests};
use super::topk::{HeavyHitter, SpaceSaving};
pub use super::window::LateUsage;
use super::window::{Sample, Window, WindowSnapshot, WindowedStats};
use crate::config::{Config, SloConfig, SloTargets};
use crate::export::names::{
    BUDGET_USD, CARDINALITY_LIMIT, CARDINALITY_OVERFLOW, CARDINALITY_SERIES, OVERFLOW_LABEL,
    SLO_TARGET,
};
use crate::export::Registry;
use crate::links::TraceLinks;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// One finished request, as the KPI windows see it.
#[derive(Debug, Clone)]
pub struct RequestRecord<'a> {
    pub service: &'a str,
    pub chain: &'a str,
    pub latency_s: f64,
    pub error: bool,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// `None` when one of its LLM calls could not be priced.
    pub cost_usd: Option<f64>,
    /// The cost of its priced calls when `cost_usd` is `None`.
    pub partial_cost_usd: f64,
    pub cache_hit: Option<bool>,
    pub user: Option<&'a str>,
    pub session: Option<&'a str>,
    /// The request's trace and root span, for the recent lists.
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub ended_at_unix_ms: u64,
    pub error_type: Option<&'a str>,
}

/// Dimensions of the top-spenders API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopBy {
    User,
    Session,
    Chain,
    Model,
}

impl TopBy {
    pub fn parse(s: &str) -> Result<TopBy, String> {
        match s {
            "user" => Ok(TopBy::User),
            "session" => Ok(TopBy::Session),
            "chain" => Ok(TopBy::Chain),
            "model" => Ok(TopBy::Model),
            other => Err(format!(
                "by={other:?} is not one of user, session, chain, model"
            )),
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopMetric {
    Cost,
    Requests,
    Tokens,
}

impl TopMetric {
    pub fn parse(s: &str) -> Result<TopMetric, String> {
        match s {
            "cost" => Ok(TopMetric::Cost),
            "requests" => Ok(TopMetric::Requests),
            "tokens" => Ok(TopMetric::Tokens),
            other => Err(format!(
                "metric={other:?} is not one of cost, requests, tokens"
            )),
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

struct ChainKpi {
    stats: WindowedStats,
    targets: SloTargets,
    recent: RecentRequests,
}

pub struct KpiTracker {
    epoch: Instant,
    epoch_secs: u64,
    /// hashbrown for lookups by `(&str, &str)` ([`ChainRef`]): the hit path
    /// of every recorded request allocates nothing.
    chains: hashbrown::HashMap<(Arc<str>, Arc<str>), ChainKpi, foldhash::fast::RandomState>,
    overflow: Option<ChainKpi>,
    max_chains: usize,
    slo: SloConfig,
    registry: Arc<Registry>,
    /// [by][metric]
    top: Vec<Vec<SpaceSaving>>,
    recent_per_list: usize,
    links: Arc<TraceLinks>,
    /// Label-value bytes of the tracked names, and their cap (the
    /// cardinality guard's `limits.max_series_bytes_per_family`).
    name_bytes: usize,
    max_name_bytes: usize,
    chains_gauge: metrics::Gauge,
    overflowed: metrics::Counter,
}

/// The `family` label of the KPI tracker's cardinality metrics.
pub const KPI_FAMILY: &str = "kpi_chains";

/// A borrowed `(service, chain)` key: hashes and compares like the owned
/// `(Arc<str>, Arc<str>)` one (a tuple hashes its fields in order).
#[derive(Hash)]
struct ChainRef<'a>(&'a str, &'a str);

impl hashbrown::Equivalent<(Arc<str>, Arc<str>)> for ChainRef<'_> {
    fn equivalent(&self, key: &(Arc<str>, Arc<str>)) -> bool {
        *key.0 == *self.0 && *key.1 == *self.1
    }
}

impl KpiTracker {
    pub fn new(config: &Config, registry: Arc<Registry>) -> Self {
        for b in &config.budgets {
            let (scope, name) = b.scope();
            registry
                .gauge(
                    BUDGET_USD,
                    &[
                        ("window", b.window.as_str()),
                        ("scope", scope),
                        ("name", name),
                    ],
                )
                .set(b.usd);
        }
        let cap = config.kpi.top_capacity;
        registry
            .gauge(CARDINALITY_LIMIT, &[("family", KPI_FAMILY)])
            .set(config.kpi.max_chains as f64);
        KpiTracker {
            name_bytes: 0,
            max_name_bytes: registry.label_limits().max_family_bytes,
            chains_gauge: registry.gauge(CARDINALITY_SERIES, &[("family", KPI_FAMILY)]),
            overflowed: registry.counter(CARDINALITY_OVERFLOW, &[("family", KPI_FAMILY)]),
            epoch: Instant::now(),
            epoch_secs: 0,
            chains: hashbrown::HashMap::default(),
            overflow: None,
            max_chains: config.kpi.max_chains,
            slo: config.slo.clone(),
            registry,
            top: (0..4)
                .map(|_| (0..3).map(|_| SpaceSaving::new(cap)).collect())
                .collect(),
            recent_per_list: config.kpi.recent_per_list,
            // Checked when the config loaded (`Config::validate`).
            links: Arc::new(config.links.build().unwrap_or_default()),
        }
    }

    /// Seconds since the tracker started (the windows' clock).
    pub fn now_secs(&self) -> u64 {
        self.epoch_secs + self.epoch.elapsed().as_secs()
    }

    pub fn record_request(&mut self, r: &RequestRecord<'_>) {
        let now = self.now_secs();
        let sample = Sample {
            latency_s: r.latency_s,
            error: r.error,
            tokens_in: r.tokens_in,
            tokens_out: r.tokens_out,
            cost_usd: r.cost_usd,
            partial_cost_usd: r.partial_cost_usd,
            cache_hit: r.cache_hit,
        };
        let entry = self.entry(r.service, r.chain, now);
        entry.stats.record(now, sample);
        entry.recent.record(RecentRequest {
            trace_id: r.trace_id,
            span_id: r.span_id,
            ended_at_unix_ms: r.ended_at_unix_ms,
            duration_seconds: r.latency_s,
            cost_usd: r.cost_usd,
            error_type: r.error_type.map(Arc::from),
            error: r.error,
            seen_secs: now,
        });
        let tokens = (r.tokens_in + r.tokens_out) as f64;
        let cost = r.cost_usd.unwrap_or(0.0);
        for (by, key) in [
            (TopBy::User, r.user),
            (TopBy::Session, r.session),
            (TopBy::Chain, Some(r.chain)),
        ] {
            if let Some(key) = key.filter(|k| !k.is_empty()) {
                self.add_top(by, key, 1.0, tokens, cost);
            }
        }
    }

    /// Tokens and cost of runs that arrived after their request was counted:
    /// they are in the Prometheus counters, so they are in the chain's KPIs.
    pub fn record_late_usage(&mut self, service: &str, chain: &str, usage: LateUsage) {
        let now = self.now_secs();
        self.entry(service, chain, now).stats.add_usage(now, usage);
    }

    /// One LLM call, for the top spenders by model.
    pub fn record_llm_call(&mut self, model: &str, tokens: u64, cost_usd: Option<f64>) {
        self.add_top(
            TopBy::Model,
            model,
            1.0,
            tokens as f64,
            cost_usd.unwrap_or(0.0),
        );
    }

    fn add_top(&mut self, by: TopBy, key: &str, requests: f64, tokens: f64, cost: f64) {
        let row = &mut self.top[by.index()];
        row[TopMetric::Requests.index()].add(key, requests);
        if tokens > 0.0 {
            row[TopMetric::Tokens.index()].add(key, tokens);
        }
        if cost > 0.0 {
            row[TopMetric::Cost.index()].add(key, cost);
        }
    }

    /// The chain's entry; past `kpi.max_chains` names, or once the names'
    /// bytes reach `limits.max_series_bytes_per_family`, the `__overflow__`
    /// one — the cardinality guard's rule (`series::Family`), on the names
    /// as `/metrics` shows them (capped by `limits.max_label_value_bytes`).
    fn entry(&mut self, service: &str, chain: &str, now: u64) -> &mut ChainKpi {
        let service = self.registry.cap_label(service);
        let chain = self.registry.cap_label(chain);
        let (service, chain) = (&*service, &*chain);
        if self.chains.contains_key(&ChainRef(service, chain)) {
            return self
                .chains
                .get_mut(&ChainRef(service, chain))
                .expect("checked");
        }
        let key = (Arc::<str>::from(service), Arc::<str>::from(chain));
        let bytes = service.len() + chain.len();
        if self.chains.len() >= self.max_chains || self.name_bytes + bytes > self.max_name_bytes {
            self.overflowed.increment(1);
            let targets = self.slo.targets_for(OVERFLOW_LABEL, OVERFLOW_LABEL);
            let n = self.recent_per_list;
            return self.overflow.get_or_insert_with(|| ChainKpi {
                stats: WindowedStats::new(now),
                targets,
                recent: RecentRequests::new(n),
            });
        }
        let targets = self.slo.targets_for(service, chain);
        for (kpi, v, _) in target_list(&targets) {
            let Some(v) = v else { continue };
            self.registry
                .gauge(
                    SLO_TARGET,
                    &[("kpi", kpi), ("service", service), ("chain", chain)],
                )
                .set(v);
        }
        let n = self.recent_per_list;
        self.name_bytes += bytes;
        self.chains_gauge.set((self.chains.len() + 1) as f64);
        self.chains.entry(key).or_insert_with(|| ChainKpi {
            stats: WindowedStats::new(now),
            targets,
            recent: RecentRequests::new(n),
        })
    }

    /// KPIs per chain over `window`, optionally filtered.
    pub fn kpis(
        &self,
        window: Window,
        service: Option<&str>,
        chain: Option<&str>,
    ) -> Vec<ChainKpis> {
        self.snapshots(window, service, chain).build()
    }

    /// The windows' aggregates per chain (the part that needs this
    /// tracker, so the caller's lock); [`KpiSnapshots::build`] turns them
    /// into KPIs (quantiles, ratios, target checks) after the lock is gone.
    pub fn snapshots(
        &self,
        window: Window,
        service: Option<&str>,
        chain: Option<&str>,
    ) -> KpiSnapshots {
        let now = self.now_secs();
        let since = since_secs(window, now);
        let recent = |k: &ChainKpi| RecentSnapshot {
            slowest: k.recent.list(RecentBy::Slowest, since, now),
            costliest: k.recent.list(RecentBy::Costliest, since, now),
            failed: k.recent.list(RecentBy::Failed, since, now),
        };
        let mut chains: Vec<ChainSnapshot> = self
            .chains
            .iter()
            .filter(|((s, c), _)| {
                service.is_none_or(|f| f == &**s) && chain.is_none_or(|f| f == &**c)
            })
            .map(|((s, c), k)| ChainSnapshot {
                service: s.clone(),
                chain: c.clone(),
                window: k.stats.snapshot(window, now),
                targets: k.targets,
                recent: recent(k),
            })
            .collect();
        if service.is_none() && chain.is_none() {
            if let Some(k) = &self.overflow {
                let o: Arc<str> = Arc::from(OVERFLOW_LABEL);
                chains.push(ChainSnapshot {
                    service: o.clone(),
                    chain: o,
                    window: k.stats.snapshot(window, now),
                    targets: k.targets,
                    recent: recent(k),
                });
            }
        }
        KpiSnapshots {
            chains,
            links: self.links.clone(),
        }
    }

    /// One recent list over the chains that match (all when both filters
    /// are `None`; `__overflow__` names the folded chains), merged in the
    /// list's order, at most `kpi.recent_per_list`, with trace links.
    pub fn recent(
        &self,
        by: RecentBy,
        window: Window,
        service: Option<&str>,
        chain: Option<&str>,
    ) -> Vec<RecentRequestView> {
        let now = self.now_secs();
        let since = since_secs(window, now);
        let overflow: Arc<str> = Arc::from(OVERFLOW_LABEL);
        let mut merged: Vec<(&Arc<str>, &Arc<str>, RecentRequest)> = Vec::new();
        let matching = self
            .chains
            .iter()
            .map(|((s, c), k)| (s, c, k))
            .chain(self.overflow.iter().map(|k| (&overflow, &overflow, k)))
            .filter(|(s, c, _)| {
                service.is_none_or(|f| f == &***s) && chain.is_none_or(|f| f == &***c)
            });
        for (s, c, k) in matching {
            merged.extend(k.recent.list(by, since, now).into_iter().map(|r| (s, c, r)));
        }
        match by {
            RecentBy::Slowest => {
                merged.sort_by(|a, b| b.2.duration_seconds.total_cmp(&a.2.duration_seconds))
            }
            RecentBy::Costliest => merged.sort_by(|a, b| {
                b.2.cost_usd
                    .unwrap_or(0.0)
                    .total_cmp(&a.2.cost_usd.unwrap_or(0.0))
            }),
            RecentBy::Failed => merged.sort_by(|a, b| {
                (b.2.seen_secs, b.2.ended_at_unix_ms).cmp(&(a.2.seen_secs, a.2.ended_at_unix_ms))
            }),
        }
        merged
            .iter()
            .take(self.recent_per_list)
            .map(|(s, c, r)| RecentRequestView::new(s, c, r, &self.links))
            .collect()
    }

    /// The trace links (for `chainpulse report`).
    pub fn links(&self) -> &TraceLinks {
        &self.links
    }

    /// Each tracked (service, chain) with its windows and targets, the
    /// overflow entry last (read-only views: `super::history`).
    pub fn chains(&self) -> impl Iterator<Item = (&str, &str, &WindowedStats, &SloTargets)> {
        let overflow = self
            .overflow
            .iter()
            .map(|k| (OVERFLOW_LABEL, OVERFLOW_LABEL, &k.stats, &k.targets));
        self.chains
            .iter()
            .map(|((s, c), k)| (&**s, &**c, &k.stats, &k.targets))
            .chain(overflow)
    }

    pub fn top(&self, by: TopBy, metric: TopMetric, n: usize) -> TopList {
        let sketch = &self.top[by.index()][metric.index()];
        TopList {
            total: sketch.total(),
            capacity: sketch.capacity(),
            tracked: sketch.len(),
            // Space-Saving: every reported estimate over-counts by at most
            // the smallest kept counter.
            max_error: if sketch.len() >= sketch.capacity() {
                sketch.min_estimate()
            } else {
                0.0
            },
            entries: sketch.top(n),
        }
    }
}

/// The six KPIs: name (the `kpi` label), target, and how a value meets it.
/// One list for the `chainpulse_slo_target` gauges and the API's checks;
/// `ChainKpis::build` pairs it with the measured values in the same order.
/// A `None` target (the throughput floor, opt-in) is neither exported nor
/// checked: throughput is then reported without a verdict.
fn target_list(t: &SloTargets) -> [(&'static str, Option<f64>, &'static str); 6] {
    [
        ("latency_p50_seconds", Some(t.latency_p50_seconds), "<="),
        ("latency_p95_seconds", Some(t.latency_p95_seconds), "<="),
        ("latency_p99_seconds", Some(t.latency_p99_seconds), "<="),
        ("error_rate", Some(t.error_rate), "<="),
        ("availability", Some(t.availability), ">="),
        ("throughput_rps", t.min_throughput_rps, ">="),
    ]
}

/// The tracker-clock second a window starts at (`None`: since start).
fn since_secs(window: Window, now: u64) -> Option<u64> {
    match window {
        Window::SinceStart => None,
        Window::Last(d) => Some(now.saturating_sub(d.as_secs().clamp(1, 3600))),
    }
}

struct ChainSnapshot {
    service: Arc<str>,
    chain: Arc<str>,
    window: WindowSnapshot,
    targets: SloTargets,
    recent: RecentSnapshot,
}

struct RecentSnapshot {
    slowest: Vec<RecentRequest>,
    costliest: Vec<RecentRequest>,
    failed: Vec<RecentRequest>,
}

/// Per-chain window aggregates taken under the aggregator lock.
pub struct KpiSnapshots {
    chains: Vec<ChainSnapshot>,
    links: Arc<TraceLinks>,
}

impl KpiSnapshots {
    pub fn build(self) -> Vec<ChainKpis> {
        let links = &self.links;
        let mut out: Vec<ChainKpis> = self
            .chains
            .iter()
            .map(|c| {
                let mut k = ChainKpis::build(&c.service, &c.chain, &c.window, &c.targets);
                let view = |l: &[RecentRequest]| {
                    l.iter()
                        .map(|r| RecentRequestView::new(&c.service, &c.chain, r, links))
                        .collect()
                };
                k.recent = RecentLists {
                    slowest: view(&c.recent.slowest),
                    costliest: view(&c.recent.costliest),
                    failed: view(&c.recent.failed),
                };
                k
            })
            .collect();
        out.sort_by(|a, b| (&a.service, &a.chain).cmp(&(&b.service, &b.chain)));
        out
    }
}

/// A heavy-hitters answer.
#[derive(Debug, Clone, Serialize)]
pub struct TopList {
    /// Sum of every weight seen (all keys, kept or not).
    pub total: f64,
    pub capacity: usize,
    pub tracked: usize,
    /// Upper bound of any estimate's over-count (0 while every key fits).
    pub max_error: f64,
    pub entries: Vec<HeavyHitter>,
}

/// One KPI against its target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KpiCheck {
    pub kpi: &'static str,
    pub value: Option<f64>,
    pub target: f64,
    /// `<=` or `>=`
    pub comparison: &'static str,
    /// `pass`, `fail`, or `no_data`.
    pub status: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyQuantiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// Everything the KPI API reports for one chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainKpis {
    pub service: String,
    pub chain: String,
    pub window: String,
    /// Seconds the window actually covers (less than its width just after
    /// start-up).
    pub covered_seconds: u64,
    pub requests: u64,
    pub errors: u64,
    pub throughput_rps: Option<f64>,
    pub latency_seconds: LatencyQuantiles,
    pub error_rate: Option<f64>,
    pub availability: Option<f64>,
    pub tokens_input: u64,
    pub tokens_output: u64,
    /// Cost of every priced call (what `chainpulse_llm_cost_usd_total` sums),
    /// including the priced calls of requests that also had unpriced ones.
    pub cost_usd: f64,
    /// Cost per fully priced request.
    pub cost_per_request_usd: Option<f64>,
    /// Requests with at least one unpriced LLM call (excluded from cost).
    pub unpriced_requests: u64,
    pub cache_hit_rate: Option<f64>,
    pub kpis: Vec<KpiCheck>,
    /// Every KPI with data passes.
    pub targets_met: bool,
    /// The slowest, costliest and latest failed requests of the window.
    pub recent: RecentLists,
}

/// The `recent` field of a chain's KPIs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecentLists {
    /// Slowest first.
    pub slowest: Vec<RecentRequestView>,
    /// Priced requests only, costliest first.
    pub costliest: Vec<RecentRequestView>,
    /// Newest first.
    pub failed: Vec<RecentRequestView>,
}

/// One recent request as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecentRequestView {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: the request's root span.
    pub span_id: String,
    pub service: String,
    pub chain: String,
    pub ended_at_unix_ms: u64,
    pub duration_seconds: f64,
    /// `null` when the request had an unpriced LLM call.
    pub cost_usd: Option<f64>,
    /// `null` for a success, or a failure without an exception class.
    pub error_type: Option<String>,
    /// `null` unless `[links]` is configured.
    pub trace_url: Option<String>,
}

impl RecentRequestView {
    fn new(service: &str, chain: &str, r: &RecentRequest, links: &TraceLinks) -> Self {
        let trace_id = hex::encode(r.trace_id);
        let span_id = hex::encode(r.span_id);
        RecentRequestView {
            trace_url: links.url(&trace_id, &span_id, service),
            trace_id,
            span_id,
            service: service.to_owned(),
            chain: chain.to_owned(),
            ended_at_unix_ms: r.ended_at_unix_ms,
            duration_seconds: r.duration_seconds,
            cost_usd: r.cost_usd,
            error_type: r.error_type.as_deref().map(str::to_owned),
        }
    }
}

impl ChainKpis {
    fn build(service: &str, chain: &str, snap: &WindowSnapshot, t: &SloTargets) -> ChainKpis {
        let s = &snap.stats;
        let q = |p: f64| s.latency.quantile(p);
        let error_rate = s.error_rate();
        let availability = error_rate.map(|e| 1.0 - e);
        let throughput = snap.requests_per_sec();
        let priced = s.requests.saturating_sub(s.unpriced_requests);
        let latency = LatencyQuantiles {
            p50: q(0.50),
            p95: q(0.95),
            p99: q(0.99),
        };
        let check = |kpi, value: Option<f64>, target, comparison| {
            let status = match value {
                None => "no_data",
                Some(v)
                    if (comparison == "<=" && v <= target)
                        || (comparison == ">=" && v >= target) =>
                {
                    "pass"
                }
                Some(_) => "fail",
            };
            KpiCheck {
                kpi,
                value,
                target,
                comparison,
                status,
            }
        };
        let values = [
            latency.p50,
            latency.p95,
            latency.p99,
            error_rate,
            availability,
            throughput,
        ];
        let kpis: Vec<KpiCheck> = target_list(t)
            .into_iter()
            .zip(values)
            .filter_map(|((kpi, target, comparison), value)| {
                Some(check(kpi, value, target?, comparison))
            })
            .collect();
        let targets_met = kpis.iter().all(|k| k.status != "fail");
        ChainKpis {
            service: service.to_owned(),
            chain: chain.to_owned(),
            window: snap.window.to_string(),
            covered_seconds: snap.covered_secs,
            requests: s.requests,
            errors: s.errors,
            throughput_rps: throughput,
            latency_seconds: latency,
            error_rate,
            availability,
            tokens_input: s.tokens_in,
            tokens_output: s.tokens_out,
            cost_usd: s.cost_usd + s.partial_cost_usd,
            cost_per_request_usd: (priced > 0).then(|| s.cost_usd / priced as f64),
            unpriced_requests: s.unpriced_requests,
            cache_hit_rate: s.cache_hit_ratio(),
            kpis,
            targets_met,
            recent: RecentLists::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::text::{parse, sum};

    fn record(t: &mut KpiTracker, chain: &str, i: u8, latency_s: f64) {
        t.record_request(&RequestRecord {
            service: "svc",
            chain,
            latency_s,
            error: false,
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: None,
            partial_cost_usd: 0.0,
            cache_hit: None,
            user: None,
            session: None,
            trace_id: [i; 16],
            span_id: [i; 8],
            ended_at_unix_ms: 0,
            error_type: None,
        });
    }

    #[test]
    fn chain_names_are_capped_counted_and_folded_like_metrics() {
        let mut config = Config::default();
        config.kpi.max_chains = 2;
        let registry = Arc::new(Registry::new());
        let mut t = KpiTracker::new(&config, registry.clone());
        let huge = "c".repeat(1 << 20);
        record(&mut t, &huge, 1, 1.0);
        record(&mut t, "b", 2, 2.0);
        record(&mut t, "c", 3, 3.0);
        record(&mut t, "d", 4, 4.0);
        let kpis = t.kpis(Window::SinceStart, None, None);
        let names: Vec<&str> = kpis.iter().map(|k| k.chain.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"b") && names.contains(&OVERFLOW_LABEL));
        let long = names
            .iter()
            .find(|n| n.starts_with("ccc"))
            .expect("capped name");
        assert_eq!(*long, registry.cap_label(&huge), "the name /metrics shows");
        let overflow = kpis
            .iter()
            .find(|k| k.chain == OVERFLOW_LABEL)
            .expect("overflow");
        assert_eq!(overflow.requests, 2);
        // The folded chains' requests are listed under __overflow__.
        let slowest: Vec<u8> = overflow
            .recent
            .slowest
            .iter()
            .map(|r| u8::from_str_radix(&r.trace_id[..2], 16).expect("hex"))
            .collect();
        assert_eq!(slowest, [4, 3]);
        let m = parse(&registry.render());
        let fam = [("family", KPI_FAMILY)];
        assert_eq!(sum(&m, CARDINALITY_SERIES, &fam), 2.0);
        assert_eq!(sum(&m, CARDINALITY_LIMIT, &fam), 2.0);
        assert_eq!(sum(&m, CARDINALITY_OVERFLOW, &fam), 2.0);
        // Filters match the tracked names; the folded ones are `__overflow__`.
        let slowest = |service| t.recent(RecentBy::Slowest, Window::SinceStart, service, None);
        assert_eq!(slowest(Some("svc")).len(), 2);
        assert_eq!(slowest(None).len(), 4);
        assert_eq!(slowest(None)[0].chain, OVERFLOW_LABEL);
    }
}
