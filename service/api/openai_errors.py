"""Errors in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, for the endpoints
OpenAI's clients call (their SDKs read that body and raise by HTTP status)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from quart import Response, jsonify
from werkzeug.exceptions import HTTPException

from service.errors import ReserveError


def openai_error(status: int, code: str, message: str, *, param: str | None = None) -> Response:
    kind = "server_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
    response = jsonify({"error": {"message": message, "type": kind, "param": param, "code": code}})
    response.status_code = status
    return response


def from_reserve(error: ReserveError) -> Response:
    response = openai_error(error.http_status, error.code, error.message, param=error.details.get("param"))
    retry_after = error.details.get("retry_after_s")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if error.http_status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="reserve"'
    return response


def openai_errors(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Answer the handler's ``ReserveError`` and HTTP errors (413 and the like) in OpenAI's shape."""

    @wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await handler(*args, **kwargs)
        except ReserveError as error:
            return from_reserve(error)
        except HTTPException as error:
            code = (error.name or "error").lower().replace(" ", "_")
            response = openai_error(error.code or 500, code, error.description or error.name)
            if error.code == 413:  # the rest of the body was never read: this connection cannot be reused
                response.headers["Connection"] = "close"
            return response

    return wrapper
