"""Background bucket warm-up: the plan, the choice of a ready bucket, and that a batch never waits for a capture.

The real CUDA capture runs on the GPU machine (``ishow bench --e2e``, tools/gpu_session.sh); here the capture is
replaced by an eager "graph" (same static buffers, replay = run the NFE loop into the static output), so the
scheduling code paths are the real ones on CPU.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
import torch

from ishow.config.voice import VoiceSpec
from ishow.engine.accel.bucket_plan import (
    EAGER_FACTOR,
    SPLIT_OVERHEAD,
    Bucket,
    MissLog,
    cover_bucket,
    likely_lengths,
    plan_buckets,
    plan_stages,
    split_batch,
    weighted_area,
)
from ishow.engine.accel.graphs import Buckets, GraphSampler, _Captured
from ishow.engine.accel.warmer import BucketWarmer, WarmupTask
from ishow.engine.base import Engine, SynthRequest
from ishow.engine.f5.checkpoint import randomize_
from ishow.engine.f5.dit import TINY, DiT, StepConditioning
from ishow.engine.f5.sampler import BatchInputs, SampleItem, run_nfe, sample
from ishow.engine.f5_warmup import row_sizes

# -- pure policy ----------------------------------------------------------------------------------------------


def test_cover_bucket_prefers_exact_then_smallest_larger_within_pad_limit() -> None:
    ready = [(1, 768), (2, 1024), (16, 1024), (1, 1280)]
    assert cover_bucket((1, 768), ready) == (1, 768)
    assert cover_bucket((1, 640), ready) == (1, 768)
    assert cover_bucket((1, 896), ready) == (1, 1280)  # 1280 < 2048 area of (2, 1024)
    assert cover_bucket((2, 512), ready) == (2, 1024)
    assert cover_bucket((1, 256), ready) == (1, 768)  # 3× the area
    assert cover_bucket((1, 256), ready, max_pad=2.0) is None
    assert cover_bucket((4, 1024), ready) == (16, 1024)  # 4× the area: allowed
    assert cover_bucket((2, 1024), [(16, 1024)]) is None  # 8×: eager is cheaper
    assert cover_bucket((1, 2048), ready) is None  # nothing long enough
    assert cover_bucket((1, 128), []) is None


def test_plan_batch1_first_in_arrival_order_then_bursts_at_the_top_then_the_rest() -> None:
    def frames(n: int) -> int | None:
        f = -(-n // 128) * 128
        return f if f <= 1024 else None

    lengths = [700, 650, 780, 900, 1000, 3000]  # 3000: too long for any bucket
    plan = plan_buckets(lengths, [1, 2, 4, 8], frames, coarse=256)
    assert plan[:3] == [(1, 768), (1, 896), (1, 1024)]
    assert plan[3:6] == [(8, 1024), (4, 1024), (2, 1024)]  # largest batch first, at the top length
    assert sorted(plan[6:]) == [(2, 768), (4, 768), (8, 768)]
    assert len(plan) == len(set(plan))
    assert plan_buckets([5000], [1, 2], frames, 256) == []
    assert plan_buckets([700], [1], frames, 256) == [(1, 768)]


def test_plan_stages_essential_covers_every_batch_refinement_the_rest() -> None:
    def frames(n: int) -> int | None:
        f = -(-n // 128) * 128
        return f if f <= 1024 else None

    essential, refine = plan_stages([700, 650, 780, 900, 1000], [1, 2, 4], frames, coarse=256)
    assert essential == [(1, 768), (1, 896), (1, 1024), (4, 1024), (2, 1024)]
    assert sorted(refine) == [(2, 768), (4, 768)]
    # with the essential graphs alone, every batch of up to 4 planned lengths has a graph (maybe padded)
    for rows in (1, 2, 3, 4):
        for n in (650, 700, 780, 900, 1000):
            need = (1 if rows == 1 else 2 if rows == 2 else 4, frames(n) or 0)
            assert cover_bucket(need, essential) is not None, (rows, n)


def test_vocoder_plan_has_no_one_row_graphs_a_message_alone_takes_two_rows() -> None:
    # torch.compile specializes a batch of 1, so 1-row vocoder graphs cost a second compile before "ready"
    from ishow.engine.accel.vocoder_backends import VocoderBuckets

    vb = VocoderBuckets()
    assert vb.bucket(1, 200) == (2, 256) and vb.bucket(2, 200) == (2, 256) and vb.bucket(3, 200) == (4, 256)

    def frames(n: int) -> int | None:
        return vb.bucket(1, n)[1] if vb.bucket(1, n) else None  # type: ignore[index]

    essential, refine = plan_stages([200, 300, 600], [2, 8], frames, coarse=256, single=2)
    assert essential == [(2, 256), (2, 384), (2, 640), (8, 768)]  # every length alone, then the burst at the top
    assert sorted(refine) == [(8, 256), (8, 512)]
    assert all(rows != 1 for rows, _ in essential + refine)


def test_plan_keeps_multi_row_buckets_within_max_area() -> None:
    b = Buckets(max_area=8192)
    lengths = [600, 900, 1200, 1700]
    essential, refine = plan_stages(lengths, [1, 2, 4, 8], b.frames, b.coarse_multiple, max_area=b.max_area)
    assert essential[:4] == [(1, 640), (1, 1024), (1, 1280), (1, 1792)]  # a message alone: always its own graph
    assert essential[4:] == [(8, 1024), (4, 1792), (2, 1792)]  # each batch size at the largest frames it may have
    assert all(r == 1 or r * f <= 8192 for r, f in essential + refine)
    assert (8, 768) in refine and not any(r == 8 and f > 1024 for r, f in refine)
    assert b.allowed((1, 4096)) and b.allowed((8, 1024)) and not b.allowed((8, 1280))


def test_split_batch_keeps_each_bucket_within_max_area_and_every_item_once() -> None:
    b = Buckets(max_area=8192)
    short, long_ = 700, 1700
    assert split_batch([short] * 8, b.area, 8192) == [list(range(8))]  # 8 × 768 fits: whole, in order
    assert b.area(8, 700) == 8 * 768 and b.area(1, 700) == 768 and b.area(3, 1700) == 4 * 1792
    frames = [long_, short, long_, short, long_, short, short, long_]
    parts = split_batch(frames, b.area, 8192)
    assert sorted(i for p in parts for i in p) == list(range(8))
    for p in parts:
        area = b.area(len(p), max(frames[i] for i in p))
        assert area is not None and area <= 8192
    assert parts[0] == [1, 3, 5, 6]  # the short ones first, together
    assert split_batch([5000, 100], b.area, 8192) == [[1], [0]]  # 5000: no bucket, alone (eager)
    assert split_batch([4000], b.area, 1024) == [[0]]  # a message alone always runs
    assert split_batch([], b.area, 8192) == []


def _partitions(items: list[int]) -> list[list[list[int]]]:
    """Every set partition of ``items`` (Bell number many: keep ``items`` small)."""
    if not items:
        return [[]]
    first, rest = items[0], items[1:]
    out: list[list[list[int]]] = []
    for p in _partitions(rest):
        out.append([[first], *p])
        for i in range(len(p)):
            out.append([*p[:i], [first, *p[i]], *p[i + 1 :]])
    return out


def _plan_cost(parts: list[list[int]], frames: list[int], b: Buckets, max_area: int | None) -> float:
    total = 0.0
    for p in parts:
        a = b.area(len(p), max(frames[i] for i in p))
        if len(p) > 1 and (a is None or (max_area is not None and a > max_area)):
            return float("inf")
        total += (a if a is not None else EAGER_FACTOR * max(frames[i] for i in p)) + SPLIT_OVERHEAD
    return total


def test_split_batch_pads_fewer_rows_than_one_graph_for_the_whole_batch() -> None:
    b = Buckets()  # rows 1, 2, 4, 8, 16
    five = split_batch([700] * 5, b.area, None)  # 8 rows for 5 messages; 4 + 1 pads none
    assert sorted(map(len, five)) == [1, 4] and sorted(i for p in five for i in p) == list(range(5))
    assert split_batch([700] * 4, b.area, None) == [[0, 1, 2, 3]]  # a full bucket stays whole, in order
    # 4 rows for 3 messages: 2 + 1 (2 × 768 + 768 + 2 runs' overhead) costs less than 4 × 768 + 1 run
    assert sorted(map(len, split_batch([700, 650, 690], b.area, None))) == [1, 2]
    assert split_batch([700, 650, 690], b.area, None, overhead=1024) == [[0, 1, 2]]  # not when a run costs more
    # priced as the engine prices them (a graph of few rows costs more per row-frame, ROW_WEIGHTS):
    # one long message pads every short row of its batch to its length: it runs alone
    assert split_batch([600, 600, 2900, 600, 600], b.area, None, b.cost) == [[0, 1, 3, 4], [2]]
    # the e2e burst's first batch of 8 (frames with the shipped voices): one 8 × 1024 graph pads the short half to
    # 1024 frames; 4 × 768 + 4 × 1024 does not (116.6 → 109.5 ms on the H200, tools/burst_split.py)
    burst = [694, 614, 760, 681, 835, 732, 909, 814]
    parts = split_batch(burst, b.area, 8192, b.cost)
    assert [sorted(burst[i] for i in p) for p in parts] == [[614, 681, 694, 732], [760, 814, 835, 909]]
    # by area alone (every row-frame alike), graphs of 1 row would look cheap
    assert len(split_batch(burst, b.area, 8192)) > 2


def test_rows_weigh_what_a_graph_of_few_rows_leaves_idle() -> None:
    b = Buckets(max_area=10240)
    # per row-frame: fewer rows cost more, longer rows cost more (attention), a row count without a weight counts 1
    assert weighted_area(1, 768) / 768 > weighted_area(2, 768) / 1536 > weighted_area(4, 768) / 3072
    assert weighted_area(4, 768) / 3072 > weighted_area(8, 768) / 6144 == weighted_area(16, 768) / 12288
    assert weighted_area(8, 1280) / 10240 > weighted_area(8, 1024) / 8192
    assert weighted_area(3, 1000) == round(3 * 1000 * (1 + 1000 / 3000))
    assert b.cost(3, 700) == weighted_area(4, 768) and b.cost(1, 700) == weighted_area(1, 768)
    assert b.cost(1, 5000) is None
    # measured on the H200 (session 9): the e2e burst's second batch of 8 ran as 1 + 2 + 1 + 4 rows in 169 ms of
    # synthesis, as one 8 × 1280 graph in 161–168 ms; it needs max_area ≥ 10240
    burst = [903, 984, 1000, 1065, 1075, 1125, 1174, 1248]
    assert split_batch(burst, b.area, 10240, b.cost) == [list(range(8))]
    assert len(split_batch(burst, b.area, 8192, b.cost)) > 1
    # ... while 8 messages of 880–1215 frames took 145–150 ms as 4 × 1024 + 4 × 1280, and 155–161 ms as one 8 × 1280
    other = [984, 880, 1066, 954, 1141, 1021, 1215, 1088]
    parts = split_batch(other, b.area, 10240, b.cost)
    assert [sorted(other[i] for i in p) for p in parts] == [[880, 954, 984, 1021], [1066, 1088, 1141, 1215]]


@pytest.mark.parametrize("seed", range(40))
def test_split_batch_finds_the_cheapest_of_all_partitions(seed: int) -> None:
    import random

    rng = random.Random(seed)
    b = Buckets()
    n = rng.randint(2, 7)
    frames = [rng.choice([rng.randint(50, 800), rng.randint(800, 2000), rng.randint(3900, 4300)]) for _ in range(n)]
    max_area = rng.choice([None, 2048, 4096, 8192])
    parts = split_batch(frames, b.area, max_area)
    assert sorted(i for p in parts for i in p) == list(range(n))
    best = min(_plan_cost(p, frames, b, max_area) for p in _partitions(list(range(n))))
    assert _plan_cost(parts, frames, b, max_area) == best


def test_split_costs_come_from_the_graphs_ready_now(tiny: DiT) -> None:
    gs = GraphSampler(tiny, Buckets(), capture_on_miss=False)
    gs.use_graphs = True
    ready = [(1, 1024), (8, 768)]
    gs.ready_buckets = lambda config=None: list(ready)  # type: ignore[method-assign]
    cost = gs.cost_of()
    assert cost(8, 700) == cost(4, 700) == weighted_area(8, 768)  # both served by the 8 × 768 graph
    # priced by rows and length (weighted_area); no ready 1-row graph ≥ 1100: eager
    assert cost(1, 700) == weighted_area(1, 1024) and cost(1, 1100) == EAGER_FACTOR * weighted_area(1, 1152)
    assert cost(1, 5000) is None
    # 4 + 1 would replay the 8-row graph and a 1-row one, 5 × 1 five 1024-frame graphs: the batch stays whole
    assert split_batch([700] * 5, gs.buckets.area, None, gs.cost_of()) == [[0, 1, 2, 3, 4]]
    ready.append((4, 768))
    assert sorted(map(len, split_batch([700] * 5, gs.buckets.area, None, gs.cost_of()))) == [1, 4]


def test_a_bucket_over_max_area_is_never_captured(tiny: DiT) -> None:
    gs = GraphSampler(tiny, Buckets(max_area=1024), capture_on_miss=False)
    gs.use_graphs = True  # the refusal comes before any CUDA work
    assert gs.capture_bucket((2, 768)) == {"skipped": True, "reason": "over max_area 1024"}
    assert gs.captures == 0


def test_row_sizes_follow_max_items() -> None:
    assert row_sizes(1) == [1]
    assert row_sizes(8) == [1, 2, 4, 8]
    assert row_sizes(9) == [1, 2, 4, 8, 16]
    assert likely_lengths(6, 12, 3) == [6, 9, 12]


def test_max_items_cannot_exceed_the_largest_bucket() -> None:
    from ishow.config.load import parse_config
    from ishow.errors import ConfigError

    with pytest.raises(ConfigError, match=r"batch.max_items.*1–16"):
        parse_config("[batch]\nmax_items = 17\n", Path("."))
    assert parse_config("[batch]\nmax_items = 16\n", Path(".")).batch.max_items == 16


# -- the warmer -----------------------------------------------------------------------------------------------


def test_warmer_runs_plan_in_background_counts_failures_then_serves_demand() -> None:
    release = threading.Event()
    ran: list[str] = []

    def task(name: str, fail: bool = False, gate: threading.Event | None = None) -> WarmupTask:
        def run() -> dict[str, object]:
            if gate is not None:
                assert gate.wait(10)
            ran.append(name)
            if fail:
                raise RuntimeError("capture failed")
            return {"bucket": name}

        return WarmupTask(name, run)

    demand = [[task("d1")], []]
    done = threading.Event()
    w = BucketWarmer(
        [task("a", gate=release), task("b", fail=True), task("c")],
        demand=lambda: demand.pop(0) if demand else [],
        poll_s=0.01,
        on_plan_done=done.set,
    )
    w.start()
    p = w.progress()
    assert p.state == "warming" and not p.ready and p.total == 3
    deadline = time.monotonic() + 5
    while w.progress().current != "a" and time.monotonic() < deadline:
        time.sleep(0.005)
    assert w.progress().current == "a"
    release.set()
    assert w.wait_ready(10)
    p = w.progress()
    assert p.ready and p.state == "ready" and p.done == 3 and p.failed == 1
    assert done.wait(5)
    deadline = time.monotonic() + 5
    while w.progress().demand_done < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    w.stop(5)
    assert ran == ["a", "b", "c", "d1"]
    assert [r.ok for r in w.records] == [True, False, True, True]
    assert w.progress().as_dict()["ready"] is True


def test_warmer_is_ready_after_the_essential_tasks_and_refines_after() -> None:
    gate = threading.Event()
    w = BucketWarmer(
        [
            WarmupTask("refine", lambda: {"ok": gate.wait(10)}, essential=False),
            WarmupTask("essential", lambda: {}),
        ]
    )
    w.start()
    try:
        assert w.wait_ready(10)  # the refinement task (listed first) runs after the essential one and blocks
        deadline = time.monotonic() + 10
        while w.progress().current != "refine" and time.monotonic() < deadline:
            time.sleep(0.005)
        p = w.progress()
        assert p.ready and p.refining and p.current == "refine" and p.done == 1 and p.total == 2
    finally:
        gate.set()
        w.stop(10)
    p = w.progress()
    assert p.done == 2 and not p.refining and [r.label for r in w.records] == ["essential", "refine"]


def test_warmer_without_tasks_is_ready_and_off() -> None:
    w = BucketWarmer([])
    assert w.progress().state == "off" and w.progress().ready and w.wait_ready(0)


# -- the sampler's scheduling, with an eager stand-in for the CUDA graph ---------------------------------------


class _EagerGraph:
    """Replays by running the NFE loop on the static inputs into the static output (what a CUDA graph does)."""

    def __init__(self, fn: Callable[[], torch.Tensor], out: torch.Tensor) -> None:
        self.fn, self.out = fn, out

    def replay(self) -> None:
        self.out.copy_(self.fn())


class _CpuGraphSampler(GraphSampler):
    def __init__(self, model: DiT, gate: threading.Event | None = None) -> None:
        super().__init__(model, Buckets(frame_multiple=64, max_frames=512), capture_on_miss=False)
        self.use_graphs = True  # the scheduling path, with eager "graphs"
        self.gate = gate
        self.capturing = threading.Event()

    def _capture(
        self, host: BatchInputs, ts: list[float], steps: list[StepConditioning], cfg_strength: float
    ) -> _Captured:
        self.capturing.set()
        if self.gate is not None:
            assert self.gate.wait(20)  # a capture that takes as long as the test wants
        static = BatchInputs(**{k: getattr(host, k).clone() for k in ("x0", "cond", "text", "seq_lens", "ref_lens")})

        def fn() -> torch.Tensor:
            return run_nfe(self.model, static, ts, steps, cfg_strength)

        out = fn()
        self.captures += 1
        return _Captured(inputs=static, graph=_EagerGraph(fn, out), output=out)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny() -> DiT:
    model = DiT(TINY).eval()
    randomize_(model, seed=7)
    return model


def items(n: int, frames: int = 90) -> list[SampleItem]:
    gen = torch.Generator().manual_seed(n)
    return [
        SampleItem(torch.randn(30, 100, generator=gen) - 4, tuple(range(1, 12 + i)), frames - i * 3, seed=i)
        for i in range(n)
    ]


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_nothing_ready_runs_eagerly_and_records_the_miss(tiny: DiT) -> None:
    gs = _CpuGraphSampler(tiny)
    got = gs.sample(items(1))
    assert gs.eager_runs == 1 and gs.replays == 0 and gs.captures == 0
    (bucket, config), *_ = gs.take_misses()
    assert bucket == (1, 128) and config.nfe_step == 7
    assert gs.take_misses() == []
    assert rel_l2(got[0], sample(tiny, items(1))[0]) < 1e-4


def test_ready_larger_bucket_serves_and_equals_eager(tiny: DiT) -> None:
    gs = _CpuGraphSampler(tiny)
    gs.capture_bucket((2, 192))
    assert gs.ready_buckets() == [(2, 192)]
    got = gs.sample(items(1))  # own bucket (1, 128): not ready; (2, 192) is 3× its area
    assert gs.replays == 1 and gs.padded_runs == 1 and gs.eager_runs == 0
    assert rel_l2(got[0], sample(tiny, items(1))[0]) < 1e-4
    gs.capture_bucket((1, 128))
    two = gs.sample(items(1))
    assert gs.replays == 2 and gs.padded_runs == 1  # now its own bucket
    assert rel_l2(two[0], got[0]) < 1e-5
    assert gs.capture_bucket((1, 128)) == {"skipped": True}  # never twice
    assert gs.captures == 2 and [c["bucket"] for c in gs.capture_log] == [[2, 192], [1, 128]]


def test_a_batch_never_waits_for_a_capture_in_progress(tiny: DiT) -> None:
    gate = threading.Event()
    gs = _CpuGraphSampler(tiny, gate)
    t = threading.Thread(target=gs.capture_bucket, args=((1, 128),), daemon=True)
    t.start()
    try:
        assert gs.capturing.wait(10)  # the warm-up thread is inside the capture of exactly this bucket
        done = threading.Event()
        result: list[list[torch.Tensor]] = []

        def serve() -> None:
            result.append(gs.sample(items(1)))
            done.set()

        threading.Thread(target=serve, daemon=True).start()
        assert done.wait(30), "sample() waited for the capture"
        assert gs.eager_runs == 1 and gs.ready_buckets() == []
    finally:
        gate.set()
        t.join(20)
    assert gs.ready_buckets() == [(1, 128)]
    assert rel_l2(result[0][0], gs.sample(items(1))[0]) < 1e-4
    assert gs.replays == 1


def test_full_cache_takes_no_more_captures(tiny: DiT) -> None:
    gs = _CpuGraphSampler(tiny)
    gs.max_graphs = 1
    gs.capture_bucket((1, 128))
    assert gs.full and gs.capture_bucket((1, 192)) == {"skipped": True}
    assert gs.ready_buckets() == [(1, 128)]


class _Warming(Engine):
    """An engine whose warm-up is one capture that waits for ``gate``; records the batch size it was planned for
    and its own after-warm-up hook (which raises ``done_error`` when given)."""

    kind = "f5"

    def __init__(self, done_error: Exception | None = None) -> None:
        self.gate = threading.Event()
        self.asked: list[int] = []
        self.done: list[str] = []
        self.done_error = done_error

    def load(self) -> None:
        pass

    def synthesize(self, requests: Sequence[SynthRequest]) -> list[npt.NDArray[np.float32]]:
        return [np.zeros(240, dtype=np.float32) for _ in requests]

    def warmup_tasks(self, voices: Sequence[VoiceSpec], max_batch: int) -> list[WarmupTask]:
        self.asked.append(max_batch)
        return [WarmupTask("slow capture", lambda: {"ok": self.gate.wait(20)})]

    def warmup_done(self) -> None:
        self.done.append("engine")
        if self.done_error is not None:
            raise self.done_error


# -- the worker: serves while warming, reports progress ---------------------------------------------------------


async def test_worker_serves_while_warming_and_reports_ready() -> None:
    import asyncio

    from ishow.config.engine import EngineConfig
    from ishow.engine.worker import EngineWorker

    engine = _Warming()
    gate, asked = engine.gate, engine.asked
    w = EngineWorker(EngineConfig(kind="f5", fallback="none"), (VoiceSpec(id="a"),), lambda k, c: engine, max_batch=4)
    await asyncio.wait_for(w.start(), 10)  # start() does not wait for the warm-up
    try:
        assert asked == [4]
        state = w.state()
        assert state["ready"] is False and not w.ready
        progress = state["warmup"]
        assert isinstance(progress, dict)
        assert (progress["state"], progress["ready"], progress["done"], progress["total"]) == ("warming", False, 0, 1)
        res = await asyncio.wait_for(w.synthesize([w.request("hi", "a")]), 10)  # served during the warm-up
        assert res[0].audio is not None
        gate.set()
        assert w.warmer is not None and await asyncio.to_thread(w.warmer.wait_ready, 10)
        assert w.ready and w.state()["ready"] is True
    finally:
        gate.set()
        await w.close()


def test_miss_log_keeps_the_newest_misses_in_order_and_empties_on_take() -> None:
    misses: MissLog[Bucket] = MissLog(limit=3)
    for key in [(1, 256), (2, 256), (1, 256), (4, 256), (8, 256)]:
        misses.add(key)
    misses.discard((4, 256))
    misses.discard((16, 256))  # never missed: nothing happens
    assert misses.take() == [(2, 256), (8, 256)]  # a repeat keeps its place; past 3, (1, 256) went
    assert misses.take() == []


def test_the_warm_plan_reaches_the_longest_single_chunk_a_voice_speaks(tiny: DiT) -> None:
    # chat up to 40 CJK characters was planned, but text up to ~12 s of speech is one request: a 43-character
    # message ran with no vocoder graph (eager, and a kernel compile on its path) before this plan
    from dataclasses import dataclass

    from ishow.config.engine import EngineConfig
    from ishow.engine.accel.vocoder_backends import TorchVocoder
    from ishow.engine.chunking import ChunkPlan, LengthBudget
    from ishow.engine.f5.duration import generated_frames, utf8_len
    from ishow.engine.f5.vocos import Vocos, VocosConfig
    from ishow.engine.f5_engine import F5Engine
    from ishow.engine.f5_warmup import WARM_MAX_BYTES, plan

    @dataclass(frozen=True)
    class Prepared:
        frames: int
        ref_text: str

    ref = Prepared(644, "大家好，欢迎来到我的直播间，今天我们一起聊天玩游戏。")  # the shipped default_zh voice

    class Engine:
        config = EngineConfig()
        sampler = GraphSampler(tiny, capture_on_miss=False)
        vocoder_backend = TorchVocoder(Vocos(VocosConfig(dim=64, intermediate_dim=192, num_layers=2, head_dim=64)))

        def prepared(self, voice: VoiceSpec) -> Prepared:
            return ref

        def length_budget(self, voice: VoiceSpec, speed: float) -> LengthBudget:
            return F5Engine.length_budget(cast(Any, self), voice, speed)  # the engine's own rule, on this reference

    engine = Engine()
    engine.sampler.use_graphs = True
    engine.vocoder_backend.use_graphs = True
    longest = ChunkPlan.for_budget(engine.length_budget(VoiceSpec(id="zh"), 1.0)).target  # EngineWorker.plan's cut
    assert longest > WARM_MAX_BYTES  # ~12 s of this voice's speech is more than 40 characters
    (dit, dit_later), (_voc, voc_later) = plan(engine, [VoiceSpec(id="zh")], 8)
    gen = generated_frames(ref.frames, utf8_len(ref.ref_text), longest, 1.0)
    b = engine.sampler.buckets
    assert (1, b.frames(ref.frames + gen)) in dit_later  # captured after "ready": the wait for it does not grow
    assert any(rows == 2 and frames >= gen for rows, frames in voc_later)
    chat = generated_frames(ref.frames, utf8_len(ref.ref_text), WARM_MAX_BYTES, 1.0)
    assert max(f for r, f in dit if r == 1) == b.frames(ref.frames + chat)  # "ready" still means chat-sized


async def test_the_worker_calls_after_warmup_once_the_plan_is_done_even_when_the_engine_s_own_hook_fails() -> None:
    import asyncio

    from ishow.config.engine import EngineConfig
    from ishow.engine.worker import EngineWorker

    engine = _Warming(done_error=RuntimeError("cache dir gone"))
    gate, called = engine.gate, engine.done
    done = threading.Event()

    def after() -> None:
        called.append("worker")
        done.set()

    w = EngineWorker(EngineConfig(kind="f5", fallback="none"), (VoiceSpec(id="a"),), lambda k, c: engine,
                     after_warmup=after)  # fmt: skip
    await asyncio.wait_for(w.start(), 10)
    try:
        assert called == []  # the plan is still running
        gate.set()
        assert await asyncio.to_thread(done.wait, 10)
        assert called == ["engine", "worker"] and w.primary is engine
    finally:
        gate.set()
        await w.close()
