//! The recent requests worth opening, per chain: the slowest, the costliest
//! and the latest failed, each with its trace id so the KPI API and
//! `chainpulse report` can link to the trace.
//!
//! Memory is bounded per chain and the chains are the KPI tracker's own
//! (capped, `__overflow__` past the cap): `n` (`kpi.recent_per_list`)
//! requests per list per one-minute slot over the last hour, plus `n` per
//! list since start and the `n` latest failures — at most `(2 × 60 + 3) × n`
//! records of about 100 bytes each.
//!
//! Why slots: "the slowest of the last 5 minutes" must forget a slow request
//! once it is older than the window, which one global top-`n` cannot do. A
//! window's answer merges the slots it overlaps and keeps only requests
//! *seen* inside the window (the same arrival clock as the KPI windows), so
//! every request listed is really in the window and really as slow as shown;
//! what a partial first slot may lack is a request that ranked below `n`
//! others of that minute which have since left the window.

use std::sync::Arc;

/// One-minute slots over the longest window (1 h).
const SLOT_SECS: u64 = 60;
const SLOTS: usize = 60;

/// One request as the recent lists keep it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentRequest {
    pub trace_id: [u8; 16],
    /// The request's root span.
    pub span_id: [u8; 8],
    /// When it ended, by the client's clock (Unix ms).
    pub ended_at_unix_ms: u64,
    pub duration_seconds: f64,
    /// `None` when any of its LLM calls was unpriced.
    pub cost_usd: Option<f64>,
    pub error_type: Option<Arc<str>>,
    /// Failed (with or without an exception class).
    pub error: bool,
    /// Tracker seconds when it was recorded (the window clock).
    pub seen_secs: u64,
}

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecentBy {
    Slowest,
    Costliest,
    Failed,
}

