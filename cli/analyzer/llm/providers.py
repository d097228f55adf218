"""The LLM providers dorgu knows and how each one's endpoint, key and model are chosen.

Every provider is reached through its own client library (the ``dorgu[llm]`` extra), imported only when a
provider is configured: the deterministic path imports none of them. Keys come from the provider's standard
environment variables, which win over the global config's ``llm.api_key`` (as in the Go tool); the endpoint
from ``DORGU_LLM_BASE_URL``, then (Ollama) ``OLLAMA_HOST``, then the global config's ``llm.base_url``, then
the provider's default — never from a workspace file (:mod:`cli.settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ProviderInfo:
    """What dorgu knows of one provider."""

    name: str
    """The name in ``llm.provider`` / ``--llm-provider``."""
    title: str
    """How messages name it."""
    package: str
    """The pip distribution of its client library."""
    module: str
    """The library's import name."""
    default_model: str
    """The model asked when ``llm.model`` is empty."""
    key_env: tuple[str, ...]
    """Environment variables holding the API key, first wins; empty: the provider needs no key."""
    endpoint_env: str
    """An environment variable naming the endpoint (Ollama's ``OLLAMA_HOST``), else empty."""
    timeout_s: float
    """Seconds one request may take."""


PROVIDERS: dict[str, ProviderInfo] = {
    p.name: p
    for p in (
        ProviderInfo(
            name="openai",
            title="OpenAI",
            package="openai",
            module="openai",
            default_model="gpt-4o-mini",
            key_env=("OPENAI_API_KEY",),
            endpoint_env="",
            timeout_s=60.0,
        ),
        ProviderInfo(
            name="anthropic",
            title="Anthropic",
            package="anthropic",
            module="anthropic",
            default_model="claude-sonnet-4-5",
            key_env=("ANTHROPIC_API_KEY",),
            endpoint_env="",
            timeout_s=60.0,
        ),
        ProviderInfo(
            name="gemini",
            title="Gemini",
            package="google-genai",
            module="google.genai",
            default_model="gemini-2.5-flash",
            key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
            endpoint_env="",
            timeout_s=60.0,
        ),
        ProviderInfo(
            name="ollama",
            title="Ollama",
            package="ollama",
            module="ollama",
            default_model="llama3",
            key_env=(),
            endpoint_env="OLLAMA_HOST",
            timeout_s=120.0,
        ),
    )
}
"""Every provider, in the order the Go tool lists them."""

PROVIDER_NAMES = tuple(PROVIDERS)
"""``openai``, ``anthropic``, ``gemini``, ``ollama`` — every name the Go tool writes in ``llm.provider``."""

OLLAMA_DEFAULT_HOST = "http://localhost:11434"
"""Ollama's endpoint when neither ``OLLAMA_HOST`` nor a base URL is set."""


class SetupError(Exception):
    """The provider cannot be asked at all (no key, no library): generation goes on deterministically."""


@dataclass(frozen=True)
class ProviderSettings:
    """One provider, resolved: everything a client needs to send a request."""

    info: ProviderInfo
    """The provider."""
    model: str
    """The model asked."""
    api_key: str
    """The API key (empty for Ollama)."""
    base_url: str
    """The endpoint; empty: the library's default."""
    timeout_s: float
    """Seconds one request may take."""


def env_key(info: ProviderInfo, env: Mapping[str, str]) -> tuple[str, str]:
    """``(variable, value)`` of the first key variable set for ``info``, else ``("", "")``."""
    for var in info.key_env:
        if env.get(var):
            return var, env[var]
    return "", ""


def resolve(
    name: str, *, model: str, api_key: str, base_url: str, env: Mapping[str, str]
) -> ProviderSettings:
    """Settings for provider ``name`` (one of :data:`PROVIDERS`); ``model``, ``api_key`` and ``base_url`` are
    the global config's (a workspace's model may be given as ``model``). Raises :class:`SetupError` when a
    provider that needs a key has none (the Go tool's message)."""
    info = PROVIDERS[name]
    key = env_key(info, env)[1] or (api_key if info.key_env else "")
    if info.key_env and not key:
        vars_ = info.key_env[0] + (f" (or {', '.join(info.key_env[1:])})" if info.key_env[1:] else "")
        raise SetupError(
            f"{info.title} API key not set. Set {vars_} or run: dorgu config set llm.api_key <key>"
        )
    endpoint = env.get("DORGU_LLM_BASE_URL") or (env.get(info.endpoint_env) if info.endpoint_env else "")
    endpoint = endpoint or base_url or (OLLAMA_DEFAULT_HOST if name == "ollama" else "")
    return ProviderSettings(
        info=info, model=model or info.default_model, api_key=key, base_url=endpoint, timeout_s=info.timeout_s
    )
