//! Label values as they may appear in the exposition: capped in bytes and
//! free of control characters.
//!
//! Every label value chainpulse emits comes from the network (service,
//! chain, step, model, provider, error type, promoted metadata), so each is
//! passed through [`cap`] where label sets are created: in
//! `aggregate::series::Family` (the cache key, whose values become the
//! labels) and in `Registry` (every handle it registers). A value longer than
//! the cap is cut at a UTF-8 boundary and ends in `~` plus 12 hex digits of a
//! hash of the *whole* original value, so two long values that share a prefix
//! stay two series. Control characters (C0, DEL, C1) become U+FFFD, and a
//! value that needed that also gets the suffix, for the same reason.
//!
//! The hash is FNV-1a (64-bit), fixed rather than per-process seeded: a
//! series must keep its name across restarts, or every restart would start a
//! new series in Prometheus.

use std::borrow::Cow;
use std::fmt::Write;

/// Default `limits.max_label_value_bytes`.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 128;
/// Default `limits.max_series_bytes_per_family`.
pub const DEFAULT_MAX_FAMILY_BYTES: usize = 256 * 1024;
/// Smallest accepted cap: room for a few bytes of the value and the suffix.
pub const MIN_VALUE_BYTES: usize = 32;

/// `~` and 12 hex digits.
const SUFFIX_LEN: usize = 13;

/// The caps of one registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelLimits {
    /// Bytes per label value (`limits.max_label_value_bytes`).
    pub max_value_bytes: usize,
    /// Label-value bytes (the sum over a family's label sets) a metric
    /// family may hold before new label sets fold into `__overflow__`
    /// (`limits.max_series_bytes_per_family`).
    pub max_family_bytes: usize,
}

impl Default for LabelLimits {
    fn default() -> Self {
        LabelLimits {
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_family_bytes: DEFAULT_MAX_FAMILY_BYTES,
        }
    }
}

fn is_bad(c: char) -> bool {
    c.is_control()
}

/// True when [`cap`] would change `v` (cheap: no allocation).
pub fn needs_cap(v: &str, max: usize) -> bool {
    v.len() > max
        || (!v.is_ascii() && v.chars().any(is_bad))
        || v.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// `v` as a label value: at most `max` bytes, no control characters.
/// Idempotent: a capped value is returned unchanged.
pub fn cap(v: &str, max: usize) -> Cow<'_, str> {
    if !needs_cap(v, max) {
        return Cow::Borrowed(v);
    }
    let budget = max.max(MIN_VALUE_BYTES) - SUFFIX_LEN;
    let mut out = String::with_capacity(budget + SUFFIX_LEN);
    for c in v.chars() {
        let c = if is_bad(c) { '\u{fffd}' } else { c };
        if out.len() + c.len_utf8() > budget {
            break;
        }
        out.push(c);
    }
    out.push('~');
    let _ = write!(out, "{:012x}", fnv1a(v.as_bytes()) >> 16);
    Cow::Owned(out)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clean_values_are_untouched() {
        assert!(matches!(cap("rag_query", 128), Cow::Borrowed("rag_query")));
        assert!(matches!(cap("çà–日本", 128), Cow::Borrowed(_)));
    }

    #[test]
    fn long_values_are_cut_at_a_char_boundary_and_stay_distinct() {
        let a = format!("{}a", "é".repeat(100));
        let b = format!("{}b", "é".repeat(100));
        let (ca, cb) = (cap(&a, 64), cap(&b, 64));
        assert!(ca.len() <= 64 && cb.len() <= 64, "{ca} {cb}");
        assert_ne!(ca, cb);
        assert!(ca.starts_with("ééé"));
        assert_eq!(cap(&ca, 64), ca, "idempotent");
        let huge = "x".repeat(4 << 20);
        assert_eq!(cap(&huge, 128).len(), 128);
    }

    #[test]
    fn control_characters_are_replaced() {
        let c = cap("a\nb\u{1}c\u{7f}d\u{85}e", 128);
        assert!(!c.chars().any(char::is_control), "{c}");
        assert!(c.starts_with("a\u{fffd}b"));
        assert_ne!(cap("a\nb", 128), cap("a\rb", 128));
        assert_eq!(cap(&c, 128), c);
    }
}
