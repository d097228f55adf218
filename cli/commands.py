"""The command table: every command the ``dorgu`` CLI has, the module that runs it and its one-line summary.

It is the one list the dispatcher (``cli.main``), ``dorgu --help``, the group helps (``dorgu persona``) and
the shell completions (``cli.completion``) are made from, so none of them can name a command the others do
not know. A command's options live in its module's docstring, the docopt usage the module parses; the
completions read them from there (``cli.usage``).

Rule: an entry's ``words`` are the full command words (no option, no argument), a group is any proper prefix
of them (``persona``, ``dev cluster``); a module implements ``run(argv) -> int`` with argv the whole argument
list, command words included, and its ``__doc__`` is its docopt usage.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Command:
    """One command of the CLI."""

    words: tuple[str, ...]
    """The command words, e.g. ``("persona", "apply")``."""
    module: str
    """The module that runs it (``run(argv)``; its docstring is the docopt usage)."""
    args: str
    """The positional arguments as ``dorgu --help`` shows them after the words (e.g. ``[PATH]``)."""
    summary: str
    """One line: what the command really does."""

    @property
    def name(self) -> str:
        return " ".join(self.words)


def _c(words: str, module: str, args: str, summary: str) -> Command:
    return Command(words=tuple(words.split()), module=module, args=args, summary=summary)


COMMANDS: tuple[Command, ...] = (
    # Onboarding an application.
    _c("generate", "cli.generate", "[PATH]",
       "Analyze an app; write its manifests, Argo CD app, CI workflow, PERSONA.md, persona."),
    _c("init", "cli.init", "[PATH]",
       "Create the app's .dorgu.yaml, or the global config with --global."),
    _c("persona generate", "cli.persona_generate", "[PATH]",
       "Write the app's ApplicationPersona (persona.yaml)."),
    _c("persona apply", "cli.persona_apply", "[PATH]",
       "Server-side apply the app's ApplicationPersona to a cluster; show the diff."),
    # Reading personas from the operator (its WebSocket).
    _c("persona status", "cli.live", "NAME", "Show one ApplicationPersona's status."),
    _c("persona list", "cli.live", "", "List ApplicationPersonas with their phase and health."),
    _c("persona watch", "cli.live", "[NAME]", "Follow ApplicationPersonas as they change (Ctrl-C stops)."),
    _c("cluster init", "cli.clusterinit", "", "Create the cluster's ClusterPersona."),
    _c("cluster status", "cli.live", "[NAME]", "Show the ClusterPersona's status."),
    _c("watch personas", "cli.live", "", "Stream ApplicationPersona changes from the operator."),
    _c("watch cluster", "cli.live", "", "Stream ClusterPersona changes from the operator."),
    _c("watch events", "cli.live", "", "Stream every change (personas and cluster) from the operator."),
    _c("sync status", "cli.live", "", "Summarise the cluster and the personas' phases."),
    _c("sync pull", "cli.live", "", "Pull the ApplicationPersonas and the ClusterPersona and show them."),
    # The global config.
    _c("config list", "cli.config", "",
       "Show the global config (~/.config/dorgu/config.yaml), secrets masked."),
    _c("config get", "cli.config", "KEY", "Print one key of the global config."),
    _c("config set", "cli.config", "KEY VALUE", "Set one key of the global config (other keys kept)."),
    _c("config path", "cli.config", "", "Print the global config file's path."),
    _c("config reset", "cli.config", "", "Reset the global config to the defaults."),
    # Running dorgu.
    _c("operator", "cli.operator", "",
       "Run the dorgu operator (a supervisor and one process per component)."),
    _c("dev cluster up", "cli.dev", "",
       "Start a local control plane (kube-apiserver 1.20, etcd) with dorgu's CRDs."),
    _c("dev cluster down", "cli.dev", "", "Stop the local control plane and remove its files."),
    _c("dev cluster env", "cli.dev", "",
       "Print `export KUBECONFIG=...` for the running local control plane."),
    _c("dev demo", "cli.dev", "",
       "Run the whole system locally, narrated: operator, generate, apply, webhook, watch."),
    _c("bench", "cli.bench", "",
       "Measure the operator's throughput and latency against the API server's ceiling."),
    # The CLI itself.
    _c("version", "cli.version", "", "Print the version, git commit and build date."),
    _c("completion bash", "cli.completion", "", "Print the bash completion script."),
    _c("completion zsh", "cli.completion", "", "Print the zsh completion script."),
    _c("completion fish", "cli.completion", "", "Print the fish completion script."),
    _c("help", "cli.main", "[COMMAND]", "Show a command's help (the same as `dorgu COMMAND --help`)."),
)  # fmt: skip

GROUPS: dict[tuple[str, ...], str] = {
    ("persona",): "Generate and apply an app's ApplicationPersona; read personas from the operator.",
    ("cluster",): "Create the cluster's ClusterPersona; read it from the operator.",
    ("watch",): "Stream changes from the operator's WebSocket until Ctrl-C.",
    ("sync",): "One-shot reads of the operator's view of the cluster and its personas.",
    ("config",): "Show or change the global config (~/.config/dorgu/config.yaml).",
    ("dev",): "Development helpers: a local control plane and the narrated demo.",
    ("dev", "cluster"): "A local control plane for development (see `dorgu dev cluster up --help`).",
    ("completion",): "Print a shell completion script (bash, zsh or fish).",
}
"""Every group (a proper prefix of some command's words) with its one-line summary."""

BY_WORDS: dict[tuple[str, ...], Command] = {c.words: c for c in COMMANDS}


def children(group: tuple[str, ...]) -> list[str]:
    """The words that may follow ``group`` (``()`` is the top level), in table order, each once."""
    seen: list[str] = []
    for c in COMMANDS:
        if len(c.words) > len(group) and c.words[: len(group)] == group and c.words[len(group)] not in seen:
            seen.append(c.words[len(group)])
    return seen


def is_group(words: tuple[str, ...]) -> bool:
    return words in GROUPS


def resolve(argv: list[str]) -> tuple[tuple[str, ...], Command | None]:
    """The longest run of command words at the start of ``argv``: ``(words, command)``; ``command`` is None
    when the words end at a group (or at nothing: ``()``)."""
    words: tuple[str, ...] = ()
    for a in argv:
        nxt = (*words, a)
        if nxt in BY_WORDS:
            return nxt, BY_WORDS[nxt]
        if nxt not in GROUPS:
            break
        words = nxt
    return words, None
