//! Sliding-window KPI aggregates in bounded memory.
//!
//! The KPI API answers "what happened in the last 1m / 5m / 15m / 1h" and
//! "since start". Keeping raw samples would make memory proportional to
//! traffic, so instead time is cut into fixed-width slots, each holding a
//! small aggregate ([`Slot`]), and a window is answered by merging the slots
//! it covers. Old slots are never swept: a slot remembers which period
//! (`epoch`) it holds, queries skip slots whose epoch is out of range, and a
//! slot is cleared lazily the next time a record needs it.
//!
//! # Why several rings
//!
//! The obvious layout, one ring of 360 × 10 s slots, needs 360 latency
//! sketches, each holding most of the latency distribution once traffic is
//! steady. So each supported window gets its own short ring whose slot
//! width divides the window:
//!
//! | ring | slot width | slots | span  | serves   |
//! |------|-----------:|------:|------:|----------|
//! | 0    | 10 s       | 6     | 1 min | `1m`     |
//! | 1    | 30 s       | 10    | 5 min | `5m`     |
//! | 2    | 90 s       | 10    | 15 min| `15m`    |
//! | 3    | 360 s      | 10    | 1 h   | `1h`     |
//!
//! Every record goes into all four rings plus the since-start total (five
//! sketch adds, each a binary search over occupied buckets). 36 slot
//! sketches instead of 360.
//!
//! # Accuracy
//!
//! Every slot sketch and the total use α = 0.5 % ([`SLOT_RELATIVE_ACCURACY`]).
//! Merging sketches of the same layout is exact, so every window's
//! quantiles are within 0.5 % of a real sample of that window, inside the
//! 1 % the KPI API promises (`every_window_is_within_one_percent` checks
//! P50/P95/P99 and every percentile on 100 000 long-tailed samples).
//!
//! # Memory (per `WindowedStats`)
//!
//! Sketches are sparse (see `super::sketch`): 4 bytes per occupied bucket,
//! no heap while empty. Memory therefore follows traffic, not configuration:
//!
//! * idle (never recorded): 320 B, just the inline struct; ring slot arrays
//!   are allocated on a ring's first record (36 × 200 B headers);
//! * 100 000 requests over an hour (~28/s, log-normal around 0.8 s with a
//!   5 % heavy tail): 82 348 B ≈ 80 KiB, of which 7.2 KiB slot headers and
//!   ~18 700 allocated bucket entries, from ~220 per 10 s slot to ~600 per
//!   360 s slot;
//! * sustained heavy traffic, where every slot holds most of the ~640
//!   buckets between 50 ms and 30 s: ~100 KiB (measured at 2 M requests
//!   over two hours);
//! * hard bound, from the per-sketch bucket cap: 37 × ~8 KiB ≈ 300 KiB
//!   (double if every sketch had gone wide), reachable only by latencies
//!   spread over nine decades in every slot.
//!
//! The tests `idle_instance_is_small` and `memory_after_an_hour_of_traffic`
//! check these with [`WindowedStats::memory_bytes`], which counts allocated
//! capacity.
//!
//! # Window edges
//!
//! A `Last(d)` query covers the current, partial slot plus the previous
//! `d / width - 1` full ones, i.e. between `d - width` and `d` seconds. A
//! sample older than `d` is therefore *never* included, and one younger than
//! `d - width` always is. [`WindowSnapshot::covered_secs`] reports the span
//! actually covered, so rates computed from it are not skewed by the edge.

use super::sketch::{QuantileSketch, DEFAULT_RELATIVE_ACCURACY};
use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Relative accuracy of the per-slot latency sketches, the sketch default
/// (0.5 %). Same-layout merges are exact, so every window's quantiles are
/// within 0.5 % of a real sample, well inside the 1 % the KPI API promises;
/// the since-start total uses the same accuracy.
pub const SLOT_RELATIVE_ACCURACY: f64 = DEFAULT_RELATIVE_ACCURACY;

/// `(slot width in seconds, number of slots)` per ring, finest first. Each
/// width divides the window the ring serves, so window edges fall on slot
/// boundaries.
const RINGS: [(u64, usize); 4] = [(10, 6), (30, 10), (90, 10), (360, 10)];

/// The windows `parse_window` accepts, in the order error messages list them.
pub const ACCEPTED_WINDOWS: [&str; 5] = ["1m", "5m", "15m", "1h", "all"];

