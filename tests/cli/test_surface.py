"""The CLI's surface (issue 20): help and completion commands, usage errors, `dorgu --help`, group helps,
`version` build info. The completions are loaded in the real shells (bash, zsh, fish)."""

from __future__ import annotations

import importlib
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli import buildinfo, commands, completion, usage
from cli.main import command_doc
from tests.cli.conftest import ROOT

DEADLINE_S = 60.0
PARSER_REPR = re.compile(r"Option\(|Argument\(|Command\(|found unmatched|Warning:")


def _dorgu_bin() -> Path:
    """The `dorgu` console script of the venv the tests run in (`make deps` installs it)."""
    script = Path(sys.executable).parent / "dorgu"
    assert script.is_file(), f"no {script}: run `make deps`"
    return script


def _env() -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "TERM": "dumb",
        "NO_COLOR": "1",
    }


# --------------------------------------------------------------------------- point 2: completion, help


BASH_DRIVER = r"""
source <("$DORGU" completion bash)
complete -p dorgu
t() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
      _dorgu; echo "${COMPREPLY[*]}"; }
t dorgu gen
t dorgu persona ap
t dorgu generate --dr
t dorgu generate --output ""
t dorgu generate --output = x --sk
t dorgu --no-color dev cluster ""
t dorgu help pers
t dorgu completion ""
t dorgu persona status x -A
"""


def test_bash_completion_completes_commands_and_options() -> None:
    p = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", BASH_DRIVER],
        env={**_env(), "DORGU": str(_dorgu_bin())},
        capture_output=True, text=True, timeout=DEADLINE_S, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "complete -o default -F _dorgu dorgu"
    assert lines[1:] == [
        "generate",
        "apply",
        "--dry-run",
        "",  # an option's value: the shell's file names (complete -o default)
        "--skip-argocd --skip-ci --skip-persona --skip-validation",
        "up down env",
        "persona",
        "bash zsh fish",
        "",  # `persona status` has no -A (its usage line says so), so nothing matches
    ]


def _pty_shell(argv: list[str], setup: list[str], typed: str) -> str:
    """Run an interactive shell on a pseudo-terminal, type ``typed`` and TAB, then turn the edited line into
    ``echo LINE:<line>`` (Ctrl-A, Ctrl-E) and return what the shell printed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the shell
        os.execvpe(argv[0], argv, {**_env(), "TERM": "xterm", "PS1": "$ "})
    buf = b""

    def read_until(token: bytes) -> bool:
        nonlocal buf
        end = time.monotonic() + DEADLINE_S
        while token not in buf and time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    buf += os.read(fd, 4096)
                except OSError:
                    return False
        return token in buf

    try:
        for line in setup:
            os.write(fd, line.encode() + b"\n")
        os.write(fd, b"echo RE''ADY\n")
        assert read_until(b"READY"), buf.decode(errors="replace")
        os.write(fd, typed.encode() + b"\t")
        time.sleep(1.0)  # the completion runs; what follows is typed after it, as a person would
        os.write(fd, b"\x01echo LINE:\x05\n")
        read_until(b"LINE:dorgu ")
        return buf.decode(errors="replace")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def test_bash_completion_on_a_real_tab() -> None:
    """A new user: `source <(dorgu completion bash)`, then `dorgu gen<TAB>` in an interactive bash."""
    _dorgu_bin()
    out = _pty_shell(
        ["bash", "--norc", "--noprofile", "-i"], ["source <(dorgu completion bash)"], "dorgu gen"
    )
    assert "LINE:dorgu generate" in out, out


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is installed by `make deps` (APT_PACKAGES)")
def test_zsh_completion_registers_and_offers_commands() -> None:
    """zsh loads the script (compinit + bashcompinit) and binds `_dorgu` to dorgu; `_dorgu` called as zsh's
    `_bash_complete` calls it (sh emulation, 0-based arrays) offers `generate` for `dorgu gen` (zsh's own
    matcher then keeps the words that start with `gen`)."""
    script = r"""
