from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ishow.config.load import default_config, load_config, parse_config
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


def _comment_of(toml_text: str, table: str, key: str) -> str:
    """``key = ...`` in ``[table]`` of config/ishowtts.toml with its comment and its indented continuation lines."""
    lines = toml_text.split(f"\n[{table}]\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{key} ="))
    end = start + 1
    while end < len(lines) and lines[end].startswith(" ") and lines[end].lstrip().startswith("#"):
        end += 1
    return "\n".join(lines[start:end])


def test_allowed_values_are_defined_once_and_used_everywhere() -> None:
    """The registries build exactly the kinds validation accepts, and the shipped config documents each value."""
    from ishow.config import choices
    from ishow.engine.registry import ENGINE_CLASSES
    from ishow.sources.registry import SOURCE_CLASSES

    assert tuple(ENGINE_CLASSES) == choices.ENGINE_KINDS
    assert tuple(SOURCE_CLASSES) == choices.SOURCE_KINDS
    shipped = (REPO / "config" / "ishowtts.toml").read_text(encoding="utf-8")
    documented = {
        "kind": choices.ENGINE_KINDS,
        "fallback": choices.ENGINE_FALLBACKS,
        "model": choices.MODELS,
        "device": choices.DEVICES,
        "precision": choices.PRECISIONS,
        "on_shutdown": choices.ON_SHUTDOWN,
        "vocoder_backend": choices.VOCODER_BACKENDS,
    }
    for key, values in documented.items():
        comment = _comment_of(shipped, "engine", key)
        missing = [v for v in values if v not in comment]
        assert not missing, f"config/ishowtts.toml [engine] {key} does not mention {missing}: {comment!r}"
    missing = [k for k in choices.SOURCE_KINDS if f'"{k}"' not in shipped]
    assert not missing, f"config/ishowtts.toml names no source of kind {missing}"


@pytest.mark.parametrize(
    ("key", "values"),
    [
        ("kind", "ENGINE_KINDS"),
        ("fallback", "ENGINE_FALLBACKS"),
        ("model", "MODELS"),
        ("precision", "PRECISIONS"),
        ("on_shutdown", "ON_SHUTDOWN"),
        ("vocoder_backend", "VOCODER_BACKENDS"),
    ],
)
def test_validation_accepts_exactly_the_choices(key: str, values: str) -> None:
    from ishow.config import choices

    allowed: tuple[str, ...] = getattr(choices, values)
    for value in allowed:
        cfg = parse_config(f'[engine]\n{key} = "{value}"\n', REPO)
        assert getattr(cfg.engine, key) == value
    with pytest.raises(ConfigError, match=f"engine.{key}: must be one of {choices.one_of(allowed)}"):
        parse_config(f'[engine]\n{key} = "no-such-value"\n', REPO)


def test_max_batch_frames_is_read_and_checked() -> None:
    assert parse_config("[engine]\nmax_batch_frames = 16384\n", REPO).engine.max_batch_frames == 16384
    assert default_config().engine.max_batch_frames == 10240
    with pytest.raises(ConfigError, match=r"engine.max_batch_frames: must be 1024–1048576 \(rows × frames\), got 100"):
        parse_config("[engine]\nmax_batch_frames = 100\n", REPO)