/// One request-level observation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// End-to-end latency in seconds. Invalid values (NaN, negative) are
    /// still counted as a request but not as a latency.
    pub latency_s: f64,
    pub error: bool,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// `None` when the model has no known price; counted separately so the
    /// API can say how much of the traffic the cost figure covers.
    pub cost_usd: Option<f64>,
    /// When `cost_usd` is `None`: the cost of the calls that *were* priced.
    /// It is part of the chain's cost (as in `chainpulse_llm_cost_usd_total`)
    /// but not of a cost per request.
    pub partial_cost_usd: f64,
    /// `None` when the request did not go through a cache at all.
    pub cache_hit: Option<bool>,
}

/// Tokens and cost of runs released after their request (late spans).
#[derive(Debug, Clone, Copy, Default)]
pub struct LateUsage {
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Priced calls only.
    pub cost_usd: f64,
}

/// Aggregate of the samples in one slot, a window, or since start.
#[derive(Debug, Clone, Serialize)]
pub struct Slot {
    pub requests: u64,
    pub errors: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Sum over priced requests only.
    pub cost_usd: f64,
    /// The priced calls' cost in requests that also had unpriced calls.
    pub partial_cost_usd: f64,
    /// Requests whose cost was unknown (or not a finite, non-negative number).
    pub unpriced_requests: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Serialized as a [`LatencySummary`](super::sketch::LatencySummary)
    /// (count, sum, mean, min, max, p50/p90/p95/p99), not as raw buckets.
    #[serde(serialize_with = "serialize_latency")]
    pub latency: QuantileSketch,
}

impl Slot {
    fn with_accuracy(alpha: f64) -> Self {
        Slot {
            requests: 0,
            errors: 0,
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
            partial_cost_usd: 0.0,
            unpriced_requests: 0,
            cache_hits: 0,
            cache_misses: 0,
            latency: QuantileSketch::with_alpha(alpha),
        }
    }

    /// Folds one sample in. Token counts come from client-supplied spans, so
    /// additions saturate instead of overflowing.
    fn record(&mut self, s: &Sample) {
        self.requests = self.requests.saturating_add(1);
        self.errors = self.errors.saturating_add(u64::from(s.error));
        self.tokens_in = self.tokens_in.saturating_add(s.tokens_in);
        self.tokens_out = self.tokens_out.saturating_add(s.tokens_out);
        match s.cost_usd {
            Some(c) if c.is_finite() && c >= 0.0 => self.cost_usd += c,
            _ => {
                self.unpriced_requests = self.unpriced_requests.saturating_add(1);
                let p = s.partial_cost_usd;
                if p.is_finite() && p > 0.0 {
                    self.partial_cost_usd += p;
                }
            }
        }
        match s.cache_hit {
            Some(true) => self.cache_hits = self.cache_hits.saturating_add(1),
            Some(false) => self.cache_misses = self.cache_misses.saturating_add(1),
            None => {}
        }
        self.latency.add(s.latency_s);
    }

    /// Usage of runs that arrived after their request was counted (late
    /// children): part of the chain's tokens and cost, not a request.
    fn add_usage(&mut self, u: &LateUsage) {
        self.tokens_in = self.tokens_in.saturating_add(u.tokens_in);
        self.tokens_out = self.tokens_out.saturating_add(u.tokens_out);
        if u.cost_usd.is_finite() && u.cost_usd > 0.0 {
            self.partial_cost_usd += u.cost_usd;
        }
    }

    fn merge(&mut self, o: &Slot) {
        self.requests = self.requests.saturating_add(o.requests);
        self.errors = self.errors.saturating_add(o.errors);
        self.tokens_in = self.tokens_in.saturating_add(o.tokens_in);
        self.tokens_out = self.tokens_out.saturating_add(o.tokens_out);
        self.cost_usd += o.cost_usd;
        self.partial_cost_usd += o.partial_cost_usd;
        self.unpriced_requests = self.unpriced_requests.saturating_add(o.unpriced_requests);
        self.cache_hits = self.cache_hits.saturating_add(o.cache_hits);
        self.cache_misses = self.cache_misses.saturating_add(o.cache_misses);
        self.latency.merge(&o.latency);
    }

