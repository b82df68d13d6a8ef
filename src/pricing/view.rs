//! What `chainpulse prices` prints and `GET /api/v1/prices` serves: the
//! entry a model name resolves to, every rate in force at a date, and where
//! the prices come from, or why the name is unpriced.

use serde_json::{json, Map, Value};

use super::rates::{At, Batch, Rate, RateSet, When};
use super::table::{ModelPrice, PriceTable};

fn rate_json(rate: &Rate) -> Value {
    let tiers: Vec<Value> = rate
        .tiers()
        .map(|(above, usd)| json!({ "above_input_tokens": above, "usd_per_mtok": usd }))
        .collect();
    if tiers.is_empty() {
        json!(rate.base())
    } else {
        json!({ "usd_per_mtok": rate.base(), "tiers": tiers })
    }
}

fn rates_json(set: &RateSet) -> Value {
    let mut out = Map::new();
    for (name, rate) in set.named() {
        if let Some(rate) = rate {
            out.insert(name.to_string(), rate_json(rate));
        }
    }
    Value::Object(out)
}

fn when_json(when: When) -> Value {
    match when {
        When::Always => json!({}),
        When::From(day) => json!({ "from": super::rates::format_day(day) }),
        When::Daily(a, b) => json!({ "daily_utc": [hhmm(a), hhmm(b)] }),
    }
}

