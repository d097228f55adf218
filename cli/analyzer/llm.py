"""The optional LLM step: a pluggable provider, **off by default**.

With no provider the analysis is complete and deterministic. A provider may only *add* prose (the
description) and suggest a type where neither the app config nor the analysis decided one; anything it
returns is validated, and any failure is a warning, never an error. The one built-in provider speaks the
OpenAI-compatible chat-completions API (OpenAI, Ollama's ``/v1``, vLLM, LiteLLM…).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from cli.analyzer.model import AppAnalysis

APP_TYPES = ("api", "web", "worker", "cron", "daemon")
_DEFAULT_BASE = {"openai": "https://api.openai.com/v1", "ollama": "http://localhost:11434/v1"}
_DEFAULT_MODEL = {"openai": "gpt-4o-mini", "ollama": "llama3"}


class Provider(Protocol):
    name: str

    def suggest(self, analysis: AppAnalysis) -> dict[str, Any]:
        """``{"description": str, "type": str}`` (either optional). Raises on failure."""
        ...


@dataclass
class OpenAICompatible:
    name: str
    base_url: str
    model: str
    api_key: str = ""
    timeout_s: float = 60.0

    def suggest(self, analysis: AppAnalysis) -> dict[str, Any]:
        summary = msgspec.json.encode(analysis).decode()
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {
                    "role": "system",
                    "content": "You are an expert DevOps engineer. Answer with one JSON object.",
                },
                {
                    "role": "user",
                    "content": "Describe this containerized application in one paragraph for its operators, "
                    'and classify it. Reply as {"description": "...", '
                    '"type": "api|web|worker|cron|daemon"}.\n' + summary,
                },
            ],
        }
        req = urllib.request.Request(
            self.base_url.rstrip("/") + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}),
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            doc = json.loads(resp.read())
        text = doc["choices"][0]["message"]["content"]
        start, end = text.find("{"), text.rfind("}")
        out = json.loads(text[start : end + 1])
        if not isinstance(out, dict):
            raise ValueError("the reply is not a JSON object")
        return out


def make_provider(name: str, *, api_key: str = "", model: str = "", base_url: str = "") -> Provider:
    if name not in _DEFAULT_BASE:
        from cli.errors import InputError

        raise InputError(f"unknown LLM provider: {name} (supported: {', '.join(sorted(_DEFAULT_BASE))})")
    key = os.environ.get("OPENAI_API_KEY", "") if name == "openai" else ""
    return OpenAICompatible(
        name=name,
        base_url=os.environ.get("DORGU_LLM_BASE_URL") or base_url or _DEFAULT_BASE[name],
        model=model or _DEFAULT_MODEL[name],
        api_key=key or api_key,
    )


def enhance(analysis: AppAnalysis, provider: Provider, *, type_fixed: bool, description_fixed: bool) -> None:
    """Merge a provider's suggestion into ``analysis`` (in place); raises on any provider failure."""
    try:
        out = provider.suggest(analysis)
    except (OSError, urllib.error.URLError, KeyError, IndexError, ValueError, TypeError) as e:
        raise RuntimeError(f"{provider.name}: {e}") from e
    desc = out.get("description")
    if not description_fixed and isinstance(desc, str) and desc.strip():
        analysis.description = " ".join(desc.split())
    typ = out.get("type")
    if not type_fixed and typ in APP_TYPES:
        analysis.type = typ
        analysis.resource_profile = typ
