//! Cost of LLM calls: a dated price table, model-name matching, and exact
//! cost arithmetic.
//!
//! This module is self-contained (serde, toml, thiserror, tracing only) so
//! it can be reasoned about and tested without the rest of chainpulse.
//!
//! * [`PriceTable`] holds model prices (USD per million tokens). The
//!   built-in snapshot is `prices.toml`, embedded in the binary; a user file
//!   and inline config entries are merged over it ([`PricingConfig`]).
//! * [`PriceTable::lookup`] maps the model string found on a span
//!   (`gpt-4o-mini-2024-07-18`, `openrouter/anthropic/claude-3.5-sonnet`,
//!   `us.anthropic.claude-3-5-sonnet-20241022-v2:0`, an Azure deployment
//!   alias, `ft:gpt-4o-mini:org::id`...) to a [`ModelPrice`] whose
//!   [`name`](ModelPrice::name) says which entry was used.
//! * [`PriceTable::cost`] prices a [`TokenUsage`] given its
//!   [`InputSemantics`]; an unknown model is [`Cost::Unpriced`], never $0.
//!
//! ```text
//! let table = PriceTable::from_config(&config.pricing)?;
//! let usage = TokenUsage { input: 1200, output: 300, cache_read: 1000, ..Default::default() };
//! match table.cost(Some("openai"), "gpt-4o-2024-08-06", &usage, InputSemantics::IncludesCached, false) {
//!     Cost::Priced { usd, model } => { /* record usd, label with model */ }
//!     Cost::Unpriced => { /* count as unpriced; do not add 0 */ }
//! }
//! ```

mod config;
mod cost;
mod error;
mod matcher;
mod schema;
mod table;

pub use config::PricingConfig;
pub use cost::{Cost, InputSemantics, TokenUsage};
pub use error::PricingError;
pub use schema::ModelPriceSpec;
pub use table::{ModelPrice, PriceTable};

#[cfg(test)]
mod tests;
