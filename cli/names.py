"""Kubernetes names dorgu writes into manifests: the application name (object names, labels) and the
namespace are RFC 1123 DNS labels. A bad one is an input error (exit 2) that states the rule — never
written into files a cluster then rejects."""

from __future__ import annotations

import re

from cli.errors import InputError

MAX_LABEL = 63
"""The longest DNS label."""
RULE = (
    "a DNS label (RFC 1123) has at most 63 characters, only lower-case letters, digits and '-', and starts "
    "and ends with a letter or digit (e.g. 'my-app', '123-abc')"
)
"""The rule, as every error message states it."""
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def is_label(value: str) -> bool:
    """Whether ``value`` is an RFC 1123 DNS label."""
    return len(value) <= MAX_LABEL and _LABEL.fullmatch(value) is not None


def check_label(value: str, *, what: str, suggestion: str = "") -> str:
    """``value`` when it is a DNS label; else :class:`InputError` naming ``what`` (``--namespace``,
    ``app.name in /x/.dorgu.yaml``), the value, the rule and a ``suggestion`` if given."""
    if is_label(value):
        return value
    hint = f"; try {suggestion!r}" if suggestion and suggestion != value and is_label(suggestion) else ""
    raise InputError(f"{what} {value!r} is not a valid Kubernetes name: {RULE}{hint}")
