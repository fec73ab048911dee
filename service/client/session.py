"""One transcription: create the session, follow its events while the audio goes out, and
return the Transcript once the session has ended."""

from __future__ import annotations

import signal
import sys

import httpx
import trio

from service.client.api import PROG, Options, Session, create_session
from service.client.audio import AudioInput
from service.client.audio_socket import GRACE_S, AudioSender
from service.client.errors import EXIT_INTERRUPTED, ClientError
from service.client.events import SessionResult, follow_events
from service.client.render import EventPrinter, NullPrinter

SUCCESS_REASONS = frozenset({"end", "finished"})


async def _audio_task(
    options: Options,
    session: Session,
    audio: AudioInput,
    result: SessionResult,
    stop: trio.Event,
    cancel: trio.CancelScope,
) -> None:
    try:
        await AudioSender(options, session, audio, result, stop).run()
    except ClientError as error:
        result.fail(error)
    finally:
        result.audio_done.set()
    with trio.move_on_after(GRACE_S):  # let the event stream deliver the error and end events
        await result.events_done.wait()
    cancel.cancel()


async def _events_task(
    http: httpx.AsyncClient,
    options: Options,
    session: Session,
    printer: EventPrinter,
    result: SessionResult,
    cancel: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await follow_events(http, options, session, printer, result, task_status=task_status)
    except ClientError as error:
        result.fail(error)
        raise  # before ``started`` this fails nursery.start; after it, it cancels the nursery
    finally:
        result.events_done.set()
    with trio.move_on_after(GRACE_S):  # the server closes the audio socket as the session ends
        await result.audio_done.wait()
    cancel.cancel()


async def _interrupts(stop: trio.Event, cancel: trio.CancelScope, result: SessionResult) -> None:
    """First Ctrl-C: stop sending and let the server finish; second: give up."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            if not stop.is_set():
                stop.set()
                print(f"{PROG}: stopping; waiting for the final results (Ctrl-C again to abort)", file=sys.stderr)
                continue
            result.fail(ClientError("interrupted", EXIT_INTERRUPTED))
            cancel.cancel()
            return


async def transcribe(
    options: Options,
    audio: AudioInput,
    printer: EventPrinter | None = None,
    *,
    stop: trio.Event | None = None,
    handle_interrupts: bool = False,
) -> SessionResult:
    """Create a session, stream ``audio`` to it while printing its events, and return once it is over.

    Raises ClientError when anything fails, including a session that ends for a reason other
    than "finished". Setting ``stop`` ends the audio early (then ``end``) and lets the session
    finish; ``handle_interrupts`` makes the first Ctrl-C do that (main thread only).
    """
    printer = printer or NullPrinter()
    result = SessionResult()
    stop = trio.Event() if stop is None else stop
    timeout = httpx.Timeout(options.connect_timeout_s)
    async with httpx.AsyncClient(timeout=timeout, headers={"User-Agent": f"{PROG}/1"}) as http:
        session = await create_session(http, options, audio.format)
        result.session = session
        result.transcript.session_id = session.id
        try:
            async with trio.open_nursery() as nursery:
                if handle_interrupts:
                    nursery.start_soon(_interrupts, stop, nursery.cancel_scope, result)
                await nursery.start(_events_task, http, options, session, printer, result, nursery.cancel_scope)
                nursery.start_soon(_audio_task, options, session, audio, result, stop, nursery.cancel_scope)
        except* ClientError:
            pass  # already in result.failure, put there by the task that raised it
        finally:
            printer.close()
    result.transcript.audio_seconds = result.audio_bytes / audio.format.bytes_per_second
    if result.failure is not None:
        raise result.failure
    if result.end_reason is None:
        raise ClientError("the session's event stream stopped before its end event")
    if result.end_reason not in SUCCESS_REASONS:
        raise ClientError(f"the session ended early: {result.end_reason}")
    return result
