from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ishow.config_load import default_config, load_config, parse_config
from ishow.errors import ConfigError
from tests.conftest import REPO


def test_shipped_config_equals_embedded_defaults() -> None:
    assert load_config(REPO / "config" / "ishowtts.toml") == default_config(REPO)


def test_defaults_are_what_a_streamer_needs() -> None:
    cfg = default_config(REPO)
    assert cfg.server.host == "127.0.0.1" and cfg.server.port == 27121
    assert cfg.engine.nfe_step == 7 and cfg.engine.fallback == "espeak"
    assert 50 <= cfg.batch.window_ms <= 100
    assert cfg.engine.checkpoint == REPO / "models/F5TTS_v1_Base/model_1250000.safetensors"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[server]\nport = 70000", "server.port: must be 0–65535, got 70000"),
        ("[server]\nprot = 1", "server.prot: unknown key; expected one of"),
        ('[engine]\nnfe_step = "7"', "engine.nfe_step: expected an integer, got '7'"),
        ('[engine]\nkind = "vits"', "engine.kind: must be one of 'f5', 'espeak', 'remote', got 'vits'"),
        ("[batch]\nwindow_ms = 500", "batch.window_ms: must be 50–100 ms, got 500"),
        ('[[sources]]\nkind = "myspace"', "sources[0].kind: must be one of"),
        ('[[voices]]\nid = "a b"\nref_text = "x"', "voices[0].id: must be letters, digits, _ or -, got 'a b'"),
        ('[[voices]]\nref_text = "x"', "voices[0].id: missing required key"),
        ('[server]\nhost = "0.0.0.0"', "server.token: required when server.host is not loopback"),
        ('[voice_map]\ndefault = "ghost"', "voice_map.default: unknown voice 'ghost'"),
        ("server = 5", "server: expected a table, got 5"),
        ("[filter]\nbanned_words = [1]", "filter.banned_words[0]: expected a string, got 1"),
        ("[outputs.local]\nvolume = -1", "outputs.local.volume: must be 0–4, got -1.0"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_each_problem_names_the_key_path_and_value(toml: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(toml, REPO)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('[server]\nport = -1\n[engine]\nprecision = "int3"\n[batch]\nmax_items = 0', REPO)
    assert len(info.value.problems) == 3


def test_relative_paths_resolve_against_root(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "x.toml"
    path.write_text('root = ".."\n[engine]\ncheckpoint = "w/m.safetensors"\n')
    cfg = load_config(path)
    assert cfg.engine.checkpoint == tmp_path / "w" / "m.safetensors"
    assert cfg.voices[0].ref_audio == tmp_path / "voices" / "default_zh.wav"


def test_check_config_cli_lists_problems_and_exits_nonzero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = "x"\n[engine]\nnfe_step = 0\n')
    proc = subprocess.run([sys.executable, "-m", "ishow", "check-config", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "server.port: expected an integer, got 'x'" in proc.stderr
    assert "engine.nfe_step: must be 1–64, got 0" in proc.stderr
    good = subprocess.run(
        [sys.executable, "-m", "ishow", "check-config", str(REPO / "config" / "ishowtts.toml")],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stderr


def test_run_with_invalid_config_exits_nonzero_listing_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = 99999\nhost = "10.0.0.1"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "ishow", "run", "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "server.port" in proc.stderr and "server.token" in proc.stderr
