"""Faults a four-hour stream meets, injected into the real daemon. For each: the daemon stays up (/healthz ok),
logs one clear line, and loses nothing it promised to keep (what is spoken is asserted).

Sources: a local Bilibili server (the real wire protocol) that drops, refuses and rejects. Engine: the real tiny
F5 model with injected CUDA OOM / crashes, espeak as fallback. Outputs: a stalled raw-socket OBS client, a wav
folder whose disk is full (writes go to /dev/full). Config: garbage written over the file while running.
Weights: missing and truncated checkpoint files. Every wait is bounded; no duration is asserted.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import collections
import dataclasses
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import torch
from aiohttp import web

from ishow.app import Daemon
from ishow.config.engine import EngineConfig
from ishow.config.load import load_config
from ishow.config.schema import Config
from ishow.engine.base import Engine
from ishow.engine.f5.checkpoint import TinyPaths, write_tiny_model
from ishow.engine.f5_engine import F5Engine
from ishow.engine.registry import create_engine
from ishow.events import Audio
from ishow.outputs import wav as wav_module
from tests.bilibili_frames import brotli_frame, cmd, danmu, super_chat
from tests.conftest import REPO, espeak_config
from tests.test_bilibili_client import Conn, FakeBilibili, serve_heartbeats, web_source
from tests.test_daemon_e2e import read_utterance
from tests.test_reload import BASE, wait_for

Logs = list[dict[str, Any]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyPaths:
    return write_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture
def logs() -> Any:
    with structlog.testing.capture_logs() as captured:
        yield captured


def lines(logs: Logs, text: str) -> list[dict[str, Any]]:
    return [e for e in logs if text in str(e.get("event", ""))]


def record_spoken(daemon: Daemon) -> list[Audio]:
    spoken: list[Audio] = []
    original = daemon.player._on_spoken

    def record(audio: Audio) -> None:
        original(audio)
        spoken.append(audio)

    daemon.player._on_spoken = record
    return spoken


def open_config(**filters: Any) -> Config:
    cfg = espeak_config()
    return dataclasses.replace(cfg, filter=dataclasses.replace(cfg.filter, user_rate_limit=0, **filters))


async def healthy(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
    assert body["status"] == "ok"
    return body


# ---------------------------------------------------------------- sources


async def test_source_drops_and_refusals_reconnect_without_duplicate_speech(start_daemon: Any, logs: Logs) -> None:
    async def first(ws: web.WebSocketResponse, conn: Conn) -> None:
        await ws.send_bytes(brotli_frame(cmd(danmu("第一条", id_str="m1")), cmd(super_chat(9001, "醒目", 30))))
        await ws.close()  # the server drops us

    async def second(ws: web.WebSocketResponse, conn: Conn) -> None:
        # after the reconnect the server replays what we already had, then new chat
        await ws.send_bytes(brotli_frame(cmd(danmu("第一条", id_str="m1")), cmd(super_chat(9001, "醒目", 30)),
                                         cmd(danmu("第二条", id_str="m2"))))  # fmt: skip
        await serve_heartbeats(ws, conn)

    server = FakeBilibili([first, second], ["tok"], {"tok"})
    await server.start()
    try:
        src = web_source(server)
        rd = await start_daemon(open_config(duplicate_window_s=0.0), sources=[src])
        spoken = record_spoken(rd.daemon)
        await wait_for(lambda: "第二条" in [a.utterance.raw for a in spoken], timeout=30)
        await wait_for(lambda: len(spoken) >= 3 and not len(rd.daemon.queue), timeout=30)
        health = await healthy(rd.url)
    finally:
        await server.runner.cleanup()
    ids = collections.Counter(a.utterance.msg_id for a in spoken)
    assert ids == {"dm:m1": 1, "sc:9001": 1, "dm:m2": 1}, ids  # each message spoken exactly once
    assert health["sources"] == [{"name": "bili", "state": "connected"}]
    assert len(server.conns) >= 2 and src.stats.sessions >= 2  # dropped by the server, reconnected
    refused = [e for e in lines(logs, "bilibili connection attempt failed") if "Cannot connect" in e["error"]]
    assert refused and all(e["room_id"] == 1000 for e in refused)  # the dead host: one line per refused attempt
    delays = [e["delay_s"] for e in lines(logs, "bilibili reconnecting")]
    assert delays and all(0 < d <= 0.05 for d in delays)  # jittered backoff within its ceiling
    dup = rd.daemon.metrics.dropped.labels("duplicate_id")._value.get()
    assert dup == 2


async def test_auth_rejected_forever_keeps_daemon_serving(start_daemon: Any, logs: Logs) -> None:
    server = FakeBilibili([serve_heartbeats], ["bad"], set())  # every auth packet is answered -101
    await server.start()
    try:
        src = web_source(server)
        rd = await start_daemon(open_config(), sources=[src])
        await wait_for(lambda: len(server.rejected) >= 3, timeout=30)
        health = await healthy(rd.url)
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/obs") as ws:
            r = await http.post(f"{rd.url}/api/messages", json={"user": "me", "text": "still speaking"})
            header, _ = await read_utterance(ws)
            assert header["id"] == (await r.json())["id"]
    finally:
        await server.runner.cleanup()
    assert health["sources"][0]["state"] in ("reconnecting", "connecting")
    failed = lines(logs, "bilibili connection attempt failed")
    assert failed and all("rejected auth with code -101" in e["error"] for e in failed)
    assert server.danmu_info_calls >= 3  # a fresh token is fetched for every retry


# ---------------------------------------------------------------- engine


class FaultyF5(F5Engine):
    """The real tiny F5 engine with injected faults: CUDA OOM for batches larger than ``oom_above``, always for
    texts containing ``oom_text``; a crash mid-batch for texts containing ``crash_text``."""

    def __init__(self, config: EngineConfig, oom_above: int = 99, oom_text: str = "", crash_text: str = "") -> None:
        super().__init__(config)
        self.oom_above, self.oom_text, self.crash_text = oom_above, oom_text, crash_text
        self.runs: list[int] = []

    def _run(self, items: Any, sc: Any) -> Any:
        self.runs.append(len(items))
        texts = [self.ids_text(it) for it, _ in items]
        if len(items) > self.oom_above or (self.oom_text and any(self.oom_text in t for t in texts)):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        if self.crash_text and any(self.crash_text in t for t in texts):
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
        return super()._run(items, sc)

    def ids_text(self, item: Any) -> str:
        inverse = {v: k for k, v in self.vocab.items()}
        return "".join(inverse.get(i, "") for i in item.text)


def f5_config(tiny: TinyPaths) -> Config:
    cfg = open_config(duplicate_window_s=0.0)
    engine = dataclasses.replace(cfg.engine, kind="f5", fallback="espeak", model="tiny", checkpoint=tiny.checkpoint,
                                 vocab=tiny.vocab, vocoder=tiny.vocoder, device="cpu")  # fmt: skip
    return dataclasses.replace(cfg, engine=engine)


def factory(primary: F5Engine) -> Callable[[str, EngineConfig], Engine]:
    return lambda kind, cfg: primary if kind == "f5" else create_engine(kind, cfg)


async def speak_all(rd: Any, texts: list[str], timeout: float = 240) -> list[Audio]:
    spoken = record_spoken(rd.daemon)
    ids = [rd.daemon.intake.submit_text(f"u{i}", t).id for i, t in enumerate(texts)]  # one tick: one batch
    await wait_for(lambda: {a.utterance.id for a in spoken} >= set(ids), timeout=timeout)
    return spoken


async def test_cuda_oom_splits_the_batch_then_falls_back(start_daemon: Any, tiny: TinyPaths, logs: Logs) -> None:
    cfg = f5_config(tiny)
    engine = FaultyF5(cfg.engine, oom_above=1, oom_text="zz")
    rd = await start_daemon(cfg, engine_factory=factory(engine))
    spoken = await speak_all(rd, ["ok", "fine"])
    assert [a.engine for a in spoken] == ["f5", "f5"]
    assert engine.runs[:3] == [2, 1, 1]  # OOM on the pair → halves, each fits
    assert not lines(logs, "engine failed on a batch")  # a split is not a failure
    engine.runs.clear()
    spoken = await speak_all(rd, ["ok", "zz"])
    by_text = {a.utterance.raw: a.engine for a in spoken[-2:]}
    assert by_text == {"ok": "f5", "zz": "espeak"}  # the message that never fits is spoken by the fallback
    failed = lines(logs, "engine failed on a batch")
    assert len(failed) == 1 and "OutOfMemoryError" in failed[0]["error"] and "single message" in failed[0]["error"]
    health = await healthy(rd.url)
    assert health["engine"] == "f5" and health["model_loaded"] is True


async def test_engine_crash_mid_batch_retries_then_retires(start_daemon: Any, tiny: TinyPaths, logs: Logs) -> None:
    cfg = f5_config(tiny)
    engine = FaultyF5(cfg.engine, crash_text="xx")
    rd = await start_daemon(cfg, engine_factory=factory(engine))
    spoken = await speak_all(rd, ["ok", "xx", "fine"])
    assert {a.utterance.raw: a.engine for a in spoken} == {"ok": "f5", "xx": "espeak", "fine": "f5"}
    assert len(lines(logs, "engine failed on a batch")) == 1
    for round_ in range(2):  # two more failed batches in a row retire F5 (MAX_CONSECUTIVE_FAILURES = 3)
        await speak_all(rd, [f"xx {round_}"])
    retired = lines(logs, "engine retired")
    assert len(retired) == 1 and "speaking with espeak until restart" in retired[0]["event"]
    spoken = await speak_all(rd, ["after"])
    assert spoken[-1].engine == "espeak"
    health = await healthy(rd.url)
    assert health["engine"] == "espeak" and "retired after 3 failed batches" in health["engine_state"]["primary_error"]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
async def test_weights_missing_or_truncated_fall_back_with_one_line(
    start_daemon: Any, tiny: TinyPaths, tmp_path: Path, logs: Logs, damage: str
) -> None:
    shutil.copytree(tiny.root, tmp_path / "m")
    ckpt = tmp_path / "m" / "model.safetensors"
    if damage == "missing":
        ckpt.unlink()
    else:
        data = ckpt.read_bytes()
        ckpt.write_bytes(data[: len(data) * 2 // 3])
    cfg = f5_config(dataclasses.replace(tiny, checkpoint=ckpt, vocab=tmp_path / "m" / "vocab.txt",
                                        vocoder=tmp_path / "m" / "vocos"))  # fmt: skip
    rd = await start_daemon(cfg)
    spoken = await speak_all(rd, ["hello"])
    assert spoken[0].engine == "espeak"
    health = await healthy(rd.url)
    assert health["engine"] == "espeak" and health["model_loaded"] is False
    (line,) = lines(logs, "f5 engine unavailable, speaking with the espeak fallback")
    assert str(ckpt) in line["event"]
    assert ("does not exist" if damage == "missing" else "truncated") in line["event"]
    assert "ishow models fetch" in line["hint"]


# ---------------------------------------------------------------- outputs


async def stalled_ws_client(port: int) -> socket.socket:
    """A raw socket that completes the websocket handshake on /ws/obs and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /ws/obs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")  # fmt: skip
    await loop.sock_sendall(sock, request.encode())
    reply = await asyncio.wait_for(loop.sock_recv(sock, 1024), 10)
    assert reply.startswith(b"HTTP/1.1 101"), reply
    return sock


