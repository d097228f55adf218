"""The checksum header of a generated file: how ``dorgu generate`` tells a file it wrote, untouched, from
one a person edited since (which it must not overwrite without ``--force``).

The first line of every generated file carries the SHA-256 of the rest of the file (the body)::

    # dorgu: generated, sha256:<64 hex>; an edited file is kept by the next dorgu generate (--force …)

(``<!-- … -->`` in Markdown). A file is *pristine* when its first line is such a header and the body still
has that checksum; *edited* when the header is there but the body (or the header) changed; *foreign* when
there is no header at all (written by hand, or by a dorgu without headers) — foreign files count as edited.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

State = Literal["pristine", "edited", "foreign"]

_HEADER = re.compile(r"^(?:#|<!--) dorgu: generated, sha256:([0-9a-f]{64});[^\n]*\n")
_NOTE = "an edited file is kept by the next dorgu generate (--force overwrites)"


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def stamp(name: str, body: str) -> str:
    """``body`` with its checksum header; ``name`` (the file's name) picks the comment syntax."""
    if name.endswith(".md"):
        return f"<!-- dorgu: generated, sha256:{_digest(body)}; {_NOTE} -->\n{body}"
    return f"# dorgu: generated, sha256:{_digest(body)}; {_NOTE}\n{body}"


def state(text: str) -> State:
    """Whether ``text`` (a file's content) is as dorgu wrote it."""
    m = _HEADER.match(text)
    if m is None:
        return "foreign"
    expected = stamp("x.md" if text.startswith("<!--") else "x.yaml", text[m.end() :])
    return "pristine" if expected == text and m.group(1) == _digest(text[m.end() :]) else "edited"
