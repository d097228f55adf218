"""The observability kit on a real Prometheus: the operator as it is deployed (deploy/'s objects applied to a
local control plane of its own, `dorgu operator` with the ServiceAccount's token) scraped by Debian's
``prometheus`` loaded with deploy/monitoring's rules, every ``for:`` shortened to :data:`FOR`.

First everything works: the webhook denies and warns, a WebSocket client subscribes, a persona fails
validation — the new metrics show it in Prometheus, every dashboard query returns data, and none of the
alerts broken below is pending or firing. Then it is broken for real, one thing after another, and each
alert is awaited in Prometheus' own ``/api/v1/alerts``:

1. certificate rotation: the serving certificate lives :data:`CERT_LIFETIME_S` (renewed at 2/3); the
   certificate Secret is made ``immutable``, so the renewal's write is refused and the certificate ages
   → ``DorguWebhookCertificateExpiring``;
2. reconciles: the ClusterRole loses ``applicationpersonas/status``, so every status write is forbidden
   → ``DorguReconcileErrors``;
3. the operator is stopped → ``DorguOperatorDown``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import shutil
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from dorgu.envtest import ApiError, ControlPlane, ControlPlaneSettings, HarnessClient
from tests.conftest import CRDS
from tests.controllers.prometheus_kit import PrometheusServer, ensure_binaries
from tests.e2e.kit import DEPLOY, NS, WEBHOOK_PATH, Replica, ensure_namespace, http_get, render
from tests.e2e.test_rbac import apply, for_1_20
from tests.monitoring import kit
from tests.webhook.kit import OPT_IN, PERSONA_SPEC, deployment
from tests.ws.kit import CliStream

FOR = "10s"
"""Every rule's ``for:`` in this test (the real durations are unit-tested by promtool): long enough that a
few slow scrapes on a busy machine fire nothing."""
SCRAPE = "2s"
"""Scrape and evaluation interval (also the scrape timeout: /metrics reads every child's metric files)."""
CERT_LIFETIME_S = 120
"""The serving certificate's lifetime here: renewed after 80 s; unrenewed, the alert's condition holds from
100 s on (half of the 40 s left at renewal gone)."""
DEADLINE_S = 240.0
SECRET = "dorgu-webhook-certs"
CLUSTER_ROLE = "dorgu-operator"
ENFORCING, ADVISORY = "mon-enforcing", "mon-advisory"


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    # Its own control plane: the test rewrites the operator's ClusterRole and its certificate Secret.
    with ControlPlane(ControlPlaneSettings(crds=CRDS)) as plane:
        yield plane


class Prometheus:
    """The HTTP API of a running Prometheus."""

    def __init__(self, server: PrometheusServer) -> None:
        self.server = server

    def _get(self, path: str, **params: str) -> Any:
        url = f"{self.server.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        code, body = http_get(url)
        assert code == 200, f"{url}: {code} {body[:500]}"
        out = json.loads(body)
        assert out["status"] == "success", out
        return out["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self._get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return list(data["result"])

    def values(self, expr: str) -> list[float]:
        return [float(s["value"][1]) for s in self.query(expr)]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/alerts")["alerts"])

    def alert_states(self, name: str) -> set[str]:
        return {a["state"] for a in self.alerts() if a["labels"]["alertname"] == name}

    def firing(self, name: str, **labels: str) -> dict[str, Any] | None:
        for a in self.alerts():
            wanted = a["labels"]["alertname"] == name and a["state"] == "firing"
            if wanted and all(a["labels"].get(k) == v for k, v in labels.items()):
                return a
        return None


def wait(pred: Callable[[], Any], what: str, *, timeout: float = DEADLINE_S, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            got = pred()
        except (ApiError, OSError, AssertionError) as e:
            got, last = None, e
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")


def prometheus_config(metrics_port: int) -> str:
    return f"""\
global:
  scrape_interval: {SCRAPE}
  scrape_timeout: {SCRAPE}
  evaluation_interval: {SCRAPE}
rule_files: [rules.yaml]
scrape_configs:
  - job_name: {kit.JOB}
    static_configs:
      - targets: ["127.0.0.1:{metrics_port}"]
        labels: {{namespace: {NS}, pod: dorgu-0}}
"""


def _persona(kube: HarnessClient, ns: str) -> None:
    body = {
        "apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
        "metadata": {"name": "shop", "namespace": ns},
        "spec": {"name": "shop", "type": "api", **PERSONA_SPEC},
    }  # fmt: skip
    kube.post(f"/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas", body)


def _create_deployment(kube: HarnessClient, ns: str, body: dict[str, Any]) -> int:
    """POST a Deployment as the admin: 201, or the status of the refusal."""
    try:
        kube.post(f"/apis/apps/v1/namespaces/{ns}/deployments", body)
    except ApiError as e:
        return e.code
    return 201


def _served_not_after(kube: HarnessClient) -> float:
    secret = kube.get(f"/api/v1/namespaces/{NS}/secrets/{SECRET}")
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    return cert.not_valid_after_utc.timestamp()


def _finite(values: list[float]) -> bool:
    return any(not math.isnan(v) for v in values)


@pytest.mark.slow
def test_alerts_fire_on_a_real_prometheus_when_the_operator_breaks(cp: ControlPlane, tmp_path: Path) -> None:
    kube = cp.client()
    objs = for_1_20(render(DEPLOY))
    apply(kube, next(o for o in objs if o["kind"] == "Namespace"), dry_run=False)
    for o in objs:
        apply(kube, o, dry_run=False)

    # -- the operator, in-cluster style, with the ServiceAccount's own token (as tests/e2e/test_rbac.py) --
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(cp.service_account_token(NS, "dorgu", create=False))
    shutil.copy(cp.ca_file, sa_dir / "ca.crt")
    (sa_dir / "namespace").write_text(NS)
    env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(cp.apiserver_port),
        "DORGU_SA_DIR": str(sa_dir),
        "KUBECONFIG": "/nonexistent",
    }
    options = {
        "lease_duration_s": 15, "webhook_check_interval_s": 2, "webhook_retry_interval_s": 1,
        "webhook_serving_validity_s": CERT_LIFETIME_S, "webhook_backdate_s": 0, "ws_auth_cache_ttl_s": 0,
    }  # fmt: skip
    op = Replica(identity="dorgu-0", args=[], env=env, log_dir=tmp_path)
    op.args = [
        "--components=applicationpersona,webhook,websocket",
        f"--webhook-url=https://127.0.0.1:{op.webhook_port}{WEBHOOK_PATH}",
        "--webhook-ip-addresses=127.0.0.1",
        f"--component-options={json.dumps(options)}",
    ]

    # -- Prometheus: the kit's rules with short `for:`, scraping the operator every second ----------------
    work = tmp_path / "prometheus"
    (work / "data").mkdir(parents=True)
    kit.rules_file(work / "rules.yaml", for_=FOR)
    server = PrometheusServer(ensure_binaries(), work / "data", config=prometheus_config(op.metrics_port))
    prom = Prometheus(server)
    watcher: CliStream | None = None
    server.start()
    op.start()
    try:
        wait(op.ready, f"/readyz of the operator\n{op.log_tail()}", timeout=120)
        wait(lambda: prom.values(f'up{{job="{kit.JOB}"}} == 1'), "Prometheus scraping the operator")
        first_not_after = _served_not_after(kube)
        assert {g["name"] for g in prom._get("/api/v1/rules")["groups"]} == {
            g["name"] for g in kit.rule_groups()
        }

        # The components' series are in Prometheus before anything happens, so it sees every change.
        for series in (
            "controller_runtime_webhook_latency_seconds_count", "dorgu_websocket_clients",
            "controller_runtime_reconcile_total", "dorgu_applicationpersonas",
        ):  # fmt: skip
            wait(lambda e=series: prom.values(e), f"{series} in Prometheus")

        # -- everything works --------------------------------------------------------------------------------
        for ns, mode in ((ENFORCING, "enforcing"), (ADVISORY, "advisory")):
            ensure_namespace(kube, ns, {**OPT_IN, "dorgu.io/webhook-mode": mode})
            _persona(kube, ns)
        attempt = iter(range(1000))

        def denied() -> bool:  # until the webhook's cache has the persona, a bad Deployment gets in
            bad = deployment(f"bad-{next(attempt)}", replicas=1, cpu="1", escalation=True)
            return _create_deployment(kube, ENFORCING, bad) == 403

        wait(denied, "the enforcing webhook to deny a Deployment that breaks the persona")
        assert _create_deployment(kube, ENFORCING, deployment("good")) == 201
        assert _create_deployment(kube, ADVISORY, deployment("bad", replicas=1, escalation=True)) == 201
        watcher = CliStream(
            "persona", "watch", "-A", "-o", "json", f"--kubeconfig={cp.kubeconfig}",
            f"--operator-url=ws://127.0.0.1:{op.ws_port}/ws",
        )  # fmt: skip

        expectations = {
            'dorgu_webhook_verdicts_total{mode="enforcing",outcome="denied"} > 0': "a denial",
            'dorgu_webhook_verdicts_total{mode="enforcing",outcome="allowed"} > 0': "an enforcing allow",
            'dorgu_webhook_verdicts_total{mode="advisory",outcome="warned"} > 0': "an advisory warning",
            "dorgu_websocket_clients > 0": "the watch's connection",
            "sum(dorgu_websocket_subscriptions) > 0": "the watch's subscription",
            "dorgu_applicationpersonas_validation_failed > 0": "the advisory persona failing validation",
            'sum(dorgu_applicationpersonas{phase!="Unset"}) == 2': "both personas with a phase",
        }
        for expr, what in expectations.items():
            wait(lambda e=expr: prom.values(e), f"{what} in Prometheus ({expr})")

        def expiry_is_the_secrets() -> bool:
            got = prom.values('dorgu_webhook_certificate_expiry_timestamp_seconds{certificate="serving"}')
            return got == [_served_not_after(kube)]

        wait(expiry_is_the_secrets, "the serving certificate's expiry in Prometheus")

        nudges = iter(range(1000))

        def has_data(expr: str) -> bool:
            if _finite(prom.values(expr)):
                return True
            # Rates need a change inside the window: one more review (and reconcile) while waiting.
            _create_deployment(kube, ADVISORY, deployment(f"more-{next(nudges)}"))
            return False

        queries = kit.dashboard_queries(rate_interval="10m")
        for title, expr in queries:
            wait(lambda e=expr: has_data(e), f"data for the dashboard panel {title!r}: {expr}", every=2)
        print(f"\n{len(queries)} dashboard queries evaluated in Prometheus, each returned data")

        # Rotation works: the first certificate is renewed, and the moment it would have alerted unrenewed
        # (a sixth of its lifetime before its expiry, plus `for:` and a margin) passes in silence.
        wait(lambda: _served_not_after(kube) != first_not_after, "the first certificate's renewal")
        silent_until = first_not_after - CERT_LIFETIME_S / 6 + 10
        while time.time() < silent_until:
            assert not prom.alert_states("DorguWebhookCertificateExpiring"), "an alert while rotation works"
            time.sleep(1)
        broken = ("DorguWebhookCertificateExpiring", "DorguReconcileErrors", "DorguOperatorDown")
        quiet = {name: prom.alert_states(name) for name in broken}
        assert quiet == {name: set() for name in broken}, "alerts before anything broke"

        # -- 1. certificate rotation breaks: the Secret can no longer be written -----------------------------
        kube.patch(f"/api/v1/namespaces/{NS}/secrets/{SECRET}", {"immutable": True})
        frozen = _served_not_after(kube)
        t0 = time.monotonic()
        alert = wait(
            lambda: prom.firing("DorguWebhookCertificateExpiring", certificate="serving"),
            "DorguWebhookCertificateExpiring to fire",
        )
        print(f"DorguWebhookCertificateExpiring firing {time.monotonic() - t0:.0f} s after rotation broke")
        assert _served_not_after(kube) == frozen  # nothing renewed it behind the test's back
        assert float(alert["value"]) < CERT_LIFETIME_S / 6  # seconds left: under half of the 40 s window
        assert "certificate or configuration update failed" in op.log.read_text(errors="replace")
        assert alert["annotations"]["runbook_url"].endswith("#dorguwebhookcertificateexpiring")

        # -- 2. reconciles fail: the operator may no longer write persona status -----------------------------
        role = kube.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{CLUSTER_ROLE}")
        for rule in role["rules"]:
            rule["resources"] = [r for r in rule["resources"] if r != "applicationpersonas/status"]
        role["rules"] = [r for r in role["rules"] if r["resources"]]
        kube.put(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{CLUSTER_ROLE}", role)
        for ns in (ENFORCING, ADVISORY):  # a spec change makes the controller reconcile (and fail) now
            kube.patch(
                f"/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas/shop",
                {"spec": {"scaling": {"minReplicas": 1, "maxReplicas": 5}}},
            )
        t0 = time.monotonic()
        wait(
            lambda: prom.firing("DorguReconcileErrors", controller="applicationpersona"),
            "DorguReconcileErrors to fire",
        )
        print(f"DorguReconcileErrors firing {time.monotonic() - t0:.0f} s after the status grant went")
        assert prom.values('controller_runtime_reconcile_errors_total{controller="applicationpersona"} > 0')

        # -- 3. the operator stops ---------------------------------------------------------------------------
        assert not prom.alert_states("DorguOperatorDown")
        assert op.stop() == 0, op.log_tail()
        t0 = time.monotonic()
        wait(lambda: prom.firing("DorguOperatorDown"), "DorguOperatorDown to fire")
        print(f"DorguOperatorDown firing {time.monotonic() - t0:.0f} s after the operator stopped")
    except AssertionError:
        print(f"--- operator log (tail) ---\n{op.log_tail(60)}")
        with contextlib.suppress(Exception):
            print("--- alerts ---", json.dumps(prom.alerts(), indent=1)[:4000])
        with contextlib.suppress(Exception):
            got = prom._get("/api/v1/query", query="controller_runtime_webhook_latency_seconds_count[10m]")
            print("--- webhook reviews ---", json.dumps(got)[:3000])
            got = prom._get("/api/v1/query", query="up[10m]")
            print("--- up ---", json.dumps(got)[:3000])
        raise
    finally:
        if watcher is not None:
            watcher.stop()
        op.stop()
        server.stop()