    fn clear(&mut self) {
        let Slot {
            requests,
            errors,
            tokens_in,
            tokens_out,
            cost_usd,
            partial_cost_usd,
            unpriced_requests,
            cache_hits,
            cache_misses,
            latency,
        } = self;
        // Destructured so adding a field without resetting it fails to compile.
        *requests = 0;
        *errors = 0;
        *tokens_in = 0;
        *tokens_out = 0;
        *cost_usd = 0.0;
        *partial_cost_usd = 0.0;
        *unpriced_requests = 0;
        *cache_hits = 0;
        *cache_misses = 0;
        latency.clear();
    }

    /// `errors / requests`, `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// `hits / (hits + misses)`, `None` if no request touched a cache.
    pub fn cache_hit_ratio(&self) -> Option<f64> {
        let seen = self.cache_hits.saturating_add(self.cache_misses);
        (seen > 0).then(|| self.cache_hits as f64 / seen as f64)
    }

    fn memory_bytes(&self) -> usize {
        // The sketch's inline part is already inside `size_of::<Slot>()`.
        std::mem::size_of::<Self>() + self.latency.memory_bytes()
            - std::mem::size_of::<QuantileSketch>()
    }
}

fn serialize_latency<S: Serializer>(sketch: &QuantileSketch, ser: S) -> Result<S::Ok, S::Error> {
    sketch.summary().serialize(ser)
}

/// Which stretch of time a snapshot covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The trailing duration, whole seconds, clamped to one hour (the longest
    /// ring). Durations shorter than 10 s return the current 10 s slot.
    Last(Duration),
    /// Everything since the `WindowedStats` was created.
    SinceStart,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Window::SinceStart => f.write_str("all"),
            Window::Last(d) => {
                let s = d.as_secs();
                if s > 0 && s % 3600 == 0 {
                    write!(f, "{}h", s / 3600)
                } else if s > 0 && s % 60 == 0 {
                    write!(f, "{}m", s / 60)
                } else {
                    write!(f, "{s}s")
                }
            }
        }
    }
}

/// Serialized as its label (`"5m"`, `"all"`), the same text `parse_window`
/// accepts.
impl Serialize for Window {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(self)
    }
}

/// Returned by [`parse_window`] for anything but the accepted labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseWindowError {
    /// The rejected input, truncated to 32 characters: it comes from a query
    /// string and is echoed back in error messages.
    pub input: String,
}

impl fmt::Display for ParseWindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.input.is_empty() {
            f.write_str("empty window")?;
        } else {
            write!(f, "unknown window {:?}", self.input)?;
        }
        write!(f, "; accepted windows: {}", ACCEPTED_WINDOWS.join(", "))
    }
}

impl std::error::Error for ParseWindowError {}

/// Parses a window label: `1m`, `5m`, `15m`, `1h` or `all`. Exact match, so
/// `"1M"` or `" 1m"` are rejected with a message listing what is accepted.
pub fn parse_window(s: &str) -> Result<Window, ParseWindowError> {
    let secs = match s {
        "1m" => 60,
        "5m" => 300,
        "15m" => 900,
        "1h" => 3600,
        "all" => return Ok(Window::SinceStart),
        _ => {
            return Err(ParseWindowError {
                input: s.chars().take(32).collect(),
            })
        }
    };
    Ok(Window::Last(Duration::from_secs(secs)))
}

impl FromStr for Window {
    type Err = ParseWindowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_window(s)
    }
}

/// The merged aggregate for one window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowSnapshot {
    pub window: Window,
    /// Seconds actually covered: up to the window length, less near start-up
    /// or right after a slot boundary (see the module docs).
    pub covered_secs: u64,
    #[serde(flatten)]
    pub stats: Slot,
}

impl WindowSnapshot {
    /// Requests per second over the covered span; `None` if it is zero.
    pub fn requests_per_sec(&self) -> Option<f64> {
        (self.covered_secs > 0).then(|| self.stats.requests as f64 / self.covered_secs as f64)
    }
}

/// Periods of a ring, oldest first: start second and aggregate (`None`:
/// nothing recorded), as [`WindowedStats::slots`] returns them.
pub type SlotPeriods<'a> = Vec<(u64, Option<&'a Slot>)>;

/// A ring slot: the period it holds plus its aggregate.
#[derive(Debug, Clone)]
struct RingSlot {
    /// `now_secs / width` of the period held; `None` if never used.
    epoch: Option<u64>,
    stats: Slot,
}

#[derive(Debug, Clone)]
struct Ring {
    width: u64,
    /// Number of slots, whether or not they are allocated yet.
    len: usize,
    /// Empty until the first record, so an idle instance costs a few hundred
    /// bytes instead of 36 slot headers.
    slots: Box<[RingSlot]>,
}

