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
    telemetry::init_logging(config.log.format);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.worker_threads)
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
            Some(Command::CheckConfig { .. }) => Ok(()),
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
