"""The optional LLM step: **off by default**, never required, never trusted.

With no provider the analysis is complete and deterministic, and nothing of this package's client libraries
is imported. A configured provider (:mod:`~cli.analyzer.llm.providers`: openai, anthropic, gemini, ollama,
each through its own library, :mod:`~cli.analyzer.llm.clients`) is asked twice by ``generate``:

1. for proposals to the analysis — description, type, ports, probes, resources, scaling — each checked
   against what the analysis found before it is taken (:mod:`~cli.analyzer.llm.proposal`);
2. for PERSONA.md, written from the deterministic template's facts.

Each question has a timeout and is retried with backoff on transient failures
(:mod:`~cli.analyzer.llm.retry`). Any failure — no key, no library, a timeout, an HTTP error, an unusable
reply — is one warning, and generation goes on deterministically: the basic analysis, the templated
PERSONA.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import msgspec

from cli.analyzer.llm.clients import Client, LLMError, make_client
from cli.analyzer.llm.prompts import ANALYSIS_SYSTEM, PERSONA_SYSTEM, analysis_prompt, persona_prompt
from cli.analyzer.llm.proposal import APP_TYPES, apply
from cli.analyzer.llm.providers import PROVIDER_NAMES, PROVIDERS, SetupError, resolve
from cli.analyzer.llm.reply import json_object, markdown
from cli.analyzer.llm.retry import RetryPolicy, with_retries
from cli.analyzer.model import AppAnalysis
from cli.errors import InputError
from cli.settings import AppConfig, ResourceProfile

T = TypeVar("T")

__all__ = ["APP_TYPES", "PROVIDER_NAMES", "Assistant", "RetryPolicy", "setup"]

ANALYSIS_FAILED = "LLM analysis failed, using basic analysis"
"""The warning's start when the analysis question fails (the Go tool's words)."""
PERSONA_FAILED = "LLM-written PERSONA.md failed, using the template"
"""The warning's start when the PERSONA.md question fails."""
REJECTED = "LLM proposal rejected"
"""The warning's start for each proposal that does not hold."""


class Assistant:
    """A configured provider, asked with retries; its failures become warnings, never errors."""

    def __init__(
        self,
        client: Client,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.policy = policy or RetryPolicy()
        self.sleep = sleep

    @property
    def name(self) -> str:
        return self.client.settings.info.name

    def _ask(
        self, read: Callable[[str], T], *, system: str, user: str, json_reply: bool, temperature: float
    ) -> T:
        """One question, asked until ``read`` accepts a reply or the retry policy gives up."""

        def attempt() -> T:
            text = self.client.complete(
                system=system, user=user, json_reply=json_reply, temperature=temperature
            )
            return read(text)

        return with_retries(attempt, policy=self.policy, sleep=self.sleep)

    def enhance(
        self,
        analysis: AppAnalysis,
        *,
        app_dir: Path,
        app_config: AppConfig,
        profile_for: Callable[[str], ResourceProfile],
        warn: Callable[[str], None],
    ) -> list[str]:
        """Ask for proposals and merge the ones that hold into ``analysis``; the fields changed."""
        prompt = analysis_prompt(
            analysis, profile=profile_for(analysis.resource_profile), instructions=app_config.app.instructions
        )

        try:
            reply = self._ask(
                json_object, system=ANALYSIS_SYSTEM, user=prompt, json_reply=True, temperature=0.0
            )
        except LLMError as e:
            warn(f"{ANALYSIS_FAILED}: {self.name}: {e}")
            return []
        # checked on a copy: a reply that trips the checks themselves leaves the analysis as it was
        work = msgspec.convert(msgspec.to_builtins(analysis), AppAnalysis)
        try:
            outcome = apply(work, reply, app_dir=app_dir, app_config=app_config, profile_for=profile_for)
        except Exception as e:  # an unforeseen shape of reply: never a crash, the basic analysis stays
            warn(f"{ANALYSIS_FAILED}: {self.name}: the reply could not be checked: {type(e).__name__}: {e}")
            return []
        for field in analysis.__struct_fields__:
            setattr(analysis, field, getattr(work, field))
        for why in outcome.rejected:
            warn(f"{REJECTED} ({self.name}): {why}")
        return outcome.applied

    def persona_markdown(
        self, analysis: AppAnalysis, *, template: str, instructions: str, warn: Callable[[str], None]
    ) -> str | None:
        """PERSONA.md as the model writes it, or ``None`` (warned) to keep ``template``."""
        prompt = persona_prompt(analysis, template=template, instructions=instructions)

        try:
            return self._ask(markdown, system=PERSONA_SYSTEM, user=prompt, json_reply=False, temperature=0.3)
        except LLMError as e:
            warn(f"{PERSONA_FAILED}: {self.name}: {e}")
            return None


def setup(
    name: str,
    *,
    model: str,
    api_key: str,
    base_url: str,
    env: Mapping[str, str],
    warn: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> Assistant | None:
    """The assistant for provider ``name`` (``""``/``none``: none). An unknown name is an input error; a
    provider that cannot be asked (no key, no library) is a warning and ``None``."""
    if not name or name == "none":
        return None
    if name not in PROVIDERS:
        raise InputError(f"unknown LLM provider: {name} (supported: {', '.join(PROVIDER_NAMES)})")
    try:
        settings = resolve(name, model=model, api_key=api_key, base_url=base_url, env=env)
        return Assistant(make_client(settings), sleep=sleep)
    except SetupError as e:
        warn(f"{ANALYSIS_FAILED}: {e}")
        return None
