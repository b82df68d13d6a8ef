#!/usr/bin/env python3
"""Generate chainpulse's built-in price table from pydantic's genai-prices.

    scripts/gen-prices.py           # rewrite src/pricing/generated/prices.json
    scripts/gen-prices.py --check   # exit 1 if the committed file differs from
                                    # what the pinned source + overrides give

The source is the `genai-prices` package as published on PyPI, at the
version pinned below (its data is MIT-licensed, maintained, and carries dated
price history, long-context tiers and batch prices). The script installs that
exact version into a private virtualenv under target/ (nothing else is
touched) and re-runs itself there. Reviewed corrections live in
src/pricing/overrides.toml, one entry per correction, each with a reason.

To update prices: bump GENAI_PRICES_VERSION, run the script, review the diff
(and scripts/compare-litellm.py), commit.

What is taken, per model of every provider:
  * prices in USD per million tokens: input, output, cache_read,
    cache_write (Anthropic's 5-minute write), cache_write_1h, reasoning
    (where a provider prices reasoning output apart);
  * long-context tiers (the whole call is priced at the tier its total input
    reaches, as the providers bill);
  * the dated history (`from`): the price in force at a date is the last
    period whose `from` is on or before it; daily off-peak windows (`daily`,
    UTC seconds of day) as published by DeepSeek;
  * batch prices, per rate, as published (`batch`, with their own dates);
  * the names the model answers to, as exact names: genai-prices matches with
    prefixes and substrings; chainpulse does not guess, so every name is kept
    only if genai-prices itself resolves it to this model (first match in its
    ordered list), and suffixes are left to chainpulse's snapshot rules.
Models whose tokens are not priced per token (per request, per page, per
audio hour only) or that price non-text output without a text output price
are left out: chainpulse would otherwise charge them as free.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import zlib
from decimal import Decimal
from pathlib import Path

GENAI_PRICES_VERSION = "0.2.3"

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src/pricing/generated/prices.json"
OVERRIDES = ROOT / "src/pricing/overrides.toml"
VENV = ROOT / "target" / f"genai-prices-{GENAI_PRICES_VERSION}-venv"

# Providers that make the models they list: their names are priced without a
# provider hint. Every other provider (clouds, routers, inference hosts) is
# scoped: its price applies only when the call's provider or a routing prefix
# names it.
FIRST_PARTY = [
    "openai",
    "anthropic",
    "google",
    "mistral",
    "deepseek",
    "x-ai",
    "cohere",
    "voyageai",
    "moonshotai",
    "zhipuai",
    "minimax",
    "perplexity",
]

# genai-prices price key -> chainpulse rate name.
RATES = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
    "cache_write_1h_mtok": "cache_write_1h",
    "output_reasoning_mtok": "reasoning",
}


def ensure_source() -> None:
    """Re-exec inside a venv holding exactly the pinned genai-prices."""
    try:
        import genai_prices  # noqa: F401

        if genai_prices.__version__ == GENAI_PRICES_VERSION:
            return
    except ImportError:
        pass
    if os.environ.get("CHAINPULSE_GEN_PRICES_REEXEC"):
        sys.exit(f"genai-prices=={GENAI_PRICES_VERSION} is not importable in {sys.executable}")
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    have = subprocess.run(
        [str(py), "-c", "import genai_prices; print(genai_prices.__version__)"],
        capture_output=True,
        text=True,
    )
    if have.stdout.strip() != GENAI_PRICES_VERSION:
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             f"genai-prices=={GENAI_PRICES_VERSION}"],
            check=True,
        )
    env = dict(os.environ, CHAINPULSE_GEN_PRICES_REEXEC="1")
    # The running script (this one, or compare-litellm.py which imports it).
    script = os.path.abspath(sys.argv[0])
    os.execve(str(py), [str(py), script, *sys.argv[1:]], env)


def clause_names(clause) -> list[str]:
    """The literal names a match clause is built from (regex filters give none)."""
    from genai_prices import types as t

    if isinstance(clause, t.ClauseEquals):
        return [clause.equals]
    if isinstance(clause, t.ClauseStartsWith):
        return [clause.starts_with]
    if isinstance(clause, t.ClauseContains):
        return [clause.contains]
    if isinstance(clause, t.ClauseEndsWith):
        return [clause.ends_with]
    if isinstance(clause, (t.ClauseOr, t.ClauseAnd)):
        parts = clause.or_ if isinstance(clause, t.ClauseOr) else clause.and_
        out: list[str] = []
        for part in parts:
            out.extend(clause_names(part))
        return out
    return []


def num(d: Decimal):
    """Exact decimal text as a JSON number (int when integral)."""
    if d == d.to_integral_value():
        return int(d)
    return float(str(d.normalize()))


def rate(value):
    from genai_prices import types as t

    if isinstance(value, t.TieredPrices):
        return {"base": num(value.base), "tiers": [[tier.start, num(tier.price)] for tier in value.tiers]}
    return num(value)


def rates(price, partial: bool) -> dict | None:
    out = {}
    for key, name in RATES.items():
        value = price.__dict__.get(key)
        if value is not None:
            out[name] = rate(value)
    if partial:
        return out
    keys = {k for k, v in price.__dict__.items() if v is not None and not k.startswith("_")}
    if "input_mtok" not in keys:
        return None
    other_output = {k for k in keys if k.startswith("output_") and k not in RATES}
    if "output_mtok" not in keys and other_output:
        return None
    return out


def constraint(c) -> dict:
    from genai_prices import types as t

    if c is None:
        return {}
    if isinstance(c, t.StartDateConstraint):
        return {"from": c.start_date.isoformat()}
    if isinstance(c, t.TimeOfDateConstraint):

        def secs(x: dt.time) -> int:
            if x.tzinfo is not None:
                x = dt.datetime.combine(dt.date(1970, 1, 1), x).astimezone(dt.UTC).time()
            return x.hour * 3600 + x.minute * 60 + x.second

        return {"daily": [secs(c.start_time), secs(c.end_time)]}
    raise ValueError(f"unknown constraint {c!r}")


def load_overrides() -> tuple[list[dict], bytes]:
    import tomllib

    raw = OVERRIDES.read_bytes()
    data = tomllib.loads(raw.decode())
    entries = data.get("override", [])
    for e in entries:
        if not e.get("reason", "").strip():
            sys.exit(f"{OVERRIDES}: override {e} has no reason")
    return entries, raw


def generate() -> tuple[dict, list[str]]:
    from genai_prices.data import providers

    overrides, raw_overrides = load_overrides()
    notes: list[str] = []
    models = []
    skipped_unpriced = 0
    dropped_names = 0
    for provider in providers:
        for model in provider.models:
            conds = model.prices if isinstance(model.prices, list) else None
            periods = []
            ok = True
            for cp in conds or [None]:
                price = cp.prices if cp is not None else model.prices
                r = rates(price, partial=False)
                if r is None:
                    ok = False
                    break
                periods.append({**constraint(cp.constraint if cp else None), **r})
            if not ok:
                skipped_unpriced += 1
                continue
            batch = []
            for v in model.price_variants or []:
                if v.when == {"processing": "batch"}:
                    b = rates(v.prices, partial=True)
                    if b:
                        batch.append({**constraint(v.constraint), **b})
            candidates = [model.id, *clause_names(model.match)]
            names = []
            for n in candidates:
                n = n.strip().lower().rstrip("-")
                if not n or n in names:
                    continue
                # Keep a name only if genai-prices resolves it to this model.
                if provider._match_model(n) is not model:
                    dropped_names += 1
                    continue
                names.append(n)
            entry = {
                "provider": provider.id,
                "id": model.id,
                "name": model.name or model.id,
                "names": names,
                "prices": periods,
            }
            if batch:
                entry["batch"] = batch
            if model.deprecated:
                entry["deprecated"] = True
            models.append(entry)

    used = [False] * len(overrides)
    for i, o in enumerate(overrides):
        for entry in models:
            if entry["provider"] == o["provider"] and entry["id"] == o["model"]:
                used[i] = True
                for n in o.get("add_names", []):
                    if n.lower() not in entry["names"]:
                        entry["names"].append(n.lower())
                entry["names"] = [n for n in entry["names"] if n not in o.get("drop_names", [])]
                for period in entry["prices"]:
                    period.update(o.get("set", {}))
                if "prices" in o:
                    entry["prices"] = [dict(p) for p in o["prices"]]
                if o.get("drop"):
                    entry["drop"] = True
                entry.setdefault("overridden", []).append(o["reason"])
    models = [m for m in models if not m.pop("drop", False)]
    for o, u in zip(overrides, used):
        if not u:
            sys.exit(f"{OVERRIDES}: override for {o['provider']}/{o['model']} matches no model (stale?)")
    models = [m for m in models if m["names"]]

    # Names answered without a provider hint: those of first-party providers,
    # unless another first-party provider claims the same name and
    # genai-prices' own provider inference (its providers' model_match rules)
    # does not pick this one.
    from genai_prices.data_snapshot import get_snapshot

    snapshot = get_snapshot()
    claims: dict[str, set[str]] = {}
    for m in models:
        if m["provider"] in FIRST_PARTY:
            for n in m["names"]:
                claims.setdefault(n, set()).add(m["provider"])
    ambiguous = 0
    for m in models:
        if m["provider"] not in FIRST_PARTY:
            continue
        glob: list[str] = []
        for n in m["names"]:
            owners = claims[n]
            if len(owners) > 1:
                try:
                    inferred = snapshot.find_provider(n, None, None).id
                except LookupError:
                    inferred = None
                if inferred != m["provider"]:
                    ambiguous += 1
                    continue
            glob.append(n)
        m["global"] = True if glob == m["names"] else glob
    notes.append(f"{ambiguous} first-party names claimed by two providers, left to the provider hint")

    doc = {
        "source": {
            "name": "genai-prices",
            "version": GENAI_PRICES_VERSION,
            "license": "MIT",
            "generated": dt.date.today().isoformat(),
            "generator": "scripts/gen-prices.py",
            "overrides_crc32": zlib.crc32(raw_overrides),
        },
        "first_party": FIRST_PARTY,
        "models": models,
    }
    notes.append(
        f"{len(models)} models from {len({m['provider'] for m in models})} providers; "
        f"{skipped_unpriced} not priced per token (left out); {dropped_names} clause names "
        f"that genai-prices resolves to another model (left out)"
    )
    return doc, notes


def render(doc: dict) -> str:
    """One model per line: small diffs when prices change."""
    head = {k: v for k, v in doc.items() if k != "models"}
    lines = [json.dumps(m, separators=(",", ":"), sort_keys=False) for m in doc["models"]]
    body = json.dumps(head, separators=(",", ":"))[:-1]
    return body + ',"models":[\n' + ",\n".join(lines) + "\n]}\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if the committed file is not what the pinned source gives")
    args = ap.parse_args()
    ensure_source()
    doc, notes = generate()
    if args.check:
        try:
            committed = json.loads(OUT.read_text())
        except (OSError, ValueError) as e:
            print(f"gen-prices --check: cannot read {OUT}: {e}", file=sys.stderr)
            return 1
        doc["source"]["generated"] = committed.get("source", {}).get("generated")
        if render(doc) != OUT.read_text():
            print(
                f"gen-prices --check: {OUT.relative_to(ROOT)} differs from genai-prices "
                f"{GENAI_PRICES_VERSION} + {OVERRIDES.relative_to(ROOT)}; run scripts/gen-prices.py",
                file=sys.stderr,
            )
            return 1
        print(f"gen-prices --check: {OUT.relative_to(ROOT)} matches genai-prices {GENAI_PRICES_VERSION}")
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(doc))
    for n in notes:
        print(n)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
