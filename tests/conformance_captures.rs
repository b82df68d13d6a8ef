//! The conformance suite's captures (what 15 real instrumentations sent,
//! `tests/fixtures/conformance/*.json`) replayed through the in-process
//! pipeline, figure by figure against a reviewed summary per suite
//! (`*.figures.txt`).
//!
//! The live suite (`tests/conformance`, Python and Node apps exporting to the
//! binary) is the proof against each library's ground truth; this replay is
//! the fast net that keeps those figures from drifting when normalization or
//! aggregation changes (efficiency work must leave every line unchanged). It
//! replays each export in order with no timeouts, so it also pins the
//! assembly rules (orphaned provider spans, late roots) deterministically.
//! After a deliberate rule change, regenerate with
//! `CHAINPULSE_UPDATE_FIGURES=1 cargo test --test conformance_captures` and
//! review the diff against the live suite's expectations.

use chainpulse::config::Config;
use chainpulse::export::text::{self, Sample};
use chainpulse::export::Registry;
use chainpulse::pipeline::Pipeline;
use chainpulse::receive::{json, Protocol};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conformance")
}

/// The config the live suite runs with (inline test prices).
fn config() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/prices.toml");
    let text = std::fs::read_to_string(&path).expect("prices.toml");
    toml::from_str(&text).expect("prices.toml is a chainpulse config")
}

/// One line per figure the live suite checks, sorted.
fn figures(samples: &[Sample]) -> String {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    let mut add = |key: String, v: f64| *out.entry(key).or_default() += v;
    for s in samples {
        let l = |k: &str| s.label(k).unwrap_or("").to_owned();
        match s.name.as_str() {
            "chainpulse_requests_total" => add(
                format!("requests {} {} {}", l("service"), l("chain"), l("status")),
                s.value,
            ),
            "chainpulse_llm_calls_total" => add(
                format!(
                    "llm_calls {} {} {} {}",
                    l("chain"),
                    l("provider"),
                    l("model"),
                    l("status")
                ),
                s.value,
            ),
            "chainpulse_llm_tokens_total" => add(
                format!("tokens {} {} {}", l("chain"), l("model"), l("type")),
                s.value,
            ),
            "chainpulse_llm_cost_usd_total" => {
                add(format!("cost {} {}", l("chain"), l("model")), s.value)
            }
            "chainpulse_errors_total" => {
                add(format!("errors {} {}", l("kind"), l("error_type")), s.value)
            }
            "chainpulse_runs_total" => add(format!("runs {} {}", l("kind"), l("status")), s.value),
            "chainpulse_llm_time_to_first_token_seconds_count" => {
                add(format!("ttft {} {}", l("chain"), l("model")), s.value)
            }
            "chainpulse_llm_usage_missing_total" => {
                add(format!("usage_missing {}", l("model")), s.value)
            }
            "chainpulse_llm_unpriced_calls_total" => {
                add(format!("unpriced {}", l("model")), s.value)
            }
            "chainpulse_assembly_orphans_adopted_total" => add("orphans_adopted".into(), s.value),
            _ => {}
        }
    }
    out.into_iter()
        .filter(|(_, v)| *v != 0.0)
        .map(|(k, v)| format!("{k} = {}\n", (v * 1e9).round() / 1e9))
        .collect()
}

async fn replay(capture: &Path) -> String {
    let registry = Arc::new(Registry::new());
    let pipeline = Pipeline::new(&config(), registry.clone(), None).expect("pipeline");
    let text = std::fs::read_to_string(capture).expect("capture");
    let requests: Vec<serde_json::Value> = serde_json::from_str(&text).expect("a JSON array");
    for req in requests {
        let body = json::to_protobuf(&serde_json::to_vec(&req).expect("json")).expect("OTLP/JSON");
        let slot = pipeline.try_begin(Protocol::HttpJson).expect("admitted");
        pipeline
            .ingest(&slot, Protocol::HttpJson, body)
            .await
            .expect("accepted");
    }
    pipeline.drain();
    registry.run_upkeep();
    figures(&text::parse(&registry.render()))
}

#[tokio::test]
async fn every_capture_gives_its_reviewed_figures() {
    let update = std::env::var_os("CHAINPULSE_UPDATE_FIGURES").is_some();
    let mut captures: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("captures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".json") && !name.ends_with(".truth.json")
        })
        .collect();
    captures.sort();
    assert!(captures.len() >= 15, "captures present: {captures:?}");
    let mut failures = Vec::new();
    for capture in &captures {
        let got = replay(capture).await;
        let expected_path = capture.with_extension("figures.txt");
        if update {
            std::fs::write(&expected_path, &got).expect("write figures");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                capture.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
