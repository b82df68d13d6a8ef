//! `chainpulse report`: the KPI table of a running instance, from its KPI API.

pub mod recent;

use anyhow::{bail, Context};
use std::fmt::Write;

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// Base URL of the instance's metrics / API listener.
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    pub url: String,
    /// Window: 1m, 5m, 15m, 1h or all.
    #[arg(long, default_value = "5m")]
    pub window: String,
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only this chain.
    #[arg(long)]
    pub chain: Option<String>,
}

pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
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
