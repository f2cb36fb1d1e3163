"""Bounds against the real daemon: lone surrogates, paid floods, metric cardinality, honest replies, /api/tts as a
side door, OBS connection caps, slow headers and odd Authorization bytes. Every wait is bounded; no timing asserts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
from typing import Any, cast

import aiohttp
import pytest
from structlog.testing import capture_logs

from ishow.boundary import KNOWN_PLATFORMS
from ishow.config.schema import Config, SourceConfig
from ishow.outputs.obs import ObsHub, ObsSettings, _Item
from tests.conftest import espeak_config
from tests.test_daemon_e2e import JSON, read_utterance
from tests.test_obs_hub import make_audio, serve

T = 30.0


def config(**server: Any) -> Config:
    sources = (
        SourceConfig(kind="websocket", name="bridge", path="/ws/input", trusted=True),
        SourceConfig(kind="websocket", name="tool", path="/ws/tool"),
    )
    cfg = espeak_config(sources=sources)
    return dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, **server))


async def wait_until(predicate: Any, what: str, timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def counter(metric: Any, **labels: str) -> float:
    total = 0.0
    for m in metric.collect():
        for s in m.samples:
            if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def drops(daemon: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in daemon.metrics.dropped.collect():
        for s in m.samples:
            if s.name.endswith("_total"):
                out[s.labels["reason"]] = s.value
    return out


async def test_lone_surrogates_via_http_and_ws_input_then_chat_still_reaches_obs(start_daemon: Any) -> None:
    rd = await start_daemon(config())
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{rd.url}/ws/obs") as obs,
        http.ws_connect(f"{rd.url}/ws/tool") as tool,
    ):
        r = await http.post(
            f"{rd.url}/api/messages", data=b'{"user": "x\\ud800", "text": "poison \\ud800 one"}', headers=JSON
        )
        assert r.status == 202 and (await r.json())["queued"] is True
        await tool.send_str('{"user": "y\\udfff", "text": "poison \\udfff two", "uid": "\\ud83d"}')
        for user, text in [("ann", "ordinary one"), ("bob", "ordinary two")]:
            r = await http.post(f"{rd.url}/api/messages", json={"user": user, "text": text})
            assert r.status == 202
        await tool.send_str(json.dumps({"user": "cat", "text": "ordinary three"}))
        got = [(await read_utterance(obs))[0] for _ in range(5)]
    raws = [h["raw"] for h in got]
    assert raws[:2] == ["poison \ufffd one", "poison \ufffd two"]
    assert [h["user"] for h in got[:2]] == ["x\ufffd", "y\ufffd"]
    assert raws[2:] == ["ordinary one", "ordinary two", "ordinary three"]
    assert rd.daemon.obs.state()["dropped_clients"] == 0


async def test_obs_writer_survives_an_unsendable_utterance() -> None:
    """The writer's supervisor: a frame that cannot be encoded is logged and skipped; the next utterance arrives."""
    hub = ObsHub(ObsSettings())
    async with asyncio.timeout(T), serve(hub) as base, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{base}/ws/obs")
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "hello"
        (client,) = hub._clients.values()
        with capture_logs() as logs:
            client.queue.put_nowait(_Item(id="bad", frames=('{"text": "\ud800"}', b"\x00\x00")))
            await hub.play(make_audio("good-1", 2400, text="next one"))
            header = json.loads((await ws.receive(timeout=10)).data)
        assert header["type"] == "utterance" and header["id"] == "good-1"
        assert any(e["event"] == "obs utterance could not be sent; skipped" for e in logs)
        assert hub.state()["skipped_utterances"] == 1 and hub.state()["clients"] == 1
        await ws.close()


async def test_paid_flood_is_bounded_counted_and_the_daemon_stays_responsive(start_daemon: Any) -> None:
    rd = await start_daemon(config())
    daemon = rd.daemon
    daemon.player.pause()  # nothing drains: the flood has to be held by the queue's bounds
    n, max_paid, max_size = 20_000, daemon.cfg.queue.max_paid, daemon.cfg.queue.max_size
    bridge = next(s for s in daemon.sources if s.name == "bridge")
    most_queued = most_paid = 0
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/input") as ws:
        for i in range(n):
            frame = {"user": f"rich{i}", "text": f"super chat {i}", "kind": "super_chat", "amount": 30}
            await ws.send_str(json.dumps(frame))
            if i % 1000 == 999:
                async with http.get(f"{rd.url}/healthz") as r:  # answered in the middle of the flood
                    assert r.status == 200
                most_queued, most_paid = max(most_queued, len(daemon.queue)), max(most_paid, daemon.queue.paid)
        await wait_until(lambda: bridge.frames == n, "all frames handled")
        assert counter(daemon.metrics.messages, platform="websocket") == n
        most_queued, most_paid = max(most_queued, len(daemon.queue)), max(most_paid, daemon.queue.paid)
        assert most_paid <= max_paid and most_queued <= max_size + max_paid
        snap = await (await http.get(f"{rd.url}/api/queue")).json()
        assert snap["dropped"]["counts"]["paid_overflow"] == drops(daemon)["paid_overflow"] > n - 2 * max_paid
        assert snap["dropped"]["recent"][0]["reason"] == "paid_overflow"
        # drain: clear what waits, play what is left; then every accepted frame is spoken or dropped by reason
        async with http.post(f"{rd.url}/api/control", json={"action": "clear"}) as r:
            assert r.status == 200
        daemon.player.resume()
        await wait_until(
            lambda: not len(daemon.queue) and not len(daemon.audio) and daemon.player.current is None
            and not daemon.pipeline.busy, "drained"
        )  # fmt: skip
    spoken = daemon.metrics.spoken._value.get()
    errors = counter(daemon.metrics.synth_errors)
    print(f"\npaid flood: {n} frames, max queued {most_queued}, max paid {most_paid}, spoken {spoken}, {drops(daemon)}")
    assert spoken + sum(drops(daemon).values()) + errors == n


