//! Turning the model string found on a span into a price-table key.
//!
//! Instrumentations report the same model in many spellings: `GPT-4o`,
//! `gpt-4o-2024-08-06`, `openai/gpt-4o`, `azure/my-deployment`,
//! `us.anthropic.claude-3-5-sonnet-20241022-v2:0`,
//! `claude-3-5-sonnet-v2@20241022`, `ft:gpt-4o-mini:acme::abc123`. This
//! module peels those spellings down, step by step, and asks the table
//! (through a `probe` callback, so it has no idea how the table is stored)
//! whether each intermediate name is a key. The first hit wins, so a more
//! specific entry (a dated snapshot, an exact fine-tuned name) always beats a
//! more general one.
//!
//! Order of attempts, each tried with the provider scopes first (see
//! [`Scopes`]):
//!
//! 1. the last `/`-segment as written (normalized: ASCII lowercase, `.` and
//!    `-` equivalent);
//! 2. structure removed: `ft:BASE:org:name:id` → `BASE` (trying `ft:BASE`
//!    first, the fine-tuned price); Bedrock `[region.]vendor.` prefix;
//!    Vertex `@version` and Bedrock `:N` tails, with the `-vN` before them;
//! 3. then repeatedly one suffix less: `-latest`, `-YYYYMMDD`,
//!    `-YYYY-MM-DD`, `-MM-YYYY`;
//! 4. finally the longest `-`-boundary prefix that is a key, unless the
//!    dropped part changes the price class (see [`fallback_allowed`]).
//!
//! Everything works on a stack copy of the name, so the common case does not
//! allocate; each step is a hash probe, so a lookup costs O(segments), not
//! O(entries).

/// Names up to this length are normalized on the stack; longer ones (never
/// seen in practice) fall back to a heap copy.
const STACK_NAME: usize = 256;
const STACK_PROVIDER: usize = 64;

/// How a lookup matched, for trace logs: a prefix match is the only
/// approximate one and worth seeing when a cost looks wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchKind {
    /// The name (minus routing prefixes) is a key.
    Exact,
    /// A key after removing fine-tune, cloud-vendor, version or date parts.
    Normalized,
    /// The longest key that is a `-`-prefix of the name.
    Prefix,
}

/// Normalize a name the way keys are stored: trimmed, ASCII-lowercase, and
/// `.` replaced by `-` so that `claude-3.5-sonnet` (OpenRouter) and
/// `claude-3-5-sonnet` (Anthropic) are the same model. The mapping is
/// byte-for-byte, so offsets in the normalized string are offsets in the
/// original too.
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

fn norm_byte(b: u8) -> u8 {
    if b == b'.' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

/// Normalize into `stack` when it fits, else into `heap`.
fn normalize_into<'a>(raw: &str, stack: &'a mut [u8], heap: &'a mut String) -> &'a str {
    if raw.len() <= stack.len() {
        let out = &mut stack[..raw.len()];
        for (dst, src) in out.iter_mut().zip(raw.bytes()) {
            *dst = norm_byte(src);
        }
        // Only ASCII bytes were rewritten (to ASCII), so UTF-8 validity is
        // preserved; the fallback is unreachable but keeps this panic-free.
        std::str::from_utf8(out).unwrap_or("")
    } else {
        *heap = normalize(raw);
        heap.as_str()
    }
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

/// The provider hints of one lookup: the caller's `provider` argument and
/// the segments of the routing prefix in the model string
/// (`openrouter/anthropic/...`). Scoped keys (`provider/model`) are tried
/// first, then the unscoped key, so a provider-specific price overrides the
/// general one only for that provider.
struct Scopes<'a> {
    provider: Option<&'a str>,
    path: &'a str,
}

impl Scopes<'_> {
    fn find<F>(&self, key: &str, probe: &F) -> Option<usize>
    where
        F: Fn(Option<&str>, &str) -> Option<usize>,
    {
        if key.is_empty() {
            return None;
        }
        if let Some(hit) = self.provider.and_then(|p| probe(Some(p), key)) {
            return Some(hit);
        }
        // Each routing segment, outermost first: in
        // `openrouter/anthropic/...` the router is the one that bills.
        for segment in self.path.split('/').filter(|s| !s.is_empty()) {
            if let Some(hit) = probe(Some(segment), key) {
                return Some(hit);
            }
        }
        probe(None, key)
    }
}

