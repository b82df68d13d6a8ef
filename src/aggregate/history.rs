//! The KPI windows slot by slot: a time series per (service, chain) for the
//! live page's charts (`GET /api/v1/history`).
//!
//! The rings in `super::window` already hold the last hour as slots (10 ×
//! 360 s, 10 × 90 s, 10 × 30 s, 6 × 10 s); the KPI API merges them into one
//! figure per window. Reading them one slot at a time gives the history of
//! the same figures at no extra memory: no second store, nothing sampled on a
//! timer, and the points of a window add up to exactly what the KPI API says
//! for that window (same slots, same periods; the test
//! `points_add_up_to_the_window` checks it). The price is the resolution: a
//! point is one slot, so the `1h` history has 6-minute points.
//!
//! Like the KPI API, the slots are cloned under the aggregator lock
//! ([`HistorySnapshots`]) and turned into points (quantiles, ratios) after
//! it is released.

use super::kpi::KpiTracker;
use super::kpi::LatencyQuantiles;
use super::window::{Slot, Window};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// One slot of one chain's ring.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPoint {
    /// When the slot starts, wall clock (to within a second: the windows
    /// run on a monotonic clock in whole seconds).
    pub start_unix_ms: u64,
    /// Seconds of the slot that lie between the chain's first request and
    /// now: the slot width, less for the current slot and the first one.
    /// `0` for a slot before the chain was first seen (no data, not zero).
    pub covered_seconds: u64,
    pub requests: u64,
    pub errors: u64,
    /// `requests / covered_seconds`; `None` when nothing of the slot is
    /// covered yet.
    pub throughput_rps: Option<f64>,
    /// `None` without requests.
    pub error_rate: Option<f64>,
    pub latency_seconds: LatencyQuantiles,
    /// Cost of every priced call, as `cost_usd` in the KPI API.
    pub cost_usd: f64,
    pub tokens_input: u64,
    pub tokens_output: u64,
    pub unpriced_requests: u64,
}

/// The history of one (service, chain) over one window.
#[derive(Debug, Clone, Serialize)]
pub struct ChainHistory {
    pub service: String,
    pub chain: String,
    /// Oldest first; the last point is the current, partial slot.
    pub points: Vec<HistoryPoint>,
}

/// The slots taken under the aggregator lock.
pub struct HistorySnapshots {
    now_secs: u64,
    now_unix_ms: u64,
    slot_seconds: u64,
    chains: Vec<ChainSlots>,
}

struct ChainSlots {
    service: String,
    chain: String,
    start_secs: u64,
    slots: Vec<(u64, Option<Slot>)>,
}

impl HistorySnapshots {
    /// Clones the slots of `window`'s ring for every chain that passes the
    /// filters. `None` for a window with no ring (`all`).
    pub fn take(
        kpi: &KpiTracker,
        window: Window,
        service: Option<&str>,
        chain: Option<&str>,
    ) -> Option<HistorySnapshots> {
        let now_secs = kpi.now_secs();
        let now_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut slot_seconds = None;
        let mut chains = Vec::new();
        for (s, c, stats, _) in kpi.chains() {
            if service.is_some_and(|f| f != s) || chain.is_some_and(|f| f != c) {
                continue;
            }
            let (width, slots) = stats.slots(window, now_secs)?;
            slot_seconds = Some(width);
            chains.push(ChainSlots {
                service: s.to_owned(),
                chain: c.to_owned(),
                start_secs: stats.start_secs(),
                slots: slots
                    .into_iter()
                    .map(|(start, slot)| (start, slot.cloned()))
                    .collect(),
            });
        }
        let slot_seconds = match slot_seconds {
            Some(w) => w,
            // No chain yet: the width the rings would use for this window.
            None => {
                super::window::WindowedStats::new(0)
                    .slots(window, now_secs)?
                    .0
            }
        };
        Some(HistorySnapshots {
            now_secs,
            now_unix_ms,
            slot_seconds,
            chains,
        })
    }

    /// The width of one point, in seconds.
    pub fn slot_seconds(&self) -> u64 {
        self.slot_seconds
    }

    /// The points, chains sorted by (service, chain) as in the KPI API.
    pub fn build(self) -> Vec<ChainHistory> {
        let width = self.slot_seconds;
        let mut out: Vec<ChainHistory> = self
            .chains
            .into_iter()
            .map(|c| ChainHistory {
                points: c
                    .slots
                    .iter()
                    .map(|(start, slot)| {
                        let from = (*start).max(c.start_secs);
                        let to = (start + width).min(self.now_secs);
                        let covered = to.saturating_sub(from);
                        let age_ms = self.now_secs.saturating_sub(*start) * 1000;
                        point(
                            self.now_unix_ms.saturating_sub(age_ms),
                            covered,
                            slot.as_ref(),
                        )
                    })
                    .collect(),
                service: c.service,
                chain: c.chain,
            })
            .collect();
        out.sort_by(|a, b| (&a.service, &a.chain).cmp(&(&b.service, &b.chain)));
        out
    }
}

