"""Background bucket warm-up: one thread captures (and compiles) the planned buckets after the model loads.

The engine thread keeps serving meanwhile: a batch whose bucket is not captured yet runs on a ready larger bucket
or eagerly (:func:`ishow.engine.accel.bucket_plan.cover_bucket`), never waiting for a capture. When the plan is done the
warmer reports ``ready`` and then captures buckets that real traffic asked for and missed ("demand"), one at a time,
until stopped. A task that fails is logged and counted; the rest still run.

Every loop is bounded: the plan is a finite list, the demand loop waits on the stop event between polls.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEMAND_POLL_S = 0.5


@dataclass(frozen=True)
class WarmupTask:
    """One unit of warm-up work (e.g. capture one bucket); ``run`` returns facts to report (seconds are added)."""

    label: str
    run: Callable[[], dict[str, object]]
    # essential tasks come first; "ready" once they are done (the rest refine: exact buckets instead of padded)
    essential: bool = True


@dataclass(frozen=True)
class TaskRecord:
    label: str
    seconds: float
    ok: bool
    info: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class WarmupProgress:
    """``state``: ``"off"`` (nothing to warm), ``"warming"`` or ``"ready"`` (every essential task is done: each batch
    the daemon can form has a graph, exact or padded; ``refining`` while the rest of the plan still runs, then
    demand captures may run). ``seconds``: from start to ready (so far while warming)."""

    state: str
    done: int
    total: int
    failed: int
    current: str | None
    seconds: float
    demand_done: int
    refining: bool = False

    @property
    def ready(self) -> bool:
        return self.state in ("off", "ready")

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state,
            "ready": self.ready,
            "done": self.done,
            "total": self.total,
            "failed": self.failed,
            "current": self.current,
            "seconds": round(self.seconds, 2),
            "demand_done": self.demand_done,
            "refining": self.refining,
        }


class BucketWarmer:
    """Runs ``tasks`` in order on its own thread, then ``demand()``'s tasks (polled) until :meth:`stop`."""

    def __init__(
        self,
        tasks: Sequence[WarmupTask],
        demand: Callable[[], list[WarmupTask]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float = DEMAND_POLL_S,
        on_plan_done: Callable[[], None] | None = None,
    ) -> None:
        # essential tasks first (stable), so "ready" comes as early as the plan allows
        self._tasks = [t for t in tasks if t.essential] + [t for t in tasks if not t.essential]
        self._essential = sum(1 for t in tasks if t.essential)
        self._plan_done = False
        self._on_plan_done = on_plan_done
        self._demand = demand
        self._clock = clock
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = clock()
        self._t_ready: float | None = None
        self._done = self._failed = self._demand_done = 0
        self._current: str | None = None
        self.records: list[TaskRecord] = []
        if not self._tasks:
            self._t_ready = self._t0
            self._ready.set()

    # -- control -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the warm-up thread (daemon: it never keeps the process alive)."""
        if self._thread is None:
            self._t0 = self._clock()
            self._thread = threading.Thread(target=self._main, name="ishow-warmup", daemon=True)
            self._thread.start()

    def run_plan(self) -> None:
        """Run the whole plan on the calling thread (no demand loop)."""
        self._run_plan()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop after its current task and wait for it (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    # -- state ---------------------------------------------------------------------------------------------
    def progress(self) -> WarmupProgress:
        with self._lock:
            state = "off" if not self._tasks else ("ready" if self._ready.is_set() else "warming")
            end = self._t_ready if self._t_ready is not None else self._clock()
            return WarmupProgress(
                state=state,
                done=self._done,
                total=len(self._tasks),
                failed=self._failed,
                current=self._current,
                seconds=max(0.0, end - self._t0),
                demand_done=self._demand_done,
                refining=self._ready.is_set() and not self._plan_done and bool(self._tasks),
            )

    # -- work ----------------------------------------------------------------------------------------------
    def _main(self) -> None:
        self._run_plan()
        if self._demand is None:
            return
        while not self._stop.is_set():
            try:
                extra = self._demand()
            except Exception:
                log.exception("warm-up demand source failed; no more on-demand captures")
                return
            for task in extra:
                if self._stop.is_set():
                    return
                if self._run(task):
                    with self._lock:
                        self._demand_done += 1
            self._stop.wait(self._poll_s)

    def _mark_ready(self) -> None:
        with self._lock:
            if self._t_ready is None:
                self._t_ready = self._clock()
        if not self._ready.is_set():
            self._ready.set()
            p = self.progress()
            log.info("warm-up ready: %d essential buckets in %.1f s (%d failed)", p.done, p.seconds, p.failed)

    def _run_plan(self) -> None:
        for i, task in enumerate(self._tasks):
            if i == self._essential:
                self._mark_ready()
            if self._stop.is_set():
                break
            ok = self._run(task)
            with self._lock:
                self._done += 1
                self._failed += 0 if ok else 1
        with self._lock:
            self._current = None
            self._plan_done = True
        self._mark_ready()
        p = self.progress()
        if p.total:
            log.info("warm-up done: %d buckets (%d failed)", p.done, p.failed)
        if self._on_plan_done is not None and not self._stop.is_set():
            try:
                self._on_plan_done()
            except Exception:
                log.exception("after-warm-up hook failed")

    def _run(self, task: WarmupTask) -> bool:
        with self._lock:
            self._current = task.label
        t0 = self._clock()
        try:
            info = task.run()
            ok = True
        except Exception as e:  # noqa: BLE001 - one bad bucket (OOM, compiler error) must not stop the others
            log.warning("warm-up task %s failed: %s: %s", task.label, type(e).__name__, e)
            info, ok = {"error": f"{type(e).__name__}: {e}"}, False
        rec = TaskRecord(task.label, self._clock() - t0, ok, tuple(sorted(info.items())))
        # one parseable line per task (``ishow bench --e2e`` reads capture time and memory per bucket from it)
        log.info(
            "warm-up task %s",
            json.dumps({"label": rec.label, "s": round(rec.seconds, 3), "ok": ok, **info}, default=str),
        )
        with self._lock:
            self.records.append(rec)
            self._current = None
        return ok
