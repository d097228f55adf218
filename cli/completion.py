"""Usage:
  dorgu completion bash [options]
  dorgu completion zsh [options]
  dorgu completion fish [options]

Print a script that makes the shell complete dorgu's commands and options.

  bash:  source <(dorgu completion bash)
         (or: dorgu completion bash > /etc/bash_completion.d/dorgu)
  zsh:   source <(dorgu completion zsh)
         (or, in a directory on $fpath: dorgu completion zsh > _dorgu)
  fish:  dorgu completion fish | source
         (or: dorgu completion fish > ~/.config/fish/completions/dorgu.fish)

The script is made from the same command table and docopt usages the CLI parses with, so it offers exactly
the commands and options this version of dorgu accepts. An option's value and a command's PATH complete as
file names.

Options:
  --config FILE   Ignored (accepted by every command).
  --no-color      Ignored (accepted by every command).
  -h --help       Show this help.
"""

from __future__ import annotations

from dataclasses import dataclass

from docopt import docopt

from cli import commands, usage
from cli.errors import InputError
from cli.main import command_doc

SHELLS = ("bash", "zsh", "fish")
_ROOT_FLAGS = (
    usage.Flag(long="--config", short=None, takes_value=True, description="Workspace config file."),
    usage.Flag(long="--no-color", short=None, takes_value=False, description="No colours."),
    usage.Flag(long="--help", short="-h", takes_value=False, description="Show help."),
)


@dataclass(frozen=True, kw_only=True)
class Node:
    """A place in the command tree: the top level, a group or a command."""

    path: tuple[str, ...]
    """The command words that lead here (``()`` is ``dorgu`` itself)."""
    words: list[tuple[str, str]]
    """The words that may follow, with their summaries."""
    flags: list[usage.Flag]
    """The options accepted here."""


def tree() -> list[Node]:
    """Every node of the command tree, from the command table and each command's usage."""
    nodes: list[Node] = []
    for path in [(), *commands.GROUPS]:
        words = []
        for w in commands.children(path):
            leaf = commands.BY_WORDS.get((*path, w))
            words.append((w, leaf.summary if leaf else commands.GROUPS[(*path, w)]))
        nodes.append(Node(path=path, words=words, flags=list(_ROOT_FLAGS)))
    for c in commands.COMMANDS:
        follow: list[tuple[str, str]] = []
        if c.words == ("help",):  # `dorgu help <command>`
            follow = [(w, s) for w, s in nodes[0].words if w != "help"]
        nodes.append(Node(path=c.words, words=follow, flags=usage.options(command_doc(c), c.words)))
    return nodes


def _names(flags: list[usage.Flag], *, valued: bool | None = None) -> str:
    return " ".join(
        n for f in flags if valued is None or f.takes_value == valued for n in (f.long, f.short) if n
    )


def bash() -> str:
    words, flags, valued = [], [], []
    for n in tree():
        key = " ".join(n.path)
        words.append(f'        "{key}") echo "{" ".join(w for w, _ in n.words)}" ;;')
        flags.append(f'        "{key}") echo "{_names(n.flags)}" ;;')
        valued.append(f'        "{key}") echo "{_names(n.flags, valued=True)}" ;;')
    nl = "\n"
    return f"""# bash completion for dorgu, made by `dorgu completion bash`; do not edit.
# Load it with: source <(dorgu completion bash)

# The words that may follow the command path $1.
_dorgu_words() {{
    case "$1" in
{nl.join(words)}
    esac
}}

# The options accepted at the command path $1.
_dorgu_flags() {{
    case "$1" in
{nl.join(flags)}
    esac
}}

# The options at the command path $1 that take a value.
_dorgu_valued() {{
    case "$1" in
{nl.join(valued)}
    esac
}}

_dorgu() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" node="" w i skip=0
    # Walk the words before the cursor: command words extend the path, options (and their values) and
    # positional arguments do not.
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        if [[ "$w" == "=" ]]; then skip=1; continue; fi  # --output=DIR arrives as --output, =, DIR
        if ((skip)); then skip=0; continue; fi
        case "$w" in
            -*) case " $(_dorgu_valued "$node") " in *" $w "*) skip=1 ;; esac; continue ;;
        esac
        case " $(_dorgu_words "$node") " in *" $w "*) node="${{node:+$node }}$w" ;; esac
    done
    if ((COMP_CWORD > 1)); then prev="${{COMP_WORDS[COMP_CWORD-1]}}"; fi
    if [[ "$prev" == "=" ]] && ((COMP_CWORD > 2)); then prev="${{COMP_WORDS[COMP_CWORD-2]}}"; fi
    if [[ "$cur" != -* ]] && [[ -n "$prev" ]] && [[ " $(_dorgu_valued "$node") " == *" $prev "* ]]; then
        COMPREPLY=()  # an option's value: the shell's default (file names)
        return 0
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$(_dorgu_flags "$node")" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$(_dorgu_words "$node")" -- "$cur"))
    fi
    return 0
}}

complete -o default -F _dorgu dorgu
"""


