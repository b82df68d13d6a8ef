//! Acceptance tests for "Cost you can trust": the built-in table, matching
//! through the public API, cost scenarios and configuration errors.
//!
//! Cost scenarios run against a small fixed table (`FIXTURE`) so that
//! regenerating the built-in prices never changes what these tests assert;
//! the built-in tests check the generated table's provenance, that every
//! name resolves to its own entry or to none, history, tiers, batch and
//! regional prices, pinning a few well-known prices on purpose. Costs are compared in
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

// ---------------------------------------------------------------- built-in

#[test]
fn builtin_table_loads_and_is_dated() {
    let t = PriceTable::builtin();
    assert!(t.len() > 1500, "only {} entries", t.len());
    let src = t.builtin_source().expect("built-in provenance");
    assert_eq!(src.name, "genai-prices");
    assert!(src.generated.len() == 10 && src.generated.starts_with("20"));
    assert!(t.source().contains("genai-prices"), "{}", t.source());
}

/// The generated file was made from the version the generator pins and the
/// overrides file as committed (the full comparison against the package is
/// `scripts/gen-prices.py --check`, run by scripts/test.sh).
#[test]
fn generated_file_matches_the_pinned_source_and_overrides() {
    let t = PriceTable::builtin();
    let src = t.builtin_source().expect("built-in provenance");
    let script = include_str!("../../scripts/gen-prices.py");
    let pinned = script
        .lines()
        .find_map(|l| l.strip_prefix("GENAI_PRICES_VERSION = "))
        .map(|v| v.trim().trim_matches('"'))
        .expect("the script pins a version");
    assert_eq!(
        src.version, pinned,
        "prices.json is from genai-prices {}, the script pins {pinned}: run scripts/gen-prices.py",
        src.version
    );
    assert_eq!(
        src.overrides_crc32,
        crc32fast::hash(include_bytes!("overrides.toml")),
        "overrides.toml changed since prices.json was generated: run scripts/gen-prices.py"
    );
}

#[test]
fn every_builtin_name_resolves_to_its_own_entry_or_is_unpriced() {
    let t = PriceTable::builtin();
    let mut checked = 0;
    let mut unpriced = Vec::new();
    for entry in t.iter() {
        for name in entry.names() {
            checked += 1;
            match t.lookup(Some(entry.provider()), name) {
                Some(hit) => assert!(
                    (hit.name() == entry.name() && hit.provider() == entry.provider())
                        || (hit.provider() == entry.provider()
                            && hit.periods() == entry.periods()
                            && hit.batch() == entry.batch()),
                    "{}/{name} resolved to {}/{}",
                    entry.provider(),
                    hit.provider(),
                    hit.name()
                ),
                None => unpriced.push(format!("{}/{name}", entry.provider())),
            }
        }
    }
    assert!(checked > 3000, "{checked}");
    // Only names two entries of one provider claim with different prices
    // are left unpriced: OpenRouter lists many models both as `vendor/model`
    // and `model` at different (dated) prices.
    let elsewhere: Vec<&String> = unpriced
        .iter()
        .filter(|n| !n.starts_with("openrouter/"))
        .collect();
    assert!(
        elsewhere.len() * 200 < checked && unpriced.len() * 20 < checked,
        "{} of {checked} unpriced: {:?}",
        unpriced.len(),
        &elsewhere[..elsewhere.len().min(20)]
    );
}