async def test_untrusted_input_cannot_buy_priority_or_speak_for_a_platform(start_daemon: Any) -> None:
    rd = await start_daemon(config())
    daemon = rd.daemon
    daemon.player.pause()
    tool = next(s for s in daemon.sources if s.name == "tool")
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/tool") as ws:
        for i in range(2000):
            frame = {"user": f"u{i}", "text": f"pay {i}", "kind": "super_chat", "amount": 999, "moderator": True}
            await ws.send_str(json.dumps(frame))
        await wait_until(lambda: tool.frames == 2000, "frames handled")
        assert daemon.queue.paid == 0 and len(daemon.queue) <= daemon.cfg.queue.max_size
        assert {u.kind.value for u in daemon.queue.snapshot()} == {"danmaku"}
        assert {u.priority.name for u in daemon.queue.snapshot()} == {"NORMAL"}
        assert drops(daemon)["queue_full"] > 0
        await ws.send_str(json.dumps({"user": "x", "text": "hi", "platform": "twitch"}))
        reply = await ws.receive_json(timeout=T)
        assert "reserved for the twitch source" in reply["error"]
        await ws.send_str(json.dumps({"type": "remove", "uid": "someone", "platform": "bilibili"}))
        assert "reserved for the bilibili source" in (await ws.receive_json(timeout=T))["error"]


async def test_platform_metric_labels_are_bounded(start_daemon: Any) -> None:
    rd = await start_daemon(config())
    async with aiohttp.ClientSession() as http:
        before = await (await http.get(f"{rd.url}/metrics")).text()
        for i in range(1500):
            body = {"user": f"u{i}", "text": f"hello {i}", "platform": f"plat{i}"}
            async with http.post(f"{rd.url}/api/messages", json=body) as r:
                assert r.status == 202
        for platform in ("twitch", "api", "bilibili"):
            await http.post(f"{rd.url}/api/messages", json={"user": "k", "text": platform, "platform": platform})
        after = await (await http.get(f"{rd.url}/metrics")).text()
    labels = set(re.findall(r'ishow_messages_total\{platform="([^"]*)"\}', after))
    assert labels == {"other", "twitch", "api", "bilibili"} and labels <= KNOWN_PLATFORMS | {"other"}
    assert 'ishow_messages_total{platform="other"} 1500.0' in after
    print(f"\n/metrics: {len(before)} bytes before, {len(after)} after 1,500 distinct platforms")
    assert len(after) - len(before) < 3000


async def test_queued_true_is_honest_later_evictions_are_listed(start_daemon: Any) -> None:
    rd = await start_daemon(config())
    gate = threading.Event()
    blocker = rd.daemon.worker._pool.submit(gate.wait, 60)  # the engine is busy: the first batch waits for it
    ids = []
    async with aiohttp.ClientSession() as http:
        for i in range(70):
            async with http.post(f"{rd.url}/api/messages", json={"user": f"v{i}", "text": f"message {i}"}) as r:
                body = await r.json()
                assert body["queued"] is True
                ids.append(body["id"])
        snap = await (await http.get(f"{rd.url}/api/queue")).json()
    waiting = {row["id"] for row in snap["items"]}
    evicted = {row["id"]: row["reason"] for row in snap["dropped"]["recent"]}
    assert set(ids) == waiting | set(evicted) and not waiting & set(evicted)
    assert set(evicted.values()) == {"queue_full"}
    assert snap["dropped"]["counts"] == {"queue_full": len(evicted)} == {"queue_full": drops(rd.daemon)["queue_full"]}
    gate.set()
    await asyncio.wait_for(asyncio.wrap_future(blocker), T)


