"""The control panel at "/" in headless Chromium against the real daemon (espeak): buttons change the queue.

Every assertion about the queue is made against ``GET /api/queue`` (what the daemon holds), after the panel's own
table showed the change; every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import aiohttp
import soundfile as sf

from ishow.config.schema import Config
from tests.browser import (
    Page,
    browser_fixture,  # noqa: F401 - the `browser` fixture
    new_page,
)
from tests.conftest import espeak_config

ROWS_JS = """() => Array.from(document.querySelectorAll('#queue-body tr')).map((tr) => ({
  id: tr.dataset.id, user: tr.dataset.user, state: tr.dataset.state,
  cells: Array.from(tr.children).map((td) => td.textContent) }))"""


def config(*, realtime: bool = False, token: str = "") -> Config:
    cfg = espeak_config()
    return dataclasses.replace(
        cfg,
        server=dataclasses.replace(cfg.server, token=token),
        outputs=dataclasses.replace(cfg.outputs, realtime=realtime),
    )


async def queue(http: aiohttp.ClientSession, url: str, token: str = "") -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(f"{url}/api/queue", headers=headers) as r:
        assert r.status == 200
        snap: dict[str, Any] = await r.json()
        return snap


async def post_message(http: aiohttp.ClientSession, url: str, user: str, text: str) -> str:
    async with http.post(f"{url}/api/messages", json={"user": user, "text": text}) as r:
        body = await r.json()
        assert r.status == 202 and body["queued"], body
        return str(body["id"])


async def open_panel(browser: Any, url: str) -> Page:
    page = await new_page(browser, width=1280, height=860)
    await page.goto(url)
    return page


async def wait_rows(page: Page, ids: list[str]) -> list[dict[str, Any]]:
    """Wait until the panel's queue table lists exactly ``ids``, in order."""
    await page.wait(
        "(ids) => { const got = Array.from(document.querySelectorAll('#queue-body tr')).map((tr) => tr.dataset.id);"
        " return got.length === ids.length && got.every((id, i) => id === ids[i]); }",
        ids,
    )
    rows: list[dict[str, Any]] = await page.eval(ROWS_JS)
    return rows


async def text_of(page: Page, selector: str) -> str:
    return str(await page.page.text_content(selector))


async def test_panel_buttons_change_the_queue(browser: Any, start_daemon: Any, tmp_path: Path) -> None:
    rd = await start_daemon(config(realtime=True))
    u = rd.url
    page = await open_panel(browser, f"{u}/")
    await page.wait("() => document.getElementById('st-engine').textContent.startsWith('espeak')")
    assert await text_of(page, "#st-sources") == "none"
    assert await page.eval("() => document.getElementById('error').hidden")
    async with aiohttp.ClientSession() as http:
        # pause: the button flips to Resume and the daemon is paused
        assert await text_of(page, "#btn-pause") == "Pause"
        await page.page.click("#btn-pause")
        await page.wait("() => document.getElementById('btn-pause').getAttribute('aria-pressed') === 'true'")
        assert await text_of(page, "#btn-pause") == "Resume"
        assert await text_of(page, "#play-state") == "paused"
        assert (await queue(http, u))["paused"] is True

        long_text = "This is the first message, and it is long enough to still be playing when we look at it."
        messages = [("ann", long_text), ("bob", "second message"), ("troll", "spam spam"), ("小红", "主播好")]
        ids = [await post_message(http, u, user, text) for user, text in messages]
        rows = await wait_rows(page, ids)
        assert [r["user"] for r in rows] == [m[0] for m in messages]
        assert {r["state"] for r in rows} <= {"ready", "synthesizing", "queued"}
        assert rows[1]["cells"][2] == "second message" and rows[3]["cells"][3] == "default_zh"
        assert await text_of(page, "#q-count") == "4"
        await page.page.wait_for_function("() => document.fonts.ready")
        await page.screenshot("panel.png", tmp_path)

        # remove one (row button)
        await page.page.click(f"#queue-body tr[data-id='{ids[1]}'] button[data-action=remove]")
        await wait_rows(page, [ids[0], ids[2], ids[3]])
        assert [r["id"] for r in (await queue(http, u))["items"]] == [ids[0], ids[2], ids[3]]

        # mute a user from their row, for the minutes in the form: their message goes, they stay muted
        await page.page.fill("#mute-minutes", "5")
        await page.page.click(f"#queue-body tr[data-id='{ids[2]}'] button[data-action=mute]")
        await wait_rows(page, [ids[0], ids[3]])
        await page.wait("() => document.querySelector('#muted li[data-user=\"troll\"]')")
        snap = await queue(http, u)
        assert [r["id"] for r in snap["items"]] == [ids[0], ids[3]]
        assert 240 < snap["muted"]["troll"] <= 300
        async with http.post(f"{u}/api/messages", json={"user": "troll", "text": "again"}) as r:
            assert (await r.json())["dropped"] == "muted"

        # mute with the form, then unmute from the muted list
        await page.page.fill("#mute-user", "小红")
        await page.page.fill("#mute-minutes", "2")
        await page.page.click("#mute-form button[type=submit]")
        await wait_rows(page, [ids[0]])
        snap = await queue(http, u)
        assert 60 < snap["muted"]["小红"] <= 120 and [r["id"] for r in snap["items"]] == [ids[0]]
        await page.page.click("#muted li[data-user='小红'] button[data-action=unmute]")
        await page.wait("() => !document.querySelector('#muted li[data-user=\"小红\"]')")
        assert "小红" not in (await queue(http, u))["muted"]

        # resume: the first message starts playing; skip cuts it
        await page.page.click("#btn-pause")
        await page.wait("() => document.getElementById('btn-pause').getAttribute('aria-pressed') === 'false'")
        assert await text_of(page, "#btn-pause") == "Pause"
        await page.wait(
            f"() => document.querySelector(\"#queue-body tr[data-id='{ids[0]}']\")?.dataset.state === 'playing'"
        )
        assert (await queue(http, u))["paused"] is False
        await page.page.click("#btn-skip")
        await page.wait(f"() => document.getElementById('notice').textContent === 'skipped {ids[0]}'")
        await wait_rows(page, [])
        assert (await queue(http, u))["items"] == []

        # clear drops everything waiting
        await page.page.click("#btn-pause")
        await page.wait("() => document.getElementById('btn-pause').getAttribute('aria-pressed') === 'true'")
        later = [await post_message(http, u, "x", f"later message {i}") for i in range(3)]
        await wait_rows(page, later)
        await page.page.click("#btn-clear")
        await wait_rows(page, [])
        assert await page.eval("() => !document.getElementById('queue-empty').hidden")
        assert await text_of(page, "#notice") == "cleared 3 waiting"
        assert (await queue(http, u))["items"] == []
    assert page.errors == []


