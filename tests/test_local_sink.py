"""LocalSink: no PortAudio / no device → one warning, inactive, play() a no-op; ordering via a fake stream."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import MutableMapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from structlog.testing import capture_logs

from ishow.events import Audio, Utterance
from ishow.outputs.local import LocalSettings, LocalSink


def make_audio(uid: str, n: int, value: float) -> Audio:
    return Audio(utterance=Utterance(id=uid, text="hi", voice="v"), samples=np.full(n, value, dtype=np.float32))


def _no_audio_warnings(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if str(e["event"]).startswith("no audio output:")]


def _portaudio_missing() -> bool:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return True
    except ImportError:
        return False
    return False


@pytest.mark.asyncio
@pytest.mark.skipif(not _portaudio_missing(), reason="PortAudio is installed here; the forced variant covers this")
async def test_real_sounddevice_without_portaudio_is_inactive() -> None:
    sink = LocalSink(LocalSettings())
    async with asyncio.timeout(20):
        with capture_logs() as logs:
            await sink.start()
            await sink.start()  # a second start neither raises nor warns again
            await sink.play(make_audio("u1", 100, 0.1))
            await sink.close()
            await sink.close()
    [warning] = _no_audio_warnings(logs)
    assert warning["log_level"] == "warning"
    assert "PortAudio library not found" in str(warning["event"])
    assert str(warning["event"]).endswith("audio still goes to the OBS page at /obs")
    state = sink.state()
    assert state["active"] is False
    assert state["queued"] == 0
    assert state["played"] == 0
    assert state["problem"] == "PortAudio library not found"


@pytest.mark.asyncio
async def test_failing_open_is_one_warning_and_inactive() -> None:
    def no_portaudio(settings: LocalSettings, rate: int) -> _FakeStream:
        raise OSError("PortAudio library not found")

    sink = LocalSink(LocalSettings(device="Speakers"), stream_factory=no_portaudio)
    async with asyncio.timeout(20):
        with capture_logs() as logs:
            await sink.start()
            for i in range(3):
                await sink.play(make_audio(f"u{i}", 100, 0.1))
            await sink.close()
    [warning] = _no_audio_warnings(logs)
    assert warning["event"] == "no audio output: PortAudio library not found; audio still goes to the OBS page at /obs"
    assert sink.state()["active"] is False
    assert sink.state()["queued"] == 0


class _FakeStream:
    """Records what the playback thread writes; ``gate`` lets a test hold the 'device'."""

    def __init__(self) -> None:
        self.blocks: list[npt.NDArray[np.float32]] = []
        self.closed = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def write(self, samples: npt.NDArray[np.float32]) -> None:
        assert self.gate.wait(10)
        self.blocks.append(samples.copy())

    def close(self) -> None:
        self.closed.set()


async def _wait(predicate: object, what: str) -> None:
    for _ in range(1000):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.asyncio
async def test_plays_in_order_back_to_back_with_volume() -> None:
    fake = _FakeStream()
    sink = LocalSink(LocalSettings(volume=0.5, block_s=0.01), stream_factory=lambda s, rate: fake)
    audios = [make_audio("a", 1000, 0.2), make_audio("b", 7, 0.4), make_audio("c", 2401, 0.6)]
    async with asyncio.timeout(20):
        await sink.start()
        assert sink.state()["active"] is True
        for audio in audios:
            await sink.play(audio)
        await _wait(lambda: sink.state()["played"] == 3, "3 utterances played")
        await sink.close()
    assert fake.closed.is_set()
    assert all(len(b) <= 240 for b in fake.blocks)  # written in block_s blocks
    written = np.concatenate(fake.blocks)
    expected = np.concatenate([a.samples * np.float32(0.5) for a in audios])
    np.testing.assert_array_equal(written, expected)  # in order, nothing overlapped, dropped or repeated


@pytest.mark.asyncio
async def test_full_queue_drops_oldest_waiting() -> None:
    fake = _FakeStream()
    fake.gate.clear()  # the device accepts nothing until released
    sink = LocalSink(LocalSettings(max_queue=2, block_s=0.5), stream_factory=lambda s, rate: fake)
    async with asyncio.timeout(20):
        await sink.start()
        await sink.play(make_audio("first", 10, 0.1))
        await _wait(lambda: sink.state()["playing"] == "first", "first playing")
        with capture_logs() as logs:
            for uid, v in (("w1", 0.2), ("w2", 0.3), ("w3", 0.4)):
                await sink.play(make_audio(uid, 10, v))
        [drop] = [e for e in logs if e["event"] == "local audio behind; dropped the oldest waiting utterance"]
        assert drop["dropped"] == "w1"
        fake.gate.set()
        await _wait(lambda: sink.state()["played"] == 3, "3 played")
        await sink.close()
    assert [float(b[0]) for b in fake.blocks] == pytest.approx([0.1, 0.3, 0.4])
    assert sink.state()["dropped"] == 1


@pytest.mark.asyncio
async def test_close_stops_a_stuck_playback_promptly() -> None:
    class Paced(_FakeStream):  # like a device: each block takes a moment to be accepted
        def write(self, samples: npt.NDArray[np.float32]) -> None:
            time.sleep(0.002)
            super().write(samples)

    fake = Paced()
    sink = LocalSink(LocalSettings(block_s=0.01), stream_factory=lambda s, rate: fake)
    async with asyncio.timeout(20):
        await sink.start()
        await sink.play(make_audio("long", 24_000 * 60, 0.1))  # a minute: 6000 blocks of 240 samples
        await _wait(lambda: len(fake.blocks) > 2, "playback started")
        await sink.close()
    assert fake.closed.is_set()
    assert len(fake.blocks) < 6000  # cut at a block boundary, not played out
    assert sink.state()["queued"] == 0


@pytest.mark.asyncio
async def test_device_failure_mid_stream_makes_it_inactive() -> None:
    class Broken(_FakeStream):
        def write(self, samples: npt.NDArray[np.float32]) -> None:
            raise RuntimeError("device unplugged")

    fake = Broken()
    sink = LocalSink(LocalSettings(), stream_factory=lambda s, rate: fake)
    async with asyncio.timeout(20):
        with capture_logs() as logs:
            await sink.start()
            await sink.play(make_audio("x", 100, 0.1))
            await _wait(lambda: sink.state()["active"] is False, "inactive")
            await sink.play(make_audio("y", 100, 0.1))  # no-op now
            await sink.close()
    assert sink.state()["problem"] == "device unplugged"
    assert any(e["log_level"] == "error" for e in logs)
    assert fake.closed.is_set()


@pytest.mark.asyncio
async def test_skip_honours_the_utterance_id() -> None:
    """A skip for B that lands while A still plays (the hand-off window) cuts B, not A."""
    fake = _FakeStream()
    fake.gate.clear()
    sink = LocalSink(LocalSettings(block_s=0.001), stream_factory=lambda s, rate: fake)
    async with asyncio.timeout(20):
        await sink.start()
        await sink.play(make_audio("A", 240, 0.1))
        await _wait(lambda: sink.state()["playing"] == "A", "A playing")
        await sink.play(make_audio("B", 240, 0.2))
        await sink.skip("B")  # B has not started: it must not cut A, and B must not play
        fake.gate.set()
        await sink.play(make_audio("C", 24, 0.3))
        await _wait(lambda: sink.state()["played"] == 2 and sink.state()["queued"] == 0, "A and C played")
        await sink.flush()
        await sink.close()
    values = sorted({round(float(b[0]), 2) for b in fake.blocks})
    assert values == [0.1, 0.3]
    assert sum(len(b) for b in fake.blocks if round(float(b[0]), 2) == 0.1) == 240  # A played whole


@pytest.mark.asyncio
async def test_flush_plays_what_waits_before_close() -> None:
    fake = _FakeStream()
    fake.gate.clear()
    sink = LocalSink(LocalSettings(block_s=0.01), stream_factory=lambda s, rate: fake)
    async with asyncio.timeout(20):
        await sink.start()
        for uid in ("a", "b", "c"):
            await sink.play(make_audio(uid, 480, 0.1))
        flushed = asyncio.ensure_future(sink.flush())
        await asyncio.sleep(0.05)
        assert not flushed.done()  # the device holds: nothing is played yet
        fake.gate.set()
        await flushed
        await sink.close()
    assert sum(len(b) for b in fake.blocks) == 3 * 480  # everything reached the device before close
