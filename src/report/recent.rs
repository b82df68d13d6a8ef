//! The "recent" block of `chainpulse report`: per chain, the slowest, the
//! costliest and the latest failed requests of the window, each with its
//! trace id and (when `[links]` is configured on the instance) its link —
//! read from the KPI API's `recent` field, so the report shows exactly what
//! the API and the page show.

use std::fmt::Write;

/// At most this many rows per list in the report (the API keeps
/// `kpi.recent_per_list`).
const ROWS: usize = 3;

/// Appends the recent lists of one chain object of `/api/v1/kpis`.
pub fn render_chain(out: &mut String, chain: &serde_json::Value) -> std::fmt::Result {
    let recent = &chain["recent"];
    let lists = [
        ("slowest", &recent["slowest"]),
        ("costliest", &recent["costliest"]),
        ("failed", &recent["failed"]),
    ];
    if lists
        .iter()
        .all(|(_, l)| l.as_array().is_none_or(|a| a.is_empty()))
    {
        return Ok(());
    }
    writeln!(out, "  recent requests")?;
    for (name, list) in lists {
        for (i, r) in list.as_array().into_iter().flatten().take(ROWS).enumerate() {
            let label = if i == 0 { name } else { "" };
            let cost = r["cost_usd"]
                .as_f64()
                .map_or("unpriced".to_owned(), |c| format!("${c:.6}"));
            let error = r["error_type"]
                .as_str()
                .map(|e| format!("  {e}"))
                .unwrap_or_default();
            let trace = r["trace_url"]
                .as_str()
                .or(r["trace_id"].as_str())
                .unwrap_or("?");
            writeln!(
                out,
                "    {label:<10} {:>9.3}s {cost:>11}{error}  {trace}",
                r["duration_seconds"].as_f64().unwrap_or(0.0),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_each_kind_with_its_link_or_trace_id() {
        let chain = serde_json::json!({"recent": {
            "slowest": [{"trace_id": "ab", "duration_seconds": 4.5, "cost_usd": null,
                          "error_type": "RateLimitError", "trace_url": "http://jaeger/trace/ab"}],
            "costliest": [{"trace_id": "cd", "duration_seconds": 0.25, "cost_usd": 0.0123,
                            "error_type": null, "trace_url": null}],
            "failed": []
        }});
        let mut out = String::new();
        render_chain(&mut out, &chain).expect("render");
        assert_eq!(
            out,
            "  recent requests\n    slowest        4.500s    unpriced  RateLimitError  http://jaeger/trace/ab\n    costliest      0.250s   $0.012300  cd\n"
        );
        let mut empty = String::new();
        render_chain(&mut empty, &serde_json::json!({"recent": {"slowest": []}})).expect("render");
        assert!(empty.is_empty());
    }
}