fn hhmm(secs: u32) -> String {
    format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

/// One entry with the rates in force at `at`, its history and batch prices.
pub fn entry_json(price: &ModelPrice, at: At) -> Value {
    let history: Vec<Value> = price
        .periods()
        .iter()
        .map(|p| {
            let mut v = when_json(p.when);
            if let Value::Object(map) = &mut v {
                map.insert("rates".into(), rates_json(&p.rates));
            }
            v
        })
        .collect();
    let batch = match price.batch() {
        Batch::None => json!("none: batch calls are charged in full"),
        Batch::Discount(keep) => json!({ "discount": 1.0 - f64::from(*keep) / 1e6 }),
        Batch::Published(_) => json!("published per rate"),
    };
    json!({
        "entry": price.name(),
        "provider": price.provider(),
        "display_name": price.display_name(),
        "origin": price.origin(),
        "deprecated": price.deprecated(),
        "names": price.names(),
        "at": at.date(),
        "unit": "USD per million tokens",
        "rates": price.rates_at(at).map_or(Value::Null, rates_json),
        "batch_rates": price.batch_rates_at(at).as_ref().map_or(Value::Null, rates_json),
        "batch": batch,
        "history": history,
    })
}

/// The answer for one name: the entry, or why it is unpriced.
pub fn lookup_json(table: &PriceTable, provider: Option<&str>, model: &str, at: At) -> Value {
    let r = table.explain(provider, model);
    let mut out = json!({
        "model": model,
        "provider": provider,
        "at": at.date(),
        "source": table.source(),
        "priced": r.entry.is_some(),
        "matched": r.matched,
        "tried": { "scopes": r.scopes, "names": r.tried },
    });
    if let Value::Object(map) = &mut out {
        match r.entry {
            Some(entry) => {
                map.insert("price".into(), entry_json(entry, at));
            }
            None => {
                map.insert(
                    "reason".into(),
                    json!(unpriced_reason(model, r.matched.as_deref())),
                );
            }
        }
    }
    out
}

fn unpriced_reason(model: &str, ambiguous: Option<&str>) -> String {
    if let Some(key) = ambiguous {
        return format!(
            "{key:?} names two entries of that provider with different prices in the \
             source; chainpulse does not pick one. Calls are counted in \
             chainpulse_llm_unpriced_calls_total, not as free. Add the model under \
             [pricing.models] or map it with [pricing.aliases]."
        );
    }
    format!(
        "no price entry is named {model:?}, nor any exact form of it (without routing \
         prefix, version tail, cloud region/vendor prefix or snapshot date); chainpulse \
         does not price a name as a similar model's. Calls are counted in \
         chainpulse_llm_unpriced_calls_total, not as free. Add it under \
         [pricing.models] or map it with [pricing.aliases]."
    )
}

/// Every entry, one line of current base rates each.
pub fn list_json(table: &PriceTable, at: At) -> Value {
    let models: Vec<Value> = table
        .iter()
        .map(|p| {
            json!({
                "entry": p.name(),
                "provider": p.provider(),
                "names": p.names(),
                "rates": p.rates_at(at).map_or(Value::Null, rates_json),
                "batch": !matches!(p.batch(), Batch::None),
            })
        })
        .collect();
    json!({
        "source": table.source(),
        "at": at.date(),
        "unit": "USD per million tokens",
        "count": models.len(),
        "models": models,
    })
}

fn rate_text(rate: Option<&Rate>) -> String {
    match rate {
        None => "-".to_string(),
        Some(r) => {
            let mut s = format!("{}", r.base());
            for (above, usd) in r.tiers() {
                s.push_str(&format!(" (>{}k input: {usd})", above / 1000));
            }
            s
        }
    }
}

fn rates_text(out: &mut String, indent: &str, set: &RateSet) {
    for (name, rate) in set.named() {
        if rate.is_some() {
            out.push_str(&format!("{indent}{name:<15} {}\n", rate_text(rate)));
        }
    }
}

/// `chainpulse prices MODEL`.
pub fn lookup_text(table: &PriceTable, provider: Option<&str>, model: &str, at: At) -> String {
    let r = table.explain(provider, model);
    let mut out = String::new();
    let Some(entry) = r.entry else {
        out.push_str(&format!("{model}: UNPRICED\n"));
        out.push_str(&format!(
            "  {}\n",
            unpriced_reason(model, r.matched.as_deref())
        ));
        out.push_str(&format!("  names tried: {}\n", r.tried.join(", ")));
        if !r.scopes.is_empty() {
            out.push_str(&format!(
                "  provider scopes tried: {}\n",
                r.scopes.join(", ")
            ));
        }
        out.push_str(&format!("  source: {}\n", table.source()));
        return out;
    };
    out.push_str(&format!(
        "{model} -> {} (provider {}{})\n",
        entry.name(),
        entry.provider(),
        entry
            .display_name()
            .map(|d| format!(", \"{d}\""))
            .unwrap_or_default()
    ));
    out.push_str(&format!(
        "  matched:  {}\n",
        r.matched.as_deref().unwrap_or("")
    ));
    out.push_str(&format!("  origin:   {}\n", entry.origin()));
    out.push_str(&format!("  source:   {}\n", table.source()));
    if entry.deprecated() {
        out.push_str("  deprecated by the provider\n");
    }
    out.push_str(&format!(
        "  rates at {} (USD per million tokens):\n",
        at.date()
    ));
    if let Some(set) = entry.rates_at(at) {
        rates_text(&mut out, "    ", set);
    }
    match entry.batch_rates_at(at) {
        Some(b) => {
            out.push_str("  batch:\n");
            rates_text(&mut out, "    ", &b);
        }
        None => out.push_str("  batch: no batch price; batch calls are charged in full\n"),
    }
    if entry.periods().len() > 1 {
        out.push_str("  history:\n");
        for p in entry.periods() {
            let when = match p.when {
                When::Always => "initially".to_string(),
                When::From(day) => format!("from {}", super::rates::format_day(day)),
                When::Daily(a, b) => format!("daily {}-{} UTC", hhmm(a), hhmm(b)),
            };
            out.push_str(&format!(
                "    {when}: input {}, output {}\n",
                rate_text(p.rates.input.as_ref()),
                rate_text(p.rates.output.as_ref())
            ));
        }
    }
    out.push_str(&format!("  names:    {}\n", entry.names().join(", ")));
    out
}

/// `chainpulse prices --list`.
pub fn list_text(table: &PriceTable, at: At) -> String {
    let mut out = format!(
        "# {} entries; {}; rates at {} in USD per million tokens\n",
        table.len(),
        table.source(),
        at.date()
    );
    out.push_str("# provider\tentry\tinput\toutput\tcache_read\tcache_write\tbatch\n");
    for p in table.iter() {
        let set = p.rates_at(at);
        let r = |f: fn(&RateSet) -> Option<&Rate>| rate_text(set.and_then(f));
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            p.provider(),
            p.name(),
            r(|s| s.input.as_ref()),
            r(|s| s.output.as_ref()),
            r(|s| s.cache_read.as_ref()),
            r(|s| s.cache_write.as_ref()),
            if matches!(p.batch(), Batch::None) {
                "-"
            } else {
                "yes"
            }
        ));
    }
    out
}