/// Real model names from a second source (litellm's price file, the names
/// of the major providers), each with the entry genai-prices itself
/// resolves it to (`scripts/compare-litellm.py` writes the file). chainpulse
/// must resolve each to that entry (or one with identical prices) or leave
/// it unpriced: never to another model.
#[test]
fn real_names_resolve_to_their_own_entry_or_are_unpriced() {
    let cases: Vec<(String, String, Vec<String>)> =
        serde_json::from_str(include_str!("generated/name_cases.json")).expect("name cases");
    assert!(cases.len() > 500, "{}", cases.len());
    let t = PriceTable::builtin();
    let by_key: std::collections::HashMap<String, &ModelPrice> = t
        .iter()
        .map(|p| (format!("{}/{}", p.provider(), p.name()), p))
        .collect();
    let (mut same, mut unpriced) = (0, 0);
    for (provider, name, expected) in &cases {
        let Some(hit) = t.lookup(Some(provider), name) else {
            unpriced += 1;
            continue;
        };
        let key = format!("{}/{}", hit.provider(), hit.name());
        // genai-prices' entry for the name with this provider, or for the
        // bare model name at its maker's price; or one with identical
        // prices (a duplicate listing).
        // Or the same model as listed by a host/region: entries that share a
        // name are the same model (e.g. Bedrock's regional Claude entry also
        // answers to `claude-…`).
        let norm = |n: &str| n.rsplit('/').next().unwrap_or(n).replace('.', "-");
        let equivalent = expected.iter().filter_map(|e| by_key.get(e)).any(|e| {
            (e.provider() == hit.provider()
                && e.periods() == hit.periods()
                && e.batch() == hit.batch())
                || e.names()
                    .iter()
                    .any(|n| hit.names().iter().any(|h| norm(h) == norm(n)))
        });
        // genai-prices has no entry for the name as spelled for this
        // provider (its rules do not strip snapshot dates, routes or
        // Bedrock region prefixes): chainpulse's match must then be a name
        // the source lists for an entry of this provider (or of none named),
        // reached only by removing a route, version tail, region prefix or
        // snapshot date.
        let listed = (expected.is_empty() || hit.provider() == provider) && {
            let matched = t.explain(Some(provider), name).matched.unwrap_or_default();
            let matched = norm(matched.rsplit('/').next().unwrap_or(""));
            hit.names()
                .iter()
                .any(|n| norm(&n.to_ascii_lowercase()) == matched)
        };
        assert!(
            expected.contains(&key) || equivalent || listed,
            "{provider} {name}: chainpulse {key}, genai-prices {expected:?}"
        );
        same += 1;
    }
    // Most real names are priced; the rest are names the source does not
    // price per token (images, audio, per-request), region routes, and
    // suffixes chainpulse will not guess across. (Last run: 660 priced,
    // 565 unpriced of 1225.)
    assert!(same * 2 > cases.len(), "{same} priced, {unpriced} unpriced");
}

fn entry_of(provider: Option<&str>, model: &str) -> Option<String> {
    PriceTable::builtin()
        .lookup(provider, model)
        .map(|p| format!("{}/{}", p.provider(), p.name()))
}

