#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/seeds/ from the project's
real captures (run from the repository root; the wal_reader seeds come from
`cargo test --test fuzz_regressions -- --ignored write_wal_seeds`).

Each pipeline seed is one action byte (0x0f: sweep, drain, render /metrics,
build the KPI answers) followed by one export request as the capture holds it.
"""
import json
import pathlib
import re

root = pathlib.Path(__file__).resolve().parent.parent
seeds = root / "fuzz" / "seeds"
ACTIONS = b"\x0f"

for name in ["langchain-openinference-stream", "langchain-langsmith-stream", "langchain-openllmetry-stream"]:
    pb = (root / "tests" / "fixtures" / f"{name}.pb").read_bytes()
    (seeds / "otlp_protobuf" / f"{name}.bin").write_bytes(ACTIONS + pb)

for name in ["openlit_openai", "pydantic_ai", "openai_agents", "langfuse_exporter"]:
    requests = json.loads((root / "tests" / "fixtures" / "conformance" / f"{name}.json").read_text())
    smallest = min(requests, key=lambda r: len(json.dumps(r)))
    largest = max(requests, key=lambda r: len(json.dumps(r)))
    for tag, req in [("small", smallest), ("large", largest)]:
        body = json.dumps(req, separators=(",", ":")).encode()
        (seeds / "otlp_json" / f"{name}-{tag}.bin").write_bytes(ACTIONS + body)

readme = (root / "README.md").read_text()
for i, block in enumerate(re.findall(r"```toml\n(.*?)```", readme, re.S)):
    (seeds / "config" / f"readme-{i:02}.toml").write_text(block)
