"""tools/engine_trace: the opt-in tracer of the F5 engine's steps, on a tiny random model on CPU (the same classes
as on CUDA, without graphs), in-process and through its ``sitecustomize`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from ishow.bench.local import make_engine, random_models
from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.accel.graphs import GraphSampler
from ishow.engine.base import SynthRequest
from ishow.engine.f5_engine import F5Engine
from ishow.engine.warm_reference import REF_TEXT, write_reference
from tools.engine_trace import install

REPO = Path(__file__).resolve().parent.parent


def test_trace_records_each_step_and_uninstall_restores_the_engine(tmp_path: Path) -> None:
    before = (F5Engine.synthesize, F5Engine._parts, GraphSampler.sample_full)
    dit, vocos = random_models(model="tiny")
    eng = make_engine(EngineConfig(device="cpu", precision="fp32"), dit, vocos, torch.device("cpu"), torch.float32)
    voice = VoiceSpec(id="v", ref_audio=write_reference(tmp_path / "ref.wav"), ref_text=REF_TEXT)
    trace = tmp_path / "trace.txt"
    uninstall = install(trace)
    try:
        waves = eng.synthesize([SynthRequest(text=t, voice=voice, seed=i) for i, t in enumerate(["hello", "hi"])])
    finally:
        uninstall()
    assert len(waves) == 2
    assert (F5Engine.synthesize, F5Engine._parts, GraphSampler.sample_full) == before
    lines = trace.read_text(encoding="utf-8").splitlines()
    tags = [line.split()[2] for line in lines]
    assert tags == ["parts", "dit", "voc", "synthesize"], lines  # no graphs on CPU: one eager run, no split
    dit_line = lines[1]
    assert "n=2" in dit_line and "use=None" in dit_line and "ms=" in dit_line
    assert lines[3].split()[3] == "n=2"
    eng.synthesize([SynthRequest(text="again", voice=voice)])
    assert len(trace.read_text(encoding="utf-8").splitlines()) == 4  # uninstalled: nothing more is written


def test_sitecustomize_installs_it_only_when_asked(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    code = "import ishow.engine.f5_engine as f; print(f.F5Engine.synthesize.__qualname__)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tools" / "engine_trace_site")]))
    on = subprocess.run([sys.executable, "-c", code], env={**env, "ISHOW_ENGINE_TRACE": str(trace)},
                        capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    off = subprocess.run([sys.executable, "-c", code], env={k: v for k, v in env.items() if k != "ISHOW_ENGINE_TRACE"},
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert "install.<locals>" in on.stdout and off.stdout.strip() == "F5Engine.synthesize"
    assert trace.exists()  # opened for appending (empty: nothing synthesized)
