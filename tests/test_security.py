"""The hostile browser against the real daemon: foreign Host / Origin / Content-Type on every route and websocket,
and the legitimate callers (no Origin; same-origin panel; the OBS page in headless Chromium) still working.

Every request here is a real HTTP request to the daemon on a loopback port; side effects are checked against the
daemon itself (queue, paused state, mutes, metrics), not only against status codes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from ishow.config.schema import Config, SourceConfig
from tests.browser import browser_fixture, new_page  # noqa: F401 - the `browser` fixture
from tests.conftest import espeak_config
from tests.test_daemon_e2e import read_utterance

EVIL = "https://evil.example"
T = 30.0


def config(**server: Any) -> Config:
    cfg = espeak_config(sources=(SourceConfig(kind="websocket", name="input"),))
    return dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, **server))


def post_routes() -> dict[str, dict[str, Any]]:
    """Every JSON endpoint with a body that would change something if it were accepted."""
    return {
        "/api/messages": {"user": "attacker", "text": "say something bad on stream"},
        "/api/control": {"action": "pause"},
        "/api/mute": {"user": "victim", "minutes": 30},
        "/api/tts": {"text": "keep the engine busy"},
    }


GET_ROUTES = ["/", "/static/panel.js", "/obs", "/healthz", "/metrics", "/api/voices", "/api/status", "/api/queue"]


def untouched(rd: Any) -> None:
    """Nothing a refused request asked for happened."""
    d = rd.daemon
    assert not d.player.paused
    assert d.intake.muted() == {}
    assert len(d.queue) == 0 and d.player.current is None and len(d.audio) == 0
    assert not list(d.metrics.messages.collect()[0].samples), "a message was accepted"


def no_cors(r: aiohttp.ClientResponse) -> None:
    leaked = [h for h in r.headers if h.lower().startswith("access-control-")]
    assert leaked == [], leaked


async def one_line_error(r: aiohttp.ClientResponse, status: int, expected: str) -> None:
    assert r.status == status, (r.url, r.status, await r.text())
    assert r.content_type == "application/json"
    text = await r.text()
    assert "\n" not in text.strip() and expected in json.loads(text)["error"], text


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "evil.example", "127.0.0.1.nip.io:{port}", "localhost:1", "attacker.localhost:{port}"],
)
async def test_foreign_host_is_421_on_every_route(start_daemon: Any, host: str) -> None:
    rd = await start_daemon(config())
    header = {"Host": host.format(port=rd.daemon.port)}
    with capture_logs() as logs:
        await refuse_everything(rd, header)
    # ~20 refusals, one warning line (at most one a minute)
    assert [e["status"] for e in logs if e["event"] == "request refused"] == [421]
    untouched(rd)


async def refuse_everything(rd: Any, header: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as http:
        for path in [*GET_ROUTES, "/no-such-page", "/ws/obs", "/ws/input"]:
            async with http.get(f"{rd.url}{path}", headers=header) as r:
                await one_line_error(r, 421, "is not this server")
                no_cors(r)
        for path, body in post_routes().items():
            async with http.post(f"{rd.url}{path}", json=body, headers=header) as r:
                await one_line_error(r, 421, "is not this server")
        async with http.delete(f"{rd.url}/api/queue/u1", headers=header) as r:
            await one_line_error(r, 421, "is not this server")
        for path in ("/ws/obs", "/ws/input"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await http.ws_connect(f"{rd.url}{path}", headers=header)
            assert e.value.status == 421


ORIGINS = [
    (None, True),
    ("same", True),
    (EVIL, False),
    ("null", False),
    ("http://127.0.0.1:1", False),  # another local port: another origin
    ("https://127.0.0.1:{port}", False),  # another scheme
    ("http://localhost:{port}", False),  # another host name than the one the request was sent to
]
CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]


async def test_origin_content_type_route_matrix(start_daemon: Any) -> None:
    rd = await start_daemon(config())
    port = rd.daemon.port
    rd.daemon.player.pause()  # keep what is accepted in the queue, where it can be counted
    accepted = sent = 0
    async with aiohttp.ClientSession() as http:
        for origin, origin_ok in ORIGINS:
            for ctype in CONTENT_TYPES:
                for path, body in post_routes().items():
                    if path == "/api/tts" and origin_ok and ctype == "application/json":
                        continue  # synthesizes: covered once below
                    headers = {}
                    if origin is not None:
                        headers["Origin"] = rd.url if origin == "same" else origin.format(port=port)
                    if ctype is not None:
                        headers["Content-Type"] = ctype
                    sent += 1
                    data = json.dumps({**body, "text": f"{body['text']} {sent}"} if "text" in body else body).encode()
                    skip = ("Content-Type",) if ctype is None else ()  # no Content-Type header at all
                    async with http.post(f"{rd.url}{path}", data=data, headers=headers, skip_auto_headers=skip) as r:
                        no_cors(r)
                        what = (origin, ctype, path)
                        if not origin_ok:
                            await one_line_error(r, 403, "cross-origin request refused")
                        elif ctype != "application/json":
                            await one_line_error(r, 415, "Content-Type: application/json")
                        else:
                            assert r.status in (200, 202), (what, await r.text())
                            accepted += path == "/api/messages"
                            if path == "/api/control":
                                rd.daemon.player.pause()  # the allowed pause is a pause; keep it paused
                            if path == "/api/mute":
                                assert rd.daemon.controls.unmute("victim")
        # the one allowed /api/tts (same origin, JSON) synthesizes
        async with http.post(f"{rd.url}/api/tts", json={"text": "ok"}, headers={"Origin": rd.url}) as r:
            assert r.status == 200 and r.content_type == "audio/wav"
        # preflights get no CORS grant either
        async with http.options(
            f"{rd.url}/api/messages",
            headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
        ) as r:
            assert r.status == 403
            no_cors(r)
        # DELETE from a foreign origin is refused before the route runs
        async with http.delete(f"{rd.url}/api/queue/nothing", headers={"Origin": EVIL}) as r:
            await one_line_error(r, 403, "cross-origin")
    assert accepted == 2  # no Origin + JSON, same origin + JSON: the only two that reached the queue
    assert len(rd.daemon.controls.snapshot()["items"]) == 2 and rd.daemon.intake.muted() == {}


async def test_configured_hosts_and_origins_are_allowed(start_daemon: Any) -> None:
    rd = await start_daemon(config(allowed_hosts=("tts.example.com",), allowed_origins=("https://dash.example",)))
    port = rd.daemon.port
    async with aiohttp.ClientSession() as http:
        for host, status in [
            ("tts.example.com", 200),
            (f"tts.example.com:{port}", 200),
            ("tts.example.com:1", 421),
            (f"localhost:{port}", 200),
            (f"[::1]:{port}", 200),
            (f"127.0.0.2:{port}", 200),  # a loopback IP literal cannot be rebound
            (f"10.0.0.5:{port}", 421),  # bound to loopback: other addresses are not this server
        ]:
            async with http.get(f"{rd.url}/api/status", headers={"Host": host}) as r:
                assert r.status == status, (host, await r.text())
        body = {"user": "dash", "text": "hello from the dashboard"}
        async with http.post(f"{rd.url}/api/messages", json=body, headers={"Origin": "https://dash.example"}) as r:
            assert r.status == 202
        async with http.post(f"{rd.url}/api/messages", json=body, headers={"Origin": "http://dash.example"}) as r:
            assert r.status == 403  # http is another origin than the https one listed


@pytest.mark.parametrize("path", ["/ws/obs", "/ws/input"])
async def test_websocket_upgrades_need_a_same_or_allowed_origin(start_daemon: Any, path: str) -> None:
    rd = await start_daemon(config())
    async with aiohttp.ClientSession() as http:
        for origin in (EVIL, "null", "http://127.0.0.1:1", "file://"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await http.ws_connect(f"{rd.url}{path}", origin=origin)
            assert e.value.status == 403, origin
        for allowed in (None, rd.url):
            async with http.ws_connect(f"{rd.url}{path}", origin=allowed) as ws:
                assert not ws.closed
    if rd.daemon.obs is not None:
        assert rd.daemon.obs.state()["refused_clients"] == 0  # refused origins never reached the hub
    untouched(rd)


async def test_legitimate_callers_keep_working(start_daemon: Any) -> None:
    """No Origin (curl, bots, tools) and same origin (the panel) reach everything; /ws/input from a tool speaks."""
    rd = await start_daemon(config())
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{rd.url}/ws/obs", origin=rd.url) as obs,
        http.ws_connect(f"{rd.url}/ws/input") as tool,
    ):
        for path in GET_ROUTES:
            for headers in ({}, {"Origin": rd.url}):
                async with http.get(f"{rd.url}{path}", headers=headers) as r:
                    assert r.status == 200, (path, headers)
        await tool.send_str(json.dumps({"user": "tool", "text": "hello from a local tool"}))
        header, _ = await read_utterance(obs)
        assert header["raw"] == "hello from a local tool"
        r = await http.post(
            f"{rd.url}/api/messages", json={"user": "p", "text": "from the panel"}, headers={"Origin": rd.url}
        )
        assert r.status == 202
        header, _ = await read_utterance(obs)
        assert header["raw"] == "from the panel"


EVIL_PAGE = """<!doctype html><meta charset="utf-8"><title>cute cats</title><script>
window.results = {};
const target = "TARGET";
async function attack() {
  const tries = {
    text_plain: () => fetch(target + "/api/messages", {method: "POST", mode: "no-cors",
        headers: {"Content-Type": "text/plain"}, body: JSON.stringify({user: "evil", text: "banned words here"})}),
    form: () => fetch(target + "/api/control", {method: "POST", mode: "no-cors",
        headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: '{"action":"pause"}'}),
    json_cors: () => fetch(target + "/api/mute", {method: "POST",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify({user: "streamer", minutes: 60})}),
    read_queue: () => fetch(target + "/api/queue").then((r) => r.text()),
  };
  for (const [name, run] of Object.entries(tries)) {
    try { const r = await run(); window.results[name] = typeof r === "string" ? "read:" + r : "sent:" + r.type; }
    catch (e) { window.results[name] = "error:" + e.name; }
  }
  for (const path of ["/ws/obs", "/ws/input"]) {
    window.results[path] = await new Promise((resolve) => {
      const ws = new WebSocket(target.replace("http", "ws") + path);
      ws.onopen = () => { ws.send('{"user":"evil","text":"injected","kind":"super_chat","amount":999}');
                          resolve("open"); };
      ws.onerror = () => resolve("refused");
    });
  }
  window.done = true;
}
attack();
</script>"""


async def test_hostile_page_in_chromium_cannot_drive_the_daemon(browser: Any, start_daemon: Any) -> None:
    """A real page on another origin (another loopback port) tries simple POSTs, a CORS POST, a read and both
    websockets; then the real OBS page and panel, same-origin, keep working in the same browser."""
    rd = await start_daemon(config())
    evil = web.Application()

    async def evil_page(_: web.Request) -> web.Response:
        return web.Response(text=EVIL_PAGE.replace("TARGET", rd.url), content_type="text/html")

    evil.router.add_get("/", evil_page)
    runner = web.AppRunner(evil)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    evil_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"  # type: ignore[union-attr]
    try:
        page = await new_page(browser)
        await page.goto(evil_url)
        await page.wait("() => window.done === true")
        results = await page.eval("() => window.results")
    finally:
        await runner.cleanup()
    assert results["/ws/obs"] == "refused" and results["/ws/input"] == "refused", results
    assert not results["read_queue"].startswith("read:"), results  # no CORS grant: the answer is unreadable
    assert results["json_cors"].startswith("error:"), results
    await asyncio.sleep(0)
    untouched(rd)

    # the same browser, the real pages (same origin): the OBS page plays, the panel pauses
    obs = await new_page(browser)
    await obs.goto(f"{rd.url}/obs?linger=0.3&debug=1")
    await obs.wait("() => window.ishowLog.some((e) => e.event === 'hello')")
    async with aiohttp.ClientSession() as http:
        r = await http.post(f"{rd.url}/api/messages", json={"user": "fan", "text": "hello OBS"})
        uid = (await r.json())["id"]
    await obs.wait_events("ended", [uid], timeout_s=60)
    panel = await new_page(browser, width=1280, height=860)
    await panel.goto(rd.url)
    await panel.page.click("#btn-pause")
    await panel.wait("() => document.getElementById('play-state').textContent === 'paused'")
    assert rd.daemon.player.paused
    assert obs.errors == [] and panel.errors == []


async def test_panel_lists_messages_dropped_after_queueing(browser: Any, start_daemon: Any) -> None:
    """An answer of "queued": true that is later evicted shows up in the panel with its reason and count."""
    rd = await start_daemon(config())
    gate = threading.Event()
    blocker = rd.daemon.worker._pool.submit(gate.wait, 60)  # engine busy: the queue fills and sheds its oldest
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(50):
                async with http.post(f"{rd.url}/api/messages", json={"user": f"v{i}", "text": f"note {i}"}) as r:
                    assert (await r.json())["queued"] is True
        evicted = rd.daemon.pipeline.eviction_counts["queue_full"]
        assert evicted > 0
        panel = await new_page(browser, width=1280, height=860)
        await panel.goto(rd.url)
        await panel.wait("(n) => document.getElementById('dropped-count').textContent === String(n)", evicted)
        await panel.page.click("#dropped-box summary")
        reasons = await panel.eval(
            "() => Array.from(document.querySelectorAll('#dropped .why')).map((e) => e.textContent)"
        )
        assert reasons and set(reasons) == {"queue_full"}
        assert "queue_full " + str(evicted) in await panel.eval(
            "() => document.getElementById('dropped-reasons').textContent"
        )
        assert panel.errors == []
    finally:
        gate.set()
        await asyncio.wait_for(asyncio.wrap_future(blocker), T)