fn point(start_unix_ms: u64, covered: u64, slot: Option<&Slot>) -> HistoryPoint {
    let Some(s) = slot else {
        return HistoryPoint {
            start_unix_ms,
            covered_seconds: covered,
            requests: 0,
            errors: 0,
            throughput_rps: (covered > 0).then_some(0.0),
            error_rate: None,
            latency_seconds: LatencyQuantiles {
                p50: None,
                p95: None,
                p99: None,
            },
            cost_usd: 0.0,
            tokens_input: 0,
            tokens_output: 0,
            unpriced_requests: 0,
        };
    };
    HistoryPoint {
        start_unix_ms,
        covered_seconds: covered,
        requests: s.requests,
        errors: s.errors,
        throughput_rps: (covered > 0).then(|| s.requests as f64 / covered as f64),
        error_rate: s.error_rate(),
        latency_seconds: LatencyQuantiles {
            p50: s.latency.quantile(0.50),
            p95: s.latency.quantile(0.95),
            p99: s.latency.quantile(0.99),
        },
        cost_usd: s.cost_usd + s.partial_cost_usd,
        tokens_input: s.tokens_in,
        tokens_output: s.tokens_out,
        unpriced_requests: s.unpriced_requests,
    }
}

#[cfg(test)]
mod tests {
    use super::super::window::{parse_window, Sample, WindowedStats};
    use super::*;

    fn sample(latency_s: f64, error: bool) -> Sample {
        Sample {
            latency_s,
            error,
            tokens_in: 3,
            tokens_out: 4,
            cost_usd: Some(0.25),
            partial_cost_usd: 0.0,
            cache_hit: None,
        }
    }

    #[test]
    fn points_add_up_to_the_window() {
        // Traffic over 2 h, so every ring has wrapped; the points of each
        // window must add up to the window's snapshot, slot for slot.
        let mut w = WindowedStats::new(0);
        for t in (0..7_200u64).step_by(7) {
            w.record(t, sample(0.1 + (t % 13) as f64 / 10.0, t % 5 == 0));
        }
        for now in [7_199u64, 7_230] {
            for (label, width, len) in [
                ("1m", 10, 6),
                ("5m", 30, 10),
                ("15m", 90, 10),
                ("1h", 360, 10),
            ] {
                let window = parse_window(label).expect("accepted");
                let (got_width, slots) = w.slots(window, now).expect("ring");
                assert_eq!((got_width, slots.len()), (width, len), "{label}");
                let snap = w.snapshot(window, now);
                let requests: u64 = slots
                    .iter()
                    .filter_map(|(_, s)| *s)
                    .map(|s| s.requests)
                    .sum();
                let errors: u64 = slots.iter().filter_map(|(_, s)| *s).map(|s| s.errors).sum();
                let cost: f64 = slots
                    .iter()
                    .filter_map(|(_, s)| *s)
                    .map(|s| s.cost_usd)
                    .sum();
                assert_eq!(requests, snap.stats.requests, "{label} at {now}");
                assert_eq!(errors, snap.stats.errors, "{label} at {now}");
                assert!((cost - snap.stats.cost_usd).abs() < 1e-9, "{label}");
                // Oldest first, consecutive, the last one holding `now`.
                let last = slots.last().expect("slots").0;
                assert!(last <= now && now < last + width, "{label}");
                for pair in slots.windows(2) {
                    assert_eq!(pair[1].0, pair[0].0 + width);
                }
            }
        }
        assert!(w.slots(Window::SinceStart, 7_199).is_none());
    }

    #[test]
    fn points_say_what_is_covered() {
        // A chain first seen at t=100; queried at t=125 with the 1m ring.
        let mut w = WindowedStats::new(100);
        w.record(100, sample(1.0, false));
        w.record(112, sample(2.0, true));
        w.record(112, sample(4.0, false));
        let (width, slots) = w.slots(parse_window("1m").expect("ok"), 125).expect("ring");
        let pts: Vec<HistoryPoint> = slots
            .iter()
            .map(|(start, s)| {
                let covered = (start + width).min(125).saturating_sub((*start).max(100));
                point(*start * 1000, covered, *s)
            })
            .collect();
        // Periods 70, 80, 90 are before the chain: no data, not zero.
        assert_eq!(pts[0].start_unix_ms, 70_000);
        assert_eq!(pts[0].covered_seconds, 0);
        assert_eq!(pts[0].throughput_rps, None);
        assert_eq!(pts[3].requests, 1);
        assert_eq!(pts[3].throughput_rps, Some(0.1));
        assert_eq!(pts[4].requests, 2);
        assert_eq!(pts[4].error_rate, Some(0.5));
        assert_eq!(pts[4].latency_seconds.p99, Some(4.0));
        assert!((pts[4].cost_usd - 0.5).abs() < 1e-12);
        // The current slot [120, 130) is 5 s old and empty.
        assert_eq!(pts[5].covered_seconds, 5);
        assert_eq!(pts[5].throughput_rps, Some(0.0));
        assert_eq!(pts[5].latency_seconds.p50, None);
    }
}
