"""Learn each ApplicationPersona's resource baseline from Prometheus (issue 4 item 5).

What is learned — **true 1-hour figures per pod**. For the pods of a persona's Deployments, each pod's usage
is the sum over its app containers (cAdvisor's ``container="POD"`` sandbox series and ``container=""`` cgroup
aggregates are excluded); then, evaluated every ``step`` over the last ``window``::

    avgCPU     = avg_over_time(avg(sum by (pod) (rate(container_cpu_usage_seconds_total{…}[5m])))[1h:1m])
    peakCPU    = max_over_time(max(sum by (pod) (rate(container_cpu_usage_seconds_total{…}[5m])))[1h:1m])
    avgMemory  = avg_over_time(avg(sum by (pod) (container_memory_working_set_bytes{…}))[1h:1m])
    peakMemory = max_over_time(max(sum by (pod) (container_memory_working_set_bytes{…}))[1h:1m])

i.e. the mean over the hour of the mean pod, and the highest any single pod reached — never an instant value,
never one arbitrary series, never pods matched by a bare name prefix.

Which pods — a Deployment ``d`` owns ReplicaSets ``d-<hash>`` whose pods are ``d-<hash>-<5 chars>``, so pods
are matched by that pattern (:func:`pod_regex`), never by the bare prefix: ``web`` does not match the pods of
``web-admin`` (``web-admin-6c8d9-klmno`` has three segments after ``web``). The hash is the decimal form of a
32-bit hash re-encoded one character per digit, so it is 1–10 characters long. Kubernetes cuts a pod's
``generateName`` base (``<rs-name>-``) to 58 characters; for long Deployment names the truncated shape is
matched too. What the name pattern cannot tell apart (a pod created by hand with a look-alike name, or two
long names that agree in their first 57 characters) would need ``kube_pod_owner`` from kube-state-metrics,
which dorgu does not assume.

Queries — **one set of four queries per namespace** serves all of its personas. Personas with the same set of
Deployments share a group; each group gets a label via ``label_replace`` on the pod name, and the aggregation
is ``avg by (dorgu_group)`` / ``max by (dorgu_group)`` instead of a bare ``avg``/``max`` — for a single group
that is exactly the formula above. Groups whose Deployment sets overlap (possible only through the ``app``
label fallback) and namespaces with more than ``max_groups_per_query`` groups are split over several sets of
queries. Each query carries an explicit ``time`` from the injected clock. Label values are escaped: the
namespace as a PromQL string, Deployment names with RE2 escaping (then as a PromQL string).

Outcomes per persona: a :class:`~dorgu.domain.types.ResourceBaseline` (CPU in millicores ``"250m"``, memory as
:func:`~dorgu.domain.quantity.format_memory` prints it: ``"128Mi"``, ``"1.5Gi"``); ``None`` when Prometheus
has no series for its pods (keep the previous baseline — never write zeros); or :class:`BaselineUnavailable`
with a reason when Prometheus is unreachable, errors or times out (keep the previous baseline, set
``BaselineLearned=False``).
:func:`next_baseline` turns an outcome plus the stored baseline into the one to store.

Cadence: each persona is refreshed at most every ``refresh_interval_s`` (after a failure:
``retry_interval_s``) on the injected clock, not on every reconcile; :meth:`BaselineLearner.due` tells whether
it is time, and :meth:`BaselineLearner.learn` skips (leaves out of its answer) personas that are not due. With
no URL the feature is off: ``due`` is always false and ``learn`` answers ``{}``, silently.

The HTTP client (``prometheus-api-client``, built on ``requests``) blocks, so every query runs in a worker
thread (``asyncio.to_thread``) under a timeout, and the four queries of a set run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from dorgu.domain.quantity import format_memory, format_millicores
from dorgu.domain.types import ResourceBaseline
from dorgu.runtime.clock import Clock

__all__ = [
    "FIELDS",
    "BaselineLearner",
    "BaselineOutcome",
    "BaselineSettings",
    "BaselineUnavailable",
    "BaselineValues",
    "build_queries",
    "next_baseline",
    "pod_regex",
    "promql_string",
    "re2_escape",
]

log = logging.getLogger(__name__)

Field = Literal["avg_cpu", "peak_cpu", "avg_memory", "peak_memory"]
FIELDS: tuple[Field, ...] = ("avg_cpu", "peak_cpu", "avg_memory", "peak_memory")
GROUP_LABEL = "dorgu_group"
"""The label :func:`build_queries` puts on each group's series (``g0``, ``g1``, …)."""

_DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$")
_MAX_GENERATED_BASE = 58  # k8s names.MaxGeneratedNameLength: 63 minus 5 random characters
_HASH = "[a-z0-9]"
_REASON_MAX = 300


@dataclass(frozen=True, kw_only=True)
class BaselineSettings:
    """How baselines are learned. Only ``url`` has no useful default."""

    url: str | None = None
    """Prometheus base URL, e.g. ``http://prometheus-server.monitoring:9090``. ``None`` or empty: feature off.
    A trailing slash is ignored (queries go to ``<url>/api/v1/query``, never ``<url>//api/v1/query``)."""
    timeout_s: float = 10.0
    """Per query: the HTTP timeout and the limit on waiting for the worker thread."""
    refresh_interval_s: float = 600.0
    """A persona's baseline is refreshed at most this often (on the injected clock)."""
    retry_interval_s: float = 60.0
    """After Prometheus failed for a persona, it is asked again no sooner than this (capped at the refresh
    interval), so a down Prometheus is not hit on every reconcile."""
    window: str = "1h"
    """The period the figures cover (the subquery range), a PromQL duration."""
    rate_window: str = "5m"
    """The ``rate()`` range for CPU, a PromQL duration (at least 2× the scrape interval)."""
    step: str = "1m"
    """The subquery resolution, a PromQL duration."""
    disable_ssl: bool = False
    """Skip TLS certificate verification for an ``https`` URL."""
    max_groups_per_query: int = 25
    """At most this many personas (distinct Deployment sets) share one set of queries; keeps the URL short."""

    def __post_init__(self) -> None:
        for name in ("window", "rate_window", "step"):
            value = getattr(self, name)
            if not _DURATION.match(value):
                raise ValueError(f"BaselineSettings.{name}: {value!r} is not a PromQL duration like '5m'")
        if self.timeout_s <= 0 or self.refresh_interval_s < 0 or self.retry_interval_s < 0:
            raise ValueError("BaselineSettings: timeout_s must be > 0 and the intervals >= 0")
        if self.max_groups_per_query < 1:
            raise ValueError("BaselineSettings.max_groups_per_query must be >= 1")

    @property
    def enabled(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class BaselineUnavailable:
    """Prometheus could not answer (unreachable, an error, a timeout); ``reason`` says why."""

    reason: str


@dataclass(frozen=True, kw_only=True)
class BaselineValues:
    """The raw learned figures: CPU in cores, memory in bytes; ``None`` where Prometheus had no series."""

    avg_cpu: float | None = None
    peak_cpu: float | None = None
    avg_memory: float | None = None
    peak_memory: float | None = None

    def to_resource_baseline(self) -> ResourceBaseline:
        def cpu(v: float | None) -> str | None:
            return None if v is None else format_millicores(v * 1000.0)

        def mem(v: float | None) -> str | None:
            return None if v is None else format_memory(v)

        return ResourceBaseline(
            avg_cpu=cpu(self.avg_cpu),
            peak_cpu=cpu(self.peak_cpu),
            avg_memory=mem(self.avg_memory),
            peak_memory=mem(self.peak_memory),
        )


BaselineOutcome = ResourceBaseline | BaselineUnavailable | None
"""What :meth:`BaselineLearner.learn` answers per persona; ``None`` means "no data"."""


def next_baseline(previous: ResourceBaseline | None, outcome: BaselineOutcome) -> ResourceBaseline | None:
    """The baseline to store after ``outcome``: the new one, with any field it lacks (no series for it) kept
    from ``previous``; ``previous`` unchanged after "no data" or a failure."""
    if not isinstance(outcome, ResourceBaseline):
        return previous
    if previous is None:
        return outcome
    return ResourceBaseline(
        avg_cpu=outcome.avg_cpu if outcome.avg_cpu is not None else previous.avg_cpu,
        peak_cpu=outcome.peak_cpu if outcome.peak_cpu is not None else previous.peak_cpu,
        avg_memory=outcome.avg_memory if outcome.avg_memory is not None else previous.avg_memory,
        peak_memory=outcome.peak_memory if outcome.peak_memory is not None else previous.peak_memory,
    )


# --- PromQL building ---------------------------------------------------------------------------------------

_RE2_META = frozenset("\\.+*?()|[]{}^$")


def re2_escape(text: str) -> str:
    """Escape RE2 metacharacters so ``text`` matches itself literally (as Go's ``regexp.QuoteMeta``)."""
    return "".join("\\" + ch if ch in _RE2_META else ch for ch in text)


def promql_string(text: str) -> str:
    """``text`` as a double-quoted PromQL string literal (Go escaping: backslash, quote, control chars)."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def pod_regex(deployment: str) -> str:
    """An RE2 pattern (anchored by Prometheus) for the pod names of Deployment ``deployment``.

    Pods are ``(<name>-<hash>-)[:58] + <5 chars>`` with a 1–10 character hash; normally that is
    ``<name>-[a-z0-9]{1,10}-[a-z0-9]{5}``, and for names of 47+ characters the truncated shapes are added.
    """
    n = len(deployment)
    esc = re2_escape(deployment)
    if n + 1 >= _MAX_GENERATED_BASE:  # even "<name>-" is cut: only the first 58 characters survive
        return re2_escape((deployment + "-")[:_MAX_GENERATED_BASE]) + f"{_HASH}{{5}}"
    alts = []
    longest_hash = min(10, _MAX_GENERATED_BASE - 2 - n)  # "<name>-<hash>-" must fit in 58
    if longest_hash >= 1:
        alts.append(f"{esc}-{_HASH}{{1,{longest_hash}}}-{_HASH}{{5}}")
    if longest_hash < 10:  # a longer hash is cut: "<name>-" + hash[:57-n] + 5 random characters
        alts.append(f"{esc}-{_HASH}{{{_MAX_GENERATED_BASE - 1 - n + 5}}}")
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _alternation(deployments: Iterable[str]) -> str:
    pats = [pod_regex(d) for d in deployments]
    return pats[0] if len(pats) == 1 else "(?:" + "|".join(pats) + ")"


def build_queries(
    namespace: str, groups: Sequence[Sequence[str]], settings: BaselineSettings
) -> dict[Field, str]:
    """The four PromQL queries for ``groups`` (each a non-empty list of Deployment names) in ``namespace``.

    Each answer series carries ``dorgu_group="g<i>"`` for ``groups[i]``. The groups' Deployment sets must be
    disjoint (a pod gets the label of the last group whose pattern matches it).
    """
    if not groups or any(not g for g in groups):
        raise ValueError("build_queries needs at least one group, each with at least one Deployment")
    every = sorted({d for g in groups for d in g})
    selector = (
        f"{{namespace={promql_string(namespace)},pod=~{promql_string(_alternation(every))},"
        f'container!="POD",container!=""}}'
    )

    def grouped(expr: str) -> str:
        for i, g in enumerate(groups):
            expr = f'label_replace({expr}, "{GROUP_LABEL}", "g{i}", "pod", {promql_string(_alternation(g))})'
        return expr

    cpu = grouped(f"sum by (pod) (rate(container_cpu_usage_seconds_total{selector}[{settings.rate_window}]))")
    mem = grouped(f"sum by (pod) (container_memory_working_set_bytes{selector})")
    sub = f"[{settings.window}:{settings.step}]"
    return {
        "avg_cpu": f"avg_over_time(avg by ({GROUP_LABEL}) ({cpu}){sub})",
        "peak_cpu": f"max_over_time(max by ({GROUP_LABEL}) ({cpu}){sub})",
        "avg_memory": f"avg_over_time(avg by ({GROUP_LABEL}) ({mem}){sub})",
        "peak_memory": f"max_over_time(max by ({GROUP_LABEL}) ({mem}){sub})",
    }


def _batches(groups: list[tuple[str, ...]], limit: int) -> list[list[tuple[str, ...]]]:
    """Split groups into batches of pairwise-disjoint Deployment sets, at most ``limit`` groups each."""
    batches: list[tuple[list[tuple[str, ...]], set[str]]] = []
    for g in groups:
        for members, used in batches:
            if len(members) < limit and used.isdisjoint(g):
                members.append(g)
                used.update(g)
                break
        else:
            batches.append(([g], set(g)))
    return [members for members, _ in batches]


# --- errors ------------------------------------------------------------------------------------------------


def _redact(url: str) -> str:
    """The URL without user:password."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _root_message(exc: BaseException) -> str:
    seen: set[int] = set()
    cur: BaseException | None = exc
    last = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        last = cur
        nested = getattr(cur, "reason", None)
        if not isinstance(nested, BaseException) and cur.args and isinstance(cur.args[0], BaseException):
            nested = cur.args[0]
        cur = nested if isinstance(nested, BaseException) else (cur.__cause__ or cur.__context__)
    text = str(last)
    m = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    if m:
        return m.group(0).strip()
    return text or type(last).__name__


def _is_timeout(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, urllib3.exceptions.NewConnectionError):  # a ConnectTimeoutError subclass, refused
            return False
        if isinstance(cur, TimeoutError | requests.Timeout | urllib3.exceptions.TimeoutError):
            return True
        nested = getattr(cur, "reason", None)
        if not isinstance(nested, BaseException) and cur.args and isinstance(cur.args[0], BaseException):
            nested = cur.args[0]
        cur = nested if isinstance(nested, BaseException) else (cur.__cause__ or cur.__context__)
    return False


def _describe(exc: BaseException, url: str, timeout_s: float) -> str:
    where = f"Prometheus at {url}"
    if _is_timeout(exc):
        reason = f"{where} did not answer within {timeout_s:g} s"
    elif isinstance(exc, requests.ConnectionError):
        reason = f"{where} is unreachable: {_root_message(exc)}"
    elif isinstance(exc, PrometheusApiClientException):
        # the client says "HTTP Status Code <n> (<body bytes repr>)"; Prometheus' body is JSON with "error"
        text = str(exc)
        code = re.search(r"HTTP Status Code (\d+)", text)
        error = re.search(r'"error"\s*:\s*"((?:[^"\\]|\\.)*)"', text)
        body = re.search(r"\(b?(['\"])(.*)\1\)\s*$", text, re.S)
        detail = error.group(1) if error else body.group(2) if body else text
        detail = detail.replace("\\n", " ").strip()
        reason = f"{where} answered HTTP {code.group(1) if code else '?'}: {detail}"
    else:
        reason = f"{where} failed: {type(exc).__name__}: {exc}"
    return reason if len(reason) <= _REASON_MAX else reason[: _REASON_MAX - 1] + "…"


# --- the learner -------------------------------------------------------------------------------------------


class BaselineLearner:
    """Learns baselines per persona, at most every ``refresh_interval_s``; see the module docstring.

    ``key`` is the caller's persona key (e.g. ``"<namespace>/<name>"``). Call :meth:`forget` when a persona is
    deleted so its bookkeeping goes too, and :meth:`close` at shutdown.
    """

    def __init__(self, settings: BaselineSettings, *, clock: Clock, concurrency: int = 4) -> None:
        self.settings = settings
        self._clock = clock
        self._next_due: dict[str, float] = {}
        self._concurrency = concurrency
        self._url = (settings.url or "").rstrip("/")
        self._shown_url = _redact(self._url)
        self._client: PrometheusConnect | None = None
        if settings.enabled:
            self._client = PrometheusConnect(
                url=self._url,
                disable_ssl=settings.disable_ssl,
                # No retries inside a query: a failure is retried after retry_interval_s.
                retry=Retry(total=0, redirect=False),
                timeout=settings.timeout_s,
            )

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def due(self, key: str) -> bool:
        """Whether ``key`` should be refreshed now: never learned, or its interval has passed. Always false
        when the feature is off."""
        if not self.enabled:
            return False
        at = self._next_due.get(key)
        return at is None or self._clock.monotonic() >= at

    def forget(self, key: str) -> None:
        self._next_due.pop(key, None)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def learn(
        self, namespace: str, deployments_by_persona: Mapping[str, Sequence[str]], *, force: bool = False
    ) -> dict[str, BaselineOutcome]:
        """Learn the baselines of the due personas of ``namespace`` (all of them with ``force``).

        ``deployments_by_persona`` maps persona key → the names of its Deployments in ``namespace``. The
        answer has an entry for each due persona: a ``ResourceBaseline``, ``None`` (no data, or no
        Deployments: keep the previous baseline) or ``BaselineUnavailable``. Personas that are not
        due are left out; with the feature off the answer is ``{}``.
        """
        values = await self.learn_values(namespace, deployments_by_persona, force=force)
        return {
            k: v.to_resource_baseline() if isinstance(v, BaselineValues) else v for k, v in values.items()
        }

    async def learn_values(
        self, namespace: str, deployments_by_persona: Mapping[str, Sequence[str]], *, force: bool = False
    ) -> dict[str, BaselineValues | BaselineUnavailable | None]:
        """As :meth:`learn`, with the raw figures (cores, bytes) instead of formatted strings."""
        if not self.enabled:
            return {}
        started = self._clock.monotonic()
        out: dict[str, BaselineValues | BaselineUnavailable | None] = {}
        by_set: dict[tuple[str, ...], list[str]] = {}
        for key, deployments in deployments_by_persona.items():
            if not (force or self.due(key)):
                continue
            names = tuple(sorted(set(deployments)))
            if not names:
                out[key] = None  # nothing to learn from; asked again as soon as there is a Deployment
                continue
            by_set.setdefault(names, []).append(key)
        if not by_set:
            return out

        when = self._clock.now().timestamp()
        batches = _batches(sorted(by_set), self.settings.max_groups_per_query)
        sem = asyncio.Semaphore(self._concurrency)  # per call: a learner may outlive an event loop (tests)
        answers = await asyncio.gather(*(self._run_batch(namespace, b, when, sem) for b in batches))
        for batch, answer in zip(batches, answers, strict=True):
            for i, names in enumerate(batch):
                got = answer if isinstance(answer, BaselineUnavailable) else answer.get(i)
                for key in by_set[names]:
                    out[key] = got
                    ok = not isinstance(got, BaselineUnavailable)
                    wait = (
                        self.settings.refresh_interval_s
                        if ok
                        else min(self.settings.retry_interval_s, self.settings.refresh_interval_s)
                    )
                    self._next_due[key] = started + wait
        return out

    async def _run_batch(
        self, namespace: str, groups: list[tuple[str, ...]], when: float, sem: asyncio.Semaphore
    ) -> dict[int, BaselineValues] | BaselineUnavailable:
        queries = build_queries(namespace, groups, self.settings)
        async with sem:
            try:
                results = await asyncio.gather(*(self._query(queries[f], when) for f in FIELDS))
            except Exception as exc:  # any failure of any query: the whole batch is unavailable
                reason = _describe(exc, self._shown_url, self.settings.timeout_s)
                log.warning("baseline for namespace %s not learned: %s", namespace, reason)
                return BaselineUnavailable(reason)
        per_group: dict[int, dict[str, float]] = {}
        for field, result in zip(FIELDS, results, strict=True):
            for series in result:
                label = str(series.get("metric", {}).get(GROUP_LABEL, ""))
                if not label.startswith("g") or not label[1:].isdigit():
                    continue
                try:
                    value = float(series["value"][1])
                except (KeyError, IndexError, TypeError, ValueError):
                    continue
                if math.isfinite(value):
                    per_group.setdefault(int(label[1:]), {})[field] = value
        return {i: BaselineValues(**fields) for i, fields in per_group.items() if fields}

    async def _query(self, query: str, when: float) -> list[dict[str, Any]]:
        client = self._client
        assert client is not None
        timeout = self.settings.timeout_s
        result = await asyncio.wait_for(
            asyncio.to_thread(client.custom_query, query, params={"time": f"{when:.3f}"}, timeout=timeout),
            timeout + 1.0,  # the HTTP timeout fires first; this bounds a stuck thread hand-off
        )
        if not isinstance(result, list):
            raise ValueError(f"unexpected answer shape: {type(result).__name__}")
        return result