autoload -U compinit && compinit -u
source <("$DORGU" completion zsh)
print -r -- "${_comps[dorgu]}"
t() { emulate -L sh; setopt kshglob noshglob braceexpand; local -a COMP_WORDS; COMP_WORDS=("$@")
      COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=(); _dorgu; echo "${COMPREPLY[*]}"; }
t dorgu gen
t dorgu dev cluster ''
"""
    p = subprocess.run(
        ["zsh", "-f", "-c", script], env={**_env(), "DORGU": str(_dorgu_bin())},
        capture_output=True, text=True, timeout=DEADLINE_S, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "_bash_complete -o default -F _dorgu"
    assert "generate" in lines[1].split() and "persona" in lines[1].split()
    assert lines[2].split() == ["up", "down", "env"]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is installed by `make deps` (APT_PACKAGES)")
def test_fish_completion_completes_commands_and_options() -> None:
    script = """
"$DORGU" completion fish | source
complete -C 'dorgu gen'; echo ---
complete -C 'dorgu persona ap'; echo ---
complete -C 'dorgu generate --dr'; echo ---
complete -C 'dorgu generate --output=x --skip-a'; echo ---
complete -C 'dorgu dev cluster '
"""
    p = subprocess.run(
        ["fish", "--no-config", "-c", script.replace('"$DORGU"', str(_dorgu_bin()))], env=_env(),
        capture_output=True, text=True, timeout=DEADLINE_S, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    parts = [[ln.split("\t")[0] for ln in part.strip().splitlines()] for part in p.stdout.split("---")]
    assert parts == [["generate"], ["apply"], ["--dry-run"], ["--skip-argocd"], ["down", "env", "up"]]
    assert "generate\tAnalyze an app" in p.stdout  # the summaries come along


def test_completion_is_made_from_the_parser_tables() -> None:
    """Every command of the table, and every option its docopt usage accepts, is in every script; a command
    or option added to the CLI cannot be missing from the completions."""
    scripts = {"bash": completion.bash(), "zsh": completion.zsh(), "fish": completion.fish()}
    for c in commands.COMMANDS:
        for flag in usage.options(command_doc(c), c.words):
            for shell, text in scripts.items():
                name = flag.long or flag.short or ""
                needle = name if shell != "fish" else f"-{'l' if flag.long else 's'} {name.lstrip('-')}"
                assert needle in text, (shell, c.name, name)
        for shell, text in scripts.items():
            assert f'"{c.name}")' in text or f"'{c.name}'" in text, (shell, c.name)


def test_every_command_in_the_table_is_parsed_by_its_module() -> None:
    """The table and the modules agree: each command's usage has a line for it, and its module runs it."""
    for c in commands.COMMANDS:
        if c.words == ("help",):
            continue
        lines = usage.usage_lines(command_doc(c), c.words)
        assert any(ln.startswith(f"dorgu {c.words[0]}") for ln in lines), c.name
        assert callable(importlib.import_module(c.module).run), c.module
    groups = {c.words[:n] for c in commands.COMMANDS for n in range(1, len(c.words))}
    assert groups == set(commands.GROUPS)


def test_help_command_prints_what_dash_dash_help_prints(run_cli) -> None:
    assert run_cli("help").out == run_cli("--help").out
    for c in commands.COMMANDS:
        via_help = run_cli("help", *c.words)
        via_flag = run_cli(*c.words, "--help")
        assert via_help.code == via_flag.code == 0, c.name
        assert via_help.out == via_flag.out and via_help.out.strip(), c.name
    for g in commands.GROUPS:
        assert run_cli("help", *g).out == run_cli(*g, "--help").out == run_cli(*g).out
    r = run_cli("help", "nope")
    assert r.code == 2 and 'unknown command "nope" for "dorgu"' in r.err


