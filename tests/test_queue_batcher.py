from __future__ import annotations

import asyncio

from ishow.batcher import SPIN_S, BatchWindow, next_batch
from ishow.events import Priority, Utterance
from ishow.utterance_queue import AsyncUtteranceQueue, QueueDrop, UtteranceQueue


def utt(i: int, priority: Priority = Priority.NORMAL, created: float = 0.0) -> Utterance:
    return Utterance(id=f"u{i}", text=f"t{i}", voice="v", priority=priority, created=created)


def test_priority_then_arrival_order() -> None:
    q = UtteranceQueue(max_size=10, max_age_s=60)
    for u in (utt(1), utt(2, Priority.PAID), utt(3, Priority.MODERATOR), utt(4)):
        assert q.push(u) == []
    order = [q.pop(0.0)[0] for _ in range(4)]
    assert [u.id for u in order if u] == ["u2", "u3", "u1", "u4"]
    assert q.pop(0.0) == (None, [])


def test_full_queue_drops_oldest_normal_never_paid() -> None:
    q = UtteranceQueue(max_size=2, max_age_s=60)
    q.push(utt(1))
    q.push(utt(2, Priority.PAID))
    drops = q.push(utt(3))
    assert [(d.reason, d.utterance.id) for d in drops] == [("queue_full", "u1")]
    drops = q.push(utt(4, Priority.PAID))
    assert [d.utterance.id for d in drops] == ["u3"]
    assert q.push(utt(5, Priority.PAID)) == []  # only paid left: grows rather than lose one
    assert len(q) == 3


def test_stale_chat_is_skipped_but_paid_is_not() -> None:
    q = UtteranceQueue(max_size=10, max_age_s=5)
    q.push(utt(1, created=0.0))
    q.push(utt(2, Priority.PAID, created=0.0))
    q.push(utt(3, created=9.0))
    first, drops = q.pop(10.0)
    assert first is not None and first.id == "u2" and drops == []
    second, drops = q.pop(10.0)
    assert second is not None and second.id == "u3"
    assert [(d.reason, d.utterance.id) for d in drops] == [("stale", "u1")]


def test_remove_and_snapshot() -> None:
    q = UtteranceQueue(max_size=10, max_age_s=60)
    for i in range(4):
        q.push(utt(i))
    assert [u.id for u in q.remove(lambda u: u.id in ("u1", "u2"))] == ["u1", "u2"]
    assert [u.id for u in q.snapshot()] == ["u0", "u3"]
    assert len(q) == 2


def test_batch_window_policy() -> None:
    w = BatchWindow(0.08, 3)
    assert not w.complete(1.0, 1, 1.05)
    assert w.complete(1.0, 1, 1.08)
    assert w.complete(1.0, 3, 1.0)
    assert abs(w.remaining(1.0, 1.05) - 0.03) < 1e-9


async def test_next_batch_collects_within_window_and_caps_items() -> None:
    drops: list[QueueDrop] = []
    q = AsyncUtteranceQueue(100, 60, drops.append)
    for i in range(5):
        q.put(utt(i, created=asyncio.get_running_loop().time()))
    batch = await asyncio.wait_for(next_batch(q, BatchWindow(0.05, 3)), 5)
    assert [u.id for u in batch.items] == ["u0", "u1", "u2"]

    async def late() -> None:
        await asyncio.sleep(0.01)
        q.put(utt(9, created=asyncio.get_running_loop().time()))

    task = asyncio.create_task(late())
    batch = await asyncio.wait_for(next_batch(q, BatchWindow(0.1, 10)), 5)
    await task
    assert [u.id for u in batch.items] == ["u3", "u4", "u9"]
    assert drops == []


