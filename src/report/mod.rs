//! `chainpulse report`: the KPI table, either of one running sidecar (from
//! its KPI API, `--url`) or of a whole fleet (from the Prometheus that
//! scrapes every replica, `--prometheus`; see [`fleet`]).
//!
//! One sidecar only sees its own pod's requests, but sees them exactly (a
//! quantile sketch with 1 % relative error, per-second windows); the fleet
//! report sees every replica, at the resolution of the histogram buckets
//! and the scrape interval. The README's "Fleet report" says when to use
//! which.

pub mod recent;

use anyhow::{bail, Context};
use std::fmt::Write;

pub mod fleet;
pub mod promql;

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// Base URL of the instance's metrics / API listener.
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    pub url: String,
    /// Window: 1m, 5m, 15m, 1h or all (with --prometheus: all or any
    /// Prometheus duration).
    #[arg(long, default_value = "5m")]
    pub window: String,
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only this chain.
    #[arg(long)]
    pub chain: Option<String>,
    /// Fleet mode: the base URL of the Prometheus (or Thanos Query / Mimir
    /// Prometheus API, e.g. http://mimir/prometheus) that scrapes every
    /// replica; the KPIs sum all of them.
    #[arg(long)]
    pub prometheus: Option<String>,
    /// Fleet mode: label matchers every series must match, e.g.
    /// '{namespace="prod",job="chainpulse"}'.
    #[arg(long)]
    pub selector: Option<String>,
    /// Fleet mode: bearer token for Prometheus; may be `${env:NAME}` or
    /// `${file:PATH}`.
    #[arg(long)]
    pub bearer_token: Option<String>,
    /// Fleet mode: `USER:PASSWORD` for basic auth; each may be `${env:NAME}`
    /// or `${file:PATH}`.
    #[arg(long)]
    pub basic_auth: Option<String>,
    /// Fleet mode output: `text` or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    if let Some(url) = args.prometheus.clone() {
        return fleet::run(&args, &url).await;
    }
    for (flag, set) in [
        ("--selector", args.selector.is_some()),
        ("--bearer-token", args.bearer_token.is_some()),
        ("--basic-auth", args.basic_auth.is_some()),
        ("--format json", args.format != "text"),
    ] {
        if set {
            bail!("{flag} applies to the fleet report only (--prometheus URL)");
        }
    }
    let body = fetch(&args).await?;
    print!("{}", render(&body)?);
    Ok(())
}

async fn fetch(args: &ReportArgs) -> anyhow::Result<serde_json::Value> {
    let mut url = format!(
        "{}/api/v1/kpis?window={}",
        args.url.trim_end_matches('/'),
        args.window
    );
    if let Some(s) = &args.service {
        url.push_str(&format!("&service={s}"));
    }
    if let Some(c) = &args.chain {
        url.push_str(&format!("&chain={c}"));
    }
    let resp = reqwest::get(&url)
        .await
        .with_context(|| format!("cannot reach chainpulse at {}", args.url))?;
    let status = resp.status();
    let bytes = resp.bytes().await.context("reading the KPI API's answer")?;
    let body: serde_json::Value =
        serde_json::from_slice(&bytes).context("the KPI API's answer is not JSON")?;
    if !status.is_success() {
        bail!(
            "{url}: HTTP {status}: {}",
            body["error"].as_str().unwrap_or("?")
        );
    }
    Ok(body)
}

fn num(v: &serde_json::Value) -> Option<f64> {
    v.as_f64()
}

/// The KPI table: one block per chain, each KPI with its target and verdict.
pub fn render(body: &serde_json::Value) -> anyhow::Result<String> {
    let chains = body["chains"]
        .as_array()
        .context("no \"chains\" in the answer")?;
    let window = body["window"].as_str().unwrap_or("?");
    let mut out = String::new();
    if chains.is_empty() {
        writeln!(out, "no requests seen in window {window}")?;
        return Ok(out);
    }
    let fmt_s = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}s"));
    let fmt_pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.3}%", v * 100.0));
    for c in chains {
        writeln!(
            out,
            "{} / {}  (window {window}, {} s covered)",
            c["service"].as_str().unwrap_or("?"),
            c["chain"].as_str().unwrap_or("?"),
            c["covered_seconds"]
        )?;
        let lat = &c["latency_seconds"];
        writeln!(
            out,
            "  requests {}  errors {}  throughput {} req/s",
            c["requests"],
            c["errors"],
            num(&c["throughput_rps"]).map_or("-".into(), |v| format!("{v:.2}"))
        )?;
        writeln!(
            out,
            "  latency  P50 {}  P95 {}  P99 {}",
            fmt_s(num(&lat["p50"])),
            fmt_s(num(&lat["p95"])),
            fmt_s(num(&lat["p99"]))
        )?;
        writeln!(
            out,
            "  error rate {}  availability {}  cache hit rate {}",
            fmt_pct(num(&c["error_rate"])),
            fmt_pct(num(&c["availability"])),
            fmt_pct(num(&c["cache_hit_rate"]))
        )?;
        writeln!(
            out,
            "  tokens in {} out {}  cost ${:.6}  per request {}  unpriced requests {}",
            c["tokens_input"],
            c["tokens_output"],
            num(&c["cost_usd"]).unwrap_or(0.0),
            num(&c["cost_per_request_usd"]).map_or("-".into(), |v| format!("${v:.6}")),
            c["unpriced_requests"]
        )?;
        writeln!(
            out,
            "  {:<22} {:>12} {:>12}  status",
            "kpi", "value", "target"
        )?;
        for k in c["kpis"].as_array().into_iter().flatten() {
            let name = k["kpi"].as_str().unwrap_or("?");
            let value = num(&k["value"]).map_or("-".into(), |v| format!("{v:.4}"));
            let target = format!(
                "{} {}",
                k["comparison"].as_str().unwrap_or(""),
                num(&k["target"]).unwrap_or(0.0)
            );
            let status = match k["status"].as_str() {
                Some("pass") => "met",
                Some("fail") => "NOT MET",
                _ => "no data",
            };
            writeln!(out, "  {name:<22} {value:>12} {target:>12}  {status}")?;
        }
        let met = c["targets_met"].as_bool().unwrap_or(false);
        writeln!(out, "  targets {}", if met { "met" } else { "NOT met" })?;
        recent::render_chain(&mut out, c)?;
        writeln!(out)?;
    }
    Ok(out)
}
