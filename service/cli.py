"""``reserve <command>`` (also ``python -m service``): a table of subcommands, each imported when used."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# name -> "module:function"; the function takes the arguments after the name and returns the exit status
COMMANDS = {
    "serve": "service.serving.command:main",
    "transcribe": "service.client.cli:main",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: reserve {{{','.join(COMMANDS)}}} [options] (reserve <command> --help for its options)"
    if args and args[0] in ("-h", "--help"):
        print(usage)
        return 0
    if not args or args[0] not in COMMANDS:
        given = f"unknown command {args[0]!r}; " if args else ""
        print(f"reserve: {given}{usage}", file=sys.stderr)
        return 2
    module_name, function_name = COMMANDS[args[0]].split(":")
    command: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), function_name)
    return command(args[1:])
