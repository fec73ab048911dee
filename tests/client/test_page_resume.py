"""The page resumes a dropped audio socket too: chromium streams a WAV file through a proxy that
swallows half a second of its audio and cuts the socket; the page reconnects, resends from the
gateway's ``resumed`` offset, and the transcript comes out whole, with no error shown."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jiwer
import pytest
import trio

from service.settings import Settings
from tests.client.cutting_proxy import proxy_to
from tests.e2e.test_browser import drive_page, normalise
from tests.harness import running_gateway

pytestmark = pytest.mark.browser

DATA = Path(__file__).resolve().parents[1] / "data"
WAV = "children_park_44k.wav"
REFERENCE = json.loads((DATA / "fixtures.json").read_text())[WAV]


async def test_the_page_resends_what_a_cut_socket_lost(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reserve.session")
    settings = Settings(riva_uri="", embedded_recognizer="pocketsphinx", auth_disabled=True, audio_reconnect_grace_s=5)
    async with running_gateway(settings) as gateway, proxy_to(gateway.base_url, 40_000, 0.5) as proxy:
        final, state, error = await trio.to_thread.run_sync(drive_page, proxy.url + "/", None, DATA / WAV)
    assert (state, error) == ("done", "")
    assert proxy.cuts == 1 and proxy.swallowed > 0, "the gateway really missed audio"
    assert any("audio socket reattached" in r.getMessage() for r in caplog.records)
    assert jiwer.wer(REFERENCE, normalise(final)) <= 0.15, final
