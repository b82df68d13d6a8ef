//! Turns labelled runs into metric observations, through cached handles.
//!
//! Cost is computed here, per LLM / embedding run, from the price table:
//! normalized `Tokens::input` always includes cached tokens, so pricing uses
//! `InputSemantics::IncludesCached` for every dialect (Langfuse's
//! subtracted counts were added back during normalization).

use super::assembly::Labeled;
use super::series::{key_into, Family, SEP};
use crate::config::{CacheConfig, Config};
use crate::export::names::*;
use crate::export::{Exemplar, ExemplarHistogram, FloatCounter, Registry};
use crate::normalize::{ChainRun, RunKind, RunStatus};
use crate::pricing::{At, Cost, InputSemantics, PriceTable, TokenUsage};
use metrics::{Counter, Histogram, Label};
use std::collections::HashSet;
use std::sync::Arc;

struct OutcomeSeries {
    ok: Counter,
    error: Counter,
    duration: Histogram,
}

struct RequestSeries {
    ok: Counter,
    error: Counter,
    duration: ExemplarHistogram,
    cost: ExemplarHistogram,
    cache_hit: Counter,
    cache_miss: Counter,
}

struct LlmSeries {
    ok: Counter,
    error: Counter,
    duration: ExemplarHistogram,
    ttft: Histogram,
    /// input, output, cache_read, cache_write, reasoning
    tokens: [Counter; 5],
    /// Created on the first priced call: a model that is never priced has
    /// no cost series at all, rather than a misleading $0 one.
    cost: Option<FloatCounter>,
    cost_labels: Vec<(String, String)>,
}

const TOKEN_TYPES: [&str; 5] = ["input", "output", "cache_read", "cache_write", "reasoning"];

/// What recording a run learned about its cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunCost {
    /// USD, when the run used tokens of a priced model.
    pub usd: Option<f64>,
    /// An LLM run whose model has no price, or that reported no usage.
    pub unpriced: bool,
    /// An LLM-response cache lookup result, when detected.
    pub cache_hit: Option<bool>,
}

/// Unpriced models are logged once each, up to this many names.
const MAX_LOGGED_UNPRICED: usize = 1000;

pub struct Recorder {
    registry: Arc<Registry>,
    prices: PriceTable,
    batch_key: String,
    cache: CacheConfig,
    promoted_metadata: Vec<String>,
    promoted_tags: Vec<String>,
    promoted_tag_labels: Vec<String>,
    requests: Family<RequestSeries>,
    runs: Family<OutcomeSeries>,
    llm: Family<LlmSeries>,
    errors: Family<Counter>,
    unpriced: Family<Counter>,
    usage_missing: Family<Counter>,
    logged_unpriced: HashSet<String>,
    /// Reused for cache keys and label values so a hit allocates nothing.
    key: String,
    values: Vec<String>,
}

/// The metadata keys recording reads (the batch-pricing key, the cache-hit
/// keys, the promoted labels): normalization keeps these and skips the rest
/// (`normalize::Kept`). Keep in step with every `run.meta` below.
pub fn metadata_keys(config: &Config) -> impl Iterator<Item = &str> {
    std::iter::once(config.pricing.batch_metadata_key.as_str())
        .chain(config.cache.hit_keys.iter().map(String::as_str))
        .chain(config.labels.metadata.iter().map(String::as_str))
}

/// The tags recording reads (those promoted to labels); normalization keeps
/// only these. Keep in step with every `run.tags` below.
pub fn tag_names(config: &Config) -> impl Iterator<Item = &str> {
    config.labels.tags.iter().map(String::as_str)
}

