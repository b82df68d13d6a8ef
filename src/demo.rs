//! `chainpulse demo`: the collector plus synthetic LCEL-shaped traffic.
//!
//! The traffic goes through the real path a user's app takes: the official
//! OpenTelemetry Rust SDK (`opentelemetry_sdk` batch processor and the
//! `opentelemetry-otlp` gRPC exporter) into chainpulse's own OTLP/gRPC port.
//! Each request is a chain (root) → retriever → prompt → LLM (tokens; some
//! streamed with a time to first token) → parser, in one of three dialects
//! (OpenInference, OpenLLMetry, OTel GenAI) so normalization is exercised.
//! Latencies are drawn from long-tailed distributions and written as span
//! timestamps, so the demo needs no real waiting to show a realistic spread.
//! Every few seconds it prints a KPI line computed from `/metrics` — the
//! same numbers Prometheus would scrape.

use crate::config::Config;
use crate::export::text;
use crate::server::{termination_signal, Server};
use anyhow::Context as _;
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant, SystemTime};

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until SIGINT / SIGTERM).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Synthetic requests per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds between KPI lines.
    #[arg(long, default_value_t = 5)]
    pub report_every: u64,
    /// Random seed (same seed, same traffic).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

const DEMO_SERVICE: &str = "demo-rag-app";

/// Example budgets the demo applies when the config sets none, so the cost
/// dashboards and budget alerts have something to show.
fn demo_budgets() -> Vec<crate::config::BudgetConfig> {
    use crate::config::{BudgetConfig, BudgetWindow};
    let budget = |window, usd, service: Option<&str>, model: Option<&str>| BudgetConfig {
        window,
        usd,
        service: service.map(str::to_owned),
        chain: None,
        model: model.map(str::to_owned),
    };
    vec![
        budget(BudgetWindow::Hour, 5.0, None, None),
        budget(BudgetWindow::Day, 50.0, None, None),
        budget(BudgetWindow::Hour, 2.0, Some(DEMO_SERVICE), None),
        budget(BudgetWindow::Day, 20.0, None, Some("gpt-4o")),
    ]
}

pub async fn run(mut config: Config, args: DemoArgs) -> anyhow::Result<()> {
    if config.budgets.is_empty() {
        config.budgets = demo_budgets();
    }
    let server = Server::start(&config)
        .await
        .context("starting chainpulse")?;
    let addrs = server.addrs();
    let endpoint = format!("http://127.0.0.1:{}", addrs.grpc.port());
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .context("building the OTLP exporter")?;
    // The tokio-driven batch processor (tonic needs the tokio reactor), with
    // a short delay so the first KPI line already has data.
    let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(500))
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(Resource::builder().with_service_name(DEMO_SERVICE).build())
        .build();
    let tracer = provider.tracer("chainpulse-demo");
    println!(
        "chainpulse demo: collector on grpc {} http {} metrics http://{}/metrics; {:.0} req/s of synthetic LCEL traffic",
        addrs.grpc, addrs.http, addrs.metrics, args.rate
    );

    let registry = server.pipeline().registry().clone();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + Duration::from_secs(d));
    let mut ticker = tokio::time::interval(interval);
    let mut report = tokio::time::interval(Duration::from_secs(args.report_every.max(1)));
    report.tick().await;
    let mut previous = text::parse(&registry.render());
    let stop = termination_signal();
    tokio::pin!(stop);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                emit_request(&tracer, &mut rng, n);
                n += 1;
            }
            _ = report.tick() => {
                registry.run_upkeep();
                let now = text::parse(&registry.render());
                println!("{}", kpi_line(started.elapsed(), &previous, &now, args.report_every as f64));
                previous = now;
            }
        }
    }
    let flushed = provider.force_flush();
    let _ = provider.shutdown();
    if let Err(e) = flushed {
        tracing::warn!(error = %e, "flushing the demo exporter");
    }
    // Let the last batch land before the final line.
    tokio::time::sleep(Duration::from_millis(300)).await;
    registry.run_upkeep();
    let end = text::parse(&registry.render());
    println!(
        "total: {}",
        kpi_line(
            started.elapsed(),
            &[],
            &end,
            started.elapsed().as_secs_f64()
        )
    );
    server.shutdown().await
}

