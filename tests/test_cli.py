"""The CLI as users run it: `ishow say` and `ishow run` with a clean SIGTERM shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.conftest import REPO


def run_ishow(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ishow", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def test_say_with_espeak_writes_a_wav(tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    proc = run_ishow("say", "大家好，欢迎来到直播间", "--engine", "espeak", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data, sr = sf.read(out, dtype="float32")
    assert sr == 24000 and 1.0 < len(data) / sr < 8.0
    assert float(np.sqrt(np.mean(data**2))) > 0.02
    assert "engine espeak" in proc.stdout


def test_say_unknown_voice_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_ishow("say", "hi", "--engine", "espeak", "--voice", "nobody", "--out", str(tmp_path / "x.wav"))
    assert proc.returncode == 1
    assert "unknown voice 'nobody'" in proc.stderr


def test_run_serves_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'root = "{REPO}"\n[server]\nport = 0\n[engine]\nkind = "espeak"\n'
        '[outputs.local]\nenabled = false\n[[sources]]\nkind = "demo"\nspeed = 50.0\n'
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ishow", "--log-json", "run", "--config", str(cfg)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert proc.stderr is not None
    url = None
    lines = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if '"ishow is running"' in line:
                url = json.loads(line)["obs_page"].removesuffix("/obs")
                break
        assert url, "".join(lines)
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as r:
            assert json.loads(r.read())["engine"] == "espeak"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert '"stopped"' in rest