async def test_stalled_obs_client_is_dropped_and_others_get_everything(start_daemon: Any, logs: Logs) -> None:
    cfg = open_config(duplicate_window_s=0.0)
    obs = dataclasses.replace(cfg.outputs.obs, max_client_queue=4, send_timeout_s=1.0)
    rd = await start_daemon(dataclasses.replace(cfg, outputs=dataclasses.replace(cfg.outputs, obs=obs)))
    hub = rd.daemon.obs
    assert hub is not None
    stalled = await stalled_ws_client(rd.daemon.port)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/obs") as good:
            await wait_for(lambda: hub.state()["clients"] == 2)
            sent: list[str] = []
            for i in range(300):  # bounded: the stalled client is dropped long before this ends
                r = await http.post(f"{rd.url}/api/messages", json={"user": f"v{i}", "text": f"message {i} " * 8})
                sent.append((await r.json())["id"])
                got, _ = await read_utterance(good)
                assert got["id"] == sent[-1]  # the reading client gets every utterance, in order
                if hub.state()["dropped_clients"]:
                    break
            health = await healthy(rd.url)
    finally:
        stalled.close()
    assert hub.state()["dropped_clients"] == 1
    (line,) = lines(logs, "obs client dropped")
    assert line["reason"] in ("queue full", "send timed out")
    assert next(o for o in health["outputs"] if o["name"] == "obs")["clients"] == 1


