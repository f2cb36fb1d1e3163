"""Event-loop stalls are measured (``ishow_loop_lag_seconds``) and the long ones logged, whatever caused them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from ishow.loop_watch import LoopWatch
from tests.conftest import espeak_config


async def test_each_wake_up_reports_how_late_it_was() -> None:
    now = [10.0]
    late = [0.0, 0.003, 0.2, -0.001]  # a clock that reads a hair early is not a negative lag
    seen: list[float] = []

    async def sleep(s: float) -> None:
        if not late:
            raise asyncio.CancelledError
        now[0] += s + late.pop(0)

    with pytest.raises(asyncio.CancelledError):
        await LoopWatch(seen.append, interval_s=0.02, clock=lambda: now[0], sleep=sleep).run()
    assert seen == pytest.approx([0.0, 0.003, 0.2, 0.0])


async def test_the_daemon_counts_a_stalled_loop_and_logs_it(start_daemon: Any) -> None:
    rd = await start_daemon(espeak_config())
    await asyncio.sleep(0.05)  # the watch is running (asleep in its timer)
    with capture_logs() as logs:
        time.sleep(0.15)  # noqa: ASYNC251 - the stall under test: a callback that blocks the loop
        await asyncio.sleep(0.1)  # the watch wakes (late) and reports
    async with aiohttp.ClientSession() as http, http.get(f"{rd.url}/metrics") as r:
        text = await r.text()
    lines = [line.split(" ") for line in text.splitlines() if line.startswith("ishow_loop_lag")]
    values = {name: float(value) for name, value in lines}
    assert values["ishow_loop_lag_seconds_count"] > values['ishow_loop_lag_seconds_bucket{le="0.1"}']  # one > 100 ms
    stalls = [e for e in logs if e["event"] == "event loop stalled"]
    assert stalls and stalls[0]["ms"] >= 100


def test_stalls_are_logged_at_most_once_per_period_with_a_count_of_the_rest() -> None:
    from ishow.loop_watch import StallLog

    log = StallLog(threshold_s=0.05, every_s=10.0)
    assert log.note(0.03, 0.0) is None  # short: not a stall
    assert log.note(0.08, 1.0) == {"ms": 80.0}  # the first stall: logged
    assert log.note(0.3, 2.0) is None and log.note(0.06, 5.0) is None  # within the period: counted
    assert log.note(0.01, 12.0) is None  # short again
    assert log.note(0.07, 12.5) == {"ms": 70.0, "more_since_last_line": 2, "worst_of_those_ms": 300.0}
    assert log.note(0.09, 30.0) == {"ms": 90.0}  # nothing skipped in between
