//! Weighted heavy hitters in fixed memory (the Space-Saving algorithm).
//!
//! The KPI API wants "top chains by cost", "top models by tokens" and the
//! like over an unbounded key space (chain names, user ids, prompt
//! templates). Counting every key exactly would let one misbehaving client
//! grow memory without limit, so we keep at most `capacity` counters.
//!
//! Space-Saving (Metwally, Agrawal, El Abbadi 2005), weighted: a monitored key
//! adds its weight to its counter. An unmonitored key, when all counters are
//! taken, *replaces* the key with the smallest counter `m`, inheriting it: the
//! new counter is `m + weight` with an error bound of `m`, because up to `m`
//! of that count may belong to keys evicted earlier.
//!
//! Guarantees, with `N = total()` and `k = capacity` (weights ≥ 0):
//!
//! * every reported item satisfies
//!   `estimate - error_bound <= true weight <= estimate`;
//! * the smallest counter is at most `N / k` (counters sum to `N`), so any
//!   key whose true weight exceeds `N / k` is always monitored;
//! * with at most `k` distinct keys every estimate is exact (error 0).
//!
//! The counters live in a binary min-heap so finding the eviction victim is
//! O(1) and re-ordering after an update is O(log k). Keys are stored once as
//! `Arc<str>`, shared between the lookup map and the heap entry; looking up
//! an existing key borrows the caller's `&str` and allocates nothing.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Capacity used by the KPI API when none is configured.
pub const DEFAULT_CAPACITY: usize = 1000;

/// One reported heavy hitter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeavyHitter {
    pub key: String,
    /// Upper bound on the key's true total weight.
    pub estimate: f64,
    /// How much of `estimate` may belong to other keys:
    /// `estimate - error_bound <= true <= estimate`.
    pub error_bound: f64,
}

/// A monitored key.
#[derive(Debug, Clone)]
struct Counter {
    key: Arc<str>,
    count: f64,
    error: f64,
    /// Position of this counter in `SpaceSaving::heap`, kept in sync on every
    /// swap so an update can start sifting from the right place.
    heap_pos: usize,
}

/// Fixed-capacity weighted heavy-hitter summary.
#[derive(Debug, Clone)]
pub struct SpaceSaving {
    capacity: usize,
    /// Counter storage; indices into it never change once assigned, which is
    /// what lets the map and the heap refer to counters by index.
    counters: Vec<Counter>,
    /// Min-heap (by `count`) of indices into `counters`.
    heap: Vec<usize>,
    /// Key → index into `counters`. `Arc<str>: Borrow<str>` gives `&str`
    /// lookups.
    index: HashMap<Arc<str>, usize>,
    total: f64,
    ignored: u64,
}

