"""``PERSONA.md`` (the LLM's when one wrote it, else the deterministic template) and the GitHub Actions
workflow (fixed text)."""

from __future__ import annotations

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


def workflow(ctx: GenContext) -> str:
    registry = ctx.registry.rstrip("/") or "ghcr.io/${{ github.repository_owner }}"
    context = ctx.analysis.source_dir or "."
    return _WORKFLOW.format(registry=registry, name=ctx.name, manifests=ctx.manifests_path, context=context)