impl Recorder {
    pub fn new(registry: Arc<Registry>, config: &Config, prices: PriceTable) -> Self {
        let max_series = config.cardinality.max_series_per_family;
        let labels = &config.labels;
        Recorder {
            requests: Family::new(&registry, REQUESTS_TOTAL, max_series),
            runs: Family::new(&registry, RUNS_TOTAL, max_series),
            llm: Family::new(&registry, LLM_CALLS_TOTAL, max_series),
            errors: Family::new(&registry, ERRORS_TOTAL, max_series),
            unpriced: Family::new(&registry, LLM_UNPRICED, max_series),
            usage_missing: Family::new(&registry, LLM_USAGE_MISSING, max_series),
            logged_unpriced: HashSet::new(),
            prices,
            batch_key: config.pricing.batch_metadata_key.clone(),
            cache: config.cache.clone(),
            promoted_metadata: labels.metadata.clone(),
            promoted_tag_labels: labels.tags.iter().map(|t| format!("tag_{t}")).collect(),
            promoted_tags: labels.tags.clone(),
            registry,
            key: String::new(),
            values: Vec::new(),
        }
    }

    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    pub fn record(&mut self, l: &Labeled) -> RunCost {
        let run = &l.run;
        let status = run.status;
        let duration = run.duration_s();
        self.fill_promoted(run);
        let promoted = self.promoted_pairs();
        let mut outcome = RunCost::default();

        if l.is_request {
            let s = self.request_series(&run.service, &l.chain, &promoted, true);
            match status {
                RunStatus::Ok => s.ok.increment(1),
                RunStatus::Error => s.error.increment(1),
            }
            s.duration.record(
                duration,
                Some(Exemplar {
                    trace_id: run.trace_id,
                    span_id: run.span_id,
                    failed: status == RunStatus::Error,
                }),
            );
        }

        let s = get_outcome(
            &mut self.runs,
            &mut self.key,
            &self.registry,
            RUNS_TOTAL,
            RUN_DURATION,
            &[
                ("service", &run.service),
                ("chain", &l.chain),
                ("kind", run.kind.as_str()),
                ("step", &run.name),
            ],
            &promoted,
        );
        observe(s, status, duration);

        if l.billed || l.ttft_only {
            outcome = self.record_llm(l, &promoted);
        }

        // A wrapper around an LLM call (not billed, but of a billing kind)
        // fails with its call's error: one failed call is one LLM error.
        let wrapper = run.kind.bills_tokens() && !l.billed;
        if let (Some(error_type), false) = (run.error_type.as_deref(), wrapper) {
            let labels = [
                ("service", &*run.service),
                ("chain", &*l.chain),
                ("kind", run.kind.as_str()),
                ("error_type", error_type),
            ];
            let registry = &self.registry;
            let key = compose_key(&mut self.key, &labels, &promoted);
            self.errors
                .get(key, |overflow| {
                    registry.counter_dyn(ERRORS_TOTAL, build_labels(&labels, &promoted, overflow))
                })
                .increment(1);
        }
        outcome
    }

