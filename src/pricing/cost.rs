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
        /// metric labels (the source's model id for built-in entries).
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
