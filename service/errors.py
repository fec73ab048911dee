"""Reserve's errors, by meaning. Every error knows how each transport says it.

    ReserveError
    ├── ClientError            the request is wrong; retrying it unchanged will fail again
    │   ├── InvalidConfig          422  invalid_config      WS 4422
    │   ├── BadRequest             400  bad_request         WS 1003
    │   ├── BadMessage             -    bad_message         WS 1003
    │   ├── FrameTooLarge          413  frame_too_large     WS 1009
    │   ├── Unauthorized           401  unauthorized        WS 4401
    │   │   └── TokenExpired           401  token_expired
    │   ├── Forbidden              403  forbidden           WS 4403
    │   │   └── OriginNotAllowed       403  origin_not_allowed
    │   ├── SessionNotFound        404  not_found           WS 4404
    │   ├── SessionBusy            409  audio_attached      WS 4409
    │   ├── SessionClosed          409  session_closed      WS 4410
    │   ├── TooManyReaders         429  too_many_readers
    │   └── RateLimited            429  rate_limited        WS 1008  (per API key; Retry-After)
    ├── Overloaded             503  overloaded          WS 1013  (try again later)
    │   ├── ShuttingDown           503  shutting_down
    │   └── StateUnavailable       503  state_unavailable   (Redis, holding the shared state, does not answer)
    ├── UpstreamError          502  upstream_error      WS 1011  (Riva failed)
    │   ├── UpstreamUnavailable    503  upstream_unavailable
    │   ├── UpstreamTimeout        504  upstream_timeout    (also: Riva stalled)
    │   ├── UpstreamBusy           503  upstream_busy       WS 1013
    │   └── UpstreamRejected       502  upstream_rejected   (credentials, unimplemented)
    └── InternalError          500  internal            WS 1011

Riva's gRPC status codes become these in exactly one place: ``from_grpc``.
``retryable`` says whether a session may reconnect to Riva and replay after it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import grpc
import grpc.aio


class ReserveError(Exception):
    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    ws_close_code: ClassVar[int] = 1011
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class ClientError(ReserveError):
    code = "bad_request"
    http_status = 400
    ws_close_code = 1003


class InvalidConfig(ClientError):
    code = "invalid_config"
    http_status = 422
    ws_close_code = 4422


class BadRequest(ClientError):
    pass


class BadMessage(ClientError):
    code = "bad_message"


class FrameTooLarge(ClientError):
    code = "frame_too_large"
    http_status = 413
    ws_close_code = 1009


class Unauthorized(ClientError):
    code = "unauthorized"
    http_status = 401
    ws_close_code = 4401


class TokenExpired(Unauthorized):
    """A signed token past its expiry: the client should fetch a fresh one."""

    code = "token_expired"


class Forbidden(ClientError):
    code = "forbidden"
    http_status = 403
    ws_close_code = 4403


class OriginNotAllowed(Forbidden):
    """A browser page from an origin not in RESERVE_CORS_ORIGINS opened the audio socket."""

    code = "origin_not_allowed"


class SessionNotFound(ClientError):
    code = "not_found"
    http_status = 404
    ws_close_code = 4404


class SessionBusy(ClientError):
    code = "audio_attached"
    http_status = 409
    ws_close_code = 4409


class SessionClosed(ClientError):
    code = "session_closed"
    http_status = 409
    ws_close_code = 4410


class Overloaded(ReserveError):
    code = "overloaded"
    http_status = 503
    ws_close_code = 1013


class UpstreamError(ReserveError):
    code = "upstream_error"
    http_status = 502
    ws_close_code = 1011
    retryable = True


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"
    http_status = 503


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"
    http_status = 504


class UpstreamBusy(UpstreamError):
    code = "upstream_busy"
    http_status = 503
    ws_close_code = 1013


class UpstreamRejected(UpstreamError):
    code = "upstream_rejected"
    retryable = False


class TooManyReaders(ClientError):
    code = "too_many_readers"
    http_status = 429


class RateLimited(ClientError):
    """An API key over its concurrent-session or sessions-per-minute limit."""

    code = "rate_limited"
    http_status = 429
    ws_close_code = 1008


class ShuttingDown(Overloaded):
    code = "shutting_down"


class StateUnavailable(Overloaded):
    code = "state_unavailable"


class InternalError(ReserveError):
    pass


_GRPC_CLIENT_FAULTS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
}


def from_grpc(exc: grpc.RpcError) -> ReserveError:
    """Translate a failed Riva call into what the client can act on."""
    has_status = isinstance(exc, grpc.Call | grpc.aio.AioRpcError)  # the sync and the asyncio API's errors
    code = exc.code() if has_status else grpc.StatusCode.UNKNOWN
    details = (exc.details() if has_status else None) or str(exc)
    return from_status(code, details)


def from_status(code: grpc.StatusCode | None, details: str) -> ReserveError:
    """A gRPC status (from any transport) as the error the client can act on."""
    name = code.name if code is not None else "UNKNOWN"
    if code in _GRPC_CLIENT_FAULTS:
        return InvalidConfig(f"Riva rejected the session's settings: {details}", grpc_code=name)
    if code == grpc.StatusCode.UNAVAILABLE:
        return UpstreamUnavailable(f"Riva is unavailable: {details}", grpc_code=name)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return UpstreamTimeout(f"Riva did not answer in time: {details}", grpc_code=name)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return UpstreamBusy(f"Riva is out of capacity: {details}", grpc_code=name)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNIMPLEMENTED):
        return UpstreamRejected(f"Riva refused the gateway: {details}", grpc_code=name)
    return UpstreamError(f"Riva failed: {details}", grpc_code=name)
