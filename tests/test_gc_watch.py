"""Long garbage-collector pauses are reported (log line + ``ishow_gc_pauses``), short ones are not."""

from __future__ import annotations

import gc
from typing import Any

import aiohttp

from ishow.gc_watch import GcPause, GcWatch, freeze_heap, thaw_heap
from tests.conftest import espeak_config


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_only_collections_over_the_threshold_are_reported() -> None:
    clock, seen = _Clock(), list[GcPause]()
    watch = GcWatch(seen.append, threshold_s=0.05, clock=clock)
    watch("start", {"generation": 0})
    clock.t += 0.01
    watch("stop", {"generation": 0, "collected": 3})
    watch("start", {"generation": 2})
    clock.t += 1.25
    watch("stop", {"generation": 2, "collected": 40})
    watch("stop", {"generation": 1, "collected": 0})  # no start seen (installed mid-collection): ignored
    assert seen == [GcPause(generation=2, seconds=1.25, collected=40)] and watch.pauses == 1


def test_a_failing_report_never_reaches_the_collector() -> None:
    def boom(pause: GcPause) -> None:
        raise RuntimeError("sink down")

    watch = GcWatch(boom, threshold_s=0.0).install()
    try:
        gc.collect()  # would raise here if the callback leaked the error
    finally:
        watch.uninstall()
    assert watch.pauses >= 1 and watch not in gc.callbacks


def test_a_real_full_collection_is_timed() -> None:
    seen: list[GcPause] = []
    watch = GcWatch(seen.append, threshold_s=0.0).install()
    watch.install()  # twice: still one entry
    assert gc.callbacks.count(watch) == 1
    try:
        garbage: list[Any] = []
        garbage.append(garbage)  # a cycle only the collector frees
        del garbage
        gc.collect()
    finally:
        watch.uninstall()
    full = [p for p in seen if p.generation == 2]
    assert full and full[-1].collected >= 1 and full[-1].seconds >= 0.0


async def test_the_daemon_reports_long_pauses_in_its_metrics(start_daemon: Any) -> None:
    rd = await start_daemon(espeak_config())
    watches = [cb for cb in gc.callbacks if isinstance(cb, GcWatch)]
    assert len(watches) == 1  # installed for the daemon's lifetime
    watches[0].threshold_s = 0.0  # every collection counts as long now
    gc.collect()
    async with aiohttp.ClientSession() as http, http.get(f"{rd.url}/metrics") as r:
        text = await r.text()
    assert any(line.startswith('ishow_gc_pauses_total{generation="2"}') for line in text.splitlines()), text[:500]
    rd.stop.set()
    await rd.task
    assert not [cb for cb in gc.callbacks if isinstance(cb, GcWatch)]  # uninstalled on the way out


def test_freeze_heap_moves_what_is_alive_out_of_every_collection_until_thawed() -> None:
    thaw_heap()
    try:
        assert gc.get_freeze_count() == 0
        freeze_heap()
        assert gc.get_freeze_count() > 1000  # the interpreter's and the test run's own objects
        garbage: list[Any] = []
        garbage.append(garbage)  # made after the freeze: still collected
        del garbage
        assert gc.collect() >= 1
    finally:
        thaw_heap()
    assert gc.get_freeze_count() == 0


async def test_the_daemon_freezes_its_heap_while_it_runs_and_thaws_it_when_it_stops(start_daemon: Any) -> None:
    thaw_heap()
    rd = await start_daemon(espeak_config())
    assert gc.get_freeze_count() > 1000  # after the engine loaded (espeak warms up synchronously: done too)
    rd.stop.set()
    await rd.task
    assert gc.get_freeze_count() == 0
