"""Asking again: a bounded number of attempts with exponential backoff, on an injected sleep.

Only a transient failure (:class:`~cli.analyzer.llm.clients.LLMError` with ``transient``: a timeout, a cut
connection, HTTP 429/5xx, an unusable reply) is retried; anything else ends the attempts at once. The sleep
is injected so that tests run the policy without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cli.analyzer.llm.clients import LLMError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one question is asked."""

    attempts: int = 3
    """Attempts in all (the first one included)."""
    first_delay_s: float = 1.0
    """The wait before the second attempt."""
    factor: float = 2.0
    """Each further wait is the previous one times this."""
    max_delay_s: float = 8.0
    """No wait is longer."""

    def delays(self) -> list[float]:
        """The waits between attempts, in order (``attempts - 1`` of them)."""
        out, d = [], self.first_delay_s
        for _ in range(max(self.attempts - 1, 0)):
            out.append(min(d, self.max_delay_s))
            d *= self.factor
        return out


def with_retries(
    fn: Callable[[], T], *, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep
) -> T:
    """``fn()``, retried on transient :class:`LLMError`; the last error is raised with the attempt count."""
    delays = policy.delays()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except LLMError as e:
            if not e.transient or attempt > len(delays):
                if attempt > 1:
                    raise LLMError(f"{e} (after {attempt} attempts)", transient=e.transient) from e
                raise
            sleep(delays[attempt - 1])
