"""TensorRT engine cache keys and rebuild rules (CPU); the engine itself only where tensorrt is installed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from ishow.engine.accel.trt import EngineKey, Profile, ensure_engine, tensorrt_available
from ishow.errors import EngineError

KEY = EngineKey(gpu="NVIDIA H100 80GB HBM3", tensorrt="10.9.0", onnx_sha256="ab" * 32, profile=Profile())


def test_key_digest_changes_with_every_component() -> None:
    variants = [
        KEY,
        dataclasses.replace(KEY, gpu="NVIDIA H200"),
        dataclasses.replace(KEY, tensorrt="10.10.0"),
        dataclasses.replace(KEY, onnx_sha256="cd" * 32),
        dataclasses.replace(KEY, profile=Profile(opt_frames=512)),
        dataclasses.replace(KEY, precision="fp32"),
    ]
    assert len({k.digest() for k in variants}) == len(variants)
    assert KEY.digest() == EngineKey(**{**dataclasses.asdict(KEY), "profile": Profile()}).digest()
    assert KEY.engine_path(Path("models/engines")).name == f"vocos-{KEY.digest()}.plan"


def test_profile_validation_and_fit() -> None:
    p = Profile()
    assert (p.min_batch, p.max_batch, p.min_frames, p.max_frames) == (1, 16, 16, 2048)
    assert p.fits(1, 256) and p.fits(16, 2048) and not p.fits(17, 256) and not p.fits(1, 8)
    with pytest.raises(EngineError):
        Profile(min_batch=4, opt_batch=2)


def test_engine_built_once_and_rebuilt_only_when_key_changes(tmp_path: Path) -> None:
    onnx = tmp_path / "vocos.onnx"
    onnx.write_bytes(b"onnx")
    builds: list[Path] = []

    def fake_builder(src: Path, out: Path, profile: Profile, precision: str, cache: Path) -> None:
        assert src == onnx and precision == "fp16" and cache.parent == tmp_path / "engines"
        builds.append(out)
        out.write_bytes(b"plan")

    engines = tmp_path / "engines"
    path, built = ensure_engine(onnx, engines, KEY, builder=fake_builder)
    assert built and path.read_bytes() == b"plan" and len(builds) == 1
    assert json.loads(path.with_suffix(".json").read_text())["gpu"] == KEY.gpu
    assert ensure_engine(onnx, engines, KEY, builder=fake_builder) == (path, False)
    other, built = ensure_engine(onnx, engines, dataclasses.replace(KEY, tensorrt="10.10.0"), builder=fake_builder)
    assert built and other != path and len(builds) == 2
    path.with_suffix(".json").write_text("{}")  # a stale or foreign sidecar forces a rebuild
    assert ensure_engine(onnx, engines, KEY, builder=fake_builder) == (path, True)
    assert ensure_engine(onnx, engines, KEY, builder=fake_builder, force=True) == (path, True)
    assert len(builds) == 4
    assert not list(engines.glob("*.tmp"))


def test_failed_build_leaves_no_engine(tmp_path: Path) -> None:
    def broken(src: Path, out: Path, profile: Profile, precision: str, cache: Path) -> None:
        raise EngineError("builder failed")

    with pytest.raises(EngineError):
        ensure_engine(tmp_path / "x.onnx", tmp_path / "e", KEY, builder=broken)
    assert not KEY.engine_path(tmp_path / "e").exists()


def _engine_skip() -> str | None:
    if not tensorrt_available():
        return "tensorrt is not installed"
    return None if torch.cuda.is_available() else "tensorrt engines need a CUDA device"


@pytest.mark.skipif(_engine_skip() is not None, reason=_engine_skip() or "")
def test_tensorrt_engine_matches_torch(tmp_path: Path) -> None:
    from ishow.engine.accel.mels import pad_mels
    from ishow.engine.accel.vocoder_backends import tensorrt_vocoder
    from ishow.engine.f5.vocos import Vocos, VocosConfig

    torch.manual_seed(0)
    vocos = Vocos(VocosConfig(dim=64, intermediate_dim=192, num_layers=2, head_dim=64)).eval().cuda()
    backend = tensorrt_vocoder(vocos, torch.device("cuda"), tmp_path)
    ms = [torch.randn(t, 100, device="cuda") - 4 for t in (40, 100)]
    mel, mask = pad_mels(ms, 2, 100, torch.device("cuda"))
    with torch.no_grad():
        ref = vocos(mel, mask)
    for i, (got, m) in enumerate(zip(backend.decode(ms), ms, strict=True)):
        n = (m.shape[0] - 1) * 256
        assert float((got - ref[i, :n]).norm() / ref[i, :n].norm()) < 1e-2  # fp16 engine