def zsh() -> str:
    body = bash().split("\n", 2)[2]
    return f"""#compdef dorgu
# zsh completion for dorgu, generated by `dorgu completion zsh` from its commands; do not edit.
# Load it with: source <(dorgu completion zsh)
# zsh runs the bash completion through its bashcompinit layer.
autoload -U +X compinit && {{ (( $+functions[compdef] )) || compinit }}
autoload -U +X bashcompinit && bashcompinit

{body}"""


def _fish_quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish() -> str:
    nodes = tree()
    cases_words, cases_valued, lines = [], [], []
    for n in nodes:
        key = " ".join(n.path)
        cases_words.append(
            f"        case {_fish_quote(key)}\n            echo {' '.join(w for w, _ in n.words)}"
        )
        cases_valued.append(
            f"        case {_fish_quote(key)}\n            echo {_names(n.flags, valued=True)}".rstrip()
        )
        cond = _fish_quote(f"__dorgu_at {_fish_quote(key)}")
        if n.words and n.path not in commands.BY_WORDS:  # a group: only its words, no file names
            lines.append(f"complete -c dorgu -n {cond} -f")
        for w, summary in n.words:
            lines.append(f"complete -c dorgu -n {cond} -f -a {_fish_quote(w)} -d {_fish_quote(summary)}")
        for f in n.flags:
            spec = (f" -l {f.long[2:]}" if f.long else "") + (f" -s {f.short[1:]}" if f.short else "")
            req = " -r" if f.takes_value else ""
            lines.append(f"complete -c dorgu -n {cond}{spec}{req} -d {_fish_quote(f.description)}")
    nl = "\n"
    return f"""# fish completion for dorgu, made by `dorgu completion fish`; do not edit.
# Load it with: dorgu completion fish | source

# The words that may follow the command path $argv[1].
function __dorgu_words
    switch $argv[1]
{nl.join(cases_words)}
    end
end

# The options at the command path $argv[1] that take a value.
function __dorgu_valued
    switch $argv[1]
{nl.join(cases_valued)}
    end
end

# The command path of the words before the cursor (options, their values and arguments skipped).
function __dorgu_path
    set -l node ''
    set -l skip 0
    for w in (commandline -opc)[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        switch $w
            case '-*'
                set -l valued (string split ' ' -- (__dorgu_valued "$node"))
                if not string match -q -- '*=*' $w; and contains -- $w $valued
                    set skip 1
                end
                continue
        end
        if contains -- $w (string split ' ' -- (__dorgu_words "$node"))
            set node (string trim -- "$node $w")
        end
    end
    echo $node
end

function __dorgu_at
    set -l here (__dorgu_path)
    test "$here" = "$argv[1]"
end

complete -c dorgu -e
{nl.join(lines)}
"""


def run(argv: list[str]) -> int:
    args = docopt(__doc__ or "", argv=argv)
    shell = next((s for s in SHELLS if args[s]), None)
    if shell is None:  # docopt's usage names every shell; kept for a shell added to SHELLS alone
        raise InputError(f"unknown shell (valid: {', '.join(SHELLS)})")
    print({"bash": bash, "zsh": zsh, "fish": fish}[shell](), end="")
    return 0
