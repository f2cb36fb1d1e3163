"""``batch.early_start``: the engine works while a batch window is open, and the audio still goes out when the
window closes. The real daemon with espeak; the engine call is wrapped only to observe (and hold) it."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from ishow.app import Daemon
from ishow.config.schema import Config
from ishow.events import Audio, Utterance
from tests.conftest import RunningDaemon, espeak_config
from tests.test_nothing_lost import until


class Observed:
    """Wraps the daemon's engine call and audio hand-off: which task called the engine with which texts, and when
    each message was handed to the player. The engine call waits until ``release`` is set (it is, unless a test
    clears it), and call ``n`` also until ``gates[n]`` is set, if there is one; ``fail`` holds the numbers of the
    calls that raise instead of synthesizing."""

    def __init__(self, daemon: Daemon) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.handed: list[tuple[str, float]] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.gates: dict[int, asyncio.Event] = {}
        self.fail: set[int] = set()
        synthesize, put = daemon.worker.synthesize, daemon.audio.put

        async def observed_synthesize(requests: Any, **kw: Any) -> Any:
            task = asyncio.current_task()
            n = len(self.calls)
            self.calls.append((task.get_name() if task else "", [r.text for r in requests]))
            self.entered.set()
            await self.release.wait()
            if n in self.gates:
                await self.gates[n].wait()
            if n in self.fail:
                raise RuntimeError("the engine failed on this batch")
            return await synthesize(requests, **kw)

        async def observed_put(audio: Audio | None) -> None:
            if audio is not None:
                self.handed.append((audio.utterance.id, time.monotonic()))
            await put(audio)

        daemon.worker.synthesize = observed_synthesize  # type: ignore[method-assign]
        daemon.audio.put = observed_put  # type: ignore[method-assign]


def submit(daemon: Daemon, user: str, text: str) -> Utterance:
    u = daemon.intake.submit_text(user, text)
    assert isinstance(u, Utterance)
    return u


async def held_early_run(start_daemon: Any, cfg: Config, text: str) -> tuple[RunningDaemon, Observed, Utterance]:
    """A daemon whose early batch (the one message ``text``) is in the engine now, held until ``release`` is set."""
    rd = await start_daemon(cfg)
    seen = Observed(rd.daemon)
    seen.release.clear()
    u = submit(rd.daemon, "a", text)
    await asyncio.wait_for(seen.entered.wait(), 10)
    return rd, seen, u


@pytest.mark.parametrize("early_start", [True, False])
async def test_an_idle_message_is_synthesized_in_its_window_and_handed_over_at_its_close(
    start_daemon: Any, early_start: bool
) -> None:
    cfg = espeak_config()
    rd = await start_daemon(dataclasses.replace(cfg, batch=dataclasses.replace(cfg.batch, early_start=early_start)))
    seen = Observed(rd.daemon)
    with capture_logs() as logs:
        u = submit(rd.daemon, "a", "hello there")
        await until(lambda: seen.handed, "the hand-off")
    # early: the engine ran from the window's own task, started while the window was collecting; else after it
    assert seen.calls == [("early batch" if early_start else "batcher", [u.text])]
    assert seen.handed[0][0] == u.id
    assert seen.handed[0][1] >= u.created + rd.daemon.cfg.window_s  # never before the window closed
    (line,) = [e for e in logs if e["event"] == "batch synthesized"]
    assert line["early"] is early_start and line["size"] == 1


async def test_chat_arriving_during_the_early_run_follows_it_in_order(start_daemon: Any) -> None:
    rd, seen, a = await held_early_run(start_daemon, espeak_config(), "first message")
    d = rd.daemon
    b = submit(d, "b", "second message")
    c = submit(d, "c", "third message")
    await asyncio.sleep(0.15)  # the window (80 ms) closes while the engine still holds the early run
    seen.release.set()
    await until(lambda: d.ledger.spoken_count == 3, "all three spoken")
    assert seen.calls == [("early batch", [a.text]), ("batcher", [b.text, c.text])]
    assert [i for i, _ in seen.handed] == [a.id, b.id, c.id]
    assert d.ledger.accepted == 3 and d.ledger.dropped_counts == {}


@pytest.fixture
def long_window(monkeypatch: pytest.MonkeyPatch) -> float:
    """Every batch window of the daemons started after it lasts 1 s (a config clamps it to 100 ms), so a test can
    finish early runs while the window is still open."""
    import ishow.pipeline
    from ishow.batcher import BatchWindow

    monkeypatch.setattr(ishow.pipeline, "BatchWindow", lambda _s, n: BatchWindow(1.0, n))
    return 1.0


async def test_chat_arriving_during_an_early_run_is_synthesized_before_the_window_closes(
    start_daemon: Any, long_window: float
) -> None:
    rd, seen, a = await held_early_run(start_daemon, espeak_config(), "first message")
    d = rd.daemon
    b = submit(d, "b", "second message")
    c = submit(d, "c", "third message")
    seen.release.set()
    # the engine is free again with the window open: what arrived meanwhile starts at once, as the next early run
    await until(lambda: len(seen.calls) == 2, "the second early run")
    assert seen.calls == [("early batch", [a.text]), ("early batch", [b.text, c.text])]
    assert seen.handed == []  # nothing goes out before the window closes
    await until(lambda: d.ledger.spoken_count == 3, "all three spoken")
    assert [i for i, _ in seen.handed] == [a.id, b.id, c.id]  # run after run, in the batch's order
    assert all(t >= a.created + long_window for _, t in seen.handed)
    assert len(seen.calls) == 2 and d.ledger.dropped_counts == {}


async def test_a_failed_early_run_drops_its_messages_and_the_next_run_goes_on(
    start_daemon: Any, long_window: float
) -> None:
    rd, seen, a = await held_early_run(start_daemon, espeak_config(), "this one fails")
    d = rd.daemon
    seen.fail.add(0)
    b = submit(d, "b", "second message")
    with capture_logs() as logs:
        seen.release.set()
        await until(lambda: d.ledger.spoken_count == 1 and not d.pipeline.busy, "the rest spoken")
    assert seen.calls == [("early batch", [a.text]), ("early batch", [b.text])]
    assert [i for i, _ in seen.handed] == [b.id]
    assert d.ledger.dropped_counts == {"synth_failed": 1} and not d.ledger.still_open()
    assert [e["early"] for e in logs if e["event"] == "batch failed"] == [True]


async def test_a_removal_during_the_second_early_run(start_daemon: Any, long_window: float) -> None:
    rd, seen, a = await held_early_run(start_daemon, espeak_config(), "first message")
    d = rd.daemon
    seen.gates[1] = asyncio.Event()
    b = submit(d, "b", "remove me")
    c = submit(d, "c", "keep me")
    seen.release.set()
    await until(lambda: len(seen.calls) == 2, "the second early run")
    assert d.controls.remove(b.id)
    seen.gates[1].set()
    await until(lambda: not d.ledger.still_open() and not d.pipeline.busy, "all settled")
    assert [i for i, _ in seen.handed] == [a.id, c.id]
    assert d.ledger.dropped_counts == {"removed": 1} and d.ledger.spoken_count == 2
    assert d.pipeline.cancelled == set()


async def test_a_message_removed_during_its_early_run_is_dropped_and_the_rest_goes_on(start_daemon: Any) -> None:
    rd, seen, a = await held_early_run(start_daemon, espeak_config(), "remove me")
    d = rd.daemon
    b = submit(d, "b", "keep me")
    assert d.controls.remove(a.id)
    seen.release.set()
    await until(lambda: not d.ledger.still_open() and not d.pipeline.busy, "both settled")
    assert [i for i, _ in seen.handed] == [b.id]
    assert d.ledger.dropped_counts == {"removed": 1} and d.ledger.spoken_count == 1
    assert d.pipeline.cancelled == set()  # no id left behind


@pytest.mark.parametrize("on_shutdown", ["finish", "drop"])
async def test_shutdown_during_an_early_run(start_daemon: Any, on_shutdown: str) -> None:
    # "finish": the early batch is a batch in flight — it is finished and spoken. "drop": it is counted as dropped
    cfg = espeak_config()
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, on_shutdown=on_shutdown))
    rd, seen, a = await held_early_run(start_daemon, cfg, "said at the end")
    d = rd.daemon
    assert d.pipeline.busy
    rd.stop.set()
    await asyncio.sleep(0.2)  # shutdown has begun while the engine holds the early run
    seen.release.set()
    await asyncio.wait_for(rd.task, 30)
    if on_shutdown == "finish":
        assert [i for i, _ in seen.handed] == [a.id] and d.ledger.spoken_count == 1
    else:
        assert seen.handed == [] and d.ledger.dropped_counts == {"shutdown": 1}
    assert not d.ledger.still_open()


@pytest.mark.parametrize("on_shutdown", ["finish", "drop"])
async def test_shutdown_during_the_second_early_run(start_daemon: Any, long_window: float, on_shutdown: str) -> None:
    cfg = espeak_config()
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, on_shutdown=on_shutdown))
    rd, seen, a = await held_early_run(start_daemon, cfg, "said first")
    d = rd.daemon
    seen.gates[1] = asyncio.Event()
    b = submit(d, "b", "said second")
    seen.release.set()
    await until(lambda: len(seen.calls) == 2, "the second early run")
    rd.stop.set()
    await asyncio.sleep(0.2)  # shutdown has begun while the engine holds the second run
    seen.gates[1].set()
    await asyncio.wait_for(rd.task, 30)
    if on_shutdown == "finish":
        assert [i for i, _ in seen.handed] == [a.id, b.id] and d.ledger.spoken_count == 2
    else:
        assert seen.handed == [] and d.ledger.dropped_counts == {"shutdown": 2}
    assert not d.ledger.still_open()
