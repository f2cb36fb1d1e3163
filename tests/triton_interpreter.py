"""Run a Triton kernel test script in Triton's CPU interpreter (``TRITON_INTERPRET=1``), in a subprocess because the
variable must be set before Triton is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, timeout: float = 300) -> None:
    """Run ``script`` with the repository importable; it must exit 0 and print ``ok`` last."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
