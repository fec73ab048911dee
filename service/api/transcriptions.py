"""``POST /v1/audio/transcriptions``, as OpenAI's SDK calls it: the upload is decoded packet by packet
and streamed through a Reserve session (the same limits, metrics and Riva failover as any other);
the finals become the response in the asked format, or ``stream=true`` sends them as SSE deltas.

Why streaming rather than Riva's offline ``Recognize``: ``Recognize`` takes the whole file's audio in
one message, so a long file would sit decoded in memory and wait for one answer, with no failover
and no partial progress; the streaming path keeps memory flat and reuses the session machinery.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import trio
from quart import Blueprint, Response, current_app, jsonify, request

from service.api.common import api_credential, guard, registry
from service.api.models import check_offered
from service.api.openai_errors import openai_errors
from service.errors import BadRequest, InternalError, ReserveError
from service.realtime.turns import delta
from service.sessions.driven import DrivenSession
from service.transcription import formats
from service.transcription.decode import Decoder
from service.transcription.options import Options, parse_options

blueprint = Blueprint("transcriptions", __name__)
log = logging.getLogger("reserve.transcriptions")
DECODE_THREADS = 4  # files decoded at once; more wait their turn

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-store, no-transform",
    "X-Accel-Buffering": "no",
    "Content-Type": "text/event-stream; charset=utf-8",
}


def _limiter() -> trio.CapacityLimiter:
    limiter = current_app.extensions.get("reserve.decode_limiter")
    if limiter is None:
        limiter = current_app.extensions["reserve.decode_limiter"] = trio.CapacityLimiter(DECODE_THREADS)
    return limiter


@blueprint.post("/v1/audio/transcriptions")
@openai_errors
async def transcriptions() -> Response:
    auth = guard()
    principal = auth.creator(api_credential())
    if request.mimetype != "multipart/form-data":
        raise BadRequest("send the file as multipart/form-data", param="file")
    form = await request.form
    upload = (await request.files).get("file")
    if upload is None:
        raise BadRequest("the file field is required", param="file")
    options = parse_options(form)
    settings = options.settings()
    limiter = _limiter()  # taken here: a streamed body runs outside the app context
    max_seconds = auth.settings.max_upload_audio_s
    decoder = await trio.to_thread.run_sync(
        lambda: Decoder(upload.stream, max_seconds=max_seconds, copy=options.stream), limiter=limiter
    )
    try:
        await check_offered(settings)
        ticket = await auth.admit(principal)

        async def release() -> None:
            await auth.counters.release(principal.key_id, ticket)

        try:
            driven = await DrivenSession.start(
                registry(), settings, protocol="transcriptions", owner=principal.key_id, ticket=ticket, on_end=release
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await auth.not_created(principal, ticket)
            raise
    except BaseException:
        decoder.close()
        raise
    if options.stream:
        response = Response(_stream(driven, decoder, options, limiter), status=200, headers=SSE_HEADERS)
        response.timeout = None
        return response
    try:
        transcript = await _transcribe(driven, decoder, options, limiter)
    finally:
        driven.close()
        decoder.close()
    return _respond(transcript, options)


async def _transcribe(
    driven: DrivenSession, decoder: Decoder, options: Options, limiter: trio.CapacityLimiter
) -> formats.Transcript:
    transcript = formats.Transcript(language=options.language)
    async for _ in _run(driven, decoder, transcript, limiter):
        pass
    return transcript


async def _run(
    driven: DrivenSession, decoder: Decoder, transcript: formats.Transcript, limiter: trio.CapacityLimiter
) -> AsyncIterator[str]:
    """Feed the file, then flush; yields the file's hypothesis after each result as it comes.
    The session's own task talks to Riva, so feeding and reading need no second task here."""
    while chunk := await trio.to_thread.run_sync(decoder.read, limiter=limiter):
        await driven.send_audio(chunk)
        for hypothesis in await _results(driven, transcript):
            yield hypothesis
    transcript.duration_s = decoder.seconds
    await driven.end()
    while not driven.ended:
        await driven.wait()
        for hypothesis in await _results(driven, transcript):
            yield hypothesis


async def _results(driven: DrivenSession, transcript: formats.Transcript) -> list[str]:
    """Riva's hypothesis of the whole file after each result (the finals so far, and an interim)."""
    out: list[str] = []
    for event in await driven.pending():
        if event.name == "transcript":
            if event.data["is_final"]:
                transcript.add_final(event.data)
                out.append(transcript.text)
            else:
                out.append(" ".join(filter(None, [transcript.text, str(event.data["text"]).strip()])))
        elif event.name == "error":
            raise driven.session.failure or InternalError(str(event.data.get("message")))
    return out


def _respond(transcript: formats.Transcript, options: Options) -> Response:
    kind = options.response_format
    if kind == "json":
        return jsonify(formats.json_body(transcript))
    if kind == "verbose_json":
        return jsonify(formats.verbose_json(transcript, words=options.words, segments=options.segments))
    text = {"text": transcript.text + "\n", "srt": formats.srt(transcript), "vtt": formats.vtt(transcript)}[kind]
    mimetype = "text/vtt" if kind == "vtt" else "text/plain"
    return Response(text, status=200, mimetype=mimetype)


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: %s\n\n" % msgspec.json.encode(payload)


async def _stream(
    driven: DrivenSession, decoder: Decoder, options: Options, limiter: trio.CapacityLimiter
) -> AsyncIterator[bytes]:
    """``transcript.text.delta`` as Riva's hypothesis of the whole file grows (the same delta rule
    as the realtime sockets: text that extends what was sent), ``transcript.text.done``, ``[DONE]``."""
    transcript = formats.Transcript(language=options.language)
    sent = ""
    try:
        async for hypothesis in _run(driven, decoder, transcript, limiter):
            more = delta(sent, hypothesis)
            if more:
                sent += more
                yield _sse({"type": "transcript.text.delta", "delta": more})
        yield _sse({"type": "transcript.text.done", "text": transcript.text})
    except ReserveError as error:
        kind = "invalid_request_error" if error.http_status < 500 else "server_error"
        yield _sse({"error": {"message": error.message, "type": kind, "param": None, "code": error.code}})
    except Exception:
        log.exception("transcription stream failed")
        yield _sse({"error": {"message": "internal error", "type": "server_error", "param": None, "code": "internal"}})
    finally:
        driven.close()
        decoder.close()
    yield b"data: [DONE]\n\n"
