"""``dorgu``: dispatches command words to one module each (the table is ``cli.commands``), prints the helps,
and turns a command line that does not fit a command's usage into a plain message.

Rules kept here:
- ``dorgu``, ``dorgu --help`` and ``dorgu help`` print the top-level help, made from the command table;
  ``dorgu help COMMAND`` prints exactly what ``dorgu COMMAND --help`` prints.
- A group with no command (``dorgu persona``, ``dorgu dev cluster``) prints the group's help, exit 0.
- A usage error prints ``Error: <message>``, the command's usage lines and ``See 'dorgu <command> --help'.``
  on stderr and exits 2 (``cli.errors.USAGE``); never a repr of the parser.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from types import ModuleType

from docopt import DocoptExit

from cli import commands, usage
from cli.errors import USAGE, CliError

HELP = """dorgu — keep applications true to their personas.

Usage:
  dorgu <command> [<args>...]
  dorgu (-h | --help)

Commands:
{commands}

Global options (accepted by every command):
  --config FILE     Workspace config file (default: .dorgu.yaml in the current directory).
  --no-color        No colours (also: the NO_COLOR environment variable).
  -h --help         Show help (`dorgu <command> --help` or `dorgu help <command>` for a command's).

Configuration precedence: flags > app .dorgu.yaml > workspace .dorgu.yaml > global config > defaults.

Exit codes: 0 success, 1 failure (cluster, API server, filesystem), 2 usage or input error (bad flags, missing
path, no Dockerfile/compose, unreadable file, malformed config). Errors print `Error: <message>` on stderr.
"""

_WIDTH = 110
_GLOBAL_WITH_VALUE = ("--config",)
_GLOBAL_FLAGS = ("--no-color",)


def _split_globals(argv: list[str]) -> list[str]:
    """Move global options given before the command words to after them (`dorgu --no-color generate`)."""
    leading: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _GLOBAL_FLAGS or any(a.startswith(o + "=") for o in _GLOBAL_WITH_VALUE):
            leading.append(a)
            i += 1
        elif a in _GLOBAL_WITH_VALUE and i + 1 < len(argv):
            leading += [a, argv[i + 1]]
            i += 2
        else:
            break
    rest = argv[i:]
    words = 0
    while words < len(rest) and not rest[words].startswith("-"):
        words += 1
    return rest[:words] + leading + rest[words:]


def _table(rows: list[tuple[str, str]]) -> str:
    """Two columns, the second wrapped under itself."""
    left = max(len(a) for a, _ in rows) + 2
    out: list[str] = []
    for a, b in rows:
        lines = textwrap.wrap(b, width=_WIDTH - 2 - left) or [""]
        out.append(f"  {a:<{left}}{lines[0]}".rstrip())
        out += [" " * (2 + left) + ln for ln in lines[1:]]
    return "\n".join(out)


def _synopsis(c: commands.Command, skip: int = 0) -> str:
    return " ".join([*c.words[skip:], c.args]).strip()


def top_help() -> str:
    rows = [(_synopsis(c), c.summary) for c in commands.COMMANDS]
    return HELP.format(commands=_table(rows)).strip()


def group_help(group: tuple[str, ...]) -> str:
    name = " ".join(group)
    rows = [
        (_synopsis(c, len(group)), c.summary) for c in commands.COMMANDS if c.words[: len(group)] == group
    ]
    return "\n".join(
        [
            commands.GROUPS[group],
            "",
            "Usage:",
            f"  dorgu {name} <command> [<args>...] [options]",
            "",
            "Commands:",
            _table(rows),
            "",
            f"Run 'dorgu {name} <command> --help' for a command's options.",
        ]
    )


HELP_USAGE = """Usage:
  dorgu help [COMMAND...] [options]

Show a command's help: `dorgu help persona apply` prints what `dorgu persona apply --help` prints; a group
(`dorgu help persona`) lists its commands; no command shows dorgu's help.

Options:
  --config FILE   Ignored (accepted by every command).
  --no-color      Ignored (accepted by every command).
  -h --help       Show this help.
"""


def command_doc(c: commands.Command) -> str:
    """The command's docopt usage: its module's docstring (``help`` is answered here)."""
    return HELP_USAGE if c.words == ("help",) else _module(c).__doc__ or ""


def command_help(c: commands.Command) -> str:
    """What ``dorgu <command> --help`` prints: the command's docopt usage, as docopt prints it."""
    return command_doc(c).strip("\n")


def _module(c: commands.Command) -> ModuleType:
    return importlib.import_module(c.module)


def _usage_error(c: commands.Command, message: str) -> int:
    lines = usage.usage_lines(_module(c).__doc__ or "", c.words)
    print(f"Error: {message}", file=sys.stderr)
    print("Usage:\n" + "\n".join(f"  {ln}" for ln in lines), file=sys.stderr)
    print(f"See 'dorgu {c.name} --help'.", file=sys.stderr)
    return USAGE


def _unknown(words: tuple[str, ...], word: str) -> int:
    where = " ".join(("dorgu", *words))
    print(f'Error: unknown command "{word}" for "{where}"', file=sys.stderr)
    print(f"Run '{where} --help' for usage.", file=sys.stderr)
    return USAGE


def _help(argv: list[str]) -> int:
    """``dorgu help [COMMAND...]``."""
    if any(a in ("-h", "--help") for a in argv):
        print(HELP_USAGE.strip("\n"))
        return 0
    asked = [a for a in argv[1:] if not a.startswith("-")]
    if not asked:
        print(top_help())
        return 0
    words, c = commands.resolve(asked)
    if c is not None:
        print(command_help(c))
        return 0
    if len(asked) == len(words):
        print(group_help(words))
        return 0
    return _unknown(words, asked[len(words)])


def _group(words: tuple[str, ...], rest: list[str]) -> int:
    """``dorgu <group> ...`` that names no command: the group's help when nothing but global options or
    ``--help`` follow, else an error naming the first thing that is neither."""
    name = " ".join(("dorgu", *words))
    i = 0
    while i < len(rest):
        a = rest[i]
        if a in ("-h", "--help", *_GLOBAL_FLAGS) or any(a.startswith(o + "=") for o in _GLOBAL_WITH_VALUE):
            i += 1
        elif a in _GLOBAL_WITH_VALUE:
            i += 2
        elif a.startswith("-"):
            print(f"Error: unknown flag: {a.split('=', 1)[0]}", file=sys.stderr)
            print(f"Run '{name} --help' for usage.", file=sys.stderr)
            return USAGE
        else:
            return _unknown(words, a)
    print(group_help(words))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = _split_globals(list(sys.argv[1:] if argv is None else argv))
    if not argv or argv[0] in ("-h", "--help"):
        print(top_help())
        return 0
    words, c = commands.resolve(argv)
    if c is None:
        if not words:
            return _unknown((), argv[0])
        return _group(words, argv[len(words) :])
    try:
        usage.check(command_doc(c), argv, c.words)
    except usage.UsageError as e:
        return _usage_error(c, str(e))
    if c.words == ("help",):
        return _help(argv)
    try:
        return int(_module(c).run(argv) or 0)
    except DocoptExit as e:  # not expected after usage.check; still no parser repr
        first = str(e).split("\n", 1)[0]
        return _usage_error(c, first if "(" not in first else "the arguments do not fit the command's usage")
    except CliError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # docopt's --help
        return e.code if isinstance(e.code, int) else 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
