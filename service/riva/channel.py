"""One gRPC channel per Riva target, shared by every session (HTTP/2 multiplexes them).

The target also keeps what a ``grpc.aio`` channel to the same place needs (credentials
and options), for the shared transport, whose event loop opens and owns its own.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

import grpc
import grpc.aio
from riva.client.proto import riva_asr_pb2_grpc as asr_grpc

from service.settings import Settings

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RivaTarget:
    uri: str
    channel: grpc.Channel
    stub: asr_grpc.RivaSpeechRecognitionStub
    metadata: tuple[tuple[str, str], ...] = field(repr=False)  # carries the Riva API key
    credentials: grpc.ChannelCredentials | None = field(default=None, repr=False)  # None: plaintext
    options: tuple[tuple[str, int], ...] = ()
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)  # the h2 transport's TLS; None: plaintext

    def close(self) -> None:
        self.channel.close()


def call_metadata(settings: Settings) -> tuple[tuple[str, str], ...]:
    """Per-call metadata, each header exactly once (NVIDIA's client doubles them under TLS)."""
    metadata: list[tuple[str, str]] = []
    if settings.riva_function_id:
        metadata.append(("function-id", settings.riva_function_id))
    api_key = riva_api_key(settings)
    if api_key:
        metadata.append(("authorization", f"Bearer {api_key}"))
    return tuple(metadata)


def riva_api_key(settings: Settings) -> str:
    """The Riva key from the environment or, better, a file (never from a command line)."""
    if settings.riva_api_key_file is not None:
        return settings.riva_api_key_file.read_text(encoding="utf-8").strip()
    return settings.riva_api_key.get_secret_value()


def open_target(settings: Settings, uri: str) -> RivaTarget:
    keepalive_ms = int(settings.riva_keepalive_s * 1000)
    options = (
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    )
    credentials: grpc.ChannelCredentials | None = None
    ssl_context: ssl.SSLContext | None = None
    if settings.riva_tls:
        ssl_context = tls_context(settings)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(settings.riva_ssl_root_cert),
            private_key=_read(settings.riva_ssl_client_key),
            certificate_chain=_read(settings.riva_ssl_client_cert),
        )
        channel = grpc.secure_channel(uri, credentials, options=options)
    else:
        channel = grpc.insecure_channel(uri, options=options)
    stub = asr_grpc.RivaSpeechRecognitionStub(channel)
    return RivaTarget(uri, channel, stub, call_metadata(settings), credentials, options, ssl_context)


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The same trust and client certificate as the gRPC channels, for the h2 transport."""
    root = settings.riva_ssl_root_cert
    context = ssl.create_default_context(cafile=str(root) if root is not None else None)
    if settings.riva_ssl_client_cert is not None and settings.riva_ssl_client_key is not None:
        context.load_cert_chain(settings.riva_ssl_client_cert, settings.riva_ssl_client_key)
    context.set_alpn_protocols(["h2"])
    return context


def open_aio_channel(target: RivaTarget) -> grpc.aio.Channel:
    """A grpc.aio channel to the target, with its credentials and options; call it on the
    event loop that will own the channel."""
    options = list(target.options)
    if target.credentials is None:
        return grpc.aio.insecure_channel(target.uri, options=options)
    return grpc.aio.secure_channel(target.uri, target.credentials, options=options)


def _read(path: object) -> bytes | None:
    from pathlib import Path

    return None if path is None else Path(str(path)).read_bytes()