impl Ring {
    fn new(width: u64, len: usize) -> Self {
        Ring {
            width,
            len,
            slots: Box::default(),
        }
    }

    fn span_secs(&self) -> u64 {
        self.width * self.len as u64
    }

    fn record(&mut self, now_secs: u64, sample: &Sample) {
        if let Some(slot) = self.slot_at(now_secs) {
            slot.record(sample);
        }
    }

    fn add_usage(&mut self, now_secs: u64, u: &LateUsage) {
        if let Some(slot) = self.slot_at(now_secs) {
            slot.add_usage(u);
        }
    }

    /// The slot for `now_secs`, reset lazily; `None` when the ring has moved
    /// past it.
    fn slot_at(&mut self, now_secs: u64) -> Option<&mut Slot> {
        if self.slots.is_empty() {
            // Empty sketches own no heap: this is one allocation of
            // `len` slot headers, once per ring.
            self.slots = (0..self.len)
                .map(|_| RingSlot {
                    epoch: None,
                    stats: Slot::with_accuracy(SLOT_RELATIVE_ACCURACY),
                })
                .collect();
        }
        let epoch = now_secs / self.width;
        let len = self.slots.len() as u64;
        let slot = &mut self.slots[(epoch % len) as usize];
        match slot.epoch {
            Some(e) if e == epoch => {}
            // The slot already holds a newer period: this sample arrived more
            // than a ring's span late and no window of this ring can contain
            // it any more. It still counts in the since-start total.
            Some(e) if e > epoch => return None,
            // Unused, or holding an expired period: this is the lazy reset.
            _ => {
                slot.stats.clear();
                slot.epoch = Some(epoch);
            }
        }
        Some(&mut slot.stats)
    }

    /// Merges the `k` most recent periods up to and including `now`'s into
    /// `out`, and returns the start (in seconds) of the oldest one.
    fn collect(&self, now_secs: u64, k: u64, out: &mut Slot) -> u64 {
        let cur = now_secs / self.width;
        for slot in self.slots.iter() {
            // `e + k > cur` written as `cur - e < k` to avoid overflow.
            if let Some(e) = slot.epoch {
                if e <= cur && cur - e < k {
                    out.merge(&slot.stats);
                }
            }
        }
        (cur + 1).saturating_sub(k) * self.width
    }

    /// Heap bytes: the slot array (headers inline in it) plus each sketch's
    /// bucket heap.
    fn heap_bytes(&self) -> usize {
        self.slots
            .iter()
            .map(|s| {
                std::mem::size_of::<RingSlot>() - std::mem::size_of::<Slot>()
                    + s.stats.memory_bytes()
            })
            .sum()
    }
}

/// Sliding-window and since-start KPI aggregates for one scope (the whole
/// service, one chain, one model...). 320 B idle, ~80 KiB under steady
/// traffic; see the module docs.
///
/// Time is passed in explicitly as whole seconds since any fixed epoch (unix
/// time or process start), which keeps the structure deterministic and
/// testable. Not internally synchronized: wrap it in a mutex to share it.
#[derive(Debug, Clone)]
pub struct WindowedStats {
    start_secs: u64,
    rings: [Ring; 4],
    total: Slot,
}

impl WindowedStats {
    /// Creates empty stats whose since-start window begins at `now_secs`.
    pub fn new(now_secs: u64) -> Self {
        WindowedStats {
            start_secs: now_secs,
            rings: RINGS.map(|(width, len)| Ring::new(width, len)),
            total: Slot::with_accuracy(DEFAULT_RELATIVE_ACCURACY),
        }
    }

    /// Records one request observed at `now_secs`. Five sketch adds, each a
    /// binary search over occupied buckets; allocates only when a sketch
    /// meets a new bucket and its vector is full, or on a ring's first record.
    pub fn record(&mut self, now_secs: u64, sample: Sample) {
        for ring in &mut self.rings {
            ring.record(now_secs, &sample);
        }
        self.total.record(&sample);
    }

    pub fn add_usage(&mut self, now_secs: u64, usage: LateUsage) {
        for ring in &mut self.rings {
            ring.add_usage(now_secs, &usage);
        }
        self.total.add_usage(&usage);
    }

