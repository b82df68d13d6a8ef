//! The on-disk price table format (`prices.toml` and user price files).
//!
//! These types are only the *shape* of the TOML; nothing here is validated.
//! Validation and defaulting happen once, in [`super::table`], so that a
//! built-in entry, a user-file entry and an inline config entry all go
//! through exactly the same checks.
//!
//! Every struct denies unknown fields: a typo such as `cached_input = 1.25`
//! must be a load error, not a silently ignored line that makes cached
//! tokens cost the full input price.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A whole price file. Every section is optional so that a user file can
/// contain only the entries it overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PriceFile {
    pub meta: Option<Meta>,
    /// Per-provider defaults, keyed by the `provider` value used in models.
    pub providers: BTreeMap<String, ProviderDefaults>,
    /// Model entries keyed by model name (see [`ModelPriceSpec`]).
    pub models: BTreeMap<String, ModelPriceSpec>,
    /// Extra names for existing entries: `"my-deployment" = "gpt-4o"`.
    pub aliases: BTreeMap<String, String>,
}

/// Where and when the prices were taken; shown by `PriceTable::source()` so
/// that a cost figure can always be traced back to a dated snapshot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Meta {
    pub date: String,
    pub source: String,
}

/// Defaults shared by every model of one provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ProviderDefaults {
    /// Fraction taken off a batch call (0.5 = half price). Used by models of
    /// this provider that do not set their own `batch_discount`.
    pub batch_discount: Option<f64>,
}

/// One model's list price, as written in TOML.
///
/// All prices are **USD per million tokens**, the unit every provider
/// publishes, so entries can be copied from a pricing page without
/// arithmetic.
///
/// ```toml
/// [models."gpt-4o"]
/// provider = "openai"
/// input = 2.50
/// cache_read = 1.25      # optional, defaults to `input`
/// output = 10.00
/// # cache_write omitted: defaults to `input`
/// # batch_discount omitted: defaults to [providers.openai].batch_discount, else 0
/// ```
///
/// The key may be scoped to a provider as `"<provider>/<model>"`; such an
/// entry only matches when the call's provider (or a routing prefix in the
/// model string) names that provider.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPriceSpec {
    /// Who bills this model; selects the `[providers.*]` defaults and is
    /// reported alongside costs.
    pub provider: String,
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens (including reasoning tokens).
    pub output: f64,
    /// Input tokens served from the prompt cache. Defaults to `input`: a
    /// provider that publishes no cached price charges cache hits as input.
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// Input tokens written to the prompt cache. Defaults to `input`: only
    /// some providers (Anthropic) charge a premium for writes, the others
    /// bill them as ordinary input.
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// Fraction taken off the whole call when it ran through a batch API,
    /// in `0..=1`. Overrides the provider default.
    #[serde(default)]
    pub batch_discount: Option<f64>,
}
