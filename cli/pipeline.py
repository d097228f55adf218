"""What ``generate`` and ``persona generate|apply`` share: config → analysis → generator context."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.analyzer import dns_name, llm
from cli.analyzer.model import AppAnalysis
from cli.analyzer.project import Project, analyze_project
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
    """The main workload's (the compose file's primary service, else the first)."""
    configs: Configs
    ctx: GenContext
    """The main workload's context (what ``persona generate|apply`` describe)."""
    project: Project
    ctxs: list[GenContext]
    """One per workload, in the project's order."""
    assistant: llm.Assistant | None = None
    """The configured LLM provider, if any (``generate`` asks it for PERSONA.md too)."""


def git_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding ``.git`` (a directory, or a worktree's file)."""
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return None


def prepare(
    args: dict[str, Any],
    out: Output,
    *,
    spinner: Spinner,
    manifests_path: str = "k8s",
    output: Path | None = None,
) -> Prepared:
    """``output``: the output directory; when it lies inside the app's git repository, the Argo CD path and
    the CI paths are relative to that repository's root and the workflow goes to its ``.github/``."""
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
    service = args.get("--service") or ""
    project = analyze_project(app_dir, app_config=configs.app, warn=warn, service=service)
    if assistant is not None:
        # Each workload built from source, checked against its own analysis (an image-only service has
        # no source to propose anything about).
        for w in project.workloads:
            if w.built:
                assistant.enhance(
                    w.analysis,
                    app_dir=app_dir.resolve(),
                    app_config=configs.app,
                    profile_for=lambda name: profile_for(ws, name),
                    warn=warn,
                )
    if args.get("--name"):
        if project.multi:
            project.name = args["--name"]
        else:
            project.workloads[0].analysis.name = args["--name"]
            project.name = args["--name"]
    root = git_root(app_dir.resolve())
    repo_prefix = ""
    workflow_path = "../.github/workflows/deploy.yaml"
    if root is not None:
        repo_prefix = app_dir.resolve().relative_to(root).as_posix()
        repo_prefix = "" if repo_prefix == "." else repo_prefix
        if output is not None and output.absolute().resolve().is_relative_to(root):
            out_abs = output.absolute().resolve()
            manifests_path = out_abs.relative_to(root).as_posix()
            workflow_path = Path(
                os.path.relpath(root / ".github" / "workflows" / "deploy.yaml", out_abs)
            ).as_posix()
    namespace = first(namespace_flag, g.defaults.namespace, "default")
    if not namespace_flag:
        check_label(namespace, what=f"defaults.namespace in {configs.global_path}")
    registry = first(ws.ci.registry, g.defaults.registry, "")
    ctxs = [
        GenContext(
            analysis=w.analysis,
            configs=configs,
            namespace=namespace,
            registry=registry,
            manifests_path=manifests_path,
            workload=w,
            project=project.name if project.multi else "",
            repo_prefix=repo_prefix,
            workflow_path=workflow_path,
        )
        for w in project.workloads
    ]
    deployments = [c for c in ctxs if c.workload is None or c.workload.kind == "Deployment"] or ctxs
    main = next((c for c in ctxs if c.workload and c.workload.service == project.primary), deployments[0])
    return Prepared(
        analysis=main.analysis, configs=configs, ctx=main, project=project, ctxs=ctxs, assistant=assistant
    )


def llm_persona(prep: Prepared) -> None:
    """With a provider configured, have it write PERSONA.md (``prep.ctx.persona_markdown``); on any failure
    the template stays (warned). A project of several workloads keeps the template (one section each)."""
    if prep.assistant is None or prep.project.multi:
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
