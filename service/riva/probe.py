"""Is Riva answering? One cheap unary call, ``GetRivaSpeechRecognitionConfig``."""

from __future__ import annotations

import grpc
import trio
from riva.client.proto import riva_asr_pb2 as asr

from service.errors import ReserveError, UpstreamError, from_grpc
from service.riva.channel import RivaTarget

PROBE_TIMEOUT_S = 2.0


async def probe(
    target: RivaTarget, *, timeout_s: float = PROBE_TIMEOUT_S, limiter: trio.CapacityLimiter | None = None
) -> asr.RivaSpeechRecognitionConfigResponse:
    """Ask Riva for its models; raise a ReserveError when it does not answer in time.

    Used for reconnects, background health checks, readiness and the model list."""

    def call() -> asr.RivaSpeechRecognitionConfigResponse:
        try:
            return target.stub.GetRivaSpeechRecognitionConfig(
                asr.RivaSpeechRecognitionConfigRequest(), timeout=timeout_s, metadata=target.metadata
            )
        except grpc.RpcError as exc:
            raise from_grpc(exc) from None

    try:
        # the gRPC deadline bounds the thread; nothing is left running after it
        return await trio.to_thread.run_sync(call, limiter=limiter)
    except ReserveError:
        raise
    except Exception as exc:  # pragma: no cover - defensive: a probe must never crash a session
        raise UpstreamError(f"probing Riva failed: {type(exc).__name__}") from exc
