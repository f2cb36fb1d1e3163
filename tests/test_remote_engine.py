"""The remote engine and the service protocol without Ray: wire format, replica batching logic, failover.

The Ray Serve service itself is exercised in tests/test_serve.py; here a loopback aiohttp server speaks the same
protocol so overload (503) and a wrong address can be provoked deterministically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from ishow.config.engine import EngineConfig, RemoteConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.base import Engine, SynthRequest
from ishow.engine.remote import RemoteEngine
from ishow.engine.remote_protocol import (
    Item,
    ItemResult,
    SynthReply,
    VoiceClip,
    decode_call,
    decode_reply,
    encode_call,
    encode_reply,
    voice_hash,
)
from ishow.engine.worker import EngineWorker
from ishow.errors import InputError, ProtocolError, ServiceUnavailableError
from ishow.serve.replica import ReplicaCore, ReplicaSettings
from tests.conftest import REPO

REF_TEXT = "大家好，欢迎来到我的直播间。"


def clip() -> VoiceClip:
    return VoiceClip(ref_text=REF_TEXT, audio=(REPO / "voices" / "default_zh.wav").read_bytes())


# -- protocol --------------------------------------------------------------------------------------------------
def test_call_round_trip_and_voice_hash() -> None:
    c = clip()
    items = [Item("你好", c.digest, nfe=7, speed=1.1, seed=3), Item("hi", c.digest)]
    call = decode_call(encode_call("chan-a", items, {c.digest: c}))
    assert call.client == "chan-a" and call.items == tuple(items) and call.voices[c.digest] == c
    assert voice_hash(c.audio, REF_TEXT) != voice_hash(c.audio, REF_TEXT + "!")  # transcript is part of a voice
    assert decode_call(encode_call("x", items)).voices == {}  # hashes only, the usual case


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "body is not JSON"),
        (b"[]", "body: expected a JSON object, got list"),
        (b'{"items": []}', "items: expected 1–64 rows, got 0"),
        (b'{"items": [{"text": 1}]}', "items[0].text: expected str, got int"),
        (b'{"items": [{"text": "a", "voice": "v"}]}', "items[0].voice: expected a sha256 hex digest, got 'v'"),
        (b'{"items": [{"text": "a", "voice": "' + b"a" * 64 + b'", "nfe": 0}]}', "items[0].nfe: expected 1–64, got 0"),
        (
            b'{"items": [{"text": "a", "voice": "' + b"a" * 64 + b'", "nfe": 7, "speed": 99, "seed": 0}]}',
            "items[0].speed: expected 0.1–10, got 99.0",
        ),
    ],
)
def test_bad_calls_are_refused_with_what_was_wrong(body: bytes, expected: str) -> None:
    with pytest.raises(ProtocolError, match="^" + expected.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        decode_call(body)


def test_a_clip_must_match_the_hash_it_is_sent_under() -> None:
    c = clip()
    other = "0" * 64
    body = encode_call("x", [Item("a", other)], {other: c})
    with pytest.raises(ProtocolError, match="content hash"):
        decode_call(body)


def test_reply_is_exact_float32_pcm_and_checked() -> None:
    a = np.linspace(-1, 1, 1000, dtype=np.float32)
    reply = SynthReply("r1", 7, 24000, (ItemResult(a), ItemResult(None, "empty text", "input"), ItemResult(a[:3])))
    body = encode_reply(reply)
    got = decode_reply(body, 3)
    assert got.replica == "r1" and got.batch == 7 and got.sample_rate == 24000
    assert got.items[0].audio is not None
    assert np.array_equal(got.items[0].audio, a) and got.items[1].error == "empty text"
    with pytest.raises(ProtocolError, match="expected 2"):
        decode_reply(body, 2)
    with pytest.raises(ProtocolError, match="after the last item"):
        decode_reply(body + b"x", 3)
    with pytest.raises(ProtocolError, match="run past the body"):
        decode_reply(body[:-4], 3)


# -- replica logic (a counting engine stands in for F5: the batching is what is tested) ---------------------------
class CountingEngine(Engine):
    kind = "f5"

    def __init__(self, cfg: EngineConfig) -> None:
        self.calls: list[int] = []

    def load(self) -> None:
        pass

    def synthesize(self, requests: Sequence[SynthRequest]) -> list[np.ndarray]:
        if any(not r.text.strip() for r in requests):
            raise InputError("empty text")
        self.calls.append(len(requests))
        return [np.full(10 * len(r.text), r.seed, dtype=np.float32) for r in requests]


async def test_replica_batches_rows_of_many_daemons_and_isolates_bad_rows(tmp_path: Path) -> None:
    core = ReplicaCore(EngineConfig(), ReplicaSettings(max_rows=3, max_voices=1), "r1", tmp_path, CountingEngine)
    core.load()
    c = clip()
    a = decode_call(encode_call("chan-a", [Item("ab", c.digest, seed=1), Item(" ", c.digest)]))
    assert core.unknown_voices(a) == [c.digest]
    assert await core.register({c.digest: c}) == {}
    b = decode_call(encode_call("chan-b", [Item("xyz", c.digest, seed=2), Item("q", c.digest, seed=4)]))
    assert core.unknown_voices(a) == [] and core.unknown_voices(b) == []
    ra, rb = await core.run_batch([a, b], [{}, {}])
    assert ra.items[0].audio is not None and ra.items[0].audio.tolist() == [1.0] * 20
    assert ra.items[1].audio is None and ra.items[1].kind == "input" and "empty text" in ra.items[1].error
    assert [len(x.audio) for x in rb.items if x.audio is not None] == [30, 10]
    stats = core.stats()
    assert stats["recent"][-1]["rows"] == ["chan-a", "chan-a", "chan-b", "chan-b"]  # one batch, both daemons
    assert stats["batches"] == 1 and stats["rows"] == 4 and stats["voices"] == 1
    other = VoiceClip(ref_text="another", audio=c.audio)
    assert "registry is full (1 voices)" in (await core.register({other.digest: other}))[other.digest]
    await core.check()  # what Serve's health check calls: the engine thread answers
    assert core.health()["ok"] is True
    core.close()


# -- failover -----------------------------------------------------------------------------------------------------
def write_voice(tmp_path: Path) -> VoiceSpec:
    path = tmp_path / "v.wav"
    path.write_bytes((REPO / "voices" / "default_zh.wav").read_bytes())
    return VoiceSpec(id="v", ref_audio=path, ref_text=REF_TEXT)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


@pytest.mark.timeout(60)  # a failover that waited for timeout_s (600 s) would hit this
async def test_wrong_address_fails_over_at_once(tmp_path: Path) -> None:
    remote = RemoteConfig(url=f"http://127.0.0.1:{closed_port()}", timeout_s=600, retry_s=600)
    worker = EngineWorker(EngineConfig(kind="remote", fallback="espeak", remote=remote), [write_voice(tmp_path)])
    await worker.start()
    try:
        for text in ("第一条", "second message"):
            (res,) = await worker.synthesize([worker.request(text, "v")])
            assert res.engine == "espeak" and res.audio is not None and len(res.audio) > 0
        state = worker.state()
        assert state["active"] == "remote"  # still the configured engine: it comes back when the service answers
        service = state["service"]
        assert isinstance(service, dict) and service["serving"] == "fallback"
        assert "cannot connect" in str(service["down_reason"])
    finally:
        await worker.close()


class FakeService:
    """The service's HTTP surface on loopback, with an ``overloaded`` switch (Serve answers 503 when its queue
    is full). Rows get a constant waveform; voices must be uploaded once, as with a real replica."""

    def __init__(self) -> None:
        self.overloaded = False
        self.voices: set[str] = set()
        self.posts = 0
        self.items: list[Item] = []

    async def healthz(self, request: web.Request) -> web.Response:
        if self.overloaded:
            return web.json_response({"error": "overloaded"}, status=503)
        return web.json_response({"ok": True, "replica": "fake"})

    async def synthesize(self, request: web.Request) -> web.Response:
        self.posts += 1
        if self.overloaded:
            return web.Response(status=503, text="Request dropped due to backpressure")
        call = decode_call(await request.read())
        self.items.extend(call.items)
        self.voices.update(call.voices)
        unknown = sorted({i.voice for i in call.items} - self.voices)
        if unknown:
            return web.json_response({"unknown_voices": unknown}, status=409)
        items = tuple(ItemResult(np.full(2400, 0.25, dtype=np.float32)) for _ in call.items)
        return web.Response(body=encode_reply(SynthReply("fake", self.posts, 24000, items)))


@pytest.fixture
async def fake_service() -> AsyncIterator[tuple[FakeService, str]]:
    svc = FakeService()
    app = web.Application()
    app.router.add_get("/healthz", svc.healthz)
    app.router.add_post("/synthesize", svc.synthesize)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield svc, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_overloaded_service_falls_back_then_returns(
    fake_service: tuple[FakeService, str], tmp_path: Path
) -> None:
    svc, url = fake_service
    remote = RemoteConfig(url=url, timeout_s=10, retry_s=0.1)
    worker = EngineWorker(EngineConfig(kind="remote", fallback="espeak", remote=remote), [write_voice(tmp_path)])
    await worker.start()
    try:
        (res,) = await worker.synthesize([worker.request("one", "v")])
        assert res.engine == "remote" and res.audio is not None and float(res.audio[0]) == 0.25
        assert svc.posts == 2  # hashes, then (409 unknown voice) once more with the clip
        svc.overloaded = True
        (res,) = await worker.synthesize([worker.request("two", "v")])
        assert res.engine == "espeak" and res.audio is not None
        posts = svc.posts
        (res,) = await worker.synthesize([worker.request("three", "v")])
        assert res.engine == "espeak" and svc.posts == posts  # while down: straight to the fallback, no network
        service = worker.state()["service"]
        assert isinstance(service, dict) and "HTTP 503 (overloaded" in str(service["down_reason"])
        svc.overloaded = False
        for _ in range(100):  # bounded: the prober checks /healthz every 0.1 s
            (res,) = await worker.synthesize([worker.request("four", "v")])
            if res.engine == "remote":
                break
            await asyncio.sleep(0.1)
        assert res.engine == "remote" and worker.state()["service"]["failovers"] == 1  # type: ignore[index]
    finally:
        await worker.close()


async def test_remote_engine_sends_final_seed_and_speed(fake_service: tuple[FakeService, str], tmp_path: Path) -> None:
    svc, url = fake_service
    voice = dataclasses.replace(write_voice(tmp_path), speed=1.5)
    engine = RemoteEngine(EngineConfig(kind="remote", seed=4, speed=0.8, remote=RemoteConfig(url=url)))
    with pytest.raises(ServiceUnavailableError, match="down"):  # not loaded: no service yet
        engine.synthesize([SynthRequest("hi", voice, seed=2, speed=1.25)])
    await asyncio.to_thread(engine.load)  # the engine's methods block: they run on the worker thread in the daemon
    try:
        await asyncio.to_thread(engine.synthesize, [SynthRequest("hi", voice, seed=2, speed=1.25, nfe_step=9)])
        # the request already carries engine.speed/seed (applied once, by the worker); the voice's speed is folded in
        assert svc.items[-1] == Item("hi", engine._clip(voice)[1], nfe=9, speed=1.25 * 1.5, seed=2)
    finally:
        await asyncio.to_thread(engine.close)


def test_the_daemon_does_not_import_ray() -> None:
    code = "import sys, ishow.app, ishow.engine.remote, ishow.engine.registry; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


# -- config and command line ------------------------------------------------------------------------------------
def test_serve_and_remote_config_problems_name_the_key() -> None:
    from ishow.config.load import parse_config
    from ishow.errors import ConfigError

    text = """
