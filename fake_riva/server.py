"""The Riva ASR servicer and a small owner object that starts and stops it."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from riva.client.proto import riva_asr_pb2 as asr
from riva.client.proto import riva_asr_pb2_grpc as asr_grpc

from fake_riva.faults import BadFault, FaultBudget, Faults
from fake_riva.models import MODELS, Model, catalogue
from fake_riva.protocol import ConfigRejected, alternative, make_recognizer, response
from fake_riva.recognizers import get_factory
from fake_riva.recognizers.base import Recognizer, RecognizerFactory

log = logging.getLogger("fake_riva")


@dataclass
class ServerStats:
    """What a test can observe from the Riva side: streams by outcome."""

    started: int = 0
    active: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    chunks: int = 0
    configs: list[asr.RecognitionConfig] = field(default_factory=list)
    metadata: list[tuple[tuple[str, str], ...]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                "started": self.started,
                "active": self.active,
                "completed": self.completed,
                "cancelled": self.cancelled,
                "failed": self.failed,
                "chunks": self.chunks,
            }


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RivaASRServicer(asr_grpc.RivaSpeechRecognitionServicer):  # type: ignore[misc]
    def __init__(
        self,
        factory: RecognizerFactory,
        *,
        stats: ServerStats,
        server_faults: Mapping[str, str] | None = None,
        models: tuple[Model, ...] = MODELS,
        custom_defaults: Mapping[str, str] | None = None,
    ) -> None:
        self._factory = factory
        self._models = models
        self._stats = stats
        self._server_faults = dict(server_faults or {})
        self._custom_defaults = dict(custom_defaults or {})
        self._fault_budget = FaultBudget()

    # -- StreamingRecognize -------------------------------------------------
    def StreamingRecognize(  # noqa: N802 - gRPC method name
        self,
        request_iterator: Iterator[asr.StreamingRecognizeRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[asr.StreamingRecognizeResponse]:
        stats = self._stats
        with stats.lock:
            stats.started += 1
            stats.active += 1
            stats.metadata.append(tuple((m.key, m.value) for m in context.invocation_metadata()))
        outcome = "completed"
        try:
            yield from self._stream(request_iterator, context)
        except _Abort as exc:
            outcome = "failed"
            context.abort(exc.code, exc.message)
        except BaseException:
            # the client cancelled (GeneratorExit, or the request iterator gave up)
            outcome = "failed" if context.is_active() else "cancelled"
            raise
        finally:
            if outcome == "completed" and not context.is_active():
                outcome = "cancelled"
            with stats.lock:
                stats.active -= 1
                setattr(stats, outcome, getattr(stats, outcome) + 1)

    def _stream(
        self,
        requests: Iterator[asr.StreamingRecognizeRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[asr.StreamingRecognizeResponse]:
        first = next(requests, None)
        if first is None or not first.HasField("streaming_config"):
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first StreamingRecognizeRequest must carry streaming_config",
            )
        streaming = first.streaming_config
        config = streaming.config
        self._with_defaults(config)
        with self._stats.lock:
            self._stats.configs.append(config)
        faults = self._faults(config)
        if not self._fault_budget.take(faults):
            faults = faults.without_failures()
        if faults.refuse is not None:
            raise _Abort(faults.refuse, f"fault injected: refused with {faults.refuse.name}")
        recognizer = self._recognizer(config, interim_results=streaming.interim_results)
        chunks = silent_chunks = 0
        for request in _with_idle_timeout(requests, faults.idle_timeout_s):
            if request.HasField("streaming_config"):
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "streaming_config may only be sent first")
            chunks += 1
            with self._stats.lock:
                self._stats.chunks += 1
            if faults.fail_after_chunks is not None and chunks > faults.fail_after_chunks:
                raise _Abort(faults.fail_code, f"fault injected: failed after {faults.fail_after_chunks} chunks")
            if faults.end_after_chunks is not None and chunks > faults.end_after_chunks:
                return
            results = recognizer.accept(request.audio_content)
            if faults.stall or (faults.stall_after_chunks is not None and chunks > faults.stall_after_chunks):
                continue
            if not results:
                silent_chunks += 1
                if silent_chunks >= EMPTY_RESPONSE_EVERY_CHUNKS:  # Riva answers periodically, even with nothing
                    silent_chunks = 0
                    yield asr.StreamingRecognizeResponse()
                continue
            silent_chunks = 0
            if faults.delay_s:
                time.sleep(faults.delay_s)
            yield response(results)
        if _cancelled_after_requests(context):
            return
        if faults.stall or (faults.stall_after_chunks is not None and chunks > faults.stall_after_chunks):
            _hang_until_cancelled(context)  # a stalled Riva never finishes either
            return
        results = recognizer.finish()
        if results:
            yield response(results)

    # -- Recognize (offline) -------------------------------------------------
    def Recognize(  # noqa: N802 - gRPC method name
        self, request: asr.RecognizeRequest, context: grpc.ServicerContext
    ) -> asr.RecognizeResponse:
        try:
            self._with_defaults(request.config)
            recognizer = self._recognizer(request.config, interim_results=False)
        except _Abort as exc:
            context.abort(exc.code, exc.message)
        hypotheses = [h for h in recognizer.accept(request.audio) + recognizer.finish() if h.is_final]
        return asr.RecognizeResponse(
            results=[
                asr.SpeechRecognitionResult(alternatives=[alternative(h)], audio_processed=h.audio_processed_s)
                for h in hypotheses
            ]
        )

    def GetRivaSpeechRecognitionConfig(  # noqa: N802 - gRPC method name
        self, request: asr.RivaSpeechRecognitionConfigRequest, context: grpc.ServicerContext
    ) -> asr.RivaSpeechRecognitionConfigResponse:
        Config = asr.RivaSpeechRecognitionConfigResponse.Config  # noqa: N806
        return asr.RivaSpeechRecognitionConfigResponse(
            model_config=[
                Config(model_name=m.name, parameters=m.parameters())
                for m in self._models
                if not request.model_name or request.model_name == m.name
            ]
        )

    # -- shared checks --------------------------------------------------------
    def _with_defaults(self, config: asr.RecognitionConfig) -> None:
        """Server-wide ``custom_configuration`` under the request's own (a script for clients that
        cannot send one, such as OpenAI's and NVIDIA's realtime clients through the gateway)."""
        for key, value in self._custom_defaults.items():
            if key not in config.custom_configuration:
                config.custom_configuration[key] = value

    def _faults(self, config: asr.RecognitionConfig) -> Faults:
        try:
            return Faults.parse(self._server_faults, dict(config.custom_configuration))
        except BadFault as exc:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc

    def _recognizer(self, config: asr.RecognitionConfig, *, interim_results: bool) -> Recognizer:
        try:
            return make_recognizer(self._factory, config, interim_results=interim_results, models=self._models)
        except ConfigRejected as exc:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc


CANCEL_SETTLE_S = 0.05
EMPTY_RESPONSE_EVERY_CHUNKS = 10
_IDLE = object()


def _with_idle_timeout(
    requests: Iterator[asr.StreamingRecognizeRequest], idle_timeout_s: float | None
) -> Iterator[asr.StreamingRecognizeRequest]:
    """Requests, ending quietly once none came for ``idle_timeout_s`` (Riva's idle timeout)."""
    if idle_timeout_s is None:
        yield from requests
        return
    inbox: queue.Queue[object] = queue.Queue(maxsize=64)

    def pull() -> None:
        try:
            for request in requests:
                inbox.put(request)
        except Exception:  # the call ended; the main loop finds out by itself
            pass
        inbox.put(_IDLE)

    threading.Thread(target=pull, name="fake-riva-idle-reader", daemon=True).start()
    while True:
        try:
            item = inbox.get(timeout=idle_timeout_s)
        except queue.Empty:
            return
        if item is _IDLE:
            return
        assert isinstance(item, asr.StreamingRecognizeRequest)
        yield item


def _cancelled_after_requests(context: grpc.ServicerContext) -> bool:
    """Tell a client's half-close from its cancel.

    gRPC can end the request iterator of a cancelled call as if the client had
    half-closed, and mark it cancelled a moment later. A cancelled RPC terminates
    (running its callbacks) on its own; a half-closed one waits for our answer.
    """
    terminated = threading.Event()
    if not context.add_callback(terminated.set):
        return True
    return terminated.wait(CANCEL_SETTLE_S) or not context.is_active()


STALL_LIMIT_S = 60.0


def _hang_until_cancelled(context: grpc.ServicerContext) -> None:
    terminated = threading.Event()
    if context.add_callback(terminated.set):
        terminated.wait(STALL_LIMIT_S)


class FakeRiva:
    """Owns one gRPC server: ``start()`` binds (port 0 picks a free one), ``stop()`` ends it."""

    def __init__(
        self,
        *,
        recognizer: str = "scripted",
        host: str = "127.0.0.1",
        port: int = 0,
        max_streams: int = 512,
        faults: Mapping[str, str] | None = None,
        tls: tuple[bytes, bytes, bytes | None] | None = None,
        custom_defaults: Mapping[str, str] | None = None,
        http2_max_streams: int | None = None,
    ) -> None:
        self.stats = ServerStats()
        self._http2_max_streams = http2_max_streams  # SETTINGS_MAX_CONCURRENT_STREAMS per connection
        self._custom_defaults = custom_defaults
        self._factory = get_factory(recognizer)
        self.models = catalogue(recognizer)
        self._host, self._port = host, port
        self._max_streams = max_streams
        self._faults = faults
        self._tls = tls  # (key, cert, client CA for mTLS or None)
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"{self._host}:{self.port}"

    def start(self) -> int:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_streams, thread_name_prefix="fake-riva"),
            maximum_concurrent_rpcs=self._max_streams,
            options=[]
            if self._http2_max_streams is None
            else [("grpc.max_concurrent_streams", self._http2_max_streams)],
        )
        asr_grpc.add_RivaSpeechRecognitionServicer_to_server(
            RivaASRServicer(
                self._factory,
                stats=self.stats,
                server_faults=self._faults,
                models=self.models,
                custom_defaults=self._custom_defaults,
            ),
            server,
        )
        address = f"{self._host}:{self._port}"
        if self._tls is None:
            self.port = server.add_insecure_port(address)
        else:
            key, cert, client_ca = self._tls
            creds = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
            )
            self.port = server.add_secure_port(address, creds)
        server.start()
        self._server = server
        log.info("fake_riva listening on %s", self.target)
        return self.port

    def stop(self, grace_s: float | None = 0.5) -> None:
        if self._server is not None:
            self._server.stop(grace_s).wait()
            self._server = None