/// `[ 10s] req/s 19.9 | p50 0.72s p95 1.93s p99 2.85s | errors 2.0% | tokens in 5680 out 1680 | cost/req $0.000412`
///
/// Cost per request is over fully priced requests (the request cost
/// histogram's sum / count), as the KPI API's `cost_per_request_usd`:
/// requests with an unpriced call have no cost, not a cost of zero.
pub fn kpi_line(
    elapsed: Duration,
    before: &[text::Sample],
    after: &[text::Sample],
    secs: f64,
) -> String {
    use crate::export::names::*;
    let delta =
        |name: &str, m: &[(&str, &str)]| text::sum(after, name, m) - text::sum(before, name, m);
    let requests = delta(REQUESTS_TOTAL, &[]);
    let errors = delta(REQUESTS_TOTAL, &[("status", "error")]);
    let b_after = text::buckets(after, REQUEST_DURATION, &[]);
    let b_before = text::buckets(before, REQUEST_DURATION, &[]);
    let window: Vec<(f64, f64)> = b_after
        .iter()
        .map(|(le, c)| {
            let prev = b_before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, p)| *p);
            (*le, c - prev)
        })
        .collect();
    let q = |p: f64| {
        text::histogram_quantile(p, &window).map_or("-".to_owned(), |v| format!("{v:.2}s"))
    };
    let tokens_in = delta(LLM_TOKENS_TOTAL, &[("type", "input")]);
    let tokens_out = delta(LLM_TOKENS_TOTAL, &[("type", "output")]);
    let priced = delta(&format!("{REQUEST_COST}_count"), &[]);
    let cost_per_request = if priced > 0.0 {
        format!(
            "${:.6}",
            delta(&format!("{REQUEST_COST}_sum"), &[]) / priced
        )
    } else {
        "-".to_owned()
    };
    let error_rate = if requests > 0.0 {
        errors / requests * 100.0
    } else {
        0.0
    };
    format!(
        "[{:>4}s] req/s {:>6.1} | p50 {} p95 {} p99 {} | errors {:.1}% | tokens in {:.0} out {:.0} | cost/req {}",
        elapsed.as_secs(),
        requests / secs.max(1e-9),
        q(0.50),
        q(0.95),
        q(0.99),
        error_rate,
        tokens_in,
        tokens_out,
        cost_per_request
    )
}

/// A log-normal draw (median `median`, shape `sigma`), in seconds.
fn lognormal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    // Box-Muller.
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    median * (sigma * z).exp()
}

#[derive(Clone, Copy)]
enum Dialect {
    OpenInference,
    OpenLlmetry,
    GenAi,
}

