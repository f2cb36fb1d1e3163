"""``ishow bench``: text in → waveform out at the real F5TTS_v1_Base + vocos-mel-24khz size.

Builds the models with random weights (or loads the configured checkpoints when they exist), a 5 s reference
voice and ~3 s messages, and times the engine path users run (``F5Engine.synthesize``: text frontend, bucketed
CUDA-graphed sampler, batched vocoder, copy to host) at batch 1, 4, 16 and a chat-like mix of lengths. Also: the
sampler and the vocoder alone, eager vs graphed, fp16 accuracy against the eager fp32 path (same noise), and —
when the upstream ``f5_tts`` package imports (``--upstream``, automatic by default) — upstream's
``infer_batch_process`` and its padded batch in the same run, with ratios.

Timing: CUDA synchronize around each call, ``--warmup`` calls first (graph capture happens there), median of
``--iters``. Imports only torch, numpy, safetensors and the engine's own dependencies (no daemon modules).
Run as ``ishow bench`` or ``python -m ishow.bench.local``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ishow.audio_format import HOP, SAMPLE_RATE
from ishow.bench.measure import HEADER, Row, fmt_row, measure
from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.base import SynthRequest
from ishow.engine.f5.dit import DiT
from ishow.engine.f5.vocos import Vocos, VocosConfig
from ishow.engine.f5_engine import F5Engine
from ishow.engine.warm_reference import REF_TEXT, write_reference

MESSAGE = "这个游戏真的太好玩了，主播加油！"  # ~3 s with the reference above
MIX = ["666", "哈哈哈哈", "主播好", "hello", "这波操作太秀了", "gg", "今天的直播太好看了，主播加油！", "ok",
       "刚来，错过了什么？", "what game is this?", "下一把一定能赢", "笑死我了哈哈哈", "主播今天状态不错啊",
       "这个BOSS怎么打", "love the stream, keep going!", "晚上好"]  # fmt: skip


def rel_l2(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    ta, tb = torch.as_tensor(a).double().cpu(), torch.as_tensor(b).double().cpu()
    return float((ta - tb).norm() / tb.norm().clamp_min(1e-30))


def random_models(seed: int = 0, model: str = "F5TTS_v1_Base") -> tuple[DiT, Vocos]:
    """Real-size F5TTS_v1_Base and vocos-mel-24khz with seeded random weights (fp32, CPU); ``tiny``: smoke tests."""
    from ishow.engine.f5.checkpoint import randomize_
    from ishow.engine.f5.dit import CONFIGS

    tiny = model == "tiny"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dit = DiT(CONFIGS[model]).eval()
        vcfg = VocosConfig(dim=64, intermediate_dim=192, num_layers=2, head_dim=64) if tiny else VocosConfig()
        vocos = Vocos(vcfg).eval()
    randomize_(dit, seed, std=0.02)
    return dit, vocos


def make_engine(
    cfg: EngineConfig, dit: DiT | None, vocos: Vocos | None, device: torch.device, dtype: torch.dtype
) -> F5Engine:
    from ishow.engine.f5.text import load_vocab

    engine = F5Engine(cfg)
    if dit is None or vocos is None:
        engine.load()
    else:
        engine.attach(copy.deepcopy(dit).to(device, dtype), copy.deepcopy(vocos).to(device), load_vocab(None))
    return engine


def requests(voice: VoiceSpec, texts: Sequence[str]) -> list[SynthRequest]:
    return [SynthRequest(text=t, voice=voice, seed=i) for i, t in enumerate(texts)]


def audio_seconds(engine: F5Engine, reqs: Sequence[SynthRequest]) -> float:
    return sum(len(w) for w in engine.synthesize(reqs)) / SAMPLE_RATE


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = {"fp16": torch.float16, "fp32": torch.float32}[
        args.precision if args.precision != "auto" else ("fp16" if device.type == "cuda" else "fp32")
    ]
    base = EngineConfig(device=str(device), precision="fp16" if dtype == torch.float16 else "fp32",
                        vocoder_backend=args.vocoder_backend, engines_dir=Path(args.engines_dir))  # fmt: skip
    # each row is one batch in one graph, as in earlier runs (the daemon's default engine.max_batch_frames would run
    # 16 × 768 frames as two batches of 8; `ishow bench --e2e` measures the daemon with its defaults)
    base = dataclasses.replace(base, model=args.model, compile=getattr(args, "compile", True), max_batch_frames=1 << 16)
    real = (
        args.model != "tiny"
        and Path(base.checkpoint).is_file()
        and (Path(base.vocoder) / "pytorch_model.bin").is_file()
    )
    dit, vocos = (None, None) if real else random_models(model=args.model)
    tmp = Path(tempfile.mkdtemp(prefix="ishow-bench-"))
    voice = VoiceSpec(id="bench", ref_audio=write_reference(tmp / "ref.wav"), ref_text=REF_TEXT)
    it, wu = args.iters, args.warmup
    rows: list[Row] = []
    checks: dict[str, float] = {}
    log = print if not args.quiet else (lambda *a, **k: None)
    log(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), torch "
        f"{torch.__version__}, {'checkpoints' if real else 'random weights'}, precision {dtype}")  # fmt: skip

    # -- accuracy: fp16 (graphs) vs eager fp32, same seeds ------------------------------------------------------
    if args.accuracy and dtype != torch.float32:
        ref_eng = make_engine(dataclasses.replace(base, precision="fp32", cuda_graphs=False, vocoder_backend="torch"),
                              dit, vocos, device, torch.float32)  # fmt: skip
        acc_reqs = requests(voice, [MESSAGE, *MIX[:3]])
        ref_waves = ref_eng.synthesize(acc_reqs)
        ref_mels = [m.cpu() for m in ref_eng.sampler.sample([ref_eng._item(r)[0] for r in acc_reqs])]  # type: ignore[union-attr]
        del ref_eng
        if device.type == "cuda":
            torch.cuda.empty_cache()
    eng = make_engine(base, dit, vocos, device, dtype)
    log(f"vocoder backend: {eng.vocoder_backend.name if eng.vocoder_backend else None}, "
        f"compiled DiT blocks: {bool(eng.sampler and eng.sampler.compile)}")  # fmt: skip
    if args.accuracy and dtype != torch.float32:
        waves = eng.synthesize(acc_reqs)
        mels = eng.sampler.sample([eng._item(r)[0] for r in acc_reqs])  # type: ignore[union-attr]
        checks["fp16_vs_fp32_mel_rel_l2_max"] = max(rel_l2(a, b) for a, b in zip(mels, ref_mels, strict=True))
        checks["fp16_vs_fp32_wave_rel_l2_max"] = max(rel_l2(a, b) for a, b in zip(waves, ref_waves, strict=True))

    # -- correctness on this device: batch == single, graph == eager ----------------------------------------------
    mix_reqs = requests(voice, MIX)
    batch_out = eng.synthesize(mix_reqs[:5])
    singles = [eng.synthesize([r])[0] for r in mix_reqs[:5]]
    checks["batch_vs_single_wave_rel_l2_max"] = max(rel_l2(a, b) for a, b in zip(batch_out, singles, strict=True))
    if device.type == "cuda" and eng.sampler is not None and eng.sampler.use_graphs:
        items = [eng._item(r)[0] for r in mix_reqs[:4]]
        graphed = eng.sampler.sample(items)
        eng.sampler.use_graphs = False
        eager = eng.sampler.sample(items)
        eng.sampler.use_graphs = True
        checks["graph_vs_eager_mel_rel_l2_max"] = max(rel_l2(a, b) for a, b in zip(graphed, eager, strict=True))

    # -- the engine path: text in → waveform out ----------------------------------------------------------------
    workloads = {"batch 1": [MESSAGE], "batch 4": [MESSAGE] * 4, "batch 16": [MESSAGE] * 16, "chat mix 16": MIX}
    for label, texts in workloads.items():
        reqs = [SynthRequest(text=t, voice=voice, seed=i) for i, t in enumerate(texts)]
        secs = audio_seconds(eng, reqs)
        rows.append(measure(f"ours {label}", len(reqs), lambda r=reqs: eng.synthesize(r), secs, device, it, wu))  # type: ignore[misc]
        log(fmt_row(rows[-1]))
    if device.type == "cuda" and args.ablations:
        rows.extend(ablations(eng, voice, device, it, wu, log, checks))
    for name, obj in (("dit", eng.sampler), ("vocoder", eng.vocoder_backend)):
        err = getattr(obj, "compile_error", None)
        if err:
            log(f"compile fallback ({name}): {err}")

    result: dict[str, Any] = {"device": str(device), "precision": str(dtype), "real_weights": real,
                              "rows": [r.as_dict() for r in rows], "checks": checks}  # fmt: skip
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    # -- upstream in the same run -----------------------------------------------------------------------------
    want_upstream = args.upstream if args.upstream is not None else _upstream_importable()
    if want_upstream and dit is not None and vocos is not None:
        from ishow.bench.upstream import upstream_rows

        del eng
        if device.type == "cuda":
            torch.cuda.empty_cache()
        up = upstream_rows(dit, vocos, tmp / "ref.wav", REF_TEXT, MESSAGE, MIX, device, dtype, it, wu, log)
        rows.extend(up["rows"])
        checks.update(up.get("checks", {}))
        result["rows"] = [r.as_dict() for r in rows]
        result["ratios"] = ratios(rows)
    return result


def ablations(
    eng: F5Engine,
    voice: VoiceSpec,
    device: torch.device,
    it: int,
    wu: int,
    log: Callable[..., None],
    checks: dict[str, float] | None = None,
) -> list[Row]:
    """Sampler alone at batch 1 and 16 (compiled graph vs plain graph vs eager) and the vocoder alone at 256 frames
    (compiled fp16 vs graphed fp16 vs graphed fp32 vs eager fp32), with their accuracy against the plain paths."""
    from ishow.engine.accel.graphs import GraphSampler
    from ishow.engine.accel.vocoder_backends import TorchVocoder

    assert eng.sampler is not None and eng.vocoder is not None
    checks = checks if checks is not None else {}
    out: list[Row] = []
    item = eng._item(SynthRequest(text=MESSAGE, voice=voice))[0]
    secs = (item.total_frames() - int(item.cond.shape[0]) - 1) * HOP / SAMPLE_RATE
    items16 = [eng._item(SynthRequest(text=MESSAGE, voice=voice, seed=i))[0] for i in range(16)]
    plain = GraphSampler(eng.sampler.model, compile=False)
    main = eng.sampler
    tag = "compiled graph" if main.compile else "graph"
    for label, sampler, batch in ((f"sampler {tag} b1", main, [item]), ("sampler graph b1 (no compile)", plain, [item]),
                                  (f"sampler {tag} b16", main, items16),
                                  ("sampler graph b16 (no compile)", plain, items16)):  # fmt: skip
        fn = lambda s=sampler, b=batch: s.sample(b)  # noqa: E731
        out.append(measure(label, len(batch), fn, secs * len(batch), device, it, wu))
        log(fmt_row(out[-1]))
    if main.compile:
        got, ref = main.sample(items16[:4]), plain.sample(items16[:4])
        checks["compiled_vs_plain_graph_mel_rel_l2_max"] = max(rel_l2(a, b) for a, b in zip(got, ref, strict=True))
    main.use_graphs = False
    out.append(measure("sampler eager b1", 1, lambda: main.sample([item]), secs, device, it, wu))
    log(fmt_row(out[-1]))
    main.use_graphs = True
    del plain
    gen = torch.Generator().manual_seed(7)
    mel = [(torch.randn(256, 100, generator=gen) * 1.5 - 4).to(device)]
    vocs = {
        "vocoder compile fp16 256f": TorchVocoder(eng.vocoder, half=True, compile=True),
        "vocoder graph fp16 256f": TorchVocoder(eng.vocoder, half=True),
        "vocoder graph 256f": TorchVocoder(eng.vocoder),
        "vocoder eager 256f": TorchVocoder(eng.vocoder, use_graphs=False),
    }
    ref_wave = vocs["vocoder eager 256f"].decode(mel)[0]
    for label, voc in vocs.items():
        out.append(measure(label, 1, lambda v=voc: v.decode(mel), 255 * HOP / SAMPLE_RATE, device, it * 5, wu))  # type: ignore[misc]
        log(fmt_row(out[-1]) + (f"  (compile failed: {voc.compile_error})" if voc.compile_error else ""))
        if voc is not vocs["vocoder eager 256f"]:
            key = label.removeprefix("vocoder ").removesuffix(" 256f").replace(" ", "_")
            checks[f"vocoder_{key}_vs_fp32_eager_wave_rel_l2"] = rel_l2(voc.decode(mel)[0], ref_wave)
    return out


def ratios(rows: Sequence[Row]) -> dict[str, float]:
    by = {r.name: r for r in rows}
    pairs = {
        "batch 1: upstream infer_batch_process / ours": ("upstream infer_batch_process b1", "ours batch 1"),
        "batch 4: upstream padded batch / ours": ("upstream padded batch 4", "ours batch 4"),
        "batch 16: upstream padded batch / ours": ("upstream padded batch 16", "ours batch 16"),
    }
    return {k: by[a].ms / by[b].ms for k, (a, b) in pairs.items() if a in by and b in by}


def _upstream_importable() -> bool:
    from importlib.util import find_spec

    return find_spec("f5_tts") is not None and find_spec("vocos") is not None


def table(result: dict[str, Any]) -> str:
    lines = [HEADER]
    for d in result["rows"]:
        r = Row(**{k: d[k] for k in ("name", "batch", "ms", "audio_s", "peak_mb", "spread_ms")})
        lines.append(fmt_row(r))
    for k, v in result.get("ratios", {}).items():
        lines.append(f"ratio {k}: {v:.1f}x")
    for k, v in result.get("checks", {}).items():
        lines.append(f"check {k}: {v:.2e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None, args: argparse.Namespace | None = None) -> int:
    from ishow.bench.args import build_parser

    args = args or build_parser().parse_args(argv)
    result = run(args)
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