async def test_api_tts_is_a_bounded_side_door_behind_live_chat(start_daemon: Any) -> None:
    rd = await start_daemon(config())
    worker = rd.daemon.worker
    order: list[str] = []
    real = worker._synthesize_sync

    def recording(requests: list[Any]) -> Any:
        order.extend(r.text for r in requests)
        return real(requests)

    worker._synthesize_sync = recording
    gate = threading.Event()
    blocker = worker._pool.submit(gate.wait, 60)  # the engine thread is busy until the gate opens
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{rd.url}/api/tts", json={"text": "hi", "nfe_step": 13}) as r:
            assert r.status == 400 and "one of [4, 7, 8, 16, 32]" in (await r.json())["error"]
        tts = [
            asyncio.create_task(http.post(f"{rd.url}/api/tts", json={"text": f"side door {i}"}))
            for i in ("alpha", "beta")
        ]
        await wait_until(lambda: len(worker._turns._waiting[1]) == 1, "second /api/tts waiting for its turn")
        async with http.post(f"{rd.url}/api/tts", json={"text": "one too many"}) as r:
            assert r.status == 429 and r.headers["Retry-After"].isdigit()
            assert "the limit is 2" in (await r.json())["error"]
        async with http.post(f"{rd.url}/api/messages", json={"user": "viewer", "text": "live chat"}) as r:
            assert r.status == 202
        await wait_until(lambda: len(worker._turns._waiting[0]) == 1, "the chat batch waiting for the engine")
        gate.set()
        await asyncio.wait_for(asyncio.wrap_future(blocker), T)
        for task in tts:
            assert (await asyncio.wait_for(task, 60)).status == 200
        async with http.post(f"{rd.url}/api/tts", json={"text": "slots are free again"}) as r:
            assert r.status == 200
    # the first request already sat in the engine's queue; the chat batch went before the second one
    assert order[:3] == ["side door alpha", "live chat", "side door beta"], order


async def test_obs_caps_count_accepted_pages_per_remote_and_total(start_daemon: Any) -> None:
    cfg = config()
    obs = dataclasses.replace(cfg.outputs.obs, max_clients=3, max_clients_per_remote=2)
    rd = await start_daemon(dataclasses.replace(cfg, outputs=dataclasses.replace(cfg.outputs, obs=obs)))
    url = f"{rd.url}/ws/obs"
    async with aiohttp.ClientSession() as http:
        for _ in range(10):  # foreign pages are refused before the hub: they take no slot
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await http.ws_connect(url, origin="https://evil.example")
            assert e.value.status == 403
        pages = [await http.ws_connect(url), await http.ws_connect(url)]
        with capture_logs() as logs:
            for _ in range(5):
                with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                    await http.ws_connect(url)
                assert e.value.status == 503
        assert [e["reason"] for e in logs if e["event"] == "obs client refused"] == [
            "too many OBS clients from 127.0.0.1 (at most 2)"
        ]  # five refusals, one line (at most one a minute)
        other = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
        third = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0)))
        async with other, third:
            pages.append(await other.ws_connect(url))
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await third.ws_connect(url)
            assert e.value.status == 503
            state = rd.daemon.obs.state()
            assert state["clients"] == 3 and state["refused_clients"] == 6
            for ws in pages:
                await ws.close()


async def test_slow_headers_are_cut_and_non_ascii_authorization_is_401(start_daemon: Any) -> None:
    rd = await start_daemon(config(header_timeout_s=1.0, token="a-long-enough-token-0123"))
    port = rd.daemon.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode())
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), T) == b""  # closed without an answer: the head never ended
    writer.close()
    auths = (b"Bearer \xff\xfe\xe4", "Bearer tökén".encode(), b"Bearer a-long-enough-token-012\xc3\xa4")
    for path, auth in [(p, a) for p in ("/api/status", "/audio/u1-1.wav", "/ws/obs") for a in auths]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAuthorization: ".encode()
            + auth
            + b"\r\n\r\n"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), T)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    async with aiohttp.ClientSession() as http:
        assert (await http.get(f"{rd.url}/api/status?token=t%C3%B6k%C3%A9n")).status == 401
        headers = {"Authorization": "Bearer a-long-enough-token-0123"}
        assert (await http.get(f"{rd.url}/api/status", headers=headers)).status == 200


async def test_obs_page_reports_with_hostile_json_are_ignored_and_the_page_stays() -> None:
    hub = ObsHub(ObsSettings())
    async with asyncio.timeout(T), serve(hub) as base, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{base}/ws/obs")
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "hello"
        for frame in ("[" * 20_000, '{"type": "played", "id": ' + "9" * 5000 + "}"):
            await ws.send_str(frame)
        await ws.send_str('{"type": "played", "id": "p\\ud800"}')
        await ws.send_str('{"type": "state", "page": "obs\\udfff"}')

        def client_info() -> dict[str, Any]:
            return cast(list[dict[str, Any]], hub.state()["client_info"])[0]

        await wait_until(lambda: client_info()["last_report"] is not None, "state report")
        info = client_info()
        assert info["malformed"] == 2 and info["played"] == ["p\ufffd"]
        assert info["last_report"] == {"type": "state", "page": "obs\ufffd"}
        await hub.play(make_audio("after-1", 2400))
        assert json.loads((await ws.receive(timeout=10)).data)["id"] == "after-1"
        await ws.close()
