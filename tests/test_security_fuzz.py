"""Arbitrary JSON at every route of the real daemon (hypothesis): never a 5xx, and the daemon still speaks after.

The daemon runs in its own thread and event loop for the whole module, so hypothesis drives plain synchronous
HTTP requests (``http.client``) at it, as any local tool would.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ishow.app import Daemon
from ishow.config import SourceConfig
from tests.conftest import espeak_config

POST_ROUTES = ["/api/messages", "/api/tts", "/api/control", "/api/mute"]
KEYS = ["user", "text", "action", "minutes", "voice", "nfe_step", "platform", "kind", "amount", "id"]


class ThreadDaemon:
    def __init__(self) -> None:
        self.port = 0
        self.daemon: Daemon | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        cfg = espeak_config(sources=(SourceConfig(kind="websocket", name="input"),))
        self.daemon = Daemon(cfg)
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        task = asyncio.create_task(self.daemon.run(self._stop))
        started = asyncio.create_task(self.daemon.started.wait())
        await asyncio.wait({task, started}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        self.port = self.daemon.port or 0
        self._ready.set()
        await task

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(90) and self.port, "daemon did not start"

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "daemon did not stop"

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def daemon() -> Iterator[ThreadDaemon]:
    td = ThreadDaemon()
    td.start()
    try:
        yield td
    finally:
        td.stop()


leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**18, max_value=10**60)
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["pause", "resume", "skip", "clear", "default_en", "super_chat", "", "\ud800", "a\x00b"])
)
json_values = st.recursive(
    leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12
)
objects = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(POST_ROUTES), value=objects | json_values)
def test_arbitrary_json_never_gets_a_5xx(daemon: ThreadDaemon, route: str, value: Any) -> None:
    status, body = daemon.request("POST", route, json.dumps(value).encode())
    assert status < 500, (route, value, body[:200])
    if status >= 400:
        assert "error" in json.loads(body), body[:200]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(item_id=st.text(max_size=30))
def test_arbitrary_queue_ids_never_get_a_5xx(daemon: ThreadDaemon, item_id: str) -> None:
    path = "/api/queue/" + urllib.parse.quote(item_id.encode("utf-8", "surrogatepass"), safe="")
    status, _ = daemon.request("DELETE", path)
    assert status < 500 or status == 404, (item_id, status)


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[" * 30_000 + b"]" * 30_000, "nested deeper than 32 levels"),
        (b'{"text": ' + b"9" * 5000 + b"}", "an integer with 5000 digits"),
        (b'{"text": NaN}', "NaN is not a JSON number"),
        (b'{"text": "\\ud800", "user": "\\udfff"}', ""),  # valid JSON: answered, never a 5xx
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_parser_limits_are_4xx(daemon: ThreadDaemon, route: str, body: bytes, expected: str) -> None:
    status, answer = daemon.request("POST", route, body)
    assert status < 500, (route, status, answer[:200])
    if expected:
        assert status == 400 and expected in json.loads(answer)["error"], answer[:200]


def test_daemon_alive_and_speaking_after_the_fuzz(daemon: ThreadDaemon) -> None:
    """Runs last in this module (pytest keeps file order): health is fine and a new message is spoken."""
    assert daemon.request("GET", "/healthz")[0] == 200
    assert daemon.request("POST", "/api/control", json.dumps({"action": "resume"}).encode())[0] == 200
    for user in list(json.loads(daemon.request("GET", "/api/queue")[1])["muted"]):
        daemon.request("POST", "/api/mute", json.dumps({"user": user, "minutes": 0}).encode())
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{daemon.port}/ws/obs", open_timeout=30) as obs:
        status, body = daemon.request(
            "POST", "/api/messages", json.dumps({"user": "after", "text": "still speaking after the fuzz"}).encode()
        )
        assert status == 202 and json.loads(body)["queued"] is True, body
        uid = json.loads(body)["id"]
        for _ in range(10_000):  # bounded by count and by the 60 s receive timeout
            frame = obs.recv(timeout=60)
            if isinstance(frame, str) and json.loads(frame).get("type") == "end" and json.loads(frame)["id"] == uid:
                break
        else:
            raise AssertionError("the message after the fuzz was not spoken")
