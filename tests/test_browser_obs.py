"""The /obs page in headless Chromium against the real daemon (espeak speech) and the real OBS hub.

What the page did is read from its own ``window.ishowLog`` and from an AudioWorklet tap on its WebAudio graph
(``?meter=1``): the tap counts every sample the graph rendered, so "played completely, exactly once, no overlap" is
checked against the PCM the server sent. No wall-clock durations are asserted; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from ishow.config.schema import Config
from ishow.events import Audio, EventKind, Utterance
from ishow.outputs.obs import ObsHub
from tests.browser import (
    Page,
    browser_fixture,  # noqa: F401 - the `browser` fixture
    fnv1a32,
    free_port,
    new_page,
    pcm_energy,
    stalled_ws_client,
    wait_closed,
)
from tests.conftest import espeak_config

RATE = 24_000
MESSAGES = [
    ("小明", "主播晚上好，今天玩什么游戏？"),
    ("alice", "Hello there, nice stream!"),
    ("bob", "GG 666"),
]


def config(*, realtime: bool = False, port: int = 0, send_timeout_s: float | None = None) -> Config:
    cfg = espeak_config()
    obs = cfg.outputs.obs
    if send_timeout_s is not None:
        obs = dataclasses.replace(obs, send_timeout_s=send_timeout_s)
    return dataclasses.replace(
        cfg,
        server=dataclasses.replace(cfg.server, port=port),
        outputs=dataclasses.replace(cfg.outputs, realtime=realtime, obs=obs),
    )


async def post_message(http: aiohttp.ClientSession, url: str, user: str, text: str) -> str:
    async with http.post(f"{url}/api/messages", json={"user": user, "text": text}) as r:
        body = await r.json()
        assert r.status == 202 and body["queued"], body
        return str(body["id"])


async def observe(ws: aiohttp.ClientWebSocketResponse, n: int) -> dict[str, tuple[dict[str, Any], bytes]]:
    """What the server sent: ``n`` utterances (header, PCM) read by a plain websocket client."""
    out: dict[str, tuple[dict[str, Any], bytes]] = {}
    header: dict[str, Any] | None = None
    pcm = bytearray()
    for _ in range(100_000):
        if len(out) == n:
            return out
        msg = await ws.receive(timeout=60)
        if msg.type == aiohttp.WSMsgType.BINARY:
            pcm += msg.data
            continue
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame = json.loads(msg.data)
        if frame["type"] == "utterance":
            header, pcm = frame, bytearray()
        elif frame["type"] == "end":
            assert header is not None and header["id"] == frame["id"]
            out[frame["id"]] = (header, bytes(pcm))
    raise AssertionError("observer did not get all utterances")


async def open_obs(browser: Any, base: str, query: str = "meter=1&linger=0.3&debug=1") -> Page:
    page = await new_page(browser)
    await page.goto(f"{base}/obs?{query}")
    await page.wait("() => window.ishowLog.some((e) => e.event === 'hello')")
    state = await page.eval("() => window.ishow.state()")
    assert state["audio"] == "running" and state["rate"] == RATE, state
    return page


async def meter(page: Page) -> dict[str, float]:
    result: dict[str, float] = await page.eval("() => window.ishow.meter()")
    assert result is not None, "the AudioWorklet meter is unavailable"
    return result


async def wait_until(predicate: Any, what: str, timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def no_errors(log: list[dict[str, Any]]) -> None:
    problems = [e for e in log if e["event"] in ("error", "duplicate", "muted")]
    assert problems == [], problems


async def test_obs_page_plays_every_sample_in_order_with_subtitles(browser: Any, start_daemon: Any) -> None:
    rd = await start_daemon(config())
    page = await open_obs(browser, rd.url)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/obs") as observer:
        await wait_until(lambda: rd.daemon.obs.state()["clients"] == 2, "page + observer connected")
        ids = [await post_message(http, rd.url, user, text) for user, text in MESSAGES]
        sent = await observe(observer, len(ids))
    await page.wait_events("ended", ids, timeout_s=60)
    log = await page.log()
    no_errors(log)

    # the page decoded exactly what the server sent, and scheduled it back to back on the audio clock
    plays = [e for e in log if e["event"] == "play"]
    assert [p["id"] for p in plays] == ids
    for p in plays:
        header, pcm = sent[p["id"]]
        assert p["samples"] == p["expected"] == header["samples"] == len(pcm) // 2 > RATE // 10
        assert p["bytes"] == header["bytes"] == len(pcm)
        assert p["fnv"] == fnv1a32(pcm)
        assert p["rate"] == RATE and p["duration"] == pytest.approx(p["samples"] / RATE, abs=1e-9)
        assert p["frames"] == p["samples"]  # the context runs at 24 kHz: one buffer sample per rendered frame
    for a, b in itertools.pairwise(plays):
        assert b["frame"] == a["frame"] + a["frames"], "gap or overlap"
    assert [e["id"] for e in log if e["event"] == "ended"] == ids

    # the WebAudio graph rendered every sample exactly once: same non-zero count and energy as the PCM sent
    nonzero, energy = map(sum, zip(*(pcm_energy(sent[i][1]) for i in ids), strict=True))
    m = await meter(page)
    assert m["audible"] == nonzero, (m, nonzero, energy)
    assert m["sumsq"] == pytest.approx(energy, rel=1e-6)
    assert m["frames"] >= sum(p["samples"] for p in plays)

    # subtitles: shown in order, each with user and the original message, then faded out and removed
    assert [e["id"] for e in log if e["event"] == "sub-show"] == ids
    await page.wait_events("sub-hide", ids, timeout_s=10)
    assert await page.eval("() => document.querySelectorAll('#subs .line').length") == 0

    # the page reported what it played; its last state report reached the hub
    await wait_until(lambda: set(ids) <= set(rd.daemon.obs.played_ids()), "played reports")
    await wait_until(lambda: page_client(rd).get("last_report", {}).get("played") == len(ids), "state report")
    client = page_client(rd)
    assert client["played"] == ids
    assert client["last_report"]["audio"] == "running" and client["last_report"]["waiting"] == 0
    assert page.errors == []


def page_client(rd: Any) -> dict[str, Any]:
    """The hub's view of the (one) browser page: the client whose state reports say page "obs"."""
    for info in rd.daemon.obs.state()["client_info"]:
        if (info["last_report"] or {}).get("page") == "obs":
            return dict(info)
    return {}