    fn record_llm(&mut self, l: &Labeled, promoted: &[(String, String)]) -> RunCost {
        let run = &l.run;
        let provider = run.provider.as_deref().unwrap_or("unknown");
        let model = run.model.as_deref().unwrap_or("unknown");
        let labels = [
            ("service", &*run.service),
            ("chain", &*l.chain),
            ("provider", provider),
            ("model", model),
        ];
        let cache_hit = self.cache_result(run);
        let registry = &self.registry;
        let key = compose_key(&mut self.key, &labels, promoted);
        let s = self.llm.get(key, |overflow| {
            let mk = |extra: Option<(&'static str, &str)>| {
                let mut ls = build_labels(&labels, promoted, overflow);
                if let Some((k, v)) = extra {
                    ls.push(Label::new(k, v.to_owned()));
                }
                ls
            };
            let cost_labels: Vec<(String, String)> = mk(None)
                .iter()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            LlmSeries {
                ok: registry.counter_dyn(LLM_CALLS_TOTAL, mk(Some(("status", "ok")))),
                error: registry.counter_dyn(LLM_CALLS_TOTAL, mk(Some(("status", "error")))),
                duration: registry.exemplar_histogram_dyn(LLM_DURATION, mk(None)),
                ttft: registry.histogram_dyn(LLM_TTFT, mk(None)),
                tokens: TOKEN_TYPES
                    .map(|t| registry.counter_dyn(LLM_TOKENS_TOTAL, mk(Some(("type", t))))),
                cost: None,
                cost_labels,
            }
        });
        if l.ttft_only {
            // A second span of a call already counted: only the time to
            // first token it carries, which the counted span lacked.
            if let Some(t) = run.time_to_first_token_s {
                s.ttft.record(t);
            }
            return RunCost::default();
        }
        if run.kind == RunKind::Llm {
            match run.status {
                RunStatus::Ok => s.ok.increment(1),
                RunStatus::Error => s.error.increment(1),
            }
            s.duration.record(
                run.duration_s(),
                Some(Exemplar {
                    trace_id: run.trace_id,
                    span_id: run.span_id,
                    failed: run.status == RunStatus::Error,
                }),
            );
            if let Some(t) = run.time_to_first_token_s {
                s.ttft.record(t);
            }
        }
        let t = run.tokens;
        for (counter, n) in
            s.tokens
                .iter()
                .zip([t.input, t.output, t.cache_read, t.cache_write, t.reasoning])
        {
            if n > 0 {
                counter.increment(n);
            }
        }

        let mut outcome = RunCost {
            cache_hit,
            ..RunCost::default()
        };
        if !run.usage_reported {
            // A failed call may legitimately use nothing; a successful one
            // that reports no usage cannot be priced (and is not free).
            if run.status == RunStatus::Ok && run.kind == RunKind::Llm {
                outcome.unpriced = true;
                count_by_model(
                    &mut self.usage_missing,
                    &self.registry,
                    LLM_USAGE_MISSING,
                    &mut self.key,
                    model,
                );
            }
            return outcome;
        }
        let usage = TokenUsage {
            input: t.input,
            output: t.output,
            cache_read: t.cache_read,
            cache_write: t.cache_write,
            reasoning: t.reasoning,
        };
        let batch = run
            .meta(&self.batch_key)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
        // Priced at the rate in force when the call started (price history).
        let at = match run.start_unix_nano {
            0 => At::now(),
            nanos => At::from_unix_secs((nanos / 1_000_000_000) as i64),
        };
        let price = |m: &str| {
            self.prices.cost_at(
                run.provider.as_deref(),
                m,
                at,
                &usage,
                InputSemantics::IncludesCached,
                batch,
            )
        };
        // The requested model's price; the answering snapshot's when the
        // span named only the snapshot (it is what ran), or when the
        // requested name has none (a deployment alias, say).
        let answered = run.response_model.as_deref().filter(|a| *a != model);
        let (first, second) = match answered {
            Some(a) if run.price_as_response => (a, Some(model)),
            other => (model, other),
        };
        let mut cost = price(first);
        if let (Cost::Unpriced, Some(m)) = (&cost, second) {
            if let c @ Cost::Priced { .. } = price(m) {
                cost = c;
            }
        }
        match cost {
            Cost::Priced { usd, .. } => {
                let registry = &self.registry;
                s.cost
                    .get_or_insert_with(|| {
                        let labels: Vec<(&str, &str)> = s
                            .cost_labels
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect();
                        registry.float_counter(
                            LLM_COST_TOTAL,
                            "Cost in USD of LLM and embedding runs (priced models only).",
                            &labels,
                        )
                    })
                    .add(usd);
                outcome.usd = Some(usd);
            }
            Cost::Unpriced => {
                outcome.unpriced = true;
                count_by_model(
                    &mut self.unpriced,
                    &self.registry,
                    LLM_UNPRICED,
                    &mut self.key,
                    model,
                );
                // Logged (and remembered) as the label shows it: a client
                // sends model names of any length.
                let model = self.registry.cap_label(model);
                if self.logged_unpriced.len() < MAX_LOGGED_UNPRICED
                    && self.logged_unpriced.insert(model.clone().into_owned())
                {
                    tracing::warn!(
                        model = &*model,
                        provider = &*self.registry.cap_label(provider),
                        "no price for this model: its calls are counted as unpriced, not free \
                         (add it under [pricing.models] or [pricing.aliases])"
                    );
                }
            }
        }
        outcome
    }

    /// Hit / miss of an LLM-response cache: the span's own marker, then the
    /// configured metadata keys, then (if configured) unmarked = miss.
    fn cache_result(&self, run: &ChainRun) -> Option<bool> {
        if run.kind != RunKind::Llm {
            return None;
        }
        run.cache_hit
            .or_else(|| {
                self.cache.hit_keys.iter().find_map(|k| {
                    run.meta(k)
                        .and_then(|v| match v.to_ascii_lowercase().as_str() {
                            "true" | "1" | "yes" => Some(true),
                            "false" | "0" | "no" => Some(false),
                            _ => None,
                        })
                })
            })
            .or(self.cache.count_unmarked_as_miss.then_some(false))
    }

    /// Records a finished request's cost and cache lookups (after all of its
    /// runs were recorded).
    pub fn record_request_totals(
        &mut self,
        root: &Labeled,
        cost_usd: Option<f64>,
        hits: u64,
        misses: u64,
    ) {
        self.fill_promoted(&root.run);
        let promoted = self.promoted_pairs();
        let s = self.request_series(&root.run.service, &root.chain, &promoted, false);
        if let Some(c) = cost_usd {
            s.cost.record(
                c,
                Some(Exemplar {
                    trace_id: root.run.trace_id,
                    span_id: root.run.span_id,
                    failed: root.run.status == RunStatus::Error,
                }),
            );
        }
        if hits > 0 {
            s.cache_hit.increment(hits);
        }
        if misses > 0 {
            s.cache_miss.increment(misses);
        }
    }

