"""Engine worker policy: fallback on load failure, crash mid-batch, bad items isolated, retirement."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from structlog.testing import capture_logs

from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.base import Engine, SynthRequest
from ishow.engine.worker import MAX_CONSECUTIVE_FAILURES, EngineWorker
from ishow.errors import InputError, ModelLoadError, UnknownVoiceError, WeightsMissingError

VOICES = (VoiceSpec(id="a"), VoiceSpec(id="b", volume=0.5))


class ToneEngine(Engine):
    """A deterministic engine: 0.1 s of a constant per character; records its thread."""

    kind = "tone"

    def __init__(self, fail_on: str = "", crash: bool = False, bad_load: bool = False) -> None:
        self.fail_on, self.crash, self.bad_load = fail_on, crash, bad_load
        self.threads: set[str] = set()
        self.calls: list[int] = []

    def load(self) -> None:
        if self.bad_load:
            raise WeightsMissingError("checkpoint '/x/model.safetensors' does not exist; run `ishow models fetch`")

    def synthesize(self, requests: Sequence[SynthRequest]) -> list[npt.NDArray[np.float32]]:
        self.threads.add(threading.current_thread().name)
        self.calls.append(len(requests))
        if self.crash:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        out = []
        for r in requests:
            if self.fail_on and self.fail_on in r.text:
                raise InputError(f"cannot say {r.text!r}")
            out.append(np.full(2400 * len(r.text), 0.5, dtype=np.float32))
        return out


class Fallback(ToneEngine):
    kind = "fallback"


def factory_for(primary: ToneEngine, fallback: ToneEngine | None = None):  # type: ignore[no-untyped-def]
    def make(kind: str, cfg: EngineConfig) -> Engine:
        if kind == "f5":
            return primary
        if fallback is None:
            raise ModelLoadError("no fallback here")
        return fallback

    return make


async def test_runs_on_one_engine_thread_and_applies_voice_volume() -> None:
    primary = ToneEngine()
    w = EngineWorker(EngineConfig(kind="f5", fallback="none"), VOICES, factory_for(primary))
    await w.start()
    res = await w.synthesize([w.request("hi", "a"), w.request("hey", "b")])
    await w.close()
    assert [r.engine for r in res] == ["tone", "tone"]
    assert res[0].audio is not None and len(res[0].audio) == 4800 and res[0].audio[0] == 0.5
    assert res[1].audio is not None and res[1].audio[0] == 0.25  # volume 0.5
    assert primary.calls == [2]  # one batch, one call
    assert len(primary.threads) == 1 and next(iter(primary.threads)).startswith("ishow-engine")


async def test_missing_weights_fall_back_with_the_reason_kept() -> None:
    fb = Fallback()
    w = EngineWorker(EngineConfig(kind="f5"), VOICES, factory_for(ToneEngine(bad_load=True), fb))
    await w.start()
    assert w.active_kind == "fallback" and not w.model_loaded
    assert "ishow models fetch" in w.primary_error
    (res,) = await w.synthesize([w.request("hello", "a")])
    await w.close()
    assert res.engine == "fallback" and res.audio is not None


async def test_no_fallback_means_startup_fails_loudly() -> None:
    w = EngineWorker(EngineConfig(kind="f5", fallback="none"), VOICES, factory_for(ToneEngine(bad_load=True)))
    with pytest.raises(WeightsMissingError):
        await w.start()
    await w.close()


async def test_a_text_the_engine_rejects_goes_to_the_fallback_alone() -> None:
    primary = ToneEngine(fail_on="☠")
    w = EngineWorker(EngineConfig(kind="f5"), VOICES, factory_for(primary, Fallback()))
    await w.start()
    res = await w.synthesize([w.request("ok", "a"), w.request("☠☠", "a"), w.request("fine", "b")])
    await w.close()
    assert all(r.audio is not None for r in res)
    assert [r.engine for r in res] == ["tone", "fallback", "tone"]  # only the rejected message moved


async def test_bad_item_without_fallback_is_isolated_and_reported() -> None:
    primary = ToneEngine(fail_on="☠")
    w = EngineWorker(EngineConfig(kind="f5", fallback="none"), VOICES, factory_for(primary))
    await w.start()
    res = await w.synthesize([w.request("ok", "a"), w.request("☠☠", "a"), w.request("fine", "b")])
    await w.close()
    assert [r.audio is not None for r in res] == [True, False, True]
    assert isinstance(res[1].error, InputError) and "cannot say" in str(res[1].error)


async def test_crash_mid_batch_speaks_with_fallback_then_retires_primary() -> None:
    primary = ToneEngine(crash=True)
    w = EngineWorker(EngineConfig(kind="f5"), VOICES, factory_for(primary, Fallback()))
    await w.start()
    for _ in range(MAX_CONSECUTIVE_FAILURES):
        res = await w.synthesize([w.request("one", "a"), w.request("two", "a")])
        assert [r.engine for r in res] == ["fallback", "fallback"]
        assert all(r.audio is not None for r in res)
    assert w.active_kind == "fallback" and "retired" in w.primary_error
    await w.close()


async def test_unknown_voice_is_an_input_error() -> None:
    w = EngineWorker(EngineConfig(kind="f5", fallback="none"), VOICES, factory_for(ToneEngine()))
    with pytest.raises(UnknownVoiceError, match="unknown voice 'zz'; configured voices: a, b"):
        w.request("hi", "zz")
    await w.close()


class Exploding(ToneEngine):
    """Fails the way torch does (not one of our error types) at load or warm-up."""

    def __init__(self, at: str) -> None:
        super().__init__()
        self.at = at
        self.closed = False

    def load(self) -> None:
        if self.at == "load":
            raise RuntimeError("CUDA error: out of memory")

    def warmup(self, voice: VoiceSpec) -> None:
        if self.at == "warmup":
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("at", ["load", "warmup"])
async def test_any_load_or_warmup_exception_falls_back(at: str) -> None:
    primary = Exploding(at)
    w = EngineWorker(EngineConfig(kind="f5"), VOICES, factory_for(primary, Fallback()))
    with capture_logs() as logs:
        await w.start()
    (res,) = await w.synthesize([w.request("hello", "a")])
    await w.close()
    assert w.active_kind == "fallback" and not w.model_loaded
    assert res.engine == "fallback" and res.audio is not None
    assert w.primary_error.startswith("RuntimeError: CUDA error")
    (line,) = [e for e in logs if "engine unavailable, speaking with the" in e["event"]]
    assert line["log_level"] == "warning" and "RuntimeError: CUDA error" in line["event"]
    assert at == "load" or primary.closed  # a half-started engine is released


async def test_any_load_exception_without_fallback_stops_startup() -> None:
    w = EngineWorker(EngineConfig(kind="f5", fallback="none"), VOICES, factory_for(Exploding("load")))
    with pytest.raises(RuntimeError, match="out of memory"):
        await w.start()
    await w.close()


def test_model_loaded_reads_the_engine_once() -> None:
    """/healthz asks while the engine thread retires the model: a second read would see None."""

    class Racing(EngineWorker):
        reads = 0

        @property
        def primary(self) -> Engine | None:
            Racing.reads += 1
            return ToneEngine() if Racing.reads % 2 == 1 else None

        @primary.setter
        def primary(self, value: Engine | None) -> None:
            pass

    w = Racing(EngineConfig(kind="f5", fallback="none"), VOICES, factory_for(ToneEngine()))
    for _ in range(4):
        assert w.model_loaded is False  # a ToneEngine is not f5; never an AttributeError
        assert w.state()["model_loaded"] is False


async def test_a_crashed_batch_moves_to_the_fallback_with_one_line() -> None:
    primary = ToneEngine(crash=True)
    w = EngineWorker(EngineConfig(kind="f5"), VOICES, factory_for(primary, Fallback()))
    await w.start()
    with capture_logs() as logs:
        res = await w.synthesize([w.request(t, "a") for t in ("one", "two", "three", "four")])
    await w.close()
    assert [r.engine for r in res] == ["fallback"] * 4
    loud = [e for e in logs if e["log_level"] in ("warning", "error")]
    assert len(loud) == 1 and "RuntimeError: CUDA error" in loud[0]["error"]
