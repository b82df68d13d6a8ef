//! Helpers shared by the integration tests.
#![allow(dead_code)]
pub mod upstream;

use chainpulse::config::Config;
use chainpulse::export::text::{self, Sample};
use chainpulse::server::Server;
use std::time::Duration;

pub const DIALECTS: [&str; 3] = ["openinference", "openllmetry", "langsmith"];

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A config listening on ephemeral loopback ports.
pub fn test_config() -> Config {
    let mut c = Config::default();
    let lo = |p| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    c.server.grpc_addr = lo(0);
    c.server.http_addr = lo(0);
    c.server.metrics_addr = lo(0);
    c.assembly.trace_timeout_ms = 500;
    c
}

pub async fn start(config: Config) -> Server {
    Server::start(&config).await.expect("server starts")
}

pub async fn scrape(server: &Server) -> Vec<Sample> {
    let url = format!("http://{}/metrics", server.addrs().metrics);
    let body = reqwest::get(&url)
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    text::parse(&body)
}

pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    text::sum(samples, name, labels)
}

/// Polls /metrics until `cond` holds (exports are acknowledged before the
/// response, so this is rarely needed beyond the first scrape).
pub async fn scrape_until(server: &Server, cond: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let mut last = Vec::new();
    for _ in 0..100 {
        last = scrape(server).await;
        if cond(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}
