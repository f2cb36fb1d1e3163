"""ObsHub against real websocket clients on 127.0.0.1 (aiohttp server on port 0)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import WSMsgType, web
from structlog.testing import capture_logs

from ishow.errors import ConfigError
from ishow.events import Audio, EventKind, Utterance
from ishow.outputs.obs import ObsHub, ObsSettings

CONTRACT_KEYS = ("type", "id", "text", "user", "voice", "sample_rate", "format")


def make_audio(uid: str, n: int, *, text: str = "你好 world", user: str = "alice", voice: str = "default") -> Audio:
    t = np.arange(n, dtype=np.float32) / 24_000
    samples = (0.4 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    utt = Utterance(id=uid, text=text, voice=voice, user=user, raw=f"raw {text}", kind=EventKind.DANMAKU)
    return Audio(utterance=utt, samples=samples)


@asynccontextmanager
async def serve(hub: ObsHub) -> AsyncIterator[str]:
    """Yields ``http://127.0.0.1:PORT``."""
    app = web.Application()
    hub.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    await hub.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        await hub.close()
        await runner.cleanup()


async def receive_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=10)
    assert msg.type == WSMsgType.TEXT, msg
    data = json.loads(msg.data)
    assert isinstance(data, dict)
    return data


async def read_utterance(ws: aiohttp.ClientWebSocketResponse) -> tuple[dict[str, Any], list[bytes], dict[str, Any]]:
    """One header, its binary frames, and its end frame — in that order, nothing else in between."""
    header = await receive_json(ws)
    assert header["type"] == "utterance", header
    chunks: list[bytes] = []
    for _ in range(10_000):
        msg = await ws.receive(timeout=10)
        if msg.type == WSMsgType.BINARY:
            chunks.append(msg.data)
            continue
        assert msg.type == WSMsgType.TEXT, msg
        end = json.loads(msg.data)
        assert end == {"type": "end", "id": header["id"]}
        return header, chunks, end
    raise AssertionError("no end frame")


async def wait_until(predicate: Any, what: str, *, tries: int = 500, step: float = 0.01) -> None:
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.asyncio
async def test_three_clients_get_every_utterance_in_order() -> None:
    hub = ObsHub(ObsSettings(chunk_bytes=32 * 1024))
    audios = [make_audio("u1-1", 36_007), make_audio("u2-1", 100, text="second", user="bob", voice="v2")]
    async with asyncio.timeout(30), serve(hub) as base, aiohttp.ClientSession() as session:
        clients = [await session.ws_connect(f"{base}/ws/obs") for _ in range(3)]
        for ws in clients:
            hello = await receive_json(ws)
            assert hello["type"] == "hello"
            assert hello["server"] == "ishow"
            assert hello["sample_rate"] == 24_000
        assert hub.state()["clients"] == 3

        for audio in audios:
            await hub.play(audio)

        for ws in clients:
            for audio in audios:
                header, chunks, _ = await read_utterance(ws)
                utt = audio.utterance
                assert {k: header[k] for k in CONTRACT_KEYS} == {
                    "type": "utterance",
                    "id": utt.id,
                    "text": utt.text,
                    "user": utt.user,
                    "voice": utt.voice,
                    "sample_rate": 24_000,
                    "format": "pcm_s16le",
                }
                assert header["raw"] == utt.raw
                pcm = b"".join(chunks)
                assert len(pcm) == 2 * len(audio.samples) == header["bytes"]
                assert pcm == audio.pcm16()
                assert all(len(c) <= 32 * 1024 for c in chunks)
            assert len(chunks) == 1  # the 100-sample one
        # first utterance: 72014 bytes → 32768 + 32768 + 6478
        for ws in clients:
            await ws.close()


