"""The page at ``/`` in a real browser (Debian chromium, driven by Playwright), with a
speech WAV as the fake microphone, against the bundled pocketsphinx recognizer."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import wave
from pathlib import Path

import httpx
import jiwer
import pytest
import trio

from service.settings import Settings
from tests.harness import SERVE, TEST_API_KEY, running_gateway, served
from tests.redis_server import RedisServer, redis_server
from tests.serving import answering_pids, summed, worker_tallies

pytestmark = pytest.mark.browser

__all__ = ["redis_server"]  # a fixture, used by name

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DATA = Path(__file__).resolve().parents[1] / "data"
REFERENCES = json.loads((DATA / "fixtures.json").read_text())
LAUNCH_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def padded_wav(name: str, silence_s: float, into: Path) -> Path:
    """The fixture followed by silence, so the recognizer finds an endpoint before the loop repeats."""
    with wave.open(str(DATA / name)) as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    target = into / f"mic-{name}"
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        out.writeframes(frames + bytes(int(params.framerate * silence_s) * params.sampwidth))
    return target


def normalise(text: str) -> str:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).strip()


def drive_page(url: str, microphone: Path | None, upload: Path | None) -> tuple[str, str, str]:
    """Runs in a worker thread (Playwright's sync API): returns final text, status state, error text."""
    final, state, error, _ = drive_page_and_read_model(url, microphone, upload)
    return final, state, error


def drive_page_and_read_model(url: str, microphone: Path | None, upload: Path | None) -> tuple[str, str, str, str]:
    """``drive_page``, and the recognizer the page says it uses."""
    from playwright.sync_api import sync_playwright

    args = [*LAUNCH_ARGS]
    if microphone is not None:
        args.append(f"--use-file-for-fake-audio-capture={microphone}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("#start:not([disabled])", timeout=10_000)
            page.wait_for_selector("#model:not([hidden])", timeout=10_000)
            model = page.inner_text("#model")
            if upload is not None:
                page.set_input_files("#file", str(upload))
                page.wait_for_selector('#status[data-state="done"], #status[data-state="error"]', timeout=30_000)
            else:
                page.click("#start")
                page.wait_for_selector('#status[data-state="streaming"]', timeout=10_000)
                # the page's CSP forbids eval, so poll from here rather than with wait_for_function
                for _ in range(300):
                    if page.inner_text("#final").strip():
                        break
                    page.wait_for_timeout(100)
                page.click("#start")  # Stop: sends end, waits for the end event
                page.wait_for_selector('#status[data-state="done"], #status[data-state="error"]', timeout=30_000)
            return (
                page.inner_text("#final"),
                page.get_attribute("#status", "data-state") or "",
                page.inner_text("#error"),
                model,
            )
        finally:
            browser.close()


@pytest.fixture
async def page_url():  # type: ignore[no-untyped-def]
    # the bundled demo as serve.sh runs it: auth off, the page creates sessions with a plain POST
    settings = Settings(riva_uri="", embedded_recognizer="pocketsphinx", auth_disabled=True)
    async with running_gateway(settings) as gateway:
        yield gateway.base_url + "/"


async def test_microphone_speech_appears_on_the_page(page_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        microphone = padded_wav("children_park.wav", 1.5, Path(tmp))
        final, state, error = await trio.to_thread.run_sync(drive_page, page_url, microphone, None)
    assert (state, error) == ("done", "")
    heard = normalise(final)
    reference = REFERENCES["children_park.wav"]
    assert jiwer.wer(reference, heard[: len(reference) + 20]) <= 0.25, heard


async def test_a_44khz_wav_file_is_resampled_in_the_browser_and_transcribed(page_url: str) -> None:
    wav = DATA / "children_park_44k.wav"
    final, state, error, model = await trio.to_thread.run_sync(drive_page_and_read_model, page_url, None, wav)
    assert (state, error) == ("done", "")
    assert model.startswith("Recognizer: pocketsphinx-en-US-asr-streaming (en-US) — CMU PocketSphinx"), model
    assert jiwer.wer(REFERENCES["children_park_44k.wav"], normalise(final)) <= 0.15, final


async def test_with_api_keys_the_page_starts_only_with_a_token_from_its_address() -> None:
    """The browser-token flow: a back end (here the test) trades its API key for a
    ``session:create`` token and opens the page at ``/#token=...``; the page never sees the key."""
    settings = Settings(riva_uri="", embedded_recognizer="pocketsphinx")  # running_gateway adds an API key
    wav = DATA / "thank_you.wav"
    async with running_gateway(settings) as gateway:
        page = gateway.base_url + "/"
        _, state, error = await trio.to_thread.run_sync(drive_page, page, None, wav)
        assert state == "error" and "401" in error, error
        token = (await gateway.http.post("/v1/tokens", json={})).json()["token"]
        final, state, error = await trio.to_thread.run_sync(drive_page, f"{page}#token={token}", None, wav)
    assert (state, error) == ("done", "")
    assert "thank you" in normalise(final), final


@pytest.mark.modes("h2")  # the process model is the point, not the Riva transport
async def test_the_browser_flow_works_against_several_workers(tmp_path: Path, redis_server: RedisServer) -> None:
    """The flow that broke across replicas before shared state: a back end (the test) mints a
    ``session:create`` token on one worker; the page, loaded from any worker, creates its
    session, streams a file and reads the events, over connections the kernel spreads over two
    workers (and that the workers hand to their session's worker, so that no event crosses
    between workers through Redis). Three pages in turn."""
    env = {
        "RESERVE_REDIS_URL": redis_server.url,
        "RESERVE_API_KEYS": TEST_API_KEY,
        "RESERVE_EMBEDDED_RECOGNIZER": "pocketsphinx",
    }
    wav = DATA / "thank_you.wav"
    with served([*SERVE, "--workers", "2"], tmp_path / "serve.log", env=env) as server:
        await server.wait_healthy(60)
        await answering_pids(server, 2)
        for _ in range(3):
            async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as back_end:
                minted = await back_end.post("/v1/tokens", json={}, headers={"Authorization": f"Bearer {TEST_API_KEY}"})
                assert minted.status_code == 201, minted.text
            page = f"{server.base_url}/#token={minted.json()['token']}"
            final, state, error = await trio.to_thread.run_sync(drive_page, page, None, wav)
            assert (state, error) == ("done", "")
            assert "thank you" in normalise(final), final
        # the page's event stream rides a kept-alive connection: placed before its request all the same
        tallies = await worker_tallies(server)
        assert summed(tallies, "reserve_redis_followed_events_total") == 0
