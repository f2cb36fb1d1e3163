"""Nothing accepted is lost: shutdown drains to every output, failures are contained, the watcher sees only its
files, the demo waits for a listener. The real daemon with espeak, real sinks, real files and sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from structlog.testing import capture_logs

import ishow.lifecycle
from ishow.app import Daemon
from ishow.config.load import load_config
from ishow.events import Audio
from ishow.outputs.base import Sink
from ishow.outputs.local import LocalSettings, LocalSink
from ishow.outputs.obs import ObsHub
from ishow.outputs.wav import WavSettings, WavSink
from ishow.reload import ConfigWatcher
from ishow.sources.replay import ReplaySource
from tests.conftest import espeak_config
from tests.test_reload import BASE


class Device:
    """A local audio device that records what it is given (no PortAudio needed)."""

    def __init__(self) -> None:
        self.samples = 0

    def write(self, samples: npt.NDArray[np.float32]) -> None:
        self.samples += len(samples)

    def close(self) -> None:
        pass


async def until(predicate: Any, what: str, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_finish_drains_everything_synthesized_to_every_output_while_paused(tmp_path: Path) -> None:
    cfg = espeak_config()
    cfg = dataclasses.replace(cfg, batch=dataclasses.replace(cfg.batch, max_items=2))
    device = Device()
    wav = WavSink(WavSettings(dir=tmp_path / "wav"))
    sinks: list[Sink] = [ObsHub(), wav, LocalSink(LocalSettings(), stream_factory=lambda s, rate: device)]
    daemon = Daemon(cfg, sinks=sinks, sources=[])
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    await asyncio.wait_for(daemon.started.wait(), 60)
    headers, ends = [], []
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{daemon.port}/ws/obs") as ws:
        daemon.player.pause()
        for i in range(6):
            daemon.intake.submit_text(f"user{i}", f"message number {i}")
        # two synthesized and waiting (the buffer holds 2), two more synthesized and held by the full buffer,
        # two still queued
        await until(lambda: len(daemon.audio) == 2 and daemon.pipeline.busy and len(daemon.queue) == 2, "a full buffer")
        with capture_logs() as logs:
            stop.set()
            for _ in range(10_000):
                msg = await asyncio.wait_for(ws.receive(), 30)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                        break
                    continue
                frame = json.loads(msg.data)
                if frame["type"] == "utterance":
                    headers.append(frame["raw"])
                elif frame["type"] == "end":
                    ends.append(frame["id"])
            await asyncio.wait_for(task, 60)
    spoken = [f"message number {i}" for i in range(4)]
    assert headers == spoken and len(ends) == 4  # the OBS page got all four, paused or not
    assert len(list((tmp_path / "wav").glob("*.wav"))) == 4  # the wav output wrote all four
    assert device.samples > 0 and sinks[2].state()["played"] == 4  # the speakers played all four
    assert daemon.ledger.spoken_count == 4 and daemon.ledger.dropped_counts == {"shutdown": 2}
    (line,) = [e for e in logs if e["event"] == "shutdown: messages not spoken"]
    assert line["dropped"] == 2 and line["reason"] == "shutdown"
    assert daemon.ledger.accepted == daemon.ledger.spoken_count + sum(daemon.ledger.dropped_counts.values())


async def test_cancelled_ids_do_not_leak_when_synthesis_raises(start_daemon: Any) -> None:
    rd = await start_daemon(espeak_config())
    daemon = rd.daemon
    entered, release = asyncio.Event(), asyncio.Event()

    async def broken(requests: Any) -> Any:
        entered.set()
        await release.wait()
        raise RuntimeError("executor gone")

    daemon.worker.synthesize = broken
    a = daemon.intake.submit_text("a", "first message")
    b = daemon.intake.submit_text("b", "second message")
    await asyncio.wait_for(entered.wait(), 10)
    assert daemon.controls.remove(b.id)
    release.set()
    await until(lambda: not daemon.pipeline.busy and not daemon.ledger.still_open(), "the batch to fail")
    assert daemon.pipeline.cancelled == set()
    assert daemon.ledger.dropped_counts == {"removed": 1, "synth_failed": 1}
    assert a.id not in daemon.pipeline.cancelled


async def test_supervisor_restarts_a_failed_task_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ishow.lifecycle, "SUPERVISOR_BACKOFF_S", (0.01, 0.04))
    daemon = Daemon(espeak_config(), sinks=[], sources=[])
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) < 4:
            raise OSError("inotify watch limit reached")

    with capture_logs() as logs:
        await asyncio.wait_for(daemon._supervise(flaky, "config watcher"), 10)
    assert len(runs) == 4  # three failures, restarted each time, then it ran to its end
    fails = [e for e in logs if e["event"] == "config watcher failed; restarting it"]
    assert [e["retry_in_s"] for e in fails] == [0.01, 0.02, 0.04]


async def test_an_output_that_fails_to_close_is_logged(start_daemon: Any) -> None:
    class Stubborn(Sink):
        name = "stubborn"

        async def start(self) -> None:
            pass

        async def play(self, audio: Audio) -> None:
            pass

        async def close(self) -> None:
            raise OSError("device busy")

        def state(self) -> dict[str, object]:
            return {"name": self.name, "active": True}

    rd = await start_daemon(espeak_config(), sinks=[Stubborn()])
    with capture_logs() as logs:
        rd.stop.set()
        await asyncio.wait_for(rd.task, 30)
    (line,) = [e for e in logs if e["event"] == "output failed to close"]
    assert line["output"] == "stubborn" and line["log_level"] == "error" and line["exc_info"] is True


async def test_batch_edits_are_listed_as_restart_only(start_daemon: Any) -> None:
    rd = await start_daemon(espeak_config())
    daemon = rd.daemon
    new = dataclasses.replace(daemon.cfg, batch=dataclasses.replace(daemon.cfg.batch, max_items=3))
    with capture_logs() as logs:
        await daemon.apply_config(new)
    (line,) = [e for e in logs if e["event"] == "these config sections change only after a restart"]
    assert line["sections"] == ["batch"] and line["log_level"] == "warning"
    assert daemon.cfg.batch.max_items != 3  # the running batcher keeps its settings


async def test_demo_waits_until_someone_listens(start_daemon: Any) -> None:
    demo = ReplaySource("demo", None, speed=20.0)
    with capture_logs() as logs:
        rd = await start_daemon(espeak_config(), sources=[demo])
        await until(lambda: any(e["event"].startswith("nobody is listening") for e in logs), "the hint")
        await asyncio.sleep(0.5)
        assert rd.daemon.ledger.accepted == 0 and demo.state == "idle"  # held: nobody would hear it
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/obs") as ws:
            for _ in range(1000):
                msg = await asyncio.wait_for(ws.receive(), 60)
                if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "utterance":
                    break
    hints = [e for e in logs if e["event"].startswith("nobody is listening")]
    assert [e["event"] for e in hints] == [f"nobody is listening: open {rd.url}/obs"]  # said once


async def test_shutdown_while_the_demo_waits_does_not_replay_it(start_daemon: Any) -> None:
    demo = ReplaySource("demo", None, speed=1.0)  # the 12 s demo at its real pace
    with capture_logs() as logs:
        rd = await start_daemon(espeak_config(), sources=[demo])
        await until(lambda: any(e["event"].startswith("nobody is listening") for e in logs), "the hint")
        rd.stop.set()
        await asyncio.wait_for(rd.task, 8)  # well below the demo's length: the demo never started
    assert demo.state == "idle" and rd.daemon.ledger.accepted == 0
    assert not any(e["event"] == "replay finished" for e in logs)


async def test_watcher_ignores_a_log_file_next_to_the_config(tmp_path: Path) -> None:
    import shutil

    from tests.conftest import REPO

    shutil.copytree(REPO / "voices", tmp_path / "voices")
    path = tmp_path / "ishowtts.toml"
    path.write_text(BASE.format(root=tmp_path, banned="[]", extra=""), encoding="utf-8")
    applied: list[bool] = []

    async def apply(cfg: Any, voices_changed: bool) -> None:
        applied.append(voices_changed)

    watcher = ConfigWatcher(path, load_config(path), apply, debounce_ms=50)
    assert watcher.files == {path.resolve(), (tmp_path / "voices/default_zh.wav").resolve(),
                             (tmp_path / "voices/default_en.wav").resolve()}  # fmt: skip
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.sleep(0.5)
        log = tmp_path / "ishow.log"
        for i in range(20):  # `ishow run > ishow.log` next to the config
            with log.open("a") as f:
                f.write(f"line {i}\n")
            await asyncio.sleep(0.02)
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "other.txt").write_text("x")
        await asyncio.sleep(0.5)
        assert applied == []
        path.write_text(BASE.format(root=tmp_path, banned='["x"]', extra=""), encoding="utf-8")
        await until(lambda: applied == [False], "the config edit", timeout=15)
        (tmp_path / "voices" / "new_voice.wav").write_bytes((tmp_path / "voices/default_en.wav").read_bytes())
        await until(lambda: applied == [False, True], "a new voice file", timeout=15)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert watcher.wanted(None, str(path)) and not watcher.wanted(None, str(tmp_path / "ishow.log"))  # type: ignore[arg-type]


def test_ledger_ends_each_message_once_and_logs_paid_drops_at_info() -> None:
    from ishow.events import EventKind, Priority, Utterance
    from ishow.ledger import Ledger
    from ishow.metrics import Metrics

    metrics = Metrics()
    ledger = Ledger(metrics)
    paid = Utterance(id="sc1", text="谢谢", voice="v", user="rich", kind=EventKind.SUPER_CHAT, priority=Priority.PAID)
    chat = Utterance(id="c1", text="hi", voice="v")
    ledger.accept(paid)
    ledger.accept(chat)
    with capture_logs() as logs:
        assert ledger.dropped(paid, "cleared") is True
        assert ledger.dropped(paid, "stale") is False  # already ended: not counted twice
        assert ledger.spoken(paid) is False
        assert ledger.spoken(chat) is True
    (line,) = [e for e in logs if e["event"] == "message dropped"]
    assert (line["log_level"], line["reason"], line["kind"], line["user"]) == ("info", "cleared", "super_chat", "rich")
    assert ledger.dropped_counts == {"cleared": 1} and ledger.spoken_count == 1 and len(ledger) == 0
    assert metrics.dropped.labels("cleared")._value.get() == 1 and metrics.spoken._value.get() == 1


async def test_player_keeps_a_streamed_message_together_and_drops_its_rest_on_skip() -> None:
    from ishow.audio_buffer import AudioBuffer
    from ishow.events import Utterance
    from ishow.player import Player

    class Recorder(Sink):
        name = "rec"

        def __init__(self) -> None:
            self.got: list[tuple[str, int]] = []
            self.skipped: list[str] = []

        async def start(self) -> None:
            pass

        async def play(self, audio: Audio) -> None:
            self.got.append((audio.utterance.id, audio.part))

        async def skip(self, utterance_id: str) -> None:
            self.skipped.append(utterance_id)

        async def close(self) -> None:
            pass

        def state(self) -> dict[str, object]:
            return {"name": self.name, "active": True}

    def part(uid: str, n: int, final: bool) -> Audio:
        return Audio(Utterance(id=uid, text=uid, voice="v"), np.zeros(240, np.float32), part=n, final=final)

    rec = Recorder()
    buffer = AudioBuffer(max_items=1)
    spoken: list[str] = []
    player = Player([rec], buffer, realtime=False, on_spoken=lambda a: spoken.append(a.utterance.id))
    task = asyncio.create_task(player.run())
    await buffer.put(part("A", 0, False))
    await until(lambda: rec.got == [("A", 0)], "A's first part")
    put_b = asyncio.create_task(buffer.put(part("B", 0, True)))  # waits for room: the buffer holds one
    await buffer.put(part("A", 1, True))  # a later part never waits for room
    await put_b
    await until(lambda: rec.got == [("A", 0), ("A", 1), ("B", 0)], "A whole, then B")
    await buffer.put(part("C", 0, False))
    await until(lambda: player.current is not None and player.current.id == "C", "C playing")
    assert (await player.skip()) is not None
    await buffer.put(part("D", 0, True))
    await buffer.put(part("C", 1, True))  # the rest of the skipped message arrives: not handed to the sinks
    await buffer.put(None)
    await asyncio.wait_for(task, 10)
    assert rec.got == [("A", 0), ("A", 1), ("B", 0), ("C", 0), ("D", 0)]
    assert rec.skipped == ["C"] and spoken == ["A", "B", "C", "D"]


def test_later_parts_grow_so_each_is_made_while_the_one_before_plays() -> None:
    from ishow.events import Utterance
    from ishow.synth_stage import _Continuation

    c = _Continuation(Utterance(id="x", text="t", voice="v"), tuple("abcdef"), np.zeros(0, np.float32))
    parts = []
    while c.chunks:
        parts.append("".join(c.now))
        c = _Continuation(c.utterance, c.later, c.tail, c.part + 1)
    assert parts == ["a", "bc", "def"]  # 1, 2, then up to 4 chunks per batch