[engine]
kind = "remote"
[engine.remote]
url = "ftp://x"
token = "s3cret-token"
timeout_s = 0
[serve]
host = "0.0.0.0"
batch_wait_ms = 500
max_batch_size = 32
max_ongoing_requests = 8
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, root=REPO)
    problems = "\n".join(err.value.problems)
    assert "engine.remote.url: must be an http:// or https:// URL of `ishow serve`, got 'ftp://x'" in problems
    assert "engine.remote.timeout_s: must be > 0 and ≤ 600, got 0.0" in problems
    assert "serve.batch_wait_ms: must be 0–100 ms (daemons already wait a window), got 500.0" in problems
    assert "serve.token: required when serve.host is not loopback" in problems
    assert "serve.max_ongoing_requests: 8 is below serve.max_batch_size 32" in problems
    assert "s3cret" not in problems
    cfg = parse_config('[engine]\nkind = "remote"\n[engine.remote]\nurl = "http://gpu:8600"\nclient = "c1"', root=REPO)
    assert cfg.engine.kind == "remote" and cfg.engine.remote.url == "http://gpu:8600" and cfg.serve.port == 8600


def test_serve_and_bench_remote_command_lines() -> None:
    from ishow.cli import build_parser
    from ishow.config.load import default_config
    from ishow.errors import ConfigError
    from ishow.serve.command import apply_overrides

    args = build_parser().parse_args(["serve", "--port", "9000", "--num-gpus", "0", "--address", "auto"])
    assert args.func.__name__ == "cmd_serve"
    cfg = apply_overrides(default_config(REPO), args)
    assert (cfg.serve.port, cfg.serve.num_gpus, cfg.serve.address) == (9000, 0.0, "auto")
    with pytest.raises(ConfigError, match=r"serve\.token: required when the service listens on '0\.0\.0\.0'"):
        apply_overrides(default_config(REPO), build_parser().parse_args(["serve", "--host", "0.0.0.0"]))
    args = build_parser().parse_args(["bench", "--remote", "local", "--callers", "1,4", "--messages", "5"])
    assert args.remote == "local" and args.callers == "1,4" and args.messages == 5


