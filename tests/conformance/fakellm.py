#!/usr/bin/env python3
"""fakellm: a scripted fake LLM provider for chainpulse's conformance suite (stdlib only, Python >= 3.9).

    python tests/conformance/fakellm.py --port 0 [--host 127.0.0.1] [--stats-file F]

prints `LISTENING <port>` as its first stdout line, then serves until killed (SIGTERM/SIGINT).

Endpoints (routed on the path SUFFIX, so any base-path prefix works: OPENAI_BASE_URL=http://127.0.0.1:P/v1 and
ANTHROPIC_BASE_URL=http://127.0.0.1:P both do):
  POST .../chat/completions   OpenAI Chat Completions (plain and SSE streaming)
  POST .../responses          OpenAI Responses API (plain and SSE streaming)
  POST .../embeddings         OpenAI embeddings (float or base64 encoding_format)
  POST .../messages           Anthropic Messages (plain and SSE streaming)
  GET  .../stats              JSON list of every call served so far (see "Stats" below)
  DELETE .../stats            forget the calls served so far (the stats file is not truncated)
  GET  .../models             a tiny OpenAI-style model list (some clients probe it)

Behaviour is scripted by markers in the text of the LAST USER MESSAGE (Chat: last message with role "user";
Responses: `input` when it is a string, else the last input item with role "user"; Anthropic: the last "user"
message that has text, i.e. not only tool_result blocks; embeddings: the last input string). Markers may appear
anywhere in the text:
  [[fail:429]] / [[fail:500]] / [[fail:400]]   that HTTP status with the provider's error JSON
      OpenAI:    {"error": {"message": .., "type": .., "code": .., "param": null}}
      Anthropic: {"type": "error", "error": {"type": .., "message": ..}}
      (any other 4xx/5xx code works too). Clients must use max_retries=0 so one failure is one call.
  [[usage:in=120,cached=32,out=40,reasoning=8,cache_write=0,cw5m=0,cw1h=0]]   usage returned (any subset;
      defaults in=100, cached=0, out=20, reasoning=0, cache_write=0). `in` is the TOTAL prompt tokens INCLUDING
      cached (OpenAI style); `out` includes reasoning. For Anthropic the server converts:
        input_tokens = in - cached - cache_write, cache_read_input_tokens = cached,
        cache_creation_input_tokens = cache_write (= cw5m + cw1h when either is given),
        cache_creation = {ephemeral_5m_input_tokens: cw5m, ephemeral_1h_input_tokens: cw1h}
        (when neither cw5m nor cw1h is given, cw5m = cache_write, as the real API reports the default 5-minute TTL).
  [[tool:NAME:{"json":"args"}]]   if the request offers tools and the conversation has no tool result yet, answer
      with a tool call to NAME with those args (OpenAI tool_calls / Responses function_call / Anthropic tool_use);
      several tool markers -> several parallel tool calls. After a tool result: plain text.
  [[text:...]]       the assistant text (default "ok")
  [[delay:ms]]       wait before the first byte / chunk
  [[chunkdelay:ms]]  wait between stream chunks (so TTFT is measurable)

Response `model`: the requested model plus a dated snapshot suffix: OpenAI `<model>-2024-07-18`, Anthropic
`<model>-20250219`, unless the name already ends in a date (YYYY-MM-DD or YYYYMMDD).

Streaming: Chat SSE chunks (role chunk, content or tool-call deltas, finish chunk, then a usage chunk with
`choices: []` ONLY when stream_options.include_usage is true, then `data: [DONE]`); Responses SSE events
(response.created, response.in_progress, response.output_item.added, response.content_part.added,
response.output_text.delta..., response.output_text.done, response.content_part.done, response.output_item.done,
response.completed with usage); Anthropic SSE (message_start with input usage (output_tokens 1), content_block_start,
ping, content_block_delta..., content_block_stop, message_delta with the cumulative usage as the real API sends it:
input_tokens, cache_creation_input_tokens, cache_read_input_tokens, output_tokens; message_stop).

Stats: each served call is a JSON object, kept for GET /stats and appended as one line (JSONL) to --stats-file:
  {"seq": 1, "endpoint": "chat.completions" | "responses" | "embeddings" | "messages", "path": "/v1/...",
   "model": <requested>, "response_model": <snapshot>, "stream": bool, "status": 200 | 429 | ...,
   "error_type": <provider error type> | null, "tool_calls": [names], "tools_offered": bool,
   "has_tool_result": bool, "usage": {"in":..,"cached":..,"out":..,"reasoning":..,"cache_write":..,"cw5m":..,
   "cw1h":..} | null (null when no usage was returned: failures, and chat streams without include_usage),
   "usage_wire": <the provider-shaped usage object sent> | null, "text": <assistant text> | null,
   "first_chunk_ms": <ms from request received to first body byte>, "markers": {...}, "t_start": <unix s>}
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPENAI_SNAPSHOT = "2024-07-18"
ANTHROPIC_SNAPSHOT = "20250219"
DATED = re.compile(r"(\d{4}-\d{2}-\d{2}|\d{8})$")
MARKER = re.compile(r"\[\[(fail|usage|text|delay|chunkdelay):(.*?)\]\]", re.S)
TOOL_MARKER = re.compile(r"\[\[tool:([^:\]]+):(.*?)\]\]", re.S)
USAGE_KEYS = ("in", "cached", "out", "reasoning", "cache_write", "cw5m", "cw1h")

OPENAI_ERRORS = {
    400: ("invalid_request_error", "invalid_value", "Invalid request (scripted by fakellm)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (scripted by fakellm)."),
    403: ("permission_denied", None, "Permission denied (scripted by fakellm)."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist (scripted by fakellm)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (scripted by fakellm)."),
    500: ("server_error", None, "The server had an error while processing your request (scripted by fakellm)."),
    503: ("server_error", None, "The engine is currently overloaded (scripted by fakellm)."),
}
ANTHROPIC_ERRORS = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error",
}


# ----------------------------------------------------------------------------------------------- scripting

def _content_text(content) -> str:
    """Text of a message `content`: a string, or a list of parts ({type:text|input_text|output_text, text})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str) and part.get("type") != "tool_result":
                out.append(part["text"])
        return "\n".join(out)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return ""


