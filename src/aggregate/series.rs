//! Cached metric handles per label set, behind a cardinality guard.
//!
//! Two jobs. Speed: creating a handle hashes the whole label set, so each
//! label set's handles are created once and found again by a string key
//! built in a reused buffer (no allocation on a hit). Safety: a family holds
//! at most `limit` label sets; past it, every new label set is folded into a
//! single `__overflow__` series and counted, so a client sending a million
//! distinct chain names costs `limit` series, not a million.
//!
//! Bytes, too: a label set is keyed by its values *as exported*, each capped
//! by `export::labels::cap` (bounded length, no control characters, a hash
//! suffix when changed), and a family also folds new label sets into the
//! overflow series once the label-value bytes of its label sets reach
//! `limits.max_series_bytes_per_family`. So the exposition of a family is
//! bounded by that budget times the lines per label set, whatever the
//! clients send (see the README's "Bounded resources").

use crate::export::labels;
use crate::export::names::{CARDINALITY_LIMIT, CARDINALITY_OVERFLOW, CARDINALITY_SERIES};
use crate::export::Registry;
use metrics::{Counter, Gauge};
use std::borrow::Cow;
use std::sync::Arc;
// foldhash: seeded per process (so hash flooding from network-chosen keys is
// not predictable) and several times faster than SipHash on short keys.
use foldhash::fast::RandomState;
use std::collections::HashMap;

/// Separates label values inside a cache key; it cannot occur in a value
/// that matters (control character).
pub const SEP: char = '\u{1f}';

pub struct Family<H> {
    map: HashMap<Box<str>, H, RandomState>,
    overflow: Option<H>,
    limit: usize,
    /// Label-value bytes held (sum of the stored keys' lengths) and their cap.
    bytes: usize,
    max_bytes: usize,
    max_value_bytes: usize,
    registry: Arc<Registry>,
    series: Gauge,
    overflowed: Counter,
}

impl<H> Family<H> {
    pub fn new(registry: &Arc<Registry>, name: &'static str, limit: usize) -> Self {
        registry
            .gauge(CARDINALITY_LIMIT, &[("family", name)])
            .set(limit as f64);
        let caps = registry.label_limits();
        Family {
            map: HashMap::default(),
            overflow: None,
            limit,
            bytes: 0,
            max_bytes: caps.max_family_bytes,
            max_value_bytes: caps.max_value_bytes,
            registry: registry.clone(),

            series: registry.gauge(CARDINALITY_SERIES, &[("family", name)]),
            overflowed: registry.counter(CARDINALITY_OVERFLOW, &[("family", name)]),
        }
    }

    /// The handles for `key`, created by `make(false)` on first sight, or the
    /// overflow handles (`make(true)`) once the family is full.
    pub fn get(&mut self, key: &str, make: impl FnOnce(bool) -> H) -> &mut H {
        self.lookup(key, make, true)
    }

    /// As `get`, for a second lookup of the same observation (so a folded
    /// observation is counted once in the overflow counter).
    pub fn get_again(&mut self, key: &str, make: impl FnOnce(bool) -> H) -> &mut H {
        self.lookup(key, make, false)
    }

    fn lookup(&mut self, key: &str, make: impl FnOnce(bool) -> H, count: bool) -> &mut H {
        if is_clean(key, self.max_value_bytes) {
            return self.lookup_capped(key, make, count);
        }
        // Rare: some value is too long or holds control characters. Key by
        // the values as they will be exported.
        let mut capped = String::with_capacity(key.len().min(1024));
        let mut altered = Vec::new();
        for (i, v) in key.split(SEP).enumerate() {
            if i > 0 {
                capped.push(SEP);
            }
            let c = labels::cap(v, self.max_value_bytes);
            if matches!(c, Cow::Owned(_)) {
                altered.push(v);
            }
            capped.push_str(&c);
        }
        if !self.map.contains_key(capped.as_str()) && self.has_room(capped.len()) {
            for v in altered {
                self.registry.count_altered(v);
            }
        }
        self.lookup_capped(&capped, make, count)
    }

    fn has_room(&self, key_len: usize) -> bool {
        self.map.len() < self.limit && self.bytes + key_len <= self.max_bytes
    }

    fn lookup_capped(&mut self, key: &str, make: impl FnOnce(bool) -> H, count: bool) -> &mut H {
        if self.map.contains_key(key) {
            // Two lookups on a hit keep the borrow checker happy without an
            // allocation; a hit is the common case and both are cheap.
            return self.map.get_mut(key).expect("present");
        }
        if !self.has_room(key.len()) {
            if count {
                self.overflowed.increment(1);
            }
            return self.overflow.get_or_insert_with(|| make(true));
        }
        self.bytes += key.len();
        self.series.set((self.map.len() + 1) as f64);
        self.map.entry(key.into()).or_insert_with(|| make(false))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// True when every value in `key` is already a valid label value: the whole
/// key is within the cap (so is each value) and holds no control character
/// but the separator.
fn is_clean(key: &str, max: usize) -> bool {
    if key.len() > max {
        return false;
    }
    // One pass over the bytes; the (slower) look at characters only for
    // keys with non-ASCII text, where C1 controls hide.
    let mut non_ascii = false;
    for &b in key.as_bytes() {
        if (b < 0x20 && b != 0x1f) || b == 0x7f {
            return false;
        }
        non_ascii |= b >= 0x80;
    }
    !non_ascii || !key.chars().any(|c| c.is_control() && c != SEP)
}

/// Builds a cache key from label values into a reused buffer.
pub fn key_into<'b>(buf: &'b mut String, values: &[&str]) -> &'b str {
    buf.clear();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            buf.push(SEP);
        }
        buf.push_str(v);
    }
    buf.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_past_the_limit_and_counts() {
        let registry = Arc::new(Registry::new());
        let mut fam: Family<u32> = Family::new(&registry, "test_family", 2);
        let mut created = 0;
        for name in ["a", "b", "c", "d", "a"] {
            fam.get(name, |overflow| {
                created += 1;
                if overflow {
                    999
                } else {
                    created
                }
            });
        }
        assert_eq!(fam.len(), 2);
        assert_eq!(*fam.get("a", |_| 0), 1);
        assert_eq!(*fam.get("zzz", |_| 0), 999);
        let text = registry.render();
        assert!(
            text.contains("chainpulse_cardinality_overflow_total{family=\"test_family\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("chainpulse_cardinality_series{family=\"test_family\"} 2"),
            "{text}"
        );
    }
}
