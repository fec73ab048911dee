"""``reserve transcribe FILE|-`` (also ``python -m service.client``): stream an audio file to
Reserve, print the live transcript, optionally write the final one to a file.

Exit status: 0 when the session ends with reason "finished", 1 when the server, the stream
or the session fails, 2 for bad arguments or audio the client cannot read, 130 when
interrupted twice. Failures are one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import trio

from service.client.api import API_KEY_ENV, DEFAULT_URL, PROG, RECONNECT_S, RESEND_BUFFER_S, Options
from service.client.audio import RAW_ENCODINGS, AudioInput, open_audio_path
from service.client.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ClientError
from service.client.render import (
    OUTPUT_FORMATS,
    EventPrinter,
    JsonPrinter,
    OutputFormat,
    TextPrinter,
    render_transcript,
)
from service.client.session import transcribe


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} transcribe",
        description="Stream an audio file to Reserve and print the live transcript.",
        epilog=(
            "Any audio file ffmpeg decodes (WAV of any rate, width and channel count, FLAC, MP3, OGG/Opus, "
            "M4A/AAC...) is mixed down to mono and resampled to --sample-rate; with --raw the input is sent "
            "as it is. Exit status: 0 finished, 1 failed, 2 bad arguments or unreadable audio, 130 interrupted."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="an audio file, or - for audio on stdin")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"Reserve's base URL (default {DEFAULT_URL})")
    parser.add_argument(
        "--token",
        default=os.environ.get(API_KEY_ENV) or None,
        help=f"API key sent as 'Authorization: Bearer' when creating the session (default: ${API_KEY_ENV})",
    )
    parser.add_argument(
        "--rate",
        choices=("realtime", "fast"),
        default="realtime",
        help="send at real-time pace (default) or as fast as the server accepts",
    )
    parser.add_argument(
        "--chunk-ms", type=_chunk_ms, default=100, help="audio per WebSocket frame, 10-1000 ms (default 100)"
    )
    parser.add_argument(
        "--json", action="store_true", help='print every event as one JSON object per line: {"event", "id", "data"}'
    )
    parser.add_argument("--out", metavar="FILE", type=Path, help="write the final transcript to FILE")
    parser.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default=None,
        help="format of --out: text, json, srt or vtt subtitles (default: from its extension, else text)",
    )
    parser.add_argument(
        "--sample-rate",
        type=_positive_int,
        metavar="N",
        help="sample rate asked of the session, in Hz; the audio is resampled to it (default 16000)",
    )
    parser.add_argument("--raw", action="store_true", help="the input is raw audio in --encoding at --sample-rate")
    parser.add_argument(
        "--encoding", type=str.upper, choices=RAW_ENCODINGS, help="encoding of --raw input (default LINEAR_PCM)"
    )
    parser.add_argument("--language", default="en-US", help="BCP-47 language code (default en-US)")
    parser.add_argument("--no-interim", dest="interim", action="store_false", help="ask for final results only")
    parser.add_argument(
        "--resend-buffer",
        type=_positive_float,
        metavar="SECONDS",
        default=RESEND_BUFFER_S,
        help=f"audio kept to resend after a dropped connection (default {RESEND_BUFFER_S:g} s)",
    )
    parser.add_argument(
        "--reconnect-for",
        type=_positive_float,
        metavar="SECONDS",
        default=RECONNECT_S,
        help=f"how long to keep trying to reconnect a dropped audio socket (default {RECONNECT_S:g} s)",
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _chunk_ms(text: str) -> int:
    value = _positive_int(text)
    if not 10 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 10 and 1000 ms: {value}")
    return value


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"--url must be an http:// or https:// URL, got {url!r}", EXIT_USAGE)
    return url


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        url=_check_url(args.url),
        api_key=args.token,
        rate=args.rate,
        chunk_ms=args.chunk_ms,
        language=args.language,
        interim=args.interim,
        resend_buffer_s=args.resend_buffer,
        reconnect_s=args.reconnect_for,
    )


def output_format(args: argparse.Namespace) -> OutputFormat:
    """--format, or the --out file's extension when it names one, else text."""
    chosen = args.format or (args.out.suffix.lower().lstrip(".") if args.out is not None else "")
    for fmt in OUTPUT_FORMATS:
        if fmt == chosen:
            return fmt
    return "text"


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


async def run(
    options: Options,
    audio: AudioInput,
    printer: EventPrinter,
    *,
    out: Path | None = None,
    fmt: OutputFormat = "text",
    handle_interrupts: bool = False,
) -> int:
    """``transcribe`` as an exit status, failures reported as one line on stderr."""
    try:
        result = await transcribe(options, audio, printer, handle_interrupts=handle_interrupts)
    except ClientError as error:
        _say(error.message)
        return error.exit_code
    for warning in [*audio.warnings, *result.warnings]:
        _say(f"warning: {warning}")
    if out is not None:
        try:
            await trio.Path(out).write_text(render_transcript(result.transcript, fmt))
        except OSError as exc:
            _say(f"cannot write {out}: {exc.strerror or exc}")
            return EXIT_FAILURE
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already explained
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    audio: AudioInput | None = None
    try:
        if args.encoding and not args.raw:
            raise ClientError("--encoding is for --raw input (a file's own encoding is read from it)", EXIT_USAGE)
        options = options_from_args(args)
        audio = open_audio_path(args.file, sample_rate=args.sample_rate, raw=args.raw, encoding=args.encoding)
        printer: EventPrinter = JsonPrinter(sys.stdout) if args.json else TextPrinter(sys.stdout)
        interrupts = threading.current_thread() is threading.main_thread()
        return trio.run(
            partial(run, options, audio, printer, out=args.out, fmt=output_format(args), handle_interrupts=interrupts)
        )
    except ClientError as error:
        _say(error.message)
        return error.exit_code
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug rather than the user's problem: still one line, no traceback
        leaf = _leaf(error)
        _say(f"unexpected error: {type(leaf).__name__}: {leaf}")
        return EXIT_FAILURE
    finally:
        if audio is not None:
            audio.close()
