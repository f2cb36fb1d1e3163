"""``ishow bench --e2e``: the real daemon, timed from the outside like a streamer would see it.

Starts ``ishow run`` as a subprocess (F5 on CUDA when present, with random weights at the real model size unless
the configured checkpoints exist; espeak on a machine without CUDA) on a free loopback port, with the OBS output
on and playback pacing off (``outputs.realtime = false``: audio is handed over as soon as it is synthesized, so the
numbers are synthesis latency, not queueing behind playback). Then, as an OBS-protocol client on ``/ws/obs``:

* startup: spawn → ``/healthz`` answers → ``"ready": true`` (background capture done), with its progress;
* idle: one message at a time, each a new length (so the first use of each bucket is counted), time from
  ``POST /api/messages`` to the utterance header on ``/ws/obs`` (p50/p99/max);
* burst: N messages posted at once: time to the first and the last header;
* sustained: messages at a fixed rate: latency p50/p99, delivered count;
* restarts: stop, start again, time to ready (the compile cache is warm then).

Every wait is bounded (``--timeout`` per message, ``--startup-timeout``). ``--json`` writes everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
ZH = (
    "主播晚上好今天玩什么游戏这波操作太秀了刚来错过了什么"
    "下一把一定能赢笑死我了主播状态不错加油冲冲冲大家一起来聊天吧真的太好看了"
)
EN = (
    "hello from berlin love the stream what game is this keep going "
    "that play was amazing good luck on the next round friend"
)
CAPTURE_LINE = re.compile(r"warm-up task .*?(\{.*\})")
MEMORY_LINE = re.compile(r"warm-up memory (\{.*\})")


def log_json(raw: str) -> dict[str, Any] | None:
    """The first JSON object in ``raw`` (a message logged as JSON, possibly inside a JSON log line with its quotes
    escaped and the line's own fields after it); None if there is none."""
    for text in (raw, raw.replace('\\"', '"')):
        with contextlib.suppress(ValueError):
            got, _ = json.JSONDecoder().raw_decode(text)
            return got if isinstance(got, dict) else None
    return None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0–100) of non-empty ``values``."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summary(ms: Sequence[float]) -> dict[str, Any]:
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
        "mean_ms": round(sum(ms) / len(ms), 1),
    }


