"""The README's promises that code can check: the settings table, and the two commands."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pydantic import SecretStr

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def documented_settings() -> dict[str, tuple[str, str]]:
    rows = re.findall(r"^\| `(RESERVE_[A-Z0-9_]+)` \| `([^`]*)` \| (.+?) \|$", README, re.MULTILINE)
    return {name: (default, meaning) for name, default, meaning in rows}


def test_every_setting_is_documented_with_its_default() -> None:
    documented = documented_settings()
    expected = {}
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        expected[f"RESERVE_{name.upper()}"] = ("" if default is None else str(default), field.description)
    assert documented == expected


def test_ci_runs_the_readme_test_command() -> None:
    extracted = subprocess.run(
        [
            "bash",
            "-c",
            "sed -n '/<!-- test-command -->/,/<!-- \\/test-command -->/p' README.md"
            " | grep -v '^<!--' | grep -v '^```' | head -n 1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert extracted == "./scripts/test.sh"
    assert (ROOT / extracted).stat().st_mode & 0o111
    assert "<!-- test-command -->" in (ROOT / ".ci/run").read_text()
    assert (ROOT / "scripts/serve.sh").stat().st_mode & 0o111
