"""``dorgu operator``'s component options: one typed settings struct per component, checked before anything
starts, the defaults in the structs only."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from docopt import docopt

from cli import operator
from controllers.component import lease_settings
from controllers.settings import ArgoCDSettings, ClusterPersonaSettings, PersonaSettings
from tests.cli.conftest import ROOT, Result
from webhook.server import WebhookSettings, settings_from_options
from webhook.ws.server import WebSocketSettings

ALL = ",".join(operator.COMPONENTS)


def plan(*argv: str) -> dict[str, dict[str, Any]]:
    """Each component's options as ``dorgu operator`` hands them to its child."""
    specs, _, _ = operator.plan(docopt(operator.__doc__ or "", argv=["operator", *argv]))
    return {s.name: s.options for s in specs}


def child_settings(name: str, options: dict[str, Any]) -> Any:
    """What the component's ``run(ctx)`` builds from ``ctx.options``."""
    if name == "webhook":
        return settings_from_options(options)
    if name == "websocket":
        return WebSocketSettings.from_options(options)
    return msgspec.convert(options, type=operator.settings_type(name))


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (['--component-options={"lease_duraton_s": 15}'], ["'lease_duraton_s'", "applicationpersona",
                                                           "did you mean 'lease_duration_s'?"]),
        (["--components=applicationpersona,argocd", '--component-options={"ws_heartbeat_s": 1}'],
         ["'ws_heartbeat_s'", "applicationpersona, argocd", "an option of websocket"]),
        (["--components=websocket", '--component-options={"nonsense": 1}'],
         ["'nonsense'", "websocket", "no component takes it"]),
        (['--component-options={"lease_duration_s": "15"}'],
         ["applicationpersona", "Expected `float`, got `str`", "$.lease_duration_s"]),
        (["--components=clusterpersona", '--component-options={"workers": 0}'],
         ["clusterpersona", "$.workers"]),
        (["--components=webhook", '--component-options={"webhook_mode": "strict"}'],
         ["webhook", "webhook_mode must be advisory or enforcing"]),
        (["--components=websocket", '--component-options={"ws_auth": "basic"}'],
         ["websocket", "ws_auth must be token or none"]),
        # issue 17, item 2: no authentication is for a loopback listener only.
        (["--components=websocket", "--ws-auth=none"],
         ["websocket", "ws_auth none needs a loopback listener", "'0.0.0.0'"]),
        (["--components=websocket", "--ws-auth=none", "--websocket-addr=10.0.0.7:9090"],
         ["websocket", "ws_auth none needs a loopback listener", "'10.0.0.7'"]),
        (["--components=websocket", '--component-options={"ws_auth": "none", "ws_host": "dorgu.example"}'],
         ["websocket", "ws_auth none needs a loopback listener", "'dorgu.example'"]),
    ],
)  # fmt: skip
def test_a_bad_option_is_a_usage_error_naming_it(
    run_cli: Callable[..., Result], argv: list[str], words: list[str]
) -> None:
    r = run_cli("operator", "--kubeconfig=/nonexistent", *argv)
    assert r.code == 2, r.err
    assert r.err.startswith("Error: --component-options: ")
    for w in words:
        assert w in r.err


def test_namespaces_reach_every_component() -> None:
    """``--namespaces`` is one option every component takes (their settings turn it into their scope)."""
    options = plan(f"--components={ALL}", "--namespaces=a, b,a")
    assert {name: o.get("namespaces") for name, o in options.items()} == dict.fromkeys(
        operator.COMPONENTS, "a,b"
    )
    assert settings_from_options(options["webhook"]).scope == ("a", "b")
    assert WebSocketSettings.from_options(options["websocket"]).scope == ("a", "b")
    # Empty (deploy/'s ConfigMap default) or left out: every namespace.
    assert all("namespaces" not in o for o in plan(f"--components={ALL}", "--namespaces=").values())
    assert settings_from_options(plan("--components=webhook")["webhook"]).scope is None


def test_a_bad_namespace_is_a_usage_error(run_cli: Callable[..., Result]) -> None:
    r = run_cli("operator", "--kubeconfig=/nonexistent", "--namespaces=a,Not_A_Name")
    assert r.code == 2
    assert "--namespaces: namespace 'Not_A_Name' is not a valid Kubernetes name" in r.err


