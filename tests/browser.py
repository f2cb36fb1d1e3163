"""Headless Debian Chromium driven by Python Playwright, for the /obs page and control panel tests.

Playwright's own browser download cannot work here, so it drives the system Chromium (``/usr/bin/chromium``, or
``$ISHOW_CHROMIUM``). Tests using the ``browser`` fixture skip, with the reason, when either is missing.
Import the fixture into a test module with ``from tests.browser import browser_fixture  # noqa: F401``; tests
then take a ``browser`` argument.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    # a hidden/occluded headless tab must keep its timers and audio clock running
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
SCREENSHOTS = REPO / "out" / "screenshots"
WAIT_MS = 30_000


def chromium_path() -> str | None:
    for candidate in (os.environ.get("ISHOW_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


@pytest.fixture(name="browser")
async def browser_fixture() -> AsyncIterator[Any]:
    """A headless Chromium (playwright ``Browser``), closed after the test."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright)")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install -y chromium) or $ISHOW_CHROMIUM")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield b
        finally:
            await b.close()


class Page:
    """A playwright page plus the JavaScript errors it raised (tests assert there are none)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.console: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.set_default_timeout(WAIT_MS)

    async def goto(self, url: str) -> None:
        await self.page.goto(url, wait_until="load", timeout=WAIT_MS)

    async def wait(self, expression: str, arg: Any = None, *, timeout_s: float = 30) -> Any:
        """Wait until the JS ``expression`` (a function body taking ``arg``, or an expression) is truthy."""
        handle = await self.page.wait_for_function(expression, arg=arg, timeout=timeout_s * 1000, polling=50)
        return await handle.json_value()

    async def eval(self, expression: str, arg: Any = None) -> Any:
        return await self.page.evaluate(expression, arg)

    async def log(self) -> list[dict[str, Any]]:
        """The OBS page's ``window.ishowLog``."""
        result: list[dict[str, Any]] = await self.page.evaluate("() => window.ishowLog.slice()")
        return result

    async def events(self, event: str) -> list[dict[str, Any]]:
        return [e for e in await self.log() if e["event"] == event]

    async def wait_events(self, event: str, ids: list[str], *, timeout_s: float = 30) -> None:
        """Wait until the OBS log has ``event`` for every id in ``ids``."""
        await self.wait(
            "([ev, ids]) => ids.every((id) => window.ishowLog.some((e) => e.event === ev && e.id === id))",
            [event, ids],
            timeout_s=timeout_s,
        )

    async def screenshot(self, name: str, tmp_path: Path) -> Path:
        """Save a PNG under the test's tmp dir and copy it to out/screenshots/ (git-ignored)."""
        path = tmp_path / name
        await self.page.screenshot(path=str(path), timeout=WAIT_MS)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / name)
        return path


async def new_page(browser: Any, *, width: int = 1280, height: int = 720) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": height})
    return Page(await context.new_page())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fnv1a32(data: bytes) -> int:
    """FNV-1a 32-bit, the same checksum the OBS page computes over each utterance's PCM bytes."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def pcm_energy(pcm: bytes) -> tuple[int, float]:
    """(non-zero samples, Σ x²) of PCM16 as WebAudio renders it (x = int16 / 32768); the page's meter counts the
    former as its "audible" samples (|x| ≥ 2^-16)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    return int(np.count_nonzero(x)), float(np.sum(x * x))


async def stalled_ws_client(port: int, path: str = "/ws/obs") -> socket.socket:
    """A websocket client that completes the handshake, then never reads (4 KiB receive buffer)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 10)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    for _ in range(1000):
        head += await asyncio.wait_for(loop.sock_recv(sock, 1), 10)
        if head.endswith(b"\r\n\r\n"):
            break
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def wait_closed(sock: socket.socket, timeout_s: float = 30) -> None:
    """Drain what the kernel buffered for ``sock`` until EOF or reset; fail if it stays open."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                data = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                return
            if not data:
                return