async def test_obs_subtitle_styles_and_screenshot(browser: Any, start_daemon: Any, tmp_path: Path) -> None:
    rd = await start_daemon(config())
    page = await open_obs(browser, rd.url, "font_size=40&max_lines=2&linger=30&theme=dark&meter=1")
    # an OBS-like scene behind the transparent page, so the screenshot shows how the overlay reads on stream
    await page.page.add_style_tag(
        content="html { background: linear-gradient(135deg, #1d3557 0%, #457b9d 45%, #2a9d8f 100%); }"
    )
    messages = [
        *MESSAGES,
        ("弹幕姬", "这条弹幕很长很长，用来看看字幕换行和省略号的效果是否正常，还有 English mixed in."),
    ]
    async with aiohttp.ClientSession() as http:
        ids = [await post_message(http, rd.url, user, text) for user, text in messages]
    await page.wait_events("sub-show", ids, timeout_s=60)  # the last one is playing now
    # max_lines=2: older subtitles left as newer ones came; the last two stay for the linger time
    lines = await page.eval(
        """() => Array.from(document.querySelectorAll('#subs .line:not(.done)')).map((el) => ({
             id: el.dataset.id, user: el.querySelector('.user').textContent,
             text: el.querySelector('.text').textContent,
             font: getComputedStyle(el).fontSize, opacity: getComputedStyle(el).opacity }))"""
    )
    assert [line["id"] for line in lines] == ids[-2:]
    assert lines[-1]["user"] == "弹幕姬" and lines[-1]["text"].startswith("这条弹幕很长很长")
    assert all(line["font"] == "40px" for line in lines)
    assert await page.eval("() => document.body.classList.contains('theme-dark')")
    await page.wait(
        "() => Array.from(document.querySelectorAll('#subs .line.show')).every((el) => "
        "getComputedStyle(el).opacity === '1')",
        timeout_s=10,
    )
    await page.screenshot("obs-overlay.png", tmp_path)
    no_errors(await page.log())
    assert page.errors == []


