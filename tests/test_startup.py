"""Clear startup failures (one line, exit code 2), one logging path, and first-run hints — as users run them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def run_ishow(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ishow", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def espeak_toml(tmp_path: Path, extra: str = "", port: int = 0) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'root = "{REPO}"\n[server]\nport = {port}\n[engine]\nkind = "espeak"\n[outputs.local]\nenabled = false\n'
        + extra
    )
    return cfg


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr lines that are not log records (log lines are JSON in --log-json mode)."""
    return [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("{")]


def test_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_ishow("--log-json", "run", "--config", str(espeak_toml(tmp_path, port=port)))
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc)
    assert line.startswith(f"error: port {port} on 127.0.0.1 is already in use") and "--port" in line
    assert "Traceback" not in proc.stderr


def test_unreadable_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder.toml"
    folder.mkdir()  # exists, but cannot be read as a file
    proc = run_ishow("run", "--config", str(folder))
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert line.startswith("configuration error: ") and "cannot read" in line and str(folder) in line


def test_missing_voice_file_is_one_line_each_and_exit_2(tmp_path: Path) -> None:
    voices = (
        '[[voices]]\nid = "a"\nref_audio = "/nonexistent/a.wav"\nref_text = "hello"\n'
        '[[voices]]\nid = "b"\nref_audio = "/nonexistent/b.wav"\nref_text = "hi"\n'
        '[voice_map]\ndefault = "a"\nenglish = "a"\n'
    )
    proc = run_ishow("run", "--config", str(espeak_toml(tmp_path, voices)))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = error_lines(proc)
    assert len(lines) == 2
    assert lines[0].startswith("error: voice 'a': reference audio /nonexistent/a.wav does not exist")
    assert lines[1].startswith("error: voice 'b': reference audio /nonexistent/b.wav does not exist")


def test_stdlib_and_structlog_lines_share_one_format() -> None:
    code = (
        "import logging, structlog\n"
        "from ishow.logs import configure\n"
        "configure('info', json=True)\n"
        "logging.getLogger('ishow.engine.f5_engine').warning('out of accelerator memory on a batch of %d', 8)\n"
        "logging.getLogger('watchfiles.main').info('1 change detected')\n"
        "structlog.get_logger('ishow.app').info('spoken', id='u1')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [r["event"] for r in records] == ["out of accelerator memory on a batch of 8", "spoken"]
    for r in records:
        assert {"level", "timestamp", "logger"} <= set(r)
    assert records[0]["level"] == "warning" and records[0]["logger"] == "ishow.engine.f5_engine"
    assert records[1]["level"] == "info" and records[1]["logger"] == "ishow.app" and records[1]["id"] == "u1"


def test_watchfiles_chatter_is_debug() -> None:
    code = (
        "import logging\n"
        "from ishow.logs import configure\n"
        "configure('debug', json=True)\n"
        "logging.getLogger('watchfiles.main').info('1 change detected')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    (record,) = [json.loads(line) for line in proc.stderr.splitlines()]
    assert record["level"] == "debug" and record["logger"] == "watchfiles.main"


def test_console_mode_has_level_timestamp_and_logger() -> None:
    code = (
        "import logging\n"
        "from ishow.logs import configure\n"
        "configure('info', json=False)\n"
        "logging.getLogger('ishow.engine.f5_engine').warning('retrying in halves')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    (line,) = proc.stderr.splitlines()
    assert "warning" in line and "retrying in halves" in line and "ishow.engine.f5_engine" in line
    assert line[:4].isdigit()  # starts with the timestamp


def test_voices_test_under_espeak_says_cloning_needs_f5(tmp_path: Path) -> None:
    out = tmp_path / "t.wav"
    proc = run_ishow("voices", "test", "default_zh", "你好", "--engine", "espeak", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cloning 'default_zh' needs the F5 weights" in proc.stderr and "ishow models fetch" in proc.stderr
    assert out.is_file()
