"""Fixtures for the chainpulse end-to-end tests: the chainpulse process and the reference app."""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "examples" / "langchain_app" / "app.py"
DEFAULT_BIN = REPO / "target" / "debug" / "chainpulse"
PROTO_DIR = REPO / "proto"
KPI_PROTO = "chainpulse/kpi.proto"


def chainpulse_bin() -> Path:
    return Path(os.environ.get("CHAINPULSE_BIN", str(DEFAULT_BIN)))


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (all held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Chainpulse:
    """A chainpulse collector on three loopback ports, its log in a file."""

    def __init__(self, binary: Path, workdir: Path, extra_env: dict[str, str] | None = None):
        self.binary = binary
        self.grpc_port, self.http_port, self.metrics_port = free_ports(3)
        self.log_path = workdir / "chainpulse.log"
        env = dict(os.environ)
        env.update({
            "CHAINPULSE_ASSEMBLY__TRACE_TIMEOUT_MS": "1000",
            "RUST_LOG": env.get("RUST_LOG", "info"),
        })
        env.update(extra_env or {})
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(binary),
             "--grpc-addr", f"127.0.0.1:{self.grpc_port}",
             "--http-addr", f"127.0.0.1:{self.http_port}",
             "--metrics-addr", f"127.0.0.1:{self.metrics_port}"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def grpc_target(self) -> str:
        """host:port of the OTLP/gRPC listener, which also serves chainpulse.kpi.v1.KpiService."""
        return f"127.0.0.1:{self.grpc_port}"

    def endpoint(self, protocol: str) -> str:
        port = self.grpc_port if protocol == "grpc" else self.http_port
        return f"http://127.0.0.1:{port}"

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-6000:]

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"chainpulse exited early with code {self.proc.returncode}; log:\n{self.log()}")
            try:
                r = requests.get(self.metrics_url + "/readyz", timeout=1)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except requests.RequestException as exc:
                last = repr(exc)
            time.sleep(0.1)
        pytest.fail(f"chainpulse not ready after {timeout}s ({last}); log:\n{self.log()}")

    def scrape(self) -> str:
        r = requests.get(self.metrics_url + "/metrics", timeout=5)
        r.raise_for_status()
        return r.text

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM; returns the exit code (None-safe: kills and fails if it does not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._log.close()
                pytest.fail(f"chainpulse did not exit within {timeout}s of SIGTERM; log:\n{self.log()}")
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._log.closed:
            self._log.close()


@pytest.fixture
def chainpulse(tmp_path: Path):
    binary = chainpulse_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"chainpulse binary not found at {binary} (build it with `cargo build`, or set CHAINPULSE_BIN)")
    cp = Chainpulse(binary, tmp_path)
    try:
        cp.wait_ready()
        yield cp
    finally:
        cp.kill()


@pytest.fixture(scope="session", autouse=True)
def _python_deps() -> None:
    try:
        import langchain_core  # noqa: F401
        import openinference.instrumentation.langchain  # noqa: F401
        import opentelemetry.instrumentation.langchain  # noqa: F401
        import langsmith  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"{sys.executable} lacks the app's packages ({exc}); run scripts/setup-python.sh and use "
                    f".venv/bin/python -m pytest tests/e2e")


def run_app(endpoint: str, instrumentation: str, requests_n: int, *, stream: bool = False, fail_every: int = 3,
            protocol: str = "http", compression: str = "none", shape: str = "rag",
            timeout: float = 120.0) -> dict[str, Any]:
    """Run examples/langchain_app/app.py with this interpreter; return its JSON summary line."""
    cmd = [sys.executable, str(APP), "--instrumentation", instrumentation, "--endpoint", endpoint,
           "--requests", str(requests_n), "--fail-every", str(fail_every), "--protocol", protocol,
           "--compression", compression, "--shape", shape]
    if stream:
        cmd.append("--stream")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LANGSMITH_", "LANGCHAIN_"))}
    env["PYTHONWARNINGS"] = "ignore"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(APP.parent))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"app failed (rc={proc.returncode}): {' '.join(cmd)}\nstdout:\n{proc.stdout[-3000:]}\n"
                    f"stderr:\n{proc.stderr[-5000:]}")
    return json.loads(lines[-1])


@pytest.fixture(scope="session")
def kpi_proto(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """proto/chainpulse/kpi.proto compiled now with grpc_tools.protoc; the generated modules `pb2` (messages)
    and `pb2_grpc` (KpiServiceStub), imported from a temp dir."""
    from grpc_tools import protoc
    import grpc_tools

    out = tmp_path_factory.mktemp("kpi_proto")
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = ["grpc_tools.protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--python_out={out}",
            f"--grpc_python_out={out}", str(PROTO_DIR / KPI_PROTO)]
    rc = protoc.main(args)
    if rc != 0:
        pytest.fail(f"protoc failed (rc={rc}): {' '.join(args)}")
    # The generated kpi_pb2_grpc imports `chainpulse.kpi_pb2`: `out` goes on sys.path, `chainpulse/` is a
    # namespace package there.
    sys.path.insert(0, str(out))
    try:
        pb2 = importlib.import_module("chainpulse.kpi_pb2")
        pb2_grpc = importlib.import_module("chainpulse.kpi_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return SimpleNamespace(pb2=pb2, pb2_grpc=pb2_grpc)


@pytest.fixture
def kpi_grpc(chainpulse: Chainpulse, kpi_proto: SimpleNamespace):
    """A KpiServiceStub on chainpulse's OTLP/gRPC port (proxies off). The channel stays open until the test
    ends (so across chainpulse.terminate()); `close()` closes it earlier."""
    import grpc

    channel = grpc.insecure_channel(chainpulse.grpc_target, options=[("grpc.enable_http_proxy", 0)])
    client = SimpleNamespace(stub=kpi_proto.pb2_grpc.KpiServiceStub(channel), pb2=kpi_proto.pb2,
                             grpc=grpc, close=channel.close)
    try:
        yield client
    finally:
        channel.close()
