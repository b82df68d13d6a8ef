//! Turning the model string found on a span into price-table keys.
//!
//! Instrumentations report the same model in many spellings: `GPT-4o`,
//! `gpt-4o-2024-08-06`, `openai/gpt-4o`, `azure/my-deployment`,
//! `us.anthropic.claude-3-5-sonnet-20241022-v2:0`,
//! `claude-3-5-sonnet-v2@20241022`, `ft:gpt-4o-mini:acme::abc123`. This
//! module lists, most specific first, the names such a string can be
//! *exactly*, and the table (through a `probe` callback) says which is a
//! key. The first hit wins, so a dated snapshot with its own entry beats
//! its family and a regional Bedrock entry beats the vendor's price.
//!
//! Candidates, each tried with the provider scopes first (see [`Scopes`]):
//!
//! 1. the last `/`-segment as written (normalized: ASCII lowercase, `.`
//!    and `-` equivalent);
//! 2. `ft:BASE:org:name:id` → `ft:BASE`, then `BASE` (fine-tune price
//!    first, then the base model's);
//! 3. the name without a version tail (Bedrock `-v1:0`, Vertex
//!    `@20241022`, OpenRouter `:beta`), then the same again without a
//!    Bedrock `region.` prefix, then without `region.vendor.`;
//! 4. for each of those, one snapshot suffix less at a time: `-latest`,
//!    `-YYYYMMDD`, `-YYYY-MM-DD`, `-MM-YYYY`, `-00N`.
//!
//! There is **no** prefix guessing: `gpt-4o-mini-tts`, `gpt-4-vision-preview`
//! or `mistral-large@2407` is its own entry or unpriced, never its
//! neighbour's price. A Vertex `@NNNN` version is read as the `-NNNN` model
//! it names (`mistral-large@2407` → `mistral-large-2407`).

