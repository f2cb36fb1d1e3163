"""``ishow serve`` (a subprocess, its own local single-node Ray, CPU, the tiny F5 checkpoint) with daemons using
``engine.kind = "remote"``.

One service for the module (~20 s to start on 2 cores), stopped with SIGINT at the end, which shuts its Ray down.
The service's HTTP ingress listens on 127.0.0.1 and every request here goes over loopback. Skipped only when
ray[serve] is not installed (``pip install 'ishow[cluster]'``; ``make test`` installs it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="ray[serve] is not installed: pip install 'ishow[cluster]' to run these")

from ishow.config.engine import EngineConfig, RemoteConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.base import SynthRequest
from ishow.engine.f5.checkpoint import write_tiny_model
from ishow.engine.f5_engine import F5Engine
from ishow.engine.remote import RemoteEngine
from ishow.engine.warm_reference import REF_TEXT, write_reference
from ishow.engine.worker import EngineWorker
from tests.conftest import REPO

TOKEN = "test-token-0123456789"


@dataclass(frozen=True)
class Service:
    url: str
    engine: EngineConfig
    voices: tuple[VoiceSpec, VoiceSpec]


def free_port() -> int:
    # Serve's proxy needs a concrete port (it does not report a port-0 bind back): take one the OS just gave out
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("serve")
    tiny = write_tiny_model(root / "model")
    ec = EngineConfig(model="tiny", checkpoint=tiny.checkpoint, vocab=tiny.vocab, vocoder=tiny.vocoder, device="cpu")
    port = free_port()
    # batch_wait_ms: the widest allowed, so two daemons' concurrent requests meet in one batch on a loaded machine
    (root / "serve.toml").write_text(
        f"""
[engine]
model = "tiny"
checkpoint = "{tiny.checkpoint}"
vocab = "{tiny.vocab}"
vocoder = "{tiny.vocoder}"
device = "cpu"