@pytest.mark.asyncio
async def test_played_reports_and_malformed_frames() -> None:
    seen: list[str] = []
    hub = ObsHub(ObsSettings(played_history=4), on_played=seen.append)
    async with asyncio.timeout(30), serve(hub) as base, aiohttp.ClientSession() as session:
        a = await session.ws_connect(f"{base}/ws/obs")
        b = await session.ws_connect(f"{base}/ws/obs")
        for ws in (a, b):
            await receive_json(ws)
        with capture_logs() as logs:
            for bad in ("not json", "[1, 2]", '{"type": "bogus"}', '{"type": "played"}', '{"type":"played","id":5}'):
                await a.send_str(bad)
            await a.send_bytes(b"\x00\x01")
            await a.send_str(json.dumps({"type": "state", "audio": "running", "nested": {"x": 1}, "n": 3}))
            await a.send_str(json.dumps({"type": "played", "id": "u1"}))
            await b.send_str(json.dumps({"type": "played", "id": "u1"}))
            await b.send_str(json.dumps({"type": "played", "id": "u2"}))
            await wait_until(lambda: hub.played_ids() == ["u1", "u2"], "played ids")
            await wait_until(
                lambda: sorted(len(c["played"]) for c in hub.state()["client_info"]) == [1, 2],  # type: ignore[attr-defined]
                "per-client played",
            )
        malformed = [e for e in logs if "malformed" in e["event"]]
        assert len(malformed) == 5  # the first 5 per client are logged, the rest only counted
        assert seen == ["u1", "u2"]  # once per id, although two pages reported u1

        info = {c["id"]: c for c in hub.state()["client_info"]}  # type: ignore[attr-defined]
        reports = [c["last_report"] for c in info.values() if c["last_report"]]
        assert reports == [{"type": "state", "audio": "running", "n": 3}]
        assert sorted(c["malformed"] for c in info.values()) == [0, 6]

        # the misbehaving page is still connected and still served
        await hub.play(make_audio("u3", 480))
        for ws in (a, b):
            header, chunks, _ = await read_utterance(ws)
            assert header["id"] == "u3"
            assert len(b"".join(chunks)) == 960

        for i in range(5):  # hub-wide history is bounded
            await a.send_str(json.dumps({"type": "played", "id": f"x{i}"}))
        await wait_until(lambda: hub.played_ids()[-1:] == ["x4"], "bounded history")
        assert hub.played_ids() == ["x1", "x2", "x3", "x4"]
        await a.close()
        await b.close()


