//! The production KPIs per (service, chain), over sliding windows, against
//! their SLO targets; and the top spenders by user, session, chain and model.
//!
//! Memory is bounded twice: at most `kpi.max_chains` (service, chain) pairs
//! are tracked (later ones fold into one `__overflow__` entry), and each
//! top-spenders sketch keeps `kpi.top_capacity` keys (Space-Saving: the
//! heaviest keys are always kept, with a stated error bound).

use super::topk::{HeavyHitter, SpaceSaving};
pub use super::window::LateUsage;
use super::window::{Sample, Window, WindowSnapshot, WindowedStats};
use crate::config::{Config, SloConfig, SloTargets};
use crate::export::names::{BUDGET_USD, OVERFLOW_LABEL, SLO_TARGET};
use crate::export::Registry;
use serde::Serialize;
use std::collections::HashMap;
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
}

pub struct KpiTracker {
    epoch: Instant,
    epoch_secs: u64,
    chains: HashMap<(Arc<str>, Arc<str>), ChainKpi, foldhash::fast::RandomState>,
    overflow: Option<ChainKpi>,
    max_chains: usize,
    slo: SloConfig,
    registry: Arc<Registry>,
    /// [by][metric]
    top: Vec<Vec<SpaceSaving>>,
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
        KpiTracker {
            epoch: Instant::now(),
            epoch_secs: 0,
            chains: HashMap::default(),
            overflow: None,
            max_chains: config.kpi.max_chains,
            slo: config.slo.clone(),
            registry,
            top: (0..4)
                .map(|_| (0..3).map(|_| SpaceSaving::new(cap)).collect())
                .collect(),
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
        self.entry(r.service, r.chain, now)
            .stats
            .record(now, sample);
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

    fn entry(&mut self, service: &str, chain: &str, now: u64) -> &mut ChainKpi {
        let key = (Arc::<str>::from(service), Arc::<str>::from(chain));
        if self.chains.contains_key(&key) {
            return self.chains.get_mut(&key).expect("checked");
        }
        if self.chains.len() >= self.max_chains {
            let targets = self.slo.targets_for(OVERFLOW_LABEL, OVERFLOW_LABEL);
            return self.overflow.get_or_insert_with(|| ChainKpi {
                stats: WindowedStats::new(now),
                targets,
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
        self.chains.entry(key).or_insert_with(|| ChainKpi {
            stats: WindowedStats::new(now),
            targets,
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
        let mut chains: Vec<(Arc<str>, Arc<str>, WindowSnapshot, SloTargets)> = self
            .chains
            .iter()
            .filter(|((s, c), _)| {
                service.is_none_or(|f| f == &**s) && chain.is_none_or(|f| f == &**c)
            })
            .map(|((s, c), k)| {
                (
                    s.clone(),
                    c.clone(),
                    k.stats.snapshot(window, now),
                    k.targets,
                )
            })
            .collect();
        if service.is_none() && chain.is_none() {
            if let Some(k) = &self.overflow {
                let o: Arc<str> = Arc::from(OVERFLOW_LABEL);
                chains.push((o.clone(), o, k.stats.snapshot(window, now), k.targets));
            }
        }
        KpiSnapshots { chains }
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

/// Per-chain window aggregates taken under the aggregator lock.
pub struct KpiSnapshots {
    chains: Vec<(Arc<str>, Arc<str>, WindowSnapshot, SloTargets)>,
}

impl KpiSnapshots {
    pub fn build(self) -> Vec<ChainKpis> {
        let mut out: Vec<ChainKpis> = self
            .chains
            .iter()
            .map(|(s, c, snap, t)| ChainKpis::build(s, c, snap, t))
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
        }
    }
}
