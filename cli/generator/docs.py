"""``PERSONA.md`` (the LLM's when one wrote it, else the deterministic template) and the GitHub Actions
workflow (fixed text)."""

from __future__ import annotations

import posixpath

from cli.generator.context import GenContext


def persona_md(ctx: GenContext) -> str:
    """PERSONA.md: the LLM-written text when there is one (``ctx.persona_markdown``), else the template."""
    return ctx.persona_markdown if ctx.persona_markdown is not None else persona_template(ctx)


def persona_template(ctx: GenContext) -> str:
    """The deterministic PERSONA.md: the same analysis always gives the same text."""
    a, app = ctx.analysis, ctx.configs.app
    out = [f"# {a.name}", "", "## Overview", "", a.description]
    if app.app.instructions.strip():
        out += ["", "## Application Context", "", app.app.instructions.strip()]
    out += [
        "",
        "## Technical Stack",
        "",
        f"- **Language:** {a.language}",
        f"- **Framework:** {a.framework or 'none detected'}",
        f"- **Type:** {a.type}",
        "",
        "## API/Interfaces",
        "",
    ]
    out += [f"- Port {p.port} ({p.protocol}): {p.purpose}" for p in a.ports] or ["No ports exposed."]
    out += ["", "## External Dependencies", ""]
    out += [f"- **{d.name}** ({d.type}){' (required)' if d.required else ''}" for d in a.dependencies] or [
        "No external dependencies detected."
    ]
    res = ctx.resources()
    s = a.scaling
    scaling = f"- **Scaling:** Min {s.min_replicas} replicas, Max {s.max_replicas} replicas"
    if s.target_cpu_percent:
        scaling += f", Target CPU {s.target_cpu_percent}%"
    if s.target_memory_percent:
        scaling += f", Target Memory {s.target_memory_percent}%"
    out += [
        "",
        "## Resource Profile",
        "",
        f"- **Profile:** {a.resource_profile}",
        f"- **Requests:** CPU {res.requests.cpu}, memory {res.requests.memory}",
        f"- **Limits:** CPU {res.limits.cpu}, memory {res.limits.memory}",
        scaling,
        "",
        "## Health & Monitoring",
        "",
    ]
    hc = a.health_check
    if hc and hc.path:
        out.append(f"- **Liveness:** {hc.path} (port {hc.port})")
        out.append(f"- **Readiness:** {hc.readiness_path or hc.path} (port {hc.port})")
    else:
        out.append("No health check configured.")
    if a.code.metrics_path:
        out.append(f"- **Metrics:** {a.code.metrics_path}")
    ph = "[PLACEHOLDER]"
    out += [
        "",
        "## Ownership",
        "",
        f"- **Team:** {a.team or ph}",
        f"- **Contact:** {a.owner or ph}",
        f"- **Repository:** {a.repository or ph}",
        "",
        "## Operational Notes",
        "",
    ]
    ops = app.operations
    notes = []
    if ops.runbook:
        notes.append(f"- **Runbook:** {ops.runbook}")
    if ops.on_call:
        notes.append(f"- **On-Call:** {ops.on_call}")
    if ops.maintenance_window:
        notes.append(f"- **Maintenance Window:** {ops.maintenance_window}")
    if ops.alerts:
        notes += ["", "### Configured Alerts", ""] + [f"- {al}" for al in ops.alerts]
    out += notes or ["*Add operational notes here after deploying the application.*"]
    return "\n".join(out) + "\n"


