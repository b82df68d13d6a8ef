//! Token usage and the arithmetic that turns it into dollars.
//!
//! # Why integer pico-dollars
//!
//! Prices are published in USD per million tokens with up to four decimals
//! (`0.0375`), and a single call costs fractions of a cent. Summing `f64`
//! products of such numbers drifts in the last bits, which is enough to make
//! "exact to the micro-dollar" tests flaky and aggregated totals disagree
//! with a hand computation. So each price is converted once, at load time,
//! to an integer number of **pico-dollars (1e-12 USD) per token**
//! (`usd_per_mtok * 1e6`, rounded), and a call's cost is a sum of
//! `tokens * rate` in `u128`, which cannot overflow for any `u64` token
//! count. The resolution is therefore 1e-6 USD per million tokens, far below
//! any published price step. Only the final result is converted to `f64`.
//!
//! # Streaming
//!
//! A streamed call that reports usage in its last chunk is ordinary usage at
//! this layer: the caller passes that final usage once. Summing per-chunk
//! deltas, if a source reports them, is the normalizer's job.

use std::sync::Arc;

/// Token counts of one LLM call.
///
/// How `input` relates to the cache counts depends on the telemetry source;
/// say which with [`InputSemantics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt tokens (see [`InputSemantics`] for whether cache tokens are
    /// included).
    pub input: u64,
    /// Completion tokens. For OpenAI-style usage (OpenAI, Anthropic, OTel
    /// GenAI, OpenInference, DeepSeek, xAI) this already **includes**
    /// reasoning tokens, so they are charged here and only here.
    pub output: u64,
    /// Input tokens served from the provider's prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write: u64,
    /// Reasoning ("thinking") tokens. Informational only: never charged,
    /// because they are already part of `output`. A source that reports
    /// them separately from output (Gemini's native `thoughtsTokenCount`)
    /// must be folded into `output` by the normalizer.
    pub reasoning: u64,
}

/// Whether [`TokenUsage::input`] already counts the cache tokens.
///
/// Getting this wrong charges cached tokens twice (or not at all), so it is
/// a required argument rather than a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSemantics {
    /// `input` is the total prompt size and **contains** `cache_read` and
    /// `cache_write`. This is the convention of the OTel GenAI semantic
    /// conventions (`gen_ai.usage.input_tokens`), OpenInference, current
    /// OpenLLMetry, LangSmith, OpenAI's `prompt_tokens` and Gemini's
    /// `promptTokenCount`. Uncached input = `input - cache_read -
    /// cache_write`, floored at zero.
    IncludesCached,
    /// `input` counts only the uncached prompt tokens; cache tokens are
    /// reported beside it. This is Anthropic's raw `usage.input_tokens` and
    /// Langfuse `usage_details` once the cache details were subtracted.
    ExcludesCached,
}

/// The price of one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Cost {
    /// The model matched a price entry.
    Priced {
        /// Cost of the call in US dollars.
        usd: f64,
        /// Canonical name of the price entry that was used, for logs and
        /// metric labels.
        model: Arc<str>,
    },
    /// No price entry matched. This is deliberately *not* `$0`: an unknown
    /// model must show up as unpriced, never as free.
    Unpriced,
}

impl Cost {
    /// The dollar amount, or `None` when unpriced.
    pub fn usd(&self) -> Option<f64> {
        match self {
            Cost::Priced { usd, .. } => Some(*usd),
            Cost::Unpriced => None,
        }
    }

    /// The canonical name of the price entry used, or `None` when unpriced.
    pub fn model(&self) -> Option<&str> {
        match self {
            Cost::Priced { model, .. } => Some(model),
            Cost::Unpriced => None,
        }
    }
}

/// Pico-dollars in one US dollar.
pub(crate) const PICO_PER_USD: f64 = 1e12;
/// Parts-per-million denominator for the batch multiplier.
const PPM: u128 = 1_000_000;

/// A model's prices in the integer form used for arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rates {
    /// Pico-dollars per token (== micro-dollars per million tokens).
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// Share of the price still paid on a batch call, in parts per million
    /// (a 0.5 discount keeps 500_000).
    pub batch_keep_ppm: u32,
}

impl Rates {
    /// Exact cost of a call in pico-dollars.
    pub(crate) fn pico_usd(&self, u: &TokenUsage, semantics: InputSemantics, batch: bool) -> u128 {
        let uncached = match semantics {
            // Saturating: instrumentation that reports more cached than total
            // input is wrong, but the right answer is "no uncached input",
            // never an underflow.
            InputSemantics::IncludesCached => u
                .input
                .saturating_sub(u.cache_read)
                .saturating_sub(u.cache_write),
            InputSemantics::ExcludesCached => u.input,
        };
        // `reasoning` is intentionally absent: it is part of `output`.
        let total = mul(uncached, self.input)
            + mul(u.cache_read, self.cache_read)
            + mul(u.cache_write, self.cache_write)
            + mul(u.output, self.output);
        if batch {
            // The discount applies to the whole call (providers discount
            // input, cached input and output alike). Truncation loses less
            // than one pico-dollar.
            total * u128::from(self.batch_keep_ppm) / PPM
        } else {
            total
        }
    }
}

