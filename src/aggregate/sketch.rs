//! Mergeable latency quantile sketch with a relative-error guarantee.
//!
//! This is a DDSketch-style sketch: every positive value `v` is mapped to the
//! logarithmic bucket `k = ceil(log_γ(v))` with `γ = (1 + α) / (1 - α)`.
//! Bucket `k` covers `(γ^(k-1), γ^k]`, and reporting `2γ^k / (γ + 1)` for any
//! value in it is off by at most a factor of `α` in either direction. So the
//! quantiles we report are within `α` *relative* error of a real sample, which
//! is what latency dashboards need: 1 % of 20 ms and 1 % of 20 s are both fine,
//! while a fixed absolute error would be useless at one end or the other.
//!
//! Buckets are plain counters, so two sketches with the same layout merge by
//! adding counts key by key, with no loss of accuracy. That is what lets the
//! sliding windows in `super::window` keep one small sketch per time slot and
//! combine them on demand: a merged window is exactly as accurate (α) as a
//! single sketch would have been.
//!
//! # Sparse buckets
//!
//! Only occupied buckets are stored, in a `Vec` sorted by bucket index.
//! An entry is 4 bytes (16-bit index, 16-bit count); the first count that
//! would pass 65 535 switches that sketch to 8-byte entries (32-bit count),
//! which in practice only the long-lived since-start totals ever need. With
//! the default α = 0.5 % the whole tracked range `[MIN_TRACKED_SECS,
//! MAX_TRACKED_SECS]` is 2 311 buckets, but LLM latencies (roughly 50 ms to
//! 30 s) occupy at most ~640 of them and a short time slot typically tens to
//! a few hundred. Memory is therefore proportional to the number of
//! *distinct occupied buckets*: an empty sketch owns no heap at all.
//!
//! * `add` to an existing bucket is a binary search plus an increment:
//!   O(log k), no allocation. A new bucket is a sorted insert (an O(k)
//!   memmove of at most 16 KiB), and the vector grows in steps of 25 % (at
//!   least 8 entries) so slack stays small.
//! * `merge` is a linear two-pointer merge done in place, from the back.
//! * `clear` keeps the allocation for the next period, but releases it down
//!   to what the cleared period used if it had become much larger.
//!
//! # Bucket cap
//!
//! A sketch holds at most [`MAX_BUCKETS`] logarithmic buckets (plus the zero
//! bucket). At the cap, the *lowest* buckets are collapsed into one, as in
//! DDSketch's "collapsing lowest" store: the sketch remembers a floor key,
//! and every value at or below it is counted in the floor bucket. Only
//! quantiles whose rank falls in that bucket lose accuracy (they may be
//! over-estimated, and are never under-estimated by more than α); every
//! higher quantile keeps the α guarantee, and so do `min`, `max`, `sum` and
//! `count`, which are tracked exactly. With the default α the cap is only
//! reachable by values spanning ~9 orders of magnitude (e.g. 10 µs to 3 h);
//! it bounds the bucket heap to ~16 KiB.

use serde::Serialize;
use std::fmt;

/// Values below this (1 µs) all land in a single "zero" bucket. Nothing we
/// observe is meaningfully faster than a microsecond, and cutting the range
/// here bounds the number of keys a sketch can ever see.
pub const MIN_TRACKED_SECS: f64 = 1e-6;

/// Values above this (3 hours) are recorded *as* this value: they land in the
/// top bucket and count towards `sum` / `max` as exactly 3 h. An LLM call or
/// chain run that takes longer than that is broken rather than slow, and
/// clamping keeps `sum` finite even if a client sends absurd timestamps.
pub const MAX_TRACKED_SECS: f64 = 3.0 * 3600.0;

/// Relative accuracy used by [`QuantileSketch::new`]: reported quantiles are
/// within 0.5 % of a true sample, comfortably inside the 1 % we promise.
pub const DEFAULT_RELATIVE_ACCURACY: f64 = 0.005;

/// Most logarithmic buckets one sketch stores (the zero bucket comes on top).
/// Beyond it the lowest buckets are collapsed; see the module docs. Bounds
/// the bucket heap of a sketch to `(MAX_BUCKETS + 1) * 8` bytes (~16 KiB).
pub const MAX_BUCKETS: usize = 2048;

/// The accepted range for a custom relative accuracy. Below 1e-4 even the
/// usual LLM latency span would hit the bucket cap; above 0.5 the mapping
/// degenerates (γ ≥ 3).
const MIN_ALPHA: f64 = 1e-4;
const MAX_ALPHA: f64 = 0.5;

/// Index of the bucket for values below `MIN_TRACKED_SECS`. Logarithmic key
/// `k` has index `k - min_key + 1`, so the zero bucket sorts first.
const ZERO_IDX: u32 = 0;

/// `floor` while nothing has been collapsed. Every logarithmic index is
/// above it, so `idx < floor` is never true.
const NO_FLOOR: u32 = 0;

/// Smallest growth step of the bucket vector, in entries.
const MIN_GROWTH: usize = 8;

/// Largest count of a narrow entry.
const NARROW_MAX: u64 = u16::MAX as u64;

/// Largest count of a wide entry.
const WIDE_MAX: u64 = u32::MAX as u64;

