"""Reading a model's reply: the JSON object of an analysis answer, the Markdown of a PERSONA.md.

A reply that does not hold what was asked for is an *unusable reply*: a transient
:class:`~cli.analyzer.llm.clients.LLMError` (a model may answer properly when asked again).
"""

from __future__ import annotations

import json
import re
from typing import Any

from cli.analyzer.llm.clients import LLMError

MAX_MARKDOWN = 64 * 1024
"""The longest PERSONA.md accepted from a model, in characters."""

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\n(?P<body>.*?)\n```\s*$", re.DOTALL)


def _excerpt(text: str) -> str:
    one = " ".join(text.split())
    return one[:80] + ("…" if len(one) > 80 else "")


def json_object(text: str) -> dict[str, Any]:
    """The first balanced ``{…}`` object of ``text`` (code fences and prose around it are skipped)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    raise LLMError(f"the reply is not a JSON object: {_excerpt(text)!r}", transient=True)


def markdown(text: str) -> str:
    """The Markdown document of ``text``: one enclosing code fence removed; it must start with a ``# ``
    title and be at most :data:`MAX_MARKDOWN` characters."""
    body = text.strip()
    m = _FENCE.match(body)
    if m:
        body = m.group("body").strip()
    if not body.startswith("# "):
        raise LLMError(
            f"the reply is not a Markdown document with a '# ' title: {_excerpt(text)!r}", transient=True
        )
    if len(body) > MAX_MARKDOWN:
        raise LLMError(f"the reply is longer than {MAX_MARKDOWN} characters", transient=False)
    return body + "\n"
