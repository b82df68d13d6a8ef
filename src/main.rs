//! The `chainpulse` command.

use anyhow::Context;
use chainpulse::config::{Config, Overrides};
use chainpulse::server::{termination_signal, Server};
use chainpulse::{demo, loadgen, report, telemetry};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Observability sidecar for LLM chain applications: OTLP traces in,
/// chain-run KPIs out (Prometheus on :9464/metrics).
#[derive(Parser, Debug)]
#[command(name = "chainpulse", version, about)]
struct Cli {
    /// TOML configuration file (optional: every key has a default).
    #[arg(long, global = true, env = "CHAINPULSE_CONFIG")]
    config: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 0.0.0.0:4317].
    #[arg(long, global = true, env = "CHAINPULSE_GRPC_ADDR")]
    grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 0.0.0.0:4318].
    #[arg(long, global = true, env = "CHAINPULSE_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Metrics / health / API listen address [default: 0.0.0.0:9464].
    #[arg(long, global = true, env = "CHAINPULSE_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Forward every trace to this OTLP endpoint (repeatable; comma-separated
    /// in the environment): grpc://host:4317, grpcs://host:443 (TLS), or
    /// http(s)://host:4318/v1/traces. Memory queue; use the config file's
    /// [[forward.destinations]] for disk queues, headers and presets.
    #[arg(
        long = "forward",
        global = true,
        env = "CHAINPULSE_FORWARD",
        value_delimiter = ','
    )]
    forward: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the collector (the default).
    Run,
    /// Run the collector and drive it with synthetic LCEL-shaped traces sent
    /// through the OpenTelemetry Rust SDK, printing live KPIs.
    Demo(demo::DemoArgs),
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the KPI table (latency, throughput, errors, tokens, cost,
    /// targets met) of a running instance.
    Report(report::ReportArgs),
    /// Send the captured fixtures to a running collector, fast, and report
    /// throughput and export latency.
    Loadgen(loadgen::LoadgenArgs),
    /// Show what a model name is charged: the price entry it resolves to,
    /// every rate, the source and its version, or why it is unpriced (with
    /// the configuration's overrides and aliases applied).
    Prices(PricesArgs),
}

#[derive(clap::Args, Debug)]
struct PricesArgs {
    /// Model name as found on spans (e.g. gpt-4o-2024-08-06,
    /// us.anthropic.claude-sonnet-4-5-20250929-v1:0).
    #[arg(required_unless_present = "list")]
    model: Option<String>,
    /// Provider reported with the call (openai, aws.bedrock, azure...).
    #[arg(long)]
    provider: Option<String>,
    /// Price in force on this date (YYYY-MM-DD) [default: today].
    #[arg(long)]
    at: Option<String>,
    /// List every entry with its current base rates.
    #[arg(long, conflicts_with = "model")]
    list: bool,
    /// Print JSON (the same as GET /api/v1/prices on the metrics port).
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        grpc_addr: cli.grpc_addr,
        http_addr: cli.http_addr,
        metrics_addr: cli.metrics_addr,
        forward: cli.forward.clone(),
    };
    let env = std::env::vars().filter(|(k, _)| k.starts_with("CHAINPULSE_"));

    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match Config::load(Some(file), env, &overrides)
            .and_then(|c| c.check_files().map(|()| c))
        {
            Ok(config) => {
                println!("# {} is valid; effective configuration:", file.display());
                for note in config.slo.latency_targets_off_edges() {
                    println!("# note: {note}");
                }
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("chainpulse: invalid configuration: {e}");
                ExitCode::from(2)
            }
        };
    }

    let config = match Config::load(cli.config.as_deref(), env, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chainpulse: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Prices(args)) = &cli.command {
        return prices(&config, args);
    }
    telemetry::init_logging(config.log.format);
    for note in config.slo.latency_targets_off_edges() {
        tracing::warn!("{note}");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.runtime_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chainpulse: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None | Some(Command::Run) => run(config).await,
            Some(Command::Demo(args)) => demo::run(config, args).await,
            Some(Command::Loadgen(args)) => loadgen::run(args).await,
            Some(Command::Report(args)) => report::run(args).await,
            Some(Command::CheckConfig { .. } | Command::Prices(_)) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "chainpulse failed");
            eprintln!("chainpulse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let server = Server::start(&config)
        .await
        .context("starting chainpulse")?;
    termination_signal().await;
    server.shutdown().await
}

/// `chainpulse prices`: no runtime, no listeners; prints and exits.
fn prices(config: &Config, args: &PricesArgs) -> ExitCode {
    use chainpulse::pricing::{view, At, PriceTable};
    let table = match PriceTable::from_config(&config.pricing) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("chainpulse: invalid pricing configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let at = match args.at.as_deref() {
        None => At::now(),
        Some(s) => match At::parse_date(s) {
            Some(at) => at,
            None => {
                eprintln!("chainpulse: --at: expected YYYY-MM-DD, got {s:?}");
                return ExitCode::from(2);
            }
        },
    };
    let provider = args.provider.as_deref();
    let (text, priced) = match (&args.model, args.json) {
        (Some(model), true) => {
            let v = view::lookup_json(&table, provider, model, at);
            let priced = v["priced"].as_bool().unwrap_or(false);
            (format!("{v:#}\n"), priced)
        }
        (Some(model), false) => (
            view::lookup_text(&table, provider, model, at),
            table.lookup(provider, model).is_some(),
        ),
        (None, true) => (format!("{:#}\n", view::list_json(&table, at)), true),
        (None, false) => (view::list_text(&table, at), true),
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    // Unpriced is an answer, not an error; exit 1 lets scripts tell.
    if priced {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
