"""Safe defaults: loopback binding, token off-loopback, body limits, no path traversal, weights_only loads, and
secrets (server token, Bilibili cookie and danmaku token) never in a log line."""

from __future__ import annotations

import ast
import dataclasses
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import torch

from ishow.config.load import default_config, load_config, parse_config
from ishow.config.schema import ServerConfig, SourceConfig
from ishow.engine.f5.checkpoint import read_checkpoint
from ishow.errors import ConfigError, ModelLoadError
from ishow.sources.registry import create_source
from ishow.voices import add_voice
from tests.bilibili_frames import brotli_frame, cmd, danmu
from tests.conftest import REPO, espeak_config
from tests.test_bilibili_client import Conn, FakeBilibili, serve_heartbeats
from tests.test_daemon_e2e import JSON, read_utterance
from tests.test_reload import wait_for

VOICE = '[[voices]]\nid = "a"\nref_audio = "{path}"\nref_text = "x"\n[voice_map]\ndefault = "a"\nenglish = ""\n'


def test_default_and_shipped_bind_loopback_only() -> None:
    assert default_config().server.loopback and default_config().server.host == "127.0.0.1"
    assert load_config(REPO / "config" / "ishowtts.toml").server.loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_other_hosts_need_a_token(host: str) -> None:
    with pytest.raises(ConfigError, match=r"server\.token: required when server\.host is not loopback"):
        parse_config(f'[server]\nhost = "{host}"\n')
    with pytest.raises(ConfigError, match=r"server\.token: too short: 1 characters; off loopback at least 16"):
        parse_config(f'[server]\nhost = "{host}"\ntoken = "a"\n')
    token = "long-random-0123456789"
    assert parse_config(f'[server]\nhost = "{host}"\ntoken = "{token}"\n').server.token == token


@pytest.mark.parametrize("path", ["../../etc/passwd", "voices/../../../etc/shadow", "../voices/x.wav"])
def test_voice_paths_cannot_traverse_out_of_the_root(path: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"voices\[0\]\.ref_audio: .* points outside the project root"):
        parse_config(VOICE.format(path=path), root=tmp_path)


def test_voice_paths_inside_root_or_absolute_are_accepted(tmp_path: Path) -> None:
    cfg = parse_config(VOICE.format(path="voices/me.wav"), root=tmp_path)
    assert cfg.voices[0].ref_audio == tmp_path.resolve() / "voices" / "me.wav"
    absolute = tmp_path / "elsewhere.wav"  # an absolute path is the user's explicit choice
    assert parse_config(VOICE.format(path=absolute), root=tmp_path).voices[0].ref_audio == absolute


@pytest.mark.parametrize("voice_id", ["../evil", "a/b", "..", "x" * 41, ""])
def test_voices_add_ids_cannot_traverse(voice_id: str, tmp_path: Path) -> None:
    path = tmp_path / "ishowtts.toml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="use 1–40 letters, digits, _ or -"):
        add_voice(path, voice_id, REPO / "voices" / "default_en.wav", "hello")
    assert path.read_text(encoding="utf-8") == "" and not (tmp_path / "voices").exists()


def test_every_torch_load_uses_weights_only() -> None:
    calls = []
    for file in sorted((REPO / "ishow").rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in ("torch.load", "load")
                and any(k.arg == "map_location" for k in node.keywords)
            ):
                calls.append((file.name, node))
    assert calls, "no torch.load found: the scan is broken"
    for name, node in calls:
        weights_only = {k.arg: k.value for k in node.keywords}.get("weights_only")
        assert isinstance(weights_only, ast.Constant) and weights_only.value is True, name


class Payload:
    ran = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (setattr, (Payload, "ran", True))


def test_pickled_code_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"ema_model_state_dict": {"x": torch.zeros(1)}, "extra": Payload()}, path, pickle_protocol=2)
    with pytest.raises(ModelLoadError, match="not a readable torch file"):
        read_checkpoint(path)
    assert Payload.ran is False


async def test_api_body_limit_is_413(start_daemon: Any) -> None:
    cfg = espeak_config()
    rd = await start_daemon(dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, max_body_bytes=2048)))
    async with aiohttp.ClientSession() as http:
        for path in ("/api/tts", "/api/messages", "/api/control", "/api/mute"):
            r = await http.post(f"{rd.url}{path}", data=b"{" + b" " * 4096 + b"}", headers=JSON)
            assert r.status == 413, path
            assert "the limit is 2048 bytes" in (await r.json())["error"]
        assert (await http.get(f"{rd.url}/healthz")).status == 200


def test_secret_fields_stay_out_of_reprs() -> None:
    src = SourceConfig(kind="bilibili_open", cookie="SESSDATA=c", token="oauth:t", access_key_secret="s3", code="c0de")
    text = repr(src) + repr(ServerConfig(token="tok-123"))
    for secret in ("SESSDATA=c", "oauth:t", "s3", "c0de", "tok-123"):
        assert secret not in text


async def test_secrets_never_logged(start_daemon: Any, caplog: pytest.LogCaptureFixture) -> None:
    cookie = "SESSDATA=cookie-SECRET-4242; DedeUserID=4242"
    server_token = "server-SECRET-token-0123456789"

    async def chat(ws: Any, conn: Conn) -> None:
        await ws.send_bytes(brotli_frame(cmd(danmu("你好主播", id_str="s1"))))
        await serve_heartbeats(ws, conn)

    bili = FakeBilibili([chat], ["stale-danmaku-SECRET", "danmaku-SECRET"], {"danmaku-SECRET"})
    await bili.start()
    caplog.set_level(logging.DEBUG)
    try:
        source_cfg = SourceConfig(kind="bilibili", name="bili", room="1", cookie=cookie, api_base=bili.base)
        cfg = espeak_config()
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, token=server_token))
        with structlog.testing.capture_logs() as logs:
            rd = await start_daemon(cfg, sources=[create_source("bili", source_cfg)])
            auth = {"Authorization": f"Bearer {server_token}"}
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(f"{rd.url}/ws/obs?token={server_token}") as ws:
                    header, _ = await read_utterance(ws, timeout=60)  # the danmaku, read after a token refresh
                    assert header["raw"] == "你好主播"
                    r = await http.post(f"{rd.url}/api/messages", json={"user": "u", "text": "hi"}, headers=auth)
                    assert r.status == 202
                    await read_utterance(ws)
                assert (await http.get(f"{rd.url}/api/status?token=wrong")).status == 401
                url = f"{rd.url}/api/control?token={server_token}"
                assert (await http.post(url, data=b"{bad", headers=JSON)).status == 400
            await wait_for(lambda: len(bili.rejected) >= 1)
            rd.stop.set()
            await rd.task
    finally:
        await bili.runner.cleanup()
    assert logs and any(e.get("event") == "bilibili connection attempt failed" for e in logs)
    text = "\n".join(repr(e) for e in logs) + "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("cookie-SECRET", "danmaku-SECRET", server_token):
        assert secret not in text, secret
