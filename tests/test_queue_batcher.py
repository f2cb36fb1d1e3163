from __future__ import annotations

import asyncio

from ishow.batcher import BatchWindow, next_batch
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