async def test_skip_stops_the_playing_utterance(browser: Any, start_daemon: Any) -> None:
    rd = await start_daemon(config(realtime=True))
    page = await open_obs(browser, rd.url)
    long_text = "This is a fairly long message that takes several seconds to read out loud on the stream."
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/obs") as observer:
        await wait_until(lambda: rd.daemon.obs.state()["clients"] == 2, "page + observer connected")
        long_id = await post_message(http, rd.url, "a", long_text)
        short_id = await post_message(http, rd.url, "b", "short one")
        await page.wait_events("sub-show", [long_id])
        # let the audio clock run a little into the long one, then skip it
        start = next(e["start"] for e in await page.events("play") if e["id"] == long_id)
        await page.wait("(t) => window.ishow.state().time > t", start + 0.3)
        async with http.post(f"{rd.url}/api/control", json={"action": "skip"}) as r:
            assert (await r.json())["skipped"] == long_id
        sent = await observe(observer, 2)
    await page.wait_events("ended", [short_id], timeout_s=30)
    log = await page.log()
    no_errors(log)
    (skip,) = [e for e in log if e["event"] == "skip"]
    assert skip["id"] == long_id and skip["was"] == "playing"
    assert 0.3 <= skip["played_s"] < skip["duration"]
    assert [e["id"] for e in log if e["event"] == "ended"] == [short_id]  # the skipped one never "ended"
    # its subtitle went at once (not after the linger); the short one's came after
    events = [(e["event"], e.get("id")) for e in log]
    assert events.index(("skip", long_id)) + 1 == events.index(("sub-fade", long_id))
    assert events.index(("sub-fade", long_id)) < events.index(("sub-show", short_id))
    await page.wait_events("sub-hide", [long_id], timeout_s=10)
    # only the short one was reported played
    await wait_until(lambda: short_id in rd.daemon.obs.played_ids(), "played report")
    assert long_id not in rd.daemon.obs.played_ids()
    # the graph rendered part of the long one and all of the short one
    _, e_long = pcm_energy(sent[long_id][1])
    _, e_short = pcm_energy(sent[short_id][1])
    m = await meter(page)
    assert e_short < m["sumsq"] < e_short + e_long * 0.9
    assert page.errors == []


# ---------------------------------------------------------------------------------------- page against the hub alone


def sine(uid: str, seconds: float, freq: float) -> Audio:
    t = np.arange(int(seconds * RATE), dtype=np.float32) / RATE
    samples = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return Audio(
        utterance=Utterance(id=uid, text=f"tone {uid}", voice="v", user="test", kind=EventKind.DANMAKU), samples=samples
    )


@asynccontextmanager
async def serve_hub(hub: ObsHub) -> AsyncIterator[str]:
    app = web.Application()
    hub.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    await hub.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await hub.close()
        await runner.cleanup()


async def test_skip_of_a_waiting_utterance_closes_the_gap_and_ids_never_replay(browser: Any) -> None:
    hub = ObsHub()
    async with serve_hub(hub) as base:
        page = await open_obs(browser, base)
        a, b, c = sine("A", 1.5, 220), sine("B", 1.0, 330), sine("C", 0.5, 440)
        for audio in (a, b, c):
            await hub.play(audio)
        await hub.skip("B")  # B waits behind A: it is dropped and C moves up to where B would have started
        await page.wait_events("ended", ["A", "C"])
        log = await page.log()
        no_errors(log)
        plays = {e["id"]: e for e in log if e["event"] == "play"}
        (skip,) = [e for e in log if e["event"] == "skip"]
        assert skip == {**skip, "id": "B", "was": "scheduled", "played_s": 0}
        (moved,) = [e for e in log if e["event"] == "reschedule"]
        assert moved["id"] == "C"
        assert moved["frame"] == plays["A"]["frame"] + plays["A"]["frames"]
        assert [e["id"] for e in log if e["event"] == "ended"] == ["A", "C"]
        assert "B" not in [e["id"] for e in log if e["event"] == "sub-show"]
        m = await meter(page)
        expected = sum(pcm_energy(x.pcm16())[1] for x in (a, c))
        assert m["sumsq"] == pytest.approx(expected, rel=1e-6)  # B never sounded, A and C did not overlap
        await wait_until(lambda: hub.played_ids() == ["A", "C"], "played reports")

        # an id the page already has is never played again; a skip that arrives first drops the utterance
        await hub.play(a)
        await hub.skip("D")
        await hub.play(sine("D", 0.5, 550))
        await hub.play(sine("E", 0.2, 660))
        await page.wait_events("ended", ["E"])
        log = await page.log()
        assert [e["id"] for e in log if e["event"] == "duplicate"] == ["A"]
        assert [e["id"] for e in log if e["event"] == "dropped"] == ["D"]
        assert [e["id"] for e in log if e["event"] == "play"] == ["A", "B", "C", "E"]
        assert page.errors == []


# ---------------------------------------------------------------------------------------- reconnect, 3 clients


async def test_reconnect_after_daemon_restart_plays_only_new_ids(browser: Any, start_daemon: Any) -> None:
    port = free_port()
    first = await start_daemon(config(port=port))
    page = await open_obs(browser, first.url)
    async with aiohttp.ClientSession() as http:
        before = [await post_message(http, first.url, "a", "before the restart")]
        await page.wait_events("ended", before)
        first.stop.set()
        await asyncio.wait_for(first.task, 30)
        await page.wait("() => window.ishowLog.some((e) => e.event === 'close')")
        second = await start_daemon(config(port=port))
        assert second.url == first.url
        await page.wait("() => window.ishowLog.filter((e) => e.event === 'hello').length === 2", timeout_s=30)
        after = [
            await post_message(http, second.url, "b", "after the restart"),
            await post_message(http, second.url, "c", "and one more"),
        ]
        await page.wait_events("ended", after)
    log = await page.log()
    no_errors(log)
    assert [e["id"] for e in log if e["event"] == "play"] == before + after
    assert [e["id"] for e in log if e["event"] == "ended"] == before + after
    await wait_until(lambda: set(after) <= set(second.daemon.obs.played_ids()), "played reports to the new daemon")
    assert page.errors == []


