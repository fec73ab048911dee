"""NVIDIA's ``RealtimeClientASR`` driven as its example script does, recording what it receives."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from tests.harness import TEST_API_KEY, Gateway


def client_args(gateway: Gateway, *, mic: bool, word_time_offsets: bool = True) -> argparse.Namespace:
    """What NVIDIA's example script's argument parser gives the client."""
    return argparse.Namespace(
        server=gateway.base_url.removeprefix("http://"),
        endpoint="/v1/realtime",
        query_params="intent=transcription",
        use_ssl=False,
        ssl_root_cert=None,
        ssl_client_cert=None,
        ssl_client_key=None,
        mint_api_key=TEST_API_KEY,
        mic=mic,
        language_code="en-US",
        model_name="",
        prompt="",
        sample_rate_hz=16000,
        num_channels=1,
        max_alternatives=1,
        automatic_punctuation=True,
        word_time_offsets=word_time_offsets,
        profanity_filter=False,
        no_verbatim_transcripts=False,
        speaker_diarization=False,
        diarization_max_speakers=2,
        boosted_lm_words=None,
        boosted_lm_score=4.0,
        start_history=-1,
        start_threshold=-1.0,
        stop_history=-1,
        stop_threshold=-1.0,
        stop_history_eou=-1,
        stop_threshold_eou=-1.0,
        custom_configuration="",
    )


def transcribe(args: argparse.Namespace, chunks: list[bytes], force_eou: list[bool] | None = None) -> dict[str, Any]:
    """The client's own flow: connect, send and receive at once, keep its final transcript."""
    from riva.client.realtime import RealtimeClientASR  # imported here: its module configures logging

    deltas: list[str] = []
    completed: list[dict[str, Any]] = []

    async def run() -> str:
        client = RealtimeClientASR(args)
        await client.connect()
        original_recv = client.websocket.recv

        async def recording_recv(*a: Any, **k: Any) -> Any:
            message = await original_recv(*a, **k)
            event = json.loads(message)
            if event["type"].endswith(".delta"):
                deltas.append(event["delta"])
            elif event["type"].endswith(".completed"):
                completed.append(event)
            return message

        client.websocket.recv = recording_recv
        try:
            await asyncio.gather(client.send_audio_chunks(chunks, force_eou), client.receive_responses())
        finally:
            await client.disconnect()
        transcript: str = client.final_transcript
        return transcript

    final = asyncio.run(run())
    return {"final": final, "deltas": deltas, "completed": completed}


def file_chunks(path: Path) -> Any:
    """What NVIDIA's example script streams in file mode: 1600-frame chunks of the file as it is."""
    from riva.client.asr import AudioChunkFileIterator

    return AudioChunkFileIterator(str(path), 1600)