/// A mergeable quantile sketch for durations in seconds, whose memory grows
/// with the number of distinct occupied buckets (bounded by [`MAX_BUCKETS`]).
#[derive(Clone)]
pub struct QuantileSketch {
    /// Relative accuracy α this layout was built for.
    alpha: f64,
    /// `γ = (1 + α) / (1 - α)`, the ratio between consecutive bucket bounds.
    gamma: f64,
    /// `1 / ln(γ)`, so mapping a value to a key is one `ln` and one multiply.
    inv_ln_gamma: f64,
    /// `ln(γ)`, used to turn a key back into a value.
    ln_gamma: f64,
    /// Key of `MIN_TRACKED_SECS`, i.e. of bucket index 1.
    min_key: i32,
    /// Index of `MAX_TRACKED_SECS`'s bucket, the largest index (2 311 with
    /// the default α). Every value is clamped into `[ZERO_IDX, max_idx]`.
    max_idx: u32,
    /// Collapse floor: logarithmic indices below it are counted at it.
    /// `NO_FLOOR` until the bucket cap is first hit; reset by `clear`.
    floor: u32,
    /// Occupied buckets, sorted by index, no zero counts, no duplicates.
    /// Narrow: one `u32` per bucket, `index << 16 | count`. Wide: two `u32`s,
    /// index then count. See `wide`.
    data: Vec<u32>,
    /// Narrow entries (4 bytes) hold counts up to 65 535, which a time slot
    /// never reaches in practice. The first count that would overflow
    /// switches the sketch to wide entries (8 bytes, counts up to `u32::MAX`)
    /// for good, or until `clear`. Layouts with more than 65 535 indices
    /// (α < ~1.8e-4) are wide from the start.
    wide: bool,
    /// Sum of the bucket counts. Equal to `count` unless a wide count
    /// overflowed and all counts were scaled down; quantile ranks are
    /// computed against this so the bucket walk stays self-consistent.
    bucket_total: u64,
    /// Number of accepted samples. Never scaled.
    count: u64,
    /// Sum of accepted (clamped) samples.
    sum: f64,
    /// Exact extremes; `INFINITY` / `NEG_INFINITY` while empty. Tracking them
    /// exactly costs nothing and lets `quantile(0)` / `quantile(1)` be exact
    /// and every other answer be clamped into the observed range.
    min: f64,
    max: f64,
    /// Samples rejected because they were NaN, negative or infinite.
    ignored: u64,
}

/// Point-in-time summary of a sketch, shaped for JSON APIs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub sum: f64,
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// Error returned by [`QuantileSketch::with_relative_accuracy`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidAccuracy(pub f64);

impl fmt::Display for InvalidAccuracy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid relative accuracy {}: expected a value in [{MIN_ALPHA}, {MAX_ALPHA}]",
            self.0
        )
    }
}

impl std::error::Error for InvalidAccuracy {}

impl QuantileSketch {
    /// An empty sketch with the default 0.5 % relative accuracy. Allocates
    /// nothing until the first sample.
    pub fn new() -> Self {
        Self::with_alpha(DEFAULT_RELATIVE_ACCURACY)
    }

    /// A sketch with a custom relative accuracy `alpha` (e.g. `0.02` for 2 %).
    ///
    /// Finer sketches occupy proportionally more buckets for the same data:
    /// the number of keys per decade is `ln(10) / ln((1+α)/(1-α))`, about 230
    /// at 0.5 % and 58 at 2 %. The value may come from configuration, hence
    /// the `Result`.
    pub fn with_relative_accuracy(alpha: f64) -> Result<Self, InvalidAccuracy> {
        // Written as a negated range check so NaN is rejected too.
        if !(MIN_ALPHA..=MAX_ALPHA).contains(&alpha) {
            return Err(InvalidAccuracy(alpha));
        }
        Ok(Self::with_alpha(alpha))
    }

    /// Infallible constructor for crate-internal constants; the caller
    /// guarantees `alpha` is within `[MIN_ALPHA, MAX_ALPHA]`. Out-of-range
    /// values are clamped rather than trusted.
    pub(crate) fn with_alpha(alpha: f64) -> Self {
        let alpha = if alpha.is_nan() {
            DEFAULT_RELATIVE_ACCURACY
        } else {
            alpha.clamp(MIN_ALPHA, MAX_ALPHA)
        };
        let gamma = (1.0 + alpha) / (1.0 - alpha);
        let ln_gamma = gamma.ln();
        let inv_ln_gamma = 1.0 / ln_gamma;
        let min_key = (MIN_TRACKED_SECS.ln() * inv_ln_gamma).ceil() as i32;
        let max_key = (MAX_TRACKED_SECS.ln() * inv_ln_gamma).ceil() as i32;
        let max_idx = (max_key - min_key + 1) as u32;
        QuantileSketch {
            alpha,
            gamma,
            inv_ln_gamma,
            ln_gamma,
            min_key,
            max_idx,
            floor: NO_FLOOR,
            data: Vec::new(),
            wide: u64::from(max_idx) > NARROW_MAX,
            bucket_total: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ignored: 0,
        }
    }

    /// Records one duration in seconds.
    ///
    /// NaN, negative and infinite values are dropped and counted in
    /// [`ignored`](Self::ignored): they come from broken clocks or malformed
    /// spans and must not poison the distribution. Values below 1 µs go to
    /// the zero bucket; values above 3 h are clamped to 3 h.
    ///
    /// One `ln` and a binary search over the occupied buckets: O(log k) and
    /// allocation-free when the bucket already exists. A new bucket is a
    /// sorted insert and may grow the vector (see the module docs).
    #[inline]
    pub fn add(&mut self, value_secs: f64) {
        // `contains` is false for NaN as well as for negatives and +inf.
        if !(0.0..f64::INFINITY).contains(&value_secs) {
            self.ignored += 1;
            return;
        }
        // `abs` turns -0.0 into 0.0 so `min` never reports a negative zero.
        let v = value_secs.abs().min(MAX_TRACKED_SECS);
        self.bump(self.idx_of(v), 1);
        self.count += 1;
        self.sum += v;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }

