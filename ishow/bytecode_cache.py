"""Is torch's compiled Python bytecode cached?

Without it every start compiles torch's sources again before the engine can load: dynamo and inductor are large.
On the H200 test machine, whose image sets ``PYTHONDONTWRITEBYTECODE`` and ships no ``.pyc`` files, importing
torch and inductor took 13.8–14.9 s of each start. A normal ``pip install`` (and ``deploy/Dockerfile``) writes the
cache at install time; a container or system image may not. ``ishow doctor`` reports it (``check_bytecode``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BytecodeState:
    ok: bool
    detail: str
    fix: str = ""


def torch_bytecode(source: Path | None = None, dont_write: bool | None = None) -> BytecodeState | None:
    """The state of the bytecode cache of ``source`` (a torch module's ``.py``; default: inductor's
    ``compile_fx``); ``dont_write``: Python's own setting (default: ``sys.dont_write_bytecode``). None when torch
    is not installed. Honours ``PYTHONPYCACHEPREFIX`` (``importlib.util.cache_from_source``)."""
    if source is None:
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.origin is None:
            return None
        source = Path(spec.origin).parent / "_inductor" / "compile_fx.py"
    if not source.is_file():
        return None
    cached = Path(importlib.util.cache_from_source(str(source)))
    if cached.is_file():
        return BytecodeState(True, f"torch's compiled bytecode is cached ({cached.parent})")
    fix = f"run once: {sys.executable} -m compileall -q {source.parent.parent}"
    if dont_write if dont_write is not None else sys.dont_write_bytecode:
        detail = (
            "torch has no cached bytecode and this Python writes none (PYTHONDONTWRITEBYTECODE is set): every start "
            "compiles torch's sources again (seconds before the engine loads)"
        )
        return BytecodeState(False, detail, f"unset PYTHONDONTWRITEBYTECODE, or {fix}")
    folder = next((d for d in cached.parents if d.is_dir()), None)  # where the cache file would be created
    if folder is None or not os.access(folder, os.W_OK):
        detail = f"torch has no cached bytecode and {cached.parent} is not writable: every start compiles it again"
        return BytecodeState(False, detail, f"{fix} (as its owner), or set PYTHONPYCACHEPREFIX")
    return BytecodeState(True, "torch's bytecode is not cached yet: the first start writes it")