/// Resolve `model` (as reported by instrumentation) to an entry index.
///
/// `probe(scope, key)` answers whether the normalized `key`, optionally
/// scoped to a normalized provider, is in the table.
pub(crate) fn resolve<F>(
    provider: Option<&str>,
    model: &str,
    probe: F,
) -> Option<(usize, MatchKind)>
where
    F: Fn(Option<&str>, &str) -> Option<usize>,
{
    let raw = model.trim();
    if raw.is_empty() {
        return None;
    }
    let mut stack = [0u8; STACK_NAME];
    let mut heap = String::new();
    let norm = normalize_into(raw, &mut stack, &mut heap);

    let mut pstack = [0u8; STACK_PROVIDER];
    let mut pheap = String::new();
    let provider = provider
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| normalize_into(p, &mut pstack, &mut pheap));

    let name_start = norm.rfind('/').map_or(0, |i| i + 1);
    let scopes = Scopes {
        provider,
        path: norm[..name_start].trim_end_matches('/'),
    };
    let find = |key: &str| scopes.find(key, &probe);

    // 1. The name as written (also catches exact fine-tuned overrides).
    if let Some(hit) = find(&norm[name_start..]) {
        return Some((hit, MatchKind::Exact));
    }

    // 2. Remove structure around the base model name. The candidate is
    //    always `norm[start..end]`; from here on only `end` moves, which is
    //    what lets `ft:` + candidate stay a contiguous slice.
    let mut start = name_start;
    let mut end = norm.len();
    let mut ft_start = None;
    if norm[start..].starts_with("ft:") {
        // `ft:BASE:org:name:id` (OpenAI fine-tune): BASE ends at the next ':'.
        ft_start = Some(start);
        start += 3;
        end = norm[start..].find(':').map_or(end, |i| start + i);
    } else {
        start += cloud_vendor_prefix_len(&raw[name_start..]);
        end = start + strip_version_tail(&norm[start..end]);
    }
    let try_candidate = |end: usize| {
        ft_start
            .and_then(|ft| find(&norm[ft..end]))
            .or_else(|| find(&norm[start..end]))
    };

    // 3. The base name, then one date/`-latest` suffix less at a time.
    loop {
        if end > start {
            if let Some(hit) = try_candidate(end) {
                return Some((hit, MatchKind::Normalized));
            }
        }
        match strip_snapshot_suffix(&norm[start..end]) {
            Some(len) => end = start + len,
            None => break,
        }
    }

    // 4. Longest known prefix at a '-' boundary. A ':' left in the name is
    //    an unknown variant tag (`:free`, `:nitro`) that changes the price,
    //    so no guessing then.
    let candidate = &norm[start..end];
    if candidate.contains(':') {
        return None;
    }
    for (dash, _) in candidate.rmatch_indices('-') {
        if !fallback_allowed(&candidate[dash + 1..]) {
            continue;
        }
        if let Some(hit) = try_candidate(start + dash) {
            return Some((hit, MatchKind::Prefix));
        }
    }
    None
}

/// Length of a Bedrock `[region.]vendor.` prefix (`us.anthropic.`,
/// `meta.`), or 0. Checked on the raw name because normalization turns
/// the dots into dashes.
fn cloud_vendor_prefix_len(raw_name: &str) -> usize {
    const REGIONS: &[&str] = &["us", "eu", "apac", "us-gov", "global", "jp", "au", "ca"];
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
    ];
    let is = |list: &[&str], s: &str| list.iter().any(|x| x.eq_ignore_ascii_case(s));
    let mut skipped = 0;
    let mut rest = raw_name;
    if let Some((first, after)) = rest.split_once('.') {
        if is(REGIONS, first) {
            skipped = first.len() + 1;
            rest = after;
        }
    }
    match rest.split_once('.') {
        Some((vendor, _)) if is(VENDORS, vendor) => skipped + vendor.len() + 1,
        _ => 0,
    }
}

