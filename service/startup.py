"""Start-up checks: the whole configuration is checked before anything is served, and every
problem is one line on stderr (no traceback), so an operator sees all of them at once.

``load_or_exit()`` is what a server entry point calls: ``service.app:app`` (hypercorn, the
Dockerfile, ``scripts/serve.sh``) and any other command that serves the app.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType
from typing import NoReturn

from pydantic import ValidationError

from service.auth.keys import parse_keys_file, parse_keys_list
from service.settings import Settings

PREFIX = "Reserve cannot start: "
EXIT_CONFIG = 1
NO_KEYS = (
    "no API keys configured. Set RESERVE_API_KEYS (comma-separated) or RESERVE_API_KEYS_FILE "
    "(one key per line), or RESERVE_AUTH_DISABLED=true for local development."
)
NEVER_ECHOED = {"redis_url"}  # settings whose values may carry a password (redis://user:password@host)
_FILES = ("riva_ssl_root_cert", "riva_ssl_client_cert", "riva_ssl_client_key", "riva_api_key_file")


def validation_problems(exc: ValidationError) -> list[str]:
    """One line per invalid variable, naming it (and its value, unless it is a secret)."""
    lines = []
    for error in exc.errors(include_url=False):
        names = [str(part) for part in error["loc"] if isinstance(part, str)]
        field = Settings.model_fields.get(names[0]) if names else None
        variable = f"RESERVE_{names[0].upper()}" if names else "settings"
        secret = field is not None and ("Secret" in repr(field.annotation) or names[0] in NEVER_ECHOED)
        value = "" if secret or "input" not in error or isinstance(error["input"], dict) else f"={error['input']!r}"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{variable}{value}: {message}")
    return lines


def _unreadable(path: Path) -> str | None:
    try:
        with path.open("rb") as file:
            file.read(1)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def configuration_problems(settings: Settings) -> list[str]:
    """What would stop the gateway once it starts serving, found before it does."""
    problems = []
    for name in _FILES:
        path = getattr(settings, name)
        if path is not None and (why := _unreadable(path)) is not None:
            problems.append(f"RESERVE_{name.upper()}={path}: cannot read it ({why})")
    keys = parse_keys_list(settings.api_keys.get_secret_value())
    if settings.api_keys_file is not None:
        try:
            keys += parse_keys_file(settings.api_keys_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            problems.append(f"RESERVE_API_KEYS_FILE={settings.api_keys_file}: cannot read it ({why})")
            return problems
    if not keys and not settings.auth_disabled:
        problems.append(NO_KEYS)
    return problems


def exit_with(problems: list[str]) -> NoReturn:
    for problem in problems:
        print(PREFIX + problem, file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(EXIT_CONFIG)


def load_settings_or_exit() -> Settings:
    """Settings from the environment; invalid values: one line each on stderr, then exit 1."""
    try:
        return Settings()
    except ValidationError as exc:
        exit_with(validation_problems(exc))


def load_or_exit() -> Settings:
    """Settings from the environment, and everything start-up needs from them (keys, files)
    checked; on any problem one line each on stderr, then exit 1. For commands that serve."""
    settings = load_settings_or_exit()
    problems = configuration_problems(settings)
    if problems:
        exit_with(problems)
    return settings


class StartupRefused(Exception):
    """Raised in the app's start-up (hypercorn's lifespan) when the configuration cannot work."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        _refused.extend(problems)


_refused: list[str] = []  # what a StartupRefused said, for the process's last words


def report_refusals_instead_of_tracebacks() -> None:
    """hypercorn turns a failed start-up into a LifespanFailureError that ends the process
    with a long traceback; when our start-up refused, print its lines instead (exit status 1)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
        if _refused:
            for problem in dict.fromkeys(_refused):
                print(PREFIX + problem, file=sys.stderr)
            return
        previous(kind, value, traceback)

    sys.excepthook = hook
