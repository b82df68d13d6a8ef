//! `GET /api/v1/history?window=1h&service=…&chain=…`: the KPI windows slot
//! by slot, per chain (see `aggregate::history` for why slots and what a
//! point covers). The live page draws its charts from it.

use crate::aggregate::history::HistorySnapshots;
use crate::aggregate::window::{parse_window, Window};
use crate::pipeline::Pipeline;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The windows with a ring of slots (`all` has none).
pub const HISTORY_WINDOWS: [&str; 4] = ["1m", "5m", "15m", "1h"];
pub const DEFAULT_HISTORY_WINDOW: &str = "1h";

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    pub window: Window,
    pub service: Option<String>,
    pub chain: Option<String>,
}

impl HistoryQuery {
    pub fn parse(params: &HashMap<String, String>) -> Result<HistoryQuery, String> {
        const ALLOWED: [&str; 3] = ["window", "service", "chain"];
        let mut unknown: Vec<&String> = params
            .keys()
            .filter(|k| !ALLOWED.contains(&k.as_str()))
            .collect();
        unknown.sort_unstable();
        if let Some(k) = unknown.first() {
            return Err(format!(
                "unknown parameter {k:?}; accepted: {}",
                ALLOWED.join(", ")
            ));
        }
        let label = params
            .get("window")
            .filter(|w| !w.is_empty())
            .map_or(DEFAULT_HISTORY_WINDOW, String::as_str);
        if !HISTORY_WINDOWS.contains(&label) {
            let shown: String = label.chars().take(32).collect();
            return Err(format!(
                "window {shown:?} has no history; accepted windows: {}",
                HISTORY_WINDOWS.join(", ")
            ));
        }
        let window = parse_window(label).map_err(|e| e.to_string())?;
        let pick = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
        Ok(HistoryQuery {
            window,
            service: pick("service"),
            chain: pick("chain"),
        })
    }

    /// Slots cloned under the (paced) aggregator lock, points built after.
    pub async fn run(&self, pipeline: &Pipeline) -> Value {
        let taken = pipeline
            .read_aggregator(|a| {
                HistorySnapshots::take(
                    a.kpi(),
                    self.window,
                    self.service.as_deref(),
                    self.chain.as_deref(),
                )
            })
            .await;
        match taken {
            Some(h) => json!({
                "window": self.window.to_string(),
                "slot_seconds": h.slot_seconds(),
                "chains": h.build(),
            }),
            // Unreachable after `parse` (every accepted window has a ring),
            // but answered rather than assumed.
            None => {
                json!({ "window": self.window.to_string(), "slot_seconds": null, "chains": [] })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_are_checked() {
        let q = HistoryQuery::parse(&params(&[])).expect("defaults");
        assert_eq!(q.window.to_string(), "1h");
        let q = HistoryQuery::parse(&params(&[("window", "5m"), ("chain", "c")])).expect("ok");
        assert_eq!(
            (q.window.to_string(), q.chain.as_deref()),
            ("5m".into(), Some("c"))
        );
        let e = HistoryQuery::parse(&params(&[("window", "all")])).unwrap_err();
        assert_eq!(
            e,
            "window \"all\" has no history; accepted windows: 1m, 5m, 15m, 1h"
        );
        let e = HistoryQuery::parse(&params(&[("windw", "1h")])).unwrap_err();
        assert!(e.starts_with("unknown parameter \"windw\""), "{e}");
    }
}
