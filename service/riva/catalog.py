"""What the configured Riva offers: its ASR models and languages, asked once every few seconds.

One unary ``GetRivaSpeechRecognitionConfig`` over the shared channel, with a short
deadline, in a worker thread under a small limiter of its own (so it never competes
with sessions for theirs). The answer, or the failure, is cached for
``RESERVE_READINESS_CACHE_S`` and shared by readiness, ``GET /v1/models`` and the
check at session creation; concurrent askers wait for one call instead of making many.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import trio
from riva.client.proto import riva_asr_pb2 as asr

from service.errors import InvalidConfig, ReserveError, UpstreamError
from service.riva.probe import probe
from service.riva.targets import TargetPool

OFFLINE = frozenset({"offline", "batch"})
FALSE = frozenset({"false", "0", "no"})
ANY_LANGUAGE = frozenset({"multi", "*"})


@dataclass(frozen=True, slots=True)
class RivaModel:
    name: str
    languages: tuple[str, ...]
    streaming: bool
    sample_rate_hertz: int | None
    parameters: dict[str, str] = field(compare=False)

    def speaks(self, language_code: str) -> bool:
        """True when the model lists the language, or does not say (Riva then judges)."""
        return not self.languages or language_code in self.languages or bool(ANY_LANGUAGE & set(self.languages))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "languages": list(self.languages),
            "streaming": self.streaming,
            "sample_rate_hertz": self.sample_rate_hertz,
            "parameters": dict(self.parameters),
        }


def _model(config: asr.RivaSpeechRecognitionConfigResponse.Config) -> RivaModel:
    params = {str(k): str(v) for k, v in config.parameters.items()}
    languages = tuple(code.strip() for code in params.get("language_code", "").split(",") if code.strip())
    # lenient: a model is usable for streaming unless Riva says it is offline
    streaming = params.get("type", "").lower() not in OFFLINE and params.get("streaming", "").lower() not in FALSE
    rate = params.get("sample_rate", "")
    return RivaModel(config.model_name, languages, streaming, int(rate) if rate.isdigit() else None, params)


@dataclass(frozen=True, slots=True)
class Offer:
    """Riva's answer, reduced to what a client chooses from."""

    models: tuple[RivaModel, ...]
    checked_at: float  # wall clock, for people

    @classmethod
    def from_response(cls, response: asr.RivaSpeechRecognitionConfigResponse) -> Offer:
        seen: dict[str, RivaModel] = {}
        for config in response.model_config:
            seen.setdefault(config.model_name, _model(config))  # Riva may list a model once per instance
        return cls(tuple(seen.values()), time.time())

    @property
    def streaming_models(self) -> tuple[RivaModel, ...]:
        return tuple(m for m in self.models if m.streaming)

    @property
    def languages(self) -> list[str]:
        return sorted({code for m in self.streaming_models for code in m.languages})

    def choices(self) -> dict[str, Any]:
        return {
            "languages": self.languages,
            "models": [{"name": m.name, "languages": list(m.languages)} for m in self.streaming_models],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "models": [m.to_json() for m in self.streaming_models],
            "languages": self.languages,
            "checked_at": self.checked_at,
        }

    def check(self, language_code: str, model: str) -> None:
        """Raise InvalidConfig, with the available choices, if Riva offers no such thing."""
        problems: list[dict[str, str]] = []
        streaming = {m.name: m for m in self.streaming_models}
        if model:
            chosen = streaming.get(model)
            if chosen is None:
                offline = any(m.name == model for m in self.models)
                reason = "is an offline model; sessions stream" if offline else "is not a model this Riva offers"
                problems.append({"field": "model", "reason": f"{model!r} {reason}"})
            elif not chosen.speaks(language_code):
                problems.append(
                    {"field": "language_code", "reason": f"model {model!r} does not offer {language_code!r}"}
                )
        elif self.languages and language_code not in self.languages:
            problems.append({"field": "language_code", "reason": f"no streaming model offers {language_code!r}"})
        if problems:
            summary = "; ".join(f"{p['field']}: {p['reason']}" for p in problems)
            raise InvalidConfig(
                f"Riva does not offer these settings: {summary}", fields=problems, available=self.choices()
            )


class Catalog:
    """Cached ``GetRivaSpeechRecognitionConfig``: one call at a time, reused for ``ttl_s``."""

    def __init__(self, targets: TargetPool, *, ttl_s: float, timeout_s: float) -> None:
        self._targets = targets
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._lock = trio.Lock()
        self._limiter = trio.CapacityLimiter(2)
        self._cached: tuple[float, Offer | ReserveError] | None = None

    @property
    def uri(self) -> str:
        return self._targets.uris

    async def offer(self) -> Offer:
        """What Riva offers; raise a ReserveError when it cannot be asked (also cached)."""
        async with self._lock:
            if self._cached is None or trio.current_time() - self._cached[0] >= self._ttl_s:
                self._cached = (trio.current_time(), await self._ask())
            answer = self._cached[1]
        if isinstance(answer, ReserveError):
            raise answer
        return answer

    async def offer_or_none(self) -> Offer | None:
        """Like ``offer``, but None when Riva cannot be asked right now."""
        try:
            return await self.offer()
        except ReserveError:
            return None

    async def _ask(self) -> Offer | ReserveError:
        try:
            response = await probe(self._targets.pick(), timeout_s=self._timeout_s, limiter=self._limiter)
        except ReserveError as exc:
            return exc
        try:
            return Offer.from_response(response)
        except Exception as exc:
            return UpstreamError(f"unreadable model list from Riva: {type(exc).__name__}")