/// One synthetic request: root → retriever → prompt → LLM → parser.
fn emit_request<T>(tracer: &T, rng: &mut StdRng, n: u64)
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    let dialect = match n % 3 {
        0 => Dialect::OpenInference,
        1 => Dialect::OpenLlmetry,
        _ => Dialect::GenAi,
    };
    let chain = if rng.random_bool(0.8) {
        "rag_query"
    } else {
        "summarize"
    };
    // Mostly priced models, and now and then a fine-tune nobody priced (it
    // shows up as unpriced, not as free).
    let model = match rng.random_range(0..100) {
        0..=81 => "gpt-4o-mini",
        82..=97 => "gpt-4o",
        _ => "northwind-ft-v2",
    };
    // An LLM-response cache in front of the model: some calls are hits.
    let cache_hit = rng.random_bool(0.15);
    // The fine-tune is served by a streaming endpoint instrumented with the
    // GenAI conventions (which carry a time to first token).
    let finetune = model == "northwind-ft-v2";
    let streamed = finetune || rng.random_bool(0.3);
    let dialect = if finetune { Dialect::GenAi } else { dialect };
    let retriever_fails = rng.random_bool(0.02);
    let llm_fails = !retriever_fails && rng.random_bool(0.01);
    let user = format!("user-{}", rng.random_range(0..50));

    let t0 = SystemTime::now() - Duration::from_secs(5);
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    let retriever_s = lognormal(rng, 0.05, 0.6);
    let prompt_s = 0.001;
    let llm_s = lognormal(rng, 0.6, 0.55);
    let parser_s = 0.0005;
    let input_tokens: i64 = rng.random_range(200..1200);
    let output_tokens: i64 = rng.random_range(20..300);
    let ttft = llm_s * rng.random_range(0.1..0.35);

    let root_attrs = chain_attrs(dialect, chain, true, &user);
    let root = tracer
        .span_builder(match dialect {
            Dialect::OpenLlmetry => format!("{chain}.workflow"),
            _ => chain.to_owned(),
        })
        .with_start_time(at(0.0))
        .with_attributes(root_attrs)
        .start(tracer);
    let cx = Context::current_with_span(root);

    let mut end = retriever_s;
    let mut retr = tracer
        .span_builder("VectorStoreRetriever")
        .with_start_time(at(0.0))
        .with_attributes(retriever_attrs(dialect, chain, &user))
        .start_with_context(tracer, &cx);
    if retriever_fails {
        fail(&mut retr, "TimeoutError", "vector store timed out", at(end));
        retr.end_with_timestamp(at(end));
        let span = cx.span();
        span.set_status(Status::error("TimeoutError('vector store timed out')"));
        span.add_event_with_timestamp(
            "exception",
            at(end),
            vec![
                KeyValue::new("exception.type", "TimeoutError"),
                KeyValue::new("exception.message", "vector store timed out"),
            ],
        );
        span.end_with_timestamp(at(end));
        return;
    }
    retr.end_with_timestamp(at(end));

    let mut prompt = tracer
        .span_builder(match dialect {
            Dialect::OpenLlmetry => "execute_task ChatPromptTemplate".to_owned(),
            _ => "ChatPromptTemplate".to_owned(),
        })
        .with_start_time(at(end))
        .with_attributes(step_attrs(dialect, chain, "ChatPromptTemplate", &user))
        .start_with_context(tracer, &cx);
    end += prompt_s;
    prompt.end_with_timestamp(at(end));

    let llm_start = end;
    let mut llm = tracer
        .span_builder(match dialect {
            Dialect::OpenLlmetry => "ChatOpenAI.chat".to_owned(),
            Dialect::OpenInference => "ChatOpenAI".to_owned(),
            Dialect::GenAi => format!("chat {model}"),
        })
        .with_kind(SpanKind::Client)
        .with_start_time(at(llm_start))
        .with_attributes({
            let mut a = llm_attrs(
                dialect,
                chain,
                model,
                streamed,
                ttft,
                input_tokens,
                output_tokens,
                llm_fails,
            );
            a.push(KeyValue::new("cache_hit", cache_hit && !llm_fails));
            a
        })
        .start_with_context(tracer, &cx);
    end += llm_s;
    if llm_fails {
        fail(
            &mut llm,
            "RateLimitError",
            "rate limit reached for requests",
            at(end),
        );
        llm.end_with_timestamp(at(end));
        let span = cx.span();
        span.set_status(Status::error(
            "RateLimitError('rate limit reached for requests')",
        ));
        span.set_attribute(KeyValue::new("error.type", "RateLimitError"));
        span.end_with_timestamp(at(end));
        return;
    }
    llm.end_with_timestamp(at(end));

    let mut parser = tracer
        .span_builder(match dialect {
            Dialect::OpenLlmetry => "execute_task StrOutputParser".to_owned(),
            _ => "StrOutputParser".to_owned(),
        })
        .with_start_time(at(end))
        .with_attributes(step_attrs(dialect, chain, "StrOutputParser", &user))
        .start_with_context(tracer, &cx);
    end += parser_s;
    parser.end_with_timestamp(at(end));
    cx.span().end_with_timestamp(at(end));
}

fn fail<S: Span>(span: &mut S, class: &'static str, message: &'static str, at: SystemTime) {
    span.set_status(Status::error(format!("{class}('{message}')")));
    span.set_attribute(KeyValue::new("error.type", class));
    span.add_event_with_timestamp(
        "exception",
        at,
        vec![
            KeyValue::new("exception.type", class),
            KeyValue::new("exception.message", message),
        ],
    );
}

fn chain_attrs(d: Dialect, chain: &str, root: bool, user: &str) -> Vec<KeyValue> {
    match d {
        Dialect::OpenInference => vec![
            KeyValue::new("openinference.span.kind", "CHAIN"),
            KeyValue::new(
                "metadata",
                format!("{{\"user_id\": \"{user}\", \"environment\": \"demo\"}}"),
            ),
            KeyValue::new("input.value", "{\"question\": \"What is LCEL?\"}"),
        ],
        Dialect::OpenLlmetry => vec![
            KeyValue::new(
                "traceloop.span.kind",
                if root { "workflow" } else { "task" },
            ),
            KeyValue::new("traceloop.entity.name", chain.to_owned()),
            KeyValue::new("traceloop.workflow.name", chain.to_owned()),
            KeyValue::new("traceloop.association.properties.user_id", user.to_owned()),
            KeyValue::new(
                "gen_ai.operation.name",
                if root { "invoke_agent" } else { "execute_task" },
            ),
        ],
        Dialect::GenAi => vec![
            KeyValue::new("gen_ai.operation.name", "invoke_workflow"),
            KeyValue::new("gen_ai.workflow.name", chain.to_owned()),
            KeyValue::new("user.id", user.to_owned()),
        ],
    }
}