    fn request_series(
        &mut self,
        service: &str,
        chain: &str,
        promoted: &[(String, String)],
        first_lookup: bool,
    ) -> &RequestSeries {
        let labels = [("service", service), ("chain", chain)];
        let registry = &self.registry;
        let key = compose_key(&mut self.key, &labels, promoted);
        let make = |overflow| {
            let base = || build_labels(&labels, promoted, overflow);
            let with = |k: &'static str, v: &str| {
                let mut ls = base();
                ls.push(Label::new(k, v.to_owned()));
                ls
            };
            RequestSeries {
                ok: registry.counter_dyn(REQUESTS_TOTAL, with("status", "ok")),
                error: registry.counter_dyn(REQUESTS_TOTAL, with("status", "error")),
                duration: registry.exemplar_histogram_dyn(REQUEST_DURATION, base()),
                cost: registry.exemplar_histogram_dyn(REQUEST_COST, base()),
                cache_hit: registry.counter_dyn(CACHE_LOOKUPS, with("result", "hit")),
                cache_miss: registry.counter_dyn(CACHE_LOOKUPS, with("result", "miss")),
            }
        };
        if first_lookup {
            self.requests.get(key, make)
        } else {
            self.requests.get_again(key, make)
        }
    }

    fn fill_promoted(&mut self, run: &ChainRun) {
        self.values.clear();
        for key in &self.promoted_metadata {
            self.values.push(run.meta(key).unwrap_or("").to_owned());
        }
        for tag in &self.promoted_tags {
            let has = run.tags.iter().any(|t| *t == tag.as_str());
            self.values
                .push(if has { "true" } else { "false" }.to_owned());
        }
    }

    fn promoted_pairs(&self) -> Vec<(String, String)> {
        self.promoted_metadata
            .iter()
            .chain(&self.promoted_tag_labels)
            .cloned()
            .zip(self.values.iter().cloned())
            .collect()
    }
}

fn count_by_model(
    family: &mut Family<Counter>,
    registry: &Registry,
    name: &'static str,
    key: &mut String,
    model: &str,
) {
    let k = key_into(key, &[model]);
    family
        .get(k, |overflow| {
            let v = if overflow { OVERFLOW_LABEL } else { model };
            registry.counter(name, &[("model", v)])
        })
        .increment(1);
}

fn build_labels(
    fixed: &[(&'static str, &str)],
    promoted: &[(String, String)],
    overflow: bool,
) -> Vec<Label> {
    let value = |v: &str| {
        if overflow {
            OVERFLOW_LABEL.to_owned()
        } else {
            v.to_owned()
        }
    };
    fixed
        .iter()
        .map(|(k, v)| Label::new(*k, value(v)))
        .chain(
            promoted
                .iter()
                .map(|(k, v)| Label::new(k.clone(), value(v))),
        )
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn get_outcome<'f>(
    family: &'f mut Family<OutcomeSeries>,
    key: &mut String,
    registry: &Registry,
    counter: &'static str,
    histogram: &'static str,
    labels: &[(&'static str, &str)],
    promoted: &[(String, String)],
) -> &'f OutcomeSeries {
    let key = compose_key(key, labels, promoted);
    family.get(key, |overflow| {
        let with_status = |s: &str| {
            let mut ls = build_labels(labels, promoted, overflow);
            ls.push(Label::new("status", s.to_owned()));
            ls
        };
        OutcomeSeries {
            ok: registry.counter_dyn(counter, with_status("ok")),
            error: registry.counter_dyn(counter, with_status("error")),
            duration: registry.histogram_dyn(histogram, build_labels(labels, promoted, overflow)),
        }
    })
}

/// The cache key of a label set: fixed label values, then promoted ones.
fn compose_key<'b>(
    buf: &'b mut String,
    labels: &[(&'static str, &str)],
    promoted: &[(String, String)],
) -> &'b str {
    buf.clear();
    for (i, v) in labels
        .iter()
        .map(|(_, v)| *v)
        .chain(promoted.iter().map(|(_, v)| v.as_str()))
        .enumerate()
    {
        if i > 0 {
            buf.push(SEP);
        }
        buf.push_str(v);
    }
    buf.as_str()
}

fn observe(s: &OutcomeSeries, status: RunStatus, duration: f64) {
    match status {
        RunStatus::Ok => s.ok.increment(1),
        RunStatus::Error => s.error.increment(1),
    }
    s.duration.record(duration);
}