class _RecordingQueue(AsyncUtteranceQueue):
    """Records every wait the batcher asks for (the queue itself is the real one)."""

    def __init__(self) -> None:
        super().__init__(100, 1e9, lambda d: None, clock=lambda: 0.0)
        self.waits: list[float] = []

    async def wait_nonempty(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return await super().wait_nonempty(min(timeout, 0.01))


def test_batch_window_opens_at_first_arrival() -> None:
    assert BatchWindow.opened(first_arrival=3.0, now=5.0) == 3.0
    assert BatchWindow.opened(first_arrival=7.0, now=5.0) == 5.0  # a clock skew never opens it in the future


async def test_window_counts_from_first_arrival_not_from_pickup() -> None:
    # the first message arrived at t=100.00; the batcher (busy synthesizing) looks at t=100.06: 20 ms are left
    q = _RecordingQueue()
    q.put(utt(1, created=100.0))
    batch = await asyncio.wait_for(next_batch(q, BatchWindow(0.08, 8), clock=lambda: 100.06), 5)
    assert [u.id for u in batch.items] == ["u1"]
    assert len(q.waits) == 1 and abs(q.waits[0] - (0.02 - SPIN_S)) < 1e-9  # the rest: yielding (see below)


async def test_window_already_closed_takes_queued_items_without_waiting() -> None:
    # after a long synthesis: three messages waited 1 s; they go out together, with no extra wait
    q = _RecordingQueue()
    for i in range(3):
        q.put(utt(i, created=100.0 + i * 0.01))
    batch = await asyncio.wait_for(next_batch(q, BatchWindow(0.08, 8), clock=lambda: 101.0), 5)
    assert [u.id for u in batch.items] == ["u0", "u1", "u2"]
    assert q.waits == []


async def test_fresh_message_gets_the_whole_window() -> None:
    q = _RecordingQueue()
    q.put(utt(1, created=50.0))
    await asyncio.wait_for(next_batch(q, BatchWindow(0.08, 8), clock=lambda: 50.0), 5)
    assert len(q.waits) == 1 and abs(q.waits[0] - (0.08 - SPIN_S)) < 1e-9


async def test_the_last_stretch_of_a_window_is_waited_by_yielding_and_still_collects() -> None:
    # timers wake up to 1 ms late, so the batcher sleeps until SPIN_S before the window closes, then yields to the
    # loop until its clock passes the end; a message that arrives in that stretch joins the batch
    q = _RecordingQueue()
    q.put(utt(1, created=50.0))
    times = iter([50.0, 50.0, 50.0792, 50.0795, 50.0799, 50.0801])
    seen: list[float] = []

    def clock() -> float:
        t = next(times)
        seen.append(t)
        if t == 50.0795:
            q.put(utt(2, created=t))  # arrives while the batcher yields
        return t

    batch = await asyncio.wait_for(next_batch(q, BatchWindow(0.08, 8), clock=clock), 5)
    assert [u.id for u in batch.items] == ["u1", "u2"]
    assert len(q.waits) == 1 and abs(q.waits[0] - (0.08 - SPIN_S)) < 1e-9  # one timed wait, then yields
    assert seen[-1] == 50.0801  # it closed once its clock passed 50.08, not before


async def test_on_wait_gets_the_items_so_far_before_each_wait() -> None:
    # an idle stream: one message, the window open — the caller hears about it before the batcher waits; a second
    # message arrives during that wait, and the caller hears about both before the next wait
    q = _RecordingQueue()
    q.put(utt(1, created=50.0))
    calls: list[tuple[list[str], int]] = []
    times = iter([50.0, 50.0, 50.01, 50.0799, 50.0801])
    asyncio.get_running_loop().call_later(0.002, lambda: q.put(utt(2, created=50.005)))
    batch = await asyncio.wait_for(
        next_batch(q, BatchWindow(0.08, 8), clock=lambda: next(times), on_wait=lambda items: calls.append(
            ([u.id for u in items], len(q.waits)))), 5)  # fmt: skip
    assert [u.id for u in batch.items] == ["u1", "u2"]
    assert calls == [(["u1"], 0), (["u1", "u2"], 1)]  # with what it held then, before each wait


async def test_on_wait_is_not_called_when_the_batch_never_waits() -> None:
    calls: list[object] = []
    q = _RecordingQueue()
    for i in range(3):  # full at once: no wait
        q.put(utt(i, created=50.0))
    await asyncio.wait_for(next_batch(q, BatchWindow(0.08, 3), clock=lambda: 50.0, on_wait=calls.append), 5)
    q.put(utt(9, created=100.0))  # its window closed long ago: taken without a wait
    await asyncio.wait_for(next_batch(q, BatchWindow(0.08, 3), clock=lambda: 101.0, on_wait=calls.append), 5)
    assert calls == [] and q.waits == []
