//! Acceptance tests for "Cost you can trust": the built-in table, matching
//! through the public API, cost scenarios and configuration errors.
//!
//! Cost scenarios run against a small fixed table (`FIXTURE`) so that
//! updating `prices.toml` never changes what these tests assert; a few
//! tests pin well-known built-in prices on purpose. Costs are compared in
//! integer pico-dollars (exact) and, for the public `usd` field, within
//! 1e-12 USD.

use std::io::Write;
use std::path::PathBuf;

use super::*;

const FIXTURE: &str = r#"
[providers.openai]
batch_discount = 0.5

[models."gpt-4o"]
provider = "openai"
input = 2.50
cache_read = 1.25
output = 10.00

[models."gpt-4o-mini"]
provider = "openai"
input = 0.15
cache_read = 0.075
output = 0.60

[models."o1"]
provider = "openai"
input = 15.00
cache_read = 7.50
output = 60.00

[models."o1-mini"]
provider = "openai"
input = 1.10
cache_read = 0.55
output = 4.40

[models."claude-3-5-sonnet"]
provider = "anthropic"
input = 3.00
cache_read = 0.30
cache_write = 3.75
output = 15.00
batch_discount = 0.5

[models."local-llama"]
provider = "self-hosted"
input = 0.20
output = 0.40
"#;

fn fixture() -> PriceTable {
    match PriceTable::from_toml_str(FIXTURE) {
        Ok(t) => t,
        Err(e) => panic!("fixture must load: {e}"),
    }
}

fn usage(input: u64, output: u64) -> TokenUsage {
    TokenUsage {
        input,
        output,
        ..TokenUsage::default()
    }
}

/// Assert the exact pico-dollar cost and the public `Cost` it produces.
fn assert_cost(
    table: &PriceTable,
    model: &str,
    u: &TokenUsage,
    semantics: InputSemantics,
    batch: bool,
    expected_pico: u128,
    expected_entry: &str,
) {
    let price = table
        .lookup(None, model)
        .unwrap_or_else(|| panic!("{model} should be priced"));
    assert_eq!(price.name(), expected_entry, "{model}");
    assert_eq!(
        price.pico_usd(u, semantics, batch),
        expected_pico,
        "{model} {u:?}"
    );
    match table.cost(None, model, u, semantics, batch) {
        Cost::Priced { usd, model: name } => {
            let expected_usd = expected_pico as f64 / 1e12;
            assert!(
                (usd - expected_usd).abs() < 1e-12,
                "{usd} != {expected_usd}"
            );
            assert_eq!(&*name, expected_entry);
        }
        Cost::Unpriced => panic!("{model} unpriced"),
    }
}

fn builtin_name(provider: Option<&str>, model: &str) -> Option<String> {
    PriceTable::builtin()
        .lookup(provider, model)
        .map(|p| p.name().to_string())
}

// ---------------------------------------------------------------- built-in

#[test]
fn builtin_table_loads_and_is_dated() {
    let t = PriceTable::builtin();
    assert!(t.len() > 80, "only {} entries", t.len());
    assert!(!t.is_empty());
    assert!(
        t.source().starts_with("built-in snapshot 20"),
        "{}",
        t.source()
    );
    assert!(t.source().contains("pricing pages"), "{}", t.source());
}

#[test]
fn every_builtin_entry_is_reachable_by_its_own_name() {
    // Catches two keys colliding after normalization and aliases shadowing
    // an entry.
    let t = PriceTable::builtin();
    for p in t.iter() {
        let found = t.lookup(None, p.name()).map(ModelPrice::name);
        assert_eq!(found, Some(p.name()), "entry {} not reachable", p.name());
        assert!(p.input() >= 0.0 && p.output() >= 0.0);
    }
}

#[test]
fn builtin_spot_prices() {
    let t = PriceTable::builtin();
    let gpt4o = t.lookup(Some("openai"), "gpt-4o").expect("gpt-4o priced");
    assert_eq!(
        (gpt4o.input(), gpt4o.cache_read(), gpt4o.output()),
        (2.5, 1.25, 10.0)
    );
    assert_eq!(gpt4o.cache_write(), 2.5, "cache_write defaults to input");
    assert_eq!(gpt4o.batch_discount(), 0.5, "provider default");
    assert_eq!(gpt4o.provider(), "openai");
    let sonnet = t
        .lookup(None, "claude-3-5-sonnet-20241022")
        .expect("sonnet priced");
    assert_eq!(sonnet.cache_write(), 3.75);
    let deepseek = t.lookup(None, "deepseek-chat").expect("deepseek priced");
    assert_eq!(deepseek.batch_discount(), 0.0, "no batch API");
    // 1M in + 1M out on gpt-4o-mini = $0.15 + $0.60.
    let c = t.cost(
        None,
        "gpt-4o-mini",
        &usage(1_000_000, 1_000_000),
        InputSemantics::IncludesCached,
        false,
    );
    assert!((c.usd().expect("priced") - 0.75).abs() < 1e-12);
}