/// Length of `name` without a version tail: Vertex `@20240620`, or a
/// Bedrock/OpenRouter `:0`, `:beta`, `:thinking` tag, plus a `-vN` right
/// before it (`claude-3-5-sonnet-v2@20241022`, `...-20240620-v1:0`). Other
/// `:` tags (`:free`, `:nitro`, `:online`) change the price and are kept.
/// The `-vN` is only removed next to such a tail: on its own it can be part
/// of a model name (`deepseek-v3`).
fn strip_version_tail(name: &str) -> usize {
    let cut = if let Some(at) = name.find('@') {
        at
    } else {
        match name.rfind(':') {
            Some(colon) => {
                let tag = &name[colon + 1..];
                let known = tag == "beta" || tag == "thinking";
                if known || (!tag.is_empty() && tag.bytes().all(|b| b.is_ascii_digit())) {
                    colon
                } else {
                    return name.len();
                }
            }
            None => return name.len(),
        }
    };
    let head = &name[..cut];
    match head.rfind("-v") {
        Some(i) if is_digits(&head[i + 2..]) => i,
        _ => cut,
    }
}

/// Remove one snapshot suffix, returning the new length: `-latest`,
/// `-20241022`, `-2024-07-18` (OpenAI), `-03-2025` (Cohere).
fn strip_snapshot_suffix(name: &str) -> Option<usize> {
    if let Some(rest) = name.strip_suffix("-latest") {
        return Some(rest.len());
    }
    let mut segs = name.rsplit('-');
    let last = segs.next()?;
    let prev = segs.next()?;
    let is_year = |s: &str| s.len() == 4 && s.starts_with("20") && is_digits(s);
    let two = |s: &str| s.len() == 2 && is_digits(s);
    // `checked_sub`: a name that is *only* a date has no base to keep.
    if last.len() == 8 && last.starts_with("20") && is_digits(last) {
        return name.len().checked_sub(9);
    }
    if two(last) && two(prev) && segs.next().is_some_and(is_year) {
        return name.len().checked_sub(11);
    }
    if is_year(last) && two(prev) {
        return name.len().checked_sub(8);
    }
    None
}

/// May a name fall back to the price of its prefix, given the dropped
/// `rest`? Falling back is right for suffixes that do not change the price
/// (`-preview`, `-0613`, `-001`, `-codex`, `-instruct`) and wrong when:
///
/// * `rest` starts with a small number: a newer version
///   (`claude-opus-4` + `5` is Opus 4.5, priced differently);
/// * any dropped segment is a size or tier word (`gpt-4o` + `mini`,
///   `o1` + `pro`, `gemini-2.5-flash` + `lite`, `gpt-4` + `32k`).
///
/// Refusing here makes an unknown variant *unpriced*, which is visible,
/// instead of silently priced as its sibling.
fn fallback_allowed(rest: &str) -> bool {
    const TIERS: &[&str] = &[
        "mini", "nano", "micro", "pro", "plus", "max", "ultra", "lite", "light", "turbo", "fast",
        "flash", "large", "medium", "small", "haiku", "sonnet", "opus", "realtime", "audio",
        "deep",
    ];
    let first = rest.split('-').next().unwrap_or("");
    if first.is_empty() || (first.len() <= 2 && is_digits(first)) {
        return false;
    }
    !rest
        .split('-')
        .any(|seg| TIERS.contains(&seg) || is_size(seg))
}

