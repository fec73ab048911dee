"""The ``reserve`` console script (and ``python -m service``): one subcommand per entry,
imported only when it runs, each a ``main(argv) -> exit status``."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "transcribe": "service.client.cli:main",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    names = ", ".join(sorted(COMMANDS))
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: reserve COMMAND [ARGS...]\ncommands: {names} (reserve COMMAND --help for each)")
        return 0 if args else 2
    target = COMMANDS.get(args[0])
    if target is None:
        print(f"reserve: unknown command {args[0]!r}; the commands are: {names}", file=sys.stderr)
        return 2
    module, function = target.split(":")
    result: int = getattr(importlib.import_module(module), function)(args[1:])
    return result