#[test]
fn builtin_matching_of_real_world_names() {
    let cases: &[(Option<&str>, &str, &str)] = &[
        (None, "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        (None, "gpt-4o-2024-08-06", "gpt-4o"),
        (None, "gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        (None, "GPT-4.1-Mini", "gpt-4.1-mini"),
        (None, "o3-mini-2025-01-31", "o3-mini"),
        (None, "o1-mini-2024-09-12", "o1-mini"),
        (None, "gpt-5-mini-2025-08-07", "gpt-5-mini"),
        (None, "gpt-4-0613", "gpt-4"),
        (None, "gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        (Some("az.ai.openai"), "gpt-35-turbo", "gpt-3.5-turbo"),
        (None, "claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        (None, "claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        (None, "claude-sonnet-4-20250514", "claude-sonnet-4"),
        (None, "claude-opus-4-0", "claude-opus-4"),
        (None, "claude-opus-4-1-20250805", "claude-opus-4-1"),
        (None, "claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        (
            Some("gcp.vertex_ai"),
            "claude-3-5-sonnet-v2@20241022",
            "claude-3-5-sonnet",
        ),
        (
            Some("aws.bedrock"),
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "claude-3-7-sonnet",
        ),
        (Some("aws.bedrock"), "amazon.nova-lite-v1:0", "nova-lite"),
        (
            None,
            "openrouter/anthropic/claude-3.5-sonnet",
            "claude-3-5-sonnet",
        ),
        (None, "anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),
        (None, "models/gemini-2.0-flash-001", "gemini-2.0-flash"),
        (None, "gemini-2.5-pro-preview-06-05", "gemini-2.5-pro"),
        (None, "gemini-1.5-flash-8b-001", "gemini-1.5-flash-8b"),
        (None, "mistral-large-latest", "mistral-large"),
        (None, "mistral-large-2411", "mistral-large-2411"),
        (None, "codestral-2501", "codestral"),
        (None, "command-r7b-12-2024", "command-r7b"),
        (None, "command-a-03-2025", "command-a"),
        (None, "deepseek-reasoner", "deepseek-reasoner"),
        (
            Some("groq"),
            "llama-3.3-70b-versatile",
            "llama-3.3-70b-versatile",
        ),
        (
            Some("groq"),
            "meta-llama/llama-4-scout-17b-16e-instruct",
            "groq/llama-4-scout-17b-16e-instruct",
        ),
        (Some("groq"), "openai/gpt-oss-120b", "gpt-oss-120b"),
        (None, "grok-4-0709", "grok-4"),
        (None, "grok-4-fast-reasoning", "grok-4-fast"),
        (None, "text-embedding-3-small", "text-embedding-3-small"),
        (
            None,
            "ft:gpt-4o-mini-2024-07-18:acme:support:9abc",
            "ft:gpt-4o-mini",
        ),
    ];
    for (provider, model, expected) in cases {
        assert_eq!(
            builtin_name(*provider, model).as_deref(),
            Some(*expected),
            "{model}"
        );
    }
}

#[test]
fn builtin_does_not_guess_across_tiers_or_versions() {
    for model in [
        "claude-opus-4-7",
        "gpt-4.2",
        "grok-3-mini-fast",
        "mistral-medium-latest",
        "gpt-3.5-turbo-16k",
        "openai/gpt-4o:free",
        "meta-llama/llama-4-scout-17b-16e-instruct", // Groq price only for Groq
        "totally-unknown-model",
    ] {
        assert_eq!(builtin_name(None, model), None, "{model} must be unpriced");
    }
}

// ------------------------------------------------------------------- costs

#[test]
fn plain_call() {
    // 1_200 * $2.50/M + 350 * $10/M = 3_000 + 3_500 micro-dollars
    let u = usage(1_200, 350);
    assert_cost(
        &fixture(),
        "gpt-4o",
        &u,
        InputSemantics::IncludesCached,
        false,
        6_500_000_000,
        "gpt-4o",
    );
}

#[test]
fn cached_input_under_includes_cached() {
    // OTel / OpenAI: input 10_000 of which 8_000 were cache hits.
    // 2_000 * 2.50 + 8_000 * 1.25 + 500 * 10 = 5_000 + 10_000 + 5_000 micro-$
    let u = TokenUsage {
        input: 10_000,
        output: 500,
        cache_read: 8_000,
        ..TokenUsage::default()
    };
    assert_cost(
        &fixture(),
        "gpt-4o",
        &u,
        InputSemantics::IncludesCached,
        false,
        20_000_000_000,
        "gpt-4o",
    );
}

#[test]
fn cached_input_under_excludes_cached() {
    // Anthropic raw usage: input_tokens = 2_000 uncached, reported beside
    // 8_000 cache reads. Same call as above: same bill.
    let u = TokenUsage {
        input: 2_000,
        output: 500,
        cache_read: 8_000,
        ..TokenUsage::default()
    };
    assert_cost(
        &fixture(),
        "gpt-4o",
        &u,
        InputSemantics::ExcludesCached,
        false,
        20_000_000_000,
        "gpt-4o",
    );
}

#[test]
fn cache_write_is_charged_at_write_price() {
    // 1_000 uncached * 3.00 + 4_000 written * 3.75 + 200 out * 15
    // = 3_000 + 15_000 + 3_000 micro-dollars, under both conventions.
    let t = fixture();
    let included = TokenUsage {
        input: 5_000,
        output: 200,
        cache_write: 4_000,
        ..TokenUsage::default()
    };
    let excluded = TokenUsage {
        input: 1_000,
        ..included
    };
    let expected = 21_000_000_000;
    assert_cost(
        &t,
        "claude-3-5-sonnet",
        &included,
        InputSemantics::IncludesCached,
        false,
        expected,
        "claude-3-5-sonnet",
    );
    assert_cost(
        &t,
        "claude-3-5-sonnet",
        &excluded,
        InputSemantics::ExcludesCached,
        false,
        expected,
        "claude-3-5-sonnet",
    );
}

#[test]
fn missing_cache_prices_default_to_input_price() {
    let t = fixture();
    let p = t.lookup(None, "local-llama").expect("priced");
    assert_eq!((p.cache_read(), p.cache_write()), (0.20, 0.20));
    // Cached or not, 1_000 input tokens cost 1_000 * 0.20.
    let u = TokenUsage {
        input: 1_000,
        cache_read: 600,
        cache_write: 400,
        ..TokenUsage::default()
    };
    assert_cost(
        &t,
        "local-llama",
        &u,
        InputSemantics::IncludesCached,
        false,
        200_000_000,
        "local-llama",
    );
}

#[test]
fn reasoning_tokens_are_not_charged_twice() {
    // o1: output 3_000 of which 2_500 reasoning = 3_000 * $60/M.
    let u = TokenUsage {
        input: 1_000,
        output: 3_000,
        reasoning: 2_500,
        ..TokenUsage::default()
    };
    // 1_000 * 15 + 3_000 * 60 = 15_000 + 180_000 micro-dollars
    assert_cost(
        &fixture(),
        "o1",
        &u,
        InputSemantics::IncludesCached,
        false,
        195_000_000_000,
        "o1",
    );
}

#[test]
fn batch_discount_from_provider_default_and_from_entry() {
    let t = fixture();
    let u = usage(1_200, 350);
    // Provider default (openai 0.5): half of 6_500 micro-dollars.
    assert_cost(
        &t,
        "gpt-4o",
        &u,
        InputSemantics::IncludesCached,
        true,
        3_250_000_000,
        "gpt-4o",
    );
    // Entry-level discount.
    // (1_200 * 3 + 350 * 15) / 2 = (3_600 + 5_250) / 2 micro-dollars
    assert_cost(
        &t,
        "claude-3-5-sonnet",
        &u,
        InputSemantics::IncludesCached,
        true,
        4_425_000_000,
        "claude-3-5-sonnet",
    );
    // No discount known: batch is charged in full.
    assert_cost(
        &t,
        "local-llama",
        &u,
        InputSemantics::IncludesCached,
        true,
        380_000_000,
        "local-llama",
    );
}

#[test]
fn more_cache_than_input_is_clamped_not_negative() {
    let u = TokenUsage {
        input: 100,
        cache_read: 1_000,
        ..TokenUsage::default()
    };
    // Uncached input is 0, not negative: only the 1_000 cache reads are
    // charged, 1_000 * $1.25/M = $0.00125.
    assert_cost(
        &fixture(),
        "gpt-4o",
        &u,
        InputSemantics::IncludesCached,
        false,
        1_250_000_000,
        "gpt-4o",
    );
}

#[test]
fn dated_snapshot_is_priced_as_its_family() {
    let u = usage(1_000_000, 0);
    assert_cost(
        &fixture(),
        "gpt-4o-mini-2024-07-18",
        &u,
        InputSemantics::IncludesCached,
        false,
        150_000_000_000,
        "gpt-4o-mini",
    );
    assert_cost(
        &fixture(),
        "claude-3-5-sonnet-20241022",
        &u,
        InputSemantics::IncludesCached,
        false,
        3_000_000_000_000,
        "claude-3-5-sonnet",
    );
}

#[test]
fn provider_prefix_is_ignored_for_pricing() {
    let t = fixture();
    let u = usage(1_200, 350);
    assert_cost(
        &t,
        "openai/gpt-4o",
        &u,
        InputSemantics::IncludesCached,
        false,
        6_500_000_000,
        "gpt-4o",
    );
    let c = t.cost(
        Some("openai"),
        "gpt-4o",
        &u,
        InputSemantics::IncludesCached,
        false,
    );
    assert_eq!(c.model(), Some("gpt-4o"));
}

#[test]
fn fine_tuned_model_is_priced_as_its_base_without_a_fine_tune_entry() {
    let u = usage(1_000_000, 1_000_000);
    // Fixture has no `ft:` entries: the base price.
    assert_cost(
        &fixture(),
        "ft:gpt-4o-mini:acme::abc123",
        &u,
        InputSemantics::IncludesCached,
        false,
        750_000_000_000,
        "gpt-4o-mini",
    );
    assert_cost(
        &fixture(),
        "ft:gpt-4o-mini-2024-07-18:acme:support:abc123",
        &u,
        InputSemantics::IncludesCached,
        false,
        750_000_000_000,
        "gpt-4o-mini",
    );
    // The built-in table knows OpenAI's fine-tuned inference price.
    let c = PriceTable::builtin().cost(
        None,
        "ft:gpt-4o-mini:acme::abc123",
        &u,
        InputSemantics::IncludesCached,
        false,
    );
    assert_eq!(c.model(), Some("ft:gpt-4o-mini"));
    assert!((c.usd().expect("priced") - 1.50).abs() < 1e-12);
}

#[test]
fn unknown_model_is_unpriced_never_zero() {
    let t = fixture();
    let u = usage(1_000, 1_000);
    for model in ["no-such-model", "", "   ", "gpt-4o:free"] {
        let c = t.cost(None, model, &u, InputSemantics::IncludesCached, false);
        assert_eq!(c, Cost::Unpriced, "{model:?}");
        assert_eq!(c.usd(), None);
    }
}

#[test]
fn gpt_4o_and_gpt_4o_mini_are_not_confused() {
    let t = fixture();
    let u = usage(1_000_000, 0);
    assert_cost(
        &t,
        "gpt-4o",
        &u,
        InputSemantics::IncludesCached,
        false,
        2_500_000_000_000,
        "gpt-4o",
    );
    assert_cost(
        &t,
        "gpt-4o-mini",
        &u,
        InputSemantics::IncludesCached,
        false,
        150_000_000_000,
        "gpt-4o-mini",
    );
    assert_cost(
        &t,
        "o1",
        &u,
        InputSemantics::IncludesCached,
        false,
        15_000_000_000_000,
        "o1",
    );
    assert_cost(
        &t,
        "o1-mini",
        &u,
        InputSemantics::IncludesCached,
        false,
        1_100_000_000_000,
        "o1-mini",
    );
    // Without a mini entry, a mini model is unpriced rather than gpt-4o.
    let only_4o = PriceTable::from_toml_str(
        "[models.\"gpt-4o\"]\nprovider = \"openai\"\ninput = 2.5\noutput = 10",
    )
    .expect("loads");
    assert!(only_4o.lookup(None, "gpt-4o-mini-2024-07-18").is_none());
}

// ------------------------------------------------------------------ config

/// A price file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("chainpulse-pricing-{}-{name}", std::process::id()));
        let mut f = std::fs::File::create(&path).expect("create temp file");
        f.write_all(contents.as_bytes()).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn spec(provider: &str, input: f64, output: f64) -> ModelPriceSpec {
    ModelPriceSpec {
        provider: provider.to_string(),
        input,
        output,
        cache_read: None,
        cache_write: None,
        batch_discount: None,
    }
}

fn load_err(config: &PricingConfig) -> String {
    match PriceTable::from_config(config) {
        Ok(_) => panic!("config should be rejected: {config:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn default_config_is_the_builtin_table() {
    let t = PriceTable::from_config(&PricingConfig::default()).expect("default loads");
    assert_eq!(t.len(), PriceTable::builtin().len());
    assert_eq!(t.source(), PriceTable::builtin().source());
}

#[test]
fn config_model_overrides_builtin_price() {
    let mut config = PricingConfig::default();
    config
        .models
        .insert("GPT-4o".to_string(), spec("openai", 2.00, 8.00));
    config.models.insert(
        "ft:gpt-4o-mini:acme::abc123".to_string(),
        spec("openai", 0.40, 1.60),
    );
    let t = PriceTable::from_config(&config).expect("loads");
    assert_eq!(
        t.len(),
        PriceTable::builtin().len() + 1,
        "one replaced, one added"
    );

    let u = usage(1_000_000, 1_000_000);
    let c = t.cost(
        None,
        "gpt-4o-2024-08-06",
        &u,
        InputSemantics::IncludesCached,
        false,
    );
    assert_eq!(c.model(), Some("GPT-4o"));
    assert!((c.usd().expect("priced") - 10.0).abs() < 1e-12);
    // The override replaces the entry whole: no built-in cache price left.
    let p = t.lookup(None, "gpt-4o").expect("priced");
    assert_eq!(p.cache_read(), 2.00);
    // Exact fine-tuned override beats `ft:gpt-4o-mini` and the base.
    let c = t.cost(
        None,
        "ft:gpt-4o-mini:acme::abc123",
        &u,
        InputSemantics::IncludesCached,
        false,
    );
    assert_eq!(c.model(), Some("ft:gpt-4o-mini:acme::abc123"));
    assert!((c.usd().expect("priced") - 2.0).abs() < 1e-12);
    assert!(t.source().contains("pricing config"), "{}", t.source());
}

#[test]
fn alias_maps_deployment_names() {
    let mut config = PricingConfig::default();
    config.aliases.insert(
        "my-gpt4o-deploy".to_string(),
        "gpt-4o-2024-08-06".to_string(),
    );
    // A deployment whose name is another model's name.
    config
        .aliases
        .insert("gpt-4".to_string(), "gpt-4o".to_string());
    let t = PriceTable::from_config(&config).expect("loads");
    for (provider, model) in [
        (Some("az.ai.openai"), "my-gpt4o-deploy"),
        (None, "My-GPT4o-Deploy"),
        (None, "azure/my-gpt4o-deploy"),
        (None, "gpt-4"),
    ] {
        let c = t.cost(
            provider,
            model,
            &usage(1_000_000, 0),
            InputSemantics::IncludesCached,
            false,
        );
        assert_eq!(c.model(), Some("gpt-4o"), "{model}");
        assert!((c.usd().expect("priced") - 2.5).abs() < 1e-12);
    }
}

#[test]
fn user_file_is_merged_over_builtin() {
    let file = TempFile::new(
        "merge.toml",
        r#"
[meta]
date = "2026-01-15"
source = "ACME contract"

[providers.openai]
batch_discount = 0.6

[models."acme-llm"]
provider = "acme"
input = 1.0
output = 2.0

[aliases]
"prod-chat" = "acme-llm"
"#,
    );
    let config = PricingConfig {
        file: Some(file.0.clone()),
        ..PricingConfig::default()
    };
    let t = PriceTable::from_config(&config).expect("loads");
    assert_eq!(t.len(), PriceTable::builtin().len() + 1);
    assert_eq!(
        t.lookup(None, "prod-chat").map(ModelPrice::name),
        Some("acme-llm")
    );
    // Built-in entries are still there, with the file's provider default.
    let gpt4o = t.lookup(None, "gpt-4o").expect("builtin kept");
    assert_eq!(gpt4o.batch_discount(), 0.6);
    assert!(
        t.source().contains("2026-01-15, ACME contract"),
        "{}",
        t.source()
    );
}

#[test]
fn invalid_prices_name_the_key() {
    let mut config = PricingConfig::default();
    config
        .models
        .insert("my-model".to_string(), spec("acme", -1.0, 2.0));
    let err = load_err(&config);
    assert!(
        err.contains(r#"models."my-model".input"#) && err.contains("-1"),
        "{err}"
    );

    let mut config = PricingConfig::default();
    config
        .models
        .insert("my-model".to_string(), spec("acme", f64::NAN, 2.0));
    assert!(load_err(&config).contains("finite"));

    let mut config = PricingConfig::default();
    let mut s = spec("acme", 1.0, 2.0);
    s.cache_write = Some(-0.5);
    config.models.insert("my-model".to_string(), s);
    assert!(load_err(&config).contains(r#"models."my-model".cache_write"#));

    let mut config = PricingConfig::default();
    let mut s = spec("acme", 1.0, 2.0);
    s.batch_discount = Some(1.5);
    config.models.insert("my-model".to_string(), s);
    let err = load_err(&config);
    assert!(
        err.contains("batch_discount") && err.contains("between 0 and 1"),
        "{err}"
    );

    let mut config = PricingConfig::default();
    config
        .models
        .insert("my-model".to_string(), spec("acme", 2_000_000.0, 1.0));
    assert!(load_err(&config).contains("per million tokens"));

    let mut config = PricingConfig::default();
    config
        .models
        .insert("my-model".to_string(), spec(" ", 1.0, 1.0));
    assert!(load_err(&config).contains(r#"models."my-model".provider"#));

    let mut config = PricingConfig::default();
    config
        .models
        .insert("a/b/c".to_string(), spec("acme", 1.0, 1.0));
    assert!(load_err(&config).contains(r#"models."a/b/c""#));
}

#[test]
fn invalid_aliases_and_keys_are_rejected() {
    let mut config = PricingConfig::default();
    config
        .aliases
        .insert("my-deploy".to_string(), "gpt-9000".to_string());
    let err = load_err(&config);
    assert!(
        err.contains(r#"aliases."my-deploy""#) && err.contains("gpt-9000"),
        "{err}"
    );

    let mut config = PricingConfig::default();
    config
        .models
        .insert("My.Model".to_string(), spec("acme", 1.0, 1.0));
    config
        .models
        .insert("my-model".to_string(), spec("acme", 2.0, 2.0));
    let err = load_err(&config);
    assert!(err.contains("same model"), "{err}");

    let config = PricingConfig {
        batch_metadata_key: String::new(),
        ..PricingConfig::default()
    };
    assert!(load_err(&config).contains("batch_metadata_key"));
}

#[test]
fn unreadable_file_names_the_path() {
    let path = std::env::temp_dir().join("chainpulse-pricing-does-not-exist.toml");
    let config = PricingConfig {
        file: Some(path.clone()),
        ..PricingConfig::default()
    };
    let err = PriceTable::from_config(&config).expect_err("missing file");
    assert!(matches!(err, PricingError::Read { .. }));
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn toml_errors_carry_the_line() {
    let file = TempFile::new(
        "syntax.toml",
        "[models.\"x\"]\nprovider = \"p\"\ninput = 1.0\noutput = \n",
    );
    let config = PricingConfig {
        file: Some(file.0.clone()),
        ..PricingConfig::default()
    };
    let err = PriceTable::from_config(&config).expect_err("bad toml");
    match &err {
        PricingError::Parse { line, origin, .. } => {
            assert_eq!(*line, Some(4), "{err}");
            assert!(origin.contains("syntax.toml"));
        }
        other => panic!("expected a parse error, got {other}"),
    }
    assert!(err.to_string().contains("line 4"), "{err}");

    // Schema errors (a typo'd field) are parse errors with a line too.
    let file = TempFile::new(
        "schema.toml",
        "[models.\"x\"]\nprovider = \"p\"\ninput = 1.0\noutput = 2.0\ncached_input = 0.5\n",
    );
    let config = PricingConfig {
        file: Some(file.0.clone()),
        ..PricingConfig::default()
    };
    let err = load_err(&config);
    assert!(
        err.contains("cached_input") && err.contains("line 5"),
        "{err}"
    );
}
