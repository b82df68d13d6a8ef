#!/usr/bin/env python3
"""Compare chainpulse's built-in prices with litellm's price file.

    scripts/compare-litellm.py            # print the summary, write the report
                                          # and the name test cases

A second, independent source: `model_prices_and_context_window_backup.json`
as shipped inside the `litellm` wheel on PyPI (pinned below; downloaded with
`pip download --no-deps`, never installed). For every built-in entry of the
major providers, the litellm entry of the same name and provider is compared
rate by rate (input, output, cache read, cache write, 1-hour cache write,
batch input/output, the >200k-token tier). Differences above 1 % are listed
in docs/pricing-vs-litellm.md with an explanation from EXPLAINED below, or
as UNEXPLAINED (the script exits 1 if any is).

It also writes src/pricing/generated/name_cases.json: real model names from
litellm's file, each with the entry genai-prices itself resolves it to (or
none); the Rust test `real_names_resolve_to_their_own_entry_or_are_unpriced`
checks chainpulse never resolves one to a different entry.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

LITELLM_VERSION = "1.110.2"

ROOT = Path(__file__).resolve().parent.parent
PRICES = ROOT / "src/pricing/generated/prices.json"
REPORT = ROOT / "docs/pricing-vs-litellm.md"
CASES = ROOT / "src/pricing/generated/name_cases.json"
CACHE = ROOT / "target" / f"litellm-{LITELLM_VERSION}"

# genai-prices provider -> (litellm_provider values, litellm key prefixes).
PROVIDERS = {
    "openai": ({"openai", "text-completion-openai"}, [""]),
    "anthropic": ({"anthropic"}, [""]),
    "google": ({"gemini", "vertex_ai-language-models"}, ["", "gemini/"]),
    "mistral": ({"mistral"}, ["mistral/"]),
    "deepseek": ({"deepseek"}, ["deepseek/"]),
    "x-ai": ({"xai"}, ["xai/"]),
    "cohere": ({"cohere", "cohere_chat"}, [""]),
    "aws": ({"bedrock", "bedrock_converse"}, ["", "bedrock/"]),
    "azure": ({"azure"}, ["azure/"]),
    "groq": ({"groq"}, ["groq/"]),
    "together": ({"together_ai"}, ["together_ai/"]),
}

FIELDS = [
    ("input", "input_cost_per_token"),
    ("output", "output_cost_per_token"),
    ("cache_read", "cache_read_input_token_cost"),
    ("cache_write", "cache_creation_input_token_cost"),
    ("cache_write_1h", "cache_creation_input_token_cost_above_1hr"),
    ("batch.input", "input_cost_per_token_batches"),
    ("batch.output", "output_cost_per_token_batches"),
    ("tier.input", "input_cost_per_token_above_200k_tokens"),
    ("tier.output", "output_cost_per_token_above_200k_tokens"),
]

# Reviewed differences: (provider, entry regex, rate regex, why). The first
# that matches explains a difference. Each was checked against the
# providers' pricing pages as cited by the sources' own comments.
EXPLAINED: list[tuple[str, str, str, str]] = [
    ("aws", r"regional\.", r".*",
     "Bedrock bills regional (geographic / in-region) endpoints of Claude 4.5+ and the "
     "newer OpenAI models 10 % above the global cross-region profile; genai-prices prices "
     "`anthropic.*`, `us.*`, `eu.*`... at the regional rate (chainpulse prices `global.*` "
     "separately), litellm lists the global rate for the un-prefixed id"),
    ("azure", r"^(ada|text-embedding-3-(small|large))$", r"input",
     "litellm lists Azure's regional (data zone) deployment, 10 % above the global "
     "deployment price genai-prices and OpenAI list"),
    ("mistral", r"^mistral-medium-3-1$", r".*",
     "litellm's `mistral/mistral-medium` carries mistral-medium-latest's price since "
     "2026-06-16 ($1.50/$7.50); Medium 3/3.1 (`mistral-medium`, `-2505`, `-2508`) keep "
     "$0.40/$2 per Mistral's model card cited by genai-prices; chainpulse has "
     "mistral-medium-latest with that dated change"),
    ("mistral", r"^mistral-nemo$", r".*",
     "Mistral cut Nemo to $0.15/$0.15 in September 2024; litellm's `open-mistral-nemo` "
     "still has the launch price"),
    ("openai", r"^gpt-4o-mini-tts$", r"output",
     "the model outputs audio at $12 per M audio tokens (litellm's "
     "output_cost_per_audio_token is also 12); litellm's output_cost_per_token 10 is a "
     "text-output price the model never bills"),
    ("x-ai", r"^grok-code-fast-1$", r"input|output|cache_read",
     "xAI's launch price (2025-08-26) is $0.20 input, $1.50 output, $0.02 cached input, "
     "as genai-prices has it and a third source (the xAI model card quoted by the "
     "grok-api-mcp project) confirms; no other source found has litellm's $1/$2/$0.20"),
    ("groq", r"gpt-oss-safeguard-20b", r"cache_read",
     "rounding: Groq's cache read is half of $0.075, $0.0375; litellm stores 0.037"),
]


def explain(provider: str, entry: dict, field: str, lit_value: float, today: str) -> str | None:
    import re

    for prov, eid, f, why in EXPLAINED:
        if prov == provider and re.search(eid, entry["id"]) and re.fullmatch(f, field):
            return why
    # litellm has the price of another of the entry's periods.
    rate = field.split(".")[-1]
    for p in entry["prices"]:
        if rate in p and field == rate and base(p[rate]) == lit_value:
            if "daily" in p:
                a, b = p["daily"]
                return (f"DeepSeek bills a daytime and an off-peak price; litellm lists the daytime "
                        f"price ({a // 3600:02}:{a % 3600 // 60:02}-{b // 3600:02}:{b % 3600 // 60:02} UTC), "
                        f"which chainpulse charges in that window, the off-peak one outside it")
            if p.get("from", "") <= today:
                return (f"litellm lists the price before the change of "
                        f"{next((q['from'] for q in entry['prices'] if q.get('from', '') > p.get('from', '') and q.get('from', '') <= today), '?')}"
                        f" recorded by genai-prices; chainpulse prices each span at its date")
    return None


def load_gen_prices():
    spec = importlib.util.spec_from_file_location("gen_prices", ROOT / "scripts/gen-prices.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def litellm_prices() -> dict:
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = list(CACHE.glob("litellm-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
             f"litellm=={LITELLM_VERSION}", "-d", str(CACHE)],
            check=True,
        )
        wheels = list(CACHE.glob("litellm-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        return json.loads(z.read("litellm/model_prices_and_context_window_backup.json"))


def current(entry: dict, today: str) -> dict:
    """Rates in force today (dated periods only; daily windows ignored)."""
    chosen = entry["prices"][0]
    for p in entry["prices"]:
        if p.get("from") and p["from"] <= today:
            chosen = p
    return chosen


def base(v):
    return v["base"] if isinstance(v, dict) else v


def tier(v):
    if isinstance(v, dict) and v["tiers"]:
        for start, price in v["tiers"]:
            if start == 200000:
                return price
    return None


def our_fields(entry: dict, today: str) -> dict:
    p = current(entry, today)
    out = {}
    for f in ("input", "output", "cache_read", "cache_write", "cache_write_1h"):
        if f in p:
            out[f] = base(p[f])
    for f in ("input", "output"):
        if f in p and tier(p[f]) is not None:
            out[f"tier.{f}"] = tier(p[f])
    batches = entry.get("batch", [])
    if batches:
        b = batches[-1]
        for f in ("input", "output"):
            if f in b:
                out[f"batch.{f}"] = base(b[f])
    return out


def compare(ours: dict, theirs: dict) -> tuple[list, int, int]:
    today = dt.date.today().isoformat()
    rows = []
    pairs = 0
    fields_compared = 0
    for entry in ours["models"]:
        prov = entry["provider"]
        if prov not in PROVIDERS:
            continue
        lprov, prefixes = PROVIDERS[prov]
        match = None
        for name in [entry["id"], *entry["names"]]:
            for pre in prefixes:
                cand = theirs.get(pre + name)
                if cand and cand.get("litellm_provider") in lprov:
                    match = (pre + name, cand)
                    break
            if match:
                break
        if not match:
            continue
        pairs += 1
        key, lit = match
        mine = our_fields(entry, today)
        for field, lkey in FIELDS:
            if field not in mine or not isinstance(lit.get(lkey), (int, float)):
                continue
            fields_compared += 1
            a = mine[field]
            b = round(lit[lkey] * 1e6, 9)
            if a == b:
                continue
            diff = (a - b) / b * 100 if b else float("inf")
            if abs(diff) <= 1:
                continue
            rows.append((prov, entry["id"], key, field, a, b, diff, explain(prov, entry, field, b, today)))
    return rows, pairs, fields_compared


def name_cases(theirs: dict, gp) -> list:
    """Real names (litellm keys of the major providers) and what genai-prices resolves them to."""
    from genai_prices.data import providers
    from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

    snapshot = get_snapshot()

    owner = {id(m): p.id for p in providers for m in p.models}
    cases = []
    for key, v in sorted(theirs.items()):
        lprov = v.get("litellm_provider")
        prov = next((p for p, (lp, _) in PROVIDERS.items() if lprov in lp), None)
        if prov is None or v.get("mode") not in ("chat", "completion", "embedding", "responses"):
            continue
        name = key
        for pre in PROVIDERS[prov][1]:
            if pre and name.startswith(pre):
                name = name[len(pre):]
        provider = find_provider_by_id(providers, prov)
        model = provider.find_model(name, all_providers=providers) if provider else None
        expected = [f"{owner[id(model)]}/{model.id}"] if model else []
        # The same model at its maker's price: genai-prices on the bare
        # model name (route, Bedrock region/vendor prefix and version tail,
        # Vertex @version removed), with the provider inferred from the name.
        bare = name.rsplit("/", 1)[-1]
        bare = re.sub(r"^((us|eu|apac|global|jp|au|ca|in|us-gov)\.)?[a-z0-9-]+\.", "", bare)
        bare = re.sub(r"(-v\d+)?(:\d+|@[0-9a-z]+)$", "", bare)
        try:
            p2, m2 = snapshot.find_provider_model(bare, None, None, None)
            if f"{p2.id}/{m2.id}" not in expected:
                expected.append(f"{owner[id(m2)]}/{m2.id}")
        except LookupError:
            pass
        cases.append([prov, name, expected])
    return cases


def main() -> int:
    gp = load_gen_prices()
    theirs = litellm_prices()
    gp.ensure_source()  # re-execs into the pinned genai-prices venv if needed
    ours = json.loads(PRICES.read_text())
    rows, pairs, fields_compared = compare(ours, theirs)
    unexplained = [r for r in rows if r[7] is None]
    cases = name_cases(theirs, gp)
    CASES.write_text(
        "[\n" + ",\n".join(json.dumps(c, separators=(",", ":")) for c in cases) + "\n]\n"
    )

    src = ours["source"]
    lines = [
        "# Built-in prices vs litellm",
        "",
        f"Generated by `scripts/compare-litellm.py`: chainpulse's built-in table "
        f"({src['name']} {src['version']}) against litellm {LITELLM_VERSION}'s "
        f"`model_prices_and_context_window_backup.json`, rates in force on {dt.date.today().isoformat()}.",
        "",
        f"- entries compared: {pairs} (same name, same provider)",
        f"- rates compared: {fields_compared}",
        f"- differences above 1 %: {len(rows)} ({len(rows) - len(unexplained)} explained, "
        f"{len(unexplained)} unexplained)",
        "",
        "| provider | entry | litellm key | rate | chainpulse | litellm | diff | explanation |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for prov, eid, key, field, a, b, diff, why in rows:
        lines.append(
            f"| {prov} | `{eid}` | `{key}` | {field} | {a:g} | {b:g} | {diff:+.1f} % | {why or 'UNEXPLAINED'} |"
        )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:7]))
    print(f"{len(cases)} real names written to {CASES.relative_to(ROOT)}")
    print(f"report: {REPORT.relative_to(ROOT)}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