[serve]
port = {port}
token = "{TOKEN}"
num_gpus = 0
num_cpus = 1
max_batch_size = 8
batch_wait_ms = 100
""",
        encoding="utf-8",
    )
    va = VoiceSpec(id="va", ref_audio=write_reference(root / "a.wav", seconds=3.0), ref_text=REF_TEXT)
    vb = VoiceSpec(id="vb", ref_audio=write_reference(root / "b.wav", seconds=4.0), ref_text=REF_TEXT)
    log_path = root / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ishow", "serve", "--config", str(root / "serve.toml")],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while b"synthesis service ready at" not in log_path.read_bytes():  # bounded by the deadline
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        yield Service(f"http://127.0.0.1:{port}", ec, (va, vb))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group this fixture started, nothing else
            proc.wait(timeout=30)
            raise
    assert code == 0, log_path.read_text(errors="replace")[-3000:]


def remote_cfg(svc: Service, client: str, **remote: Any) -> EngineConfig:
    rc = RemoteConfig(url=svc.url, token=TOKEN, client=client, timeout_s=60.0, retry_s=0.5)
    return dataclasses.replace(svc.engine, kind="remote", seed=5, remote=dataclasses.replace(rc, **remote))


def get_json(url: str, path: str) -> Any:
    req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def test_two_daemons_share_one_batch_and_audio_equals_local(service: Service) -> None:
    va, vb = service.voices
    ea, eb = RemoteEngine(remote_cfg(service, "chan-a")), RemoteEngine(remote_cfg(service, "chan-b"))
    ea.load()
    eb.load()
    try:
        reqs_a = [SynthRequest("主播晚上好", va, seed=1), SynthRequest("hello from channel a", va, seed=2, speed=1.2)]
        reqs_b = [SynthRequest("第二个频道的消息", vb, seed=3)]
        shared: list[dict[str, Any]] = []
        for _round in range(3):  # bounded: concurrent sends meet in one batch, usually in the first round
            with ThreadPoolExecutor(2) as pool:
                fa, fb = pool.submit(ea.synthesize, reqs_a), pool.submit(eb.synthesize, reqs_b)
                out_a, out_b = fa.result(timeout=120), fb.result(timeout=120)
            stats = get_json(service.url, "/stats")
            shared = [b for b in stats["recent"] if {"chan-a", "chan-b"} <= set(b["rows"])]
            if shared:
                break
        assert shared, stats["recent"]
        assert sorted(shared[0]["rows"]) == ["chan-a", "chan-a", "chan-b"]  # every row of both daemons
        assert ea.uploads == 1 and eb.uploads == 1  # each clip went over the wire once, then only its hash
        assert stats["voices"] == 2
        assert ea.describe()["service"] == "up" and ea.last_replica == stats["replica"]

        local = F5Engine(dataclasses.replace(service.engine, seed=5))  # engine.seed is not applied twice: only req.seed
        local.load()
        for reqs, outs in ((reqs_a, out_a), (reqs_b, out_b)):
            for req, wave in zip(reqs, outs, strict=True):
                (ref,) = local.synthesize([req])
                assert wave.dtype == np.float32 and wave.shape == ref.shape
                assert np.linalg.norm(wave - ref) <= 1e-4 * np.linalg.norm(ref)  # batch (remote) == single (local)
    finally:
        ea.close()
        eb.close()


def test_wrong_token_fails_over_with_a_hint(service: Service) -> None:
    engine = RemoteEngine(remote_cfg(service, "bad", token="wrong"))
    engine.load()
    try:
        state = engine.describe()
        assert state["service"] == "down" and "token refused" in str(state["down_reason"])
    finally:
        engine.close()


async def test_replica_killed_mid_stream_daemons_fall_back_then_return(service: Service) -> None:
    va, vb = service.voices
    workers = {
        # Serve holds requests while it replaces a replica: a short timeout makes the restart (seconds: a new
        # process, torch, the model) an outage the daemons must ride out with their fallback
        name: EngineWorker(remote_cfg(service, name, timeout_s=2.0), [voice])
        for name, voice in (("chan-a", va), ("chan-b", vb))
    }
    voice_of = {"chan-a": "va", "chan-b": "vb"}
    for w in workers.values():
        await w.start()
    spoken: dict[str, list[str]] = {name: [] for name in workers}
    killed_at = -1
    try:
        deadline = time.monotonic() + 240
        for i in range(300):  # bounded in count and time
            assert time.monotonic() < deadline, spoken
            names = list(workers)
            results = await asyncio.gather(
                *(workers[n].synthesize([workers[n].request(f"第{i}条消息", voice_of[n])]) for n in names)
            )
            for name, (res,) in zip(names, results, strict=True):
                assert res.audio is not None and len(res.audio) > 0, (name, res)  # never silent, never lost
                spoken[name].append(res.engine)
            if killed_at < 0 and all(s[-1] == "remote" for s in spoken.values()):
                pid = int(get_json(service.url, "/healthz")["pid"])
                os.kill(pid, signal.SIGKILL)  # the replica's process dies; Serve's controller starts a new one
                killed_at = i
            elif killed_at >= 0 and all(_fell_back_and_returned(s[killed_at + 1 :]) for s in spoken.values()):
                break
            await asyncio.sleep(0.1)
        for name, seq in spoken.items():
            assert killed_at >= 0 and _fell_back_and_returned(seq[killed_at + 1 :]), (name, seq)
            state = workers[name].state()["service"]
            assert isinstance(state, dict) and state["service"] == "up" and state["failovers"] >= 1
    finally:
        for w in workers.values():
            await w.close()


def _fell_back_and_returned(seq: list[str]) -> bool:
    """The fallback spoke after the kill, and the service spoke again after that."""
    return "espeak" in seq and "remote" in seq[seq.index("espeak") :]


def test_health_names_the_replica_and_its_engine(service: Service) -> None:
    health = get_json(service.url, "/healthz")
    assert health["ok"] is True and health["engine"]["kind"] == "f5" and health["engine"]["device"] == "cpu"
    assert health["replica"] and health["pid"] > 0
    req = urllib.request.Request(service.url + "/healthz")  # no token
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)
    assert err.value.code == 401
