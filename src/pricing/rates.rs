//! One model's rates over time and the exact arithmetic of one call.
//!
//! A model has one or more price *periods* (the source's dated history and,
//! for DeepSeek, daily off-peak windows), each a set of rates; every rate
//! may have long-context tiers; batch calls use the published batch rates
//! (per rate) or, for entries that only give a discount, a fraction of the
//! whole call. Prices are held as integer pico-dollars per token (see
//! `cost.rs`), so a call's cost is an exact integer sum.

use super::cost::{to_pico_per_token, InputSemantics, TokenUsage};

/// Parts-per-million denominator for a batch discount.
const PPM: u128 = 1_000_000;

/// One price, possibly tiered by the call's total input tokens.
///
/// Tiers are "cliffs", as providers bill them: once a call's total input
/// (cached tokens included) exceeds a tier's start, **every** token of that
/// kind in the call is charged at the tier's price.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// `(starts above this many input tokens, USD per Mtok, pico per token)`;
    /// the first step starts at 0 and is the base price.
    steps: Vec<(u64, f64, u64)>,
}

impl Rate {
    /// A flat price in USD per million tokens.
    pub(crate) fn flat(usd_per_mtok: f64) -> Self {
        Rate {
            steps: vec![(0, usd_per_mtok, to_pico_per_token(usd_per_mtok))],
        }
    }

    /// A base price and `(above_input_tokens, price)` tiers, sorted.
    pub(crate) fn tiered(base: f64, tiers: &[(u64, f64)]) -> Self {
        let mut rate = Rate::flat(base);
        let mut tiers = tiers.to_vec();
        tiers.sort_by_key(|t| t.0);
        for (start, usd) in tiers {
            rate.steps.push((start, usd, to_pico_per_token(usd)));
        }
        rate
    }

    /// The base price, USD per million tokens.
    pub fn base(&self) -> f64 {
        self.steps.first().map_or(0.0, |s| s.1)
    }

    /// Long-context tiers: `(applies above this many input tokens, USD per
    /// million tokens)`.
    pub fn tiers(&self) -> impl Iterator<Item = (u64, f64)> + '_ {
        self.steps.iter().skip(1).map(|s| (s.0, s.1))
    }

    /// Every price this rate can take, for validation.
    pub(crate) fn prices(&self) -> impl Iterator<Item = f64> + '_ {
        self.steps.iter().map(|s| s.1)
    }

    fn pico_at(&self, total_input: u64) -> u64 {
        self.steps
            .iter()
            .rev()
            .find(|s| s.0 == 0 || total_input > s.0)
            .map_or(0, |s| s.2)
    }

    /// `self` with every price multiplied by `keep` (a batch discount
    /// applied per rate, for display).
    pub(crate) fn scaled(&self, keep: f64) -> Rate {
        Rate {
            steps: self
                .steps
                .iter()
                .map(|&(start, usd, _)| (start, usd * keep, to_pico_per_token(usd * keep)))
                .collect(),
        }
    }
}

/// The rates of one period (or one batch variant, where missing rates fall
/// back to the standard ones). `None` means "not published": cache reads and
/// writes then cost the input price, 1-hour writes the 5-minute price,
/// reasoning the output price.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateSet {
    /// Uncached input tokens.
    pub input: Option<Rate>,
    /// Output tokens (reasoning included unless `reasoning` is set).
    pub output: Option<Rate>,
    /// Cache-hit input tokens.
    pub cache_read: Option<Rate>,
    /// Cache-write input tokens (Anthropic: the 5-minute write).
    pub cache_write: Option<Rate>,
    /// Anthropic 1-hour cache writes. Spans do not report the TTL of a
    /// write, so this is shown but not charged: writes are charged at
    /// `cache_write`.
    pub cache_write_1h: Option<Rate>,
    /// Reasoning output tokens, where priced apart from output.
    pub reasoning: Option<Rate>,
}

