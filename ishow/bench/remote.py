"""``ishow bench --remote URL|local``: N simulated daemons sharing one synthesis service vs one local daemon.

Each caller is a closed loop (send one message, wait for its audio, send the next), like a channel whose chat keeps
the daemon busy. Rows per caller count (``--callers 1,4,8``):

- ``local``: one daemon's engine thread serves all callers; whatever is waiting (up to 8) is one batch, as the
  daemon's batcher does — the single-machine baseline;
- ``remote``: each caller is its own ``RemoteEngine`` (its own HTTP client, as separate daemons are); the service
  batches them together (``@serve.batch``).

Reported: total messages/s, p50/p95 message→audio latency, and the per-request overhead of the service — remote
minus local latency at 1 caller, and remote latency minus the replica's own engine time per batch (``/stats``).
``--remote local`` starts a local Ray + Serve in this process with the same checkpoint (``--model tiny`` writes
the tiny random one: a CPU smoke run that measures the service's overhead, not GPU speed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import queue
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ishow.bench.local import MIX
from ishow.config.engine import EngineConfig, RemoteConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.base import Engine, SynthRequest
from ishow.engine.warm_reference import REF_TEXT, write_reference
from ishow.errors import ConfigError

LOCAL_MAX_ITEMS = 8  # the daemon's default batch.max_items


@dataclasses.dataclass
class Row:
    mode: str
    callers: int
    messages: int
    seconds: float
    latencies_ms: list[float]
    rows_per_batch: float = 0.0  # remote: the replica's average over this run (warm-up included)

    def as_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "mode": self.mode,
            "rows_per_batch": self.rows_per_batch,
            "callers": self.callers,
            "messages": self.messages,
            "msgs_per_s": self.messages / self.seconds if self.seconds else 0.0,
            "p50_ms": statistics.median(lat),
            "p95_ms": lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))],
        }


def _requests(voice: VoiceSpec, caller: int, n: int) -> list[SynthRequest]:
    return [SynthRequest(text=MIX[(caller * 7 + i) % len(MIX)], voice=voice, seed=i) for i in range(n)]


def _closed_loops(callers: int, messages: int, warmup: int, send: Callable[[int, SynthRequest], object],
                  voice: VoiceSpec) -> tuple[float, list[float]]:  # fmt: skip
    """Run ``callers`` threads, each sending ``warmup`` untimed then ``messages`` timed requests one at a time."""
    latencies: list[list[float]] = [[] for _ in range(callers)]
    start = threading.Barrier(callers + 1)
    errors: list[BaseException] = []

    def loop(c: int) -> None:
        try:
            for req in _requests(voice, c, warmup):
                send(c, req)
            start.wait(timeout=600)
            for req in _requests(voice, c + 1000, messages):
                t0 = time.perf_counter()
                send(c, req)
                latencies[c].append((time.perf_counter() - t0) * 1000)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
            start.abort()

    threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in range(callers)]
    for t in threads:
        t.start()
    start.wait(timeout=600)
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=3600)
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed, [x for per in latencies for x in per]


class LocalDaemon:
    """One engine thread; callers' waiting messages (up to 8) form one batch, as the daemon's batcher does."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.q: queue.Queue[tuple[SynthRequest, Future[None]] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True, name="bench-local-engine")
        self.thread.start()

    def _run(self) -> None:
        while (first := self.q.get()) is not None:
            batch = [first]
            while len(batch) < LOCAL_MAX_ITEMS:
                try:
                    nxt = self.q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.q.put(None)
                    break
                batch.append(nxt)
            try:
                self.engine.synthesize([r for r, _ in batch])
                for _, fut in batch:
                    fut.set_result(None)
            except Exception as e:  # noqa: BLE001 - handed to the callers
                for _, fut in batch:
                    fut.set_exception(e)

    def send(self, caller: int, req: SynthRequest) -> None:
        fut: Future[None] = Future()
        self.q.put((req, fut))
        fut.result(timeout=600)

    def close(self) -> None:
        self.q.put(None)
        self.thread.join(timeout=60)