impl SpaceSaving {
    /// A summary tracking at most `capacity` keys. A capacity of 0 is treated
    /// as 1, so a misconfiguration degrades accuracy instead of panicking.
    ///
    /// Memory is roughly `capacity * (~100 bytes + average key length)`.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // Don't pre-reserve absurd capacities from config; the vectors grow to
        // at most `capacity` as keys arrive anyway.
        let reserve = capacity.min(4096);
        SpaceSaving {
            capacity,
            counters: Vec::with_capacity(reserve),
            heap: Vec::with_capacity(reserve),
            index: HashMap::with_capacity(reserve),
            total: 0.0,
            ignored: 0,
        }
    }

    /// Adds `weight` (cost in USD, a request count, tokens...) to `key`.
    ///
    /// Non-finite, negative and zero weights are ignored (and counted in
    /// [`ignored`](Self::ignored)): the guarantees need non-negative weights,
    /// and a zero weight would only churn the table by evicting a real key.
    ///
    /// O(log k). No allocation when `key` is already monitored; a new key
    /// allocates its `Arc<str>` once.
    pub fn add(&mut self, key: &str, weight: f64) {
        if !weight.is_finite() || weight <= 0.0 {
            self.ignored += 1;
            return;
        }
        self.total += weight;

        if let Some(&slot) = self.index.get(key) {
            let c = &mut self.counters[slot];
            c.count += weight;
            let pos = c.heap_pos;
            self.sift_down(pos);
            return;
        }

        let key: Arc<str> = Arc::from(key);
        if self.counters.len() < self.capacity {
            let slot = self.counters.len();
            let pos = self.heap.len();
            self.counters.push(Counter {
                key: Arc::clone(&key),
                count: weight,
                error: 0.0,
                heap_pos: pos,
            });
            self.heap.push(slot);
            self.index.insert(key, slot);
            self.sift_up(pos);
            return;
        }

        // Full: the new key takes over the smallest counter, inheriting its
        // count as the error bound. The heap root is that counter.
        let slot = self.heap[0];
        let victim = &mut self.counters[slot];
        let inherited = victim.count;
        let old_key = std::mem::replace(&mut victim.key, Arc::clone(&key));
        victim.count = inherited + weight;
        victim.error = inherited;
        self.index.remove(&old_key);
        self.index.insert(key, slot);
        // The root only grew, so it can only need to move down.
        self.sift_down(0);
    }

    /// The `n` keys with the largest estimates, largest first. Ties are broken
    /// by key so output is deterministic across calls.
    pub fn top(&self, n: usize) -> Vec<HeavyHitter> {
        let mut refs: Vec<&Counter> = self.counters.iter().collect();
        refs.sort_unstable_by(|a, b| b.count.total_cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        refs.into_iter()
            .take(n)
            .map(|c| HeavyHitter {
                key: c.key.to_string(),
                estimate: c.count,
                error_bound: c.error,
            })
            .collect()
    }

    /// `(estimate, error_bound)` for a monitored key, `None` otherwise. An
    /// unmonitored key's true weight is at most [`min_estimate`](Self::min_estimate).
    pub fn get(&self, key: &str) -> Option<(f64, f64)> {
        self.index.get(key).map(|&slot| {
            let c = &self.counters[slot];
            (c.count, c.error)
        })
    }

    /// The smallest monitored estimate once the table is full (0 before):
    /// an upper bound on the true weight of every key *not* monitored, and
    /// never more than `total() / capacity()`.
    pub fn min_estimate(&self) -> f64 {
        if self.counters.len() < self.capacity {
            return 0.0;
        }
        self.heap
            .first()
            .map_or(0.0, |&slot| self.counters[slot].count)
    }

    /// Sum of all accepted weights, including those of evicted keys.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// Number of rejected weights (non-finite, negative or zero).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Number of keys currently monitored.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets everything, keeping the allocations.
    pub fn clear(&mut self) {
        self.counters.clear();
        self.heap.clear();
        self.index.clear();
        self.total = 0.0;
        self.ignored = 0;
    }

    fn less(&self, a: usize, b: usize) -> bool {
        self.counters[self.heap[a]].count < self.counters[self.heap[b]].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.counters[self.heap[a]].heap_pos = a;
        self.counters[self.heap[b]].heap_pos = b;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if !self.less(pos, parent) {
                break;
            }
            self.swap(pos, parent);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        let len = self.heap.len();
        loop {
            let left = 2 * pos + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.less(right, left) {
                right
            } else {
                left
            };
            if !self.less(child, pos) {
                break;
            }
            self.swap(pos, child);
            pos = child;
        }
    }
}

impl Default for SpaceSaving {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn unit(&mut self) -> f64 {
            ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
    }

    /// Checks the heap invariant and the map/heap back-pointers.
    fn assert_consistent(s: &SpaceSaving) {
        assert_eq!(s.heap.len(), s.counters.len());
        assert_eq!(s.index.len(), s.counters.len());
        for (pos, &slot) in s.heap.iter().enumerate() {
            assert_eq!(s.counters[slot].heap_pos, pos);
            if pos > 0 {
                assert!(s.counters[s.heap[(pos - 1) / 2]].count <= s.counters[slot].count);
            }
            assert_eq!(s.index.get(&*s.counters[slot].key), Some(&slot));
        }
    }

    #[test]
    fn exact_when_keys_fit() {
        let mut s = SpaceSaving::new(10);
        for i in 0..10u32 {
            for _ in 0..=i {
                s.add(&format!("k{i}"), 0.5);
            }
        }
        assert_consistent(&s);
        let top = s.top(100);
        assert_eq!(top.len(), 10);
        for (rank, h) in top.iter().enumerate() {
            let i = 9 - rank;
            assert_eq!(h.key, format!("k{i}"));
            assert_eq!(h.estimate, 0.5 * (i + 1) as f64);
            assert_eq!(h.error_bound, 0.0);
        }
        assert_eq!(s.top(3).len(), 3);
        assert_eq!(s.total(), 0.5 * 55.0);
        assert_eq!(s.min_estimate(), 0.5);
    }