    /// Folds `other` into `self`.
    ///
    /// Sketches with the same relative accuracy merge exactly (key-wise
    /// addition, linear in the number of occupied buckets). If the accuracies
    /// differ, each of `other`'s buckets is re-inserted at its representative
    /// value, so the result's error is bounded by the sum of both accuracies
    /// rather than by `self`'s alone. If either side had collapsed buckets,
    /// or the union exceeds [`MAX_BUCKETS`], the result collapses its lowest
    /// buckets (see the module docs).
    pub fn merge(&mut self, other: &QuantileSketch) {
        if other.count == 0 {
            self.ignored += other.ignored;
            return;
        }
        if self.same_layout(other) {
            self.merge_same_layout(other);
        } else {
            for j in 0..other.len() {
                let idx = self.idx_of(other.bucket_value(other.idx_at(j)));
                self.bump(idx, other.count_at(j));
            }
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.ignored += other.ignored;
    }

    /// The value at rank `ceil(q · n)` (1-based) of the recorded samples,
    /// within the relative accuracy. `q = 0` gives the exact minimum and
    /// `q = 1` the exact maximum.
    ///
    /// Returns `None` for an empty sketch or a `q` outside `[0, 1]` / NaN.
    /// If the rank falls in the zero bucket the answer is the exact minimum
    /// (the true value is somewhere below 1 µs, so the absolute error is < 1 µs).
    /// If it falls in a collapsed floor bucket, the answer may over-estimate.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) || self.bucket_total == 0 {
            return None;
        }
        let n = self.bucket_total;
        let rank = nearest_rank(q, n);
        // The extremes are tracked exactly, so don't approximate them.
        if rank == 1 {
            return Some(self.min);
        }
        if rank == n {
            return Some(self.max);
        }
        let mut seen = 0u64;
        for i in 0..self.len() {
            seen += self.count_at(i);
            if seen >= rank {
                let idx = self.idx_at(i);
                if idx == ZERO_IDX {
                    return Some(self.min);
                }
                // Clamping into [min, max] can only move the estimate towards
                // the truth, since every sample lies in that range.
                return Some(self.bucket_value(idx).clamp(self.min, self.max));
            }
        }
        // Unreachable while `bucket_total` is the sum of the counts, but a
        // sensible answer beats a panic.
        Some(self.max)
    }

    /// Number of accepted samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of accepted samples in seconds (after clamping to 3 h).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Mean of accepted samples, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Exact smallest accepted sample, `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Exact largest accepted sample (after clamping), `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Number of rejected samples (NaN, negative, infinite).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// `true` if no sample has been accepted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The relative accuracy α this sketch guarantees.
    pub fn relative_accuracy(&self) -> f64 {
        self.alpha
    }

    /// Inline bytes plus the heap held by the bucket vector, counted by
    /// capacity (not length), so this is what the allocator actually gave us.
    /// An empty, never-used sketch has no heap; the bucket heap never exceeds
    /// `(MAX_BUCKETS + 1) * 8` bytes.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.data.capacity() * std::mem::size_of::<u32>()
    }

    /// Resets to empty (and to narrow entries). The window ring reuses slots,
    /// so the allocation is kept for the next period, unless it is well above
    /// what the cleared period needed (after a burst or a merge), in which
    /// case it is shrunk to that.
    pub fn clear(&mut self) {
        let used = self.data.len();
        self.data.clear();
        if self.data.capacity() > used + used / 4 + MIN_GROWTH * self.stride() {
            self.data.shrink_to(used);
        }
        self.wide = u64::from(self.max_idx) > NARROW_MAX;
        self.floor = NO_FLOOR;
        self.bucket_total = 0;
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
        self.ignored = 0;
    }

    /// Count, sum, extremes and the usual percentiles in one value.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count,
            sum: self.sum,
            mean: self.mean(),
            min: self.min(),
            max: self.max(),
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
        }
    }

    /// Bucket index for a value already known to be in `[0, MAX_TRACKED_SECS]`.
    #[inline]
    fn idx_of(&self, v: f64) -> u32 {
        if v < MIN_TRACKED_SECS {
            return ZERO_IDX;
        }
        // Clamped in f64 before the cast so rounding at the range edges can
        // never produce an index outside the layout.
        let pos = (v.ln() * self.inv_ln_gamma).ceil() - f64::from(self.min_key) + 1.0;
        pos.clamp(1.0, f64::from(self.max_idx)) as u32
    }

    /// Representative value of bucket `idx`: the point whose relative
    /// distance to both bucket bounds is exactly α.
    fn bucket_value(&self, idx: u32) -> f64 {
        if idx == ZERO_IDX {
            return 0.0;
        }
        let key = f64::from(self.min_key) + f64::from(idx - 1);
        (key * self.ln_gamma).exp() * 2.0 / (1.0 + self.gamma)
    }

    fn same_layout(&self, other: &QuantileSketch) -> bool {
        self.gamma == other.gamma && self.min_key == other.min_key && self.max_idx == other.max_idx
    }

    // ----- entry storage: the only code that knows the narrow/wide encoding.

    /// `u32`s per entry.
    #[inline]
    fn stride(&self) -> usize {
        1 + usize::from(self.wide)
    }

    /// Number of occupied buckets.
    #[inline]
    fn len(&self) -> usize {
        self.data.len() >> usize::from(self.wide)
    }

    #[inline]
    fn idx_at(&self, i: usize) -> u32 {
        if self.wide {
            self.data[2 * i]
        } else {
            self.data[i] >> 16
        }
    }

    #[inline]
    fn count_at(&self, i: usize) -> u64 {
        if self.wide {
            u64::from(self.data[2 * i + 1])
        } else {
            u64::from(self.data[i] & 0xFFFF)
        }
    }

    /// Largest count an entry can hold in the current encoding.
    #[inline]
    fn entry_max(&self) -> u64 {
        if self.wide {
            WIDE_MAX
        } else {
            NARROW_MAX
        }
    }

    /// Overwrites entry `i`. The caller guarantees `count <= entry_max()`.
    #[inline]
    fn put(&mut self, i: usize, idx: u32, count: u64) {
        if self.wide {
            self.data[2 * i] = idx;
            self.data[2 * i + 1] = count as u32;
        } else {
            self.data[i] = idx << 16 | count as u32;
        }
    }

    #[inline]
    fn set_count(&mut self, i: usize, count: u64) {
        let idx = self.idx_at(i);
        self.put(i, idx, count);
    }

    /// Inserts a new entry at position `i`, growing the vector in 25 % steps
    /// (still amortized O(1), with at most a quarter of the heap idle).
    fn insert_entry(&mut self, i: usize, idx: u32, count: u64) {
        let stride = self.stride();
        if self.data.capacity() - self.data.len() < stride {
            let len = self.len();
            let room = (MAX_BUCKETS + 1).saturating_sub(len).max(1);
            self.data
                .reserve_exact((len / 4).max(MIN_GROWTH).min(room) * stride);
        }
        if self.wide {
            self.data.insert(2 * i, count as u32);
            self.data.insert(2 * i, idx);
        } else {
            self.data.insert(i, idx << 16 | count as u32);
        }
    }

    /// Removes entries `from..to` and returns the sum of their counts.
    fn remove_entries(&mut self, from: usize, to: usize) -> u64 {
        let sum = (from..to).map(|i| self.count_at(i)).sum();
        let stride = self.stride();
        self.data.drain(from * stride..to * stride);
        sum
    }

    /// Position of the first entry with index `>= idx`, or `Ok` on a match.
    #[inline]
    fn search(&self, idx: u32) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.idx_at(mid).cmp(&idx) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Switches to wide entries. Entry positions do not change.
    #[cold]
    fn widen(&mut self) {
        let mut data = Vec::with_capacity(self.data.len() * 2);
        for &e in &self.data {
            data.push(e >> 16);
            data.push(e & 0xFFFF);
        }
        self.data = data;
        self.wide = true;
    }

    /// Largest count held.
    fn max_count(&self) -> u64 {
        (0..self.len()).map(|i| self.count_at(i)).max().unwrap_or(0)
    }

    // ----- bucket logic, in terms of the accessors above.

    /// Index of the first logarithmic bucket (1 if the zero bucket exists).
    #[inline]
    fn first_log(&self) -> usize {
        usize::from(!self.data.is_empty() && self.idx_at(0) == ZERO_IDX)
    }

    /// Adds `n` samples to bucket `idx` (after applying the collapse floor).
    #[inline]
    fn bump(&mut self, idx: u32, n: u64) {
        if n == 0 {
            return;
        }
        let idx = if idx != ZERO_IDX && idx < self.floor {
            self.floor
        } else {
            idx
        };
        match self.search(idx) {
            Ok(i) => self.add_at(i, n),
            Err(i) => self.insert_at(i, idx, n),
        }
    }

    /// Makes an entry able to take more: narrow entries are widened (`n`
    /// unchanged); a wide count at `u32::MAX` halves every bucket and `n`.
    ///
    /// The latter needs ~4.3 billion samples in one 1 % band (weeks at
    /// 1 000 req/s, all of them the same latency). We halve every bucket
    /// (rounding up so no bucket empties, so positions stay valid) and the
    /// incoming `n` with it. Quantiles depend only on the *shape* of the
    /// histogram, so this keeps them meaningful; the cost is that later
    /// samples weigh double relative to earlier ones. `count` stays exact.
    #[cold]
    fn make_room(&mut self, n: u64) -> u64 {
        if self.wide {
            self.scale_down(1);
            n.div_ceil(2)
        } else {
            self.widen();
            n
        }
    }

    /// Adds `n` to the existing bucket at position `i`.
    #[inline]
    fn add_at(&mut self, i: usize, mut n: u64) {
        loop {
            let cur = self.count_at(i);
            if cur + n <= self.entry_max() {
                self.set_count(i, cur + n);
                self.bucket_total += n;
                return;
            }
            n = self.make_room(n);
        }
    }

    /// Inserts a new bucket `idx` with count `n` at sorted position `i`.
    fn insert_at(&mut self, i: usize, idx: u32, mut n: u64) {
        while n > self.entry_max() {
            n = self.make_room(n);
        }
        if idx != ZERO_IDX && self.len() - self.first_log() >= MAX_BUCKETS {
            self.collapse_insert(i, idx, n);
            return;
        }
        self.insert_entry(i, idx, n);
        self.bucket_total += n;
    }

    /// Inserts a new logarithmic bucket while at the cap: the lowest bucket is
    /// folded into the next one, which becomes the floor.
    #[cold]
    fn collapse_insert(&mut self, i: usize, idx: u32, n: u64) {
        let z = self.first_log();
        if i <= z {
            // Below every stored bucket: it joins the lowest one.
            self.floor = self.idx_at(z);
            self.add_at(z, n);
            return;
        }
        let lowest = self.remove_entries(z, z + 1);
        self.bucket_total -= lowest;
        self.add_at(z, lowest);
        self.floor = self.idx_at(z);
        if idx < self.floor {
            self.add_at(z, n);
        } else {
            // Same length as before the removal: no reallocation, and `n`
            // still fits (`make_room` only ever widens entries).
            self.insert_entry(i - 1, idx, n);
            self.bucket_total += n;
        }
    }

    /// Folds every logarithmic bucket below `floor` into bucket `floor`.
    fn raise_floor(&mut self, floor: u32) {
        if floor <= self.floor {
            return;
        }
        self.floor = floor;
        let z = self.first_log();
        let end = self.search(floor).unwrap_or_else(|i| i);
        if end > z {
            let folded = self.remove_entries(z, end);
            self.bucket_total -= folded;
            // At least one bucket was just removed, so this cannot hit the cap.
            self.bump(floor, folded);
        }
    }

    /// Collapses the lowest logarithmic buckets until at most `MAX_BUCKETS`
    /// remain.
    fn enforce_cap(&mut self) {
        let z = self.first_log();
        let excess = (self.len() - z).saturating_sub(MAX_BUCKETS);
        if excess > 0 {
            let folded = self.remove_entries(z, z + excess);
            self.bucket_total -= folded;
            self.add_at(z, folded);
            self.floor = self.idx_at(z);
        }
        let most = (MAX_BUCKETS + 1) * self.stride();
        if self.data.capacity() > most {
            self.data.shrink_to(most);
        }
    }

    /// Divides every bucket by `2^shift`, rounding up.
    #[cold]
    fn scale_down(&mut self, shift: u32) {
        let mut total = 0u64;
        for i in 0..self.len() {
            // Never larger than before, so it fits the encoding.
            let scaled = ceil_shift(self.count_at(i), shift);
            self.set_count(i, scaled);
            total += scaled;
        }
        self.bucket_total = total;
    }

    /// Key-wise addition of a sketch with the same layout, in place and
    /// linear in the number of occupied buckets of both sides.
    fn merge_same_layout(&mut self, other: &QuantileSketch) {
        // Both sides must share one floor: ours is raised to theirs, and
        // their buckets below ours are folded into our floor bucket.
        self.raise_floor(other.floor);
        let floor = self.floor;

        // Overflow guard: if the largest counts of both sides could sum past
        // what an entry holds, widen, and if already wide halve both sides
        // until they cannot. Conservative (the two largest counts may not
        // share a key), but it keeps the merge a single pass.
        let (a, b) = (self.max_count(), other.max_count());
        let mut shift = 0;
        while ceil_shift(a, shift) + ceil_shift(b, shift) > self.entry_max() {
            if self.wide {
                shift += 1;
            } else {
                self.widen();
            }
        }
        if shift > 0 {
            self.scale_down(shift);
        }

        // Their entries split into the zero bucket `..oz`, buckets below our
        // floor `oz..split` (folded), and the rest `split..` (merged).
        let oz = other.first_log();
        let split = other.search(floor).unwrap_or_else(|i| i).max(oz);
        let merged = || (0..oz).chain(split..other.len());

        // Pass 1: how many of their indices are new to us.
        let mut new = 0usize;
        let mut i = 0usize;
        for j in merged() {
            let idx = other.idx_at(j);
            while i < self.len() && self.idx_at(i) < idx {
                i += 1;
            }
            if i < self.len() && self.idx_at(i) == idx {
                i += 1;
            } else {
                new += 1;
            }
        }

        // Pass 2: merge from the back into the grown vector, so every entry
        // moves at most once and nothing is allocated beyond the growth.
        let old = self.len();
        let stride = self.stride();
        self.data.reserve_exact(new * stride);
        self.data.resize((old + new) * stride, 0);
        let (mut r, mut w) = (old, old + new);
        for j in merged().rev() {
            let idx = other.idx_at(j);
            let c = ceil_shift(other.count_at(j), shift);
            while r > 0 && self.idx_at(r - 1) > idx {
                r -= 1;
                w -= 1;
                let (moved, count) = (self.idx_at(r), self.count_at(r));
                self.put(w, moved, count);
            }
            w -= 1;
            let mut count = c;
            if r > 0 && self.idx_at(r - 1) == idx {
                r -= 1;
                count += self.count_at(r);
            }
            // Fits: the guard above bounds every pairwise sum.
            self.put(w, idx, count);
            self.bucket_total += c;
        }
        debug_assert_eq!(r, w);

        let folded = (oz..split)
            .map(|j| ceil_shift(other.count_at(j), shift))
            .sum();
        self.bump(floor, folded);
        self.enforce_cap();
    }

    #[cfg(test)]
    fn entries(&self) -> Vec<(u32, u64)> {
        (0..self.len())
            .map(|i| (self.idx_at(i), self.count_at(i)))
            .collect()
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        let e = self.entries();
        assert_eq!(self.data.len() % self.stride(), 0);
        assert!(e.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(e.iter().all(|&(_, c)| c > 0));
        assert!(e.iter().all(|&(i, _)| i <= self.max_idx));
        assert!(self.len() - self.first_log() <= MAX_BUCKETS);
        assert!(e.iter().all(|&(i, _)| i == ZERO_IDX || i >= self.floor));
        assert_eq!(self.bucket_total, e.iter().map(|&(_, c)| c).sum::<u64>());
    }
}

