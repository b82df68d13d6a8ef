//! The price table: validated entries, their index, and lookups.
//!
//! A table is built once at startup from layers (built-in `prices.toml`,
//! the user's file, inline config; later layers win per model key) and is
//! immutable afterwards, so lookups need no locking and can hand out
//! references.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::config::PricingConfig;
use super::cost::{self, Cost, InputSemantics, Rates, TokenUsage, PICO_PER_USD};
use super::error::PricingError;
use super::matcher::{self, MatchKind};
use super::schema::{ModelPriceSpec, PriceFile};

/// The built-in table, compiled into the binary so that chainpulse prices
/// calls with no configuration and no network access.
const BUILTIN_TOML: &str = include_str!("prices.toml");
const BUILTIN_ORIGIN: &str = "built-in prices.toml";
const CONFIG_ORIGIN: &str = "pricing config";

/// No published price comes near this; a larger value is a unit mistake
/// (e.g. per-token or per-thousand prices multiplied the wrong way).
const MAX_USD_PER_MTOK: f64 = 10_000.0;
/// One pico-dollar per token; see `cost.rs` for why prices are integers.
const MIN_NONZERO_USD_PER_MTOK: f64 = 1e-6;

/// One model's prices, with defaults applied. All prices are USD per
/// million tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPrice {
    name: Arc<str>,
    provider: Arc<str>,
    input: f64,
    output: f64,
    cache_read: f64,
    cache_write: f64,
    batch_discount: f64,
    rates: Rates,
}

impl ModelPrice {
    /// Canonical name: the table key as written (e.g. `gpt-4o`,
    /// `groq/llama-4-scout-17b-16e-instruct`). Log it next to costs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who bills the model (`openai`, `anthropic`, ...), as in the table.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// USD per million uncached input tokens.
    pub fn input(&self) -> f64 {
        self.input
    }

    /// USD per million output tokens (reasoning included).
    pub fn output(&self) -> f64 {
        self.output
    }

    /// USD per million cache-hit input tokens (defaulted to `input`).
    pub fn cache_read(&self) -> f64 {
        self.cache_read
    }

    /// USD per million cache-write input tokens (defaulted to `input`).
    pub fn cache_write(&self) -> f64 {
        self.cache_write
    }

    /// Fraction taken off a batch call (0.5 = half price).
    pub fn batch_discount(&self) -> f64 {
        self.batch_discount
    }

    /// The cost of one call at this price.
    pub fn cost(&self, usage: &TokenUsage, semantics: InputSemantics, batch: bool) -> Cost {
        let pico = self.rates.pico_usd(usage, semantics, batch);
        Cost::Priced {
            usd: pico as f64 / PICO_PER_USD,
            model: Arc::clone(&self.name),
        }
    }

    #[cfg(test)]
    pub(crate) fn pico_usd(
        &self,
        usage: &TokenUsage,
        semantics: InputSemantics,
        batch: bool,
    ) -> u128 {
        self.rates.pico_usd(usage, semantics, batch)
    }
}

/// Model prices indexed for lookup by the model names found on spans.
///
/// `PriceTable::default()` is an empty table: every call is unpriced.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    entries: Vec<ModelPrice>,
    /// Normalized model key -> entry. Aliases live here too.
    unscoped: HashMap<String, usize>,
    /// Normalized provider scope -> normalized model key -> entry, for keys
    /// written `provider/model`.
    scoped: HashMap<String, HashMap<String, usize>>,
    source: String,
}

/// One source of prices, in merge order.
struct Layer {
    origin: String,
    file: PriceFile,
}

impl PriceTable {
    /// The built-in snapshot only.
    ///
    /// The embedded file is checked by the test suite, so it cannot fail in a
    /// released binary; if it somehow did, the result is an empty table
    /// (every call unpriced, loudly logged) rather than a panic or wrong
    /// prices.
    pub fn builtin() -> Self {
        match builtin_layer().and_then(|layer| Self::build(vec![layer])) {
            Ok(table) => table,
            Err(err) => {
                tracing::error!(error = %err, "built-in price table is invalid; all costs will be unpriced");
                PriceTable {
                    source: format!("none ({err})"),
                    ..PriceTable::default()
                }
            }
        }
    }

