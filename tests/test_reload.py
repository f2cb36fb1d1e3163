"""Hot reload against real files: a valid edit applies live, a bad edit is rejected and the old config kept."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import aiohttp

from ishow.config.load import load_config
from tests.conftest import REPO

BASE = """
root = "{root}"
[server]
port = 0
[engine]
kind = "espeak"
fallback = "none"
[outputs]
realtime = false
[outputs.local]
enabled = false
[filter]
duplicate_window_s = 0.0
banned_words = {banned}
[[voices]]
id = "default_zh"
ref_audio = "voices/default_zh.wav"
ref_text = "大家好"
[[voices]]
id = "default_en"
ref_audio = "voices/default_en.wav"
ref_text = "Hello everyone"
{extra}
"""


def write(path: Path, root: Path, banned: str = "[]", extra: str = "") -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(BASE.format(root=root, banned=banned, extra=extra), encoding="utf-8")
    tmp.replace(path)  # editors save atomically like this


async def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_reload_applies_good_edits_and_rejects_bad_ones(start_daemon: Any, tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    shutil.copytree(REPO / "voices", tmp_path / "voices")
    path = tmp_path / "config" / "ishowtts.toml"
    write(path, tmp_path)
    rd = await start_daemon(load_config(path), config_path=path)
    daemon = rd.daemon
    await wait_for(lambda: daemon.watcher is not None)
    await asyncio.sleep(0.5)  # let the watcher settle before the first edit

    async def say(http: aiohttp.ClientSession, text: str) -> dict[str, Any]:
        async with http.post(f"{rd.url}/api/messages", json={"user": "v", "text": text}) as r:
            return dict(await r.json())

    async with aiohttp.ClientSession() as http:
        assert (await say(http, "no spoilers here"))["queued"] is True
        write(path, tmp_path, banned='["spoiler"]')
        await wait_for(lambda: daemon.cfg.filter.banned_words == ("spoiler",))
        assert (await say(http, "big S P O I L E R ahead")) == {"queued": False, "dropped": "banned_word"}

        # a bad edit: every problem is reported, the running config stays
        path.write_text('[server]\nport = "many"\n[filter]\nmax_chars = -3\n', encoding="utf-8")
        assert daemon.watcher is not None
        await wait_for(lambda: daemon.watcher is not None and daemon.watcher.rejected >= 1)
        assert daemon.cfg.filter.banned_words == ("spoiler",)
        assert (await say(http, "spoiler again")) == {"queued": False, "dropped": "banned_word"}
        assert (await say(http, "still serving")).get("queued") is True

        # garbage bytes: rejected too
        path.write_bytes(b"\x00\xff not toml at all [[[")
        await wait_for(lambda: daemon.watcher is not None and daemon.watcher.rejected >= 2)

        # a good edit adding a voice: available at once; the server port change waits for a restart
        extra = '[[voices]]\nid = "guest"\nref_audio = "voices/default_en.wav"\nref_text = "Hello everyone"\n'
        write(path, tmp_path, extra=extra)
        await wait_for(lambda: any(v.id == "guest" for v in daemon.cfg.voices))
        voices = await (await http.get(f"{rd.url}/api/voices")).json()
        assert "guest" in [v["id"] for v in voices["voices"]]
        async with http.post(f"{rd.url}/api/tts", json={"text": "hi", "voice": "guest"}) as r:
            assert r.status == 200
        assert daemon.cfg.filter.banned_words == ()
        assert (await (await http.get(f"{rd.url}/healthz")).json())["status"] == "ok"