def test_bench_remote_local_daemon_batches_waiting_callers() -> None:
    from ishow.bench.remote import LocalDaemon, Row, _closed_loops

    engine = CountingEngine(EngineConfig())
    daemon = LocalDaemon(engine)
    voice = VoiceSpec(id="v", ref_audio=None, ref_text="")
    try:
        secs, lat = _closed_loops(4, 5, 1, daemon.send, voice)
    finally:
        daemon.close()
    assert len(lat) == 20 and sum(engine.calls) == 24 and max(engine.calls) <= 8
    row = Row("local", 4, 20, secs, lat).as_dict()
    assert row["messages"] == 20 and row["p95_ms"] >= row["p50_ms"] >= 0


async def test_daemon_speaks_through_the_service_and_health_shows_which(
    fake_service: tuple[FakeService, str], start_daemon: Any
) -> None:
    import aiohttp

    from tests.conftest import espeak_config

    svc, url = fake_service
    cfg = espeak_config()
    engine = dataclasses.replace(
        cfg.engine, kind="remote", fallback="espeak", remote=RemoteConfig(url=url, timeout_s=10, retry_s=0.1)
    )
    rd = await start_daemon(dataclasses.replace(cfg, engine=engine))
    async with aiohttp.ClientSession() as http:
        r = await http.post(f"{rd.url}/api/tts", json={"text": "测试一下", "voice": "default_zh"})
        assert r.status == 200 and r.headers["X-Ishow-Engine"] == "remote"
        health = await (await http.get(f"{rd.url}/healthz")).json()
        assert health["engine_state"]["service"]["serving"] == "service"
        svc.overloaded = True
        r = await http.post(f"{rd.url}/api/tts", json={"text": "再来一次", "voice": "default_zh"})
        assert r.status == 200 and r.headers["X-Ishow-Engine"] == "espeak"
        health = await (await http.get(f"{rd.url}/healthz")).json()
        assert health["engine"] == "remote" and health["engine_state"]["service"]["serving"] == "fallback"