    /// Built-in table, then `config.file`, then `config.models` and
    /// `config.aliases` merged over it (later wins per model key).
    pub fn from_config(config: &PricingConfig) -> Result<Self, PricingError> {
        if config.batch_metadata_key.trim().is_empty() {
            return Err(PricingError::invalid(
                CONFIG_ORIGIN,
                "batch_metadata_key".to_string(),
                "must not be empty",
            ));
        }
        let mut layers = vec![builtin_layer()?];
        if let Some(path) = &config.file {
            let src = std::fs::read_to_string(path).map_err(|source| PricingError::Read {
                path: path.clone(),
                source,
            })?;
            let origin = path.display().to_string();
            layers.push(parse_layer(&src, origin)?);
        }
        if !config.models.is_empty() || !config.aliases.is_empty() {
            layers.push(Layer {
                origin: CONFIG_ORIGIN.to_string(),
                file: PriceFile {
                    models: config.models.clone(),
                    aliases: config.aliases.clone(),
                    ..PriceFile::default()
                },
            });
        }
        let table = Self::build(layers)?;
        tracing::info!(entries = table.len(), source = %table.source(), "price table loaded");
        Ok(table)
    }

    /// A table from one TOML document, without the built-in entries, so
    /// tests can pin prices independently of the shipped snapshot.
    #[cfg(test)]
    pub(crate) fn from_toml_str(src: &str) -> Result<Self, PricingError> {
        Self::build(vec![parse_layer(src, "test table".to_string())?])
    }

    /// Find the price entry for a model as reported by instrumentation.
    ///
    /// `provider` is the reported provider/system (e.g. OTel
    /// `gen_ai.provider.name`), used to prefer `provider/model` entries; it
    /// never excludes an entry. See the module docs for the matching rules.
    pub fn lookup(&self, provider: Option<&str>, model: &str) -> Option<&ModelPrice> {
        let (idx, kind) = self.resolve(provider, model)?;
        let price = self.entries.get(idx)?;
        if kind == MatchKind::Prefix {
            // The only approximate match; visible at trace level for when a
            // cost looks off.
            tracing::trace!(model, matched = price.name(), "price matched by prefix");
        }
        Some(price)
    }

    /// Price one call. An unknown model is [`Cost::Unpriced`], never `$0`.
    pub fn cost(
        &self,
        provider: Option<&str>,
        model: &str,
        usage: &TokenUsage,
        semantics: InputSemantics,
        batch: bool,
    ) -> Cost {
        match self.lookup(provider, model) {
            Some(price) => price.cost(usage, semantics, batch),
            None => Cost::Unpriced,
        }
    }

    fn resolve(&self, provider: Option<&str>, model: &str) -> Option<(usize, MatchKind)> {
        let probe = |scope: Option<&str>, key: &str| match scope {
            None => self.unscoped.get(key).copied(),
            Some(scope) => self.scoped.get(scope)?.get(key).copied(),
        };
        matcher::resolve(provider, model, probe)
    }

    /// Number of price entries (aliases not counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for a table with no entries (every call unpriced).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where the prices come from, with snapshot dates, e.g.
    /// `built-in snapshot 2025-11-30 (providers' public pricing pages) + /etc/prices.toml`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// All entries, ordered by normalized name.
    pub fn iter(&self) -> impl Iterator<Item = &ModelPrice> {
        self.entries.iter()
    }