async def _stalled_client(port: int) -> socket.socket:
    """A websocket client that completes the handshake, then never reads (tiny receive buffer)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = (
        "GET /ws/obs HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    for _ in range(100):
        head += await asyncio.wait_for(loop.sock_recv(sock, 1), 10)
        if head.endswith(b"\r\n\r\n"):
            break
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        # each variant makes the other drop reason impossible: a huge queue, or a send timeout beyond the test
        (ObsSettings(send_timeout_s=0.3, max_client_queue=10_000), "send timed out"),
        (ObsSettings(send_timeout_s=60.0, max_client_queue=2), "queue full"),
    ],
)
@pytest.mark.asyncio
async def test_stalled_client_is_dropped_others_get_everything(settings: ObsSettings, reason: str) -> None:
    hub = ObsHub(settings)
    async with asyncio.timeout(60), serve(hub) as base, aiohttp.ClientSession() as session:
        port = int(base.rsplit(":", 1)[1])
        healthy = [await session.ws_connect(f"{base}/ws/obs") for _ in range(2)]
        for ws in healthy:
            await receive_json(ws)
        stalled = await _stalled_client(port)
        try:
            await wait_until(lambda: hub.state()["clients"] == 3, "3 clients")
            with capture_logs() as logs:
                for i in range(300):  # 2 s of audio each: at most ~29 MB in all, far beyond any socket buffer
                    audio = make_audio(f"s{i}", 2 * 24_000)
                    await hub.play(audio)
                    for ws in healthy:
                        header, chunks, _ = await read_utterance(ws)
                        assert header["id"] == audio.utterance.id
                        assert len(b"".join(chunks)) == 2 * 2 * 24_000
                    if hub.state()["dropped_clients"] == 1:
                        break
                    await asyncio.sleep(0.005)  # let time pass so a blocked send can time out
                assert hub.state()["dropped_clients"] == 1, "the stalled client was never dropped"
                assert hub.state()["clients"] == 2
                drops = [e for e in logs if e["event"] == "obs client dropped"]
                assert [d["reason"] for d in drops] == [reason]

                # the stalled connection was aborted and its handler finished
                await wait_until(
                    lambda: any(e["event"] == "obs client disconnected" and e.get("reason") == reason for e in logs),
                    "the dropped client's handler to finish",
                )
            loop = asyncio.get_running_loop()
            for _ in range(10_000):  # drain what the kernel buffered, then EOF or reset
                try:
                    data = await asyncio.wait_for(loop.sock_recv(stalled, 65536), 10)
                except ConnectionResetError:
                    break
                if not data:
                    break
            else:
                raise AssertionError("the stalled connection was not closed")

            # the healthy ones keep getting everything after the drop
            await hub.play(make_audio("after", 240))
            for ws in healthy:
                header, chunks, _ = await read_utterance(ws)
                assert header["id"] == "after"
                assert len(b"".join(chunks)) == 480
        finally:
            stalled.close()
        for ws in healthy:
            await ws.close()


@pytest.mark.asyncio
async def test_page_close_and_limits() -> None:
    hub = ObsHub(ObsSettings(max_clients=1))
    async with asyncio.timeout(30), serve(hub) as base, aiohttp.ClientSession() as session:
        async with session.get(f"{base}/obs") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            page = await resp.text()
        assert "/ws/obs" in page
        assert "ishowLog" in page
        assert "token" in page

        ws = await session.ws_connect(f"{base}/ws/obs")
        await receive_json(ws)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{base}/ws/obs")
        assert refused.value.status == 503
        assert hub.state()["refused_clients"] == 1

        await hub.close()
        await hub.close()  # idempotent
        msg = await ws.receive(timeout=10)
        assert msg.type == WSMsgType.CLOSE, msg
        assert msg.data == 1001  # going away
        assert hub.state()["active"] is False
        await hub.play(make_audio("late", 10))  # no-op after close
        with pytest.raises(aiohttp.WSServerHandshakeError) as closed:
            await session.ws_connect(f"{base}/ws/obs")
        assert closed.value.status == 503


def test_settings_validation() -> None:
    with pytest.raises(ConfigError, match=r"outputs\.obs\.max_client_queue"):
        ObsSettings(max_client_queue=0)
    with pytest.raises(ConfigError, match=r"outputs\.obs\.send_timeout_s"):
        ObsSettings(send_timeout_s=0)


async def test_a_streamed_utterance_is_one_header_its_parts_and_one_end() -> None:
    hub = ObsHub(ObsSettings(chunk_bytes=1000))
    whole = make_audio("L", 3000)
    first = dataclasses.replace(whole, samples=whole.samples[:1200], part=0, final=False)
    rest = dataclasses.replace(whole, samples=whole.samples[1200:], part=1, final=True)
    async with serve(hub) as base, aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{base}/ws/obs") as early:
            assert (await receive_json(early))["type"] == "hello"
            await hub.play(first)
            late = await http.ws_connect(f"{base}/ws/obs")  # connects mid-stream
            assert (await receive_json(late))["type"] == "hello"
            await wait_until(lambda: hub.state()["clients"] == 2, "two clients")
            await hub.play(rest)
            await hub.play(make_audio("next", 100))
            header, chunks, _ = await read_utterance(early)
            assert header["id"] == "L" and header["stream"] is True and "samples" not in header
            assert b"".join(chunks) == whole.pcm16()  # the parts, in order, are the whole utterance
            assert (await read_utterance(early))[0]["id"] == "next"
            header, _, _ = await read_utterance(late)  # no stray audio of "L": it starts with the next one
            assert header["id"] == "next" and "stream" not in header and header["samples"] == 100
            await late.close()
        assert hub.state()["utterances"] == 2