    #[test]
    fn guarantees_hold_on_zipf_stream() {
        const KEYS: usize = 20_000;
        const CAP: usize = 200;
        // Zipf(s = 1.1) over KEYS keys via inverse CDF on the cumulative weights.
        let cdf: Vec<f64> = (1..=KEYS)
            .scan(0.0, |acc, r| {
                *acc += 1.0 / (r as f64).powf(1.1);
                Some(*acc)
            })
            .collect();
        let norm = cdf[KEYS - 1];
        let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
        let mut s = SpaceSaving::new(CAP);
        let mut truth = vec![0.0f64; KEYS];
        for _ in 0..300_000 {
            let u = rng.unit() * norm;
            let r = cdf.partition_point(|&c| c < u).min(KEYS - 1);
            // Cost-like weights: varying, fractional.
            let w = 0.001 + rng.unit() * 0.01;
            s.add(&format!("chain-{r}"), w);
            truth[r] += w;
        }
        assert_consistent(&s);
        let total: f64 = truth.iter().sum();
        let eps = 1e-9 * total;
        assert!((s.total() - total).abs() <= eps);
        assert_eq!(s.len(), CAP);

        let top = s.top(CAP);
        let mut some_error = false;
        for h in &top {
            let r: usize = h.key["chain-".len()..].parse().expect("our key");
            let t = truth[r];
            assert!(h.estimate - h.error_bound <= t + eps, "{h:?} true {t}");
            assert!(t <= h.estimate + eps, "{h:?} true {t}");
            some_error |= h.error_bound > 0.0;
        }
        assert!(some_error, "stream should have forced evictions");
        assert!(top.windows(2).all(|w| w[0].estimate >= w[1].estimate));

        // Everything above N/k must be monitored.
        let threshold = total / CAP as f64;
        assert!(s.min_estimate() <= threshold + eps);
        for (r, &t) in truth.iter().enumerate() {
            if t > threshold {
                assert!(s.get(&format!("chain-{r}")).is_some(), "missing key {r}");
            } else if s.get(&format!("chain-{r}")).is_none() {
                assert!(t <= s.min_estimate() + eps);
            }
        }
        // The head of a Zipf stream should come out in the right order.
        let head: Vec<&str> = top.iter().take(3).map(|h| h.key.as_str()).collect();
        assert_eq!(head, ["chain-0", "chain-1", "chain-2"]);
    }

    #[test]
    fn eviction_reports_error_bound() {
        let mut s = SpaceSaving::new(2);
        s.add("a", 5.0);
        s.add("b", 1.0);
        s.add("c", 2.0); // evicts b (1.0): c = 3.0 ± 1.0
        assert_consistent(&s);
        assert_eq!(s.get("b"), None);
        assert_eq!(s.get("c"), Some((3.0, 1.0)));
        assert_eq!(
            s.top(5),
            vec![
                HeavyHitter {
                    key: "a".into(),
                    estimate: 5.0,
                    error_bound: 0.0
                },
                HeavyHitter {
                    key: "c".into(),
                    estimate: 3.0,
                    error_bound: 1.0
                },
            ]
        );
        assert_eq!(s.total(), 8.0);
    }

    #[test]
    fn bad_weights_are_ignored_and_zero_capacity_is_usable() {
        let mut s = SpaceSaving::new(0);
        assert_eq!(s.capacity(), 1);
        for w in [f64::NAN, f64::INFINITY, -1.0, 0.0, -0.0] {
            s.add("x", w);
        }
        assert_eq!(s.ignored(), 5);
        assert!(s.is_empty());
        s.add("x", 1.0);
        s.add("y", 1.0);
        assert_eq!(s.top(1)[0].key, "y");
        assert_eq!(s.top(1)[0].error_bound, 1.0);
        s.clear();
        assert!(s.is_empty() && s.total() == 0.0 && s.top(1).is_empty());
    }

    #[test]
    fn ties_are_deterministic_and_serializable() {
        let mut s = SpaceSaving::default();
        assert_eq!(s.capacity(), DEFAULT_CAPACITY);
        for k in ["b", "c", "a"] {
            s.add(k, 1.0);
        }
        let keys: Vec<String> = s.top(3).into_iter().map(|h| h.key).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        let json = serde_json::to_value(&s.top(1)[0]).expect("serializable");
        assert_eq!(json["key"], "a");
        assert_eq!(json["error_bound"], 0.0);
    }
}