def test_completion_command_prints_each_script(run_cli) -> None:
    for shell in ("bash", "zsh", "fish"):
        r = run_cli("completion", shell)
        assert r.code == 0 and r.out == getattr(completion, shell)()
    r = run_cli("completion", "tcsh")
    assert r.code == 2 and 'unknown command "tcsh" for "dorgu completion"' in r.err


# --------------------------------------------------------------------------- point 3: usage errors


USAGE_ERRORS = [
    # (argv, message, the usage line shown, the command named in "See …")
    (["generate", "--dryrun"], "unknown flag: --dryrun", "dorgu generate [PATH] [options]", "generate"),
    (["generate", "-x"], "unknown shorthand flag: 'x' in -x", "dorgu generate [PATH] [options]", "generate"),
    (["generate", "a", "b"], 'unexpected argument "b"', "dorgu generate [PATH] [options]", "generate"),
    (["generate", "--output"], "flag needs an argument: --output", "dorgu generate [PATH]", "generate"),
    (["generate", "--dry-run=yes"], "flag --dry-run does not take a value", "dorgu generate", "generate"),
    (["generate", "-n", "a", "--name", "b"], "flag --name given more than once", "dorgu gen", "generate"),
    (["persona", "status"], "missing argument NAME", "dorgu persona status NAME", "persona status"),
    (["persona", "status", "x", "-A"], "flag --all-namespaces is not accepted by 'dorgu persona status'",
     "dorgu persona status NAME", "persona status"),
    (["persona", "list", "-n", "a", "-A"], "flags --namespace and --all-namespaces cannot be used together",
     "dorgu persona list", "persona list"),
    (["config", "set", "k"], "missing argument VALUE", "dorgu config set KEY VALUE [options]", "config set"),
    (["cluster", "init"], 'required flag(s) "name" not set', "dorgu cluster init --name", "cluster init"),
    (["init", "--minimal", "--full"], "flags --minimal and --full cannot be used together", "dorgu init",
     "init"),
    (["watch", "personas", "-A"], "flag --all-namespaces is not accepted by 'dorgu watch personas'",
     "dorgu watch (personas|cluster|events)", "watch personas"),
    (["version", "--bogus"], "unknown flag: --bogus", "dorgu version", "version"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message", "line", "cmd"), USAGE_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_usage_error_in_kubectls_words(run_cli, argv, message, line, cmd) -> None:
    r = run_cli(*argv)
    assert r.code == 2, r.err
    lines = r.err.splitlines()
    assert lines[0] == f"Error: {message}", r.err
    assert lines[1] == "Usage:" and any(ln.strip().startswith(line) for ln in lines[2:-1]), r.err
    assert lines[-1] == f"See 'dorgu {cmd} --help'.", r.err
    assert not PARSER_REPR.search(r.err) and r.out == ""


def test_no_usage_error_shows_the_parser() -> None:
    """Every option-less and option-bearing mistake of every command gives a message without a parser repr."""
    for c in commands.COMMANDS:
        doc = command_doc(c)
        extra = [] if c.words == ("help",) else [["x", "y", "z", "w"]]  # `help [COMMAND...]` takes any words
        for bad in (["--no-such-flag"], ["-Z"], ["--config"], *extra):
            with pytest.raises(usage.UsageError) as e:
                usage.check(doc, [*c.words, *bad], c.words)
            assert not PARSER_REPR.search(str(e.value)), (c.name, bad, str(e.value))


@pytest.mark.parametrize("group", sorted(commands.GROUPS))
def test_bare_group_prints_its_help(run_cli, group) -> None:
    r = run_cli(*group)
    assert r.code == 0 and r.err == ""
    assert r.out.startswith(commands.GROUPS[group])
    for w in commands.children(group):
        assert re.search(rf"^  {re.escape(w)}\b", r.out, re.M), (group, w)


def test_group_with_a_bad_word_or_flag(run_cli) -> None:
    r = run_cli("watch", "nodes")
    assert r.code == 2 and r.err.splitlines() == [
        'Error: unknown command "nodes" for "dorgu watch"',
        "Run 'dorgu watch --help' for usage.",
    ]
    r = run_cli("config", "--bogus")
    assert r.code == 2 and r.err.startswith("Error: unknown flag: --bogus\n")
    assert run_cli("--no-color", "sync").code == 0  # a global option is not a mistake


# --------------------------------------------------------------------------- point 4: dorgu --help


def test_top_help_lists_every_command_truthfully(run_cli) -> None:
    r = run_cli("--help")
    assert r.code == 0
    for c in commands.COMMANDS:
        assert re.search(rf"^  {re.escape(c.name)}\b.*{re.escape(c.summary[:30])}", r.out, re.M), c.name
    for name in (
        "persona watch",
        "persona status",
        "persona list",
        "cluster status",
        "watch personas",
        "sync pull",
    ):
        assert f"\n  {name}" in r.out
    demo = next(ln for ln in r.out.splitlines() if ln.startswith("  dev demo"))
    assert "CRDs and samples" not in demo and "operator" in demo  # what cli/demo.py really runs
    assert all(len(ln) <= 110 for ln in r.out.splitlines())


def test_readme_cli_section_lists_every_command() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## CLI\n") :]
    section = section[: section.index("\n## ", 1)]
    for c in commands.COMMANDS:
        head, *rest = c.words
        # `dorgu watch personas | cluster | events` names three commands on one line.
        pattern = rf"dorgu {re.escape(head)}" + "".join(rf"\b.*\b{re.escape(w)}\b" for w in rest)
        assert re.search(pattern, section), c.name


# --------------------------------------------------------------------------- point 8: version


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def test_stamp_writes_commit_and_date_and_keeps_them_for_the_same_commit(tmp_path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "one")
    head = _git(repo, "rev-parse", "HEAD").strip()
    out = tmp_path / "_build.py"
    t1 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    info = buildinfo.stamp(root=repo, path=out, now=t1, environ={})
    assert info == buildinfo.BuildInfo(commit=head, built="2026-01-02T03:04:05Z")
    assert buildinfo.read(out) == info
    # Same commit later: the file is kept (the date is when this commit was first built).
    assert buildinfo.stamp(root=repo, path=out, now=datetime(2027, 1, 1, tzinfo=UTC), environ={}) == info
    _git(repo, "commit", "-q", "--allow-empty", "-m", "two")
    later = buildinfo.stamp(root=repo, path=out, now=t1, environ={"SOURCE_DATE_EPOCH": "0"})
    assert later is not None and later.commit != head and later.built == "1970-01-01T00:00:00Z"


def test_no_git_no_stamp_means_unknown(tmp_path) -> None:
    out = tmp_path / "_build.py"
    assert buildinfo.stamp(root=tmp_path, path=out, now=datetime.now(UTC), environ={}) is None
    assert not out.exists()
    assert buildinfo.read(out) == buildinfo.BuildInfo(commit="unknown", built="unknown")
    out.write_text("COMMIT = __import__('os').getcwd()\n")  # never executed, so never trusted
    assert buildinfo.read(out).commit == "unknown"


def test_version_prints_the_build_written_by_make_deps() -> None:
    """The build step (`python -m cli.buildinfo`, run by `make deps`), then `dorgu version`, as processes."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout: the build step has no commit to write")
    subprocess.run([sys.executable, "-m", "cli.buildinfo"], cwd=ROOT, check=True, capture_output=True)
    p = subprocess.run([str(_dorgu_bin()), "version"], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = p.stdout.splitlines()
    assert re.fullmatch(r"dorgu \S+", lines[0]) and lines[1] == f"Commit: {head.stdout.strip()}"
    assert re.fullmatch(r"Built: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines[2]) and len(lines) == 3
    j = subprocess.run([str(_dorgu_bin()), "version", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(j.stdout) == {"version": lines[0][6:], "commit": lines[1][8:], "built": lines[2][7:]}