impl Default for QuantileSketch {
    fn default() -> Self {
        Self::new()
    }
}

// A derived Debug would print every bucket.
impl fmt::Debug for QuantileSketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuantileSketch")
            .field("alpha", &self.alpha)
            .field("buckets", &self.len())
            .field("wide", &self.wide)
            .field("collapsed", &(self.floor != NO_FLOOR))
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("min", &self.min())
            .field("max", &self.max())
            .field("ignored", &self.ignored)
            .finish()
    }
}

/// `ceil(x / 2^shift)` without overflow.
#[inline]
fn ceil_shift(x: u64, shift: u32) -> u64 {
    if shift == 0 {
        x
    } else {
        (x >> shift) + u64::from(x & ((1u64 << shift) - 1) != 0)
    }
}

/// The 1-based nearest rank `ceil(q · n)`, clamped to `[1, n]`.
///
/// The tiny epsilon absorbs binary rounding such as `0.95 * 100000 =
/// 95000.00000000001`, which would otherwise push the rank up by one. Public
/// so callers computing an exact percentile for comparison use the same
/// convention as the sketch.
pub fn nearest_rank(q: f64, n: u64) -> u64 {
    let r = (q * n as f64 - 1e-9).ceil();
    // `as` saturates for out-of-range floats, and the clamp does the rest.
    (r as u64).clamp(1, n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64* — tiny, deterministic, good enough to shape test data.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform in (0, 1), never exactly 0 so `ln` stays finite.
        fn unit(&mut self) -> f64 {
            ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        fn normal(&mut self) -> f64 {
            let (u1, u2) = (self.unit(), self.unit());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }

        /// Log-normal body around 800 ms with a 5 % Pareto(α=1.3) tail from 3 s.
        fn latency(&mut self) -> f64 {
            if self.unit() < 0.05 {
                3.0 / self.unit().powf(1.0 / 1.3)
            } else {
                (0.8f64.ln() + 0.9 * self.normal()).exp()
            }
        }

        /// Log-uniform in `[lo, hi)`.
        fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
            (lo.ln() + self.unit() * (hi / lo).ln()).exp()
        }
    }

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[nearest_rank(q, sorted.len() as u64) as usize - 1]
    }

    fn long_tail(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = Rng(seed);
        (0..n).map(|_| rng.latency()).collect()
    }

    fn assert_rel(got: f64, want: f64, tol: f64, what: &str) {
        let err = ((got - want) / want).abs();
        assert!(err <= tol, "{what}: got {got}, want {want}, rel err {err}");
    }

    fn sketch_of(alpha: f64, data: &[f64]) -> QuantileSketch {
        let mut s = QuantileSketch::with_relative_accuracy(alpha).expect("valid");
        for &v in data {
            s.add(v);
        }
        s
    }

    fn sorted(data: &[f64]) -> Vec<f64> {
        let mut v = data.to_vec();
        v.sort_by(f64::total_cmp);
        v
    }

    fn bucket_of(s: &QuantileSketch, v: f64) -> usize {
        s.search(s.idx_of(v)).expect("bucket present")
    }

    #[test]
    fn percentiles_within_one_percent_on_long_tail() {
        let data = long_tail(100_000, 0x9E37_79B9_7F4A_7C15);
        let sketch = sketch_of(DEFAULT_RELATIVE_ACCURACY, &data);
        sketch.check_invariants();
        let sorted = sorted(&data);

        for q in [0.5, 0.95, 0.99] {
            let got = sketch.quantile(q).expect("non-empty");
            assert_rel(got, exact(&sorted, q), 0.01, &format!("p{}", q * 100.0));
        }
        // Not just the headline percentiles: the guarantee is for every rank.
        for i in 1..1000 {
            let q = f64::from(i) / 1000.0;
            let got = sketch.quantile(q).expect("non-empty");
            assert_rel(
                got,
                exact(&sorted, q),
                DEFAULT_RELATIVE_ACCURACY * 1.001,
                "q",
            );
        }
        assert_eq!(sketch.quantile(0.0), Some(sorted[0]));
        assert_eq!(sketch.quantile(1.0), Some(sorted[sorted.len() - 1]));
        assert_eq!(sketch.count(), 100_000);
        assert_rel(sketch.sum(), data.iter().sum(), 1e-9, "sum");
        assert_eq!(sketch.floor, NO_FLOOR);
    }

    #[test]
    fn memory_follows_occupied_buckets() {
        let empty = QuantileSketch::new();
        assert_eq!(empty.memory_bytes(), std::mem::size_of::<QuantileSketch>());
        assert!(empty.memory_bytes() <= 128, "{}", empty.memory_bytes());

        let data = long_tail(100_000, 11);
        let mut s = sketch_of(DEFAULT_RELATIVE_ACCURACY, &data);
        let (len, cap) = (s.len(), s.data.capacity());
        assert!(!s.wide);
        assert_eq!(
            s.memory_bytes(),
            std::mem::size_of::<QuantileSketch>() + cap * 4
        );
        // A few hundred buckets for a realistic spread, far below the 2 311
        // keys of the full range, with at most 25 % growth slack.
        assert!((300..1000).contains(&len), "{len} buckets");
        assert!(cap <= len + len / 4 + MIN_GROWTH, "{cap} for {len}");

        // Repeating values that are already bucketed never reallocates.
        for &v in &data[..1000] {
            s.add(v);
        }
        assert_eq!(s.data.capacity(), cap);

        // Tens of samples take tens of buckets.
        let small = sketch_of(DEFAULT_RELATIVE_ACCURACY, &data[..40]);
        assert!(small.len() <= 40);
        assert!(
            small.memory_bytes() < 128 + 48 * 4,
            "{}",
            small.memory_bytes()
        );
    }

    #[test]
    fn merge_of_halves_equals_whole() {
        let data = long_tail(20_000, 42);
        let mut whole = QuantileSketch::new();
        let mut a = QuantileSketch::new();
        let mut b = QuantileSketch::new();
        for (i, &v) in data.iter().enumerate() {
            whole.add(v);
            if i % 2 == 0 { &mut a } else { &mut b }.add(v);
        }
        a.merge(&b);
        a.check_invariants();
        assert_eq!(a.entries(), whole.entries());
        assert_eq!(a.count(), whole.count());
        assert_eq!(a.min(), whole.min());
        assert_eq!(a.max(), whole.max());
        assert_rel(a.sum(), whole.sum(), 1e-12, "sum");
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(a.quantile(q), whole.quantile(q));
        }
    }

    #[test]
    fn merging_many_partial_sketches_is_exact() {
        // Like the window module: many small sketches over shifting ranges,
        // merged in arbitrary order, including the zero bucket.
        let mut rng = Rng(5);
        let mut whole = QuantileSketch::new();
        let mut parts: Vec<QuantileSketch> = (0..37).map(|_| QuantileSketch::new()).collect();
        for (i, part) in parts.iter_mut().enumerate() {
            let lo = 1e-7 * 2f64.powi(i as i32 % 30);
            for _ in 0..(i * 13) % 200 {
                let v = rng.log_uniform(lo, lo * 50.0);
                part.add(v);
                whole.add(v);
            }
        }
        // 37 is prime, so `i * 16 % 37` visits every part once, out of order.
        let mut acc = QuantileSketch::new();
        for i in 0..parts.len() {
            acc.merge(&parts[i * 16 % parts.len()]);
            acc.check_invariants();
        }
        let mut rev = QuantileSketch::new();
        for p in parts.iter().rev() {
            rev.merge(p);
        }
        for m in [&acc, &rev] {
            assert_eq!(m.entries(), whole.entries());
            assert_eq!(m.count(), whole.count());
            assert_eq!(m.min(), whole.min());
            assert_eq!(m.max(), whole.max());
        }
        assert_eq!(whole.idx_at(0), ZERO_IDX);
    }

    #[test]
    fn merge_with_empty_and_into_empty() {
        let mut s = QuantileSketch::new();
        s.add(0.25);
        let before = s.quantile(0.5);
        s.merge(&QuantileSketch::new());
        assert_eq!(s.quantile(0.5), before);

        let mut e = QuantileSketch::new();
        e.merge(&s);
        e.check_invariants();
        assert_eq!(e.count(), 1);
        assert_eq!(e.quantile(0.5), before);
        assert_eq!(e.data.capacity(), 1);
    }

    #[test]
    fn merge_across_accuracies_stays_close() {
        let data = long_tail(10_000, 7);
        let mut fine = QuantileSketch::new();
        let coarse = sketch_of(0.02, &data);
        fine.merge(&coarse);
        fine.check_invariants();
        let sorted = sorted(&data);
        for q in [0.5, 0.9, 0.99] {
            let got = fine.quantile(q).expect("non-empty");
            assert_rel(got, exact(&sorted, q), 0.02 + 0.005 + 1e-9, "cross-layout");
        }
        assert_eq!(fine.count(), 10_000);
    }

    /// Checks the collapse contract against exact data: ranks above the
    /// floor bucket keep α, ranks in it are never under-estimated beyond α.
    fn assert_collapse_contract(s: &QuantileSketch, sorted: &[f64]) {
        s.check_invariants();
        assert_ne!(s.floor, NO_FLOOR, "expected a collapsed sketch");
        assert_eq!(s.len() - s.first_log(), MAX_BUCKETS);
        let floor_key = f64::from(s.min_key) + f64::from(s.floor - 1);
        let floor_top = (floor_key * s.ln_gamma).exp();
        let mut accurate = 0;
        for i in 1..1000 {
            let q = f64::from(i) / 1000.0;
            let want = exact(sorted, q);
            let got = s.quantile(q).expect("non-empty");
            if want > floor_top * (1.0 + 1e-9) {
                assert_rel(got, want, s.alpha * 1.001, "above floor");
                accurate += 1;
            } else {
                assert!(got >= want * (1.0 - s.alpha * 1.001), "{got} < {want}");
            }
        }
        assert!(accurate > 500, "only {accurate} quantiles above the floor");
        assert_eq!(s.quantile(0.0), Some(sorted[0]));
        assert_eq!(s.quantile(1.0), Some(sorted[sorted.len() - 1]));
    }

    /// 20 % over 1 µs..1 ms, 80 % over 1 ms..3 h, log-uniform: together they
    /// occupy all 2 311 keys of the default layout, more than the cap.
    fn very_wide(rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                if i % 5 == 0 {
                    rng.log_uniform(MIN_TRACKED_SECS, 1e-3)
                } else {
                    rng.log_uniform(1e-3, MAX_TRACKED_SECS)
                }
            })
            .collect()
    }

    #[test]
    fn bucket_cap_collapses_lowest_buckets() {
        let mut rng = Rng(99);
        let data = very_wide(&mut rng, 50_000);
        let s = sketch_of(DEFAULT_RELATIVE_ACCURACY, &data);
        assert_collapse_contract(&s, &sorted(&data));
        assert!(
            s.memory_bytes() <= 128 + (MAX_BUCKETS + 1) * 8,
            "{}",
            s.memory_bytes()
        );
        assert_eq!(s.count(), 50_000);

        // Values below the floor keep landing in the floor bucket.
        let mut t = s.clone();
        let floor_count = t.count_at(0);
        t.add(MIN_TRACKED_SECS);
        assert_eq!(t.count_at(0), floor_count + 1);
        t.check_invariants();

        // The zero bucket is never collapsed.
        t.add(0.0);
        assert_eq!(t.entries()[0], (ZERO_IDX, 1));
        assert_eq!(t.quantile(0.0), Some(0.0));
        t.check_invariants();

        // Clearing forgets the floor.
        t.clear();
        assert_eq!(t.floor, NO_FLOOR);
        t.add(MIN_TRACKED_SECS);
        assert_eq!(t.entries(), [(1, 1)]);

        // A finer layout hits the cap on ordinary latencies; the upper
        // quantiles are still right.
        let data = long_tail(50_000, 8);
        let fine = sketch_of(MIN_ALPHA, &data);
        fine.check_invariants();
        assert_ne!(fine.floor, NO_FLOOR);
        assert!(fine.wide, "layouts past 16-bit indices start wide");
        let sorted = sorted(&data);
        assert_rel(
            fine.quantile(0.999).expect("non-empty"),
            exact(&sorted, 0.999),
            MIN_ALPHA * 1.001,
            "p99.9",
        );
    }

    #[test]
    fn merges_respect_the_cap_and_floors() {
        let mut rng = Rng(3);
        let low: Vec<f64> = (0..3_000)
            .map(|_| rng.log_uniform(MIN_TRACKED_SECS, 1e-3))
            .collect();
        let high: Vec<f64> = (0..12_000)
            .map(|_| rng.log_uniform(1e-2, MAX_TRACKED_SECS))
            .collect();
        let mut all = low.clone();
        all.extend_from_slice(&high);
        let sorted_all = sorted(&all);

        // Neither side is collapsed, the union is.
        let alpha = DEFAULT_RELATIVE_ACCURACY;
        let (a, b) = (sketch_of(alpha, &low), sketch_of(alpha, &high));
        assert_eq!(a.floor, NO_FLOOR);
        assert_eq!(b.floor, NO_FLOOR);
        for (x, y) in [(&a, &b), (&b, &a)] {
            let mut m = x.clone();
            m.merge(y);
            assert_collapse_contract(&m, &sorted_all);
        }

        // A collapsed sketch merged into a fresh one, and the other way.
        let wide = very_wide(&mut rng, 30_000);
        let collapsed = sketch_of(alpha, &wide);
        let mut union = wide.clone();
        union.extend_from_slice(&high);
        let sorted_union = sorted(&union);
        let mut m1 = QuantileSketch::new();
        m1.merge(&b);
        m1.merge(&collapsed);
        assert_collapse_contract(&m1, &sorted_union);
        let mut m2 = collapsed.clone();
        m2.merge(&b);
        assert_collapse_contract(&m2, &sorted_union);
        assert!(m1.floor >= collapsed.floor && m2.floor >= collapsed.floor);
        assert_eq!(m1.count(), m2.count());
        // Uncollapsed `a` below the other's floor folds into it.
        let mut m3 = collapsed.clone();
        m3.merge(&a);
        m3.check_invariants();
        assert_eq!(m3.floor, collapsed.floor);
    }

    #[test]
    fn clear_releases_burst_capacity() {
        let mut rng = Rng(17);
        let mut s = QuantileSketch::new();
        for _ in 0..50_000 {
            s.add(rng.log_uniform(1e-5, 1e3));
        }
        let burst = s.memory_bytes();
        assert!(s.len() > 1500);
        s.clear();
        // The allocation is kept for a period like the one just cleared...
        assert_eq!(s.memory_bytes(), burst);
        for _ in 0..100 {
            s.add(rng.log_uniform(0.5, 1.0));
        }
        // ...and released down to the next period's needs afterwards.
        let used = s.data.len();
        s.clear();
        assert_eq!(s.data.capacity(), used);
        assert!(s.memory_bytes() < burst / 10);
    }

    #[test]
    fn empty_and_invalid_queries() {
        let s = QuantileSketch::new();
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.min(), None);
        assert_eq!(s.max(), None);
        assert_eq!(s.mean(), None);
        assert!(s.is_empty());

        let mut s = QuantileSketch::new();
        s.add(1.0);
        assert_eq!(s.quantile(f64::NAN), None);
        assert_eq!(s.quantile(-0.1), None);
        assert_eq!(s.quantile(1.1), None);
        assert_eq!(s.quantile(0.5), Some(1.0));
    }

    #[test]
    fn extreme_and_invalid_values() {
        let mut s = QuantileSketch::new();
        for bad in [f64::NAN, -1.0, f64::INFINITY, f64::NEG_INFINITY, -1e-300] {
            s.add(bad);
        }
        assert_eq!(s.ignored(), 5);
        assert!(s.is_empty());
        assert_eq!(s.data.capacity(), 0);

        // Zero bucket: zero, negative zero, subnormals, just below 1 µs.
        for v in [0.0, -0.0, 5e-324, f64::MIN_POSITIVE, 9.99e-7] {
            s.add(v);
        }
        assert_eq!(s.entries(), [(ZERO_IDX, 5)]);
        assert_eq!(s.min(), Some(0.0));
        assert!(s.min().is_some_and(|m| m.is_sign_positive()));
        assert_eq!(s.quantile(0.5), Some(0.0));

        // Range edges and clamping at the top.
        s.add(MIN_TRACKED_SECS);
        s.add(MAX_TRACKED_SECS);
        s.add(1e9);
        s.add(f64::MAX);
        s.check_invariants();
        assert_eq!(s.count(), 9);
        assert_eq!(s.max(), Some(MAX_TRACKED_SECS));
        assert!(s.sum().is_finite());
        assert_eq!(s.entries()[1..], [(1, 1), (s.max_idx, 3)]);
        assert_eq!(s.max_idx, 2311);
        assert_eq!(s.quantile(1.0), Some(MAX_TRACKED_SECS));
        let p90 = s.quantile(0.9).expect("non-empty");
        assert_rel(p90, MAX_TRACKED_SECS, DEFAULT_RELATIVE_ACCURACY, "top");
        let p60 = s.quantile(0.6).expect("non-empty");
        assert_rel(p60, MIN_TRACKED_SECS, DEFAULT_RELATIVE_ACCURACY, "bottom");
    }

    #[test]
    fn single_values_across_the_range_round_trip() {
        let mut v = MIN_TRACKED_SECS;
        while v <= MAX_TRACKED_SECS {
            let mut s = QuantileSketch::new();
            s.add(v);
            s.add(v);
            s.add(v);
            // Rank 2 of 3 is neither extreme, so this exercises the buckets.
            assert_rel(s.quantile(0.5).expect("non-empty"), v, 1e-12, "clamped");
            let mut t = QuantileSketch::new();
            t.add(v * 0.5);
            t.add(v);
            t.add(v * 2.0);
            let got = t.quantile(0.5).expect("non-empty");
            assert_rel(got, v, DEFAULT_RELATIVE_ACCURACY * 1.001, "middle");
            v *= 1.37;
        }
    }

    #[test]
    fn clear_resets_but_keeps_layout() {
        let mut s = QuantileSketch::with_relative_accuracy(0.01).expect("valid");
        s.add(1.0);
        let bytes = s.memory_bytes();
        s.add(f64::NAN);
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.ignored(), 0);
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.memory_bytes(), bytes);
        assert_eq!(s.relative_accuracy(), 0.01);
        s.add(2.0);
        assert_eq!(s.quantile(0.5), Some(2.0));
    }

    #[test]
    fn accuracy_validation() {
        assert!(QuantileSketch::with_relative_accuracy(f64::NAN).is_err());
        assert!(QuantileSketch::with_relative_accuracy(0.0).is_err());
        assert!(QuantileSketch::with_relative_accuracy(0.9).is_err());
        let err = QuantileSketch::with_relative_accuracy(2.0).expect_err("invalid");
        assert!(err.to_string().contains("expected a value in"));
        assert_eq!(QuantileSketch::new().relative_accuracy(), 0.005);
    }

    #[test]
    fn narrow_counts_widen_instead_of_overflowing() {
        let mut s = QuantileSketch::new();
        s.add(2.0);
        for _ in 0..70_000 {
            s.add(1.0);
        }
        assert!(s.wide);
        s.check_invariants();
        assert_eq!(s.count_at(bucket_of(&s, 1.0)), 70_000);
        assert_eq!(s.count_at(bucket_of(&s, 2.0)), 1);
        assert_eq!(s.memory_bytes(), 120 + s.data.capacity() * 4);
        assert_eq!(s.quantile(0.5), Some(1.0));

        // Narrow + narrow whose sum overflows, wide into narrow, narrow into
        // wide: all exact.
        let mut n = QuantileSketch::new();
        for _ in 0..40_000 {
            n.add(1.0);
        }
        let mut m = n.clone();
        m.merge(&n);
        assert!(m.wide);
        assert_eq!(m.count_at(0), 80_000);
        let mut x = QuantileSketch::new();
        x.add(3.0);
        x.merge(&s);
        x.check_invariants();
        assert!(x.wide);
        assert_eq!(x.entries().len(), 3);
        let mut y = s.clone();
        y.merge(&n);
        y.check_invariants();
        assert_eq!(y.count_at(bucket_of(&y, 1.0)), 110_000);

        // Clearing goes back to narrow entries.
        y.clear();
        assert!(!y.wide);
        y.add(1.0);
        assert_eq!(y.entries(), [(y.idx_of(1.0), 1)]);
    }

    #[test]
    fn wide_overflow_scales_instead_of_wrapping() {
        let mut s = QuantileSketch::new();
        s.add(1.0);
        s.add(2.0);
        s.widen();
        let one = bucket_of(&s, 1.0);
        let two = bucket_of(&s, 2.0);
        // Simulate billions of samples without looping over them.
        s.set_count(one, WIDE_MAX);
        s.set_count(two, 3);
        s.bucket_total = WIDE_MAX + 3;
        s.add(1.0);
        assert_eq!(s.count_at(one), WIDE_MAX.div_ceil(2) + 1);
        assert_eq!(s.count_at(two), 2);
        s.check_invariants();

        let mut t = s.clone();
        t.merge(&s);
        t.check_invariants();
        assert_rel(t.quantile(0.5).expect("non-empty"), 1.0, 0.006, "p50");

        // A huge count arriving as a brand-new bucket (cross-layout merge).
        let mut u = QuantileSketch::with_relative_accuracy(0.01).expect("valid");
        u.add(3.0);
        u.merge(&t);
        u.check_invariants();
        assert_rel(u.quantile(0.5).expect("non-empty"), 1.0, 0.016, "p50");
    }

    #[test]
    fn summary_serializes() {
        let mut s = QuantileSketch::new();
        s.add(0.5);
        let json = serde_json::to_value(s.summary()).expect("serializable");
        assert_eq!(json["count"], 1);
        assert_eq!(json["p99"], 0.5);
        let empty = serde_json::to_value(QuantileSketch::new().summary()).expect("ok");
        assert!(empty["p50"].is_null());
    }
}