def parse_markers(text: str) -> dict:
    m: dict = {"fail": None, "usage": {}, "tools": [], "text": None, "delay": 0, "chunkdelay": 0}
    for kind, arg in MARKER.findall(text or ""):
        arg = arg.strip()
        if kind == "fail":
            m["fail"] = int(arg)
        elif kind == "usage":
            for item in arg.split(","):
                if "=" in item:
                    k, v = item.split("=", 1)
                    m["usage"][k.strip()] = int(v.strip())
        elif kind == "text":
            m["text"] = arg
        elif kind in ("delay", "chunkdelay"):
            m[kind] = int(float(arg))
    for name, args in TOOL_MARKER.findall(text or ""):
        args = args.strip() or "{}"
        try:
            parsed = json.loads(args)
        except ValueError:
            parsed = {"input": args}
        m["tools"].append((name.strip(), parsed))
    return m


def usage_from(markers: dict) -> dict:
    given = markers["usage"]
    u = {"in": 100, "cached": 0, "out": 20, "reasoning": 0, "cache_write": 0, "cw5m": 0, "cw1h": 0}
    u.update({k: v for k, v in given.items() if k in u})
    if "cw5m" in given or "cw1h" in given:
        if "cache_write" not in given:
            u["cache_write"] = u["cw5m"] + u["cw1h"]
    else:
        u["cw5m"] = u["cache_write"]
    return u


def snapshot(model: str, provider: str) -> str:
    model = model or "unknown"
    if DATED.search(model):
        return model
    return f"{model}-{OPENAI_SNAPSHOT if provider == 'openai' else ANTHROPIC_SNAPSHOT}"


