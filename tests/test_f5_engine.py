"""F5Engine end to end on a tiny random model written in the real formats; plus Vocos and mel golden checks."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ishow.audio_format import HOP, SAMPLE_RATE
from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.base import SynthRequest
from ishow.engine.f5.checkpoint import write_tiny_model
from ishow.engine.f5.duration import MIN_GEN_BYTES, generated_frames
from ishow.engine.f5_engine import F5Engine
from ishow.errors import InputError, OutOfMemoryError, VoiceError

GOLDEN = Path(__file__).parent / "golden"
REF_TEXT = "This is a short reference recording used for the tests."  # 56 bytes


def write_ref(path: Path, seconds: float, amp: float, f0: float) -> Path:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    wave = amp * env * (np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(2 * np.pi * 2 * f0 * t))
    soundfile.write(str(path), wave.astype(np.float32), 16_000 if f0 > 200 else SAMPLE_RATE)  # mislabelled rate ok
    return path


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> F5Engine:
    root = tmp_path_factory.mktemp("f5")
    tiny = write_tiny_model(root / "model")
    cfg = EngineConfig(model="tiny", checkpoint=tiny.checkpoint, vocab=tiny.vocab, vocoder=tiny.vocoder, device="cpu")
    eng = F5Engine(cfg)
    eng.load()
    return eng


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> tuple[VoiceSpec, VoiceSpec]:
    root = tmp_path_factory.mktemp("voices")
    quiet = VoiceSpec(id="quiet", ref_audio=write_ref(root / "a.wav", 2.0, 0.02, 140.0), ref_text=REF_TEXT)
    loud = VoiceSpec(id="loud", ref_audio=write_ref(root / "b.wav", 3.0, 0.5, 230.0), ref_text="你好，这是参考音频。")
    return quiet, loud


def test_synthesize_returns_sane_audio(engine: F5Engine, voices: tuple[VoiceSpec, VoiceSpec]) -> None:
    quiet, loud = voices
    texts = ["hi", "你好世界", "This chat message is a little longer than the others, to check durations."]
    reqs = [SynthRequest(text=t, voice=v) for t in texts for v in (quiet, loud)]
    out = engine.synthesize(reqs)
    assert len(out) == len(reqs)
    for req, wave in zip(reqs, out, strict=True):
        assert wave.dtype == np.float32 and wave.ndim == 1
        assert np.isfinite(wave).all()
        assert float(np.sqrt(np.mean(wave**2))) > 1e-5  # not silent
        prepared = engine.prepared(req.voice)
        frames = generated_frames(prepared.frames, len(prepared.ref_text.encode()), len(req.text.encode()), 1.0)
        assert len(wave) == (frames - 1) * HOP


@pytest.mark.parametrize(
    "text", ["ok", "666", "哈哈哈", "主播好", "hello there", "今天的直播太好看了，主播加油！", "gg " * 30, "中" * 60]
)
def test_seconds_per_character_is_sane(text: str) -> None:
    # a 5 s reference of 15 CJK chars (45 bytes) and one of 60 ASCII chars: typical speaking rates
    for ref_frames, ref_bytes in ((469, 45), (469, 60)):
        seconds = generated_frames(ref_frames, ref_bytes, len(text.encode()), 1.0) * HOP / SAMPLE_RATE
        per_char = seconds / len(text)
        assert 0.04 <= per_char <= 0.40, (text, seconds)
        assert seconds >= MIN_GEN_BYTES * ref_frames / ref_bytes * HOP / SAMPLE_RATE - 0.02


@pytest.mark.parametrize("text", ["?", "好", "a", "ok"])
def test_tiny_messages_get_room_but_do_not_drag(text: str) -> None:
    for ref_frames, ref_bytes in ((469, 45), (469, 60)):
        seconds = generated_frames(ref_frames, ref_bytes, len(text.encode()), 1.0) * HOP / SAMPLE_RATE
        assert 0.4 <= seconds <= 0.8, (text, seconds)


def test_batch_audio_equals_single(engine: F5Engine, voices: tuple[VoiceSpec, VoiceSpec]) -> None:
    quiet, loud = voices
    reqs = [
        SynthRequest(text="first message", voice=quiet, seed=1),
        SynthRequest(text="第二条消息", voice=loud, seed=2),
        SynthRequest(text="a third, somewhat longer message in the batch", voice=quiet, seed=3),
    ]
    batch = engine.synthesize(reqs)
    for req, wave in zip(reqs, batch, strict=True):
        (single,) = engine.synthesize([req])
        assert wave.shape == single.shape
        assert np.linalg.norm(wave - single) <= 1e-4 * np.linalg.norm(single)


def test_quiet_reference_loudness_is_restored(engine: F5Engine, voices: tuple[VoiceSpec, VoiceSpec]) -> None:
    quiet, loud = voices
    assert engine.prepared(quiet).rms < 0.1 <= engine.prepared(loud).rms
    a, b = engine.synthesize([SynthRequest("same text", quiet, seed=4), SynthRequest("same text", loud, seed=4)])
    assert np.sqrt(np.mean(a**2)) < np.sqrt(np.mean(b**2))


def test_voice_cache_follows_file_changes(
    engine: F5Engine, voices: tuple[VoiceSpec, VoiceSpec], tmp_path: Path
) -> None:
    quiet, _ = voices
    assert engine.prepared(quiet) is engine.prepared(quiet)
    path = write_ref(tmp_path / "c.wav", 1.0, 0.3, 180.0)
    voice = VoiceSpec(id="changing", ref_audio=path, ref_text="hello")
    first = engine.prepared(voice)
    write_ref(path, 2.0, 0.3, 180.0)
    os.utime(path, ns=(first.key[1] + 10**9, first.key[1] + 10**9))  # type: ignore[operator]
    assert engine.prepared(voice).frames > first.frames


def test_input_and_voice_errors(engine: F5Engine, voices: tuple[VoiceSpec, VoiceSpec], tmp_path: Path) -> None:
    quiet, _ = voices
    with pytest.raises(InputError, match="empty text"):
        engine.synthesize([SynthRequest(text="   ", voice=quiet)])
    with pytest.raises(VoiceError, match="no ref_audio"):
        engine.synthesize([SynthRequest(text="hi", voice=VoiceSpec(id="x"))])
    with pytest.raises(VoiceError, match="no ref_text"):
        engine.prepare_voice(VoiceSpec(id="y", ref_audio=quiet.ref_audio))
    with pytest.raises(VoiceError, match=r"missing\.wav"):
        engine.prepare_voice(VoiceSpec(id="z", ref_audio=tmp_path / "missing.wav", ref_text="hi"))
    short = write_ref(tmp_path / "short.wav", 0.2, 0.3, 180.0)
    with pytest.raises(VoiceError, match=r"lasts 0\.20 s"):
        engine.prepare_voice(VoiceSpec(id="s", ref_audio=short, ref_text="hi"))
    with pytest.raises(InputError, match="at most 30 s"):
        engine.synthesize([SynthRequest(text="long " * 400, voice=quiet)])
    with pytest.raises(InputError, match="speed"):
        engine.synthesize([SynthRequest(text="hi", voice=quiet, speed=0.0)])


def test_oom_splits_batch_then_raises_for_single(
    engine: F5Engine, voices: tuple[VoiceSpec, VoiceSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet, loud = voices
    reqs = [SynthRequest(text=f"message {i}", voice=(quiet, loud)[i % 2], seed=i) for i in range(5)]
    expected = engine.synthesize(reqs)
    real_run = engine._run
    sizes: list[int] = []

    def flaky(items: list, sc: object) -> list:  # type: ignore[type-arg]
        sizes.append(len(items))
        if len(items) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_run(items, sc)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "_run", flaky)
    got = engine.synthesize(reqs)
    assert sizes[0] == 5 and sizes.count(1) == 5
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    monkeypatch.setattr(engine, "_run", lambda items, sc: (_ for _ in ()).throw(torch.OutOfMemoryError("oom")))
    with pytest.raises(OutOfMemoryError, match="single message"):
        engine.synthesize(reqs[:1])


def test_a_batch_over_max_batch_frames_runs_as_smaller_batches_in_order(
    engine: F5Engine, voices: tuple[VoiceSpec, VoiceSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ishow.engine.accel.graphs import Buckets

    quiet, _ = voices
    texts = ["hi", "this message is much longer than the short ones around it, " * 3, "yo", "ok", "long one " * 16]
    reqs = [SynthRequest(text=t, voice=quiet) for t in texts]
    whole = engine.synthesize(reqs)  # CPU: no graphs, so no split
    sampler = engine.sampler
    assert sampler is not None
    frames = [engine._item(r)[0].total_frames() for r in reqs]
    short = max(frames[i] for i in (0, 2, 3))
    cap = Buckets().area(4, short)  # the three short ones fit one batch, no long one joins them
    assert cap is not None and cap < (Buckets().area(2, max(frames)) or 0)
    batches: list[list[int]] = []
    run = engine._run

    def recording(items: list, sc: object) -> list:  # type: ignore[type-arg]
        batches.append([it.total_frames() for it, _ in items])
        sampler.use_graphs = False  # run it on the CPU for real
        try:
            return run(items, sc)  # type: ignore[arg-type]
        finally:
            sampler.use_graphs = True

    monkeypatch.setattr(engine, "_run", recording)
    monkeypatch.setattr(sampler, "use_graphs", True)  # the cap applies where graphs hold GPU memory
    monkeypatch.setattr(sampler, "buckets", Buckets(max_area=cap))
    parts = engine.synthesize(reqs)
    assert sorted(f for b in batches for f in b) == sorted(frames)  # every message ran once
    longs = {frames[1], frames[4]}
    assert all(len(b) == 1 for b in batches if longs & set(b))  # a long one joins no other: they run alone
    assert all(Buckets().area(len(b), max(b)) <= cap for b in batches if len(b) > 1)  # type: ignore[operator]
    assert [len(w) for w in parts] == [len(w) for w in whole]  # each request's audio in its own place
    for a, b in zip(parts, whole, strict=True):
        assert np.allclose(a, b, atol=1e-4)


def test_dit_and_vocoder_graphs_share_one_memory_pool(engine: F5Engine) -> None:
    # replayed one at a time on the engine thread, so the vocoder's graphs reuse the DiT's intermediate memory
    from ishow.engine.accel.vocoder_backends import TorchVocoder

    assert engine.sampler is not None and isinstance(engine.vocoder_backend, TorchVocoder)
    assert engine.sampler.pool is engine.vocoder_backend.pool


def test_describe_and_unloaded_engine(engine: F5Engine) -> None:
    info = engine.describe()
    assert info["device"] == "cpu" and info["precision"] == "float32"
    fresh = F5Engine(dataclasses.replace(engine.config))
    with pytest.raises(Exception, match="load"):
        fresh.synthesize([SynthRequest(text="hi", voice=VoiceSpec(id="v"))])


def test_import_probes_no_device(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> bool:
        raise AssertionError("device probed at import")

    monkeypatch.setattr(torch.cuda, "is_available", boom)
    for name in [m for m in sys.modules if m.startswith("ishow.engine.f5_engine")]:
        monkeypatch.delitem(sys.modules, name)
    mod = importlib.import_module("ishow.engine.f5_engine")
    mod.F5Engine(EngineConfig())


# -- golden: helper B's Vocos and mel front end against upstream vocos 0.1.0 / f5-tts -----------------------------


def test_vocos_decode_matches_upstream_golden() -> None:
    from ishow.engine.f5.vocos import Vocos, VocosConfig, load_state_dict_strict

    path = GOLDEN / "vocos_golden.safetensors"
    with safe_open(str(path), "pt") as f:
        c = json.loads(f.metadata()["config"])
    g = load_file(str(path))
    model = Vocos(VocosConfig(dim=c["dim"], intermediate_dim=c["intermediate_dim"], num_layers=c["num_layers"],
                              head_dim=c["dim"]))  # fmt: skip
    load_state_dict_strict(model, {k[2:]: v for k, v in g.items() if k.startswith("w.")})
    audio = model.eval().decode(g["in.mel"])
    ref = g["out.audio"]
    assert audio.shape == ref.shape
    assert float((audio - ref).norm() / ref.norm()) < 1e-4


def test_vocos_real_layout_matches_upstream() -> None:
    from ishow.engine.f5.vocos import expected_keys

    assert expected_keys() == json.loads((GOLDEN / "vocos_keys.json").read_text())["vocos-mel-24khz"]


def test_f5_mel_front_end_matches_upstream_golden() -> None:
    from ishow.engine.f5.audio import MelSpectrogram

    g = load_file(str(GOLDEN / "mel_golden.safetensors"))
    mel = MelSpectrogram()(g["in.wav"])
    ref = g["out.logmel"]
    assert mel.shape == ref.shape
    assert float((mel - ref).abs().max()) < 1e-3


def test_warmup_builds_attention_graphs_last_before_ready(
    tmp_path: Path, voices: tuple[VoiceSpec, VoiceSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the cuDNN attention graphs of every planned bucket (refinements included) are the last essential task: built
    # before "ready", so no capture during live chat builds one (a build stalls every Python thread ~45 ms)
    from ishow.engine.accel.warmer import BucketWarmer

    tiny = write_tiny_model(tmp_path / "model")
    eng = F5Engine(EngineConfig(model="tiny", checkpoint=tiny.checkpoint, vocab=tiny.vocab, vocoder=tiny.vocoder,
                                device="cpu"))  # fmt: skip
    eng.load()
    assert eng.sampler is not None
    eng.sampler.use_graphs = True  # plan as on CUDA (nothing is captured here)
    asked: list[list[tuple[int, int]]] = []

    def prepare_attention(buckets: list[tuple[int, int]], config: object) -> dict[str, object]:
        asked.append(list(buckets))
        return {}

    monkeypatch.setattr(eng.sampler, "prepare_attention", prepare_attention)
    tasks = eng.warmup_tasks(list(voices), 8)
    essential = [t.label for t in tasks if t.essential]
    dit = [t.label for t in tasks if t.label.startswith("dit ")]
    assert essential[-1] == "attention graphs" and len(dit) > len([x for x in essential if x.startswith("dit ")])
    BucketWarmer([t for t in tasks if t.label == "attention graphs"]).run_plan()
    planned = [tuple(int(v) for v in label.split()[1].split("x")) for label in dit]
    assert asked == [planned]  # every planned DiT bucket, essential and refinement


def test_the_warm_plan_covers_the_longest_chunk_the_worker_cuts_a_long_message_into(
    engine: F5Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ishow.engine.chunking import ChunkPlan, split_text
    from ishow.engine.f5_warmup import WARM_MAX_BYTES, plan

    # the shipped default_zh voice's speech rate (~25 bytes/s): its 12 s chunk is well past chat size
    voice = VoiceSpec(id="zh", ref_audio=write_ref(tmp_path / "zh.wav", 3.0, 0.1, 180.0),
                      ref_text="大家好，欢迎来到我的直播间，今天我们一起聊天玩游戏。")  # fmt: skip
    assert engine.sampler is not None
    monkeypatch.setattr(engine.sampler, "use_graphs", True)  # plan as on CUDA (nothing is captured here)
    (dit, dit_later), _ = plan(engine, [voice], 8)
    singles = [frames for rows, frames in dit + dit_later if rows == 1]
    cut = ChunkPlan.for_budget(engine.length_budget(voice, engine.config.speed))  # as EngineWorker.plan cuts
    chunks = split_text("这是一条很长的付费留言，主播你好，今天的直播真的太精彩了。" * 12, cut.target, cut.first)
    assert len(chunks) > 2 and cut.target > WARM_MAX_BYTES
    longest = max(engine._item(SynthRequest(text=c, voice=voice))[0].total_frames() for c in chunks)
    assert max(singles) >= longest  # each chunk is one row, and the longest has its graph planned
