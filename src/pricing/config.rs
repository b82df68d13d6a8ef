//! User-facing pricing configuration.
//!
//! ```toml
//! [pricing]
//! file = "/etc/chainpulse/prices.toml"   # optional, merged over the built-in table
//! batch_metadata_key = "batch"           # span attribute that marks batch calls
//!
//! [pricing.models."gpt-4o"]              # negotiated price: replaces the built-in entry
//! provider = "openai"
//! input = 2.00
//! output = 8.00
//!
//! [pricing.aliases]
//! "my-gpt4o-deploy" = "gpt-4o"           # Azure deployment name -> priced model
//! ```
//!
//! # Why merge over the built-in table instead of replacing it
//!
//! A user file is almost always a handful of corrections (a negotiated
//! rate, a fine-tune, a self-hosted model). Replacing the whole table would
//! turn every model the user did not think of into "unpriced" the day they
//! add one line. So the layers are, later winning per model key:
//! built-in (generated from genai-prices) < `file` < inline `models`. A key
//! that is exactly a name of an existing entry replaces that entry *whole*,
//! for every name it answers to (`"gpt-4o"` also reprices
//! `gpt-4o-2024-08-06`); fields it omits take the documented defaults
//! (`cache_read`/`cache_write` = `input`), not the built-in values, and it
//! has a single price (no history, tiers or published batch rates), so what
//! you read in your file is what is charged. Any other key is a new entry.
//! `[providers.*] batch_discount` in the user file applies to that
//! provider's entries without published batch prices, built-in ones too
//! (e.g. a contract with a batch discount the source does not list).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::schema::ModelPriceSpec;

/// The `[pricing]` section of the chainpulse configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingConfig {
    /// A TOML price file (`[meta]`, `[providers.*]`, `[models."name"]`,
    /// `[aliases]`; see `schema.rs`), merged over the built-in table.
    pub file: Option<PathBuf>,
    /// Inline entries, same schema as the file's `[models]`; they win over
    /// both the built-in table and `file`.
    pub models: BTreeMap<String, ModelPriceSpec>,
    /// Extra names for priced models, e.g. Azure deployment names:
    /// `"my-gpt4o-deploy" = "gpt-4o"`. The target goes through the normal
    /// matching rules, so `"gpt-4o-2024-08-06"` works as a target too.
    pub aliases: BTreeMap<String, String>,
    /// Span attribute / metadata key whose truthy value marks a call as run
    /// through a provider batch API (the batch discount then applies).
    pub batch_metadata_key: String,
}

impl Default for PricingConfig {
    fn default() -> Self {
        PricingConfig {
            file: None,
            models: BTreeMap::new(),
            aliases: BTreeMap::new(),
            batch_metadata_key: "batch".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_is_all_defaults() {
        let c: PricingConfig = toml::from_str("").expect("empty config parses");
        assert_eq!(c, PricingConfig::default());
        assert_eq!(c.batch_metadata_key, "batch");
    }

    #[test]
    fn full_section_parses() {
        let src = r#"
            file = "/tmp/prices.toml"
            batch_metadata_key = "is_batch"
            [models."ft:gpt-4o-mini:acme::x1"]
            provider = "openai"
            input = 0.3
            output = 1.2
            [aliases]
            "my-gpt4o-deploy" = "gpt-4o"
        "#;
        let c: PricingConfig = toml::from_str(src).expect("config parses");
        assert_eq!(c.file, Some(PathBuf::from("/tmp/prices.toml")));
        assert_eq!(c.batch_metadata_key, "is_batch");
        assert_eq!(c.models["ft:gpt-4o-mini:acme::x1"].input, 0.3);
        assert_eq!(c.aliases["my-gpt4o-deploy"], "gpt-4o");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<PricingConfig>("fiel = \"x\"").expect_err("typo must fail");
        assert!(err.to_string().contains("fiel"), "{err}");
        let err = toml::from_str::<PricingConfig>(
            "[models.x]\nprovider = \"p\"\ninput = 1\noutput = 1\ncached_input = 1",
        )
        .expect_err("unknown model field must fail");
        assert!(err.to_string().contains("cached_input"), "{err}");
    }
}