    /// Aggregates `window` as seen at `now_secs`. Allocates one merged slot
    /// whose sketch holds the window's occupied buckets (4 B each, typically
    /// 1–3 KiB).
    pub fn snapshot(&self, window: Window, now_secs: u64) -> WindowSnapshot {
        let d = match window {
            Window::SinceStart => {
                return WindowSnapshot {
                    window,
                    covered_secs: now_secs.saturating_sub(self.start_secs),
                    stats: self.total.clone(),
                }
            }
            Window::Last(d) => d.as_secs().min(self.max_window_secs()),
        };
        // The finest ring long enough for the window; the last ring (1 h)
        // always is after the clamp above.
        let ring = self
            .rings
            .iter()
            .find(|r| r.span_secs() >= d)
            .unwrap_or(&self.rings[self.rings.len() - 1]);
        // Rounds down so the covered span never exceeds `d`.
        let k = (d / ring.width).clamp(1, ring.len as u64);
        let mut stats = Slot::with_accuracy(SLOT_RELATIVE_ACCURACY);
        let oldest = ring.collect(now_secs, k, &mut stats);
        WindowSnapshot {
            window,
            covered_secs: now_secs.saturating_sub(oldest.max(self.start_secs)),
            stats,
        }
    }

    /// The slot width of the ring serving `window` and its last `len`
    /// periods up to `now_secs`'s, oldest first: each period's start second
    /// and its aggregate (`None` when nothing was recorded in it). The
    /// per-slot view behind `super::history`; `None` for `SinceStart`.
    pub fn slots(&self, window: Window, now_secs: u64) -> Option<(u64, SlotPeriods<'_>)> {
        let Window::Last(d) = window else {
            return None;
        };
        let d = d.as_secs().min(self.max_window_secs());
        let ring = self.rings.iter().find(|r| r.span_secs() >= d)?;
        let cur = now_secs / ring.width;
        let periods = (cur + 1).saturating_sub(ring.len as u64)..=cur;
        let slot = |e: u64| {
            ring.slots
                .iter()
                .find(|s| s.epoch == Some(e))
                .map(|s| &s.stats)
        };
        Some((
            ring.width,
            periods.map(|e| (e * ring.width, slot(e))).collect(),
        ))
    }

    /// The longest `Window::Last` served without clamping (one hour).
    pub fn max_window_secs(&self) -> u64 {
        self.rings.iter().map(Ring::span_secs).max().unwrap_or(0)
    }

    /// When the since-start window began.
    pub fn start_secs(&self) -> u64 {
        self.start_secs
    }

    /// Bytes held by this instance (inline + heap, by capacity).
    ///
    /// Grows with use: ring slot arrays are allocated on a ring's first
    /// record, and each sketch holds only its occupied buckets (counted by
    /// capacity). See the module docs for typical figures.
    pub fn memory_bytes(&self) -> usize {
        let rings: usize = self.rings.iter().map(Ring::heap_bytes).sum();
        std::mem::size_of::<Self>() - std::mem::size_of::<Slot>()
            + rings
            + self.total.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::sketch::nearest_rank;
    use super::*;

    /// Upper bound asserted for the realistic hour of traffic; the module
    /// docs quote the measured figure.
    const MEMORY_AFTER_HOUR_LIMIT: usize = 96 * 1024;

    fn sample(latency_s: f64) -> Sample {
        Sample {
            latency_s,
            error: false,
            tokens_in: 10,
            tokens_out: 20,
            cost_usd: Some(0.01),
            partial_cost_usd: 0.0,
            cache_hit: None,
        }
    }

    fn last(secs: u64) -> Window {
        Window::Last(Duration::from_secs(secs))
    }

    /// xorshift64*, as in the sketch tests.
    struct Rng(u64);

    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        /// Log-normal body around 800 ms (σ = 0.9, so ~50 ms..12 s) with a
        /// 5 % Pareto(α=1.3) tail from 3 s, capped at `timeout` seconds.
        fn latency(&mut self, timeout: f64) -> f64 {
            if self.unit() < 0.05 {
                (3.0 / self.unit().powf(1.0 / 1.3)).min(timeout)
            } else {
                let (u1, u2) = (self.unit(), self.unit());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                (0.8f64.ln() + 0.9 * z).exp()
            }
        }
    }

    /// `n` samples at evenly spread times over `[0, span)`, with latencies
    /// from [`Rng::latency`]. Returns `(time, latency)` pairs.
    fn traffic(n: u64, span: u64, timeout: f64, seed: u64) -> Vec<(u64, f64)> {
        let mut rng = Rng(seed);
        (0..n)
            .map(|i| (i * span / n, rng.latency(timeout)))
            .collect()
    }

