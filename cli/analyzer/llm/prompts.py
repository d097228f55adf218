"""The two questions dorgu asks a model: the analysis proposal (JSON) and PERSONA.md (Markdown)."""

from __future__ import annotations

import msgspec

from cli.analyzer.model import AppAnalysis
from cli.settings import ResourceProfile

ANALYSIS_SYSTEM = (
    "You are an expert DevOps engineer. Answer with one valid JSON object and nothing else: "
    "no prose, no code fences."
)

PERSONA_SYSTEM = (
    "You are a technical writer for platform engineers. Answer with the Markdown document only, "
    "starting with its '# ' title: no preamble, no code fences around it."
)


def analysis_prompt(analysis: AppAnalysis, *, profile: ResourceProfile, instructions: str) -> str:
    """The user message asking for the analysis proposal."""
    facts = msgspec.json.format(msgspec.json.encode(analysis), indent=2).decode()
    limits = f"cpu {profile.limits.cpu}, memory {profile.limits.memory}"
    context = f"\nThe application's owners say:\n{instructions.strip()}\n" if instructions.strip() else ""
    return f"""Analyze this containerized application and propose deployment settings for Kubernetes.

What static analysis found (JSON):
{facts}
{context}
Reply with a JSON object with any of these keys (leave out what you would not change):
{{
  "description": "one paragraph for the application's operators",
  "type": "api|web|worker|cron|daemon",
  "ports": [{{"port": 8080, "protocol": "TCP", "purpose": "HTTP"}}],
  "health_check": {{"path": "/health", "readiness_path": "/ready", "port": 8080,
                    "initial_delay_seconds": 10, "period_seconds": 10}},
  "resources": {{"requests": {{"cpu": "100m", "memory": "128Mi"}},
                 "limits": {{"cpu": "500m", "memory": "512Mi"}}}},
  "scaling": {{"min_replicas": 2, "max_replicas": 10, "target_cpu_percent": 70}}
}}
Rules: use only ports in "ports" above; probe paths only from the GET routes in "code.routes"; requests and
limits at most the profile's limits ({limits}); Kubernetes quantities ("250m", "256Mi").
"""


def persona_prompt(analysis: AppAnalysis, *, template: str, instructions: str) -> str:
    """The user message asking for PERSONA.md; ``template`` is the deterministic one, whose facts stay."""
    facts = msgspec.json.format(msgspec.json.encode(analysis), indent=2).decode()
    context = (
        f"\nAdditional context from the owners:\n{instructions.strip()}\n" if instructions.strip() else ""
    )
    return f"""Write PERSONA.md for the application below: the document its operators and on-call engineers
read first. Keep every fact of the draft (ports, probes, resources, scaling, ownership, operational notes,
[PLACEHOLDER] where a value is unknown) and its sections in order (# title, ## Overview in 2-3 sentences,
## Technical Stack, ## API/Interfaces, ## External Dependencies, ## Resource Profile, ## Health & Monitoring,
## Ownership, ## Operational Notes); explain what the application does and what matters when running it.
Invent nothing that the analysis does not show.

Analysis (JSON):
{facts}
{context}
Draft:
{template}"""
