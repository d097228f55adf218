"""What ``generate`` and ``persona generate|apply`` share: config → analysis → generator context."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.analyzer import analyze, dns_name, llm
from cli.analyzer.model import AppAnalysis
from cli.errors import InputError
from cli.generator import GenContext, docs
from cli.names import check_label
from cli.output import Output, warn
from cli.settings import Configs, first, load_all, profile_for, workspace_warning
from cli.spinner import Spinner

LLM_SLEEP: Callable[[float], None] = time.sleep
"""How the LLM step waits between retries (tests replace it so that they do not wait)."""


@dataclass
class Prepared:
    analysis: AppAnalysis
    configs: Configs
    ctx: GenContext
    assistant: llm.Assistant | None = None
    """The configured LLM provider, if any (``generate`` asks it for PERSONA.md too)."""


def prepare(args: dict[str, Any], out: Output, *, spinner: Spinner, manifests_path: str = "k8s") -> Prepared:
    raw = args.get("PATH") or "."
    app_dir = Path(raw).absolute()
    if not app_dir.exists():
        raise InputError(f"path does not exist: {app_dir}")
    if not app_dir.is_dir():
        raise InputError(f"not a directory: {app_dir} (point dorgu at the application's directory)")
    try:  # the app directory itself must be listable before any file in it (.dorgu.yaml …) is looked for
        with os.scandir(app_dir):
            pass
    except OSError as e:
        raise InputError(
            f"cannot read the application directory {app_dir}: {e.strerror} "
            "(make it readable and searchable, e.g. chmod a+rx)"
        ) from e
    namespace_flag = args.get("--namespace")
    if namespace_flag:
        check_label(namespace_flag, what="--namespace", suggestion=dns_name(namespace_flag))
    if args.get("--name"):
        check_label(args["--name"], what="--name", suggestion=dns_name(args["--name"]))
    configs = load_all(app_dir, config_flag=args.get("--config"))
    if configs.app.app.name:
        check_label(
            configs.app.app.name,
            what=f"app.name in {configs.app_path}",
            suggestion=dns_name(configs.app.app.name),
        )
    for note in configs.notes:
        warn(note)
    if configs.workspace_path is not None:
        print(f"Using config file: {configs.workspace_path}", file=out.err)
    if configs.workspace_ignored:
        warn(workspace_warning(configs.workspace_path, configs.workspace_ignored))
    g, ws = configs.global_, configs.workspace
    provider_name = first(args.get("--llm-provider"), ws.llm.provider, g.llm.provider, "")
    # The global key and endpoint belong to the global provider: a flag or workspace choosing another
    # provider gets them only from that provider's environment variables (an OpenAI key never goes to Gemini).
    own = not g.llm.provider or g.llm.provider == provider_name
    assistant = llm.setup(
        provider_name,
        api_key=g.llm.api_key if own else "",
        model=first(ws.llm.model, g.llm.model if own else "", ""),
        base_url=g.llm.base_url if own else "",  # never the workspace's (cli.settings: not a repo's)
        env=os.environ,
        warn=warn,
        sleep=LLM_SLEEP,
    )
    spinner.start()
    analysis = analyze(app_dir, app_config=configs.app, warn=warn)
    if assistant is not None:
        assistant.enhance(
            analysis,
            app_dir=app_dir.resolve(),
            app_config=configs.app,
            profile_for=lambda name: profile_for(ws, name),
            warn=warn,
        )
    if args.get("--name"):
        analysis.name = args["--name"]
    namespace = first(namespace_flag, g.defaults.namespace, "default")
    if not namespace_flag:
        check_label(namespace, what=f"defaults.namespace in {configs.global_path}")
    registry = first(ws.ci.registry, g.defaults.registry, "")
    ctx = GenContext(
        analysis=analysis,
        configs=configs,
        namespace=namespace,
        registry=registry,
        manifests_path=manifests_path,
    )
    return Prepared(analysis=analysis, configs=configs, ctx=ctx, assistant=assistant)


def llm_persona(prep: Prepared) -> None:
    """With a provider configured, have it write PERSONA.md (``prep.ctx.persona_markdown``); on any failure
    the template stays (warned)."""
    if prep.assistant is None:
        return
    prep.ctx.persona_markdown = prep.assistant.persona_markdown(
        prep.analysis,
        template=docs.persona_template(prep.ctx),
        instructions=prep.configs.app.app.instructions,
        warn=warn,
    )


def manifests_path_for(output: Path) -> str:
    """The output directory relative to the current directory (what Argo CD and CI see from the repo root)."""
    rel = os.path.relpath(output.absolute(), Path.cwd())
    return output.name if rel.startswith("..") else Path(rel).as_posix()
