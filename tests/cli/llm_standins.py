"""Local stand-ins for the LLM providers' HTTP APIs (no real provider can be reached or run here).

Each :class:`StandIn` listens on 127.0.0.1 and speaks one provider's documented wire format, so that the
provider's real client library (pointed at it through its base-URL option) parses the answer as it would the
real service's:

* openai — ``POST /v1/chat/completions`` → a ``chat.completion`` object (``choices[0].message.content``);
* anthropic — ``POST /v1/messages`` → a ``message`` object (``content[0].text``);
* gemini — ``POST /{version}/models/{model}:generateContent`` → ``candidates[0].content.parts[0].text``;
* ollama — ``POST /api/chat`` (``stream: false``) → ``message.content`` with ``done: true``.

It records every request (path, headers, JSON body) and answers from a script: queued failures first (an
HTTP status, or a stall longer than the client's timeout), then the analysis reply (JSON text) or, when the
system message asks for a technical writer, the PERSONA.md reply.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

PROVIDERS = ("openai", "anthropic", "gemini", "ollama")

PERSONA_MARKDOWN = """# flask

## Overview

Written by the stand-in model: the shop's order API.

## Operational Notes

*Nothing yet.*
"""


@dataclass
class Seen:
    """One request as the stand-in received it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), "")

    def text(self) -> str:
        return json.dumps(self.body)


@dataclass
class Script:
    """What the stand-in answers."""

    analysis: str = '{"description": "An order API for the shop."}'
    """The reply text to an analysis question."""
    persona: str = PERSONA_MARKDOWN
    """The reply text to a PERSONA.md question."""
    failures: list[int | str] = field(default_factory=list)
    """Answered first, one per request: an HTTP status, ``"stall"`` (no answer for
    :data:`STALL_S`) or ``"garbage"`` (a well-formed API answer whose text is not what was asked)."""


STALL_S = 3.0
"""How long a stalled answer waits (longer than the short client timeouts the tests set)."""


def _is_persona(provider: str, body: dict[str, Any]) -> bool:
    return "technical writer" in json.dumps(body)


def _answer(provider: str, model: str, text: str) -> dict[str, Any]:
    if provider == "openai":
        return {
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    if provider == "anthropic":
        return {
            "id": "msg_standin",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    if provider == "gemini":
        return {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
            "modelVersion": model,
        }
    return {
        "model": model,
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": text},
        "done": True,
        "done_reason": "stop",
    }


class StandIn:
    """One provider's API on 127.0.0.1 (see the module's docstring)."""

    def __init__(self, provider: str, script: Script | None = None) -> None:
        self.provider = provider
        self.script = script or Script()
        self.seen: list[Seen] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                stand_in.seen.append(Seen(self.path, dict(self.headers.items()), body))
                status, doc = stand_in._reply(self.path, body)
                if status == 0:
                    return
                data = json.dumps(doc).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a stall it timed out on)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        """What the provider's library takes as its base URL (OpenAI's includes ``/v1``)."""
        return self.root + "/v1" if self.provider == "openai" else self.root

    def _reply(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        model = body.get("model") or path.rsplit("/models/", 1)[-1].split(":", 1)[0]
        if self.script.failures:
            failure = self.script.failures.pop(0)
            if failure == "stall":
                time.sleep(STALL_S)
                return 0, {}
            if failure == "garbage":
                return 200, _answer(self.provider, model, "I am sorry, I cannot help with that.")
            return int(failure), {"error": {"message": f"stand-in failure {failure}", "type": "server_error"}}
        text = self.script.persona if _is_persona(self.provider, body) else self.script.analysis
        return 200, _answer(self.provider, model, text)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