def test_each_component_gets_the_options_it_takes_and_they_round_trip() -> None:
    argv = [
        f"--components={ALL}", "--leader-elect=false", "--lease-namespace=ops", "--workers=7",
        "--revalidate-interval=5", "--heartbeat-interval=600", "--prometheus-url=http://prom:9090",
        "--webhook-mode=enforcing", "--webhook-bind-address=127.0.0.2:1234",
        "--webhook-url=https://127.0.0.1:1234/validate-deployment", "--webhook-ip-addresses=127.0.0.1,::1",
        "--websocket-addr=127.0.0.3:4321", "--ws-auth=none",
        '--component-options={"lease_duration_s": 30, "crd_poll_interval_s": 1, "ws_auth_cache_ttl_s": 0,'
        ' "webhook_check_interval_s": 2, "bootstrap": false}',
    ]  # fmt: skip
    options = plan(*argv)
    assert set(options) == set(operator.COMPONENTS)
    for name, o in options.items():
        assert set(o) <= operator.option_names(name), name
        struct = msgspec.convert(o, type=operator.settings_type(name))
        assert msgspec.convert(msgspec.to_builtins(struct), type=type(struct)) == struct

    ap = msgspec.convert(options["applicationpersona"], type=PersonaSettings)
    assert (ap.workers, ap.revalidate_interval_s, ap.heartbeat_interval_s) == (7, 5.0, 600.0)
    assert (ap.prometheus_url, ap.leader_elect, ap.lease_namespace, ap.lease_duration_s) == (
        "http://prom:9090", False, "ops", 30.0,
    )  # fmt: skip
    assert lease_settings(ap, identity="me", default_name="dorgu-applicationpersona") is None
    cp = msgspec.convert(options["clusterpersona"], type=ClusterPersonaSettings)
    assert (cp.workers, cp.bootstrap, cp.lease_duration_s) == (7, False, 30.0)
    argo = msgspec.convert(options["argocd"], type=ArgoCDSettings)
    assert (argo.workers, argo.crd_poll_interval_s) == (7, 1.0)

    wh = settings_from_options(options["webhook"])
    assert (wh.mode.value, wh.host, wh.port, wh.namespace, wh.check_interval_s) == (
        "enforcing", "127.0.0.2", 1234, "ops", 2.0,
    )  # fmt: skip
    assert wh.ip_addresses == ("127.0.0.1", "::1")
    assert wh.configuration.url == "https://127.0.0.1:1234/validate-deployment"
    ws = WebSocketSettings.from_options(options["websocket"])
    assert (ws.host, ws.port, ws.auth, ws.auth_cache_ttl_s) == ("127.0.0.3", 4321, "none", 0.0)
    assert options["websocket"]["lease_namespace"] == "ops"  # where its certificate Secret lives


def test_the_leases_of_the_controllers() -> None:
    s = lease_settings(PersonaSettings(), identity="me", default_name="dorgu-applicationpersona")
    assert s is not None
    assert (s.name, s.namespace, s.identity) == ("dorgu-applicationpersona", "dorgu-system", "me")
    assert (s.lease_duration_s, s.renew_deadline_s, s.retry_period_s, s.spread_delay_s) == (15, 10, 2, 2)
    assert s.rebalance and s.presence_period_s is None and s.rebalance_period_s is None
    named = ArgoCDSettings(lease_name="bench-argocd", lease_namespace="ns", presence_period_s=1)
    s = lease_settings(named, identity="me", default_name="dorgu-argocd")
    assert s is not None and (s.name, s.namespace, s.presence_period_s) == ("bench-argocd", "ns", 1.0)


def _documented_defaults() -> dict[str, str]:
    """``--flag`` → the ``(default: X)`` its help states, for the flags that set component options."""
    doc = operator.__doc__ or ""
    out = {}
    for m in re.finditer(r"^  (--[\w-]+)=\S+(.*?)(?=^  -|\Z)", doc, re.M | re.S):
        d = re.search(r"\(default: ([^,)\s]+)[,)]", m.group(2))
        if d:
            out[m.group(1)] = d.group(1)
    return out


def test_the_documented_flag_defaults_are_the_structs() -> None:
    """A flag left out leaves the struct's default; the help's stated default must be that value."""
    documented = _documented_defaults()
    flags = ("--leader-elect", "--revalidate-interval", "--heartbeat-interval", "--workers", "--webhook-mode",
             "--webhook-bind-address", "--websocket-addr", "--ws-auth")  # fmt: skip
    assert set(flags) <= set(documented), documented
    assert documented["--workers"] == "16"
    bare = plan(f"--components={ALL}")
    for flag in flags:
        given = plan(f"--components={ALL}", f"{flag}={documented[flag]}")
        assert given != bare, flag  # the flag reached some component...
        for name in operator.COMPONENTS:  # ...and changed nothing it builds
            assert child_settings(name, given[name]) == child_settings(name, bare[name]), (flag, name)


def test_every_controller_defaults_to_16_workers() -> None:
    assert PersonaSettings().workers == ClusterPersonaSettings().workers == ArgoCDSettings().workers == 16


def test_default_options_make_the_default_settings() -> None:
    """The runtime settings classes keep constructor defaults for in-process use; they must agree with the
    options structs, where the components' defaults live."""
    assert settings_from_options({}) == WebhookSettings()
    assert WebSocketSettings.from_options({}) == WebSocketSettings()


