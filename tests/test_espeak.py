"""The espeak CPU engine: real libespeak-ng from the espeakng-loader wheel, no mocks."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from ishow.config.voice import VoiceSpec
from ishow.engine.base import SynthRequest
from ishow.engine.espeak import EspeakEngine, sanitize, split_runs
from ishow.errors import InputError, ModelLoadError
from tools import make_default_voices

SR = 24_000
RMS_FLOOR = 0.02  # espeak speech measures 0.06–0.17; silence is 0
AUTO = VoiceSpec(id="v")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine() -> Iterator[EspeakEngine]:
    e = EspeakEngine()
    e.load()
    yield e
    e.close()


def say(engine: EspeakEngine, text: str, voice: VoiceSpec = AUTO, speed: float = 1.0) -> npt.NDArray[np.float32]:
    (out,) = engine.synthesize([SynthRequest(text=text, voice=voice, speed=speed)])
    return out


def rms(x: npt.NDArray[np.float32]) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def check_audio(x: npt.NDArray[np.float32]) -> float:
    """Shape/dtype/range checks; returns the duration in seconds."""
    assert x.dtype == np.float32
    assert x.ndim == 1
    assert np.all(np.isfinite(x))
    assert float(np.max(np.abs(x))) <= 1.0
    assert rms(x) > RMS_FLOOR
    return x.size / SR


def test_engine_facts(engine: EspeakEngine) -> None:
    assert engine.kind == "espeak"
    assert engine.sample_rate == SR
    info = engine.describe()
    assert info["kind"] == "espeak"
    assert str(info["library"]).endswith((".so", ".dylib", ".dll"))
    assert str(info["version"])[:1].isdigit()


# measured at speed 1.0: zh 0.22–0.36 s/char, en 0.06–0.18 s/char (short words are dearer per char)
@pytest.mark.parametrize("text", ["你好", "谢谢老板的火箭", "大家好，欢迎来到我的直播间，今天我们一起聊天玩游戏。"])
def test_chinese(engine: EspeakEngine, text: str) -> None:
    seconds = check_audio(say(engine, text))
    assert 0.05 * len(text) <= seconds <= 0.6 * len(text)


@pytest.mark.parametrize("text", ["hi", "thanks for the sub", "Hello everyone, welcome to the stream."])
def test_english(engine: EspeakEngine, text: str) -> None:
    seconds = check_audio(say(engine, text))
    assert 0.02 * len(text) <= seconds <= 0.2 * len(text)


@pytest.mark.parametrize("text", ["主播今天玩什么game", "GG 主播太强了", "hi 你好！Hello world。好的"])
def test_mixed(engine: EspeakEngine, text: str) -> None:
    seconds = check_audio(say(engine, text))
    assert 0.03 * len(text) <= seconds <= 0.6 * len(text)


def test_mixed_has_no_long_gap(engine: EspeakEngine) -> None:
    x = say(engine, "主播今天玩什么game")
    quiet = np.abs(x) < 10 ** (-50 / 20)
    longest = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        longest = max(longest, run)
    assert longest / SR < 0.3


def test_mixed_is_both_voices(engine: EspeakEngine) -> None:
    zh = say(engine, "主播今天玩什么")
    en = say(engine, "game")
    both = say(engine, "主播今天玩什么game")
    assert both.size > zh.size + en.size * 0.5


def test_speed(engine: EspeakEngine) -> None:
    for text in ("谢谢老板的火箭", "thanks for the sub"):
        normal = say(engine, text).size
        fast = say(engine, text, speed=2.0).size
        slow = say(engine, text, speed=0.5).size
        assert fast < 0.75 * normal < normal < slow
    # the voice's own speed multiplies the request's
    fast_voice = VoiceSpec(id="fast", speed=2.0)
    assert say(engine, "thanks for the sub", voice=fast_voice).size < 0.75 * say(engine, "thanks for the sub").size


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_speed(engine: EspeakEngine, bad: float) -> None:
    with pytest.raises(InputError, match="speed must be a positive number"):
        say(engine, "hello", speed=bad)


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\x00\x01\x7f", "\u200b\u200d", "\ue000"])
def test_empty_text(engine: EspeakEngine, text: str) -> None:
    with pytest.raises(InputError, match="empty"):
        say(engine, text)


@pytest.mark.parametrize(
    "text",
    [
        "hello\x00world",
        "a\x01b\x7fc\x1b[31m red",
        "主播\r\n你好\t呀",
        "nice 🎉🎉🔥 lol",
        "666",
        "[[h@'loU]] <speak>x</speak> &amp;",
        "x\ud800y",  # lone surrogate
        "caf\u00e9 na\u0308ive \u202eevil",
    ],
)
def test_odd_text_speaks(engine: EspeakEngine, text: str) -> None:
    check_audio(say(engine, text))


@pytest.mark.parametrize("text", ["🎉", "。。。", "!!!", "-"])
def test_unpronounceable_text_does_not_crash(engine: EspeakEngine, text: str) -> None:
    x = say(engine, text)
    assert x.dtype == np.float32 and x.ndim == 1 and np.all(np.isfinite(x))


def test_batch(engine: EspeakEngine) -> None:
    texts = ["你好", "hello there", "主播今天玩什么game"]
    outs = engine.synthesize([SynthRequest(text=t, voice=AUTO) for t in texts])
    assert len(outs) == 3
    for text, out in zip(texts, outs, strict=True):
        check_audio(out)
        # libespeak-ng's pitch-flutter state drifts between calls: same speech within a few samples
        assert abs(out.size - say(engine, text).size) < 0.02 * out.size


def test_empty_batch(engine: EspeakEngine) -> None:
    assert engine.synthesize([]) == []


def test_explicit_voice(engine: EspeakEngine) -> None:
    gb = say(engine, "hello there", voice=VoiceSpec(id="gb", espeak="en"))
    us = say(engine, "hello there", voice=VoiceSpec(id="us", espeak="en-us"))
    female = say(engine, "hello there", voice=VoiceSpec(id="f", espeak="en-us+f3"))
    for x in (gb, us, female):
        check_audio(x)
    assert not np.array_equal(gb, us)
    assert not np.array_equal(us, female)
    # an explicit voice reads the whole text, Chinese included (cmn reads Latin letters as English)
    check_audio(say(engine, "主播今天玩什么game", voice=VoiceSpec(id="zh", espeak="cmn")))


def test_unknown_voice(engine: EspeakEngine) -> None:
    with pytest.raises(InputError, match=r"unknown espeak voice 'xx-nope'.*'cmn', 'en-us'"):
        say(engine, "hello", voice=VoiceSpec(id="x", espeak="xx-nope"))
    with pytest.raises(InputError, match="empty or contains NUL"):
        say(engine, "hello", voice=VoiceSpec(id="x", espeak="en\x00us"))
    check_audio(say(engine, "hello"))  # the engine still works afterwards


def test_list_voices(engine: EspeakEngine) -> None:
    voices = engine.list_voices()
    ids = {v.identifier for v in voices}
    assert {"sit/cmn", "gmw/en-US"} <= ids
    cmn = next(v for v in voices if v.identifier == "sit/cmn")
    assert "cmn" in cmn.languages
    check_audio(say(engine, "你好"))  # listing does not disturb synthesis


def test_threads_share_the_library_safely(engine: EspeakEngine) -> None:
    texts = ["你好世界", "hello world", "主播今天玩什么game", "thanks for the sub"]
    expected = [say(engine, t) for t in texts]
    results: dict[int, npt.NDArray[np.float32]] = {}
    other = EspeakEngine()
    other.load()

    def work(i: int) -> None:
        results[i] = say(engine if i % 2 else other, texts[i % len(texts)])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 8
    for i, out in results.items():
        assert abs(out.size - expected[i % len(texts)].size) < 0.02 * out.size


def test_synthesize_before_load() -> None:
    with pytest.raises(ModelLoadError, match=r"load\(\) must be called"):
        EspeakEngine().synthesize([SynthRequest(text="hi", voice=AUTO)])


def test_missing_library(tmp_path: Path) -> None:
    missing = tmp_path / "libespeak-ng.so"
    with pytest.raises(ModelLoadError, match="cannot load libespeak-ng from"):
        EspeakEngine(library_path=str(missing), data_path=str(tmp_path)).load()


def test_bad_data_path(tmp_path: Path) -> None:
    import espeakng_loader

    # a private copy of the library: its global state is separate from the one the other tests use
    lib = tmp_path / Path(espeakng_loader.get_library_path()).name
    shutil.copy(espeakng_loader.get_library_path(), lib)
    empty = tmp_path / "no-data"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=r"espeak_Initialize failed|lacks a required voice"):
        EspeakEngine(library_path=str(lib), data_path=str(empty)).load()


def test_sanitize() -> None:
    assert sanitize("  a\x00b\n\nc\u200bd  ") == "a b cd"
    assert sanitize("x\ud800y") == "xy"
    assert sanitize("\x1b") == ""


def test_split_runs() -> None:
    assert split_runs("主播今天玩什么game") == [("cmn", "主播今天玩什么"), ("en-us", "game")]
    assert split_runs("GG 主播太强了！") == [("en-us", "GG "), ("cmn", "主播太强了！")]
    assert split_runs("「你好」hello, 世界。") == [("cmn", "「你好」"), ("en-us", "hello, "), ("cmn", "世界。")]
    assert split_runs("こんにちは世界") == [("ja", "こんにちは"), ("cmn", "世界")]
    assert split_runs("666!") == [("en-us", "666!")]
    assert split_runs("666", neutral_voice="cmn") == [("cmn", "666")]
    assert split_runs("") == []


def test_make_default_voices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert make_default_voices.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for voice in make_default_voices.DEFAULT_VOICES:
        path = tmp_path / voice.file
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert 5.0 <= info.duration <= 7.0
        assert voice.transcript in printed
        assert not any(ch.isdigit() for ch in voice.transcript)
        audio, _ = sf.read(str(path), dtype="float32")
        assert abs(rms(audio) - make_default_voices.TARGET_RMS) < 0.005


def test_committed_default_voices_are_what_the_script_renders(tmp_path: Path) -> None:
    # a fresh process renders byte-identical audio (within one process espeak's flutter state drifts)
    subprocess.run(
        [sys.executable, "-m", "tools.make_default_voices", str(tmp_path)],
        check=True,
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    for voice in make_default_voices.DEFAULT_VOICES:
        committed = REPO / "voices" / voice.file
        assert committed.exists(), f"{committed} is missing: run python -m tools.make_default_voices voices/"
        assert committed.read_bytes() == (tmp_path / voice.file).read_bytes()
    readme = (REPO / "voices" / "README.md").read_text(encoding="utf-8")
    for voice in make_default_voices.DEFAULT_VOICES:
        assert voice.transcript in readme
