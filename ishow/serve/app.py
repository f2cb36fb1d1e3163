"""``ishow serve``: our F5 engine as a Ray Serve application shared by many daemons (``engine.kind = "remote"``).

Transport: Ray Serve's HTTP ingress, not Ray handles. A daemon then needs only aiohttp (already a dependency) —
no ray import, no Ray version lock-step between tens of daemons and the cluster, no Ray ports opened towards
streamers' machines — and the protocol (``ishow.engine.remote_protocol``: JSON rows in, binary float32 PCM out, a bearer
token) can be checked with curl. The price is one HTTP hop through Serve's proxy per daemon batch (measured by
``ishow bench --remote``); a daemon batch already carries a 50–100 ms window of one channel, so that hop is paid per
window, not per message.

Batching: each daemon request enters ``_batched`` (``@serve.batch``): requests from all daemons that arrive
within ``serve.batch_wait_ms`` (or up to ``serve.max_batch_size`` of them) become ONE engine batch, split into
chunks of ``serve.max_rows`` rows. Daemons have already waited their 50–100 ms window, so the service waits only a
few ms more; while the engine is busy, arriving requests queue and form the next batch by themselves.

Imports ray: only ``ishow serve``, ``ishow bench --remote local`` and the tests load this module.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.serve.metrics import Counter, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ishow.config.engine import EngineConfig
from ishow.config.serve import ServeConfig
from ishow.engine.remote_protocol import (
    MAX_BODY_BYTES,
    PCM_CONTENT_TYPE,
    SynthCall,
    SynthReply,
    decode_call,
    encode_reply,
)
from ishow.errors import ConfigError, ProtocolError
from ishow.serve.replica import ReplicaCore, ReplicaSettings

_log = logging.getLogger(__name__)
APP_NAME = "ishow"
DEPLOYMENT = "ishow-f5"


@serve.deployment(name=DEPLOYMENT, health_check_period_s=5, health_check_timeout_s=120)
class SynthService:
    def __init__(
        self, engine_cfg: EngineConfig, settings: ReplicaSettings, max_batch_size: int, batch_wait_s: float
    ) -> None:
        replica_id = serve.get_replica_context().replica_id.unique_id
        voices_dir = Path(tempfile.mkdtemp(prefix=f"ishow-replica-{replica_id}-"))
        self.core = ReplicaCore(engine_cfg, settings, replica_id, voices_dir)
        self.core.load()
        self._token = settings.token
        batched: Any = self._batched  # @serve.batch adds these setters (the decorator is untyped)
        batched.set_max_batch_size(max_batch_size)
        batched.set_batch_wait_timeout_s(batch_wait_s)
        # per replica: Serve tags these with the deployment, replica and application
        self._m_batches = Counter("ishow_serve_batches", description="engine batches run by this replica")
        self._m_rows = Counter("ishow_serve_rows", description="rows (messages) synthesized by this replica")
        self._m_uploads = Counter("ishow_serve_voice_uploads", description="requests that carried voice clips")
        self._m_batch_rows = Histogram(
            "ishow_serve_batch_rows", description="rows per engine batch", boundaries=[1, 2, 4, 8, 16, 32, 64]
        )
        self._m_batch_s = Histogram(
            "ishow_serve_batch_seconds",
            description="engine time per batch",
            boundaries=[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
        )
        _log.info("ishow replica %s ready: %s", replica_id, self.core.health())

    async def check_health(self) -> None:
        """Called by the Serve controller; raising makes it replace this replica."""
        await self.core.check()

    def _authorized(self, request: Request) -> bool:
        if not self._token:
            return True
        got = request.headers.get("authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {self._token}".encode())

    async def __call__(self, request: Request) -> Response:
        path, method = request.url.path.rstrip("/") or "/", request.method
        if not self._authorized(request):
            return JSONResponse({"error": "missing or wrong token; send Authorization: Bearer <serve.token>"}, 401)
        if path == "/healthz" and method == "GET":
            return JSONResponse(self.core.health())
        if path == "/stats" and method == "GET":
            return JSONResponse(self.core.stats())
        if path == "/synthesize" and method == "POST":
            return await self._synthesize(request)
        return JSONResponse(
            {"error": f"no route {method} {path}; expected POST /synthesize, GET /healthz or GET /stats"}, 404
        )

    async def _synthesize(self, request: Request) -> Response:
        if "json" not in request.headers.get("content-type", ""):
            return JSONResponse({"error": "expected Content-Type: application/json"}, 415)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, 413)
        try:
            call = decode_call(bytes(body))
        except ProtocolError as e:
            return JSONResponse({"error": str(e)}, 400)
        unknown = self.core.unknown_voices(call)
        if unknown:
            return JSONResponse({"unknown_voices": unknown}, 409)
        errors: dict[str, str] = {}
        if call.voices:
            self._m_uploads.inc()
            errors = await self.core.register(dict(call.voices))
        reply: SynthReply = await self._batched((call, errors))
        return Response(encode_reply(reply), media_type=PCM_CONTENT_TYPE, headers={"X-Ishow-Replica": reply.replica})

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _batched(self, calls: list[tuple[SynthCall, dict[str, str]]]) -> list[SynthReply]:
        t0 = time.perf_counter()
        replies = await self.core.run_batch([c for c, _ in calls], [e for _, e in calls])
        rows = sum(len(c.items) for c, _ in calls)
        self._m_batches.inc()
        self._m_rows.inc(rows)
        self._m_batch_rows.observe(rows)
        self._m_batch_s.observe(time.perf_counter() - t0)
        return replies


def deployment_options(sc: ServeConfig) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "ray_actor_options": {"num_gpus": sc.num_gpus, "num_cpus": sc.num_cpus},
        "max_ongoing_requests": sc.max_ongoing_requests,
        "max_queued_requests": sc.max_queued_requests,
    }
    if sc.max_replicas > sc.replicas:
        opts["autoscaling_config"] = {
            "min_replicas": sc.replicas,
            "max_replicas": sc.max_replicas,
            "target_ongoing_requests": sc.target_ongoing_requests,
        }
    else:
        opts["num_replicas"] = sc.replicas
    return opts


def replica_engine_config(sc: ServeConfig, ec: EngineConfig) -> EngineConfig:
    """A replica sees only its own GPUs (Ray sets CUDA_VISIBLE_DEVICES): ``cuda:N`` becomes ``cuda``."""
    if sc.num_gpus > 0 and ec.device.startswith("cuda:"):
        return dataclasses.replace(ec, device="cuda")
    if sc.num_gpus == 0 and ec.device.startswith("cuda"):
        raise ConfigError(f"engine.device = {ec.device!r} but serve.num_gpus = 0: give replicas GPUs or use cpu")
    return ec


def start(sc: ServeConfig, ec: EngineConfig, **ray_init: Any) -> str:
    """Connect to (or start) Ray, start Serve's HTTP proxy on ``sc.host:sc.port`` and deploy the engine.

    Returns the service URL once every replica has loaded its engine. ``ray_init`` goes to ``ray.init`` when this
    call starts a local Ray (tests pass a small ``num_cpus``).
    """
    if not ray.is_initialized():
        if sc.address:
            ray.init(address=sc.address, include_dashboard=False, configure_logging=False)
        else:  # a local single-node Ray for this process (Serve's HTTP ingress binds sc.host only)
            ray_init.setdefault("include_dashboard", False)
            ray.init(address="local", configure_logging=False, **ray_init)
            gpus = float(ray.cluster_resources().get("GPU", 0.0))  # type: ignore[no-untyped-call]
            if sc.num_gpus * sc.replicas > gpus:
                ray.shutdown()
                raise ConfigError(
                    f"serve.num_gpus: {sc.replicas} replica(s) × {sc.num_gpus:g} GPU need "
                    f"{sc.num_gpus * sc.replicas:g} GPUs but this machine has {gpus:g}; set serve.num_gpus = 0 "
                    '(CPU replicas, engine.device = "cpu") or join a GPU cluster with --address'
                )
    serve.start(http_options={"host": sc.host, "port": sc.port})
    settings = ReplicaSettings(max_rows=sc.max_rows, max_voices=sc.max_voices, batch_log=sc.batch_log, token=sc.token)
    app = SynthService.options(**deployment_options(sc)).bind(  # type: ignore[attr-defined]
        replica_engine_config(sc, ec), settings, sc.max_batch_size, sc.batch_wait_ms / 1000
    )
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    host = "127.0.0.1" if sc.host in ("0.0.0.0", "::") else sc.host
    return f"http://{host}:{sc.port}"


def stop(started_ray: bool) -> None:
    """Remove the application; shut Serve and Ray down when this process started them."""
    if not ray.is_initialized():
        return
    try:
        serve.delete(APP_NAME)
    finally:
        if started_ray:
            serve.shutdown()  # type: ignore[no-untyped-call]
            ray.shutdown()
