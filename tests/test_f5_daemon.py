"""The real daemon with the tiny F5 checkpoint (real file formats, random weights): API → /ws/obs audio."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from ishow.engine.f5.checkpoint import TinyPaths, write_tiny_model
from tests.conftest import REPO, espeak_config
from tests.test_daemon_e2e import pcm_stats, read_utterance


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyPaths:
    return write_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


async def test_daemon_speaks_with_tiny_f5(start_daemon: Any, tiny: TinyPaths) -> None:
    cfg = espeak_config()
    engine = dataclasses.replace(
        cfg.engine,
        kind="f5",
        fallback="none",
        model="tiny",
        checkpoint=tiny.checkpoint,
        vocab=tiny.vocab,
        vocoder=tiny.vocoder,
        device="cpu",
    )
    rd = await start_daemon(dataclasses.replace(cfg, engine=engine))
    health = rd.daemon.controls.health()
    assert health["engine"] == "f5" and health["model_loaded"] is True
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/obs") as ws:
        r = await http.post(f"{rd.url}/api/messages", json={"user": "a", "text": "https://spam.example/x"})
        assert (await r.json())["dropped"] == "link_only"
        sent = []
        for user, text in (("小明", "主播晚上好，今天玩什么游戏？"), ("fan", "Hello from Berlin!")):
            r = await http.post(f"{rd.url}/api/messages", json={"user": user, "text": text})
            sent.append((await r.json())["id"])
        got = {}
        for _ in sent:
            header, pcm = await read_utterance(ws, timeout=120)
            got[header["id"]] = pcm_stats(pcm)
        assert set(got) == set(sent)  # the filtered message produced no audio
        for seconds, rms in got.values():
            assert 0.5 < seconds < 8.0, seconds
            assert rms > 1e-3, rms  # random weights make noise, but never silence
        r = await http.post(f"{rd.url}/api/tts", json={"text": "测试一下", "voice": "default_zh"})
        assert r.status == 200 and r.headers["X-Ishow-Engine"] == "f5"
        metrics = await (await http.get(f"{rd.url}/metrics")).text()
        assert 'ishow_batches_total{engine="f5"}' in metrics


def test_say_with_tiny_f5(tmp_path: Path, tiny: TinyPaths) -> None:
    out = tmp_path / "tiny.wav"
    proc = subprocess.run(
        [
            sys.executable, "-m", "ishow", "say", "大家好，欢迎来到直播间", "--out", str(out),
            "--checkpoint", str(tiny.checkpoint), "--vocoder", str(tiny.vocoder), "--vocab", str(tiny.vocab),
            "--device", "cpu",
        ],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "engine f5" in proc.stdout
    data, sr = sf.read(out, dtype="float32")
    assert sr == 24000 and 1.0 < len(data) / sr < 8.0
    assert float(np.sqrt(np.mean(data**2))) > 1e-3