_WORKFLOW = """\
name: Build and Deploy

on:
  push:
    branches: [main, master]
  pull_request:
    branches: [main, master]

env:
  REGISTRY: {registry}
  IMAGE_NAME: {registry}/{name}

jobs:
  build:
    runs-on: ubuntu-latest
    permissions:
      contents: read
      packages: write
    steps:
      - name: Checkout
        uses: actions/checkout@v4

      - name: Set up Docker Buildx
        uses: docker/setup-buildx-action@v3

      - name: Log in to the registry
        if: github.event_name != 'pull_request'
        uses: docker/login-action@v3
        with:
          registry: ${{{{ env.REGISTRY }}}}
          username: ${{{{ github.actor }}}}
          password: ${{{{ secrets.GITHUB_TOKEN }}}}

      - name: Extract metadata
        id: meta
        uses: docker/metadata-action@v5
        with:
          images: ${{{{ env.IMAGE_NAME }}}}
          tags: |
            type=ref,event=branch
            type=ref,event=pr
            type=sha,prefix=
            type=raw,value=latest,enable={{{{is_default_branch}}}}

      - name: Build and push
        uses: docker/build-push-action@v5
        with:
          context: {context}
          push: ${{{{ github.event_name != 'pull_request' }}}}
          tags: ${{{{ steps.meta.outputs.tags }}}}
          labels: ${{{{ steps.meta.outputs.labels }}}}
          cache-from: type=gha
          cache-to: type=gha,mode=max

  deploy:
    needs: build
    runs-on: ubuntu-latest
    if: github.event_name != 'pull_request'
    permissions:
      contents: write
    steps:
      - name: Checkout
        uses: actions/checkout@v4

      - name: Update the image tag
        run: |
          SHORT_SHA=$(echo "${{{{ github.sha }}}}" | cut -c1-7)
          IMAGE="${{{{ env.IMAGE_NAME }}}}:${{SHORT_SHA}}"
          sed -i -E "s|^(\\s*image: ).*$|\\1${{IMAGE}}|" {manifests}/deployment.yaml

      - name: Commit and push
        run: |
          git config user.name "github-actions[bot]"
          git config user.email "github-actions[bot]@users.noreply.github.com"
          git add {manifests}/deployment.yaml
          git diff --staged --quiet || git commit -m "chore: update image to ${{{{ github.sha }}}}"
          git push
"""


def _join(prefix: str, rel: str) -> str:
    """A path relative to the repository root (POSIX), from one relative to the app directory."""
    joined = posixpath.normpath(posixpath.join(prefix or ".", rel or "."))
    return joined


def _build_extra(ctx: GenContext, indent: str) -> str:
    """``file:``/``target:`` lines of the build step, unless the context's Dockerfile / last stage."""
    w = ctx.workload
    lines = ""
    if w is not None and w.dockerfile:
        default = posixpath.normpath(posixpath.join(w.build_context or ".", "Dockerfile"))
        if posixpath.normpath(w.dockerfile) != default:
            lines += f"{indent}file: {_join(ctx.repo_prefix, w.dockerfile)}\n"
    if w is not None and w.target:
        lines += f"{indent}target: {w.target}\n"
    return lines


def workflow(ctxs: list[GenContext]) -> str:
    """One build per workload built from source (a matrix when several), then the deploy job pins each
    image in its manifest. Contexts and paths are relative to the git repository root, where the workflow
    runs."""
    ctx = ctxs[0]
    registry = ctx.registry.rstrip("/") or "ghcr.io/${{ github.repository_owner }}"
    if len(ctxs) == 1 and not ctx.project:
        context = _join(ctx.repo_prefix, ctx.analysis.source_dir or ".")
        text = _WORKFLOW.format(
            registry=registry, name=ctx.name, manifests=ctx.manifests_path, context=context
        )
        extra = _build_extra(ctx, "          ")
        if extra:
            anchor = f"          context: {context}\n"
            text = text.replace(anchor, anchor + extra, 1)
        return text
    include = ""
    for c in ctxs:
        w = c.workload
        assert w is not None
        include += f"          - service: {c.name}\n"
        include += f"            context: {_join(c.repo_prefix, w.build_context)}\n"
        df = w.dockerfile or posixpath.join(w.build_context or ".", "Dockerfile")
        include += f"            file: {_join(c.repo_prefix, df)}\n"
        include += f'            target: "{w.target}"\n'
    files = [f"{ctx.manifests_path}/{c.name}/deployment.yaml" for c in ctxs]
    return _PROJECT_WORKFLOW.format(
        registry=registry,
        include=include.rstrip("\n"),
        services=" ".join(c.name for c in ctxs),
        manifests=ctx.manifests_path,
        files=" ".join(files),
    )


