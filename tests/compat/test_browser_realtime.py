"""A browser (Debian chromium, driven by Playwright) on the gateway's origin opens ``/v1/realtime``
with a minted client secret as its subprotocol, as OpenAI documents for browsers; the page in
``web/`` is not involved: the script runs with ``page.evaluate`` on a plain gateway URL."""

from __future__ import annotations

import base64
import shutil
from typing import Any

import pytest

from tests.compat.conftest import in_thread, scripted_gateway

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
SCRIPT = "hello there|general kenobi"

# runs in the page: the socket, the update, the audio, the commit; resolves with every event
TRANSCRIBE_JS = """
async ({url, secret, chunks}) => {
  const ws = new WebSocket(url, ["realtime", "openai-insecure-api-key." + secret]);
  const events = [];
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no transcript: " + JSON.stringify(events))), 10000);
    ws.onerror = () => reject(new Error("socket error"));
    ws.onclose = (e) => { clearTimeout(timer); resolve({protocol: ws.protocol, events, close: e.code}); };
    ws.onmessage = (message) => {
      const event = JSON.parse(message.data);
      events.push(event);
      if (event.type === "session.created") {
        ws.send(JSON.stringify({type: "session.update",
          session: {type: "transcription", audio: {input: {turn_detection: null}}}}));
        for (const audio of chunks) ws.send(JSON.stringify({type: "input_audio_buffer.append", audio}));
        ws.send(JSON.stringify({type: "input_audio_buffer.commit"}));
      }
      if (event.type === "conversation.item.input_audio_transcription.completed") ws.close(1000);
    };
  });
}
"""


def in_browser(origin_url: str, socket_url: str, secret: str, chunks: list[str]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.goto(origin_url)  # the gateway's origin, a URL without the page's strict CSP
            result: dict[str, Any] = page.evaluate(
                TRANSCRIBE_JS, {"url": socket_url, "secret": secret, "chunks": chunks}
            )
            return result
        finally:
            browser.close()


async def test_a_browser_transcribes_with_a_client_secret() -> None:
    chunks = [base64.b64encode(bytes(4800)).decode()] * 8  # 0.8 s of 24 kHz PCM
    async with scripted_gateway(SCRIPT) as gateway:
        minted = await gateway.http.post(
            "/v1/realtime/client_secrets",
            json={"expires_after": {"anchor": "created_at", "seconds": 60}},
            headers={"Authorization": f"Bearer {gateway.settings.api_keys.get_secret_value()}"},
        )
        assert minted.status_code == 200, minted.text
        secret = minted.json()["value"]
        socket_url = f"{gateway.ws_base}/v1/realtime?intent=transcription"
        result = await in_thread(lambda: in_browser(f"{gateway.base_url}/healthz", socket_url, secret, chunks))
    assert result["protocol"] == "realtime"  # the secret is never echoed back
    completed = [e for e in result["events"] if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert [c["transcript"] for c in completed] == ["hello there general kenobi"]