impl RateSet {
    /// Every rate with its name, for listings and validation.
    pub fn named(&self) -> [(&'static str, Option<&Rate>); 6] {
        [
            ("input", self.input.as_ref()),
            ("output", self.output.as_ref()),
            ("cache_read", self.cache_read.as_ref()),
            ("cache_write", self.cache_write.as_ref()),
            ("cache_write_1h", self.cache_write_1h.as_ref()),
            ("reasoning", self.reasoning.as_ref()),
        ]
    }
}

/// When a period applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The first (oldest) price: applies when no later period does.
    Always,
    /// From this UTC date on (days since 1970-01-01).
    From(i64),
    /// Every day between these UTC seconds of day (`start > end` wraps
    /// midnight): off-peak prices.
    Daily(u32, u32),
}

impl When {
    fn active(self, at: At) -> bool {
        match self {
            When::Always => true,
            When::From(day) => at.day >= day,
            When::Daily(start, end) if end < start => at.sec >= start || at.sec < end,
            When::Daily(start, end) => start <= at.sec && at.sec < end,
        }
    }
}

/// A dated set of rates.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    /// When it applies.
    pub when: When,
    /// Its rates.
    pub rates: RateSet,
}

/// How a batch call is priced.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    /// No batch price known: a batch call is charged in full (never
    /// under-reported).
    None,
    /// A discount on the whole call, kept share in ppm (user entries'
    /// `batch_discount`, or a `[providers.*]` default).
    Discount(u32),
    /// Published batch rates, per rate, with the date each took effect.
    Published(Vec<(Option<i64>, RateSet)>),
}

/// A point in time: UTC day number and second of that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct At {
    pub(crate) day: i64,
    pub(crate) sec: u32,
}

impl At {
    /// From Unix seconds.
    pub fn from_unix_secs(secs: i64) -> Self {
        At {
            day: secs.div_euclid(86_400),
            sec: secs.rem_euclid(86_400) as u32,
        }
    }

    /// The current time.
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        At::from_unix_secs(secs)
    }

    /// Noon UTC of a `YYYY-MM-DD` date.
    pub fn parse_date(s: &str) -> Option<Self> {
        Some(At {
            day: parse_day(s)?,
            sec: 12 * 3600,
        })
    }

    /// `YYYY-MM-DD` of this point.
    pub fn date(self) -> String {
        format_day(self.day)
    }
}

/// The period in force at `at`: the last one whose condition holds (the
/// source's rule), else the first.
pub(crate) fn period_at(periods: &[Period], at: At) -> Option<&Period> {
    periods
        .iter()
        .rev()
        .find(|p| p.when.active(at))
        .or(periods.first())
}

/// The batch rates in force at `at`: the latest published variant dated on
/// or before it, else the earliest one (sources date batch prices from when
/// they were checked, not from when they began; batch APIs predate that).
pub(crate) fn batch_at(variants: &[(Option<i64>, RateSet)], at: At) -> Option<&RateSet> {
    variants
        .iter()
        .rev()
        .find(|(from, _)| from.is_none_or(|d| at.day >= d))
        .or(variants.first())
        .map(|(_, r)| r)
}

/// Exact cost of one call in pico-dollars.
///
/// `batch` holds the published batch rates (rates it lacks come from
/// `standard`); `keep_ppm` is a whole-call discount for entries without
/// published batch rates.
pub(crate) fn pico_usd(
    standard: &RateSet,
    batch: Option<&RateSet>,
    keep_ppm: Option<u32>,
    u: &TokenUsage,
    semantics: InputSemantics,
) -> u128 {
    let pick = |f: fn(&RateSet) -> Option<&Rate>| batch.and_then(f).or_else(|| f(standard));
    let (uncached, total_input) = match semantics {
        // Saturating: instrumentation that reports more cached than total
        // input is wrong, but the right answer is "no uncached input",
        // never an underflow.
        InputSemantics::IncludesCached => (
            u.input
                .saturating_sub(u.cache_read)
                .saturating_sub(u.cache_write),
            u.input,
        ),
        InputSemantics::ExcludesCached => (
            u.input,
            u.input
                .saturating_add(u.cache_read)
                .saturating_add(u.cache_write),
        ),
    };
    let at = |r: Option<&Rate>| r.map_or(0, |r| r.pico_at(total_input));
    let input = at(pick(|r| r.input.as_ref()));
    let output = at(pick(|r| r.output.as_ref()));
    let cache_read = pick(|r| r.cache_read.as_ref()).map_or(input, |r| r.pico_at(total_input));
    let cache_write = pick(|r| r.cache_write.as_ref()).map_or(input, |r| r.pico_at(total_input));
    // Reasoning tokens are part of output; only a model that prices them
    // apart charges them at another rate, and never twice.
    let (plain_output, reasoning) = match pick(|r| r.reasoning.as_ref()) {
        Some(rate) => {
            let reasoning = u.reasoning.min(u.output);
            (
                mul(u.output - reasoning, output),
                mul(reasoning, rate.pico_at(total_input)),
            )
        }
        None => (mul(u.output, output), 0),
    };
    let total = mul(uncached, input)
        + mul(u.cache_read, cache_read)
        + mul(u.cache_write, cache_write)
        + plain_output
        + reasoning;
    match keep_ppm {
        // Truncation loses less than one pico-dollar.
        Some(keep) => total * u128::from(keep) / PPM,
        None => total,
    }
}