/// Normalize a name the way keys are stored: trimmed, ASCII-lowercase, and
/// `.` replaced by `-` so that `claude-3.5-sonnet` (OpenRouter) and
/// `claude-3-5-sonnet` (Anthropic) are the same model.
pub(crate) fn normalize(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| {
            if c == '.' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// A provider name as the table stores it: normalized, `_` read as `-`,
/// and the spellings instrumentations use for one provider mapped to the
/// price source's id (`aws.bedrock`, `bedrock` → `aws`; `gcp.vertex_ai`,
/// `vertex_ai`, `gemini` → `google`; `az.ai.openai` → `azure`...).
pub(crate) fn canonical_provider(provider: &str) -> String {
    let p = normalize(provider).replace('_', "-");
    let canonical = match p.as_str() {
        "aws-bedrock"
        | "bedrock"
        | "amazon-bedrock"
        | "amazon"
        | "bedrock-converse"
        | "aws-bedrock-runtime" => "aws",
        "gcp-vertex-ai"
        | "vertex-ai"
        | "vertex"
        | "vertexai"
        | "gcp-gemini"
        | "gemini"
        | "google-genai"
        | "gcp-gen-ai"
        | "google-vertexai"
        | "google-ai-studio"
        | "vertex-ai-beta"
        | "gcp"
        | "google-generativeai" => "google",
        "azure-ai-openai" | "az-ai-openai" | "azure-openai" | "azure-ai-inference"
        | "az-ai-inference" | "azure-ai" => "azure",
        "xai" | "grok" => "x-ai",
        "mistral-ai" | "mistralai" => "mistral",
        "together-ai" | "togetherai" => "together",
        "fireworks-ai" => "fireworks",
        "moonshot" | "moonshot-ai" => "moonshotai",
        "voyage" | "voyage-ai" => "voyageai",
        "cohere-chat" => "cohere",
        _ => return p,
    };
    canonical.to_string()
}

/// Split a normalized key into its optional provider scope and model name
/// at the last `/`: `groq/llama-x` → (`Some("groq")`, `llama-x`). The table
/// rejects keys whose scope is empty or itself contains `/`.
pub(crate) fn split_scope(key: &str) -> (Option<&str>, &str) {
    match key.rfind('/') {
        Some(i) => (Some(&key[..i]), &key[i + 1..]),
        None => (None, key),
    }
}

/// The provider hints of one lookup, in order: the caller's `provider`
/// argument, the segments of a routing prefix in the model string
/// (`openrouter/anthropic/...`: the router bills, so it comes first), and
/// `aws` for a Bedrock model id (`us.anthropic.…`). Scoped keys
/// (`provider/model`) are tried with each, then the unscoped key, so a
/// provider-specific price overrides the general one only for that
/// provider.
pub(crate) struct Scopes(Vec<String>);

impl Scopes {
    pub(crate) fn new(provider: Option<&str>, model: &str) -> Self {
        let mut scopes: Vec<String> = Vec::new();
        let mut add = |s: &str| {
            let s = s.trim();
            if !s.is_empty() {
                let c = canonical_provider(s);
                if !scopes.contains(&c) {
                    scopes.push(c);
                }
            }
        };
        if let Some(p) = provider {
            add(p);
        }
        let raw = model.trim();
        let name_start = raw.rfind('/').map_or(0, |i| i + 1);
        for segment in raw[..name_start].split('/') {
            add(segment);
        }
        if bedrock_prefix(&raw[name_start..]).1 > 0 {
            add("aws");
        }
        Scopes(scopes)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// The exact names `model` may be, most specific first, normalized.
pub(crate) fn candidates(model: &str) -> Vec<String> {
    tagged_candidates(model)
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

/// [`candidates`], each with whether provider-scoped keys may match it.
/// A Bedrock `global.` profile is priced as its own entry or at the model
/// maker's price, never as the (dearer) regional entry its stripped name
/// would reach in the `aws` scope.
fn tagged_candidates(model: &str) -> Vec<(String, bool)> {
    let raw = model.trim();
    let name_start = raw.rfind('/').map_or(0, |i| i + 1);
    let global = raw[name_start..]
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("global."));
    let all = untagged_candidates(model);
    let first_level = if global {
        all.iter().position(|c| !c.starts_with("global-"))
    } else {
        None
    };
    all.into_iter()
        .enumerate()
        .map(|(i, c)| (c, first_level.is_none_or(|f| i < f)))
        .collect()
}

fn untagged_candidates(model: &str) -> Vec<String> {
    let raw = model.trim();
    let mut out: Vec<String> = Vec::new();
    if raw.is_empty() {
        return out;
    }
    let norm = normalize(raw);
    let name_start = norm.rfind('/').map_or(0, |i| i + 1);
    let name = &norm[name_start..];
    let raw_name = &raw[name_start..];
    let mut push = |s: &str| {
        if !s.is_empty() && !out.iter().any(|c| c == s) {
            out.push(s.to_string());
        }
    };
    push(name);

    if let Some(rest) = name.strip_prefix("ft:") {
        // `ft:BASE:org:name:id` (OpenAI fine-tune): BASE ends at the next
        // ':'. Fine-tuned models are billed above their base, so only a
        // fine-tune entry prices them (`ft:BASE`, less its snapshot date or
        // `-0125`-style version); never the base model's price.
        let base = rest.split(':').next().unwrap_or("");
        for b in snapshot_chain(base) {
            push(&format!("ft:{b}"));
            if let Some((head, tail)) = b.rsplit_once('-') {
                if tail.len() == 4 && is_digits(tail) {
                    push(&format!("ft:{head}"));
                }
            }
        }
        return out;
    }

    let (region, vendor) = bedrock_prefix(raw_name);
    let mut starts = vec![0];
    if region > 0 {
        starts.push(region);
    }
    if vendor > region {
        starts.push(vendor);
    }
    for start in starts {
        let s = &name[start..];
        for b in snapshot_chain(s) {
            push(b);
        }
        if let Some(t) = strip_version_tail(s) {
            for b in snapshot_chain(&t) {
                push(b);
            }
        }
    }
    out
}

/// `s`, then `s` with one snapshot suffix less, and so on.
fn snapshot_chain(s: &str) -> Vec<&str> {
    let mut chain = vec![s];
    let mut cur = s;
    while let Some(len) = strip_snapshot_suffix(cur) {
        cur = &cur[..len];
        chain.push(cur);
    }
    chain
}

/// Lengths of a Bedrock `region.` prefix and of `region.vendor.`
/// (`us.anthropic.` → (3, 13); `meta.` → (0, 5); none → (0, 0)). Checked
/// on the raw name because normalization turns the dots into dashes.
fn bedrock_prefix(raw_name: &str) -> (usize, usize) {
    const VENDORS: &[&str] = &[
        "anthropic",
        "amazon",
        "meta",
        "mistral",
        "cohere",
        "ai21",
        "deepseek",
        "openai",
        "qwen",
        "writer",
        "moonshotai",
        "nvidia",
        "google",
        "zai",
        "minimax",
    ];
    let is = |list: &[&str], s: &str| list.iter().any(|x| x.eq_ignore_ascii_case(s));
    let mut region = 0;
    let mut rest = raw_name;
    if let Some((first, after)) = rest.split_once('.') {
        if is_region(first) {
            region = first.len() + 1;
            rest = after;
        }
    }
    match rest.split_once('.') {
        Some((vendor, _)) if is(VENDORS, vendor) => (region, region + vendor.len() + 1),
        _ => (0, 0),
    }
}

/// `name` without a version tail, if it has one: Vertex `@20240620` (a
/// date), or a Bedrock/OpenRouter `:0`, `:beta`, `:thinking` tag, plus a
/// `-vN` right before it (`claude-3-5-sonnet-v2@20241022`,
/// `...-20240620-v1:0`). A Vertex `@2407` version becomes `-2407`. Other
/// `:` tags (`:free`, `:nitro`, `:online`) change the price and are kept.
/// `-vN` on its own is part of a model name (`deepseek-v3`) and kept.
fn strip_version_tail(name: &str) -> Option<String> {
    let head = if let Some((head, tail)) = name.split_once('@') {
        if tail.len() == 4 && is_digits(tail) {
            return Some(format!("{head}-{tail}"));
        }
        let dated = tail.len() == 8 && tail.starts_with("20") && is_digits(tail);
        if !(dated || tail == "latest" || (tail.len() == 3 && is_digits(tail))) {
            return None;
        }
        head
    } else {
        let (head, tag) = name.rsplit_once(':')?;
        if !(tag == "beta" || tag == "thinking" || is_digits(tag)) {
            return None;
        }
        head
    };
    let head = match head.rfind("-v") {
        Some(i) if is_digits(&head[i + 2..]) => &head[..i],
        _ => head,
    };
    Some(head.to_string())
}

/// Remove one snapshot suffix, returning the new length: `-latest`,
/// `-20241022`, `-2024-07-18` (OpenAI), `-03-2025` (Cohere), `-001`
/// (Gemini).
fn strip_snapshot_suffix(name: &str) -> Option<usize> {
    if let Some(rest) = name.strip_suffix("-latest") {
        return (!rest.is_empty()).then_some(rest.len());
    }
    let mut segs = name.rsplit('-');
    let last = segs.next()?;
    let prev = segs.next()?;
    let is_year = |s: &str| s.len() == 4 && s.starts_with("20") && is_digits(s);
    let two = |s: &str| s.len() == 2 && is_digits(s);
    // `checked_sub` and the non-empty checks: a name that is *only* a
    // date has no base to keep.
    if last.len() == 8 && last.starts_with("20") && is_digits(last) {
        return name.len().checked_sub(9).filter(|&n| n > 0);
    }
    if last.len() == 3 && last.starts_with("00") && is_digits(last) {
        return name.len().checked_sub(4).filter(|&n| n > 0);
    }
    if two(last) && two(prev) && segs.next().is_some_and(is_year) {
        return name.len().checked_sub(11).filter(|&n| n > 0);
    }
    if is_year(last) && two(prev) {
        return name.len().checked_sub(8).filter(|&n| n > 0);
    }
    None
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Resolve `model` to an entry index and the candidate name that matched.
///
/// `probe(scope, key)` answers whether the normalized `key`, optionally
/// scoped to a canonical provider, is in the table.
pub(crate) fn resolve<F>(provider: Option<&str>, model: &str, probe: F) -> Option<(usize, String)>
where
    F: Fn(Option<&str>, &str) -> Option<usize>,
{
    let scopes = Scopes::new(provider, model);
    // A region in the route (`azure/eu/gpt-4o`, a data-zone deployment)
    // bills differently from both the maker's and the global deployment's
    // price, and no source lists those: unpriced.
    let raw = model.trim();
    if raw
        .rfind('/')
        .is_some_and(|i| raw[..i].split('/').any(is_region))
    {
        return None;
    }
    for (candidate, scoped) in tagged_candidates(model) {
        for scope in scopes.iter().filter(|_| scoped) {
            if let Some(hit) = probe(Some(scope), &candidate) {
                return Some((hit, format!("{scope}/{candidate}")));
            }
        }
        if let Some(hit) = probe(None, &candidate) {
            return Some((hit, candidate));
        }
    }
    None
}

const REGIONS: &[&str] = &[
    "us", "eu", "apac", "us-gov", "global", "jp", "au", "ca", "in",
];

/// A Bedrock/Azure geography (`eu`, `apac`) or a cloud region code
/// (`us-east-1`, `us-gov-west-1`, `eu-central-2`).
fn is_region(s: &str) -> bool {
    if REGIONS.iter().any(|r| r.eq_ignore_ascii_case(s)) {
        return true;
    }
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 4
        && parts[0].len() == 2
        && parts[0].bytes().all(|b| b.is_ascii_alphabetic())
        && parts.last().is_some_and(|n| is_digits(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolve against a plain list of keys (normalized the same way the
    /// table does), returning the key that matched.
    fn resolve_in<'k>(keys: &[&'k str], provider: Option<&str>, model: &str) -> Option<&'k str> {
        let norm: Vec<(Option<String>, String)> = keys
            .iter()
            .map(|k| {
                let n = normalize(k);
                let (scope, name) = split_scope(&n);
                (scope.map(canonical_provider), name.to_string())
            })
            .collect();
        let probe = |scope: Option<&str>, key: &str| {
            norm.iter()
                .position(|(s, k)| s.as_deref() == scope && k == key)
        };
        resolve(provider, model, probe).map(|(i, _)| keys[i])
    }

    const KEYS: &[&str] = &[
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4o-2024-05-13",
        "o1",
        "o1-mini",
        "gpt-4.1",
        "claude-3-5-sonnet",
        "claude-opus-4",
        "gemini-2.5-flash",
        "gemini-1.5-pro",
        "ft:gpt-4o-mini",
        "command-a",
        "nova-pro",
        "mistral-large-2407",
        "groq/llama-x",
        "aws/us-anthropic-claude-sonnet-4-5",
        "aws/claude-sonnet-4-5",
        "aws/global-anthropic-claude-sonnet-4-5",
    ];

    fn m(model: &str) -> Option<&'static str> {
        resolve_in(KEYS, None, model)
    }

    #[test]
    fn exact_and_case_insensitive() {
        assert_eq!(m("gpt-4o"), Some("gpt-4o"));
        assert_eq!(m("  GPT-4o "), Some("gpt-4o"));
        assert_eq!(m("gpt-4o-mini"), Some("gpt-4o-mini"));
        assert_eq!(m("o1"), Some("o1"));
        assert_eq!(m("o1-mini"), Some("o1-mini"));
        assert_eq!(m(""), None);
    }

    #[test]
    fn dated_snapshots() {
        assert_eq!(m("gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
        assert_eq!(m("gpt-4o-2024-08-06"), Some("gpt-4o"));
        // A dated snapshot with its own entry wins over the family.
        assert_eq!(m("gpt-4o-2024-05-13"), Some("gpt-4o-2024-05-13"));
        assert_eq!(m("o1-mini-2024-09-12"), Some("o1-mini"));
        assert_eq!(m("gpt-4.1-2025-04-14"), Some("gpt-4.1"));
        assert_eq!(m("claude-3-5-sonnet-20241022"), Some("claude-3-5-sonnet"));
        assert_eq!(m("claude-3-5-sonnet-latest"), Some("claude-3-5-sonnet"));
        assert_eq!(m("claude-3-5-sonnet@20240620"), Some("claude-3-5-sonnet"));
        assert_eq!(
            m("claude-3-5-sonnet-v2@20241022"),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(m("command-a-03-2025"), Some("command-a"));
        assert_eq!(m("gemini-1.5-pro-002"), Some("gemini-1.5-pro"));
    }

    #[test]
    fn routing_prefixes_and_cloud_ids() {
        assert_eq!(m("openai/gpt-4o"), Some("gpt-4o"));
        assert_eq!(
            m("openrouter/anthropic/claude-3.5-sonnet"),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(
            m("anthropic/claude-3.5-sonnet:beta"),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(m("models/gemini-1.5-pro-002"), Some("gemini-1.5-pro"));
        assert_eq!(
            m("anthropic.claude-3-5-sonnet-20240620-v1:0"),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(m("amazon.nova-pro-v1:0"), Some("nova-pro"));
        // Bedrock: the regional / global entries, by the region prefix.
        assert_eq!(
            m("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            Some("aws/us-anthropic-claude-sonnet-4-5")
        );
        assert_eq!(
            m("global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            Some("aws/global-anthropic-claude-sonnet-4-5")
        );
        assert_eq!(
            resolve_in(KEYS, Some("aws.bedrock"), "claude-sonnet-4-5"),
            Some("aws/claude-sonnet-4-5")
        );
        // A global profile without its own entry: the maker's price, not
        // the regional entry.
        let keys = &["aws/anthropic-claude-x", "aws/claude-x", "claude-x"];
        assert_eq!(
            resolve_in(keys, None, "global.anthropic.claude-x-v1:0"),
            Some("claude-x")
        );
        assert_eq!(
            resolve_in(keys, None, "eu.anthropic.claude-x-v1:0"),
            Some("aws/anthropic-claude-x")
        );
        // A data-zone or cloud-region route is not the maker's price.
        assert_eq!(m("azure/eu/gpt-4o"), None);
        assert_eq!(
            m("bedrock/us-gov-east-1/anthropic.claude-3-5-sonnet-v1:0"),
            None
        );
        assert!(is_region("eu-central-2") && !is_region("gpt-4o-mini"));
        // A price-changing OpenRouter variant is not guessed.
        assert_eq!(m("openai/gpt-4o:free"), None);
        // Vertex @NNNN names a -NNNN model, never the family.
        assert_eq!(m("mistral-large@2407"), Some("mistral-large-2407"));
        assert_eq!(
            resolve_in(&["mistral-large"], None, "mistral-large@2407"),
            None
        );
    }

    #[test]
    fn fine_tuned_needs_a_fine_tune_price() {
        assert_eq!(m("ft:gpt-4o-mini:acme::abc123"), Some("ft:gpt-4o-mini"));
        assert_eq!(
            m("ft:gpt-4o-mini-2024-07-18:acme:name:abc123"),
            Some("ft:gpt-4o-mini")
        );
        // No `ft:gpt-4o` key: not the base model's (lower) price.
        assert_eq!(m("ft:gpt-4o-2024-08-06:acme::x1"), None);
        assert_eq!(
            resolve_in(&["ft:gpt-3.5-turbo"], None, "ft:gpt-3.5-turbo-0125:acme::x"),
            Some("ft:gpt-3.5-turbo")
        );
        let keys = &["gpt-4o-mini", "ft:gpt-4o-mini:acme::abc123"];
        assert_eq!(
            resolve_in(keys, None, "ft:gpt-4o-mini:acme::abc123"),
            Some("ft:gpt-4o-mini:acme::abc123")
        );
        assert_eq!(resolve_in(keys, None, "ft:gpt-4o-mini:acme::other"), None);
    }

    #[test]
    fn no_prefix_guessing() {
        for name in [
            "gpt-4o-search-preview",
            "gpt-4o-mini-tts",
            "gpt-4o-mini-transcribe",
            "o1-preview",
            "o1-pro",
            "gemini-2.5-flash-lite",
            "gemini-2.5-flash-preview-tts",
            "gemini-2.5-flash-live",
            "claude-opus-4-5",
            "claude-opus-4-5-20251101",
            "gpt-4.1-mini",
            "gpt-4o--x",
            "gpt-4o-ünïcode",
        ] {
            assert_eq!(m(name), None, "{name}");
        }
        assert_eq!(resolve_in(&["gpt-4"], None, "gpt-4-32k"), None);
        assert_eq!(resolve_in(&["gpt-4"], None, "gpt-4-0613"), None);
        assert_eq!(resolve_in(&["gpt-4"], None, "gpt-4-vision-preview"), None);
        assert_eq!(m("claude-opus-4-20250514"), Some("claude-opus-4"));
    }

    #[test]
    fn scoped_keys_need_a_matching_provider() {
        assert_eq!(m("llama-x"), None);
        assert_eq!(
            resolve_in(KEYS, Some("groq"), "llama-x"),
            Some("groq/llama-x")
        );
        assert_eq!(
            resolve_in(KEYS, Some("GROQ"), "llama-x-2025-01-01"),
            Some("groq/llama-x")
        );
        assert_eq!(m("groq/llama-x"), Some("groq/llama-x"));
        assert_eq!(m("groq/meta-llama/llama-x"), Some("groq/llama-x"));
        assert_eq!(m("meta-llama/llama-x"), None);
        let keys = &["llama-x", "groq/llama-x"];
        assert_eq!(
            resolve_in(keys, Some("groq"), "llama-x"),
            Some("groq/llama-x")
        );
        assert_eq!(
            resolve_in(keys, Some("together"), "llama-x"),
            Some("llama-x")
        );
    }

    #[test]
    fn provider_spellings() {
        assert_eq!(canonical_provider("aws.bedrock"), "aws");
        assert_eq!(canonical_provider("gcp.vertex_ai"), "google");
        assert_eq!(canonical_provider("az.ai.openai"), "azure");
        assert_eq!(canonical_provider("xai"), "x-ai");
        assert_eq!(canonical_provider("together_ai"), "together");
        assert_eq!(canonical_provider("OpenAI"), "openai");
    }

    #[test]
    fn long_and_odd_names_do_not_panic() {
        let long = format!("{}-gpt-4o", "x".repeat(300));
        assert_eq!(m(&long), None);
        let long_ok = format!("{}/gpt-4o", "router".repeat(60));
        assert_eq!(m(&long_ok), Some("gpt-4o"));
        for odd in [
            "ft:",
            "@",
            "-",
            ":",
            "a@",
            "@2024",
            "-latest",
            "x.",
            ".x",
            "us.",
            "us.anthropic.",
        ] {
            let _ = m(odd);
        }
        assert_eq!(
            resolve_in(KEYS, Some(&"p".repeat(100)), "gpt-4o"),
            Some("gpt-4o")
        );
    }

    #[test]
    fn suffix_helpers() {
        assert_eq!(strip_snapshot_suffix("a-20241022"), Some(1));
        assert_eq!(strip_snapshot_suffix("a-2024-07-18"), Some(1));
        assert_eq!(strip_snapshot_suffix("a-03-2025"), Some(1));
        assert_eq!(strip_snapshot_suffix("a-latest"), Some(1));
        assert_eq!(strip_snapshot_suffix("a-002"), Some(1));
        assert_eq!(strip_snapshot_suffix("mistral-large-2411"), None);
        assert_eq!(strip_snapshot_suffix("gpt-4-0613"), None);
        assert_eq!(strip_snapshot_suffix("2024-07-18"), None);
        assert_eq!(strip_snapshot_suffix("20241022"), None);
        assert_eq!(strip_version_tail("x-v2@20240101").as_deref(), Some("x"));
        assert_eq!(
            strip_version_tail("x-20240620-v1:0").as_deref(),
            Some("x-20240620")
        );
        assert_eq!(strip_version_tail("deepseek-v3"), None);
        assert_eq!(strip_version_tail("x:free"), None);
        assert_eq!(strip_version_tail("x@2407").as_deref(), Some("x-2407"));
        assert_eq!(strip_version_tail("x@foo"), None);
    }
}
