"""The WebSocket server's metrics: open connections and subscriptions by topic.

Defined apart from the hub so that the hub only counts (:class:`webhook.ws.hub.Connection` and
:class:`webhook.ws.hub.Topic` are where connections and subscriptions begin and end). One process per
replica serves WebSockets; the supervisor sums its values (``livesum``), queries sum over replicas. No
per-client label: ``topic`` comes from the server's fixed set of topics, each created at 0 with its topic.
"""

from __future__ import annotations

from prometheus_client import Gauge

WS_CLIENTS = Gauge("dorgu_websocket_clients", "Open WebSocket connections", multiprocess_mode="livesum")
WS_SUBSCRIPTIONS = Gauge(
    "dorgu_websocket_subscriptions", "Active WebSocket subscriptions, by topic", ["topic"],
    multiprocess_mode="livesum",
)  # fmt: skip
