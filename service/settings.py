"""One validated settings object, read from ``RESERVE_*`` environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

RivaTransport = Literal["h2", "aio", "threads"]

KIB = 1024
SECONDS = 1.0
MIN_TOKEN_SECRET_CHARS = 32
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def split_list(value: str) -> list[str]:
    """A comma-separated setting as its non-empty, stripped items."""
    return [item.strip() for item in value.split(",") if item.strip()]


class Settings(BaseSettings):
    """Every knob, with the bound it sets. The README's table is checked against this class."""

    model_config = SettingsConfigDict(env_prefix="RESERVE_", frozen=True, extra="forbid")

    riva_uri: str = Field(
        "", description="Riva gRPC address host:port, or several comma-separated; empty starts the bundled recognizer"
    )
    riva_use_ssl: bool = Field(False, description="Use TLS to Riva (implied by a root or client certificate)")
    riva_ssl_root_cert: Path | None = Field(None, description="PEM file of the CA that signed Riva's certificate")
    riva_ssl_client_cert: Path | None = Field(None, description="PEM client certificate for mutual TLS")
    riva_ssl_client_key: Path | None = Field(None, description="PEM client key for mutual TLS")
    riva_function_id: str = Field("", description="NVIDIA cloud function-id metadata sent on every call")
    riva_api_key: SecretStr = Field(SecretStr(""), description="Sent as 'authorization: Bearer <key>' to Riva")
    riva_api_key_file: Path | None = Field(
        None, description="File holding the Riva API key (instead of RESERVE_RIVA_API_KEY)"
    )
    embedded_recognizer: Literal["pocketsphinx", "scripted"] = Field(
        "pocketsphinx", description="Recognizer of the bundled server when riva_uri is empty"
    )
    max_sessions: int = Field(200, ge=1, le=10_000, description="Live sessions at once; more get 503")
    audio_queue_chunks: int = Field(16, ge=1, le=1024, description="Audio frames buffered per session")
    max_frame_bytes: int = Field(256 * KIB, ge=1 * KIB, le=16 * 1024 * KIB, description="Largest audio frame")
    max_body_bytes: int = Field(64 * KIB, ge=1 * KIB, description="Largest HTTP request body")
    max_log_bytes: int = Field(
        8 * 1024 * KIB, ge=64 * KIB, description="Event log memory per session past which interims are dropped"
    )
    session_retention_s: float = Field(300 * SECONDS, ge=0, description="Events stay readable this long after the end")
    idle_session_timeout_s: float = Field(
        120 * SECONDS, gt=0, description="A session nobody streams to ends after this long"
    )
    finish_timeout_s: float = Field(30 * SECONDS, gt=0, description="Wait for Riva's finals after end of audio")
    sse_heartbeat_s: float = Field(
        15 * SECONDS, gt=0, description="An idle event stream gets a comment line at least this often"
    )
    event_wake_interval_s: float = Field(
        0.005,
        ge=0,
        le=0.1,
        description="In-memory mode: readers of new events are woken together this often (0: at every event)",
    )
    io_coalesce_s: float = Field(
        0.005,
        ge=0,
        le=0.05,
        description="A busy gateway pauses this long before each wait for I/O, to handle more per pass (0: never)",
    )
    riva_reconnect_deadline_s: float = Field(
        30 * SECONDS, ge=0, description="How long a session keeps trying to reach Riva again after a failure"
    )
    riva_start_deadline_s: float = Field(
        3 * SECONDS, ge=0, description="How long a new session retries a Riva that has not answered it yet"
    )
    riva_probe_interval_s: float = Field(
        5 * SECONDS, gt=0, description="How often a Riva target marked down is asked whether it is back"
    )
    riva_stall_timeout_s: float = Field(
        15 * SECONDS, gt=0, description="Audio unanswered by Riva this long counts as a failed stream"
    )
    replay_max_s: float = Field(
        60 * SECONDS, gt=0, description="Audio kept since the last final, to replay after a reconnect"
    )
    audio_reconnect_grace_s: float = Field(
        10 * SECONDS, ge=0, description="Wait for a dropped audio socket to come back (0: cancel at once)"
    )
    max_session_duration_s: float = Field(4 * 3600 * SECONDS, gt=0, description="Longest session; then it is finalized")
    max_audio_rate: float = Field(4.0, gt=0, description="Audio faster than this many times real time is slowed down")
    audio_burst_s: float = Field(10 * SECONDS, ge=0, description="Audio a client may send ahead of the rate limit")
    max_readers_per_session: int = Field(8, ge=1, le=1000, description="Concurrent event streams per session")
    shutdown_grace_s: float = Field(
        20 * SECONDS, ge=0, description="On SIGTERM, time sessions get to finish before they are finalized"
    )
    riva_keepalive_s: float = Field(30 * SECONDS, gt=0, description="HTTP/2 keepalive ping interval to Riva")
    riva_transport: RivaTransport = Field(
        "h2",
        description="Riva streams on one HTTP/2 connection driven by trio (h2), all on one grpc.aio loop (aio), "
        "or two threads per session (threads)",
    )
    riva_connect_timeout_s: float = Field(
        5 * SECONDS, gt=0, le=120, description="Deadline for opening a connection to Riva (h2 transport)"
    )
    web_dir: Path | None = Field(None, description="Folder of the browser page; default: web/ beside the code")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level")
    log_format: Literal["text", "json"] = Field("text", description="Log lines as readable text or JSON, one per line")
    readiness_cache_s: float = Field(
        5 * SECONDS, ge=0, description="Riva's model list (readiness, /v1/models, session checks) is reused this long"
    )
    readiness_timeout_s: float = Field(
        2 * SECONDS, gt=0, le=60, description="Deadline of the call that asks Riva for its models"
    )
    api_keys: SecretStr = Field(
        SecretStr(""), description="API keys that may create sessions and tokens, comma-separated"
    )
    api_keys_file: Path | None = Field(
        None, description="File of API keys, one per line, # comments; re-read when it changes"
    )
    auth_disabled: bool = Field(False, description="Let anyone create sessions without a key (local development only)")
    token_secret: SecretStr = Field(
        SecretStr(""), description="HMAC key signing browser tokens; empty: random per process"
    )
    token_ttl_s: float = Field(60 * SECONDS, gt=0, description="Lifetime of a browser token unless the request asks")
    token_max_ttl_s: float = Field(600 * SECONDS, gt=0, description="Longest lifetime a browser token may ask for")
    cors_origins: str = Field(
        "", description="Origins (scheme://host[:port]) allowed cross-origin, comma-separated; empty: same-origin"
    )
    max_sessions_per_key: int = Field(0, ge=0, description="Live sessions per API key (0: only RESERVE_MAX_SESSIONS)")
    sessions_per_minute_per_key: int = Field(
        0, ge=0, description="Sessions an API key may create per minute (0: no limit)"
    )
    log_transcripts: bool = Field(False, description="Log transcript text at DEBUG (never at INFO)")
    redis_url: str = Field(
        "",
        description="Redis URL (redis://, rediss:// or unix://) for shared state; empty: one process, state in memory",
    )
    workers: int = Field(
        1, ge=1, le=64, description="Worker processes serving one port (`serve --workers` wins); >1 needs redis_url"
    )
    max_upload_bytes: int = Field(
        25 * 1024 * KIB, ge=1 * KIB, description="Largest audio file POST /v1/audio/transcriptions accepts"
    )
    max_upload_audio_s: float = Field(
        1800 * SECONDS, gt=0, description="Longest audio an uploaded file may hold (compressed files can hold hours)"
    )
    redis_lease_s: float = Field(
        3 * SECONDS, ge=0.3, le=60, description="A session's owner lease; a dead owner's sessions move after it lapses"
    )
    redis_timeout_s: float = Field(2 * SECONDS, gt=0, le=30, description="Deadline of one Redis round trip")
    worker_handoff: bool = Field(
        True,
        description="With several workers, serve a session's event streams and audio socket in one worker",
    )
    worker_fill: int = Field(
        200,
        ge=0,
        description="With several workers, new sessions go to the first with fewer live sessions than this (0: spread)",
    )
    redis_flush_interval_s: float = Field(
        0.010, ge=0, le=0.5, description="Events are written to Redis in one batch this often"
    )
    redis_outage_deadline_s: float = Field(
        10 * SECONDS, gt=0, description="A session whose events Redis has not taken for this long fails"
    )
    redis_max_events_per_session: int = Field(
        20_000, ge=100, description="Events kept in Redis per session (older ones are trimmed; resuming there says so)"
    )
    gc_threshold: int = Field(
        5000,
        ge=100,
        le=1_000_000,
        description="Allocations between the garbage collector's young passes (Python's default: 700)",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _client_cert_pair(self) -> Settings:
        if (self.riva_ssl_client_cert is None) != (self.riva_ssl_client_key is None):
            raise ValueError("riva_ssl_client_cert and riva_ssl_client_key must be set together")
        return self

    @model_validator(mode="after")
    def _one_riva_key(self) -> Settings:
        if self.riva_api_key.get_secret_value() and self.riva_api_key_file is not None:
            raise ValueError("set riva_api_key or riva_api_key_file, not both")
        return self

    @model_validator(mode="after")
    def _token_lifetimes(self) -> Settings:
        if self.token_ttl_s > self.token_max_ttl_s:
            raise ValueError("token_ttl_s must not exceed token_max_ttl_s")
        return self

    @field_validator("token_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret and len(secret) < MIN_TOKEN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_TOKEN_SECRET_CHARS} characters (e.g. openssl rand -hex 32)")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in split_list(value):
            if origin == "*" or not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com[:port] (no wildcard)")
        return value

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(origin.lower() for origin in split_list(self.cors_origins))

    @property
    def riva_tls(self) -> bool:
        return self.riva_use_ssl or self.riva_ssl_root_cert is not None or self.riva_ssl_client_cert is not None