async def test_panel_test_voice_plays_and_status(browser: Any, start_daemon: Any) -> None:
    rd = await start_daemon(config())
    page = await open_panel(browser, f"{rd.url}/")
    await page.wait("() => document.querySelectorAll('#tts-voice option').length === 3")
    assert await page.eval("() => Array.from(document.querySelectorAll('#tts-voice option')).map((o) => o.value)") == [
        "",
        "default_zh",
        "default_en",
    ]
    text = "Testing the English voice, one two three."
    await page.page.select_option("#tts-voice", "default_en")
    await page.page.fill("#tts-text", text)
    await page.page.click("#tts-go")
    await page.wait("() => window.panelLog.some((e) => e.event === 'audio' && e.what === 'ended')", timeout_s=60)
    log: list[dict[str, Any]] = await page.eval("() => window.panelLog.slice()")
    (tts,) = [e for e in log if e["event"] == "tts"]
    playing = next(e for e in log if e["event"] == "audio" and e["what"] == "playing")
    assert not [e for e in log if e["event"] == "error" or e.get("what") == "error"], log
    # the page played a WAV like the one the API returns for the same text and voice (espeak varies by a few samples)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{rd.url}/api/tts", json={"text": text, "voice": "default_en"}) as r,
    ):
        wav = await r.read()
    info = sf.info(io.BytesIO(wav))
    assert abs(tts["bytes"] - len(wav)) < 0.01 * len(wav) and tts["voice"] == "default_en"
    assert abs(playing["duration"] - info.frames / info.samplerate) < 0.05 and playing["duration"] > 1
    assert (await text_of(page, "#notice")).startswith("playing test voice default_en · engine espeak")

    # status: engine, RTF of the last batch (after one message went through the batcher), backlog, OBS pages
    async with aiohttp.ClientSession() as http:
        await post_message(http, rd.url, "ann", "hello")
    await page.wait("() => document.getElementById('st-rtf').textContent !== '–'", timeout_s=10)
    assert float(await text_of(page, "#st-rtf")) > 0
    assert await text_of(page, "#st-engine") == "espeak"
    assert await text_of(page, "#st-backlog") == "0"
    assert await text_of(page, "#st-obs") == "0"

    # the daemon goes away: a clear error instead of a stale table
    rd.stop.set()
    await page.wait("() => document.getElementById('error-text').textContent.includes('daemon unreachable')")
    assert await page.eval("() => !document.getElementById('error').hidden")
    assert page.errors == []


async def test_panel_needs_the_token_when_one_is_set(browser: Any, start_daemon: Any, tmp_path: Path) -> None:
    rd = await start_daemon(config(token="s3cret"))
    page = await open_panel(browser, f"{rd.url}/")
    await page.wait("() => !document.getElementById('error').hidden")
    assert (await text_of(page, "#error-text")).startswith("token required: open this panel as /?token=")
    assert "(HTTP 401)" in await text_of(page, "#error-text")
    assert await page.eval("() => !document.getElementById('token-form').hidden")
    assert await page.eval("() => document.querySelectorAll('#queue-body tr').length") == 0
    await page.screenshot("panel-token-required.png", tmp_path)

    wrong = await open_panel(browser, f"{rd.url}/?token=nope")
    await wrong.wait("() => document.getElementById('error-text').textContent.startsWith('wrong token')")

    # typing the token into the form reloads the panel with ?token=; then everything works
    await page.page.fill("#token-input", "s3cret")
    await page.page.click("#token-form button[type=submit]")
    await page.page.wait_for_url("**/?token=s3cret", timeout=30_000)
    await page.wait("() => document.getElementById('st-engine').textContent.startsWith('espeak')")
    await page.wait("() => document.getElementById('error').hidden")
    assert str(await page.eval("() => document.getElementById('obs-link').href")).endswith("/obs?token=s3cret")
    await page.page.click("#btn-pause")
    await page.wait("() => document.getElementById('btn-pause').getAttribute('aria-pressed') === 'true'")
    async with aiohttp.ClientSession() as http:
        assert (await queue(http, rd.url, token="s3cret"))["paused"] is True
        async with http.get(f"{rd.url}/api/queue") as r:
            assert r.status == 401
    assert page.errors == [] and wrong.errors == []