    /// Merge the layers, validate every entry, and index them.
    fn build(layers: Vec<Layer>) -> Result<Self, PricingError> {
        // Normalized key -> (key as written, spec, origin). BTreeMap keeps
        // the entry order deterministic.
        let mut specs: BTreeMap<String, (String, ModelPriceSpec, String)> = BTreeMap::new();
        let mut provider_discounts: HashMap<String, f64> = HashMap::new();
        let mut aliases: BTreeMap<String, (String, String, String)> = BTreeMap::new();
        let mut sources = Vec::new();

        for layer in layers {
            let origin = layer.origin;
            sources.push(describe_layer(&origin, &layer.file));

            let mut seen = HashMap::new();
            for (key, spec) in layer.file.models {
                let norm = normalized_key(&origin, "models", &key)?;
                if let Some(other) = seen.insert(norm.clone(), key.clone()) {
                    return Err(duplicate(&origin, "models", &key, &other));
                }
                if let Some((old, _, old_origin)) = specs.get(&norm) {
                    tracing::debug!(model = %key, replaces = %old, from = %old_origin, by = %origin, "price entry overridden");
                }
                specs.insert(norm, (key, spec, origin.clone()));
            }

            for (provider, defaults) in layer.file.providers {
                if let Some(discount) = defaults.batch_discount {
                    let key = format!("providers.{provider:?}.batch_discount");
                    check_discount(&origin, &key, discount)?;
                    provider_discounts.insert(matcher::normalize(&provider), discount);
                }
            }

            let mut seen = HashMap::new();
            for (alias, target) in layer.file.aliases {
                let norm = normalized_key(&origin, "aliases", &alias)?;
                if let Some(other) = seen.insert(norm.clone(), alias.clone()) {
                    return Err(duplicate(&origin, "aliases", &alias, &other));
                }
                aliases.insert(norm, (alias, target, origin.clone()));
            }
        }

        let mut table = PriceTable {
            source: sources.join(" + "),
            ..PriceTable::default()
        };
        for (norm, (name, spec, origin)) in specs {
            let price = validate(&origin, &name, &spec, &provider_discounts)?;
            let idx = table.entries.len();
            table.entries.push(price);
            table.index(&norm, idx);
        }

        // Aliases resolve against real entries only (no alias chains), then
        // take precedence over an entry of the same name: a deployment
        // called `gpt-4` that really runs gpt-4o must be priced as gpt-4o.
        let mut resolved = Vec::with_capacity(aliases.len());
        for (norm, (alias, target, origin)) in aliases {
            let Some((idx, _)) = table.resolve(None, &target) else {
                return Err(PricingError::invalid(
                    &origin,
                    format!("aliases.{alias:?}"),
                    format!("target {target:?} matches no price entry"),
                ));
            };
            resolved.push((norm, idx));
        }
        for (norm, idx) in resolved {
            table.index(&norm, idx);
        }
        Ok(table)
    }

    fn index(&mut self, norm_key: &str, idx: usize) {
        match matcher::split_scope(norm_key) {
            (None, model) => {
                self.unscoped.insert(model.to_string(), idx);
            }
            (Some(scope), model) => {
                self.scoped
                    .entry(scope.to_string())
                    .or_default()
                    .insert(model.to_string(), idx);
            }
        }
    }
}

fn builtin_layer() -> Result<Layer, PricingError> {
    parse_layer(BUILTIN_TOML, BUILTIN_ORIGIN.to_string())
}

fn parse_layer(src: &str, origin: String) -> Result<Layer, PricingError> {
    let file: PriceFile =
        toml::from_str(src).map_err(|e| PricingError::from_toml(&origin, src, &e))?;
    Ok(Layer { origin, file })
}

/// `built-in snapshot 2025-11-30 (...)`, `/path (2026-01-01, ...)`,
/// `pricing config (3 models, 1 alias)`.
fn describe_layer(origin: &str, file: &PriceFile) -> String {
    let label = if origin == BUILTIN_ORIGIN {
        "built-in snapshot".to_string()
    } else {
        origin.to_string()
    };
    match &file.meta {
        Some(meta) if origin == BUILTIN_ORIGIN => {
            format!("{label} {} ({})", meta.date, meta.source)
        }
        Some(meta) => format!("{label} ({}, {})", meta.date, meta.source),
        None => format!(
            "{label} ({} models, {} aliases)",
            file.models.len(),
            file.aliases.len()
        ),
    }
}

