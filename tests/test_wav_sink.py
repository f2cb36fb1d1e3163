"""WavSink: one readable 24 kHz PCM16 file per utterance; disk errors are logged, never raised."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from structlog.testing import capture_logs

from ishow.events import Audio, Utterance
from ishow.outputs import wav as wav_module
from ishow.outputs.wav import WavSettings, WavSink, wav_name


def make_audio(uid: str, n: int) -> Audio:
    rng = np.random.default_rng(len(uid) + n)
    samples = rng.uniform(-0.9, 0.9, n).astype(np.float32)
    samples[:3] = np.array([1.5, -1.5, 0.0], dtype=np.float32)[:n]  # out of range: clipped like Audio.pcm16()
    return Audio(utterance=Utterance(id=uid, text="hi", voice="v"), samples=samples)


@pytest.mark.asyncio
async def test_files_written_readable_right_length(tmp_path: Path) -> None:
    folder = tmp_path / "rec" / "nested"
    sink = WavSink(WavSettings(dir=folder))
    audios = [make_audio("u1-5", 24_000), make_audio("u2/../../evil", 1_234), make_audio("u3", 0)]
    async with asyncio.timeout(20):
        await sink.start()
        assert folder.is_dir()
        for audio in audios:
            await sink.play(audio)
        await sink.close()  # writes everything pending
        await sink.close()

    files = sorted(folder.iterdir())
    assert [f.suffix for f in files] == [".wav"] * 3
    assert not list(folder.glob(".*.tmp"))
    by_id = {audio.utterance.id: audio for audio in audios}
    for f in files:
        info = sf.info(f)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (24_000, 1, "PCM_16", "WAV")
        data, _ = sf.read(f, dtype="int16")
        match = [a for uid, a in by_id.items() if f.name.endswith(wav_name(a, 0).split("-", 2)[2])]
        assert len(match) == 1, f.name
        audio = match[0]
        assert len(data) == len(audio.samples)
        assert data.tobytes() == audio.pcm16()
    assert all(f.parent == folder for f in files)  # the unsafe id did not escape the folder
    state = sink.state()
    assert state["written"] == 3
    assert state["failed"] == 0
    assert state["active"] is False


def test_wav_name_is_sortable_and_safe() -> None:
    audio = make_audio("a b/c:d", 1)
    name = wav_name(audio, 1_700_000_000.25)
    assert name.endswith("-a_b_c_d.wav")
    assert name[8] == "-"
    assert name[15] == "."
    assert name[16:19] == "250"


@pytest.mark.asyncio
async def test_unwritable_dir_is_logged_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the folder should be")
    sink = WavSink(WavSettings(dir=blocker / "out"))
    async with asyncio.timeout(20):
        with capture_logs() as logs:
            await sink.start()
            await sink.play(make_audio("u1", 100))
            await sink.play(make_audio("u2", 100))
            await sink.close()
    errors = [e for e in logs if e["log_level"] == "error"]
    assert errors[0]["event"].startswith("wav output folder cannot be created")
    skipped = [e for e in errors if e["event"] == "wav file not written; skipped"]
    assert len(skipped) == 2
    assert "ENOTDIR" in skipped[0]["error"]
    assert sink.state()["failed"] == 2
    assert sink.state()["written"] == 0


@pytest.mark.asyncio
async def test_disk_full_skips_that_file_and_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = open
    calls = {"n": 0}

    def flaky_open(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "w" in mode:
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(wav_module, "open", flaky_open, raising=False)
    sink = WavSink(WavSettings(dir=tmp_path))
    async with asyncio.timeout(20):
        with capture_logs() as logs:
            await sink.start()
            await sink.play(make_audio("full", 100))
            await sink.play(make_audio("ok", 100))
            await sink.close()
    [failure] = [e for e in logs if e["event"] == "wav file not written; skipped"]
    assert failure["error"] == "ENOSPC No space left on device"
    names = await asyncio.to_thread(lambda: [f.name.split("-", 2)[2] for f in tmp_path.glob("*.wav")])
    assert names == ["ok.wav"]
    assert sink.state()["failed"] == 1
    assert sink.state()["written"] == 1


@pytest.mark.asyncio
async def test_backlog_is_bounded(tmp_path: Path) -> None:
    sink = WavSink(WavSettings(dir=tmp_path, max_pending=2))
    async with asyncio.timeout(20):
        await sink.start()
        with capture_logs() as logs:
            for i in range(5):  # play() never yields, so the writer cannot take any yet: 2 fit, 3 are skipped
                await sink.play(make_audio(f"b{i}", 10))
        await sink.close()
    assert sink.state()["skipped"] == 3
    assert sum(e["event"] == "wav output behind; file skipped" for e in logs) == 3
    assert len(await asyncio.to_thread(lambda: list(tmp_path.glob("*.wav")))) == 2


async def test_a_streamed_message_is_one_file(tmp_path: Path) -> None:
    sink = WavSink(WavSettings(dir=tmp_path))
    await sink.start()
    utt = Utterance(id="long", text="t", voice="v")
    parts = [np.full(n, 0.1 * (i + 1), dtype=np.float32) for i, n in enumerate((100, 250, 50))]
    for i, samples in enumerate(parts):
        await sink.play(Audio(utterance=utt, samples=samples, part=min(i, 1), final=i == 2))
    await sink.flush()
    await sink.close()
    (path,) = await asyncio.to_thread(lambda: list(tmp_path.glob("*.wav")))
    data, _ = sf.read(path, dtype="float32")
    assert len(data) == 400
