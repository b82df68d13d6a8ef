//! Turns labelled runs into metric observations, through cached handles.

use super::assembly::Labeled;
use super::series::{key_into, Family};
use crate::config::LabelsConfig;
use crate::export::names::*;
use crate::export::Registry;
use crate::normalize::{ChainRun, RunKind, RunStatus};
use metrics::{Counter, Histogram, Label};
use std::sync::Arc;

struct OutcomeSeries {
    ok: Counter,
    error: Counter,
    duration: Histogram,
}

struct LlmSeries {
    ok: Counter,
    error: Counter,
    duration: Histogram,
    ttft: Histogram,
    /// input, output, cache_read, cache_write, reasoning
    tokens: [Counter; 5],
}

const TOKEN_TYPES: [&str; 5] = ["input", "output", "cache_read", "cache_write", "reasoning"];

pub struct Recorder {
    registry: Arc<Registry>,
    promoted_metadata: Vec<String>,
    promoted_tags: Vec<String>,
    promoted_tag_labels: Vec<String>,
    requests: Family<OutcomeSeries>,
    runs: Family<OutcomeSeries>,
    llm: Family<LlmSeries>,
    errors: Family<Counter>,
    /// Reused for cache keys and label values so a hit allocates nothing.
    key: String,
    values: Vec<String>,
}

impl Recorder {
    pub fn new(registry: Arc<Registry>, labels: &LabelsConfig, max_series: usize) -> Self {
        Recorder {
            requests: Family::new(&registry, REQUESTS_TOTAL, max_series),
            runs: Family::new(&registry, RUNS_TOTAL, max_series),
            llm: Family::new(&registry, LLM_CALLS_TOTAL, max_series),
            errors: Family::new(&registry, ERRORS_TOTAL, max_series),
            promoted_metadata: labels.metadata.clone(),
            promoted_tag_labels: labels.tags.iter().map(|t| format!("tag_{t}")).collect(),
            promoted_tags: labels.tags.clone(),
            registry,
            key: String::new(),
            values: Vec::new(),
        }
    }

    pub fn record(&mut self, l: &Labeled) {
        let run = &l.run;
        let status = run.status;
        let duration = run.duration_s();
        self.fill_promoted(run);
        let promoted = self.promoted_pairs();

        if l.is_request {
            let s = get_outcome(
                &mut self.requests,
                &mut self.key,
                &self.registry,
                REQUESTS_TOTAL,
                REQUEST_DURATION,
                &[("service", &run.service), ("chain", &l.chain)],
                &promoted,
            );
            observe(s, status, duration);
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

        if run.kind.bills_tokens() {
            let provider = run.provider.as_deref().unwrap_or("unknown");
            let model = run.model.as_deref().unwrap_or("unknown");
            let labels = [
                ("service", &*run.service),
                ("chain", &*l.chain),
                ("provider", provider),
                ("model", model),
            ];
            let registry = &self.registry;
            let key = compose_key(&mut self.key, &labels, &promoted);
            let s = self.llm.get(key, |overflow| {
                let mk = |extra: Option<(&'static str, &str)>| {
                    let mut ls = build_labels(&labels, &promoted, overflow);
                    if let Some((k, v)) = extra {
                        ls.push(Label::new(k, v.to_owned()));
                    }
                    ls
                };
                LlmSeries {
                    ok: registry.counter_dyn(LLM_CALLS_TOTAL, mk(Some(("status", "ok")))),
                    error: registry.counter_dyn(LLM_CALLS_TOTAL, mk(Some(("status", "error")))),
                    duration: registry.histogram_dyn(LLM_DURATION, mk(None)),
                    ttft: registry.histogram_dyn(LLM_TTFT, mk(None)),
                    tokens: TOKEN_TYPES
                        .map(|t| registry.counter_dyn(LLM_TOKENS_TOTAL, mk(Some(("type", t))))),
                }
            });
            if run.kind == RunKind::Llm {
                match status {
                    RunStatus::Ok => s.ok.increment(1),
                    RunStatus::Error => s.error.increment(1),
                }
                s.duration.record(duration);
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
        }

        if let Some(error_type) = run.error_type.as_deref() {
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
    }

    fn fill_promoted(&mut self, run: &ChainRun) {
        self.values.clear();
        for key in &self.promoted_metadata {
            self.values.push(run.meta(key).unwrap_or("").to_owned());
        }
        for tag in &self.promoted_tags {
            let has = run.tags.iter().any(|t| t == tag);
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
    key_into(buf, &[]);
    for (i, v) in labels
        .iter()
        .map(|(_, v)| *v)
        .chain(promoted.iter().map(|(_, v)| v.as_str()))
        .enumerate()
    {
        if i > 0 {
            buf.push(super::series::SEP);
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