#[test]
fn builtin_matching_of_real_world_names() {
    for (provider, model, expected) in [
        (None, "gpt-4o", "openai/gpt-4o"),
        (None, "gpt-4o-2024-08-06", "openai/gpt-4o"),
        (
            Some("openai"),
            "gpt-4o-mini-2024-07-18",
            "openai/gpt-4o-mini",
        ),
        (None, "openai/gpt-4o", "openai/gpt-4o"),
        (
            None,
            "claude-3-5-haiku",
            "anthropic/claude-3-5-haiku-latest",
        ),
        (
            None,
            "claude-3-5-sonnet-20241022",
            "anthropic/claude-3-5-sonnet",
        ),
        (
            None,
            "claude-sonnet-4-5-20250929",
            "anthropic/claude-sonnet-4-5",
        ),
        (None, "gemini-2.5-flash", "google/gemini-2.5-flash"),
        (None, "models/gemini-2.5-pro", "google/gemini-2.5-pro"),
        (None, "gpt-3.5-turbo-1106", "openai/gpt-3.5-turbo-1106"),
        (None, "gpt-3.5-turbo-0613", "openai/gpt-3.5-turbo-0613"),
        (None, "gpt-4-vision-preview", "openai/gpt-4-vision-preview"),
        (None, "gpt-35-turbo", "openai/gpt-3.5-turbo"),
        (None, "ft:gpt-4o-mini:acme::abc123", "openai/ft:gpt-4o-mini"),
        (
            Some("aws.bedrock"),
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        (
            None,
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "aws/global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        (None, "amazon.nova-pro-v1:0", "aws/amazon.nova-pro-v1:0"),
    ] {
        assert_eq!(
            entry_of(provider, model).as_deref(),
            Some(expected),
            "{provider:?} {model}"
        );
    }
}

/// The names the issue found priced as another model: each is now its own
/// entry or unpriced.
#[test]
fn names_once_priced_as_a_neighbour_are_their_own_or_unpriced() {
    let t = PriceTable::builtin();
    let cases: &[(Option<&str>, &str, &[&str])] = &[
        (None, "gpt-3.5-turbo-1106", &["gpt-3.5-turbo"]),
        (None, "gpt-3.5-turbo-0613", &["gpt-3.5-turbo"]),
        (None, "gpt-4-vision-preview", &["gpt-4"]),
        (None, "gpt-4-1106-vision-preview", &["gpt-4"]),
        (None, "gpt-4o-mini-transcribe", &["gpt-4o-mini"]),
        (None, "gpt-4o-mini-tts", &["gpt-4o-mini"]),
        (None, "gpt-4o-transcribe", &["gpt-4o"]),
        (None, "gpt-4o-search-preview", &["gpt-4o"]),
        (None, "gpt-4o-mini-search-preview", &["gpt-4o-mini"]),
        (
            None,
            "mistral-large-2402",
            &["mistral-large-latest", "mistral-large-3"],
        ),
        (
            None,
            "mistral-large@2407",
            &["mistral-large-latest", "mistral-large-3"],
        ),
        (
            Some("gcp.vertex_ai"),
            "mistral-large@2407",
            &["mistral-large-latest", "mistral-large-3"],
        ),
        (None, "gemini-2.5-flash-preview-tts", &["gemini-2.5-flash"]),
        (None, "gemini-2.5-pro-preview-tts", &["gemini-2.5-pro"]),
        (
            None,
            "gemini-2.5-flash-lite-preview-tts",
            &["gemini-2.5-flash-lite"],
        ),
        (None, "gemini-live-2.5-flash-preview", &["gemini-2.5-flash"]),
        (None, "gemini-2.0-flash-live-001", &["gemini-2.0-flash"]),
        (
            None,
            "gemini-2.5-flash-native-audio-preview-09-2025",
            &["gemini-2.5-flash"],
        ),
        (None, "gpt-oss-120b", &["gpt-oss-120b"]),
        (Some("together_ai"), "openai/gpt-oss-120b", &["groq"]),
        (Some("aws.bedrock"), "openai.gpt-oss-120b-1:0", &["groq"]),
    ];
    for (provider, model, never) in cases {
        let hit = t.lookup(*provider, model);
        if let Some(hit) = hit {
            // The source lists this exact name for the entry (e.g.
            // gpt-4o-mini-search-preview has gpt-4o-mini's token prices).
            let bare = model
                .rsplit('/')
                .next()
                .unwrap_or(model)
                .to_ascii_lowercase();
            if hit.names().iter().any(|n| n.eq_ignore_ascii_case(&bare)) {
                continue;
            }
            for bad in *never {
                assert!(
                    hit.name() != *bad && hit.provider() != *bad,
                    "{model} priced as {}/{}",
                    hit.provider(),
                    hit.name()
                );
            }
            // Its own entry: the name (without routing) is one of its names.
            let own = hit.names().iter().any(|n| {
                let n = n.rsplit('/').next().unwrap_or(n).to_ascii_lowercase();
                n.replace('.', "-") == bare.replace('.', "-")
                    || bare.replace('.', "-").starts_with(&n.replace('.', "-"))
            });
            assert!(
                own,
                "{model} -> {}/{} {:?}",
                hit.provider(),
                hit.name(),
                hit.names()
            );
        }
    }
    // gpt-oss-120b is not Groq's (or any one host's) price on every host.
    assert_eq!(entry_of(None, "gpt-oss-120b"), None);
    assert_eq!(
        entry_of(Some("groq"), "openai/gpt-oss-120b").as_deref(),
        Some("groq/openai/gpt-oss-120b")
    );
    assert_eq!(
        entry_of(Some("together_ai"), "openai/gpt-oss-120b").as_deref(),
        Some("together/openai/gpt-oss-120b")
    );
}

#[test]
fn builtin_does_not_guess_across_tiers_or_versions() {
    for model in [
        "claude-opus-4-9",
        "gpt-4.2",
        "gpt-4o-2099-01-01-turbo",
        "gpt-4o-ultra",
        "openai/gpt-4o:free",
        "meta-llama/llama-4-scout-17b-16e-instruct", // Groq price only for Groq
        "totally-unknown-model",
    ] {
        assert_eq!(entry_of(None, model), None, "{model} must be unpriced");
    }
}

/// o3's price was cut on 2025-06-10: a span is priced at its start time.
#[test]
fn price_in_force_at_the_span_start() {
    let t = PriceTable::builtin();
    let u = usage(1_000_000, 1_000_000);
    let at = |d: &str| At::parse_date(d).expect("date");
    let cost = |d: &str| {
        t.cost_at(
            None,
            "o3-2025-04-16",
            at(d),
            &u,
            InputSemantics::IncludesCached,
            false,
        )
        .usd()
        .expect("o3 priced")
    };
    assert!(
        (cost("2025-05-01") - 50.0).abs() < 1e-9,
        "{}",
        cost("2025-05-01")
    );
    assert!(
        (cost("2025-06-10") - 10.0).abs() < 1e-9,
        "{}",
        cost("2025-06-10")
    );
    assert!((cost("2026-01-01") - 10.0).abs() < 1e-9);
}

#[test]
fn long_context_tiers_cache_writes_and_batch_rates() {
    let t = PriceTable::builtin();
    let sonnet = t.lookup(None, "claude-sonnet-4-5").expect("priced");
    let at = At::parse_date("2026-11-01").expect("date");
    let r = sonnet.rates_at(at).expect("rates");
    let tiers = |x: &Option<Rate>| {
        x.as_ref()
            .map(|r| (r.base(), r.tiers().collect::<Vec<_>>()))
    };
    assert_eq!(tiers(&r.input), Some((3.0, vec![(200_000, 6.0)])));
    assert_eq!(tiers(&r.cache_write), Some((3.75, vec![(200_000, 7.5)])));
    assert_eq!(tiers(&r.cache_write_1h), Some((6.0, vec![(200_000, 12.0)])));
    assert_eq!(tiers(&r.cache_read), Some((0.3, vec![(200_000, 0.6)])));
    let small = usage(100_000, 1_000);
    let large = usage(300_000, 1_000);
    let c = |u: &TokenUsage, batch| {
        sonnet
            .cost_at(at, u, InputSemantics::IncludesCached, batch)
            .usd()
            .expect("priced")
    };
    assert!((c(&small, false) - (0.3 + 0.015)).abs() < 1e-9);
    assert!((c(&large, false) - (1.8 + 0.0225)).abs() < 1e-9);
    // Published batch rates: half of each rate, tiers included.
    assert!((c(&small, true) - (0.15 + 0.0075)).abs() < 1e-9);
    assert!((c(&large, true) - (0.9 + 0.01125)).abs() < 1e-9);
    // Gemini: batch halves input and output, context caching stays.
    let flash = t.lookup(None, "gemini-2.5-flash").expect("priced");
    let b = flash.batch_rates_at(at).expect("batch");
    assert_eq!(b.input.as_ref().map(Rate::base), Some(0.15));
    assert_eq!(b.cache_read.as_ref().map(Rate::base), Some(0.03));
}

#[test]
fn regional_bedrock_prices_differ_from_global() {
    let t = PriceTable::builtin();
    let input = |p: Option<&str>, m: &str| t.lookup(p, m).map(|e| e.input());
    assert_eq!(
        input(None, "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        Some(3.0)
    );
    assert_eq!(
        input(None, "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        Some(3.3)
    );
    assert_eq!(input(None, "claude-sonnet-4-5-20250929"), Some(3.0));
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
fn fine_tuned_model_needs_a_fine_tune_price() {
    let u = usage(1_000_000, 1_000_000);
    // Fixture has no `ft:` entries: unpriced, not the (lower) base price.
    for model in [
        "ft:gpt-4o-mini:acme::abc123",
        "ft:gpt-4o-mini-2024-07-18:acme:support:abc123",
    ] {
        let c = fixture().cost(None, model, &u, InputSemantics::IncludesCached, false);
        assert_eq!(c, Cost::Unpriced, "{model}");
    }
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
    // Built-in entries are still there; the file's provider default applies
    // to those without a published batch price.
    let gpt4o = t.lookup(None, "gpt-4o").expect("builtin kept");
    assert!(matches!(gpt4o.batch(), Batch::Published(_)));
    let unbatched = t
        .iter()
        .find(|p| p.provider() == "openai" && p.name() == "gpt-4-32k")
        .expect("gpt-4-32k");
    assert_eq!(unbatched.batch(), &Batch::Discount(400_000));
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
