"""A chat flood through the real daemon: 2,000 messages in 10 s with 20 super chats.

Playback pacing is on, with the player's clock compressed 20× so the test stays short; everything else is the
production path (sources call ``Intake.ingest``; espeak synthesizes; the OBS sink hands out audio).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from ishow.events import ChatEvent, EventKind, Priority, User
from tests.conftest import espeak_config

MESSAGES, SUPER_CHATS, SECONDS = 2000, 20, 10.0


async def test_flood_keeps_backlog_bounded_and_speaks_every_super_chat(start_daemon: Any) -> None:
    cfg = espeak_config()
    cfg = dataclasses.replace(cfg, outputs=dataclasses.replace(cfg.outputs, realtime=True))
    rd = await start_daemon(cfg)
    daemon = rd.daemon
    daemon.player.speed = 20.0
    spoken: list[tuple[str, Priority, float]] = []
    original = daemon.pipeline.on_spoken

    def record(audio: Any) -> None:
        original(audio)
        u = audio.utterance
        spoken.append((u.raw, u.priority, time.monotonic() - u.created))

    daemon.player._on_spoken = record
    sc_every = MESSAGES // SUPER_CHATS
    max_backlog = 0
    start = time.monotonic()
    for i in range(MESSAGES):
        if i % sc_every == sc_every // 2:
            event = ChatEvent("bilibili", "1", User(f"rich{i}", f"rich{i}"), EventKind.SUPER_CHAT, f"super chat {i}",
                              amount=30, currency="CNY")  # fmt: skip
        else:
            event = ChatEvent("bilibili", "1", User(f"u{i}", f"viewer{i}"), EventKind.DANMAKU, f"message number {i}")
        daemon.intake.ingest(event)
        max_backlog = max(max_backlog, len(daemon.queue))
        delay = start + (i + 1) * SECONDS / MESSAGES - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    flood_s = time.monotonic() - start
    for _ in range(600):  # drain, bounded: at most 60 s
        if not len(daemon.queue) and not len(daemon.audio) and daemon.player.current is None:
            break
        await asyncio.sleep(0.1)
    paid = [raw for raw, prio, _ in spoken if prio == Priority.PAID]
    normal_waits = sorted(w for _, prio, w in spoken if prio == Priority.NORMAL)
    p95 = normal_waits[int(len(normal_waits) * 0.95)]
    print(
        f"\nflood: {MESSAGES} msgs in {flood_s:.1f} s, max backlog {max_backlog} (limit {cfg.queue.max_size}), "
        f"spoken {len(spoken)} ({len(paid)} paid), dropped "
        f"{ {k: v for k, v in _drops(daemon).items() if v} }, p95 wait of spoken chat {p95:.2f} s, "
        f"p50 {normal_waits[len(normal_waits) // 2]:.2f} s"
    )
    # the accounting rule, reconciled exactly after shutdown (nothing may still be waiting)
    rd.stop.set()
    await asyncio.wait_for(rd.task, 60)
    ledger = daemon.ledger
    received = sum(s.value for m in daemon.metrics.messages.collect() for s in m.samples if s.name.endswith("_total"))
    spoken_metric = daemon.metrics.spoken._value.get()
    drops = _drops(daemon)
    print(
        f"reconciliation: received {received:.0f} = spoken {spoken_metric:.0f} + dropped {sum(drops.values()):.0f} "
        f"{ {k: int(v) for k, v in drops.items() if v} }; accepted {ledger.accepted} = spoken "
        f"{ledger.spoken_count} + dropped after acceptance {sum(ledger.dropped_counts.values())} "
        f"{ledger.dropped_counts}; still open {len(ledger)}"
    )
    assert received == MESSAGES
    assert received == spoken_metric + sum(drops.values())
    assert ledger.accepted == ledger.spoken_count + sum(ledger.dropped_counts.values()) and len(ledger) == 0
    assert ledger.spoken_count == spoken_metric == len(spoken)
    assert daemon.metrics.accepted._value.get() == ledger.accepted
    assert max_backlog <= cfg.queue.max_size + SUPER_CHATS  # bounded: only paid events may exceed the limit
    assert sorted(paid) == sorted(f"super chat {i}" for i in range(MESSAGES) if i % sc_every == sc_every // 2)
    assert all(w <= cfg.queue.max_age_s + 10 for w in normal_waits)  # stale chat is dropped, never spoken late
    assert _drops(daemon)["queue_full"] > 0


def _drops(daemon: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in daemon.metrics.dropped.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out[sample.labels["reason"]] = sample.value
    out.setdefault("queue_full", 0.0)
    return out