async def test_disk_full_skips_wav_files_and_speech_goes_on(
    start_daemon: Any, tmp_path: Path, logs: Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = {"on": True}
    real_open = builtins.open

    def open_maybe_full(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if full["on"] and "w" in mode and str(file).endswith(".tmp"):
            return real_open("/dev/full", mode, *args, **kwargs)  # every write fails with ENOSPC
        return real_open(file, mode, *args, **kwargs)

    if not Path("/dev/full").exists():  # noqa: ASYNC240 - a stat before the daemon starts
        pytest.skip("no /dev/full on this system")
    monkeypatch.setattr(wav_module, "open", open_maybe_full, raising=False)
    cfg = open_config(duplicate_window_s=0.0)
    wav = dataclasses.replace(cfg.outputs.wav, enabled=True, dir=tmp_path / "wav")
    rd = await start_daemon(dataclasses.replace(cfg, outputs=dataclasses.replace(cfg.outputs, wav=wav)))
    sink = next(s for s in rd.daemon.sinks if s.name == "wav")
    spoken = await speak_all(rd, ["first", "second"])
    await wait_for(lambda: sink.state()["failed"] == 2)
    full["on"] = False  # space freed: the next files are written
    spoken = await speak_all(rd, ["third"])
    await wait_for(lambda: sink.state()["written"] == 1)
    assert len(spoken) == 1 and spoken[0].utterance.raw == "third"
    assert rd.daemon.metrics.spoken._value.get() == 3  # speech never waited for the disk
    files = sorted(p.name for p in (tmp_path / "wav").iterdir())
    assert len(files) == 1 and files[0].endswith(".wav")  # no half-written or .tmp files left behind
    failed = lines(logs, "wav file not written; skipped")
    assert len(failed) == 2 and all(e["error"] == "ENOSPC No space left on device" for e in failed)
    health = await healthy(rd.url)
    wav_state = next(o for o in health["outputs"] if o["name"] == "wav")
    assert wav_state["active"] is True and "ENOSPC" in str(wav_state["last_error"])


# ---------------------------------------------------------------- config


async def test_config_replaced_with_garbage_then_deleted(start_daemon: Any, tmp_path: Path, logs: Logs) -> None:
    (tmp_path / "config").mkdir()
    shutil.copytree(REPO / "voices", tmp_path / "voices")
    path = tmp_path / "config" / "ishowtts.toml"
    path.write_text(BASE.format(root=tmp_path, banned='["spoiler"]', extra=""), encoding="utf-8")
    rd = await start_daemon(load_config(path), config_path=path)
    daemon = rd.daemon
    await wait_for(lambda: daemon.watcher is not None)
    await asyncio.sleep(0.5)  # let the watcher settle before the first edit
    path.write_bytes(os.urandom(512) + b"\x00[[[ = garbage")
    await wait_for(lambda: daemon.watcher is not None and daemon.watcher.rejected >= 1)
    path.unlink()
    await wait_for(lambda: daemon.watcher is not None and daemon.watcher.rejected >= 2)
    assert daemon.cfg.filter.banned_words == ("spoiler",)  # the running config is kept
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/obs") as ws:
        r = await http.post(f"{rd.url}/api/messages", json={"user": "v", "text": "a spoiler"})
        assert (await r.json()) == {"queued": False, "dropped": "banned_word"}
        r = await http.post(f"{rd.url}/api/messages", json={"user": "v", "text": "still here"})
        header, _ = await read_utterance(ws)
        assert header["id"] == (await r.json())["id"]
    await healthy(rd.url)
    rejected = lines(logs, "config edit rejected; still running the previous config")
    assert len(rejected) == 2
    assert any("not valid TOML" in e["event"] or "cannot read" in e["event"] for e in lines(logs, "config problem"))
    assert any("no such config file" in e["event"] for e in lines(logs, "config problem"))