/// `u64 * u64` always fits in `u128`, and five such terms stay far below
/// `u128::MAX`, so plain addition cannot overflow.
fn mul(tokens: u64, pico_per_token: u64) -> u128 {
    u128::from(tokens) * u128::from(pico_per_token)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian).
pub(crate) fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1900..=9999).contains(&y) {
        return None;
    }
    let civil = format!("{y:04}-{m:02}-{d:02}");
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let day = era * 146_097 + doe - 719_468;
    // Reject 2025-02-30 and the like.
    (format_day(day) == civil).then_some(day)
}

/// `YYYY-MM-DD` of a day number.
pub(crate) fn format_day(day: i64) -> String {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// $3 in / $15 out / $0.30 cache read / $3.75 cache write: Claude
    /// Sonnet list prices, a realistic mix of all four rates.
    fn sonnet() -> RateSet {
        RateSet {
            input: Some(Rate::flat(3.0)),
            output: Some(Rate::flat(15.0)),
            cache_read: Some(Rate::flat(0.30)),
            cache_write: Some(Rate::flat(3.75)),
            ..RateSet::default()
        }
    }

    fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> TokenUsage {
        TokenUsage {
            input,
            output,
            cache_read,
            cache_write,
            reasoning: 0,
        }
    }

    fn cost(r: &RateSet, u: &TokenUsage, s: InputSemantics) -> u128 {
        pico_usd(r, None, None, u, s)
    }

    #[test]
    fn plain_input_and_output() {
        // 1000 * $3/M + 500 * $15/M = $0.003 + $0.0075 = $0.0105
        let u = usage(1000, 500, 0, 0);
        assert_eq!(
            cost(&sonnet(), &u, InputSemantics::IncludesCached),
            10_500_000_000
        );
    }

    #[test]
    fn cache_tokens_are_not_charged_twice() {
        // 3_000 * 3 + 6_000 * 0.30 + 1_000 * 3.75 + 200 * 15 (per M)
        let u = usage(10_000, 200, 6_000, 1_000);
        assert_eq!(
            cost(&sonnet(), &u, InputSemantics::IncludesCached),
            17_550_000_000
        );
        let u = usage(3_000, 200, 6_000, 1_000);
        assert_eq!(
            cost(&sonnet(), &u, InputSemantics::ExcludesCached),
            17_550_000_000
        );
    }

    #[test]
    fn more_cached_than_input_saturates_to_zero_uncached() {
        let u = usage(100, 0, 500, 0);
        assert_eq!(
            cost(&sonnet(), &u, InputSemantics::IncludesCached),
            150_000_000
        );
    }

    #[test]
    fn reasoning_is_part_of_output_unless_priced_apart() {
        let mut u = usage(0, 1_000, 0, 0);
        u.reasoning = 800;
        assert_eq!(
            cost(&sonnet(), &u, InputSemantics::IncludesCached),
            15_000_000_000
        );
        let mut apart = sonnet();
        apart.reasoning = Some(Rate::flat(5.0));
        // 200 * 15 + 800 * 5 = 3_000 + 4_000 micro-dollars
        assert_eq!(
            cost(&apart, &u, InputSemantics::IncludesCached),
            7_000_000_000
        );
    }

    #[test]
    fn long_context_tier_prices_the_whole_call() {
        let r = RateSet {
            input: Some(Rate::tiered(3.0, &[(200_000, 6.0)])),
            output: Some(Rate::tiered(15.0, &[(200_000, 22.5)])),
            ..RateSet::default()
        };
        // Exactly 200k input: base tier.
        let u = usage(200_000, 1_000, 0, 0);
        assert_eq!(
            cost(&r, &u, InputSemantics::IncludesCached),
            (600_000 + 15_000) * 1_000_000
        );
        // One token more: every token at the tier price.
        let u = usage(200_001, 1_000, 0, 0);
        assert_eq!(
            cost(&r, &u, InputSemantics::IncludesCached),
            1_200_006 * 1_000_000 + 22_500 * 1_000_000
        );
        // Cached tokens count toward the threshold.
        let u = usage(150_000, 0, 100_000, 0);
        assert_eq!(
            cost(&r, &u, InputSemantics::ExcludesCached),
            (900_000 + 600_000) * 1_000_000
        );
    }

    #[test]
    fn published_batch_rates_replace_only_what_they_give() {
        let batch = RateSet {
            input: Some(Rate::flat(1.5)),
            output: Some(Rate::flat(7.5)),
            ..RateSet::default()
        };
        let u = usage(10_000, 200, 6_000, 0);
        // 4_000 * 1.5 + 6_000 * 0.30 (standard cache read kept) + 200 * 7.5
        let pico = pico_usd(
            &sonnet(),
            Some(&batch),
            None,
            &u,
            InputSemantics::IncludesCached,
        );
        assert_eq!(pico, (6_000 + 1_800 + 1_500) * 1_000_000);
        // A whole-call discount halves everything.
        let pico = pico_usd(
            &sonnet(),
            None,
            Some(500_000),
            &u,
            InputSemantics::IncludesCached,
        );
        assert_eq!(pico, (12_000 + 1_800 + 3_000) * 1_000_000 / 2);
    }

    #[test]
    fn periods_and_daily_windows() {
        let p = |when, input| Period {
            when,
            rates: RateSet {
                input: Some(Rate::flat(input)),
                ..RateSet::default()
            },
        };
        let day = |s: &str| parse_day(s).expect("date");
        let periods = vec![
            p(When::Always, 10.0),
            p(When::From(day("2025-06-10")), 2.0),
            p(When::Daily(16 * 3600 + 1800, 30 * 60), 1.0),
        ];
        let input = |at: At| {
            period_at(&periods, at)
                .and_then(|p| p.rates.input.as_ref())
                .map(Rate::base)
        };
        let at = |d: &str, sec: u32| At { day: day(d), sec };
        assert_eq!(input(at("2025-06-09", 12 * 3600)), Some(10.0));
        assert_eq!(input(at("2025-06-10", 12 * 3600)), Some(2.0));
        assert_eq!(input(at("2025-06-10", 17 * 3600)), Some(1.0));
        assert_eq!(input(at("2025-06-10", 10 * 60)), Some(1.0));
        assert_eq!(input(at("2025-06-10", 3600)), Some(2.0));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2025-06-10"), Some(20_249));
        assert_eq!(format_day(20_249), "2025-06-10");
        assert_eq!(
            parse_day("2024-02-29").map(format_day).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(parse_day("2025-02-29"), None);
        assert_eq!(parse_day("2025-13-01"), None);
        assert_eq!(parse_day("yesterday"), None);
        assert_eq!(At::from_unix_secs(86_400 + 5).sec, 5);
        assert_eq!(At::from_unix_secs(-1).day, -1);
    }

    #[test]
    fn extreme_token_counts_do_not_overflow() {
        let u = TokenUsage {
            input: u64::MAX,
            output: u64::MAX,
            cache_read: u64::MAX,
            cache_write: u64::MAX,
            reasoning: u64::MAX,
        };
        let mut r = sonnet();
        r.reasoning = Some(Rate::flat(1.0));
        let pico = pico_usd(&r, None, Some(500_000), &u, InputSemantics::ExcludesCached);
        assert!(pico > 0);
    }
}
