"""Upstream f5-tts timings for ``ishow bench`` (only where the oracle wheels make ``f5_tts`` and ``vocos`` import).

Same random weights as ours (state dicts are compatible), upstream's own code paths:
``infer_batch_process`` for one message (reads the reference wave, mel, pinyin, ``CFM.sample``, Vocos), and a
padded batch: one ``CFM.sample`` over B messages (upstream pads without masking) then Vocos per item.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch

from ishow.audio_format import HOP, SAMPLE_RATE
from ishow.bench.measure import Row, fmt_row, measure
from ishow.engine.f5.dit import F5TTS_V1_BASE, DiT
from ishow.engine.f5.vocos import Vocos


def import_upstream() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """f5_tts.model.backbones.dit, f5_tts.model.cfm and f5_tts.infer.utils_infer, without f5_tts.model/__init__."""
    spec = find_spec("f5_tts")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("f5_tts is not importable: put the oracle wheels on PYTHONPATH")
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    mod = types.ModuleType("f5_tts.model")
    mod.__path__ = [str(pkg_dir / "model")]
    sys.modules["f5_tts.model"] = mod
    import f5_tts.model.backbones.dit as up_dit  # type: ignore[import-not-found]
    import f5_tts.model.cfm as up_cfm  # type: ignore[import-not-found]

    mod.DiT = up_dit.DiT  # type: ignore[attr-defined]
    mod.CFM = up_cfm.CFM  # type: ignore[attr-defined]
    import f5_tts.infer.utils_infer as utils_infer  # type: ignore[import-not-found]

    return up_dit, up_cfm, utils_infer


def upstream_rows(
    dit: DiT,
    vocos: Vocos,
    ref_wav: Path,
    ref_text: str,
    message: str,
    mix: Sequence[str],
    device: torch.device,
    dtype: torch.dtype,
    iters: int,
    warmup: int,
    log: Callable[..., None],
) -> dict[str, Any]:
    import numpy as np
    import soundfile
    from vocos.feature_extractors import MelSpectrogramFeatures  # type: ignore[import-not-found]
    from vocos.heads import ISTFTHead  # type: ignore[import-not-found]
    from vocos.models import VocosBackbone  # type: ignore[import-not-found]
    from vocos.pretrained import Vocos as UpVocos  # type: ignore[import-not-found]

    from ishow.engine.f5.text import load_vocab

    up_dit, up_cfm, ui = import_upstream()
    vocab = load_vocab(None)
    c = F5TTS_V1_BASE
    transformer = up_dit.DiT(
        dim=c.dim, depth=c.depth, heads=c.heads, ff_mult=c.ff_mult, text_dim=c.text_dim, conv_layers=c.conv_layers,
        text_num_embeds=len(vocab), mel_dim=100, text_mask_padding=True, qk_norm=None, pe_attn_head=None,
        attn_backend="torch", attn_mask_enabled=False,
    )  # fmt: skip
    transformer.load_state_dict(dit.state_dict(), strict=True)
    cfm = up_cfm.CFM(
        transformer=transformer,
        mel_spec_kwargs=dict(
            n_fft=1024,
            hop_length=HOP,
            win_length=1024,
            n_mel_channels=100,
            target_sample_rate=SAMPLE_RATE,
            mel_spec_type="vocos",
        ),
        odeint_kwargs=dict(method="euler"),
        vocab_char_map=vocab,
    )
    cfm = cfm.to(dtype).to(device).eval()
    up_voc = UpVocos(
        feature_extractor=MelSpectrogramFeatures(
            sample_rate=SAMPLE_RATE, n_fft=1024, hop_length=HOP, n_mels=100, padding="center"
        ),
        backbone=VocosBackbone(input_channels=100, dim=512, intermediate_dim=1536, num_layers=8),
        head=ISTFTHead(dim=512, n_fft=1024, hop_length=HOP, padding="center"),
    )
    up_voc.load_state_dict(vocos.state_dict(), strict=True)
    up_voc = up_voc.eval().to(device)

    wave, sr = soundfile.read(str(ref_wav), dtype="float32")
    audio = torch.from_numpy(np.asarray(wave))[None]
    rows: list[Row] = []
    checks: dict[str, float] = {}

    def single() -> Any:
        return next(
            ui.infer_batch_process((audio, sr), ref_text, [message], cfm, up_voc, mel_spec_type="vocos", progress=None,
                                   nfe_step=7, cfg_strength=2.0, sway_sampling_coef=-1.0, speed=1.0, device=device)
        )  # fmt: skip

    out_wave = single()[0]
    secs = len(out_wave) / SAMPLE_RATE
    rows.append(measure("upstream infer_batch_process b1", 1, single, secs, device, iters, warmup))
    log(_fmt(rows[-1]))

    ref_audio = audio.to(device)
    rms = float(torch.sqrt(torch.mean(audio**2)))
    if rms < 0.1:
        ref_audio = ref_audio * 0.1 / rms
    ref_len = ref_audio.shape[-1] // HOP
    ref_text_p = ref_text + " " if len(ref_text[-1].encode()) == 1 else ref_text

    def durations(texts: Sequence[str]) -> list[int]:
        out = []
        for t in texts:
            speed = 0.3 if len(t.encode()) < 10 else 1.0
            out.append(ref_len + int(ref_len / len(ref_text_p.encode()) * len(t.encode()) / speed))
        return out

    def padded(texts: Sequence[str]) -> Callable[[], list[Any]]:
        durs = durations(texts)

        def call() -> list[Any]:
            with torch.inference_mode():
                cond = ref_audio.expand(len(texts), -1)
                text_list = ui.convert_char_to_pinyin([ref_text_p + t for t in texts])
                mel, _ = cfm.sample(cond=cond, text=text_list, duration=torch.tensor(durs, device=device), steps=7,
                                    cfg_strength=2.0, sway_sampling_coef=-1.0)  # fmt: skip
                mel = mel.float()
                waves = [up_voc.decode(mel[i : i + 1, ref_len:d].permute(0, 2, 1)) for i, d in enumerate(durs)]
                return [w.squeeze().cpu().numpy() for w in waves]

        return call

    for b in (4, 16):
        texts = [message] * b
        fn = padded(texts)
        secs = sum(len(w) for w in fn()) / SAMPLE_RATE
        rows.append(measure(f"upstream padded batch {b}", b, fn, secs, device, iters, warmup))
        log(_fmt(rows[-1]))
    fn = padded(list(mix))
    secs = sum(len(w) for w in fn()) / SAMPLE_RATE
    rows.append(measure(f"upstream padded chat mix {len(mix)}", len(mix), fn, secs, device, max(2, iters // 2), 1))
    log(_fmt(rows[-1]))
    return {"rows": rows, "checks": checks}


def _fmt(r: Row) -> str:
    return fmt_row(r)
