"""Reserve's REST side as the client uses it: options, creating a session, errors in words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from service.client.audio import AudioFormat
from service.client.errors import ClientError

PROG = "reserve"
DEFAULT_URL = "http://127.0.0.1:8000"
API_KEY_ENV = "RESERVE_API_KEY"
CONNECT_TIMEOUT_S = 10.0
FINISH_TIMEOUT_S = 120.0  # after "end", how long to wait for the server to finish
RESEND_BUFFER_S = 60.0  # audio kept since the server's last confirmed point, to resend after a drop
RECONNECT_S = 30.0  # how long a dropped audio socket is tried again before giving up


@dataclass(frozen=True)
class Options:
    url: str = DEFAULT_URL
    api_key: str | None = None
    rate: Literal["realtime", "fast"] = "realtime"
    chunk_ms: int = 100
    language: str = "en-US"
    interim: bool = True
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    finish_timeout_s: float = FINISH_TIMEOUT_S
    resend_buffer_s: float = RESEND_BUFFER_S
    reconnect_s: float = RECONNECT_S
    settings: dict[str, Any] = field(default_factory=dict)  # more of POST /v1/sessions' body

    @property
    def display_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def base_url(self) -> str:
        """``url`` ending in one slash, so relative paths resolve under any prefix in it."""
        return self.url.rstrip("/") + "/"


@dataclass(frozen=True)
class Session:
    id: str
    token: str
    audio_url: str
    events_url: str
    config: dict[str, Any]


def _error_details(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from Reserve's ``{"error": {...}}`` body, or from whatever came back."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("code") or ""), str(error.get("message") or "")
    text = " ".join(response.text.split())[:200]
    return "", text or response.reason_phrase


def describe_http_error(what: str, response: httpx.Response) -> str:
    """One line saying why ``what`` failed, with the server's own message."""
    code, message = _error_details(response)
    status = f"HTTP {response.status_code}" + (f" {code}" if code else "")
    line = f"{what} failed ({status}): {message}" if message else f"{what} failed ({status})"
    if response.status_code == 401:
        return f"{line} - Reserve wants an API key: pass --token or set {API_KEY_ENV}"
    if response.status_code == 403:
        return f"{line} - the API key was refused: check --token / {API_KEY_ENV}"
    retry_after = response.headers.get("Retry-After")
    if response.status_code in (429, 503) and retry_after:
        return f"{line}; retry after {retry_after} s"
    return line


def describe_transport_error(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def unreachable(options: Options, exc: BaseException) -> ClientError:
    return ClientError(f"cannot reach Reserve at {options.display_url}: {describe_transport_error(exc)}")


def websocket_url(base_url: str, path: str) -> str:
    """``path`` resolved against the server's URL, with http(s) turned into ws(s)."""
    parts = urlsplit(urljoin(base_url, path))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


def session_settings(
    fmt: AudioFormat, *, language: str = "en-US", interim: bool = True, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The body of ``POST /v1/sessions``: word times always, for subtitles and timings."""
    return {
        "encoding": fmt.encoding,
        "sample_rate_hertz": fmt.sample_rate,
        "language_code": language,
        "interim_results": interim,
        "word_time_offsets": True,
        **(extra or {}),
    }


async def create_session(http: httpx.AsyncClient, options: Options, fmt: AudioFormat) -> Session:
    url = urljoin(options.base_url, "v1/sessions")  # relative: keeps a path prefix given in --url
    headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
    body = session_settings(fmt, language=options.language, interim=options.interim, extra=options.settings)
    try:
        response = await http.post(url, json=body, headers=headers)
    except httpx.TransportError as exc:
        raise unreachable(options, exc) from None
    if response.status_code == 404:
        problem = describe_http_error("creating the session", response)
        raise ClientError(f"{problem} - is {options.display_url} a Reserve server?")
    if response.status_code != 201:
        raise ClientError(describe_http_error("creating the session", response))
    try:
        payload = response.json()
        return Session(
            id=str(payload["id"]),
            token=str(payload["token"]),
            audio_url=str(payload["audio_url"]),
            events_url=str(payload["events_url"]),
            config=dict(payload.get("config") or {}),
        )
    except (ValueError, KeyError, TypeError):
        raise ClientError(f"unexpected answer from {url}: not a Reserve session") from None