/// `32k`, `8b`, `70b`, `1m`: a context or parameter size.
fn is_size(seg: &str) -> bool {
    match seg.as_bytes().split_last() {
        Some((unit, digits)) => {
            matches!(unit, b'k' | b'b' | b'm')
                && !digits.is_empty()
                && digits.iter().all(u8::is_ascii_digit)
        }
        None => false,
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolve against a plain list of keys (normalized the same way the
    /// table does), returning the key that matched.
    fn resolve_in<'k>(keys: &[&'k str], provider: Option<&str>, model: &str) -> Option<&'k str> {
        let norm: Vec<String> = keys.iter().map(|k| normalize(k)).collect();
        let probe = |scope: Option<&str>, key: &str| {
            norm.iter().position(|k| split_scope(k) == (scope, key))
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
        "groq/llama-x",
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
        assert_eq!(
            m("us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(
            m("arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-3-5-sonnet-20240620-v1:0"),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(m("amazon.nova-pro-v1:0"), Some("nova-pro"));
        // A price-changing OpenRouter variant is not guessed.
        assert_eq!(m("openai/gpt-4o:free"), None);
    }

    #[test]
    fn fine_tuned_prefers_fine_tune_price_then_base() {
        assert_eq!(m("ft:gpt-4o-mini:acme::abc123"), Some("ft:gpt-4o-mini"));
        assert_eq!(
            m("ft:gpt-4o-mini-2024-07-18:acme:name:abc123"),
            Some("ft:gpt-4o-mini")
        );
        // No `ft:gpt-4o` key: the base price.
        assert_eq!(m("ft:gpt-4o-2024-08-06:acme::x1"), Some("gpt-4o"));
        // An exact key for the fine-tuned model wins.
        let keys = &["gpt-4o-mini", "ft:gpt-4o-mini:acme::abc123"];
        assert_eq!(
            resolve_in(keys, None, "ft:gpt-4o-mini:acme::abc123"),
            Some("ft:gpt-4o-mini:acme::abc123")
        );
        assert_eq!(
            resolve_in(keys, None, "ft:gpt-4o-mini:acme::other"),
            Some("gpt-4o-mini")
        );
    }

    #[test]
    fn prefix_fallback_never_crosses_a_tier_or_version() {
        assert_eq!(m("gpt-4o-search-preview"), Some("gpt-4o"));
        assert_eq!(m("gpt-4o-mini-search-preview"), Some("gpt-4o-mini"));
        assert_eq!(m("o1-preview"), Some("o1"));
        assert_eq!(
            m("gemini-2.5-flash-preview-05-20"),
            Some("gemini-2.5-flash")
        );
        // Only gpt-4o known: its mini is not priced as gpt-4o.
        assert_eq!(resolve_in(&["gpt-4o"], None, "gpt-4o-mini"), None);
        assert_eq!(resolve_in(&["o1"], None, "o1-mini-2024-09-12"), None);
        assert_eq!(m("o1-pro"), None);
        assert_eq!(m("gemini-2.5-flash-lite"), None);
        // A newer version is not priced as the older one...
        assert_eq!(m("claude-opus-4-5"), None);
        assert_eq!(m("claude-opus-4-5-20251101"), None);
        assert_eq!(m("gpt-4.1-mini"), None);
        // ...but a dated snapshot of the same version is.
        assert_eq!(m("claude-opus-4-20250514"), Some("claude-opus-4"));
        assert_eq!(resolve_in(&["gpt-4"], None, "gpt-4-32k"), None);
        assert_eq!(resolve_in(&["gpt-4"], None, "gpt-4-0613"), Some("gpt-4"));
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
        assert_eq!(
            resolve_in(KEYS, Some("groq"), "meta-llama/llama-x"),
            Some("groq/llama-x")
        );
        assert_eq!(m("meta-llama/llama-x"), None);
        // A scoped key beats the unscoped one for its provider only.
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
    fn long_and_odd_names_do_not_panic() {
        let long = format!("{}-gpt-4o", "x".repeat(300));
        assert_eq!(m(&long), None);
        let long_ok = format!("{}/gpt-4o", "router".repeat(60));
        assert_eq!(m(&long_ok), Some("gpt-4o"));
        assert_eq!(m("gpt-4o-ünïcode"), Some("gpt-4o"));
        assert_eq!(m("ft:"), None);
        assert_eq!(m("@"), None);
        assert_eq!(m("-"), None);
        assert_eq!(m("gpt-4o--x"), None);
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
        assert_eq!(strip_snapshot_suffix("mistral-large-2411"), None);
        assert_eq!(strip_snapshot_suffix("2024-07-18"), None);
        assert_eq!(strip_snapshot_suffix("20241022"), None);
        assert_eq!(strip_version_tail("x-v2@2024"), 1);
        assert_eq!(strip_version_tail("x-20240620-v1:0"), 10);
        assert_eq!(strip_version_tail("deepseek-v3"), 11);
        assert_eq!(strip_version_tail("x:free"), 6);
        assert!(is_size("32k") && is_size("70b") && !is_size("k") && !is_size("v2"));
    }
}
