"""Queue control through the API: pause/resume, skip, clear, remove one, mute; realtime pacing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import aiohttp

from tests.conftest import espeak_config


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body) as r:
        return r.status, await r.json()


async def test_pause_queue_remove_mute_clear_resume(start_daemon: Any) -> None:
    rd = await start_daemon(espeak_config())
    u = rd.url
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{u}/ws/obs") as ws:
        assert (await post(http, f"{u}/api/control", {"action": "pause"}))[1]["paused"] is True
        ids = []
        for i, (user, text) in enumerate([("ann", "first"), ("bob", "second"), ("troll", "spam one"), ("eve", "four")]):
            status, body = await post(http, f"{u}/api/messages", {"user": user, "text": f"{text} {i}"})
            assert status == 202 and body["queued"]
            ids.append(body["id"])
        # paused: the first batch may be synthesized (ready) but nothing is handed to OBS
        for _ in range(50):
            snap = await (await http.get(f"{u}/api/queue")).json()
            if {r["state"] for r in snap["items"]} <= {"ready", "queued"} and len(snap["items"]) == 4:
                break
            await asyncio.sleep(0.05)
        assert [r["id"] for r in snap["items"]] == ids and snap["paused"] is True
        # remove one, mute a user (their waiting message goes too), unknown id → 404
        async with http.delete(f"{u}/api/queue/{ids[1]}") as r:
            assert r.status == 200
        async with http.delete(f"{u}/api/queue/nope") as r:
            assert r.status == 404 and "no waiting utterance" in (await r.json())["error"]
        assert (await post(http, f"{u}/api/mute", {"user": "troll", "minutes": 5}))[1]["removed"] == 1
        status, body = await post(http, f"{u}/api/messages", {"user": "troll", "text": "again"})
        assert body == {"queued": False, "dropped": "muted"}
        assert (await post(http, f"{u}/api/mute", {"user": "troll", "minutes": "5"}))[0] == 400
        assert (await post(http, f"{u}/api/control", {"action": "explode"}))[0] == 400
        snap = await (await http.get(f"{u}/api/queue")).json()
        assert [r["id"] for r in snap["items"]] == [ids[0], ids[3]] and "troll" in snap["muted"]
        # resume: exactly the two remaining utterances arrive, in order
        await post(http, f"{u}/api/control", {"action": "resume"})
        got: list[str] = []
        while len(got) < 2:
            msg = await asyncio.wait_for(ws.receive(), 30)
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "utterance":
                got.append(json.loads(msg.data)["id"])
        assert got == [ids[0], ids[3]]
        # clear drops everything waiting
        await post(http, f"{u}/api/control", {"action": "pause"})
        for i in range(3):
            await post(http, f"{u}/api/messages", {"user": "x", "text": f"later {i}"})
        status, body = await post(http, f"{u}/api/control", {"action": "clear"})
        assert status == 200 and body["cleared"] >= 1
        snap = await (await http.get(f"{u}/api/queue")).json()
        assert [r for r in snap["items"] if r["state"] != "playing"] == []


async def test_realtime_pacing_and_skip(start_daemon: Any) -> None:
    cfg = espeak_config()
    rd = await start_daemon(dataclasses.replace(cfg, outputs=dataclasses.replace(cfg.outputs, realtime=True)))
    u = rd.url
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{u}/ws/obs") as ws:
        long_text = "This is a fairly long message that takes several seconds to read out loud on the stream."
        await post(http, f"{u}/api/messages", {"user": "a", "text": long_text})
        await post(http, f"{u}/api/messages", {"user": "b", "text": "short one"})
        frames: list[dict[str, Any]] = []
        while not any(f["type"] == "end" for f in frames):
            msg = await asyncio.wait_for(ws.receive(), 30)
            if msg.type == aiohttp.WSMsgType.TEXT:
                frames.append(json.loads(msg.data))
        first = next(f for f in frames if f["type"] == "utterance")
        # while the long one plays, the second is held back by the player (once synthesized: with early start the
        # second, which arrived during the first's window, is synthesized after the first is handed over)
        for _ in range(200):
            snap = await (await http.get(f"{u}/api/queue")).json()
            if [r["state"] for r in snap["items"]] != ["playing", "synthesizing"]:
                break
            await asyncio.sleep(0.02)
        assert [r["state"] for r in snap["items"]] == ["playing", "ready"]
        assert snap["items"][0]["id"] == first["id"]
        _, body = await post(http, f"{u}/api/control", {"action": "skip"})
        assert body["skipped"] == first["id"]
        seen: list[dict[str, Any]] = []
        while not any(f.get("type") == "utterance" for f in seen):
            msg = await asyncio.wait_for(ws.receive(), 10)
            if msg.type == aiohttp.WSMsgType.TEXT:
                seen.append(json.loads(msg.data))
        assert seen[0] == {"type": "skip", "id": first["id"]}
        assert seen[-1]["text"] == "short one"


async def test_moderator_removals_drop_queued_chat(start_daemon: Any) -> None:
    from ishow.events import ChatEvent, EventKind, Removal, User

    rd = await start_daemon(espeak_config())
    d = rd.daemon
    d.player.pause()

    def chat(uid: str, msg_id: str, text: str, platform: str = "twitch") -> None:
        d.intake.ingest(ChatEvent(platform, "c", User(uid, uid), EventKind.DANMAKU, text, msg_id=msg_id))

    chat("ann", "m1", "hello one")
    chat("bob", "m2", "hello two")
    chat("bob", "m3", "hello three")
    chat("cat", "m4", "hello four")
    chat("dan", "m5", "hello five", platform="bilibili")
    for _ in range(100):  # wait until the batch settled into the buffer (bounded)
        if all(r["state"] in ("ready", "queued") for r in d.controls.snapshot()["items"]):
            break
        await asyncio.sleep(0.02)
    d.intake.ingest(Removal("twitch", msg_id="m1"))  # CLEARMSG
    d.intake.ingest(Removal("twitch", user_id="bob"))  # CLEARCHAT of one user
    left = [r["raw"] for r in d.controls.snapshot()["items"]]
    assert left == ["hello four", "hello five"]
    d.intake.ingest(Removal("twitch"))  # CLEARCHAT: everything from that platform
    assert [r["raw"] for r in d.controls.snapshot()["items"]] == ["hello five"]
