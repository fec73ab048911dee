"""The gateway sets the garbage collector's pace for its process (RESERVE_GC_THRESHOLD)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from service.settings import Settings
from tests.harness import running_gateway


@pytest.fixture
def python_gc_pace() -> Iterator[None]:
    """Give the test process back the thresholds it had."""
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*before)


@pytest.mark.usefixtures("python_gc_pace")
async def test_the_gateway_sets_the_young_threshold_and_freezes_its_start_up_heap(settings: Settings) -> None:
    older = gc.get_threshold()[1:]
    tuned = settings.model_copy(update={"gc_threshold": 4321})
    async with running_gateway(tuned) as gateway:
        assert gc.get_threshold() == (4321, *older)  # only the young generation's pace changes
        assert gc.get_freeze_count() > 0  # the modules and app built at start-up are left alone
        session = await gateway.create_session()
        assert session["id"]
