"""``ishow doctor`` against real files: good and broken configs, missing/tiny/truncated weights, a held port."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ishow.doctor import Check, exit_code, report, run_checks
from ishow.engine.f5.checkpoint import TinyPaths, write_tiny_model
from tests.conftest import REPO

CONFIG = """
root = ".."
[server]
port = {port}
[engine]
kind = "f5"
fallback = "{fallback}"
model = "tiny"
checkpoint = "{ckpt}"
vocab = "{vocab}"
vocoder = "{vocoder}"
device = "cpu"
[outputs.local]
enabled = {local}
[[sources]]
kind = "demo"
[[voices]]
id = "default_zh"
ref_audio = "voices/default_zh.wav"
ref_text = "大家好"
[[voices]]
id = "default_en"
ref_audio = "voices/default_en.wav"
ref_text = "Hello everyone"
[voice_map]
default = "default_zh"
english = "default_en"
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyPaths:
    return write_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def project(tmp: Path, tiny: TinyPaths | None, port: int, fallback: str = "espeak", local: bool = False) -> Path:
    (tmp / "config").mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "voices", tmp / "voices", dirs_exist_ok=True)
    root = tiny.root if tiny is not None else tmp / "models" / "nothing"
    path = tmp / "config" / "ishowtts.toml"
    path.write_text(CONFIG.format(port=port, fallback=fallback, ckpt=root / "model.safetensors",
                                  vocab=root / "vocab.txt", vocoder=root / "vocos",
                                  local=str(local).lower()), encoding="utf-8")  # fmt: skip
    return path


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def no_audio() -> list[dict[str, object]]:
    raise OSError("PortAudio library not found")


def test_good_config_with_tiny_weights_is_ready(tmp_path: Path, tiny: TinyPaths) -> None:
    checks = run_checks(project(tmp_path, tiny, free_port()))
    c = by_name(checks)
    assert exit_code(checks) == 0, report(checks)
    assert c["config"].ok and "valid (2 voices, 1 sources)" in c["config"].detail
    assert c["weights"].ok and "ishow metadata" in c["weights"].detail
    assert c["vocab"].ok and c["vocoder"].ok
    assert c["voice default_zh"].ok and "RMS" in c["voice default_zh"].detail
    assert c["port"].ok and "is free (loopback only)" in c["port"].detail
    assert c["obs page"].ok and "daemon not running" in c["obs page"].detail
    assert "ready to stream" in report(checks)


def test_missing_weights_warn_with_espeak_fallback_and_block_without(tmp_path: Path) -> None:
    checks = run_checks(project(tmp_path, None, free_port()))
    c = by_name(checks)
    assert exit_code(checks) == 0
    assert not c["weights"].ok and c["weights"].severity == "warning"
    assert "does not exist (the espeak fallback speaks instead)" in c["weights"].detail
    assert "ishow models fetch" in c["weights"].fix
    assert not c["vocoder"].ok and "missing config.yaml, pytorch_model.bin" in c["vocoder"].detail
    checks = run_checks(project(tmp_path, None, free_port(), fallback="none"))
    assert exit_code(checks) == 1
    assert by_name(checks)["weights"].blocks
    assert "block a stream: weights, vocab, vocoder" in report(checks)


def test_truncated_checkpoint_is_named(tmp_path: Path, tiny: TinyPaths) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny.root, broken)
    ckpt = broken / "model.safetensors"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    copy = TinyPaths(root=broken, checkpoint=ckpt, vocab=broken / "vocab.txt", vocoder=broken / "vocos")
    c = by_name(run_checks(project(tmp_path, copy, free_port())))
    assert not c["weights"].ok and str(ckpt) in c["weights"].detail
    assert "truncated or corrupt" in c["weights"].detail