_PROJECT_WORKFLOW = """\
name: Build and Deploy

on:
  push:
    branches: [main, master]
  pull_request:
    branches: [main, master]

env:
  REGISTRY: {registry}

jobs:
  build:
    runs-on: ubuntu-latest
    permissions:
      contents: read
      packages: write
    strategy:
      matrix:
        include:
{include}
    steps:
      - name: Checkout
        uses: actions/checkout@v4

      - name: Set up Docker Buildx
        uses: docker/setup-buildx-action@v3

      - name: Log in to the registry
        if: github.event_name != 'pull_request'
        uses: docker/login-action@v3
        with:
          registry: ${{{{ env.REGISTRY }}}}
          username: ${{{{ github.actor }}}}
          password: ${{{{ secrets.GITHUB_TOKEN }}}}

      - name: Extract metadata
        id: meta
        uses: docker/metadata-action@v5
        with:
          images: ${{{{ env.REGISTRY }}}}/${{{{ matrix.service }}}}
          tags: |
            type=ref,event=branch
            type=ref,event=pr
            type=sha,prefix=
            type=raw,value=latest,enable={{{{is_default_branch}}}}

      - name: Build and push
        uses: docker/build-push-action@v5
        with:
          context: ${{{{ matrix.context }}}}
          file: ${{{{ matrix.file }}}}
          target: ${{{{ matrix.target }}}}
          push: ${{{{ github.event_name != 'pull_request' }}}}
          tags: ${{{{ steps.meta.outputs.tags }}}}
          labels: ${{{{ steps.meta.outputs.labels }}}}
          cache-from: type=gha,scope=${{{{ matrix.service }}}}
          cache-to: type=gha,mode=max,scope=${{{{ matrix.service }}}}

  deploy:
    needs: build
    runs-on: ubuntu-latest
    if: github.event_name != 'pull_request'
    permissions:
      contents: write
    steps:
      - name: Checkout
        uses: actions/checkout@v4

      - name: Update the image tags
        run: |
          SHORT_SHA=$(echo "${{{{ github.sha }}}}" | cut -c1-7)
          for SERVICE in {services}; do
            IMAGE="${{{{ env.REGISTRY }}}}/${{SERVICE}}:${{SHORT_SHA}}"
            sed -i -E "s|^(\\s*image: ).*$|\\1${{IMAGE}}|" "{manifests}/${{SERVICE}}/deployment.yaml"
          done

      - name: Commit and push
        run: |
          git config user.name "github-actions[bot]"
          git config user.email "github-actions[bot]@users.noreply.github.com"
          git add {files}
          git diff --staged --quiet || git commit -m "chore: update image to ${{{{ github.sha }}}}"
          git push
"""


def project_md(project: str, ctxs: list[GenContext]) -> str:
    """PERSONA.md of a project: an overview, then each workload's PERSONA.md one heading level down."""
    out = [f"# {project}", "", "## Workloads", ""]
    for c in ctxs:
        w = c.workload
        what = (
            f"image `{w.image}`"
            if w is not None and w.image
            else f"built from `{c.analysis.source_dir or '.'}`"
        )
        kind = w.kind if w is not None else "Deployment"
        out.append(f"- **{c.name}** ({kind}, {c.analysis.type}): {what}")
    for c in ctxs:
        body = persona_md(c)
        out += ["", *("#" + line if line.startswith("#") else line for line in body.rstrip("\n").split("\n"))]
    return "\n".join(out) + "\n"
