"""The real daemon on a free loopback port: HTTP API, /ws/obs frames, filtering, metrics, auth."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from typing import Any

import aiohttp
import numpy as np
import soundfile as sf

from ishow.config_load import load_config
from tests.conftest import REPO, espeak_config


async def read_utterance(ws: aiohttp.ClientWebSocketResponse, timeout: float = 30) -> tuple[dict[str, Any], bytes]:
    """Skip non-utterance frames, then return one utterance's header and PCM bytes."""
    header: dict[str, Any] | None = None
    pcm = bytearray()
    for _ in range(10_000):
        msg = await asyncio.wait_for(ws.receive(), timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            frame = json.loads(msg.data)
            if frame["type"] == "utterance":
                header = frame
            elif frame["type"] == "end":
                assert header is not None and frame["id"] == header["id"]
                return header, bytes(pcm)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            assert header is not None, "audio before its header"
            pcm += msg.data
        else:
            raise AssertionError(f"unexpected websocket message {msg.type}")
    raise AssertionError("no end frame")


JSON = {"Content-Type": "application/json"}


def pcm_stats(pcm: bytes) -> tuple[float, float]:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return len(samples) / 24000, float(np.sqrt(np.mean(samples**2)))


async def test_message_to_obs_frames_and_filtered_message_is_silent(start_daemon: Any) -> None:
    rd = await start_daemon(espeak_config())
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/obs") as ws:
        # a link-only message and a bot command are filtered: 202, but nothing is spoken
        for text in ("https://example.com/win", "!song"):
            r = await http.post(f"{rd.url}/api/messages", json={"user": "bot", "text": text})
            assert r.status == 202
            assert (await r.json())["queued"] is False
        r = await http.post(f"{rd.url}/api/messages", json={"user": "小明", "text": "主播晚上好，今天玩什么游戏？"})
        assert r.status == 202
        body = await r.json()
        assert body["queued"] is True
        header, pcm = await read_utterance(ws)
        assert header["id"] == body["id"]
        assert header["text"] == "主播晚上好，今天玩什么游戏？"  # Chinese punctuation kept for prosody
        assert header["user"] == "小明" and header["voice"] == "default_zh"
        assert header["sample_rate"] == 24000 and header["format"] == "pcm_s16le"
        seconds, rms = pcm_stats(pcm)
        assert 1.0 < seconds < 10.0, seconds
        assert rms > 0.02, rms
        # the filtered messages produced no audio: nothing else arrives
        extra = await http.post(f"{rd.url}/api/messages", json={"user": "a", "text": "hello there"})
        header2, _ = await read_utterance(ws)
        assert header2["id"] == (await extra.json())["id"] and header2["voice"] == "default_en"
        metrics = await (await http.get(f"{rd.url}/metrics")).text()
        assert 'ishow_dropped_messages_total{reason="link_only"} 1.0' in metrics
        assert 'ishow_dropped_messages_total{reason="command"} 1.0' in metrics
        assert "ishow_utterances_spoken_total 2.0" in metrics


async def test_healthz_voices_and_tts(start_daemon: Any) -> None:
    rd = await start_daemon(espeak_config())
    async with aiohttp.ClientSession() as http:
        health = await (await http.get(f"{rd.url}/healthz")).json()
        assert health["engine"] == "espeak" and health["model_loaded"] is False
        assert health["sources"] == []
        voices = await (await http.get(f"{rd.url}/api/voices")).json()
        assert [v["id"] for v in voices["voices"]] == ["default_zh", "default_en"]
        r = await http.post(f"{rd.url}/api/tts", json={"text": "Thanks for the follow!", "voice": "default_en"})
        assert r.status == 200 and r.content_type == "audio/wav"
        data, sr = sf.read(io.BytesIO(await r.read()), dtype="float32")
        info = sf.info(io.BytesIO(await r.read()))
        assert sr == 24000 and data.ndim == 1 and info.subtype == "PCM_16"
        assert 0.5 < len(data) / sr < 5 and float(np.sqrt(np.mean(data**2))) > 0.02


BAD_TTS = [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (json.dumps({"text": 5}).encode(), "'text' must be a string"),
    (json.dumps({}).encode(), "'text' is required"),
    (json.dumps({"text": "   "}).encode(), "'text' is empty"),
    (json.dumps({"text": "x" * 10_000}).encode(), "too long"),
    (json.dumps({"text": "hi\x07there"}).encode(), "control character U+0007"),
    (json.dumps({"text": "hi", "voice": "nobody"}).encode(), "unknown voice 'nobody'"),
    (json.dumps({"text": "hi", "nfe_step": "7"}).encode(), "'nfe_step' must be an integer"),
    (json.dumps({"text": "hi", "nfe_step": 0}).encode(), "'nfe_step' must be an integer"),
    (json.dumps({"text": "hi", "nfe_step": True}).encode(), "'nfe_step' must be an integer"),
    ("\ufeff{}".encode("utf-16"), "not valid JSON"),
]


async def test_bad_input_gets_precise_4xx_and_daemon_keeps_serving(start_daemon: Any) -> None:
    rd = await start_daemon(espeak_config())
    async with aiohttp.ClientSession() as http:
        for body, expected in BAD_TTS:
            r = await http.post(f"{rd.url}/api/tts", data=body, headers={"Content-Type": "application/json"})
            assert r.status == 400, (body[:40], r.status)
            assert expected in (await r.json())["error"], (body[:40], await r.text())
        r = await http.post(f"{rd.url}/api/messages", json={"user": 3, "text": "hi"})
        assert r.status == 400 and "'user' must be a string" in (await r.json())["error"]
        r = await http.post(f"{rd.url}/api/messages", json={"user": "a", "text": "hi", "voice": "ghost"})
        assert r.status == 400 and "unknown voice 'ghost'" in (await r.json())["error"]
        r = await http.post(f"{rd.url}/api/messages", data=b"x" * 200_000, headers=JSON)
        assert r.status == 413 and "too large" in (await r.json())["error"]
        assert (await http.get(f"{rd.url}/healthz")).status == 200
        r = await http.post(f"{rd.url}/api/tts", json={"text": "still here"})
        assert r.status == 200


async def test_token_required_on_api_and_ws(start_daemon: Any) -> None:
    cfg = espeak_config()
    rd = await start_daemon(dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, token="s3cret")))
    async with aiohttp.ClientSession() as http:
        assert (await http.get(f"{rd.url}/api/voices")).status == 401
        assert (await http.get(f"{rd.url}/api/voices", headers={"Authorization": "Bearer nope"})).status == 401
        assert (await http.get(f"{rd.url}/api/voices", headers={"Authorization": "Bearer s3cret"})).status == 200
        assert (await http.get(f"{rd.url}/api/voices?token=s3cret")).status == 200
        r = await http.get(f"{rd.url}/ws/obs")
        assert r.status == 401
        async with http.ws_connect(f"{rd.url}/ws/obs?token=s3cret") as ws:
            assert not ws.closed
        assert (await http.get(f"{rd.url}/healthz")).status == 200  # health stays open for monitors


