"""pytest fixtures of the conformance suite (see harness.py's module doc for the whole API).

    def test_figures(conformance):           # a fresh fakellm + chainpulse (with tests/conformance/prices.toml)
        res = conformance.run("my_suite")     # run the app, wait until chainpulse has every span, scrape
        res.assert_figures(EXPECTED)          # /metrics AND the KPI API; one diff listing every mismatch

Fixtures: `conformance` (harness.Conformance, per test), `fakellm` (harness.Fakellm alone, per test),
`chainpulse_proc` (harness.Chainpulse alone, per test), `capture_sink` (harness.CaptureSink, per test),
`suite_venv(suite)` (skip-free check that the suite's venv / node_modules exists; fails with the setup command).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _chainpulse_binary() -> Path:
    binary = harness.chainpulse_bin()
    if not binary.is_file():
        pytest.fail(f"chainpulse binary not found at {binary} (build it with `cargo build`, or set CHAINPULSE_BIN)")
    return binary


@pytest.fixture
def conformance(tmp_path: Path):
    c = harness.Conformance(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def fakellm(tmp_path: Path):
    f = harness.Fakellm(tmp_path)
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture
def chainpulse_proc(tmp_path: Path):
    cp = harness.Chainpulse(tmp_path)
    try:
        cp.wait_ready()
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def capture_sink():
    s = harness.CaptureSink()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def suite_venv():
    """Call with a suite name: fails (never skips) with the setup command when its environment is missing."""

    def check(suite: str) -> None:
        d = harness.suite_dir(suite)
        if (d / "requirements.txt").is_file() and not (harness.VENVS / suite / "bin" / "python").exists():
            pytest.fail(f"{harness.VENVS / suite} missing: run scripts/setup-conformance.sh")
        if (d / "package.json").is_file() and not (d / "node_modules").is_dir():
            pytest.fail(f"{d / 'node_modules'} missing: run scripts/setup-conformance.sh")

    return check