impl RecentBy {
    pub fn parse(s: &str) -> Result<RecentBy, String> {
        match s {
            "slowest" => Ok(RecentBy::Slowest),
            "costliest" => Ok(RecentBy::Costliest),
            "failed" => Ok(RecentBy::Failed),
            other => Err(format!(
                "by={other:?} is not one of slowest, costliest, failed"
            )),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Slot {
    /// Which minute (tracker seconds / 60) the slot holds.
    minute: u64,
    slowest: Vec<RecentRequest>,
    costliest: Vec<RecentRequest>,
}

/// The recent lists of one chain.
#[derive(Debug, Clone)]
pub struct RecentRequests {
    n: usize,
    /// Allocated on first use: most chains are quiet most minutes.
    slots: Vec<Slot>,
    all_slowest: Vec<RecentRequest>,
    all_costliest: Vec<RecentRequest>,
    /// Newest last.
    failed: std::collections::VecDeque<RecentRequest>,
}

fn duration_key(r: &RecentRequest) -> f64 {
    r.duration_seconds
}

fn cost_key(r: &RecentRequest) -> f64 {
    r.cost_usd.unwrap_or(f64::NEG_INFINITY)
}

/// Keeps the `n` largest by `key` in `list` (largest first).
fn keep_top(
    list: &mut Vec<RecentRequest>,
    r: &RecentRequest,
    n: usize,
    key: fn(&RecentRequest) -> f64,
) {
    let k = key(r);
    if list.len() >= n && list.last().is_some_and(|l| key(l) >= k) {
        return;
    }
    let at = list.partition_point(|l| key(l) >= k);
    list.insert(at, r.clone());
    list.truncate(n);
}

impl RecentRequests {
    pub fn new(n: usize) -> Self {
        RecentRequests {
            n: n.max(1),
            slots: Vec::new(),
            all_slowest: Vec::new(),
            all_costliest: Vec::new(),
            failed: std::collections::VecDeque::new(),
        }
    }

    pub fn record(&mut self, r: RecentRequest) {
        let n = self.n;
        let minute = r.seen_secs / SLOT_SECS;
        if self.slots.is_empty() {
            self.slots = vec![Slot::default(); SLOTS];
        }
        let slot = &mut self.slots[(minute % SLOTS as u64) as usize];
        if slot.minute != minute {
            slot.minute = minute;
            slot.slowest.clear();
            slot.costliest.clear();
        }
        keep_top(&mut slot.slowest, &r, n, duration_key);
        keep_top(&mut self.all_slowest, &r, n, duration_key);
        if r.cost_usd.is_some() {
            keep_top(&mut slot.costliest, &r, n, cost_key);
            keep_top(&mut self.all_costliest, &r, n, cost_key);
        }
        if r.error {
            if self.failed.len() >= n {
                self.failed.pop_front();
            }
            self.failed.push_back(r);
        }
    }

    /// One list for requests seen after `since_secs` (`None`: since start),
    /// at most `n`, in the list's order.
    pub fn list(&self, by: RecentBy, since_secs: Option<u64>, now_secs: u64) -> Vec<RecentRequest> {
        let inside = |r: &RecentRequest| since_secs.is_none_or(|s| r.seen_secs >= s);
        match by {
            RecentBy::Failed => self
                .failed
                .iter()
                .rev()
                .filter(|r| inside(r))
                .cloned()
                .collect(),
            RecentBy::Slowest | RecentBy::Costliest => {
                let (all, key): (&Vec<RecentRequest>, fn(&RecentRequest) -> f64) = match by {
                    RecentBy::Slowest => (&self.all_slowest, duration_key),
                    _ => (&self.all_costliest, cost_key),
                };
                let Some(since) = since_secs else {
                    return all.clone();
                };
                let first = since / SLOT_SECS;
                let now_minute = now_secs / SLOT_SECS;
                let mut out: Vec<RecentRequest> = Vec::new();
                for slot in &self.slots {
                    if slot.minute < first || slot.minute > now_minute {
                        continue;
                    }
                    let l = if by == RecentBy::Slowest {
                        &slot.slowest
                    } else {
                        &slot.costliest
                    };
                    for r in l.iter().filter(|r| inside(r)) {
                        keep_top(&mut out, r, self.n, key);
                    }
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(i: u8, seen: u64, dur: f64, cost: Option<f64>, error: bool) -> RecentRequest {
        RecentRequest {
            trace_id: [i; 16],
            span_id: [i; 8],
            ended_at_unix_ms: 1_764_640_000_000 + u64::from(i),
            duration_seconds: dur,
            cost_usd: cost,
            error_type: error.then(|| Arc::from("RateLimitError")),
            error,
            seen_secs: seen,
        }
    }

    fn ids(v: &[RecentRequest]) -> Vec<u8> {
        v.iter().map(|r| r.trace_id[0]).collect()
    }

    #[test]
    fn keeps_the_n_slowest_costliest_and_latest_failed() {
        let mut r = RecentRequests::new(2);
        r.record(req(1, 10, 1.0, Some(0.01), false));
        r.record(req(2, 11, 5.0, None, true));
        r.record(req(3, 12, 3.0, Some(0.05), false));
        r.record(req(4, 13, 0.5, Some(0.02), true));
        r.record(req(5, 14, 0.1, Some(0.001), true));
        assert_eq!(ids(&r.list(RecentBy::Slowest, Some(0), 20)), [2, 3]);
        assert_eq!(ids(&r.list(RecentBy::Costliest, Some(0), 20)), [3, 4]);
        assert_eq!(ids(&r.list(RecentBy::Failed, Some(0), 20)), [5, 4]);
        assert_eq!(ids(&r.list(RecentBy::Slowest, None, 20)), [2, 3]);
    }

    #[test]
    fn a_window_forgets_what_is_older() {
        let mut r = RecentRequests::new(3);
        r.record(req(1, 0, 9.0, Some(9.0), true));
        r.record(req(2, 400, 1.0, Some(0.1), false));
        r.record(req(3, 500, 2.0, Some(0.2), false));
        // 5 minutes before t=600: the slow request seen at t=0 is out.
        let since = Some(600 - 300);
        assert_eq!(ids(&r.list(RecentBy::Slowest, since, 600)), [3, 2]);
        assert_eq!(ids(&r.list(RecentBy::Costliest, since, 600)), [3, 2]);
        assert!(r.list(RecentBy::Failed, since, 600).is_empty());
        // Since start it is still the slowest.
        assert_eq!(ids(&r.list(RecentBy::Slowest, None, 600)), [1, 3, 2]);
        // An hour later its slot was reused: the 1 h window does not see it.
        r.record(req(4, 3600 + 30, 0.2, None, false));
        assert_eq!(
            ids(&r.list(RecentBy::Slowest, Some(3630 - 3600), 3630)),
            [3, 2, 4]
        );
    }
}