    fn fill(data: &[(u64, f64)]) -> WindowedStats {
        let mut w = WindowedStats::new(0);
        for &(t, v) in data {
            w.record(t, sample(v));
        }
        w
    }

    #[test]
    fn idle_instance_is_small() {
        let mut w = WindowedStats::new(0);
        let idle = w.memory_bytes();
        assert!(idle < 4 * 1024, "idle WindowedStats uses {idle} bytes");
        // Queries do not allocate inside the instance.
        for label in ACCEPTED_WINDOWS {
            let s = w.snapshot(parse_window(label).expect("accepted"), 100);
            assert_eq!(s.stats.requests, 0);
        }
        assert_eq!(w.memory_bytes(), idle);
        // The first record allocates the 36 slot headers, still no buckets
        // beyond the one it occupies.
        w.record(1, sample(0.5));
        let one = w.memory_bytes();
        assert!(one < 16 * 1024, "after one record: {one} bytes");
        assert_eq!(RINGS.iter().map(|r| r.1).sum::<usize>(), 36);
    }

    #[test]
    fn memory_after_an_hour_of_traffic() {
        // 100 000 requests (~28/s) over an hour, all landing in one instance,
        // with the long-tailed latencies of the accuracy test and a 5-minute
        // client timeout.
        let w = fill(&traffic(100_000, 3600, 300.0, 0xC0FFEE));
        let bytes = w.memory_bytes();
        println!(
            "WindowedStats after 100k samples over 1h: {bytes} bytes ({:.1} KiB)",
            bytes as f64 / 1024.0
        );
        assert!(bytes < MEMORY_AFTER_HOUR_LIMIT, "{bytes} bytes");
        // Another hour of the same traffic reuses the slots' allocations.
        let mut w = w;
        for (t, v) in traffic(100_000, 3600, 300.0, 0xBEEF) {
            w.record(3600 + t, sample(v));
        }
        assert!(w.memory_bytes() < MEMORY_AFTER_HOUR_LIMIT);
        println!("idle: {} bytes", WindowedStats::new(0).memory_bytes());
    }

    #[test]
    fn every_window_is_within_one_percent() {
        // 100 000 long-tailed samples over two hours, so "all" differs from
        // "1h". Queried at the last record and part-way into the next slots.
        let data = traffic(100_000, 7200, f64::INFINITY, 0x5EED);
        let w = fill(&data);
        for now in [7199, 7237] {
            for label in ACCEPTED_WINDOWS {
                let snap = w.snapshot(parse_window(label).expect("accepted"), now);
                let from = now - snap.covered_secs;
                let mut exact: Vec<f64> = data
                    .iter()
                    .filter(|&&(t, _)| t >= from && t <= now)
                    .map(|&(_, v)| v)
                    .collect();
                exact.sort_by(f64::total_cmp);
                let n = exact.len() as u64;
                assert!(n > 200, "{label}: only {n} samples");
                assert_eq!(snap.stats.latency.count(), n, "{label} at {now}");
                let check = |q: f64, tol: f64| {
                    let want = exact[nearest_rank(q, n) as usize - 1];
                    let got = snap.stats.latency.quantile(q).expect("non-empty");
                    let err = (got - want).abs() / want;
                    assert!(
                        err <= tol,
                        "{label} at {now}: p{} = {got}, exact {want}, rel err {err}",
                        q * 100.0
                    );
                };
                for q in [0.50, 0.95, 0.99] {
                    check(q, 0.01);
                }
                // In fact every percentile is within the sketch accuracy.
                for i in 1..100 {
                    check(f64::from(i) / 100.0, SLOT_RELATIVE_ACCURACY * 1.001);
                }
            }
        }
    }

    #[test]
    fn windows_exclude_old_records_and_include_recent_ones() {
        // For each window, sweep record/query times across slot boundaries
        // and check the edge contract from the module docs.
        for (label, d, width) in [
            ("1m", 60, 10),
            ("5m", 300, 30),
            ("15m", 900, 90),
            ("1h", 3600, 360),
        ] {
            let window = parse_window(label).expect("accepted");
            for t in [1_000u64, 1_007, 1_009] {
                let mut w = WindowedStats::new(0);
                w.record(t, sample(1.0));
                for now in t..t + d + 2 * width {
                    let got = w.snapshot(window, now).stats.requests;
                    let age = now - t;
                    if age >= d {
                        assert_eq!(got, 0, "{label}: record at {t} visible at {now}");
                    } else if age < d - width {
                        assert_eq!(got, 1, "{label}: record at {t} missing at {now}");
                    }
                }
            }
        }
    }

