"""The bundled recognizer lists what it is: one English pocketsphinx model, nothing it cannot serve."""

from __future__ import annotations

from service.settings import Settings
from tests.harness import running_gateway

MODEL = "pocketsphinx-en-US-asr-streaming"


async def test_models_readiness_and_session_checks_name_the_pocketsphinx_model() -> None:
    async with running_gateway(Settings(riva_uri="", embedded_recognizer="pocketsphinx")) as gateway:
        offer = (await gateway.http.get("/v1/models")).json()
        assert [m["name"] for m in offer["models"]] == [MODEL]
        assert offer["languages"] == ["en-US"]
        assert "PocketSphinx" in offer["models"][0]["parameters"]["description"]
        ready = (await gateway.http.get("/readyz")).json()
        assert ready["riva"]["models"] == [MODEL] and ready["riva"]["languages"] == ["en-US"]
        await gateway.create_session(model=MODEL)
        refused = (await gateway.create_session(expect=422, language_code="es-US"))["error"]
        assert refused["available"]["languages"] == ["en-US"]
        conformer = (await gateway.create_session(expect=422, model="conformer-en-US-asr-streaming"))["error"]
        assert conformer["available"]["models"] == [{"name": MODEL, "languages": ["en-US"]}]