def _stats(url: str, token: str) -> dict[str, Any]:
    req = urllib.request.Request(f"{url}/stats", headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return dict(json.loads(resp.read()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ishow.engine.f5_engine import F5Engine
    from ishow.engine.remote import RemoteEngine

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    callers = [int(c) for c in str(args.callers).split(",") if c.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="ishow-bench-remote-"))
    ec = EngineConfig(device=device, precision=args.precision, vocoder_backend=args.vocoder_backend,
                      compile=args.compile, engines_dir=Path(args.engines_dir))  # fmt: skip
    if args.model == "tiny":
        from ishow.engine.f5.checkpoint import write_tiny_model

        tiny = write_tiny_model(tmp / "model")
        ec = dataclasses.replace(ec, model="tiny", checkpoint=tiny.checkpoint, vocab=tiny.vocab, vocoder=tiny.vocoder)
    elif not Path(ec.checkpoint).is_file():
        raise ConfigError(
            f"bench --remote loads real files: {ec.checkpoint} is missing (ishow models fetch, or --model tiny)"
        )
    voice = VoiceSpec(id="bench", ref_audio=write_reference(tmp / "ref.wav"), ref_text=REF_TEXT)
    log = print if not args.quiet else (lambda *a, **k: None)
    started = False
    url = args.remote
    if url == "local":
        from ishow.config.serve import ServeConfig
        from ishow.serve import app

        sc = ServeConfig(port=_free_port(), token=args.token, num_gpus=1.0 if device.startswith("cuda") else 0.0,
                         num_cpus=1.0, max_batch_size=max(callers), batch_wait_ms=args.batch_wait_ms)  # fmt: skip
        log(f"starting a local Ray + Serve with one {device} replica ...")
        url = app.start(sc, ec, log_to_driver=False)
        started = True
    rows: list[Row] = []
    try:
        local = F5Engine(ec)
        local.load()
        local.warmup(voice)
        daemon = LocalDaemon(local)
        try:
            for n in callers:
                secs, lat = _closed_loops(n, args.messages, args.warmup, daemon.send, voice)
                rows.append(Row("local", n, n * args.messages, secs, lat))
                log(fmt(rows[-1]))
        finally:
            daemon.close()
        engine_ms: list[float] = []
        for n in callers:
            remote_cfg = RemoteConfig(url=url, token=args.token, timeout_s=600)
            engines = [
                RemoteEngine(
                    dataclasses.replace(ec, kind="remote", remote=dataclasses.replace(remote_cfg, client=f"bench-{i}"))
                )
                for i in range(n)
            ]
            for e in engines:
                e.load()
                if not e.up:
                    raise ConfigError(f"bench --remote: the service at {url} is not reachable: {e.down_reason}")
            try:
                before = _stats(url, args.token)["batches"]
                send = lambda c, r, es=engines: es[c].synthesize([r])  # noqa: E731
                secs, lat = _closed_loops(n, args.messages, args.warmup, send, voice)
                stats = _stats(url, args.token)
                if n == 1:
                    recent = [b for b in stats["recent"] if b["batch"] > before + args.warmup]
                    engine_ms = [float(b["ms"]) for b in recent]
            finally:
                for e in engines:
                    e.close()
            batches = max(1, stats["batches"] - before)
            rows.append(Row("remote", n, n * args.messages, secs, lat, n * (args.messages + args.warmup) / batches))
            log(
                fmt(rows[-1])
                + f"  (replica {stats['replica']}: {batches} batches, {rows[-1].rows_per_batch:.1f} rows each)"
            )
    finally:
        if started:
            from ishow.serve import app

            app.stop(started_ray=True)
    result: dict[str, Any] = {"device": device, "model": args.model, "url": args.remote,
                              "rows": [r.as_dict() for r in rows]}  # fmt: skip
    by = {(r["mode"], r["callers"]): r for r in result["rows"]}
    if ("local", 1) in by and ("remote", 1) in by:
        result["overhead_vs_local_p50_ms"] = by[("remote", 1)]["p50_ms"] - by[("local", 1)]["p50_ms"]
    if engine_ms and ("remote", 1) in by:
        result["replica_engine_p50_ms"] = statistics.median(engine_ms)
        result["overhead_vs_replica_engine_p50_ms"] = by[("remote", 1)]["p50_ms"] - statistics.median(engine_ms)
    return result


def fmt(r: Row) -> str:
    d = r.as_dict()
    return (f"{d['mode']:7} callers {d['callers']:2d}  {d['messages']:4d} msgs  {d['msgs_per_s']:7.2f} msg/s  "
            f"p50 {d['p50_ms']:8.1f} ms  p95 {d['p95_ms']:8.1f} ms")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    result = run(args)
    for key in ("overhead_vs_local_p50_ms", "replica_engine_p50_ms", "overhead_vs_replica_engine_p50_ms"):
        if key in result:
            print(f"{key}: {result[key]:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0