/// Normalize a model or alias key and reject empty parts.
fn normalized_key(origin: &str, section: &str, key: &str) -> Result<String, PricingError> {
    let norm = matcher::normalize(key);
    let (scope, model) = matcher::split_scope(&norm);
    if model.is_empty() || scope.is_some_and(|s| s.is_empty() || s.contains('/')) {
        return Err(PricingError::invalid(
            origin,
            format!("{section}.{key:?}"),
            "must be a model name, optionally scoped as \"provider/model\"",
        ));
    }
    Ok(norm)
}

fn duplicate(origin: &str, section: &str, key: &str, other: &str) -> PricingError {
    PricingError::invalid(
        origin,
        format!("{section}.{key:?}"),
        format!(
            "names the same model as {section}.{other:?} (case, '.' and '-' are not significant)"
        ),
    )
}

/// Apply defaults and check every number of one entry.
fn validate(
    origin: &str,
    name: &str,
    spec: &ModelPriceSpec,
    provider_discounts: &HashMap<String, f64>,
) -> Result<ModelPrice, PricingError> {
    let field = |f: &str| format!("models.{name:?}.{f}");
    let provider = spec.provider.trim();
    if provider.is_empty() {
        return Err(PricingError::invalid(
            origin,
            field("provider"),
            "must not be empty",
        ));
    }
    check_price(origin, &field("input"), spec.input)?;
    check_price(origin, &field("output"), spec.output)?;
    // Defaults documented in prices.toml: a provider without a separate
    // cache price bills cache hits and cache writes as ordinary input.
    let cache_read = spec.cache_read.unwrap_or(spec.input);
    let cache_write = spec.cache_write.unwrap_or(spec.input);
    check_price(origin, &field("cache_read"), cache_read)?;
    check_price(origin, &field("cache_write"), cache_write)?;
    let batch_discount = match spec.batch_discount {
        Some(d) => {
            check_discount(origin, &field("batch_discount"), d)?;
            d
        }
        None => provider_discounts
            .get(&matcher::normalize(provider))
            .copied()
            .unwrap_or(0.0),
    };
    Ok(ModelPrice {
        name: Arc::from(name),
        provider: Arc::from(provider),
        input: spec.input,
        output: spec.output,
        cache_read,
        cache_write,
        batch_discount,
        rates: Rates {
            input: cost::to_pico_per_token(spec.input),
            output: cost::to_pico_per_token(spec.output),
            cache_read: cost::to_pico_per_token(cache_read),
            cache_write: cost::to_pico_per_token(cache_write),
            batch_keep_ppm: cost::to_keep_ppm(batch_discount),
        },
    })
}

fn check_price(origin: &str, key: &str, value: f64) -> Result<(), PricingError> {
    let problem = if !value.is_finite() || value < 0.0 {
        "must be a finite number >= 0"
    } else if value > MAX_USD_PER_MTOK {
        "is implausibly high; prices are USD per million tokens"
    } else if value > 0.0 && value < MIN_NONZERO_USD_PER_MTOK {
        "is below the resolution of 0.000001 USD per million tokens; prices are USD per million tokens"
    } else {
        return Ok(());
    };
    Err(PricingError::invalid(
        origin,
        key.to_string(),
        format!("{problem}, got {value}"),
    ))
}

fn check_discount(origin: &str, key: &str, value: f64) -> Result<(), PricingError> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(PricingError::invalid(
            origin,
            key.to_string(),
            format!("must be a fraction between 0 and 1 (0.5 = half price), got {value}"),
        ))
    }
}
