"""Wiring: the grpc.aio server with its servicers, health, reflection, start-up and graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from outpost.v1 import outpost_pb2 as pb
from outpost.v1 import outpost_pb2_grpc as pb_grpc

from features import BackendError
from server._admin import RiskAdminServicer, reload_rules
from server._auth import TokenTable
from server._errors import StartupError
from server._interceptors import GatewayInterceptor
from server._logging import configure_logging
from server._metrics import Metrics
from server._scoring import RiskScoringServicer, add_scoring_service
from server._service import OutpostService
from server._settings import Settings, load_settings
from server._workers import WORKER_INDEX_ENV, supervise

__all__ = ["OutpostApp", "create_server", "serve"]

log = structlog.get_logger("outpost.app")

STATE_PROBE_SECONDS = 1.0

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["RiskScoring"].full_name,
    pb.DESCRIPTOR.services_by_name["RiskAdmin"].full_name,
)


class OutpostApp:
    """One Outpost server: call ``start()``, then ``wait_ready()``; ``stop()`` drains and closes the state."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service = OutpostService.create(settings)
        self.health = health.aio.HealthServicer()
        tokens = TokenTable.load(settings.auth_tokens_path) if settings.auth_tokens_path else None
        self.metrics = Metrics()
        self.service.metrics = self.metrics
        self.gateway = GatewayInterceptor(tokens=tokens, metrics=self.metrics)
        self.metrics.count_in_flight(lambda: self.gateway.in_flight)
        self.server = grpc.aio.server(
            interceptors=[self.gateway],
            options=[
                # Several workers share the port; a single one must not silently share it with a stale process.
                ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ],
        )
        add_scoring_service(RiskScoringServicer(self.service), self.server)
        pb_grpc.add_RiskAdminServicer_to_server(RiskAdminServicer(self.service), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((*SERVICE_NAMES, reflection.SERVICE_NAME, health.SERVICE_NAME), self.server)
        self.port = self._bind()
        self._load_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def _bind(self) -> int:
        settings = self.settings
        if not settings.is_loopback and settings.tls_cert is None and not settings.allow_plaintext_remote:
            raise StartupError(
                f"refusing plaintext on non-loopback address {settings.addr}: set OUTPOST_TLS_CERT and "
                "OUTPOST_TLS_KEY, or OUTPOST_ALLOW_PLAINTEXT_REMOTE=true behind a TLS-terminating proxy"
            )
        try:
            if settings.tls_cert is not None and settings.tls_key is not None:
                creds = grpc.ssl_server_credentials(
                    [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())],
                    root_certificates=settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None,
                    require_client_auth=settings.tls_client_ca is not None,
                )
                port = int(self.server.add_secure_port(settings.addr, creds))
            else:
                port = int(self.server.add_insecure_port(settings.addr))
        except RuntimeError:  # grpc raises (rather than returning port 0) when the address cannot be bound
            port = 0
        if port == 0:
            raise StartupError(f"could not bind {settings.addr}: is another process using the port?")
        return port

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def start(self) -> None:
        """Listen at once (health NOT_SERVING), then load rules, model and state off the loop."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        self.metrics_port = self.metrics.serve(self.settings.metrics_addr) if self.settings.metrics_addr else None
        log.info("listening", addr=self.settings.addr, port=self.port, metrics_port=self.metrics_port)
        self._load_task = asyncio.create_task(self._load())

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, self.service.load)
                break
            except BackendError as exc:  # the state backend is not reachable yet: keep NOT_SERVING and retry
                log.error("state_backend_unavailable", error=str(exc), retry_seconds=2)
                self.metrics.dependency_up.labels("state").set(0)
                await asyncio.sleep(2)
        pipeline = self.service.pipeline
        assert pipeline is not None

        commit = self.service.commit
        assert commit is not None

        def follow_dependencies() -> None:
            ok = pipeline.state_ok and not commit.stalled
            status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
            self._background.add(task := loop.create_task(self._set_health(status)))
            task.add_done_callback(self._background.discard)

        def state_changed(ok: bool) -> None:
            self.metrics.dependency_up.labels("state").set(1 if ok else 0)
            log.warning("state_backend_recovered" if ok else "state_backend_failed_scoring_degraded")
            follow_dependencies()

        def sync_stalled(stalled: bool) -> None:
            self.metrics.dependency_up.labels("state_log").set(0 if stalled else 1)
            follow_dependencies()

        pipeline.on_state_change = state_changed
        commit.on_stall = sync_stalled
        self.metrics.dependency_up.labels("state_log").set(1)
        pipeline.on_error = lambda where, exc: log.error("dependency_error", where=where, error=str(exc))
        self.metrics.dependency_up.labels("state").set(1)
        if self.settings.state_backend != "embedded":
            self._background.add(task := loop.create_task(self._watch_state()))
            task.add_done_callback(self._background.discard)
        # Rules, model, numba and ONNX leave ~200k long-lived objects: a full collection would scan them all (about
        # 100 ms here, a stall for every call in flight). Frozen, they are never scanned; they live until exit anyway.
        gc.collect()
        gc.freeze()
        self.service.ready.set()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", seconds=round(time.monotonic() - self.service.started_at, 3))

    async def _watch_state(self) -> None:
        """Probe the state backend every second, so health follows it even when no call comes to notice."""
        loop = asyncio.get_running_loop()
        pipeline, engine = self.service.pipeline, self.service.engine
        assert pipeline is not None and engine is not None
        while True:
            await asyncio.sleep(STATE_PROBE_SECONDS)
            try:
                await loop.run_in_executor(None, engine.stats)
            except BackendError as exc:
                pipeline.mark_state(False, exc)
            else:
                pipeline.mark_state(True)

    async def wait_ready(self, timeout: float | None = None) -> None:
        assert self._load_task is not None, "call start() first"
        await asyncio.wait_for(asyncio.shield(self._load_task), timeout)

    async def reload_rules_from_disk(self) -> None:
        if self.service.ready.is_set():
            result = await reload_rules(self.service, text=None, source=str(self.settings.rules_path), who="SIGHUP")
            log.info("rules_reload", ok=result.ok, version=result.ruleset_version, errors=list(result.errors)[:5])

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, let calls in flight finish within the grace period, make state durable, close."""
        await self.health.enter_graceful_shutdown()
        for task in list(self._background):
            task.cancel()
        grace = self.settings.grace_seconds if grace is None else grace
        await self.gateway.drain(grace)  # new calls get UNAVAILABLE (retryable) rather than CANCELLED at the stop
        await self.server.stop(grace)
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self.service.commit is not None:
            await self.service.commit.flush()
        self.service.close()
        self.metrics.close()
        stats = self.service.batcher.stats if self.service.batcher is not None else None
        commit = self.service.commit
        batches = {} if stats is None else {
            "batches": stats.batches, "batched_rows": stats.rows, "batches_alone": stats.alone,
            "batch_waits": stats.waits, "idle_waits": stats.idle_waits, "early_ends": stats.early_ends,
            "all_in": stats.all_in,
        }
        log.info("stopped", **batches,
                 **({} if commit is None else {"state_syncs": commit.syncs, "inline_syncs": commit.inline_syncs}))


async def create_server(settings: Settings) -> tuple[grpc.aio.Server, int]:
    """A started server and its bound port (tests bind port 0); rules, model and state load in the background."""
    app = OutpostApp(settings)
    await app.start()
    return app.server, app.port


async def _serve_async(settings: Settings) -> None:
    app = OutpostApp(settings)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(app.reload_rules_from_disk()))
    await app.start()
    assert app._load_task is not None
    waiting = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({waiting, app._load_task}, return_when=asyncio.FIRST_COMPLETED)
    if app._load_task.done() and not app._load_task.cancelled() and app._load_task.exception() is not None:
        waiting.cancel()  # rules or model could not load: say so and exit rather than stay NOT_SERVING silently
        await app.stop(grace=0)
        raise StartupError(f"start-up failed: {app._load_task.exception()}")
    await waiting
    log.info("draining", grace_seconds=settings.grace_seconds)
    await app.stop()


def serve(settings: Settings | None = None) -> int:
    """Run Outpost until SIGTERM or SIGINT; returns 0 after a graceful drain."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    if settings.workers > 1 and WORKER_INDEX_ENV not in os.environ:
        return supervise(settings)
    asyncio.run(_serve_async(settings))
    return 0