def test_broken_config_lists_every_problem_and_blocks(tmp_path: Path) -> None:
    path = tmp_path / "ishowtts.toml"
    path.write_text('[server]\nport = "many"\nhost = "0.0.0.0"\n[filter]\nmax_chars = -3\n', encoding="utf-8")
    checks = run_checks(path)
    c = by_name(checks)["config"]
    assert c.blocks and exit_code(checks) == 1
    assert "server.port: expected an integer" in c.detail and "filter.max_chars: must be ≥ 1" in c.detail
    text = report(checks)
    assert "fix: edit" in text and "check-config" in text


def test_port_held_by_another_program_blocks_and_names_it(tmp_path: Path, tiny: TinyPaths) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        checks = run_checks(project(tmp_path, tiny, port))
    c = by_name(checks)["port"]
    assert c.blocks and exit_code(checks) == 1
    assert f"127.0.0.1:{port} is in use by" in c.detail
    if sys.platform == "linux":
        assert "pid " in c.detail  # this test process holds it
    assert "server.port" in c.fix


def test_audio_devices(tmp_path: Path, tiny: TinyPaths) -> None:
    path = project(tmp_path, tiny, free_port(), local=True)
    c = by_name(run_checks(path, audio_query=no_audio))["audio output"]
    assert not c.ok and c.severity == "warning" and "PortAudio" in c.detail

    def devices() -> list[dict[str, object]]:
        return [{"name": "mic", "max_output_channels": 0}, {"name": "Speakers", "max_output_channels": 2}]

    c = by_name(run_checks(path, audio_query=devices))["audio output"]
    assert c.ok and "1 output device(s): Speakers" in c.detail


async def test_running_daemon_port_and_obs_page(start_daemon: Any, tmp_path: Path, tiny: TinyPaths) -> None:
    import asyncio

    from ishow.config.load import load_config

    path = project(tmp_path, tiny, 0)
    cfg = dataclasses.replace(load_config(path), sources=())
    rd = await start_daemon(cfg)
    path.write_text(path.read_text(encoding="utf-8").replace("port = 0", f"port = {rd.daemon.port}"), "utf-8")
    checks = await asyncio.to_thread(run_checks, path)
    c = by_name(checks)
    assert c["port"].ok and "served by a running ishow daemon" in c["port"].detail
    assert c["obs page"].ok and "HTTP 200" in c["obs page"].detail and "engine f5" in c["obs page"].detail
    assert exit_code(checks) == 0


def test_cli_doctor_exit_status(tmp_path: Path, tiny: TinyPaths) -> None:
    good = project(tmp_path / "good", tiny, free_port())
    bad = tmp_path / "bad.toml"
    bad.write_text("[[[ not toml", encoding="utf-8")
    for path, rc in ((good, 0), (bad, 1)):
        proc = subprocess.run([sys.executable, "-m", "ishow", "doctor", "--config", str(path)],
                              capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
        assert proc.returncode == rc, proc.stdout + proc.stderr
        assert "[FAIL] config" in proc.stdout if rc else "ready to stream" in proc.stdout


def test_bytecode_check_warns_when_every_start_would_compile_torch_again(tmp_path: Path) -> None:
    import py_compile

    from ishow.doctor import check_bytecode
    from tests.conftest import espeak_config

    cfg = espeak_config()
    f5 = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, kind="f5"))
    source = tmp_path / "torch" / "_inductor" / "compile_fx.py"
    source.parent.mkdir(parents=True)
    source.write_text("X = 1\n", encoding="utf-8")
    assert check_bytecode(cfg, source) == []  # espeak: torch's import time does not matter
    (off,) = check_bytecode(f5, source, dont_write=True)
    assert not off.ok and off.severity == "warning" and "PYTHONDONTWRITEBYTECODE" in off.detail
    assert "compileall" in off.fix and str(tmp_path / "torch") in off.fix
    (first,) = check_bytecode(f5, source, dont_write=False)
    assert first.ok and "first start writes it" in first.detail
    py_compile.compile(str(source))  # what `python -m compileall` (or a first start) leaves behind
    (cached,) = check_bytecode(f5, source, dont_write=True)
    assert cached.ok and "cached" in cached.detail
