"""Print (or --write into README.md) the configuration table, generated from Settings."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import SecretStr

from service.settings import Settings

HEADER = "| Variable | Default | Meaning |\n|---|---|---|\n"


def table() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        rows.append(f"| `RESERVE_{name.upper()}` | `{'' if default is None else default}` | {field.description} |")
    return HEADER + "\n".join(rows) + "\n"


def main() -> None:
    if "--write" not in sys.argv:
        print(table(), end="")
        return
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    pattern = re.compile(re.escape(HEADER) + r"(?:\|.*\|\n)*")
    readme.write_text(pattern.sub(lambda _: table(), text, count=1))


if __name__ == "__main__":
    main()
