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
//! adding their arrays. That is what lets the sliding windows in
//! `super::window` keep one small sketch per time slot and combine them on
//! demand.
//!
//! Memory is fixed at construction: a dense `u32` array over the key range
//! `[MIN_TRACKED_SECS, MAX_TRACKED_SECS]` plus one "zero" bucket for values
//! below the range. With the default `α = 0.005` that is 2 312 buckets,
//! about 9.1 KiB, and `add` never allocates.

use serde::Serialize;
use std::fmt;

/// Values below this (1 µs) all land in a single "zero" bucket. Nothing we
/// observe is meaningfully faster than a microsecond, and cutting the range
/// here is what keeps the dense bucket array small.
pub const MIN_TRACKED_SECS: f64 = 1e-6;

/// Values above this (3 hours) are recorded *as* this value: they land in the
/// top bucket and count towards `sum` / `max` as exactly 3 h. An LLM call or
/// chain run that takes longer than that is broken rather than slow, and
/// clamping keeps `sum` finite even if a client sends absurd timestamps.
pub const MAX_TRACKED_SECS: f64 = 3.0 * 3600.0;

/// Relative accuracy used by [`QuantileSketch::new`]: reported quantiles are
/// within 0.5 % of a true sample, comfortably inside the 1 % we promise.
pub const DEFAULT_RELATIVE_ACCURACY: f64 = 0.005;

/// The accepted range for a custom relative accuracy. Below 1e-4 the bucket
/// array grows past 100k entries (~450 KiB), which defeats the point of a
/// sketch; above 0.5 the mapping degenerates (γ ≥ 3).
const MIN_ALPHA: f64 = 1e-4;
const MAX_ALPHA: f64 = 0.5;

