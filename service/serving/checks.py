"""What ``reserve serve`` checks before it starts anything: one line per problem, no traceback."""

from __future__ import annotations

from pydantic import ValidationError

from service.settings import Settings


class StartupError(Exception):
    """A problem found before serving; each line of ``problems`` names one setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_checked_settings(workers_flag: int | None) -> tuple[Settings, int]:
    """The settings from ``RESERVE_*`` and the number of workers to run (``--workers`` wins)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise StartupError(validation_problems(exc)) from None
    workers = workers_flag if workers_flag is not None else settings.workers
    problems = process_model_problems(settings, workers) + auth_problems(settings)
    if problems:
        raise StartupError(problems)
    return settings, workers


def validation_problems(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        names = [str(part) for part in error["loc"] if isinstance(part, str)]
        field = Settings.model_fields.get(names[0]) if names else None
        variable = f"RESERVE_{names[0].upper()}" if names else "settings"
        secret = field is not None and "Secret" in repr(field.annotation)
        shown = not secret and "input" in error and not isinstance(error["input"], dict)
        value = f"={error['input']!r}" if shown else ""
        lines.append(f"invalid configuration: {variable}{value}: {error['msg']}")
    return lines


def process_model_problems(settings: Settings, workers: int) -> list[str]:
    """Several workers share sessions only through Redis: without it, a session created by one
    worker would be unknown to the others (404 on its audio or events)."""
    if workers < 1:
        return [f"--workers / RESERVE_WORKERS must be at least 1, not {workers}"]
    if workers > 1 and not settings.redis_url:
        return [
            f"{workers} workers need RESERVE_REDIS_URL (shared session state); "
            "set it, or run one worker (RESERVE_WORKERS=1)"
        ]
    return []


def auth_problems(settings: Settings) -> list[str]:
    """Refused here too, so that no worker is started only to fail (the gateway checks the keys
    file itself when it starts)."""
    if settings.auth_disabled or settings.api_keys.get_secret_value().strip(" ,") or settings.api_keys_file:
        return []
    return [
        "no API keys configured: set RESERVE_API_KEYS (comma-separated) or RESERVE_API_KEYS_FILE "
        "(one key per line), or RESERVE_AUTH_DISABLED=true for local development"
    ]