async def test_shipped_config_demo_chat_with_fallback(start_daemon: Any) -> None:
    """The embedded default: shipped config, no weights → espeak fallback, demo chat replayed to OBS."""
    cfg = load_config(REPO / "config" / "ishowtts.toml")
    missing = REPO / "tests" / "no-such-dir" / "model.safetensors"
    cfg = dataclasses.replace(
        cfg,
        server=dataclasses.replace(cfg.server, port=0),
        engine=dataclasses.replace(cfg.engine, checkpoint=missing),
        sources=(dataclasses.replace(cfg.sources[0], speed=20.0),),
        outputs=dataclasses.replace(
            cfg.outputs, realtime=False, local=dataclasses.replace(cfg.outputs.local, enabled=False)
        ),
    )
    rd = await start_daemon(cfg)
    health = rd.daemon.health()
    assert health["engine"] == "espeak" and health["model_loaded"] is False
    assert "ishow models fetch" in rd.daemon.worker.primary_error
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/obs") as ws:
        texts = []
        for _ in range(7):
            header, pcm = await read_utterance(ws, timeout=60)
            texts.append(header["text"])
            assert pcm_stats(pcm)[1] > 0.01
        metrics = await (await http.get(f"{rd.url}/metrics")).text()
    assert any("醒目留言" in t for t in texts)
    assert not any("example.com" in t or t.startswith("!") or "刷屏" in t for t in texts)
    for reason in ("link_only", "command", "too_long", "empty"):
        assert f'ishow_dropped_messages_total{{reason="{reason}"}} 1.0' in metrics
