"""The runtime's Prometheus metrics, named exactly as controller-runtime and client-go name theirs.

Existing dashboards and alerts for controller-runtime operators work unchanged. In the operator every
component runs in its own process with its own in-memory registry (an increment is a lock and an addition);
the supervisor serves one ``/metrics``, combining its children's registries when it is scraped
(:mod:`dorgu.runtime.procmetrics`). Each gauge names how its per-process values combine
(``multiprocess_mode``): ``livesum`` for amounts, ``livemax`` for flags and maxima, ``livemin`` for
"all synced". Outside the operator (tests, benchmarks) these are ordinary in-process metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# controller-runtime pkg/internal/controller/metrics: reconcile_time_seconds buckets.
RECONCILE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
)  # fmt: skip
# client-go workqueue: ExponentialBuckets(10e-9, 10, 12).
WORKQUEUE_BUCKETS = tuple(10e-9 * 10**i for i in range(12))

RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total", "Total number of reconciliations per controller",
    ["controller", "result"],
)  # fmt: skip
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total", "Total number of reconciliation errors per controller",
    ["controller"],
)  # fmt: skip
TERMINAL_RECONCILE_ERRORS = Counter(
    "controller_runtime_terminal_reconcile_errors_total",
    "Total number of terminal reconciliation errors per controller", ["controller"],
)  # fmt: skip
RECONCILE_PANICS = Counter(
    "controller_runtime_reconcile_panics_total", "Total number of reconciliation panics per controller",
    ["controller"],
)  # fmt: skip
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds", "Length of time per reconciliation per controller",
    ["controller"], buckets=RECONCILE_BUCKETS,
)  # fmt: skip
MAX_CONCURRENT_RECONCILES = Gauge(
    "controller_runtime_max_concurrent_reconciles", "Maximum number of concurrent reconciles per controller",
    ["controller"], multiprocess_mode="livemax",
)  # fmt: skip
ACTIVE_WORKERS = Gauge(
    "controller_runtime_active_workers", "Number of currently used workers per controller",
    ["controller"], multiprocess_mode="livesum",
)  # fmt: skip

WORKQUEUE_DEPTH = Gauge(
    "workqueue_depth", "Current depth of workqueue", ["name", "controller", "priority"],
    multiprocess_mode="livesum",
)  # fmt: skip
WORKQUEUE_ADDS = Counter(
    "workqueue_adds_total", "Total number of adds handled by workqueue", ["name", "controller"]
)
WORKQUEUE_QUEUE_DURATION = Histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested",
    ["name", "controller"], buckets=WORKQUEUE_BUCKETS,
)  # fmt: skip
WORKQUEUE_WORK_DURATION = Histogram(
    "workqueue_work_duration_seconds", "How long in seconds processing an item from workqueue takes",
    ["name", "controller"], buckets=WORKQUEUE_BUCKETS,
)  # fmt: skip
WORKQUEUE_UNFINISHED_WORK = Gauge(
    "workqueue_unfinished_work_seconds",
    "How many seconds of work has been done that is in progress and hasn't been observed by work_duration",
    ["name", "controller"], multiprocess_mode="livesum",
)  # fmt: skip
WORKQUEUE_LONGEST_RUNNING = Gauge(
    "workqueue_longest_running_processor_seconds",
    "How many seconds has the longest running processor for workqueue been running",
    ["name", "controller"], multiprocess_mode="livemax",
)  # fmt: skip
WORKQUEUE_RETRIES = Counter(
    "workqueue_retries_total", "Total number of retries handled by workqueue", ["name", "controller"]
)

LEADER_ELECTION_MASTER_STATUS = Gauge(
    "leader_election_master_status",
    "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 master",
    ["name"], multiprocess_mode="livemax",
)  # fmt: skip
LEADER_ELECTION_SLOWPATH = Counter(
    "leader_election_slowpath_total",
    "Total number of slow path exercised in renewing leader leases",
    ["name"],
)

REST_CLIENT_REQUESTS = Counter(
    "rest_client_requests_total", "Number of HTTP requests, partitioned by status code, method, and host",
    ["code", "method", "host"],
)  # fmt: skip

# dorgu's own watch/informer counters (client-go has no metrics of its own for these).
WATCH_STARTS = Counter("dorgu_watch_starts_total", "Watch requests started", ["resource"])
WATCH_EVENTS = Counter("dorgu_watch_events_total", "Watch events received", ["resource", "type"])
WATCH_ERRORS = Counter("dorgu_watch_errors_total", "Watch streams ended by an error", ["resource", "reason"])
INFORMER_RELISTS = Counter("dorgu_informer_lists_total", "Full LISTs made by informers", ["resource"])
INFORMER_OBJECTS = Gauge(
    "dorgu_informer_objects", "Objects in informer caches", ["resource"], multiprocess_mode="livesum"
)
INFORMER_SYNCED = Gauge(
    "dorgu_informer_synced",
    "1 when the informer's cache has synced",
    ["resource"],
    multiprocess_mode="livemin",
)
EVENTS_EMITTED = Counter(
    "dorgu_events_emitted_total", "Kubernetes Events written by the event recorder", ["reason", "result"]
)

# controller-runtime pkg/webhook/internal/metrics and pkg/certwatcher/metrics (same names and labels).
WEBHOOK_LATENCY = Histogram(
    "controller_runtime_webhook_latency_seconds",
    "Histogram of the latency of processing admission requests", ["webhook"],
)  # fmt: skip
WEBHOOK_REQUESTS = Counter(
    "controller_runtime_webhook_requests_total",
    "Total number of admission requests by HTTP status code.", ["webhook", "code"],
)  # fmt: skip
WEBHOOK_IN_FLIGHT = Gauge(
    "controller_runtime_webhook_requests_in_flight", "Current number of admission requests being served.",
    ["webhook"], multiprocess_mode="livesum",
)  # fmt: skip
WEBHOOK_PANICS = Counter("controller_runtime_webhook_panics_total", "Total number of webhook panics")
CERTWATCHER_READS = Counter("certwatcher_read_certificate_total", "Total number of certificate reads")
CERTWATCHER_READ_ERRORS = Counter(
    "certwatcher_read_certificate_errors_total", "Total number of certificate read errors"
)

# Sharding (dorgu.runtime.sharding, dorgu.runtime.sharder): one series per shard, so a replica running several
# shard processes shows each of them.
SHARD_OBJECTS = Gauge(
    "dorgu_shard_objects", "Objects assigned to this shard (in its label-selected cache)", ["ring", "shard"],
    multiprocess_mode="livesum",
)  # fmt: skip
SHARD_SECONDARY_OBJECTS = Gauge(
    "dorgu_shard_secondary_objects", "Secondary objects this shard caches for its own objects",
    ["ring", "shard", "resource"], multiprocess_mode="livesum",
)  # fmt: skip
SHARD_RECONCILES = Counter("dorgu_shard_reconciles_total", "Reconciles run by this shard", ["ring", "shard"])
SHARD_DRAINS = Counter(
    "dorgu_shard_drains_total",
    "Drain requests this shard acknowledged (objects it let go of)",
    ["ring", "shard"],
)
SHARDER_SHARDS = Gauge(
    "dorgu_sharder_shards", "Shards the sharder counts as alive (the ring's size)", ["ring"],
    multiprocess_mode="livemax",
)  # fmt: skip
SHARDER_ASSIGNMENTS = Counter(
    "dorgu_sharder_assignments_total",
    "Label writes of the sharder: assign (unassigned object), drain (asked a live shard to let go), "
    "reassign (from a dead shard)", ["ring", "action"],
)  # fmt: skip
