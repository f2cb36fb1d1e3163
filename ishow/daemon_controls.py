"""``DaemonControls``: the control surface (``ishow.control_surface``) over the daemon's parts.

What the panel, the HTTP API and ``/healthz`` may do — submit, pause/resume/skip/clear, remove, mute, look at the
queue, health, metrics, ``/api/tts`` — and the routes the daemon's parts serve. It holds references, not state:
the queue, player, pipeline and intake own what they hold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from aiohttp import web

from ishow.audio_format import SAMPLE_RATE
from ishow.config.schema import Config
from ishow.control_surface import TtsOutcome
from ishow.engine.worker import EngineWorker
from ishow.errors import InputError
from ishow.events import Utterance
from ishow.intake import Intake
from ishow.metrics import Metrics
from ishow.outputs.base import Sink
from ishow.outputs.obs import ObsHub
from ishow.pipeline import Pipeline
from ishow.player import Player
from ishow.policy.compose import Dropped
from ishow.sources.base import Source

CONTROL_ACTIONS = ("pause", "resume", "skip", "clear")


class DaemonControls:
    def __init__(
        self,
        cfg: Callable[[], Config],
        intake: Intake,
        pipeline: Pipeline,
        player: Player,
        worker: EngineWorker,
        metrics: Metrics,
        sources: Sequence[Source],
        sinks: Sequence[Sink],
        port: Callable[[], int | None],
    ) -> None:
        self._cfg = cfg
        self.intake = intake
        self.pipeline = pipeline
        self.player = player
        self.worker = worker
        self._metrics = metrics
        self.sources = sources
        self.sinks = sinks
        self._port = port

    @property
    def config(self) -> Config:
        return self._cfg()

    def check_voice(self, voice: str) -> None:
        self.worker.voice(voice)

    def submit(self, user: str, text: str, platform: str = "api", voice: str = "") -> Utterance | Dropped:
        return self.intake.submit_text(user, text, platform, voice)

    async def control(self, action: str) -> dict[str, object]:
        if action not in CONTROL_ACTIONS:
            raise InputError(f"'action' must be one of {', '.join(map(repr, CONTROL_ACTIONS))}, got {action!r}")
        result: dict[str, object] = {"ok": True, "action": action}
        if action == "pause":
            self.player.pause()
        elif action == "resume":
            self.player.resume()
        elif action == "skip":
            skipped = await self.player.skip()
            result["skipped"] = skipped.id if skipped else None
        else:
            result["cleared"] = self.clear()
        result["paused"] = self.player.paused
        return result

    def clear(self) -> int:
        """Drop everything waiting (queued, being synthesized, synthesized); the utterance playing continues."""
        return len(self.pipeline.drop_waiting(lambda _: True, "cleared"))

    def remove(self, utterance_id: str) -> bool:
        return bool(self.pipeline.drop_waiting(lambda u: u.id == utterance_id, "removed"))

    def mute(self, user: str, minutes: float) -> int:
        return self.intake.mute(user, minutes)

    def unmute(self, user: str) -> bool:
        return self.intake.unmute(user)

    def snapshot(self) -> dict[str, object]:
        """The live queue for the control panel: playing, synthesized, waiting."""
        now = time.monotonic()

        def row(u: Utterance, state: str) -> dict[str, object]:
            return {
                "id": u.id,
                "user": u.user,
                "text": u.text,
                "raw": u.raw,
                "voice": u.voice,
                "platform": u.platform,
                "kind": u.kind.value,
                "priority": u.priority.name.lower(),
                "state": state,
                "age_s": round(now - u.created, 1),
            }

        p = self.pipeline
        rows = []
        if self.player.current is not None:
            rows.append(row(self.player.current, "playing"))
        rows += [row(u, "ready") for u in p.audio.utterances()]
        rows += [row(u, "synthesizing") for u in p.inflight if u.id not in p.cancelled]
        rows += [row(u, "queued") for u in p.queue.snapshot()]
        return {
            "paused": self.player.paused,
            "items": rows,
            "muted": self.intake.muted(),
            "dropped": {"counts": dict(p.eviction_counts), "recent": list(p.evictions)[::-1]},
        }

    def health(self) -> dict[str, object]:
        return {
            "status": "ok",
            "ready": self.worker.ready,  # false while CUDA graphs are still being captured in the background
            "engine": self.worker.active_kind,
            "model_loaded": self.worker.model_loaded,
            "engine_state": self.worker.state(),
            "warmup": (p.as_dict() if (p := self.worker.warmup_progress()) is not None else None),
            "sources": [{"name": s.name, "state": s.state} for s in self.sources],
            "queue": len(self.pipeline.queue),
            "paused": self.player.paused,
            "wait_p95_s": self.pipeline.wait_percentile(95),
            "outputs": [s.state() for s in self.sinks],
        }

    def status(self) -> dict[str, object]:
        health = self.health()
        rtf = self.pipeline.last_rtf
        health["rtf"] = round(rtf, 4) if rtf is not None else None
        health["backlog"] = len(self.pipeline.queue) + len(self.pipeline.audio)
        health["voices"] = [v.id for v in self.config.voices]
        return health

    def metrics(self) -> bytes:
        self._metrics.queue_depth.set(len(self.pipeline.queue))
        return self._metrics.render()

    async def tts(self, text: str, voice: str, nfe_step: int | None) -> TtsOutcome:
        # long text is chunked and crossfaded like chat (issue 12)
        result, _chunks = await self.worker.synthesize_text(text, voice, nfe_step=nfe_step, background=True)
        return TtsOutcome(result.audio, result.engine, SAMPLE_RATE, result.error)

    def routes(self) -> list[web.RouteDef]:
        routes: list[web.RouteDef] = []
        for source in self.sources:
            routes += source.routes()
        obs = next((s for s in self.sinks if isinstance(s, ObsHub)), None)
        if obs is not None:
            routes += [web.get("/obs", obs.handle_page), web.get("/ws/obs", obs.handle_ws)]
        routes += self._audio_routes()
        return routes

    def _audio_routes(self) -> list[web.RouteDef]:
        """``GET /audio/<id>.wav``: a recent utterance for the OBS websocket output's Media Source.

        Mounted only when that output keeps audio (``outputs.obs_websocket.media_input`` set). With a
        ``server.token`` the request must carry it (``?token=`` or a Bearer header): the server's token
        middleware checks it, as on every /api/ and /ws/ route.
        """
        from ishow.outputs.obs_websocket import ObsWebsocketSink

        sink = next((s for s in self.sinks if isinstance(s, ObsWebsocketSink) and s.store is not None), None)
        if sink is None:
            return []
        if not sink.cfg.media_base_url:
            sink.http_base = lambda: f"http://127.0.0.1:{self._port()}"

        async def audio_wav(request: web.Request) -> web.Response:
            uid = request.match_info["id"]
            audio = sink.store.get(uid) if sink.store is not None else None
            if audio is None:
                message = f"no recent utterance {uid[:80]!r} (only the last {sink.cfg.audio_keep} are kept)"
                return web.json_response({"error": message}, status=404)
            from ishow.outputs.wav import encode_wav

            body = await asyncio.to_thread(encode_wav, audio)
            return web.Response(body=body, content_type="audio/wav", headers={"Cache-Control": "no-store"})

        return [web.get(r"/audio/{id:[A-Za-z0-9_.-]{1,120}}.wav", audio_wav)]