fn retriever_attrs(d: Dialect, chain: &str, user: &str) -> Vec<KeyValue> {
    match d {
        Dialect::OpenInference => vec![KeyValue::new("openinference.span.kind", "RETRIEVER")],
        Dialect::OpenLlmetry => vec![
            KeyValue::new("traceloop.span.kind", "task"),
            KeyValue::new("traceloop.entity.name", "VectorStoreRetriever"),
            KeyValue::new("traceloop.workflow.name", chain.to_owned()),
            KeyValue::new("traceloop.association.properties.user_id", user.to_owned()),
            KeyValue::new("gen_ai.operation.name", "vector_db_retrieve"),
        ],
        Dialect::GenAi => vec![KeyValue::new("gen_ai.operation.name", "retrieval")],
    }
}

fn step_attrs(d: Dialect, chain: &str, name: &str, user: &str) -> Vec<KeyValue> {
    match d {
        Dialect::OpenInference => vec![KeyValue::new(
            "openinference.span.kind",
            if name.ends_with("Template") {
                "PROMPT"
            } else {
                "CHAIN"
            },
        )],
        Dialect::OpenLlmetry => vec![
            KeyValue::new("traceloop.span.kind", "task"),
            KeyValue::new("traceloop.entity.name", name.to_owned()),
            KeyValue::new("traceloop.workflow.name", chain.to_owned()),
            KeyValue::new("traceloop.association.properties.user_id", user.to_owned()),
            KeyValue::new("gen_ai.operation.name", "execute_task"),
        ],
        Dialect::GenAi => vec![KeyValue::new("gen_ai.operation.name", "chain")],
    }
}

#[allow(clippy::too_many_arguments)]
fn llm_attrs(
    d: Dialect,
    chain: &str,
    model: &'static str,
    streamed: bool,
    ttft: f64,
    input: i64,
    output: i64,
    failed: bool,
) -> Vec<KeyValue> {
    let (input, output) = if failed { (0, 0) } else { (input, output) };
    match d {
        Dialect::OpenInference => vec![
            KeyValue::new("openinference.span.kind", "LLM"),
            KeyValue::new("llm.model_name", model),
            KeyValue::new("llm.provider", "openai"),
            KeyValue::new("llm.token_count.prompt", input),
            KeyValue::new("llm.token_count.completion", output),
            KeyValue::new("llm.token_count.total", input + output),
            KeyValue::new(
                "llm.invocation_parameters",
                format!("{{\"model_name\": \"{model}\", \"stream\": {streamed}}}"),
            ),
        ],
        Dialect::OpenLlmetry => vec![
            KeyValue::new("traceloop.workflow.name", chain.to_owned()),
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "langchain"),
            // The streamed-call trap: the request model is "unknown".
            KeyValue::new(
                "gen_ai.request.model",
                if streamed { "unknown" } else { model },
            ),
            KeyValue::new("traceloop.association.properties.ls_model_name", model),
            KeyValue::new("traceloop.association.properties.ls_provider", "openai"),
            KeyValue::new("gen_ai.usage.input_tokens", input),
            KeyValue::new("gen_ai.usage.output_tokens", output),
        ],
        Dialect::GenAi => {
            let mut v = vec![
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.provider.name", "openai"),
                KeyValue::new("gen_ai.request.model", model),
                KeyValue::new("gen_ai.usage.input_tokens", input),
                KeyValue::new("gen_ai.usage.output_tokens", output),
                KeyValue::new("gen_ai.request.stream", streamed),
            ];
            if streamed {
                v.push(KeyValue::new("gen_ai.response.time_to_first_chunk", ttft));
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kpi_line_shows_cost_per_priced_request() {
        let before = text::parse(
            "chainpulse_requests_total{status=\"ok\"} 10\nchainpulse_request_cost_usd_sum 0.01\nchainpulse_request_cost_usd_count 10\n",
        );
        // 10 more requests, 8 of them fully priced at $0.02 in total.
        let after = text::parse(
            "chainpulse_requests_total{status=\"ok\"} 20\nchainpulse_request_cost_usd_sum 0.03\nchainpulse_request_cost_usd_count 18\n",
        );
        let line = kpi_line(Duration::from_secs(10), &before, &after, 10.0);
        assert!(line.ends_with("| cost/req $0.002500"), "{line}");
        let none = kpi_line(Duration::from_secs(10), &before, &before, 10.0);
        assert!(none.ends_with("| cost/req -"), "{none}");
    }
}
