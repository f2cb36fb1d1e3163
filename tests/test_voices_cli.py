"""`ishow voices add` / `ishow voices test` on real files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ishow.config.load import load_config
from ishow.errors import ConfigError, VoiceError
from ishow.voices import add_voice
from tests.conftest import REPO


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "ishowtts.toml", tmp_path / "config" / "ishowtts.toml")
    shutil.copytree(REPO / "voices", tmp_path / "voices")
    return tmp_path


def test_add_voice_validates_and_appends_keeping_comments(project: Path, tmp_path: Path) -> None:
    cfg_path = project / "config" / "ishowtts.toml"
    src = tmp_path / "me.flac"  # any format soundfile reads, any rate: stored as 24 kHz wav
    data, sr = sf.read(REPO / "voices" / "default_en.wav", dtype="float32")
    sf.write(src, np.repeat(data[:, None], 2, axis=1), sr, format="FLAC")  # stereo on purpose
    dest, info = add_voice(cfg_path, "me", src, "Hello everyone, welcome to the stream.")
    assert dest == project / "voices" / "me.wav" and 5 < info.seconds < 8
    assert sf.info(dest).samplerate == 24000 and sf.info(dest).channels == 1
    text = cfg_path.read_text(encoding="utf-8")
    assert "# OBS browser source" in text  # comments kept
    cfg = load_config(cfg_path)
    voice = cfg.voice("me")
    assert voice is not None and voice.ref_audio == dest and voice.ref_text.startswith("Hello everyone")
    with pytest.raises(ConfigError, match="already exists"):
        add_voice(cfg_path, "me", src, "again")


@pytest.mark.parametrize(
    ("seconds", "amplitude", "message"),
    [(1.0, 0.3, "lasts 1.00 s"), (20.0, 0.3, "lasts 20.00 s"), (5.0, 0.0001, "nearly silent")],
)
def test_bad_references_are_refused_and_nothing_written(
    project: Path, tmp_path: Path, seconds: float, amplitude: float, message: str
) -> None:
    cfg_path = project / "config" / "ishowtts.toml"
    before = cfg_path.read_text(encoding="utf-8")
    wav = tmp_path / "bad.wav"
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(wav, (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    with pytest.raises(VoiceError, match=message):
        add_voice(cfg_path, "bad", wav, "words")
    assert cfg_path.read_text(encoding="utf-8") == before
    assert not (project / "voices" / "bad.wav").exists()


def test_voices_cli_add_then_test(project: Path) -> None:
    cfg_path = project / "config" / "ishowtts.toml"
    base = [sys.executable, "-m", "ishow", "voices"]
    add = subprocess.run(
        [*base, "add", "guest", str(project / "voices" / "default_zh.wav"), "大家好，欢迎来到我的直播间", "--config",
         str(cfg_path)], capture_output=True, text=True, timeout=120, cwd=project,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    out = project / "guest.wav"
    test = subprocess.run(
        [*base, "test", "guest", "测试一下新的声音", "--engine", "espeak",
         "--config", str(cfg_path), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=project,
    )  # fmt: skip
    assert test.returncode == 0, test.stderr
    assert "voice guest" in test.stdout and sf.info(out).duration > 0.5
    unknown = subprocess.run(
        [*base, "test", "ghost", "hi", "--engine", "espeak", "--config", str(cfg_path), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=project,
    )  # fmt: skip
    assert unknown.returncode == 1 and "unknown voice 'ghost'" in unknown.stderr