def split_chunks(text: str) -> list[str]:
    """Stream pieces: words (with their following space); at least two pieces for texts of 2+ chars."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    if len(pieces) < 2 and len(text) >= 2:
        h = len(text) // 2
        pieces = [text[:h], text[h:]]
    return pieces or [text]


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def openai_chat_usage(u: dict) -> dict:
    return {
        "prompt_tokens": u["in"], "completion_tokens": u["out"], "total_tokens": u["in"] + u["out"],
        "prompt_tokens_details": {"cached_tokens": u["cached"], "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": u["reasoning"], "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def openai_responses_usage(u: dict) -> dict:
    return {
        "input_tokens": u["in"], "input_tokens_details": {"cached_tokens": u["cached"]},
        "output_tokens": u["out"], "output_tokens_details": {"reasoning_tokens": u["reasoning"]},
        "total_tokens": u["in"] + u["out"],
    }


def anthropic_usage(u: dict) -> dict:
    return {
        "input_tokens": max(0, u["in"] - u["cached"] - u["cache_write"]),
        "cache_creation_input_tokens": u["cache_write"],
        "cache_read_input_tokens": u["cached"],
        "cache_creation": {"ephemeral_5m_input_tokens": u["cw5m"], "ephemeral_1h_input_tokens": u["cw1h"]},
        "output_tokens": u["out"],
        "service_tier": "standard",
    }


# ----------------------------------------------------------------------------------------------- server

class Stats:
    def __init__(self, path: str | None):
        self.path = path
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        self.seq = 0

    def add(self, rec: dict) -> None:
        with self.lock:
            self.seq += 1
            rec["seq"] = self.seq
            self.calls.append(rec)
            if self.path:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.calls)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakellm/1"
    stats: Stats = None  # set in main

    def log_message(self, fmt, *args):  # quiet
        pass

    # -- plumbing
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16) if line else 0
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            import gzip
            data = gzip.decompress(data)
        return data

    def _send_json(self, status: int, obj, extra_headers: dict | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _start_stream(self, extra_headers: dict | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self._chunks_sent = 0

    def _sse(self, data: str, event: str | None = None) -> None:
        if self._chunks_sent and self._chunkdelay:
            time.sleep(self._chunkdelay / 1000.0)
        payload = (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
        raw = payload.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
        self.wfile.flush()
        if self._chunks_sent == 0:
            self._first_chunk_ms = (time.monotonic() - self._t0) * 1000.0
        self._chunks_sent += 1

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- HTTP verbs
    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/stats"):
            self._send_json(200, self.stats.snapshot())
        elif path.endswith("/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fakellm"}
                for m in ("gpt-4o-mini", "gpt-4o", "o4-mini", "text-embedding-3-small")]})
        elif path in ("", "/healthz"):
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error",
                                            "code": None, "param": None}})

    def do_DELETE(self):
        if self.path.split("?")[0].rstrip("/").endswith("/stats"):
            self.stats.reset()
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"error": "no route"})

    def do_POST(self):
        self._t0 = time.monotonic()
        self._first_chunk_ms = None
        self._chunkdelay = 0
        path = self.path.split("?")[0].rstrip("/")
        try:
            body = json.loads(self._read_body() or b"{}")
        except ValueError:
            self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error",
                                            "code": None, "param": None}})
            return
        if path.endswith("/chat/completions"):
            self._chat(body, path)
        elif path.endswith("/responses"):
            self._responses(body, path)
        elif path.endswith("/embeddings"):
            self._embeddings(body, path)
        elif path.endswith("/messages"):
            self._anthropic(body, path)
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error",
                                            "code": None, "param": None}})

    # -- shared
    # Every handler records its call BEFORE writing the response's last bytes (the JSON body, or a stream's final
    # event): a client that has its whole answer moves on to its next call at once, and that call, served by
    # another thread, must not be recorded first. (Recording after the last write let a streamed call land after
    # the app's next call in the record, once in a CI run.)
    def _record(self, endpoint: str, path: str, body: dict, markers: dict, status: int, *, stream: bool,
                provider: str, usage: dict | None = None, usage_wire=None, tool_calls=(), text=None,
                error_type=None, tools_offered=False, has_tool_result=False) -> None:
        if self._first_chunk_ms is None:
            self._first_chunk_ms = (time.monotonic() - self._t0) * 1000.0
        self.stats.add({
            "endpoint": endpoint, "path": path, "model": body.get("model"),
            "response_model": snapshot(body.get("model"), provider), "stream": stream, "status": status,
            "error_type": error_type, "tool_calls": list(tool_calls), "tools_offered": tools_offered,
            "has_tool_result": has_tool_result, "usage": usage, "usage_wire": usage_wire, "text": text,
            "first_chunk_ms": round(self._first_chunk_ms, 3),
            "markers": {k: v for k, v in markers.items() if k != "tools"} | {"tools": [n for n, _ in markers["tools"]]},
            "t_start": time.time(),
        })

    def _maybe_fail(self, endpoint, path, body, markers, provider, stream, **kw) -> bool:
        code = markers["fail"]
        if not code:
            return False
        if provider == "openai":
            etype, ecode, msg = OPENAI_ERRORS.get(code, ("server_error" if code >= 500 else "invalid_request_error",
                                                         None, f"Scripted failure {code} (fakellm)."))
            payload = {"error": {"message": msg, "type": etype, "param": None, "code": ecode}}
            headers = {"x-request-id": _id("req_"), "x-should-retry": "false"}
        else:
            etype = ANTHROPIC_ERRORS.get(code, "api_error" if code >= 500 else "invalid_request_error")
            payload = {"type": "error", "error": {"type": etype, "message": f"Scripted failure {code} (fakellm)."}}
            headers = {"request-id": _id("req_"), "x-should-retry": "false"}
        self._record(endpoint, path, body, markers, code, stream=stream, provider=provider, error_type=etype, **kw)
        self._send_json(code, payload, headers)
        return True

    # -- OpenAI chat completions
    def _chat(self, body: dict, path: str) -> None:
        messages = body.get("messages") or []
        last_user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
        markers = parse_markers(_content_text(last_user.get("content")) if last_user else "")
        stream = bool(body.get("stream"))
        tools_offered = bool(body.get("tools") or body.get("functions"))
        has_tool_result = any(isinstance(m, dict) and m.get("role") in ("tool", "function") for m in messages)
        kw = dict(tools_offered=tools_offered, has_tool_result=has_tool_result)
        if markers["delay"]:
            time.sleep(markers["delay"] / 1000.0)
        if self._maybe_fail("chat.completions", path, body, markers, "openai", stream, **kw):
            return
        self._chunkdelay = markers["chunkdelay"]
        u = usage_from(markers)
        calls = markers["tools"] if (tools_offered and not has_tool_result) else []
        text = None if calls else (markers["text"] if markers["text"] is not None else "ok")
        model = snapshot(body.get("model"), "openai")
        cid, created = _id("chatcmpl-"), int(time.time())
        tool_calls = [{"id": _id("call_"), "type": "function",
                       "function": {"name": n, "arguments": json.dumps(a)}} for n, a in calls]
        finish = "tool_calls" if calls else "stop"
        wire = openai_chat_usage(u)
        headers = {"x-request-id": _id("req_"), "openai-processing-ms": "1"}
        if not stream:
            msg = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            if tool_calls:
                msg["tool_calls"] = tool_calls
            self._record("chat.completions", path, body, markers, 200, stream=False, provider="openai", usage=u,
                         usage_wire=wire, tool_calls=[n for n, _ in calls], text=text, **kw)
            self._send_json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}],
                "usage": wire, "service_tier": "default", "system_fingerprint": "fp_fakellm"}, headers)
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta, finish_reason=None, choices=True, usage=None):
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "service_tier": "default", "system_fingerprint": "fp_fakellm",
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
                   if choices else []}
            if include_usage:
                obj["usage"] = usage
            return json.dumps(obj)

        self._start_stream(headers)
        if calls:
            self._sse(chunk({"role": "assistant", "content": None, "refusal": None}))
            for i, tc in enumerate(tool_calls):
                args = tc["function"]["arguments"]
                self._sse(chunk({"tool_calls": [{"index": i, "id": tc["id"], "type": "function",
                                                 "function": {"name": tc["function"]["name"], "arguments": ""}}]}))
                h = max(1, len(args) // 2)
                for piece in (args[:h], args[h:]):
                    if piece:
                        self._sse(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
        else:
            self._sse(chunk({"role": "assistant", "content": "", "refusal": None}))
            for piece in split_chunks(text):
                self._sse(chunk({"content": piece}))
        self._sse(chunk({}, finish_reason=finish))
        if include_usage:
            self._sse(chunk(None, choices=False, usage=wire))
        self._record("chat.completions", path, body, markers, 200, stream=True, provider="openai",
                     usage=u if include_usage else None, usage_wire=wire if include_usage else None,
                     tool_calls=[n for n, _ in calls], text=text, **kw)
        self._sse("[DONE]")
        self._end_stream()

    # -- OpenAI Responses
    def _responses(self, body: dict, path: str) -> None:
        inp = body.get("input")
        has_tool_result = False
        if isinstance(inp, str):
            text_in = inp
        else:
            items = inp if isinstance(inp, list) else []
            has_tool_result = any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in items)
            user = next((i for i in reversed(items) if isinstance(i, dict) and i.get("role") == "user"), None)
            if user is None and items:
                user = items[-1]
            text_in = _content_text(user.get("content")) if isinstance(user, dict) else (
                user if isinstance(user, str) else "")
        markers = parse_markers(text_in)
        stream = bool(body.get("stream"))
        tools_offered = bool(body.get("tools"))
        kw = dict(tools_offered=tools_offered, has_tool_result=has_tool_result)
        if markers["delay"]:
            time.sleep(markers["delay"] / 1000.0)
        if self._maybe_fail("responses", path, body, markers, "openai", stream, **kw):
            return
        self._chunkdelay = markers["chunkdelay"]
        u = usage_from(markers)
        calls = markers["tools"] if (tools_offered and not has_tool_result) else []
        text = None if calls else (markers["text"] if markers["text"] is not None else "ok")
        model = snapshot(body.get("model"), "openai")
        rid, created = _id("resp_"), int(time.time())
        wire = openai_responses_usage(u)
        if calls:
            output = [{"type": "function_call", "id": _id("fc_"), "call_id": _id("call_"), "name": n,
                       "arguments": json.dumps(a), "status": "completed"} for n, a in calls]
        else:
            output = [{"type": "message", "id": _id("msg_"), "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}]

        def response(status, out, usage):
            return {
                "id": rid, "object": "response", "created_at": created, "status": status, "background": False,
                "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
                "max_output_tokens": body.get("max_output_tokens"), "model": model, "output": out,
                "parallel_tool_calls": body.get("parallel_tool_calls", True), "previous_response_id": None,
                "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
                "service_tier": "default", "store": body.get("store", True),
                "temperature": body.get("temperature", 1.0), "text": {"format": {"type": "text"}},
                "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
                "top_p": body.get("top_p", 1.0), "truncation": "disabled", "usage": usage, "user": None,
                "metadata": body.get("metadata") or {},
            }

        headers = {"x-request-id": _id("req_")}
        if not stream:
            self._record("responses", path, body, markers, 200, stream=False, provider="openai", usage=u,
                         usage_wire=wire, tool_calls=[n for n, _ in calls], text=text, **kw)
            self._send_json(200, response("completed", output, wire), headers)
            return
        seq = [0]

        def ev(kind, **fields):
            obj = {"type": kind, "sequence_number": seq[0]} | fields
            seq[0] += 1
            self._sse(json.dumps(obj), event=kind)

        self._start_stream(headers)
        ev("response.created", response=response("in_progress", [], None))
        ev("response.in_progress", response=response("in_progress", [], None))
        for idx, item in enumerate(output):
            if item["type"] == "function_call":
                ev("response.output_item.added", output_index=idx, item=item | {"arguments": "",
                                                                                "status": "in_progress"})
                args = item["arguments"]
                h = max(1, len(args) // 2)
                for piece in (args[:h], args[h:]):
                    if piece:
                        ev("response.function_call_arguments.delta", item_id=item["id"], output_index=idx,
                           delta=piece)
                ev("response.function_call_arguments.done", item_id=item["id"], output_index=idx, arguments=args)
                ev("response.output_item.done", output_index=idx, item=item)
            else:
                ev("response.output_item.added", output_index=idx,
                   item=item | {"status": "in_progress", "content": []})
                empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                ev("response.content_part.added", item_id=item["id"], output_index=idx, content_index=0, part=empty)
                for piece in split_chunks(text):
                    ev("response.output_text.delta", item_id=item["id"], output_index=idx, content_index=0,
                       delta=piece, logprobs=[])
                ev("response.output_text.done", item_id=item["id"], output_index=idx, content_index=0, text=text,
                   logprobs=[])
                ev("response.content_part.done", item_id=item["id"], output_index=idx, content_index=0,
                   part=item["content"][0])
                ev("response.output_item.done", output_index=idx, item=item)
        self._record("responses", path, body, markers, 200, stream=True, provider="openai", usage=u,
                     usage_wire=wire, tool_calls=[n for n, _ in calls], text=text, **kw)
        ev("response.completed", response=response("completed", output, wire))
        self._end_stream()

    # -- OpenAI embeddings
    def _embeddings(self, body: dict, path: str) -> None:
        inp = body.get("input")
        inputs = inp if isinstance(inp, list) else [inp]
        last = next((x for x in reversed(inputs) if isinstance(x, str)), "")
        markers = parse_markers(last)
        if markers["delay"]:
            time.sleep(markers["delay"] / 1000.0)
        if self._maybe_fail("embeddings", path, body, markers, "openai", False):
            return
        u = usage_from(markers)
        u.update(out=0, reasoning=0, cached=0, cache_write=0, cw5m=0, cw1h=0)
        dims = int(body.get("dimensions") or 8)
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, _ in enumerate(inputs):
            vec = [round(((i + 1) * (j + 1) % 7) / 7.0, 6) for j in range(dims)]
            emb = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        wire = {"prompt_tokens": u["in"], "total_tokens": u["in"]}
        self._record("embeddings", path, body, markers, 200, stream=False, provider="openai", usage=u,
                     usage_wire=wire)
        self._send_json(200, {"object": "list", "data": data, "model": snapshot(body.get("model"), "openai"),
                              "usage": wire}, {"x-request-id": _id("req_")})

    # -- Anthropic messages
    def _anthropic(self, body: dict, path: str) -> None:
        messages = body.get("messages") or []

        def is_tool_result(block):
            return isinstance(block, dict) and block.get("type") == "tool_result"

        has_tool_result = any(isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), list)
                              and any(is_tool_result(b) for b in m["content"]) for m in messages)
        last_text = ""
        for m in reversed(messages):
            if isinstance(m, dict) and m.get("role") == "user":
                t = _content_text(m.get("content"))
                if t:
                    last_text = t
                    break
        markers = parse_markers(last_text)
        stream = bool(body.get("stream"))
        tools_offered = bool(body.get("tools"))
        kw = dict(tools_offered=tools_offered, has_tool_result=has_tool_result)
        if markers["delay"]:
            time.sleep(markers["delay"] / 1000.0)
        if self._maybe_fail("messages", path, body, markers, "anthropic", stream, **kw):
            return
        self._chunkdelay = markers["chunkdelay"]
        u = usage_from(markers)
        calls = markers["tools"] if (tools_offered and not has_tool_result) else []
        text = None if calls else (markers["text"] if markers["text"] is not None else "ok")
        model = snapshot(body.get("model"), "anthropic")
        mid = _id("msg_")
        wire = anthropic_usage(u)
        if calls:
            content = [{"type": "tool_use", "id": _id("toolu_"), "name": n, "input": a} for n, a in calls]
        else:
            content = [{"type": "text", "text": text}]
        stop = "tool_use" if calls else "end_turn"
        headers = {"request-id": _id("req_")}
        if not stream:
            self._record("messages", path, body, markers, 200, stream=False, provider="anthropic", usage=u,
                         usage_wire=wire, tool_calls=[n for n, _ in calls], text=text, **kw)
            self._send_json(200, {"id": mid, "type": "message", "role": "assistant", "model": model,
                                  "content": content, "stop_reason": stop, "stop_sequence": None, "usage": wire},
                            headers)
            return
        self._start_stream(headers)

        def ev(kind, **fields):
            self._sse(json.dumps({"type": kind} | fields), event=kind)

        start_usage = {k: v for k, v in wire.items()} | {"output_tokens": 1}
        ev("message_start", message={"id": mid, "type": "message", "role": "assistant", "model": model,
                                     "content": [], "stop_reason": None, "stop_sequence": None,
                                     "usage": start_usage})
        for idx, block in enumerate(content):
            if block["type"] == "tool_use":
                ev("content_block_start", index=idx, content_block=block | {"input": {}})
                if idx == 0:
                    ev("ping")
                args = json.dumps(block["input"])
                h = max(1, len(args) // 2)
                for piece in (args[:h], args[h:]):
                    if piece:
                        ev("content_block_delta", index=idx, delta={"type": "input_json_delta",
                                                                    "partial_json": piece})
            else:
                ev("content_block_start", index=idx, content_block={"type": "text", "text": ""})
                if idx == 0:
                    ev("ping")
                for piece in split_chunks(text):
                    ev("content_block_delta", index=idx, delta={"type": "text_delta", "text": piece})
            ev("content_block_stop", index=idx)
        # As the real API does (MessageDeltaUsage), message_delta repeats the CUMULATIVE usage, input included
        # (some clients, e.g. langchain-anthropic, read usage only from here).
        delta_usage = {k: wire[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                                            "output_tokens")}
        ev("message_delta", delta={"stop_reason": stop, "stop_sequence": None}, usage=delta_usage)
        self._record("messages", path, body, markers, 200, stream=True, provider="anthropic", usage=u,
                     usage_wire=wire, tool_calls=[n for n, _ in calls], text=text,
                     **kw)
        ev("message_stop")
        self._end_stream()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # a client that went away (e.g. closed a keep-alive connection)
        super().handle_error(request, client_address)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--stats-file", default=None)
    args = ap.parse_args(argv)
    Handler.stats = Stats(args.stats_file)
    srv = Server((args.host, args.port), Handler)
    print(f"LISTENING {srv.server_address[1]}", flush=True)
    import signal

    def _stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
