"""What ``generate`` and ``persona generate|apply`` share: config → analysis → generator context."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.analyzer import analyze
from cli.analyzer.llm import make_provider
from cli.analyzer.model import AppAnalysis
from cli.errors import InputError
from cli.generator import GenContext
from cli.output import Output, warn
from cli.settings import Configs, first, load_all, workspace_warning
from cli.spinner import Spinner


@dataclass
class Prepared:
    analysis: AppAnalysis
    configs: Configs
    ctx: GenContext


def prepare(args: dict[str, Any], out: Output, *, spinner: Spinner, manifests_path: str = "k8s") -> Prepared:
    raw = args.get("PATH") or "."
    app_dir = Path(raw).absolute()
    if not app_dir.exists():
        raise InputError(f"path does not exist: {app_dir}")
    if not app_dir.is_dir():
        raise InputError(f"not a directory: {app_dir} (point dorgu at the application's directory)")
    configs = load_all(app_dir, config_flag=args.get("--config"))
    if configs.workspace_path is not None:
        print(f"Using config file: {configs.workspace_path}", file=out.err)
    if configs.workspace_ignored:
        warn(workspace_warning(configs.workspace_path, configs.workspace_ignored))
    g, ws = configs.global_, configs.workspace
    provider_name = first(args.get("--llm-provider"), ws.llm.provider, g.llm.provider, "")
    provider = None
    if provider_name and provider_name != "none":
        provider = make_provider(
            provider_name,
            api_key=g.llm.api_key,
            model=first(ws.llm.model, g.llm.model, ""),
            base_url=g.llm.base_url,  # never the workspace's (cli.settings: endpoints are not a repo's)
        )
    spinner.start()
    analysis = analyze(app_dir, app_config=configs.app, provider=provider, warn=warn)
    if args.get("--name"):
        from cli.analyzer import dns_name

        if dns_name(args["--name"]) != args["--name"]:
            raise InputError(
                f"--name {args['--name']!r} is not a valid Kubernetes name (try {dns_name(args['--name'])!r})"
            )
        analysis.name = args["--name"]
    namespace = first(args.get("--namespace"), g.defaults.namespace, "default")
    registry = first(ws.ci.registry, g.defaults.registry, "")
    ctx = GenContext(
        analysis=analysis,
        configs=configs,
        namespace=namespace,
        registry=registry,
        manifests_path=manifests_path,
    )
    return Prepared(analysis=analysis, configs=configs, ctx=ctx)


def manifests_path_for(output: Path) -> str:
    """The output directory relative to the current directory (what Argo CD and CI see from the repo root)."""
    rel = os.path.relpath(output.absolute(), Path.cwd())
    return output.name if rel.startswith("..") else Path(rel).as_posix()
