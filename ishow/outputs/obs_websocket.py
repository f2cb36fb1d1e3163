"""OBS websocket output: drives OBS itself over obs-websocket v5 — captions, music ducking, a media source, a
scene item — in step with playback.

Timing follows the player: an utterance starts when the previous one has ended (the player hands the next one
over a little early) and ends after its duration or when a moderator skips it. At start: caption set → duck →
media restart → scene item shown; at end: unduck → scene item hidden, and ``caption_clear_s`` later the caption is
cleared — unless the next utterance is already waiting (then the music stays down and its caption replaces this
one).

Never blocks the pipeline: ``play()`` only appends to a bounded list. Commands for OBS wait in an outbox that one
task sends, each request bounded by ``request_timeout_s``. Each command is a state (the caption text, music down
or not, the media playing, the item shown), so a newer command of a kind replaces a waiting one of that kind — the
oldest is dropped (counted as ``replaced``) — and the outbox never holds more than one per kind (4). While OBS is
not connected commands are dropped (counted); the volume is tracked instead: inputs we lowered are put back to
their level on reconnect and on shutdown. A request that times out means OBS is stuck: the connection is dropped
and retried with the shared jittered backoff.

Failures are reported once (one warning line, until the problem changes) with the fix, and listed in
``state()`` (→ /healthz, the panel, ``ishow doctor``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

import aiohttp
import numpy as np
import numpy.typing as npt
import structlog

from ishow.backoff import backoff_delay, rerun_on_failure
from ishow.config.schema import ObsWebsocketOutputConfig
from ishow.events import Audio
from ishow.outputs.audio_store import AudioStore
from ishow.outputs.base import Sink
from ishow.outputs.obsws_client import ObsClosed, ObsConnection, ObsTimeout, describe_error, url_port
from ishow.outputs.obsws_plan import (
    MEDIA_RESTART,
    MEDIA_STOP,
    SILENT_DB,
    Caption,
    Command,
    Duck,
    Media,
    SceneItem,
    caption_text,
    media_url,
    missing_fix,
    ramp_levels,
    ramp_steps,
)
from ishow.outputs.obsws_protocol import (
    CLOSE_AUTH_FAILED,
    STATUS_RESOURCE_NOT_FOUND,
    ObsAuthError,
    ObsProtocolError,
    Response,
)

log = structlog.get_logger(__name__)

MAX_WAITING = 64  # utterances handed over but not started (the player paces, so normally ≤ 1); oldest dropped
REVALIDATE_S = 10.0  # with inputs missing, look again at most this often (the streamer may create them)
CLOSE_TIMEOUT_S = 2.0
SETTINGS_FIX = "OBS → Tools → WebSocket Server Settings"


class ObsWebsocketSink(Sink):
    name: ClassVar[str] = "obs_websocket"

    def __init__(self, cfg: ObsWebsocketOutputConfig, *, token: str = "") -> None:
        self.cfg = cfg
        self._token = token
        self.store: AudioStore | None = AudioStore(cfg.audio_keep, cfg.audio_max_bytes) if cfg.media_input else None
        # how OBS reaches our /audio route; the server wiring points it at the bound port
        self.http_base: Callable[[], str] = lambda: cfg.media_base_url or "http://127.0.0.1:27121"
        self._waiting: collections.deque[Audio] = collections.deque()
        self._parts: dict[str, list[npt.NDArray[np.float32]]] = {}  # streamed messages still arriving
        self._arrived = asyncio.Event()
        self._skipped = asyncio.Event()
        self._outbox: collections.deque[Command] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._conn: ObsConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = self._closed = False
        self.status = "off"
        self.obs_version = ""
        self._problems: dict[str, str] = {}  # key → the problem with its fix, as shown in state()
        self._logged: dict[str, str] = {}  # key → the message last logged (each is logged once)
        self._quiet = False  # probe(): problems go to the caller only, not to the log
        self._usable: set[str] = set()  # inputs found in OBS at the last check
        self._scene: tuple[str, int] | None = None  # (scene name, scene item id)
        self._validated_at = -REVALIDATE_S
        self._ducked: dict[str, float] = {}  # input → the level (dB) to restore
        self._caption_shown = self._item_shown = False
        self.playing: str | None = None
        self.counters: collections.Counter[str] = collections.Counter()

    # -- Sink ------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.status = "connecting"
        self._tasks = [
            asyncio.create_task(self._supervise(self._connect_loop, "connection"), name="obs-websocket"),
            asyncio.create_task(self._supervise(self._timeline, "timeline"), name="obs-websocket-timeline"),
        ]

    async def play(self, audio: Audio) -> None:
        if self._closed or not self._started:
            return
        uid = audio.utterance.id
        if not audio.final or uid in self._parts:  # a streamed message (issue 12): shown once it is whole
            self._parts.setdefault(uid, []).append(audio.samples)
            if not audio.final:
                return
            samples = np.concatenate(self._parts.pop(uid)).astype(np.float32)
            audio = dataclasses.replace(audio, samples=samples, part=0)
        if self.store is not None:
            self.store.put(audio)
        if len(self._waiting) >= MAX_WAITING:
            gone = self._waiting.popleft()
            self.counters["dropped_utterances"] += 1
            log.warning("obs websocket behind; oldest waiting utterance not shown", id=gone.utterance.id)
        self._waiting.append(audio)
        self._arrived.set()

    async def skip(self, utterance_id: str) -> None:
        self._parts.pop(utterance_id, None)
        if self.playing == utterance_id:
            self._skipped.set()
        self._waiting = collections.deque(a for a in self._waiting if a.utterance.id != utterance_id)

    async def close(self) -> None:
        """Stop; if connected, the sender finishes its command, then puts the music back and clears what we
        showed (bounded by ``CLOSE_TIMEOUT_S``)."""
        if self._closed:
            return
        self._closed = True
        self._outbox.clear()
        self._outbox_ready.set()  # wakes the sender: it restores OBS and returns
        if len(self._tasks) == 2:
            connection, timeline = self._tasks
            timeline.cancel()
            if self._conn is not None:
                await asyncio.wait([connection], timeout=CLOSE_TIMEOUT_S)
            if self._ducked and self._conn is not None:
                log.warning("obs websocket: could not restore the volume on shutdown", ducked=sorted(self._ducked))
            for task in self._tasks:
                task.cancel()
            await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT_S)
        self.status = "closed"
        log.info("obs websocket closed", **dict(self.counters))

    def state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "active": self._started and not self._closed,
            "connected": self.status == "connected",
            "status": self.status,
            "url": self.cfg.url,
            "obs_version": self.obs_version,
            "problems": list(self._problems.values()),
            "missing": sorted(k.split(":", 1)[1] for k in self._problems if k.startswith("missing:")),
            "ducked": sorted(self._ducked),
            "playing": self.playing,
            "pending": len(self._outbox),
            "audio_kept": len(self.store) if self.store is not None else 0,
            **dict(self.counters),
        }

    async def _supervise(self, run: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
        def failed() -> None:
            self.counters["task_errors"] += 1

        task = f"obs websocket {what} task"
        await rerun_on_failure(run, task, active=lambda: not self._closed, on_failure=failed, log=log)

    # -- timeline --------------------------------------------------------------------------------------------

    async def _timeline(self) -> None:
        cfg = self.cfg
        while True:
            await self._next_arrival(None)
            audio = self._waiting.popleft()
            await self._speak(audio)
            if self._waiting:  # back to back: keep the music down, the next caption replaces this one
                continue
            if cfg.duck_inputs:
                self._emit(Duck(False))
            if cfg.scene_item:
                self._emit(SceneItem(False))
            if cfg.caption_input and not await self._next_arrival(cfg.caption_clear_s):
                self._emit(Caption(""))

    async def _next_arrival(self, timeout: float | None) -> bool:
        """Wait until an utterance waits (at most ``timeout``); True when one does."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self._waiting:
                    self._arrived.clear()
                    await self._arrived.wait()
        return bool(self._waiting)

    async def _speak(self, audio: Audio) -> None:
        cfg, utt = self.cfg, audio.utterance
        self.playing = utt.id
        self._skipped.clear()
        if cfg.caption_input:
            self._emit(Caption(caption_text(cfg.caption_template, utt, cfg.caption_width, cfg.caption_max_lines)))
        if cfg.duck_inputs:
            self._emit(Duck(True))
        if cfg.media_input:
            self._emit(Media(utt.id, play=True))
        if cfg.scene_item:
            self._emit(SceneItem(True))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._skipped.wait(), audio.duration)
        if self._skipped.is_set() and cfg.media_input:
            self._emit(Media(utt.id, play=False))
        self.playing = None

    def _emit(self, cmd: Command) -> None:
        """Queue ``cmd`` for OBS; it replaces a waiting command of its kind. Not connected → dropped (counted)."""
        if self._conn is None:
            self.counters["dropped_not_connected"] += 1
            return
        before = len(self._outbox)
        self._outbox = collections.deque(c for c in self._outbox if type(c) is not type(cmd))
        if len(self._outbox) < before:
            self.counters["replaced"] += 1
            log.debug("obs websocket behind; a waiting command was replaced", kind=type(cmd).__name__)
        self._outbox.append(cmd)
        self._outbox_ready.set()

    # -- connection ------------------------------------------------------------------------------------------

    async def _connect_loop(self) -> None:
        attempt = 0
        async with aiohttp.ClientSession() as session:
            while not self._closed:
                conn = await self._open(session)
                if conn is not None:
                    attempt = 0
                    try:
                        await self._serve(conn)
                    except ObsTimeout as e:
                        self._fail("stalled", f"{e}; reconnecting (speech continues on the other outputs)")
                    except ObsClosed as e:
                        self._fail("disconnected", f"{e}; reconnecting")
                    finally:
                        self._conn = None
                        self.counters["dropped_not_connected"] += len(self._outbox)
                        self._outbox.clear()
                        await conn.close()
                if self._closed:
                    return
                self.counters["reconnects"] += 1
                await asyncio.sleep(backoff_delay(attempt, self.cfg.reconnect_max_s, random.random()))
                attempt += 1

    async def _open(self, session: aiohttp.ClientSession) -> ObsConnection | None:
        """One connection attempt; a failure sets ``status`` and reports the problem with its fix."""
        cfg = self.cfg
        if self.status == "connected":
            self.status = "connecting"  # after a failure, its status stays shown while we retry
        try:
            return await ObsConnection.open(session, cfg.url, cfg.password, cfg.request_timeout_s)
        except ObsClosed as e:
            if e.code == CLOSE_AUTH_FAILED:
                self._fail(
                    "auth_failed",
                    f"OBS at {cfg.url} rejected the password (close 4009 AuthenticationFailed); set "
                    f"outputs.obs_websocket.password to the one in {SETTINGS_FIX} → Show Connect Info",
                )
            else:
                self._fail("disconnected", f"{e}; is OBS running? ({SETTINGS_FIX})")
        except ObsAuthError as e:
            self._fail("auth_failed", f"{e}; copy it from {SETTINGS_FIX} → Show Connect Info")
        except ObsTimeout as e:
            self._fail("stalled", f"{e} at {cfg.url}; OBS may be frozen or something else is on that port")
        except ObsProtocolError as e:
            self._fail("protocol_error", f"{cfg.url} does not speak obs-websocket v5: {e}")
        except (aiohttp.ClientError, OSError) as e:
            self._fail(
                "unreachable",
                f"cannot reach OBS at {cfg.url} ({describe_error(e)}); start OBS and tick "
                f"{SETTINGS_FIX} → Enable WebSocket server (port {url_port(cfg.url)})",
            )
        return None

    async def probe(self) -> dict[str, object]:
        """One attempt for ``ishow doctor``: connect, identify, check the configured inputs, disconnect.
        Problems are returned in the state, not logged (doctor prints them with their fix)."""
        self._quiet = True
        async with aiohttp.ClientSession() as session:
            conn = await self._open(session)
            if conn is not None:
                try:
                    await self._validate(conn)
                    self.status = "connected"
                    self.obs_version = conn.obs_version
                except ObsTimeout as e:
                    self._fail("stalled", str(e))
                except ObsClosed as e:
                    self._fail("disconnected", str(e))
                finally:
                    await conn.close()
        return self.state()

    async def _serve(self, conn: ObsConnection) -> None:
        self._conn = conn
        self.obs_version = conn.obs_version
        await self._restore(conn)
        await self._validate(conn)
        self.status = "connected"
        self._problems.pop("connection", None)
        if self._logged.pop("connection", None) is not None or not self.counters["connections"]:
            log.info("obs websocket connected", url=self.cfg.url, obs_websocket=conn.obs_version)
        self.counters["connections"] += 1
        sender = asyncio.create_task(self._send_loop(conn), name="obs-websocket-sender")
        closed = asyncio.create_task(conn.wait_closed(), name="obs-websocket-closed")
        try:
            await asyncio.wait({sender, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sender, closed):
                t.cancel()
            await asyncio.wait({sender, closed})
        error = sender.exception() if sender.done() and not sender.cancelled() else None
        if error is not None:
            raise error
        if sender.done() and self._closed:
            return  # shut down after restoring OBS
        raise ObsClosed(conn.close_code, "")

    async def _send_loop(self, conn: ObsConnection) -> None:
        """The only task that sends commands; on shutdown it restores OBS after the command in progress."""
        while True:
            while not self._outbox and not self._closed:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            if self._closed:
                await self._restore(conn)
                return
            cmd = self._outbox.popleft()
            if self._missing_any() and time.monotonic() - self._validated_at >= REVALIDATE_S:
                await self._validate(conn)
            await self._execute(conn, cmd)

    def _fail(self, status: str, message: str) -> None:
        """A connection problem: logged once per status (retries of the same failure stay quiet)."""
        if (status != self.status or "connection" not in self._logged) and not self._quiet:
            log.warning("obs websocket problem", problem=message)
            self._logged["connection"] = message
        self.status = status
        self._problems["connection"] = message

    def _report(self, key: str, message: str) -> None:
        """Log a problem once (again only when it changes) and show it in ``state()``."""
        if self._logged.get(key) != message and not self._quiet:
            log.warning("obs websocket problem", problem=message)
            self._logged[key] = message
        self._problems[key] = message

    def _resolved(self) -> None:
        """Log once each logged input problem that is gone now."""
        for key in [k for k in self._logged if k.startswith(("missing:", "kind:")) and k not in self._problems]:
            log.info("obs websocket problem resolved", problem=self._logged.pop(key))

    def _missing_any(self) -> bool:
        return any(k.startswith("missing:") for k in self._problems)

    # -- requests --------------------------------------------------------------------------------------------

    async def _call(self, conn: ObsConnection, request_type: str, data: dict[str, Any], subject: str) -> Response:
        """One request; a failure is reported once (``subject`` names the input or scene item it is about)."""
        self.counters["requests"] += 1
        resp = await conn.request(request_type, data)
        if resp.ok:
            self._problems.pop(f"request:{subject}", None)
            return resp
        self.counters["failed_requests"] += 1
        if resp.code == STATUS_RESOURCE_NOT_FOUND:
            self._usable.discard(subject)
            self._report(f"missing:{subject}", missing_fix(self.cfg, subject))
        else:
            self._report(f"request:{subject}", f"{resp.describe()} (for {subject!r})")
        return resp

    async def _validate(self, conn: ObsConnection) -> None:
        """Which configured inputs exist in OBS (and are the right kind); missing ones are reported with the fix."""
        cfg = self.cfg
        self._validated_at = time.monotonic()
        for key in [k for k in self._problems if k.startswith(("missing:", "kind:"))]:
            del self._problems[key]
        usable: set[str] = set()
        kinds = {cfg.caption_input: "text_", cfg.media_input: "ffmpeg_source"}
        for name, prefix in kinds.items():
            if not name:
                continue
            resp = await self._call(conn, "GetInputSettings", {"inputName": name}, name)
            kind = str(resp.data.get("inputKind", ""))
            if resp.ok and kind.startswith(prefix):
                usable.add(name)
            elif resp.ok:
                want = "a Text (GDI+ / FreeType 2) source" if prefix == "text_" else "a Media Source"
                self._report(f"kind:{name}", f"input {name!r} is a {kind!r}, not {want}; point the setting at one")
        for name in cfg.duck_inputs:
            if (await self._call(conn, "GetInputVolume", {"inputName": name}, name)).ok:
                usable.add(name)
        self._scene = None
        if cfg.scene_item:
            scene = cfg.scene
            if not scene:
                resp = await self._call(conn, "GetCurrentProgramScene", {}, "program scene")
                scene = str(resp.data.get("currentProgramSceneName") or resp.data.get("sceneName") or "")
            resp = await self._call(
                conn, "GetSceneItemId", {"sceneName": scene, "sourceName": cfg.scene_item}, cfg.scene_item
            )
            item = resp.data.get("sceneItemId")
            if resp.ok and isinstance(item, int):
                self._scene = (scene, item)
                usable.add(cfg.scene_item)
        self._usable = usable
        self._resolved()

    async def _restore(self, conn: ObsConnection) -> None:
        """Undo what we changed in OBS: volumes we lowered, a caption or scene item left showing."""
        for name, level in list(self._ducked.items()):
            await self._call(conn, "SetInputVolume", {"inputName": name, "inputVolumeDb": level}, name)
            del self._ducked[name]
            log.info("obs websocket: volume restored", input=name, db=level)
        if self._caption_shown and self.cfg.caption_input:
            await self._execute(conn, Caption(""))
        if self._item_shown:
            await self._execute(conn, SceneItem(False))

    async def _execute(self, conn: ObsConnection, cmd: Command) -> None:
        cfg = self.cfg
        if isinstance(cmd, Caption):
            if cfg.caption_input in self._usable:
                data = {"inputName": cfg.caption_input, "inputSettings": {"text": cmd.text}, "overlay": True}
                if (await self._call(conn, "SetInputSettings", data, cfg.caption_input)).ok:
                    self._caption_shown = bool(cmd.text)
        elif isinstance(cmd, Duck):
            await self._duck(conn, cmd.on)
        elif isinstance(cmd, Media):
            await self._media(conn, cmd)
        elif self._scene is not None:
            scene, item = self._scene
            data = {"sceneName": scene, "sceneItemId": item, "sceneItemEnabled": cmd.visible}
            if (await self._call(conn, "SetSceneItemEnabled", data, cfg.scene_item)).ok:
                self._item_shown = cmd.visible

    async def _duck(self, conn: ObsConnection, on: bool) -> None:
        cfg = self.cfg
        names = [n for n in cfg.duck_inputs if n in self._usable]
        ramps: dict[str, list[float]] = {}
        steps = ramp_steps(cfg.duck_ramp_s)
        for name in names:
            if on and name not in self._ducked:
                resp = await self._call(conn, "GetInputVolume", {"inputName": name}, name)
                level = resp.data.get("inputVolumeDb")
                if not resp.ok or not isinstance(level, (int, float)) or isinstance(level, bool) or level <= SILENT_DB:
                    continue  # gone, or muted at the fader: nothing to lower
                self._ducked[name] = float(level)
                ramps[name] = ramp_levels(level, max(SILENT_DB, level - cfg.duck_db), steps)
            elif not on and name in self._ducked:
                base = self._ducked[name]
                ramps[name] = ramp_levels(max(SILENT_DB, base - cfg.duck_db), base, steps)
        for i in range(steps):
            if i:
                await asyncio.sleep(cfg.duck_ramp_s / steps)
            for name, levels in ramps.items():
                await self._call(conn, "SetInputVolume", {"inputName": name, "inputVolumeDb": levels[i]}, name)
        if not on:
            for name in ramps:
                self._ducked.pop(name, None)

    async def _media(self, conn: ObsConnection, cmd: Media) -> None:
        name = self.cfg.media_input
        if name not in self._usable:
            return
        if not cmd.play:
            await self._call(conn, "TriggerMediaInputAction", {"inputName": name, "mediaAction": MEDIA_STOP}, name)
            return
        url = media_url(self.http_base(), cmd.utterance_id, self._token)
        settings = {"is_local_file": False, "input": url, "restart_on_activate": False}
        data = {"inputName": name, "inputSettings": settings, "overlay": True}
        if (await self._call(conn, "SetInputSettings", data, name)).ok:
            await self._call(conn, "TriggerMediaInputAction", {"inputName": name, "mediaAction": MEDIA_RESTART}, name)
