"""A small test controller: ConfigMap ``data.value`` → annotation ``test.dorgu.io/derived: v=<value>``."""

from __future__ import annotations

import msgspec

from dorgu.runtime.client import ApiClient
from dorgu.runtime.clock import Clock
from dorgu.runtime.controller import Controller, ControllerSettings, Request, Result
from dorgu.runtime.informer import Informer, InformerSettings
from dorgu.runtime.meta import ObjectMeta
from dorgu.runtime.resource import CONFIGMAPS

ANNOTATION = "test.dorgu.io/derived"


class ConfigMap(msgspec.Struct, kw_only=True):
    metadata: ObjectMeta
    data: dict[str, str] | None = None


def derived(cm: ConfigMap) -> str:
    return f"v={(cm.data or {}).get('value', '')}"


def build(
    client: ApiClient,
    *,
    namespace: str,
    workers: int = 4,
    informer_settings: InformerSettings | None = None,
    clock: Clock | None = None,
) -> tuple[Informer[ConfigMap], Controller]:
    informer: Informer[ConfigMap] = Informer(
        client, CONFIGMAPS, item_type=ConfigMap, namespace=namespace, settings=informer_settings, clock=clock
    )

    async def reconcile(req: Request) -> Result | None:
        cm = informer.store.get(req.key)
        if cm is None:
            return None
        want = derived(cm)
        if (cm.metadata.annotations or {}).get(ANNOTATION) == want:
            return None
        await client.patch(
            CONFIGMAPS, req.name, {"metadata": {"annotations": {ANNOTATION: want}}},
            namespace=req.namespace, decode=False,
        )  # fmt: skip
        return None

    controller = Controller(
        settings=ControllerSettings(name="cm-derived", workers=workers), reconcile=reconcile, clock=clock
    )
    controller.watch_for(informer)
    return informer, controller
