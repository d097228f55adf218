"""Structured logging: one JSON object per line on stderr, for the supervisor and every child.

Each line carries ``ts`` (RFC 3339, UTC), ``level``, ``logger`` and ``msg``; ``component`` (the process's
component, set by :func:`setup_logging`); ``controller``, ``key`` and ``reconcile_id`` when the controller
code has set the context variables below; ``exc`` with the formatted traceback when there is one; and any
``extra={...}`` fields given to the logging call. Values that JSON cannot hold are written as ``str()``.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

__all__ = [
    "JsonFormatter",
    "controller_var",
    "key_var",
    "reconcile_id_var",
    "setup_logging",
]

controller_var: ContextVar[str | None] = ContextVar("dorgu_controller", default=None)
"""The controller whose code is running (set by the controller machinery per worker)."""
key_var: ContextVar[str | None] = ContextVar("dorgu_key", default=None)
"""The object being reconciled, as ``namespace/name`` (or ``name`` for cluster-scoped objects)."""
reconcile_id_var: ContextVar[str | None] = ContextVar("dorgu_reconcile_id", default=None)
"""A unique id of one reconcile call, so all its lines can be found together."""

_CONTEXT_FIELDS: tuple[tuple[str, ContextVar[str | None]], ...] = (
    ("controller", controller_var),
    ("key", key_var),
    ("reconcile_id", reconcile_id_var),
)

# The attributes every LogRecord has; anything else on a record came from ``extra=`` and is written out.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Keys the formatter owns: an ``extra`` field of the same name never overwrites them.
_RESERVED = frozenset({"ts", "level", "logger", "msg", "component", "exc", "stack"}) | {
    name for name, _ in _CONTEXT_FIELDS
}

_encoder = msgspec.json.Encoder(enc_hook=str)


class ContextFilter(logging.Filter):
    """Stamps the context variables onto each record when it is logged, in the logging task's context.

    The rule: a record carries the context of the code that logged it, even if a handler formats it later
    elsewhere (a queue handler's thread). Values already on the record (``extra=``) win.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                value = var.get()
                if value is not None:
                    setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line (see the module docstring for the fields)."""

    def __init__(self, *, component: str | None = None) -> None:
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        component = getattr(record, "component", None) or self._component
        if component is not None:
            out["component"] = component
        for name, var in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = var.get()
            if value is not None:
                out[name] = value
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRS and name not in _RESERVED and not name.startswith("_"):
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        try:
            return _encoder.encode(out).decode()
        except (TypeError, ValueError, OverflowError):
            # A value msgspec cannot encode even through str() (e.g. a dict with non-string keys):
            # never lose the line, write every extra field as its str().
            safe = {k: v if k in _RESERVED or isinstance(v, str | int | float | bool) else str(v)
                    for k, v in out.items()}  # fmt: skip
            return _encoder.encode(safe).decode()


def _rfc3339(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def setup_logging(
    level: int | str = logging.INFO, *, component: str | None = None, stream: TextIO | None = None
) -> None:
    """Send all logging to ``stream`` (stderr) as JSON lines, replacing the root logger's handlers.

    ``level`` is a level number or name (case-insensitive: ``"info"``, ``"DEBUG"``). ``component``
    names the process (``"supervisor"``, a controller's component name) on every line it writes.
    Calling it again reconfigures; it never stacks handlers.
    """
    if isinstance(level, str):
        level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(component=component))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