def test_an_unknown_key_fails_in_the_child_too() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `lease_duraton_s`"):
        msgspec.convert({"lease_duraton_s": 1}, type=PersonaSettings)
    with pytest.raises(ValueError, match="unknown field `ws_hearbeat_s`"):
        WebSocketSettings.from_options({"ws_hearbeat_s": 1})
    with pytest.raises(ValueError, match="unknown field `webhook_prot`"):
        settings_from_options({"webhook_prot": 1})


def test_checking_options_loads_no_component() -> None:
    """The supervisor process checks options with the light settings modules, never the components."""
    code = (
        "import sys, docopt; from cli import operator as o;"
        f"o.plan(docopt.docopt(o.__doc__, argv=['operator', '--components={ALL}']));"
        "loaded = [m for m in sys.modules if m.startswith(('aiohttp', 'controllers.', 'webhook.'))];"
        "print(sorted(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = ["controllers.settings", "webhook.settings", "webhook.ws", "webhook.ws.settings"]
    assert out.stdout.strip() == str(loaded)


def test_wss_is_the_default_off_loopback_and_audiences_are_a_flag() -> None:
    """Issue 17, item 1: a listener other than loopback serves wss:// (the certificate Secret's pair) unless
    told ``ws_tls: off``; ``--ws-token-audiences`` reaches the authenticator."""
    ws = WebSocketSettings.from_options(plan("--components=websocket", "--lease-namespace=ops")["websocket"])
    assert (ws.host, ws.tls_mode, ws.tls_secret_namespace) == ("0.0.0.0", "secret", "ops")
    assert ws.tls_secret_name == "dorgu-webhook-certs" and ws.token_audiences == ()
    local = plan("--components=websocket", "--websocket-addr=127.0.0.1:9090", "--ws-token-audiences=dorgu,x")
    ws = WebSocketSettings.from_options(local["websocket"])
    assert (ws.tls_mode, ws.token_audiences) == ("off", ("dorgu", "x"))
    assert WebSocketSettings.from_options({"ws_tls": "secret", "ws_host": "127.0.0.1"}).tls_mode == "secret"
    assert WebSocketSettings.from_options({"ws_tls": "off"}).tls_mode == "off"
    assert WebSocketSettings.from_options({"ws_tls_cert_file": "/c", "ws_tls": "off"}).tls_mode == "files"
    with pytest.raises(ValueError, match="ws_tls must be auto, secret or off"):
        WebSocketSettings.from_options({"ws_tls": "on"})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.9.9", "::1", "localhost"])
def test_no_authentication_is_allowed_on_a_loopback_listener(host: str) -> None:
    """Issue 17, item 2: ``--ws-auth=none`` serves loopback listeners only; settings built directly keep
    the rule too."""
    ws = WebSocketSettings.from_options({"ws_auth": "none", "ws_host": host})
    assert (ws.host, ws.auth) == (host, "none")
    with pytest.raises(ValueError, match="loopback"):
        WebSocketSettings(auth="none", host="0.0.0.0")


def test_shards_expand_the_persona_controller_into_a_ring_and_a_sharder() -> None:
    unsharded = plan("--components=applicationpersona,webhook")
    assert set(unsharded) == {"applicationpersona", "webhook"}
    assert set(plan("--components=applicationpersona", "--shards=off")) == {"applicationpersona"}
    auto = plan("--components=applicationpersona,webhook", "--shards=auto", "--workers=3")
    assert set(auto) == {"applicationpersona-shard-0", "applicationpersona-sharder", "webhook"}
    three = plan("--components=applicationpersona", "--shards=3", "--workers=3")
    assert sorted(three) == [
        *(f"applicationpersona-shard-{i}" for i in range(3)),
        "applicationpersona-sharder",
    ]
    for i in range(3):
        settings = child_settings("applicationpersona", three[f"applicationpersona-shard-{i}"])
        assert settings.shard_index == i and settings.workers == 3
    assert child_settings("applicationpersona", three["applicationpersona-sharder"]).shard_index is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--components=applicationpersona", "--shards=0"],
            "--shards must be auto, off or a positive number",
        ),
        (
            ["--components=applicationpersona", "--shards=many"],
            "--shards must be auto, off or a positive number",
        ),
        (["--components=webhook", "--shards=2"], "which this run does not include"),
        (["--components=applicationpersona", "--shards=2", "--leader-elect=false"], "needs leader election"),
    ],
)
def test_bad_shards_are_usage_errors(run_cli: Callable[..., Result], argv: list[str], message: str) -> None:
    r = run_cli("operator", "--kubeconfig=/nonexistent", *argv)
    assert r.code == 2, r.err
    assert message in r.err