async def test_three_clients_one_stalled_is_dropped_and_the_pages_get_everything(
    browser: Any, start_daemon: Any
) -> None:
    rd = await start_daemon(config(send_timeout_s=1.0))
    pages = [await open_obs(browser, rd.url, "linger=0&meter=1") for _ in range(2)]
    stalled = await stalled_ws_client(rd.daemon.port)
    try:
        await wait_until(lambda: rd.daemon.obs.state()["clients"] == 3, "3 clients")
        text = "Thanks for the raid everyone, welcome to the stream, grab a snack and enjoy the show tonight!"
        ids: list[str] = []
        with capture_logs() as logs:
            async with aiohttp.ClientSession() as http:
                for i in range(60):  # ~5 s of audio each; a few hundred KiB fill the stalled socket
                    ids.append(await post_message(http, rd.url, f"viewer{i}", f"{text} {i}"))
                    if rd.daemon.obs.state()["dropped_clients"]:
                        break
                    await asyncio.sleep(0.2)
            await wait_until(lambda: rd.daemon.obs.state()["dropped_clients"] == 1, "the stalled client dropped")
            for page in pages:
                await page.wait_events("recv", ids, timeout_s=60)
        drops = [e for e in logs if e["event"] == "obs client dropped"]
        assert len(drops) == 1 and drops[0]["reason"] in ("send timed out", "queue full")
        assert rd.daemon.obs.state()["clients"] == 2
        await wait_closed(stalled)
    finally:
        stalled.close()
    logs0, logs1 = [await p.log() for p in pages]
    plays0 = [(e["id"], e["samples"], e["fnv"]) for e in logs0 if e["event"] == "play"]
    plays1 = [(e["id"], e["samples"], e["fnv"]) for e in logs1 if e["event"] == "play"]
    assert [p[0] for p in plays0] == ids and plays0 == plays1
    for log in (logs0, logs1):
        no_errors(log)
    # the daemon was never held up: everything was spoken and nothing waits
    snap = rd.daemon.controls.snapshot()
    assert snap["items"] == []
    for page in pages:
        assert page.errors == []


# ---------------------------------------------------------------------------------------- streamed utterances


async def test_a_streamed_utterance_starts_before_its_rest_arrives_and_plays_every_sample(browser: Any) -> None:
    hub = ObsHub()
    async with serve_hub(hub) as base:
        page = await open_obs(browser, base)
        whole = sine("L", 3.0, 300)
        cut = int(1.2 * RATE)
        first = dataclasses.replace(whole, samples=whole.samples[:cut], part=0, final=False)
        rest = dataclasses.replace(whole, samples=whole.samples[cut:], part=1, final=True)
        await hub.play(first)
        # the page schedules the first part before the rest even exists on the server
        await page.wait("() => window.ishowLog.some((e) => e.event === 'stream' && e.id === 'L')")
        assert not [e for e in await page.log() if e["event"] in ("play", "ended")]
        await hub.play(rest)
        await hub.play(sine("N", 0.5, 500))
        await page.wait_events("ended", ["L", "N"])
        log = await page.log()
        no_errors(log)
        plays = {e["id"]: e for e in log if e["event"] == "play"}
        assert plays["L"]["stream"] is True and plays["L"]["samples"] == len(whole.samples)
        assert plays["L"]["fnv"] == fnv1a32(whole.pcm16())  # every byte, in order
        assert plays["N"]["frame"] == plays["L"]["frame"] + plays["L"]["frames"]  # N follows L without a gap
        m = await meter(page)
        expected = sum(pcm_energy(x.pcm16())[1] for x in (whole, sine("N", 0.5, 500)))
        assert m["sumsq"] == pytest.approx(expected, rel=1e-6)  # each sample sounded once, no overlap
        await wait_until(lambda: hub.played_ids() == ["L", "N"], "played reports")

        # skipped mid-stream: the hub ends it, the page stops it at once and never reports it played
        await hub.play(dataclasses.replace(sine("S", 5.0, 250), part=0, final=False))
        await page.wait("() => window.ishowLog.some((e) => e.event === 'stream' && e.id === 'S')")
        await hub.skip("S")
        await hub.play(sine("T", 0.3, 600))
        await page.wait_events("ended", ["T"])
        log = await page.log()
        (skip,) = [e for e in log if e["event"] == "skip"]
        assert skip["id"] == "S"
        assert "S" not in [e["id"] for e in log if e["event"] == "ended"]
        assert page.errors == []