/// A mergeable, fixed-memory quantile sketch for durations in seconds.
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
    /// Key of bucket index 1 (index 0 is the zero bucket).
    min_key: i32,
    /// Index 0: values below `MIN_TRACKED_SECS`. Index `i >= 1`: key
    /// `min_key + i - 1`. The last index also absorbs everything clamped.
    ///
    /// `u32` rather than `u64` halves the footprint, which matters because
    /// the window module keeps dozens of these. See `bump` for what happens in
    /// the (billions-of-samples) case where one bucket would overflow.
    buckets: Box<[u32]>,
    /// Sum of `buckets`. Equal to `count` unless a bucket overflowed and the
    /// array was scaled down; quantile ranks are computed against this so the
    /// bucket walk stays self-consistent either way.
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
    /// A sketch with the default 0.5 % relative accuracy (~9.1 KiB).
    pub fn new() -> Self {
        Self::with_alpha(DEFAULT_RELATIVE_ACCURACY)
    }

    /// A sketch with a custom relative accuracy `alpha` (e.g. `0.02` for 2 %).
    ///
    /// Coarser sketches are proportionally smaller: the bucket count is
    /// `ln(MAX/MIN) / ln((1+α)/(1-α))`, so 0.02 needs ~580 buckets (2.3 KiB).
    /// The value may come from configuration, hence the `Result`.
    pub fn with_relative_accuracy(alpha: f64) -> Result<Self, InvalidAccuracy> {
        // Written as a negated range check so NaN is rejected too.
        if !(MIN_ALPHA..=MAX_ALPHA).contains(&alpha) {
            return Err(InvalidAccuracy(alpha));
        }
        Ok(Self::with_alpha(alpha))
    }

    /// Infallible constructor for crate-internal constants; the caller
    /// guarantees `alpha` is within `[MIN_ALPHA, MAX_ALPHA]`. Out-of-range
    /// values are clamped rather than trusted, so this can never build an
    /// absurdly large array.
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
        // +1 for the inclusive key range, +1 for the zero bucket.
        let len = (max_key - min_key + 2) as usize;
        QuantileSketch {
            alpha,
            gamma,
            inv_ln_gamma,
            ln_gamma,
            min_key,
            buckets: vec![0u32; len].into_boxed_slice(),
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
    /// O(1): one `ln`, one array increment, no allocation.
    #[inline]
    pub fn add(&mut self, value_secs: f64) {
        // `contains` is false for NaN as well as for negatives and +inf.
        if !(0.0..f64::INFINITY).contains(&value_secs) {
            self.ignored += 1;
            return;
        }
        // `abs` turns -0.0 into 0.0 so `min` never reports a negative zero.
        let v = value_secs.abs().min(MAX_TRACKED_SECS);
        let idx = self.index_of(v);
        self.bump(idx, 1);
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
    /// Sketches with the same relative accuracy merge exactly (bucket-wise
    /// addition). If the accuracies differ, each of `other`'s buckets is
    /// re-inserted at its representative value, so the result's error is
    /// bounded by the sum of both accuracies rather than by `self`'s alone.
    pub fn merge(&mut self, other: &QuantileSketch) {
        if other.count == 0 {
            self.ignored += other.ignored;
            return;
        }
        if self.same_layout(other) {
            self.merge_same_layout(other);
        } else {
            for (i, &c) in other.buckets.iter().enumerate() {
                if c != 0 {
                    let idx = self.index_of(other.bucket_value(i));
                    self.bump(idx, u64::from(c));
                }
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
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                if i == 0 {
                    return Some(self.min);
                }
                // Clamping into [min, max] can only move the estimate towards
                // the truth, since every sample lies in that range.
                return Some(self.bucket_value(i).clamp(self.min, self.max));
            }
        }
        // Unreachable while `bucket_total` is the sum of `buckets`, but a
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

    /// Heap + inline bytes held by this sketch. Fixed for its lifetime.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + std::mem::size_of_val(&*self.buckets)
    }

    /// Resets to empty, keeping the allocation (the window ring reuses slots).
    pub fn clear(&mut self) {
        self.buckets.fill(0);
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
    fn index_of(&self, v: f64) -> usize {
        if v < MIN_TRACKED_SECS {
            return 0;
        }
        let top = (self.buckets.len() - 1) as f64;
        // Done in f64 and clamped before the cast so rounding at the range
        // edges can never index out of bounds.
        let pos = (v.ln() * self.inv_ln_gamma).ceil() - f64::from(self.min_key) + 1.0;
        pos.clamp(1.0, top) as usize
    }

    /// Representative value of bucket `i`: the point whose relative distance
    /// to both bucket bounds is exactly α.
    fn bucket_value(&self, i: usize) -> f64 {
        if i == 0 {
            return 0.0;
        }
        let key = f64::from(self.min_key) + (i - 1) as f64;
        (key * self.ln_gamma).exp() * 2.0 / (1.0 + self.gamma)
    }

    fn same_layout(&self, other: &QuantileSketch) -> bool {
        self.buckets.len() == other.buckets.len()
            && self.min_key == other.min_key
            && self.gamma == other.gamma
    }

    /// Adds `n` to bucket `idx`.
    ///
    /// A `u32` bucket overflows only after ~4.3 billion samples in one 1 %
    /// band (weeks at 1 000 req/s, all of them the same latency). When that
    /// happens we halve every bucket (rounding up so no bucket empties) and
    /// the incoming `n` with it. Quantiles depend only on the *shape* of the
    /// histogram, so this keeps them meaningful; the cost is that later
    /// samples weigh double relative to earlier ones. `count` stays exact.
    #[inline]
    fn bump(&mut self, idx: usize, mut n: u64) {
        loop {
            let cur = u64::from(self.buckets[idx]);
            if cur + n <= u64::from(u32::MAX) {
                self.buckets[idx] = (cur + n) as u32;
                self.bucket_total += n;
                return;
            }
            self.scale_down(1);
            n = n.div_ceil(2);
        }
    }

    /// Divides every bucket by `2^shift`, rounding up.
    #[cold]
    fn scale_down(&mut self, shift: u32) {
        let mut total = 0u64;
        for c in self.buckets.iter_mut() {
            let scaled = ceil_shift(u64::from(*c), shift);
            // `scaled <= *c`, so the cast cannot truncate.
            *c = scaled as u32;
            total += scaled;
        }
        self.bucket_total = total;
    }

    fn merge_same_layout(&mut self, other: &QuantileSketch) {
        let max = u64::from(u32::MAX);
        let fits = |shift: u32| {
            self.buckets
                .iter()
                .zip(other.buckets.iter())
                .all(|(&a, &b)| ceil_shift(a.into(), shift) + ceil_shift(b.into(), shift) <= max)
        };
        // Two u32 halved twice always fit, so this loop runs at most 3 times,
        // and in practice exactly once.
        let mut shift = 0;
        while !fits(shift) {
            shift += 1;
        }
        if shift > 0 {
            self.scale_down(shift);
        }
        let mut total = 0u64;
        for (a, &b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            let sum = u64::from(*a) + ceil_shift(b.into(), shift);
            *a = sum as u32;
            total += sum;
        }
        self.bucket_total = total;
    }

    #[cfg(test)]
    fn bucket_len(&self) -> usize {
        self.buckets.len()
    }
}

impl Default for QuantileSketch {
    fn default() -> Self {
        Self::new()
    }
}

// A derived Debug would print thousands of bucket counters.
impl fmt::Debug for QuantileSketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuantileSketch")
            .field("alpha", &self.alpha)
            .field("buckets", &self.buckets.len())
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

    #[test]
    fn percentiles_within_one_percent_on_long_tail() {
        let data = long_tail(100_000, 0x9E37_79B9_7F4A_7C15);
        let mut sketch = QuantileSketch::new();
        for &v in &data {
            sketch.add(v);
        }
        let mut sorted = data.clone();
        sorted.sort_by(f64::total_cmp);

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
        assert_eq!(a.buckets, whole.buckets);
        assert_eq!(a.count(), whole.count());
        assert_eq!(a.min(), whole.min());
        assert_eq!(a.max(), whole.max());
        assert_rel(a.sum(), whole.sum(), 1e-12, "sum");
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(a.quantile(q), whole.quantile(q));
        }
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
        assert_eq!(e.count(), 1);
        assert_eq!(e.quantile(0.5), before);
    }

    #[test]
    fn merge_across_accuracies_stays_close() {
        let data = long_tail(10_000, 7);
        let mut fine = QuantileSketch::new();
        let mut coarse = QuantileSketch::with_relative_accuracy(0.02).expect("valid");
        for &v in &data {
            coarse.add(v);
        }
        fine.merge(&coarse);
        let mut sorted = data;
        sorted.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.99] {
            let got = fine.quantile(q).expect("non-empty");
            assert_rel(got, exact(&sorted, q), 0.02 + 0.005 + 1e-9, "cross-layout");
        }
        assert_eq!(fine.count(), 10_000);
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

        // Zero bucket: zero, negative zero, subnormals, just below 1 µs.
        for v in [0.0, -0.0, 5e-324, f64::MIN_POSITIVE, 9.99e-7] {
            s.add(v);
        }
        assert_eq!(s.buckets[0], 5);
        assert_eq!(s.min(), Some(0.0));
        assert!(s.min().is_some_and(|m| m.is_sign_positive()));
        assert_eq!(s.quantile(0.5), Some(0.0));

        // Range edges and clamping at the top.
        s.add(MIN_TRACKED_SECS);
        s.add(MAX_TRACKED_SECS);
        s.add(1e9);
        s.add(f64::MAX);
        assert_eq!(s.count(), 9);
        assert_eq!(s.max(), Some(MAX_TRACKED_SECS));
        assert!(s.sum().is_finite());
        assert_eq!(s.buckets[s.bucket_len() - 1], 3);
        assert_eq!(s.buckets[1], 1);
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
        let bytes = s.memory_bytes();
        s.add(1.0);
        s.add(f64::NAN);
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.ignored(), 0);
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.memory_bytes(), bytes);
        s.add(2.0);
        assert_eq!(s.quantile(0.5), Some(2.0));
    }

    #[test]
    fn accuracy_validation_and_memory() {
        assert!(QuantileSketch::with_relative_accuracy(f64::NAN).is_err());
        assert!(QuantileSketch::with_relative_accuracy(0.0).is_err());
        assert!(QuantileSketch::with_relative_accuracy(0.9).is_err());
        let err = QuantileSketch::with_relative_accuracy(2.0).expect_err("invalid");
        assert!(err.to_string().contains("expected a value in"));

        let s = QuantileSketch::new();
        assert_eq!(s.bucket_len(), 2312);
        assert!(s.memory_bytes() < 10 * 1024, "{}", s.memory_bytes());
    }

    #[test]
    fn bucket_overflow_scales_instead_of_wrapping() {
        let mut s = QuantileSketch::new();
        s.add(1.0);
        s.add(2.0);
        let one = s.index_of(1.0);
        let two = s.index_of(2.0);
        // Simulate billions of samples without looping over them.
        s.buckets[one] = u32::MAX;
        s.buckets[two] = 3;
        s.bucket_total = u64::from(u32::MAX) + 3;
        s.add(1.0);
        assert_eq!(
            u64::from(s.buckets[one]),
            u64::from(u32::MAX).div_ceil(2) + 1
        );
        assert_eq!(s.buckets[two], 2);
        assert_eq!(
            s.bucket_total,
            s.buckets.iter().map(|&c| u64::from(c)).sum::<u64>()
        );

        let mut t = s.clone();
        t.merge(&s);
        assert_eq!(
            t.bucket_total,
            t.buckets.iter().map(|&c| u64::from(c)).sum::<u64>()
        );
        assert_rel(t.quantile(0.5).expect("non-empty"), 1.0, 0.006, "p50");
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
