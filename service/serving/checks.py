"""What ``reserve serve`` checks before it starts anything: one line per problem, no traceback.

The configuration itself (settings, keys, readable files) is ``service.startup``'s, the same
lines and exit status as every other way of serving; here only what the process model adds."""

from __future__ import annotations

from service import startup
from service.settings import Settings


class StartupError(Exception):
    """A problem of the command line or the process model; each line of ``problems`` is one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_checked_settings(workers_flag: int | None) -> tuple[Settings, int]:
    """The settings from ``RESERVE_*`` (exits, as every serving command does, on a bad one) and
    the number of workers to run (``--workers`` wins)."""
    settings = startup.load_or_exit()
    workers = workers_flag if workers_flag is not None else settings.workers
    problems = process_model_problems(settings, workers)
    if problems:
        raise StartupError(problems)
    return settings, workers


def process_model_problems(settings: Settings, workers: int) -> list[str]:
    """Several workers share sessions only through Redis: without it, a session created by one
    worker would be unknown to the others (404 on its audio or events)."""
    if workers > 1 and not settings.redis_url:
        return [
            f"{workers} workers need RESERVE_REDIS_URL (shared session state); "
            "set it, or run one worker (RESERVE_WORKERS=1)"
        ]
    return []
