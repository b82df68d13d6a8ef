//! Cost of LLM calls: dated prices generated from a maintained source,
//! exact-name matching, and exact integer cost arithmetic.
//!
//! This module is self-contained (serde, serde_json, toml, thiserror,
//! tracing only) so it can be reasoned about and tested without the rest of
//! chainpulse.
//!
//! * The built-in table is `generated/prices.json`, written by
//!   `scripts/gen-prices.py` from the pinned release of pydantic's
//!   genai-prices (version recorded in the file) plus the reviewed
//!   corrections in `overrides.toml`; never edited by hand. It carries
//!   every rate a model has (input, output, cache read, cache write 5m/1h,
//!   reasoning), long-context tiers, published batch rates, price history
//!   and regional/hosted variants (Bedrock regional vs global, Azure, Vertex,
//!   hosts and routers, each scoped to its provider). A user file and
//!   inline config entries are merged over it ([`PricingConfig`]).
//! * [`PriceTable::lookup`] maps the model string found on a span
//!   (`gpt-4o-mini-2024-07-18`, `openrouter/anthropic/claude-3.5-sonnet`,
//!   `us.anthropic.claude-sonnet-4-5-20250929-v1:0`, an Azure deployment
//!   alias, `ft:gpt-4o-mini:org::id`...) to a [`ModelPrice`] only when the
//!   name *is* that model (see `matcher`): an unknown suffix or version is
//!   unpriced, never priced as a neighbour.
//! * [`PriceTable::cost_at`] prices a [`TokenUsage`] at the rates in force
//!   when the call started; an unknown model is [`Cost::Unpriced`], never $0.
//! * [`view`] renders an entry or a listing for `chainpulse prices` and
//!   `GET /api/v1/prices`.
//!
//! ```text
//! let table = PriceTable::from_config(&config.pricing)?;
//! let usage = TokenUsage { input: 1200, output: 300, cache_read: 1000, ..Default::default() };
//! let at = At::from_unix_secs(span_start_secs);
//! match table.cost_at(Some("openai"), "gpt-4o-2024-08-06", at, &usage, InputSemantics::IncludesCached, false) {
//!     Cost::Priced { usd, model } => { /* record usd, label with model */ }
//!     Cost::Unpriced => { /* count as unpriced; do not add 0 */ }
//! }
//! ```

mod config;
mod cost;
mod error;
mod matcher;
mod rates;
mod schema;
mod table;
pub mod view;

pub use config::PricingConfig;
pub use cost::{Cost, InputSemantics, TokenUsage};
pub use error::PricingError;
pub use rates::{At, Batch, Period, Rate, RateSet, When};
pub use schema::ModelPriceSpec;
pub use table::{BuiltinSource, ModelPrice, PriceTable, Resolution};

#[cfg(test)]
mod tests;