    #[test]
    fn snapshot_merges_slots_and_reports_coverage() {
        let mut w = WindowedStats::new(0);
        for t in 0..120u64 {
            w.record(
                t,
                Sample {
                    latency_s: (t + 1) as f64 / 100.0,
                    error: t % 4 == 0,
                    tokens_in: 1,
                    tokens_out: 2,
                    cost_usd: if t % 2 == 0 { Some(0.5) } else { None },
                    partial_cost_usd: 0.0,
                    cache_hit: if t % 3 == 0 { Some(t % 6 == 0) } else { None },
                },
            );
        }
        // At t=125 the 1m window covers periods [70,80) .. [120,125).
        let s = w.snapshot(last(60), 125);
        assert_eq!(s.covered_secs, 55);
        assert_eq!(s.stats.requests, 50);
        assert_eq!(s.stats.tokens_in, 50);
        assert_eq!(s.stats.tokens_out, 100);
        assert_eq!(
            s.stats.errors,
            (70..120).filter(|t| t % 4 == 0).count() as u64
        );
        assert_eq!(s.stats.unpriced_requests, 25);
        assert!((s.stats.cost_usd - 12.5).abs() < 1e-9);
        assert_eq!(
            s.stats.cache_hits + s.stats.cache_misses,
            (70..120).filter(|t| t % 3 == 0).count() as u64
        );
        assert_eq!(s.stats.latency.min(), Some(0.71));
        assert_eq!(s.stats.latency.max(), Some(1.20));
        let p50 = s.stats.latency.quantile(0.5).expect("non-empty");
        assert!(
            (p50 - 0.95).abs() / 0.95 <= SLOT_RELATIVE_ACCURACY * 1.001,
            "{p50}"
        );
        assert!((s.requests_per_sec().expect("covered") - 50.0 / 55.0).abs() < 1e-12);

        // Near start-up the coverage is limited by the start time.
        let early = w.snapshot(last(3600), 125);
        assert_eq!(early.stats.requests, 120);
        assert_eq!(early.covered_secs, 125);
    }

    #[test]
    fn slots_are_reused_after_wrap_around() {
        let mut w = WindowedStats::new(0);
        w.record(5, sample(1.0));
        w.record(5, sample(1.0));
        // 60 s later the 1m ring lands on the same slot; it must be reset,
        // not accumulated.
        w.record(65, sample(2.0));
        let s = w.snapshot(last(60), 65);
        assert_eq!(s.stats.requests, 1);
        assert_eq!(s.stats.latency.quantile(0.5), Some(2.0));
        // The 5m ring still has all three.
        assert_eq!(w.snapshot(last(300), 65).stats.requests, 3);

        // Many wraps later, only the latest period of each slot survives.
        for t in (0..10_000).step_by(7) {
            w.record(t, sample(0.1));
        }
        let s = w.snapshot(last(60), 9_999);
        assert_eq!(
            s.stats.requests,
            (9_940..10_000).filter(|t| t % 7 == 0).count() as u64
        );
        let h = w.snapshot(last(3600), 9_999);
        assert_eq!(
            h.stats.requests,
            (6_480..10_000).filter(|t| t % 7 == 0).count() as u64
        );
    }

    #[test]
    fn since_start_keeps_everything() {
        let mut w = WindowedStats::new(1_000);
        for t in 0..5_000u64 {
            w.record(1_000 + t * 3, sample(0.2));
        }
        let all = w.snapshot(parse_window("all").expect("accepted"), 16_000);
        assert_eq!(all.window, Window::SinceStart);
        assert_eq!(all.stats.requests, 5_000);
        assert_eq!(all.stats.tokens_out, 100_000);
        assert_eq!(all.covered_secs, 15_000);
        assert_eq!(
            all.stats.latency.relative_accuracy(),
            super::super::sketch::DEFAULT_RELATIVE_ACCURACY
        );
        // Long after the last record, every bounded window is empty.
        assert_eq!(w.snapshot(last(3600), 40_000).stats.requests, 0);
        assert_eq!(w.snapshot(Window::SinceStart, 40_000).stats.requests, 5_000);
    }

