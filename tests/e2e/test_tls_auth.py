"""TLS and bearer-token auth with the official Python OTel SDK exporters (issue 13, deliver 8).

chainpulse (the release or debug binary) runs with TLS on the OTLP listeners (a throwaway CA made with the
openssl CLI), a bearer token from `${env:…}` on every listener and another one for the metrics port. The SDK's
gRPC and HTTP/protobuf exporters are configured the standard way, `OTEL_EXPORTER_OTLP_CERTIFICATE` and
`OTEL_EXPORTER_OTLP_HEADERS`: with the token the export succeeds and the spans reach /metrics; without it the
exporter fails, and a plain gRPC / HTTP client shows what it was told (UNAUTHENTICATED / 401 + challenge).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc
import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import Chainpulse, chainpulse_bin

TOKEN = "e2e-ingest-t0ken-71f3"
METRICS_TOKEN = "e2e-scrape-t0ken-02aa"


def make_pki(d: Path) -> dict[str, Path]:
    """A CA and a server certificate for localhost / 127.0.0.1, with the openssl CLI."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=chainpulse test CA", "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "tls.key", "-out", "tls.csr")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "ext.cnf", "-out", "tls.crt")
    return {"ca": d / "ca.crt", "cert": d / "tls.crt", "key": d / "tls.key"}


@pytest.fixture
def secured(tmp_path: Path):
    pki = make_pki(tmp_path)
    config = tmp_path / "chainpulse.toml"
    config.write_text(
        "[tls]\n"
        f"cert_file = \"{pki['cert']}\"\n"
        f"key_file = \"{pki['key']}\"\n"
        "listeners = [\"grpc\", \"http\"]\n"
        "[auth]\n"
        "bearer_token = \"${env:E2E_CHAINPULSE_TOKEN}\"\n"
        f"metrics_bearer_token = \"{METRICS_TOKEN}\"\n"
    )
    cp = Chainpulse(chainpulse_bin(), tmp_path, extra_env={
        "CHAINPULSE_CONFIG": str(config),
        "E2E_CHAINPULSE_TOKEN": TOKEN,
    })
    try:
        cp.wait_ready()  # /readyz stays open without the token
        yield cp, pki
    finally:
        cp.kill()


def spans(service: str):
    """Two finished spans of one chain request (workflow root + LLM call), from the real SDK."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("e2e-tls")
    with tracer.start_as_current_span("answer", attributes={
        "gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": "answer"}):
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5}):
            pass
    return memory.get_finished_spans()


def exporter(protocol: str, cp: Chainpulse, monkeypatch: pytest.MonkeyPatch, ca: Path, token: str | None):
    # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on some CI machines) override a requests session's `verify`,
    # and so the HTTP exporter's OTEL_EXPORTER_OTLP_CERTIFICATE (psf/requests#3829): out of the way here.
    for k in list(os.environ):
        if k.startswith("OTEL_") or k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ca))
    if token is not None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{token}")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter(endpoint=f"https://localhost:{cp.grpc_port}", timeout=5)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(endpoint=f"https://localhost:{cp.http_port}/v1/traces", timeout=5)


def scrape(cp: Chainpulse, token: str | None = METRICS_TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(cp.metrics_url + "/metrics", headers=headers, timeout=5)


def metric(text: str, name: str, *needles: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(n in line for n in needles):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_sdk_exporters_over_tls_need_the_token(secured, monkeypatch, protocol):
    cp, pki = secured
    listener = "grpc" if protocol == "grpc" else "http"

    refused = exporter(protocol, cp, monkeypatch, pki["ca"], token=None)
    assert refused.export(spans("anon-app")) == SpanExportResult.FAILURE
    refused.shutdown()
    wrong = exporter(protocol, cp, monkeypatch, pki["ca"], token="not-the-token")
    assert wrong.export(spans("anon-app")) == SpanExportResult.FAILURE
    wrong.shutdown()

    accepted = exporter(protocol, cp, monkeypatch, pki["ca"], token=TOKEN)
    assert accepted.export(spans("tls-app")) == SpanExportResult.SUCCESS
    accepted.shutdown()

    text = ""
    for _ in range(50):
        text = scrape(cp).text
        if metric(text, "chainpulse_requests_total", 'service="tls-app"') >= 1:
            break
    assert metric(text, "chainpulse_requests_total", 'service="tls-app"', 'chain="answer"') == 1
    assert metric(text, "chainpulse_requests_total", 'service="anon-app"') == 0
    assert metric(text, "chainpulse_auth_refused_total", f'listener="{listener}"', 'reason="missing"') == 1
    assert metric(text, "chainpulse_auth_refused_total", f'listener="{listener}"', 'reason="wrong"') == 1


def test_refusals_reach_the_client(secured):
    cp, pki = secured
    request = trace_service_pb2.ExportTraceServiceRequest()

    # gRPC over TLS without the token: UNAUTHENTICATED, with the reason.
    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    with grpc.secure_channel(f"localhost:{cp.grpc_port}", creds) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Export(request, timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "Authorization: Bearer" in info.value.details()
        stub.Export(request, timeout=5, metadata=[("authorization", f"Bearer {TOKEN}")])

    # OTLP/HTTP over TLS: 401 with the challenge and a JSON google.rpc.Status.
    r = requests.post(f"https://localhost:{cp.http_port}/v1/traces", data=b"{}", verify=str(pki["ca"]),
                      headers={"Content-Type": "application/json", "Authorization": "Bearer wrong"}, timeout=5)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json() == {"code": 16, "message": "the bearer token is not valid"}

    # The metrics port: plaintext here, the metrics token (not the ingest one), probes open.
    assert scrape(cp, token=None).status_code == 401
    assert scrape(cp, token=TOKEN).status_code == 401
    assert scrape(cp).status_code == 200
    assert requests.get(cp.metrics_url + "/healthz", timeout=5).status_code == 200