def idle_messages(count: int) -> list[tuple[str, str]]:
    """``count`` (text, voice) pairs of distinct lengths, alternating Chinese (1–40 characters) and English
    (2–120 characters), shortest first: chat's common lengths, each a first use of its length."""
    out: list[tuple[str, str]] = []
    zh_lens = [1 + 3 * i for i in range(14)]
    en_lens = [4 + 9 * i for i in range(14)]
    for i in range(count):
        if i % 2 == 0:
            n = zh_lens[(i // 2) % len(zh_lens)]
            out.append(((ZH * 2)[i : i + n], "default_zh"))
        else:
            n = en_lens[(i // 2) % len(en_lens)]
            out.append(((EN * 2)[i : i + n].strip() or "hi", "default_en"))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Paths:
    checkpoint: Path | None = None
    vocab: Path | None = None
    vocoder: Path | None = None
    note: str = ""


def model_paths(args: argparse.Namespace, engine: str, work: Path) -> Paths:
    """The configured checkpoints when they exist, else random weights written in the real formats."""
    if engine != "f5":
        return Paths(note="espeak")
    from ishow.config.engine import EngineConfig

    cfg = EngineConfig()
    ckpt, vocab, voc = (REPO / cfg.checkpoint, REPO / cfg.vocab, REPO / cfg.vocoder)
    if args.model != "tiny" and ckpt.is_file() and vocab.is_file() and (voc / "pytorch_model.bin").is_file():
        return Paths(ckpt, vocab, voc, "checkpoints")
    if args.model == "tiny":
        from ishow.engine.f5.checkpoint import write_tiny_model

        tiny = write_tiny_model(work / "model")
        return Paths(tiny.checkpoint, tiny.vocab, tiny.vocoder, "random weights")
    return write_random(work / "model", args.model)


def write_random(folder: Path, model: str) -> Paths:
    """Random weights at ``model``'s size (fp16 file) with the packaged vocab and a real-size (or tiny) Vocos."""
    import torch
    from safetensors.torch import save_file

    from ishow.bench.local import random_models
    from ishow.engine.f5.checkpoint import METADATA_KEY
    from ishow.engine.f5.vocos import save_vocos

    folder.mkdir(parents=True, exist_ok=True)
    dit, vocos = random_models(model=model)
    tensors = {f"ema_model.transformer.{k}": v.to(torch.float16).contiguous() for k, v in dit.state_dict().items()}
    ckpt = folder / "model.safetensors"
    save_file(tensors, str(ckpt), metadata={METADATA_KEY: json.dumps(dit.config.to_dict()), "format": "pt"})
    vocab = folder / "vocab.txt"
    shutil.copyfile(REPO / "ishow" / "engine" / "f5" / "vocab.txt", vocab)
    save_vocos(folder / "vocos", vocos, vocos.config)
    return Paths(ckpt, vocab, folder / "vocos", "random weights")


def write_config(path: Path, args: argparse.Namespace, engine: str, port: int, paths: Paths) -> None:
    def q(p: Path | str) -> str:
        return json.dumps(str(p))

    lines = [f"root = {q(REPO)}", "[server]", 'host = "127.0.0.1"', f"port = {port}", "[engine]",
             f'kind = "{engine}"', 'fallback = "espeak"', f"device = {q(args.device)}",
             f"precision = {q(args.precision)}", f"compile = {str(args.compile).lower()}",
             f"compile_cache = {q(Path(args.cache_dir).resolve())}"]  # fmt: skip
    if engine == "f5":
        lines += [f"model = {q(args.model)}", f"checkpoint = {q(paths.checkpoint or '')}",
                  f"vocab = {q(paths.vocab or '')}", f"vocoder = {q(paths.vocoder or '')}"]  # fmt: skip
    lines += ["[batch]", f"window_ms = {args.window_ms}", f"max_items = {args.max_items}",
              f"early_start = {str(args.early_start).lower()}", "[queue]",
              "max_size = 64", "max_age_s = 600", "[filter]", "duplicate_window_s = 0", "user_rate_limit = 0",
              "[outputs]", "realtime = false", "[outputs.local]", "enabled = false", "[outputs.obs]", "enabled = true",
              "max_client_queue = 256", "[[sources]]", 'kind = "demo"', "enabled = false"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass
class ObsClient:
    """Reads /ws/obs: arrival time of each utterance header and end frame, by id."""

    headers: dict[str, float] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            now = time.perf_counter()
            if frame.get("type") == "utterance":
                self.headers[frame["id"]] = now
            elif frame.get("type") == "end":
                self.ends[frame["id"]] = now

    async def wait_end(self, ids: Sequence[str], timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if all(i in self.ends for i in ids):
                return True
            await asyncio.sleep(0.002)
        return False


async def post(http: aiohttp.ClientSession, url: str, text: str, voice: str, user: str) -> tuple[str | None, float]:
    t0 = time.perf_counter()
    async with http.post(f"{url}/api/messages", json={"user": user, "text": text, "voice": voice}) as r:
        body = await r.json()
    return (body.get("id") if body.get("queued") else None), t0


async def answered(
    http: aiohttp.ClientSession, url: str, text: str, voice: str, user: str
) -> tuple[str | None, float, float]:
    """:func:`post`, plus when its answer arrived."""
    mid, t0 = await post(http, url, text, voice, user)
    return mid, t0, time.perf_counter()


class Daemon:
    """``ishow run`` in a subprocess; its stderr goes to ``log``."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.t0 = 0.0

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.t0 = time.perf_counter()
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "ishow", "run", "--config", str(self.config)],
                                         stdout=err, stderr=err, cwd=REPO, env=env)  # fmt: skip

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    async def wait_ready(self, url: str, timeout: float, during: int = 0, msg_timeout: float = 60.0) -> dict[str, Any]:
        """Poll /healthz every 50 ms: seconds to the first answer and to ``ready``, and the health at ready.

        ``during`` > 0: once /healthz answers and while not ready, also send up to that many messages one at a time
        and time them (the path a batch takes while its bucket is still being captured: padded or eager)."""
        http_s: float | None = None
        deadline = time.perf_counter() + timeout
        early: list[dict[str, Any]] = []
        sender: asyncio.Task[None] | None = None
        async with aiohttp.ClientSession() as http:
            while time.perf_counter() < deadline:
                if http_s is not None and during > 0 and sender is None:
                    sender = asyncio.create_task(during_warmup(url, during, msg_timeout, early))
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited with {self.proc.returncode}; see {self.log}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        health = await r.json()
                        now = time.perf_counter() - self.t0
                        http_s = now if http_s is None else http_s
                        if health.get("ready"):
                            if sender is not None:
                                await asyncio.wait_for(sender, msg_timeout + 5)
                            return {"http_s": round(http_s, 2), "ready_s": round(now, 2), "health": health,
                                    "during_warmup": early}  # fmt: skip
                await asyncio.sleep(0.05)
        raise TimeoutError(f"daemon not ready after {timeout:.0f} s; see {self.log}")


async def during_warmup(url: str, count: int, timeout: float, out: list[dict[str, Any]]) -> None:
    obs = ObsClient()
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws/obs") as ws:
        reader = asyncio.create_task(obs.read(ws))
        try:
            for i, (text, voice) in enumerate(idle_messages(count)):
                async with http.get(f"{url}/healthz") as r:
                    health = await r.json()
                if health.get("ready"):
                    return
                mid, t0 = await post(http, url, f"{text} w{i}", voice, f"warm{i}")
                ok = mid is not None and await obs.wait_end([mid], timeout)
                warm = health.get("warmup") or {}
                out.append({"ms": round((obs.headers[mid] - t0) * 1000, 1) if ok and mid else None,
                            "buckets_done": warm.get("done"), "buckets_total": warm.get("total")})  # fmt: skip
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


def gpu_memory_mb(pid: int) -> float | None:
    """GPU memory the process holds (CUDA context included), from nvidia-smi; None without it."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return float(parts[1])
    return None


def capture_records(log: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = CAPTURE_LINE.search(line)
        got = log_json(m.group(1)) if m else None
        if got is not None:
            out.append(got)
    return out


async def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    obs = ObsClient()
    result: dict[str, Any] = {}
    timeout = args.timeout
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws/obs") as ws:
        reader = asyncio.create_task(obs.read(ws))
        try:
            # idle: one at a time
            idle_ms: list[float] = []
            lost = 0
            for i, (text, voice) in enumerate(idle_messages(args.idle)):
                mid, t0 = await post(http, url, text, voice, f"idle{i}")
                if mid is None or not await obs.wait_end([mid], timeout):
                    lost += 1
                    continue
                idle_ms.append((obs.headers[mid] - t0) * 1000)
                await asyncio.sleep(args.idle_gap)
            result["idle"] = {**summary(idle_ms), "lost": lost, "ms": [round(x, 1) for x in idle_ms]}
            # burst: all at once
            msgs = idle_messages(max(args.burst, 1))[: args.burst]
            before = await metrics_text(http, url)
            sent = await asyncio.gather(*(answered(http, url, f"{t} {i}", v, f"burst{i}") for i, (t, v) in
                                          enumerate(msgs)))  # fmt: skip
            ids = [m for m, _, _ in sent if m is not None]
            t0 = min(t for _, t, _ in sent) if sent else time.perf_counter()
            await obs.wait_end(ids, timeout * max(1, args.burst))
            got = [obs.headers[m] - t0 for m in ids if m in obs.headers]
            result["burst"] = {
                "sent": len(msgs),
                "delivered": len(got),
                "first_ms": round(min(got) * 1000, 1) if got else None,
                "last_ms": round(max(got) * 1000, 1) if got else None,
                # when the daemon had answered every POST: the HTTP part of the burst, inside first/last
                "answered_ms": round((max(a for _, _, a in sent) - t0) * 1000, 1) if sent else None,
            }
            after = await metrics_text(http, url)
            for ms in (10, 25):  # the daemon's event loop ran a timer this much late during the burst (loop_watch)
                lags = loop_lags_over(after, ms / 1000) - loop_lags_over(before, ms / 1000)
                result["burst"][f"loop_lags_over_{ms}ms"] = int(lags)
            await asyncio.sleep(args.idle_gap)
            # sustained: a fixed chat rate
            n = int(args.rate * args.sustain_s)
            pairs = idle_messages(max(n, 1))
            start = time.perf_counter()
            tasks = []
            for i in range(n):
                await asyncio.sleep(max(0.0, start + i / args.rate - time.perf_counter()))
                text, voice = pairs[i % len(pairs)]
                tasks.append(asyncio.create_task(post(http, url, f"{text} {i}", voice, f"rate{i}")))
            posted = await asyncio.gather(*tasks)
            sids = [m for m, _ in posted if m is not None]
            await obs.wait_end(sids, timeout + args.sustain_s)
            lat = [(obs.headers[m] - t) * 1000 for m, t in posted if m is not None and m in obs.headers]
            result["sustained"] = {"rate_per_s": args.rate, "seconds": args.sustain_s, "sent": n,
                                   "delivered": len(lat), **summary(lat)}  # fmt: skip
            result["batches_by_engine"] = batches_by_engine(await metrics_text(http, url))
            async with http.get(f"{url}/healthz") as r:
                result["health_after"] = await r.json()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    return result


def batches_by_engine(metrics: str) -> dict[str, float]:
    """``ishow_batches_total`` per engine from the Prometheus text (a fallback to espeak shows here)."""
    found = re.findall(r'^ishow_batches_total\{engine="([^"]*)"\} ([0-9.e+]+)$', metrics, re.MULTILINE)
    return {name: float(n) for name, n in found}


def loop_lags_over(metrics: str, threshold_s: float) -> float:
    """How many of the daemon's event-loop lags (``ishow_loop_lag_seconds``) were over ``threshold_s`` (one of the
    histogram's bucket bounds) so far, from the Prometheus text; 0 when the metric is not there."""
    count = re.search(r"^ishow_loop_lag_seconds_count ([0-9.e+]+)$", metrics, re.MULTILINE)
    le = re.search(rf'^ishow_loop_lag_seconds_bucket\{{le="{threshold_s}"\}} ([0-9.e+]+)$', metrics, re.MULTILINE)
    return float(count.group(1)) - float(le.group(1)) if count and le else 0.0


async def metrics_text(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/metrics") as r:
        return await r.text()


def choose_engine(args: argparse.Namespace) -> str:
    if args.engine != "auto":
        return str(args.engine)
    import torch

    return "f5" if torch.cuda.is_available() and args.device != "cpu" else "espeak"


def run(args: argparse.Namespace) -> dict[str, Any]:
    engine = choose_engine(args)
    work = Path(tempfile.mkdtemp(prefix="ishow-e2e-"))
    paths = model_paths(args, engine, work)
    port = free_port()
    config = work / "ishow.toml"
    write_config(config, args, engine, port, paths)
    url = f"http://127.0.0.1:{port}"
    log = Path(args.daemon_log) if args.daemon_log else work / "daemon.log"
    cache = Path(args.cache_dir)
    out: dict[str, Any] = {"engine": engine, "weights": paths.note, "window_ms": args.window_ms,
                           "max_items": args.max_items, "early_start": args.early_start,
                           "compile_cache_was_empty": not any(cache.glob("*")), "starts": [],
                           "log": str(log)}  # fmt: skip
    daemon = Daemon(config, log)
    for attempt in range(1 + args.restarts):
        daemon.start()
        try:
            during = args.during_warmup if attempt == 0 else 0
            start = asyncio.run(daemon.wait_ready(url, args.startup_timeout, during, args.timeout))
            assert daemon.proc is not None
            start["gpu_memory_mb_at_ready"] = gpu_memory_mb(daemon.proc.pid)
            health = start.pop("health")
            start["warmup"] = health.get("warmup")
            out["starts"].append(start)
            if attempt == 0:
                out["health_at_ready"] = health
                out.update(asyncio.run(measure(args, url)))
                out["gpu_memory_mb_after"] = gpu_memory_mb(daemon.proc.pid)
        finally:
            out.setdefault("exit_codes", []).append(daemon.stop())
    out["captures"] = capture_records(log)
    text = log.read_text(encoding="utf-8", errors="replace")
    out["torch_memory_at_ready"] = [d for m in MEMORY_LINE.findall(text) if (d := log_json(m)) is not None]
    shutil.rmtree(work / "model", ignore_errors=True)  # random weights: up to ~700 MB
    return out


def table(r: dict[str, Any]) -> str:
    lines = [
        f"e2e: engine {r['engine']} ({r['weights']}), window {r['window_ms']} ms, max_items {r['max_items']}, "
        f"early start {'on' if r.get('early_start', True) else 'off'}"
    ]
    for i, s in enumerate(r["starts"]):
        w = s.get("warmup") or {}
        lines.append(f"start {i}: /healthz {s['http_s']} s, ready {s['ready_s']} s (warm-up {w.get('done')}/"
                     f"{w.get('total')} buckets, {w.get('failed')} failed), "
                     f"GPU {s['gpu_memory_mb_at_ready']} MB")  # fmt: skip
    early = [e["ms"] for e in (r["starts"][0].get("during_warmup") or []) if e.get("ms") is not None]
    if early:
        lines.append(f"before ready (padded/eager, never waiting for a capture): {len(early)} messages, "
                     f"p50 {percentile(early, 50):.1f} ms, max {max(early):.1f} ms")  # fmt: skip
    idle = r.get("idle", {})
    if idle.get("n"):
        lines.append(f"idle message → header: n {idle['n']}, p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms, "
                     f"max {idle['max_ms']} ms, lost {idle['lost']}")  # fmt: skip
    b = r.get("burst", {})
    if b:
        lines.append(
            f"burst of {b['sent']}: delivered {b['delivered']}, first {b['first_ms']} ms, last {b['last_ms']} ms"
            + (f" (all posts answered after {b['answered_ms']} ms)" if b.get("answered_ms") is not None else "")
        )
        if "loop_lags_over_10ms" in b:
            lines.append(f"  event loop late during the burst: {b['loop_lags_over_10ms']} times > 10 ms, "
                         f"{b['loop_lags_over_25ms']} > 25 ms")  # fmt: skip
    s = r.get("sustained", {})
    if s:
        lines.append(f"sustained {s['rate_per_s']}/s for {s['seconds']} s: delivered {s['delivered']}/{s['sent']}, "
                     f"p50 {s.get('p50_ms')} ms, p99 {s.get('p99_ms')} ms")  # fmt: skip
    caps = [c for c in r.get("captures", []) if c.get("ok") and not c.get("skipped") and "bucket" in c]
    if caps:
        total = sum(float(c.get("s", 0)) for c in caps)
        mem = sum(float(c.get("reserved_mb", 0) or 0) for c in caps)
        lines.append(f"captures: {len(caps)} in {total:.1f} s, +{mem:.0f} MB reserved")
    lines.append(f"GPU memory after the run: {r.get('gpu_memory_mb_after')} MB (nvidia-smi, CUDA context included); "
                 f"torch at ready: {r.get('torch_memory_at_ready')}")  # fmt: skip
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    result = run(args)
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return 0
