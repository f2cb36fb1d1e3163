"""Soak run: the real daemon (in-process) under replayed chat for N minutes, measured every few seconds.

    python -m tools.soak --minutes 30 --rate 50 --engine espeak --json /tmp/soak.json

What runs: ``Daemon`` with the espeak engine or the tiny random F5 model (written to a temp dir, real file
formats), the OBS sink with one websocket client on loopback that reads every frame, and a chat source that
emits ``--rate`` messages/s (one super chat in ``--paid-every``) through ``Intake.ingest`` like any platform
source. Playback pacing is on; the player's clock runs ``--time-scale`` times faster so a long stream's worth of
hand-offs fits in the run.

Every ``--sample-s`` seconds it records RSS, open fds, asyncio tasks, queue depth, latency percentiles
(arrival → hand-off), spoken count, drops by reason and paid events sent vs spoken; at the end it drains,
prints a summary table and writes everything as JSON. It asserts nothing: it is a measurement tool
(``tests/test_soak.py`` checks invariants on a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from ishow.app import Daemon
from ishow.config.load import default_config
from ishow.config.schema import Config
from ishow.events import Audio, ChatEvent, EventKind, Priority, User
from ishow.sources.base import Emit, Source

PAGE = os.sysconf("SC_PAGE_SIZE")
DRAIN_LIMIT_S = 120.0
WARMUP_S = 300.0
ZH = ("主播晚上好，今天玩什么", "这波操作太秀了", "第{n}次来直播间", "哈哈哈笑死我了", "下一把一定能赢")
EN = ("hello from chat number {n}", "nice play!", "what game is next", "gg well played", "first time here, hi")


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))], 3)


class SyntheticChat(Source):
    """Chat at ``rate`` messages/s with unique texts and users; every ``paid_every``-th is a super chat."""

    def __init__(self, rate: float, paid_every: int, total: int | None = None) -> None:
        super().__init__("soak-chat")
        self.rate = rate
        self.paid_every = paid_every
        self.total = total
        self.sent = 0
        self.paid_sent = 0
        self.on_emit: list[Any] = []

    def event(self, n: int) -> ChatEvent:
        if self.paid_every and n % self.paid_every == self.paid_every // 2:
            self.paid_sent += 1
            return ChatEvent("bilibili", "1", User(f"rich{n}", f"大佬{n}"), EventKind.SUPER_CHAT,
                             f"醒目留言第{n}条，支持主播", amount=30, currency="CNY", msg_id=f"sc:{n}")  # fmt: skip
        pool = ZH if n % 2 else EN
        text = pool[(n // 2) % len(pool)].format(n=n)
        text = f"{text} {n}" if "{n}" not in pool[(n // 2) % len(pool)] else text
        return ChatEvent("bilibili", "1", User(f"u{n % 997}", f"viewer{n % 997}"), EventKind.DANMAKU, text,
                         msg_id=f"dm:{n}")  # fmt: skip

    async def run(self, emit: Emit) -> None:
        self.state = "replaying"
        start = time.monotonic()
        n = 0
        while self.total is None or n < self.total:
            delay = start + n / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            event = self.event(n)
            emit(event)
            self.sent += 1
            for hook in self.on_emit:
                hook(event)
            n += 1
        self.state = "finished"


class ObsReader:
    """One OBS websocket client that reads everything and checks it against what the daemon spoke."""

    def __init__(self) -> None:
        self.received = 0
        self.bytes = 0
        self.reconnects = 0
        self.unmatched_spoken: set[str] = set()  # spoken, end frame not seen yet
        self.unmatched_received: set[str] = set()  # end frame seen, not (yet) reported spoken

    def spoken(self, uid: str) -> None:
        if uid in self.unmatched_received:
            self.unmatched_received.discard(uid)
        else:
            self.unmatched_spoken.add(uid)

    def _got(self, uid: str) -> None:
        self.received += 1
        if uid in self.unmatched_spoken:
            self.unmatched_spoken.discard(uid)
        else:
            self.unmatched_received.add(uid)

    async def run(self, url: str, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                try:
                    async with http.ws_connect(url, max_msg_size=0) as ws:
                        async for msg in ws:
                            if msg.type == aiohttp.WSMsgType.TEXT:
                                frame = json.loads(msg.data)
                                if frame.get("type") == "end":
                                    self._got(str(frame["id"]))
                            elif msg.type == aiohttp.WSMsgType.BINARY:
                                self.bytes += len(msg.data)
                except aiohttp.ClientError:
                    pass
                if not stop.is_set():
                    self.reconnects += 1
                    await asyncio.sleep(0.2)


@dataclasses.dataclass
class Tracker:
    daemon: Daemon
    chat: SyntheticChat
    obs: ObsReader
    start: float = dataclasses.field(default_factory=time.monotonic)
    spoken: int = 0
    paid_spoken: int = 0
    waits: list[float] = dataclasses.field(default_factory=list)  # since the last sample
    paid_waits: list[float] = dataclasses.field(default_factory=list)
    max_queue: int = 0
    max_unpaid_queue: int = 0
    samples: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def on_spoken(self, audio: Audio) -> None:
        u = audio.utterance
        self.spoken += 1
        wait = time.monotonic() - u.created
        if u.priority >= Priority.PAID:
            self.paid_spoken += 1
            self.paid_waits.append(wait)
        else:
            self.waits.append(wait)
        self.obs.spoken(u.id)

    def on_emit(self, _: ChatEvent) -> None:
        depth = len(self.daemon.queue)
        self.max_queue = max(self.max_queue, depth)
        if depth > self.daemon.cfg.queue.max_size:
            paid = sum(1 for u in self.daemon.queue.snapshot() if u.priority >= Priority.PAID)
            self.max_unpaid_queue = max(self.max_unpaid_queue, depth - paid)
        else:
            self.max_unpaid_queue = max(self.max_unpaid_queue, depth)

    def drops(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for metric in self.daemon.metrics.dropped.collect():
            for s in metric.samples:
                if s.name.endswith("_total") and s.value:
                    out[s.labels["reason"]] = int(s.value)
        return out

    def sample(self) -> dict[str, Any]:
        d = self.daemon
        row = {
            "t_s": round(time.monotonic() - self.start, 1),
            "rss_mb": round(rss_bytes() / 2**20, 2),
            "fds": open_fds(),
            "tasks": len(asyncio.all_tasks()),
            "queue": len(d.queue),
            "audio_buffer": len(d.audio),
            "sent": self.chat.sent,
            "spoken": self.spoken,
            "obs_received": self.obs.received,
            "p50_s": percentile(self.waits, 50),
            "p95_s": percentile(self.waits, 95),
            "paid_p95_s": percentile(self.paid_waits, 95),
            "paid_sent": self.chat.paid_sent,
            "paid_spoken": self.paid_spoken,
            "drops": self.drops(),
            "max_queue": self.max_queue,
        }
        self.waits.clear()
        self.paid_waits.clear()
        self.samples.append(row)
        return row


def soak_config(engine: str, model_dir: Path | None, root: Path) -> Config:
    cfg = default_config(root)
    eng = dataclasses.replace(cfg.engine, kind="espeak", fallback="none", device="cpu")
    if engine == "f5":
        from ishow.engine.f5.checkpoint import write_tiny_model

        assert model_dir is not None
        tiny = write_tiny_model(model_dir)
        eng = dataclasses.replace(eng, kind="f5", fallback="espeak", model="tiny", checkpoint=tiny.checkpoint,
                                  vocab=tiny.vocab, vocoder=tiny.vocoder)  # fmt: skip
    outputs = dataclasses.replace(
        cfg.outputs, realtime=True, local=dataclasses.replace(cfg.outputs.local, enabled=False)
    )
    server = dataclasses.replace(cfg.server, host="127.0.0.1", port=0)
    return dataclasses.replace(cfg, engine=eng, outputs=outputs, server=server, sources=())


def _repo_root() -> Path:
    here = Path.cwd()
    if (here / "voices" / "default_zh.wav").is_file():
        return here
    return Path(__file__).resolve().parent.parent


async def soak(
    seconds: float,
    rate: float = 50.0,
    *,
    engine: str = "espeak",
    time_scale: float = 8.0,
    paid_every: int = 50,
    sample_s: float = 5.0,
    on_sample: Any = None,
    drain_s: float = DRAIN_LIMIT_S,
) -> dict[str, Any]:
    """Run the soak; returns ``{"settings", "samples", "summary"}`` (see ``summarize``)."""
    with tempfile.TemporaryDirectory(prefix="ishow-soak-") as tmp:
        cfg = soak_config(engine, Path(tmp) / "tiny" if engine == "f5" else None, _repo_root())
        chat = SyntheticChat(rate, paid_every, total=int(seconds * rate))
        daemon = Daemon(cfg, sources=[chat])
        obs = ObsReader()
        tracker = Tracker(daemon, chat, obs)
        original = daemon.player._on_spoken

        def spoken(audio: Audio) -> None:
            original(audio)
            tracker.on_spoken(audio)

        daemon.player._on_spoken = spoken
        daemon.player.speed = time_scale
        chat.on_emit.append(tracker.on_emit)
        stop, reader_stop = asyncio.Event(), asyncio.Event()
        run = asyncio.create_task(daemon.run(stop), name="soak-daemon")
        started = asyncio.create_task(daemon.started.wait())
        await asyncio.wait({run, started}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        if run.done():
            started.cancel()
            run.result()
            raise RuntimeError("the daemon stopped during startup")
        reader = asyncio.create_task(obs.run(f"http://127.0.0.1:{daemon.port}/ws/obs", reader_stop))
        for _ in range(200):  # bounded: the OBS client connects before chat starts counting
            if daemon.obs is not None and daemon.obs.state()["clients"]:
                break
            await asyncio.sleep(0.05)
        tracker.start = time.monotonic()
        drain_started: float | None = None
        try:
            while True:
                await asyncio.sleep(sample_s)
                row = tracker.sample()
                if on_sample is not None:
                    on_sample(row)
                if chat.state == "finished" and drain_started is None:
                    drain_started = time.monotonic()
                if drain_started is not None:
                    idle = not len(daemon.queue) and not len(daemon.audio) and daemon.player.current is None
                    if (idle and not daemon.pipeline.busy) or time.monotonic() - drain_started > drain_s:
                        break
            await asyncio.sleep(0.5)  # the last end frames reach the client
            tracker.sample()
        finally:
            reader_stop.set()
            stop.set()
            await asyncio.wait_for(run, 60)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    settings = {"seconds": seconds, "rate": rate, "engine": engine, "time_scale": time_scale,
                "paid_every": paid_every, "queue_max_size": cfg.queue.max_size}  # fmt: skip
    return {"settings": settings, "samples": tracker.samples, "summary": summarize(tracker)}


def summarize(tracker: Tracker) -> dict[str, Any]:
    s = tracker.samples
    end = s[-1]
    # RSS is compared after warm-up (caches, gate and duplicate-id tables fill in the first minutes); fds and
    # tasks from the second sample
    warm = min(WARMUP_S, end["t_s"] / 4)
    base = next(r for r in s if r["t_s"] >= warm)
    second = s[1] if len(s) > 2 else s[0]
    all_waits = tracker.daemon.pipeline.recent_waits
    normal = [w for p, w in all_waits if p < Priority.PAID]
    return {
        "duration_s": end["t_s"],
        "messages": tracker.chat.sent,
        "spoken": tracker.spoken,
        "obs_received": tracker.obs.received,
        "obs_missing": len(tracker.obs.unmatched_spoken),
        "obs_unexpected": len(tracker.obs.unmatched_received),
        "obs_reconnects": tracker.obs.reconnects,
        "rss_start_mb": s[0]["rss_mb"],
        "rss_base_mb": base["rss_mb"],
        "rss_end_mb": end["rss_mb"],
        "rss_base_t_s": base["t_s"],
        "rss_growth_pct": round(100.0 * (end["rss_mb"] - base["rss_mb"]) / base["rss_mb"], 2),
        "rss_growth_from_start_pct": round(100.0 * (end["rss_mb"] - s[0]["rss_mb"]) / s[0]["rss_mb"], 2),
        "rss_max_mb": max(r["rss_mb"] for r in s),
        "fds_base": second["fds"],
        "fds_end": end["fds"],
        "fds_max": max(r["fds"] for r in s),
        "tasks_base": second["tasks"],
        "tasks_end": end["tasks"],
        "tasks_max": max(r["tasks"] for r in s),
        "queue_max": tracker.max_queue,
        "queue_max_unpaid": tracker.max_unpaid_queue,
        "queue_limit": tracker.daemon.cfg.queue.max_size,
        "p50_s_recent": percentile(normal, 50),
        "p95_s_recent": percentile(normal, 95),
        "p50_s_samples_median": percentile([r["p50_s"] for r in s if r["p50_s"] is not None], 50),
        "p95_s_samples_max": max((r["p95_s"] for r in s if r["p95_s"] is not None), default=None),
        "drops": tracker.drops(),
        "paid_sent": tracker.chat.paid_sent,
        "paid_spoken": tracker.paid_spoken,
        "engine": tracker.daemon.worker.active_kind,
    }


def format_summary(result: dict[str, Any]) -> str:
    sm = result["summary"]
    rows = [
        ("duration", f"{sm['duration_s']:.0f} s ({sm['duration_s'] / 60:.1f} min), engine {sm['engine']}"),
        ("messages sent / spoken", f"{sm['messages']} / {sm['spoken']}"),
        (
            "OBS client received",
            f"{sm['obs_received']} (missing {sm['obs_missing']}, reconnects {sm['obs_reconnects']})",
        ),
        (
            "RSS start / base / end",
            f"{sm['rss_start_mb']} / {sm['rss_base_mb']} (at {sm['rss_base_t_s']} s) / {sm['rss_end_mb']} MiB",
        ),
        (
            "RSS growth base / start",
            f"{sm['rss_growth_pct']:+.2f} % / {sm['rss_growth_from_start_pct']:+.2f} % (max {sm['rss_max_mb']} MiB)",
        ),
        ("open fds base / end / max", f"{sm['fds_base']} / {sm['fds_end']} / {sm['fds_max']}"),
        ("asyncio tasks base / end / max", f"{sm['tasks_base']} / {sm['tasks_end']} / {sm['tasks_max']}"),
        ("queue max (unpaid) / limit", f"{sm['queue_max']} ({sm['queue_max_unpaid']}) / {sm['queue_limit']}"),
        ("latency p50 / p95 (recent)", f"{sm['p50_s_recent']} s / {sm['p95_s_recent']} s"),
        ("latency p95, worst sample", f"{sm['p95_s_samples_max']} s"),
        ("drops by reason", json.dumps(sm["drops"])),
        ("paid sent / spoken", f"{sm['paid_sent']} / {sm['paid_spoken']}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--rate", type=float, default=50.0, help="chat messages per second")
    p.add_argument("--engine", choices=["espeak", "f5"], default="espeak", help="f5: the tiny random model")
    p.add_argument("--time-scale", type=float, default=8.0, help="player clock speed-up")
    p.add_argument("--paid-every", type=int, default=50, help="one super chat per this many messages")
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--json", type=Path, help="write samples and summary here")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    from ishow.logs import configure

    configure(args.log_level, True)

    def show(row: dict[str, Any]) -> None:
        fields = ("t_s", "rss_mb", "fds", "tasks", "queue", "sent", "spoken", "p50_s", "p95_s", "paid_spoken")
        print("  ".join(f"{k}={row[k]}" for k in fields), flush=True)
        if args.json is not None:  # partial results survive an interrupted run
            args.json.write_text(json.dumps({"samples_so_far": result_rows}, indent=1))

    result_rows: list[dict[str, Any]] = []

    def keep(row: dict[str, Any]) -> None:
        result_rows.append(row)
        show(row)

    result = asyncio.run(soak(args.minutes * 60, args.rate, engine=args.engine, time_scale=args.time_scale,
                              paid_every=args.paid_every, sample_s=args.sample_s, on_sample=keep))  # fmt: skip
    print(format_summary(result), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