/// `u64 * u64` always fits in `u128`, and four such terms stay far below
/// `u128::MAX`, so plain addition cannot overflow.
fn mul(tokens: u64, pico_per_token: u64) -> u128 {
    u128::from(tokens) * u128::from(pico_per_token)
}

/// Convert a validated, non-negative USD-per-million-tokens price to
/// pico-dollars per token.
pub(crate) fn to_pico_per_token(usd_per_mtok: f64) -> u64 {
    // Validation caps prices far below u64::MAX / 1e6, so the cast is exact
    // after rounding.
    (usd_per_mtok * 1e6).round() as u64
}

/// Convert a validated discount in `0..=1` to the kept share in ppm.
pub(crate) fn to_keep_ppm(discount: f64) -> u32 {
    ((1.0 - discount) * 1e6).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// $3 in / $15 out / $0.30 cache read / $3.75 cache write, 50% batch:
    /// Claude Sonnet list prices, a realistic mix of all four rates.
    fn sonnet() -> Rates {
        Rates {
            input: to_pico_per_token(3.0),
            output: to_pico_per_token(15.0),
            cache_read: to_pico_per_token(0.30),
            cache_write: to_pico_per_token(3.75),
            batch_keep_ppm: to_keep_ppm(0.5),
        }
    }

    fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> TokenUsage {
        TokenUsage {
            input,
            output,
            cache_read,
            cache_write,
            reasoning: 0,
        }
    }

    #[test]
    fn conversion_is_exact_for_published_price_steps() {
        assert_eq!(to_pico_per_token(2.5), 2_500_000);
        assert_eq!(to_pico_per_token(0.075), 75_000);
        assert_eq!(to_pico_per_token(0.0375), 37_500);
        assert_eq!(to_pico_per_token(0.005), 5_000);
        assert_eq!(to_keep_ppm(0.5), 500_000);
        assert_eq!(to_keep_ppm(0.0), 1_000_000);
    }

    #[test]
    fn plain_input_and_output() {
        // 1000 * $3/M + 500 * $15/M = $0.003 + $0.0075 = $0.0105
        let pico = sonnet().pico_usd(
            &usage(1000, 500, 0, 0),
            InputSemantics::IncludesCached,
            false,
        );
        assert_eq!(pico, 10_500_000_000);
    }

    #[test]
    fn cache_tokens_are_not_charged_twice_under_includes_cached() {
        // input 10_000 contains 6_000 cache reads and 1_000 cache writes:
        // 3_000 * 3 + 6_000 * 0.30 + 1_000 * 3.75 + 200 * 15  (per M)
        // = 9_000 + 1_800 + 3_750 + 3_000 = 17_550 micro-dollars
        let u = usage(10_000, 200, 6_000, 1_000);
        let pico = sonnet().pico_usd(&u, InputSemantics::IncludesCached, false);
        assert_eq!(pico, 17_550_000_000);
    }

    #[test]
    fn excludes_cached_charges_input_in_full() {
        // Anthropic raw usage: input 3_000 uncached, plus the same cache
        // traffic as above: identical bill.
        let u = usage(3_000, 200, 6_000, 1_000);
        let pico = sonnet().pico_usd(&u, InputSemantics::ExcludesCached, false);
        assert_eq!(pico, 17_550_000_000);
    }

    #[test]
    fn more_cached_than_input_saturates_to_zero_uncached() {
        let u = usage(100, 0, 500, 0);
        let pico = sonnet().pico_usd(&u, InputSemantics::IncludesCached, false);
        // Only the 500 cache reads: 500 * 0.30 = 150 micro-dollars.
        assert_eq!(pico, 150_000_000);
    }

    #[test]
    fn reasoning_is_never_added_to_output() {
        let mut u = usage(0, 1_000, 0, 0);
        let without = sonnet().pico_usd(&u, InputSemantics::IncludesCached, false);
        u.reasoning = 800;
        let with = sonnet().pico_usd(&u, InputSemantics::IncludesCached, false);
        assert_eq!(without, with);
        assert_eq!(with, 15_000_000_000);
    }

    #[test]
    fn batch_discount_applies_to_the_whole_call() {
        let u = usage(10_000, 200, 6_000, 1_000);
        let pico = sonnet().pico_usd(&u, InputSemantics::IncludesCached, true);
        assert_eq!(pico, 8_775_000_000);
    }

    #[test]
    fn extreme_token_counts_do_not_overflow() {
        let u = TokenUsage {
            input: u64::MAX,
            output: u64::MAX,
            cache_read: u64::MAX,
            cache_write: u64::MAX,
            reasoning: u64::MAX,
        };
        let pico = sonnet().pico_usd(&u, InputSemantics::ExcludesCached, true);
        assert!(pico > 0);
    }

    #[test]
    fn cost_accessors() {
        let c = Cost::Priced {
            usd: 0.25,
            model: Arc::from("gpt-4o"),
        };
        assert_eq!(c.usd(), Some(0.25));
        assert_eq!(c.model(), Some("gpt-4o"));
        assert_eq!(Cost::Unpriced.usd(), None);
        assert_eq!(Cost::Unpriced.model(), None);
    }
}