    #[test]
    fn late_and_odd_samples() {
        let mut w = WindowedStats::new(0);
        w.record(1_000, sample(1.0));
        // Late by more than the 1m span but within 1h: the 1m ring drops it,
        // longer rings keep it, the total always does.
        w.record(900, sample(1.0));
        assert_eq!(w.snapshot(last(60), 1_000).stats.requests, 1);
        assert_eq!(w.snapshot(last(900), 1_000).stats.requests, 2);
        assert_eq!(w.snapshot(Window::SinceStart, 1_000).stats.requests, 2);
        // A query "in the past" ignores newer slots.
        assert_eq!(w.snapshot(last(60), 905).stats.requests, 1);

        let mut w = WindowedStats::new(0);
        w.record(
            1,
            Sample {
                latency_s: f64::NAN,
                tokens_in: u64::MAX,
                cost_usd: Some(-1.0),
                ..Sample::default()
            },
        );
        w.record(
            1,
            Sample {
                tokens_in: 5,
                cost_usd: Some(f64::NAN),
                ..Sample::default()
            },
        );
        let s = w.snapshot(last(60), 1);
        assert_eq!(s.stats.requests, 2);
        assert_eq!(s.stats.tokens_in, u64::MAX);
        assert_eq!(s.stats.unpriced_requests, 2);
        assert_eq!(s.stats.latency.count(), 1);
        assert_eq!(s.stats.latency.ignored(), 1);
        assert_eq!(s.stats.error_rate(), Some(0.0));
        assert_eq!(s.stats.cache_hit_ratio(), None);
    }

    #[test]
    fn odd_window_lengths_are_clamped() {
        let mut w = WindowedStats::new(0);
        for t in 0..4_000u64 {
            w.record(t, sample(1.0));
        }
        // Longer than the biggest ring: clamped to one hour.
        let s = w.snapshot(Window::Last(Duration::from_secs(86_400)), 3_999);
        // Ring of 10 × 360 s at t=3999 (period 11): periods 2..=11, from t=720.
        assert_eq!(s.covered_secs, 3_999 - 720);
        assert_eq!(s.stats.requests, 4_000 - 720);
        // Shorter than a slot: just the current 10 s slot.
        let s = w.snapshot(Window::Last(Duration::ZERO), 3_999);
        assert_eq!(s.stats.requests, 10);
        assert_eq!(s.covered_secs, 9);
        // Not a multiple of the slot width: rounded down.
        let s = w.snapshot(last(45), 3_999);
        assert_eq!(s.stats.requests, 40);
    }

    #[test]
    fn parse_window_accepts_labels_and_explains_errors() {
        assert_eq!(parse_window("1m"), Ok(last(60)));
        assert_eq!(parse_window("5m"), Ok(last(300)));
        assert_eq!(parse_window("15m"), Ok(last(900)));
        assert_eq!(parse_window("1h"), Ok(last(3600)));
        assert_eq!("all".parse::<Window>(), Ok(Window::SinceStart));
        for label in ACCEPTED_WINDOWS {
            let w = parse_window(label).expect("accepted");
            assert_eq!(w.to_string(), label);
        }

        let err = parse_window("2m").expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "unknown window \"2m\"; accepted windows: 1m, 5m, 15m, 1h, all"
        );
        assert_eq!(
            parse_window("").expect_err("rejected").to_string(),
            "empty window; accepted windows: 1m, 5m, 15m, 1h, all"
        );
        assert!(parse_window("1M").is_err());
        assert!(parse_window(" 1m").is_err());
        let long = "x".repeat(10_000);
        assert_eq!(parse_window(&long).expect_err("rejected").input.len(), 32);
    }

    #[test]
    fn snapshot_serializes_flat_with_latency_summary() {
        let mut w = WindowedStats::new(0);
        w.record(
            3,
            Sample {
                cache_hit: Some(true),
                ..sample(0.5)
            },
        );
        let json = serde_json::to_value(w.snapshot(last(300), 9)).expect("serializable");
        assert_eq!(json["window"], "5m");
        assert_eq!(json["covered_secs"], 9);
        assert_eq!(json["requests"], 1);
        assert_eq!(json["cache_hits"], 1);
        assert_eq!(json["latency"]["p50"], 0.5);
        assert_eq!(json["latency"]["count"], 1);
    }
}
