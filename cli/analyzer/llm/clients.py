"""One adapter per provider over its client library: a system and a user message in, the reply's text out.

Each adapter turns its library's failures into :class:`LLMError`, marked *transient* when asking again may
help (a timeout, a refused or cut connection, HTTP 429 or 5xx) — :mod:`cli.analyzer.llm.retry` decides what
to do with it. The libraries' own retries are switched off, so that the one retry policy (with its injected
sleep) is the only one. A library is imported when its adapter is made, never before.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from cli.analyzer.llm.providers import ProviderSettings, SetupError


class LLMError(Exception):
    """A request that failed; ``transient``: the same request may succeed later."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Client(Protocol):
    """A provider's chat endpoint, one question at a time."""

    settings: ProviderSettings

    def complete(self, *, system: str, user: str, json_reply: bool, temperature: float) -> str:
        """The model's reply to ``user`` under ``system``; ``json_reply`` asks for a JSON object where the
        provider can enforce it. Raises :class:`LLMError`."""
        ...


def _import(settings: ProviderSettings) -> Any:
    try:
        return importlib.import_module(settings.info.module)
    except ImportError as e:
        raise SetupError(
            f"the {settings.info.name} provider needs the {settings.info.package} package "
            f"(pip install 'dorgu[llm]'): {e}"
        ) from e


def _status(e: BaseException) -> int | None:
    """The HTTP status a library's error carries (``status_code`` or Gemini's ``code``), if any."""
    for attr in ("status_code", "code"):
        value = getattr(e, attr, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    return None


def _is_timeout(e: BaseException) -> bool:
    return isinstance(e, TimeoutError) or any("Timeout" in t.__name__ for t in type(e).__mro__)


def _is_connection(e: BaseException) -> bool:
    names = {t.__name__ for t in type(e).__mro__}
    return isinstance(e, ConnectionError) or bool(
        names & {"APIConnectionError", "ConnectError", "RemoteProtocolError", "ReadError", "TransportError"}
    )


def classify(e: Exception, settings: ProviderSettings) -> LLMError:
    """A library's exception as an :class:`LLMError` that names the provider and says what happened."""
    where = settings.base_url or "its default endpoint"
    detail = " ".join(str(e).split())[:300]
    if _is_timeout(e):
        return LLMError(f"no reply within {settings.timeout_s:g}s from {where}", transient=True)
    status = _status(e)
    if status is not None:
        return LLMError(
            f"{settings.info.title} API error (status {status}): {detail}",
            transient=status == 429 or status >= 500,
        )
    if _is_connection(e):
        return LLMError(f"{settings.info.title} API request failed ({where}): {detail}", transient=True)
    return LLMError(
        f"{settings.info.title} API request failed: {type(e).__name__}: {detail}", transient=False
    )


class _Adapter:
    settings: ProviderSettings

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self._lib = _import(settings)
        self._client = self._make()

    def _make(self) -> Any:
        raise NotImplementedError

    def _ask(self, system: str, user: str, json_reply: bool, temperature: float) -> str:
        raise NotImplementedError

    def complete(self, *, system: str, user: str, json_reply: bool, temperature: float) -> str:
        try:
            text = self._ask(system, user, json_reply, temperature)
        except LLMError:
            raise
        except Exception as e:  # every library error, whatever its class: classified, never raised as is
            raise classify(e, self.settings) from e
        if not isinstance(text, str) or not text.strip():
            raise LLMError(f"{self.settings.info.title} sent an empty reply", transient=True)
        return text


class OpenAIClient(_Adapter):
    """OpenAI's Chat Completions API (``POST {base}/chat/completions``, ``Authorization: Bearer``)."""

    def _make(self) -> Any:
        s = self.settings
        return self._lib.OpenAI(
            api_key=s.api_key, base_url=s.base_url or None, timeout=s.timeout_s, max_retries=0
        )

    def _ask(self, system: str, user: str, json_reply: bool, temperature: float) -> str:
        extra = {"response_format": {"type": "json_object"}} if json_reply else {}
        resp = self._client.chat.completions.create(
            model=self.settings.model,
            temperature=temperature,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            **extra,
        )
        return resp.choices[0].message.content or ""


class AnthropicClient(_Adapter):
    """Anthropic's Messages API (``POST {base}/v1/messages`` with ``anthropic-version``)."""

    max_tokens = 4096

    def _make(self) -> Any:
        s = self.settings
        return self._lib.Anthropic(
            api_key=s.api_key, base_url=s.base_url or None, timeout=s.timeout_s, max_retries=0
        )

    def _ask(self, system: str, user: str, json_reply: bool, temperature: float) -> str:
        # no temperature: the Messages API of current models and libraries no longer takes one
        resp = self._client.messages.create(
            model=self.settings.model,
            max_tokens=self.max_tokens,
            system=system,
            messages=[{"role": "user", "content": user}],
        )
        return "".join(getattr(block, "text", "") for block in resp.content)


class GeminiClient(_Adapter):
    """The Gemini API (``POST {base}/{version}/models/{model}:generateContent``, ``x-goog-api-key``)."""

    def _make(self) -> Any:
        s = self.settings
        types = importlib.import_module("google.genai.types")
        options = types.HttpOptions(timeout=int(s.timeout_s * 1000), base_url=s.base_url or None)
        return self._lib.Client(api_key=s.api_key, http_options=options)

    def _ask(self, system: str, user: str, json_reply: bool, temperature: float) -> str:
        types = importlib.import_module("google.genai.types")
        config = types.GenerateContentConfig(
            system_instruction=system,
            temperature=temperature,
            response_mime_type="application/json" if json_reply else None,
        )
        resp = self._client.models.generate_content(model=self.settings.model, contents=user, config=config)
        return resp.text or ""


class OllamaClient(_Adapter):
    """Ollama's native chat API (``POST {OLLAMA_HOST}/api/chat``, ``stream: false``)."""

    def _make(self) -> Any:
        return self._lib.Client(host=self.settings.base_url, timeout=self.settings.timeout_s)

    def _ask(self, system: str, user: str, json_reply: bool, temperature: float) -> str:
        resp = self._client.chat(
            model=self.settings.model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            format="json" if json_reply else None,
            options={"temperature": temperature},
            stream=False,
        )
        return resp.message.content or ""


ADAPTERS: dict[str, Callable[[ProviderSettings], Client]] = {
    "openai": OpenAIClient,
    "anthropic": AnthropicClient,
    "gemini": GeminiClient,
    "ollama": OllamaClient,
}
"""Provider name → its adapter."""


def make_client(settings: ProviderSettings) -> Client:
    """The adapter for ``settings``; raises :class:`SetupError` when its library is not installed."""
    return ADAPTERS[settings.info.name](settings)
