"""One leader-election candidate as an OS process of its own, for the leader-election tests.

``python -m tests.runtime.programs.leader_candidate --server URL --ca FILE --token T --identity ID
--lease NAME --namespace NS --durations 3,2,0.5 --user-agent UA`` (from the repository root,
``PYTHONPATH`` set to it).

It runs on uvloop with one :class:`~dorgu.runtime.client.ApiClient` fenced by the election
(:meth:`LeaderElector.install_guard`). While leading it merge-patches the ConfigMap ``--configmap`` every
``--interval`` seconds with ``{"data": {"writer": ID, "n": counter}}`` (creating it if missing). Every step is
one JSON line on stdout (``event`` plus ``mono``, the system-wide monotonic clock, and ``wall``): ``started``,
``leader`` (the observed holder changed), ``acquired``, ``write``, ``refused`` (the guard said no),
``write_error``, ``lost``, ``handed_over`` (``--rebalance``: the Lease went to a candidate holding fewer),
``released`` (a leader's graceful stop), ``exit``.

SIGTERM stops it gracefully: the write loop finishes the write in flight, the Lease is released, exit 0.
Losing the Lease (:class:`LeadershipLost`) exits with status 3, as a controller process would (its supervisor
restarts it); handing it over exits with 75 (the supervisor's "start me afresh at once").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from dorgu.runtime.client import ApiClient
from dorgu.runtime.config import ConnectionSettings
from dorgu.runtime.errors import AlreadyExists, ApiError, NotFound
from dorgu.runtime.leaderelection import (
    LeaderElectionSettings,
    LeaderElector,
    LeadershipHandedOver,
    LeadershipLost,
    NotLeading,
)
from dorgu.runtime.resource import CONFIGMAPS

EXIT_LOST = 3
EXIT_HANDED_OVER = 75


def emit(event: str, **fields: Any) -> None:
    line = {"event": event, "mono": time.monotonic(), "wall": time.time(), **fields}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="leader_candidate", description=__doc__.split("\n\n")[0])
    p.add_argument("--server", required=True)
    p.add_argument("--ca", required=True, help="PEM file of the server's CA")
    p.add_argument("--token", required=True)
    p.add_argument("--identity", required=True)
    p.add_argument("--lease", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--durations", default="15,10,2", help="lease,renew,retry seconds")
    p.add_argument("--user-agent", default=None, help="default: dorgu-test/<identity>")
    p.add_argument("--configmap", default="leader-writes")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between writes while leading")
    p.add_argument("--group", default="dorgu")
    p.add_argument("--spread-delay", type=float, default=0.0)
    p.add_argument("--rebalance", action="store_true", help="hand surplus Leases of the group over")
    p.add_argument("--balance-period", type=float, default=None, help="presence and rebalance period")
    return p.parse_args(argv)


async def write_once(client: ApiClient, args: argparse.Namespace, n: int) -> dict[str, Any]:
    data = {"writer": args.identity, "n": str(n)}
    try:
        return dict(await client.patch(CONFIGMAPS, args.configmap, {"data": data}, namespace=args.namespace))
    except NotFound:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": args.configmap}, "data": data}
        try:
            return dict(await client.create(CONFIGMAPS, body, namespace=args.namespace))
        except AlreadyExists:  # another writer created it between our patch and create: patch again
            return dict(
                await client.patch(CONFIGMAPS, args.configmap, {"data": data}, namespace=args.namespace)
            )


async def amain(args: argparse.Namespace) -> int:
    lease_s, renew_s, retry_s = (float(x) for x in args.durations.split(","))
    conn = ConnectionSettings(
        server=args.server,
        ca_data=Path(args.ca).read_bytes(),
        token=args.token,
        user_agent=args.user_agent or f"dorgu-test/{args.identity}",
    )
    client = ApiClient(conn)
    elector = LeaderElector(
        client,
        LeaderElectionSettings(
            name=args.lease,
            namespace=args.namespace,
            identity=args.identity,
            lease_duration_s=lease_s,
            renew_deadline_s=renew_s,
            retry_period_s=retry_s,
            group=args.group,
            spread_delay_s=args.spread_delay,
            rebalance=args.rebalance,
            presence_period_s=args.balance_period,
            rebalance_period_s=args.balance_period,
        ),
        on_new_leader=lambda holder: emit("leader", holder=holder),
    )
    elector.install_guard()
    stop = asyncio.Event()
    leading_started = False

    async def leading() -> None:
        nonlocal leading_started
        leading_started = True
        emit("acquired", identity=args.identity)
        n = 0
        while not stop.is_set():
            n += 1
            sent = time.monotonic()
            try:
                obj = await write_once(client, args, n)
            except NotLeading as e:
                emit("refused", n=n, error=str(e))
            except (ApiError, OSError, TimeoutError) as e:
                emit("write_error", n=n, error=str(e))
            else:
                emit("write", n=n, sent_mono=sent, rv=obj["metadata"]["resourceVersion"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=args.interval)

    run = asyncio.create_task(elector.run(leading))

    def on_sigterm() -> None:
        stop.set()
        if not leading_started:
            run.cancel()  # still contending: nothing to finish; run() releases if it just won

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    loop.add_signal_handler(signal.SIGINT, on_sigterm)
    emit("started", identity=args.identity, pid=os.getpid(), lease=args.lease)
    code = 0
    try:
        await run
    except LeadershipHandedOver as e:
        emit("handed_over", error=str(e))
        code = EXIT_HANDED_OVER
    except LeadershipLost as e:
        emit("lost", error=str(e))
        code = EXIT_LOST
    except asyncio.CancelledError:
        if not run.cancelled():
            raise
    if code == 0 and leading_started:
        spec = (elector._lease or {}).get("spec") or {}  # what our release wrote (holder "" if it landed)
        emit("released", holder=spec.get("holderIdentity"))
    await client.close()
    emit("exit", code=code)
    return code


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s {args.identity} %(name)s %(message)s"
    )
    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
