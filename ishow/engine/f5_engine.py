"""The F5-TTS engine: voice-cloning synthesis with our DiT, CFM sampler and Vocos, many messages per forward.

All requests of a ``synthesize`` call (different texts, different voices) go through ONE sampler call (one per
distinct ``nfe_step``); padding is masked, so each item's audio equals its single-item result. Reference voices are
preprocessed once and cached per voice id, file and modification time.

Importing this module probes no device and downloads nothing; ``load()`` does the work.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from ishow.audio_format import HOP, SAMPLE_RATE
from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.base import Engine, SynthRequest, reference_key
from ishow.engine.chunking import LengthBudget
from ishow.engine.f5.duration import generated_frames, ref_text_for_prompt, utf8_len
from ishow.engine.f5.sampler import SampleItem, SamplerConfig
from ishow.errors import ConfigError, EngineError, InputError, OutOfMemoryError, VoiceError

if TYPE_CHECKING:
    from ishow.engine.accel.graphs import GraphSampler
    from ishow.engine.accel.vocoder_backends import VocoderBackend
    from ishow.engine.accel.warmer import WarmupTask
    from ishow.engine.f5.dit import DiT
    from ishow.engine.f5.vocos import Vocos

_log = logging.getLogger(__name__)  # stdlib logging: the engine path stays free of daemon deps

TARGET_RMS = 0.1
MIN_REF_SECONDS = 0.5
MAX_REF_SECONDS = 30.0
MAX_GEN_SECONDS = 30.0
BUDGET_MARGIN = 0.9  # chunks are planned to at most this share of MAX_GEN_SECONDS
Waveform = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class PreparedVoice:
    """A reference voice ready for sampling: ``mel`` [Tref, 100] fp32 (CPU), transcript, original RMS."""

    id: str
    key: tuple[object, ...]
    mel: torch.Tensor
    ref_text: str
    rms: float

    @property
    def frames(self) -> int:
        return int(self.mel.shape[0])


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"engine.device: {name!r} is not a device; expected auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"engine.device: {name!r} requested but CUDA is not available")
    return dev


def _resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name == "fp32":
        return torch.float32
    if name == "fp16":
        if device.type != "cuda":
            raise ConfigError("engine.precision: fp16 needs a CUDA device; use fp32 (or auto) on CPU")
        return torch.float16
    raise ConfigError(f"engine.precision: {name!r}; expected auto, fp32 or fp16")


class F5Engine(Engine):
    kind = "f5"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.device: torch.device | None = None
        self.dtype: torch.dtype | None = None
        self.model: Any = None
        self.vocoder: Any = None
        self.vocab: dict[str, int] = {}
        self._mel: Any = None
        self._voices: dict[str, PreparedVoice] = {}
        self._tokenize: Callable[[str], list[str]] | None = None
        self.sampler: GraphSampler | None = None
        self.vocoder_backend: VocoderBackend | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def load(self) -> None:
        from ishow.engine.f5.checkpoint import load_dit
        from ishow.engine.f5.text import load_vocab
        from ishow.engine.f5.vocos import load_vocos

        cfg = self.config
        t0 = time.perf_counter()
        device = _resolve_device(cfg.device)
        dtype = _resolve_dtype(cfg.precision, device)
        t_cache = time.perf_counter()
        if device.type == "cuda" and cfg.compile and cfg.cuda_graphs:
            from ishow.engine.f5_warmup import use_compile_cache

            use_compile_cache(Path(cfg.compile_cache))
        t_dit = time.perf_counter()
        vocab = load_vocab(Path(cfg.vocab))
        model = load_dit(Path(cfg.checkpoint), device=device, dtype=dtype, expect=cfg.model)
        t_voc = time.perf_counter()
        if model.config.text_num_embeds < len(vocab):
            raise EngineError(
                f"vocab {str(cfg.vocab)!r} has {len(vocab)} tokens but checkpoint {str(cfg.checkpoint)!r} embeds only "
                f"{model.config.text_num_embeds}; use the vocab.txt shipped with the checkpoint"
            )
        vocoder = load_vocos(Path(cfg.vocoder), device=device)  # fp32: cheap, and the ISTFT wants it
        self.attach(model, vocoder, vocab)
        t_end = time.perf_counter()
        _log.info(  # where startup goes before /healthz (device init, compile cache artifacts, weights)
            "engine loaded: device %.2f s, compile cache %.2f s, DiT %.2f s, vocoder %.2f s",
            t_cache - t0, t_dit - t_cache, t_voc - t_dit, t_end - t_voc,
        )  # fmt: skip

    def attach(self, model: DiT, vocoder: Vocos, vocab: dict[str, int]) -> None:
        """Use already-built models (``load`` reads them from the configured files; ``ishow bench`` builds them
        with random weights). Sets up the bucketed/graphed sampler and the vocoder backend."""
        from ishow.engine.accel.capture_cost import GraphPool
        from ishow.engine.accel.graphs import Buckets, GraphSampler
        from ishow.engine.accel.vocoder_backends import select_vocoder
        from ishow.engine.f5.audio import MelSpectrogram
        from ishow.engine.f5.text import text_to_tokens

        cfg = self.config
        device, dtype = model.proj_out.weight.device, model.proj_out.weight.dtype
        pool = GraphPool()  # one graph memory pool for the DiT's and the vocoder's buckets (replayed one at a time)
        buckets = Buckets(max_area=cfg.max_batch_frames)
        self.sampler = GraphSampler(model, buckets, use_graphs=cfg.cuda_graphs, compile=cfg.compile, pool=pool)
        self.vocoder_backend = select_vocoder(
            cfg.vocoder_backend,
            vocoder,
            device,
            Path(cfg.engines_dir),
            use_graphs=cfg.cuda_graphs,
            compile=cfg.compile,
            half=dtype == torch.float16,  # fp16 backbone, fp32 exp/ISTFT head
            pool=pool,
        )
        self.model, self.vocoder, self.vocab, self.device, self.dtype = model, vocoder, vocab, device, dtype
        self._mel = MelSpectrogram()
        self._tokenize = text_to_tokens

    def warmup(self, voice: VoiceSpec) -> None:
        """On CUDA, synthesize one short message so compilation and the batch-1 graph capture happen at
        startup, not on the first chat message. Nothing to do on CPU."""
        if self.device is None or self.device.type != "cuda":
            return
        self.synthesize([SynthRequest(text="你好", voice=voice)])

    def warmup_tasks(self, voices: Sequence[VoiceSpec], max_batch: int) -> list[WarmupTask]:
        """Background capture of the buckets chat will use (see :mod:`ishow.engine.f5_warmup`); from then on no
        graph is captured on a message's path."""
        from ishow.engine.f5_warmup import warmup_tasks

        self._require_loaded()
        assert self._tokenize is not None
        self._tokenize("预热一下 warm up")  # load the segmenter's dictionary now, not on the first message
        return warmup_tasks(self, voices, max_batch)

    def demand_tasks(self) -> list[WarmupTask]:
        from ishow.engine.f5_warmup import demand_tasks

        return demand_tasks(self) if self.model is not None else []

    def warmup_done(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            from ishow.engine.f5_warmup import after_warmup

            after_warmup(Path(self.config.compile_cache) if self.config.compile else None)

    def close(self) -> None:
        self.model = self.vocoder = self.sampler = self.vocoder_backend = None
        self._voices.clear()

    def describe(self) -> dict[str, object]:
        info: dict[str, object] = {"kind": self.kind, "loaded": self.model is not None}
        if self.model is not None:
            info.update(
                device=str(self.device),
                precision=str(self.dtype).removeprefix("torch."),
                model=self.config.model,
                checkpoint=str(self.config.checkpoint),
                voices=sorted(self._voices),
                cuda_graphs=bool(self.sampler and self.sampler.use_graphs),
                compiled_dit=bool(self.sampler and self.sampler.compile),
                vocoder_backend=self.vocoder_backend.name if self.vocoder_backend else None,
            )
        return info

    def _require_loaded(self) -> None:
        if self.model is None or self.sampler is None or self.vocoder_backend is None or self._tokenize is None:
            raise EngineError("F5Engine.load() must succeed before prepare_voice()/synthesize()")

    # -- voices ----------------------------------------------------------------------------------------------
    def prepare_voice(self, voice: VoiceSpec) -> None:
        """Load, normalise and mel the reference once; cached per (id, path, mtime, size, transcript)."""
        self.prepared(voice)

    def prepared(self, voice: VoiceSpec) -> PreparedVoice:
        """The cached :class:`PreparedVoice` of ``voice``, (re)computed when its file or transcript changed."""
        from ishow.engine.f5.audio import load_audio, rms_normalize

        self._require_loaded()
        path, key = reference_key(voice, "the f5 engine")
        cached = self._voices.get(voice.id)
        if cached is not None and cached.key == key:
            return cached
        audio = load_audio(path)
        seconds = len(audio) / SAMPLE_RATE
        if not MIN_REF_SECONDS <= seconds <= MAX_REF_SECONDS:
            raise VoiceError(
                f"voice {voice.id!r}: reference {str(path)!r} lasts {seconds:.2f} s; expected "
                f"{MIN_REF_SECONDS}–{MAX_REF_SECONDS} s (5–12 s of clean speech works best)"
            )
        audio, rms = rms_normalize(audio, TARGET_RMS)
        mel = self._mel(torch.from_numpy(audio))[0].transpose(0, 1).contiguous()  # [Tref, 100]
        prepared = PreparedVoice(id=voice.id, key=key, mel=mel, ref_text=ref_text_for_prompt(voice.ref_text), rms=rms)
        self._voices[voice.id] = prepared
        return prepared

    def length_budget(self, voice: VoiceSpec, speed: float) -> LengthBudget:
        """Speech rate of ``voice`` (from its reference) and the most text one request may carry for it."""
        prepared = self.prepared(voice)
        seconds_per_byte = prepared.frames / max(1, utf8_len(prepared.ref_text)) * HOP / SAMPLE_RATE
        rate = speed * voice.speed / seconds_per_byte
        return LengthBudget(bytes_per_second=rate, max_bytes=max(4, int(MAX_GEN_SECONDS * BUDGET_MARGIN * rate)))

    # -- synthesis -------------------------------------------------------------------------------------------
    def _item(self, req: SynthRequest) -> tuple[SampleItem, PreparedVoice]:
        assert self._tokenize is not None
        text = req.text.strip()
        if not text:
            raise InputError(f"empty text for voice {req.voice.id!r}; expected something to say")
        # engine.speed and engine.seed reach us through the request (the worker copies them in): applied once here
        speed = req.speed * req.voice.speed
        if not (math.isfinite(speed) and 0.1 <= speed <= 10):
            raise InputError(f"speed {speed:g} (request × voice) is outside 0.1–10")
        voice = self.prepared(req.voice)
        gen = generated_frames(voice.frames, utf8_len(voice.ref_text), utf8_len(text), speed)
        if gen * HOP / SAMPLE_RATE > MAX_GEN_SECONDS:
            raise InputError(
                f"text of {len(text)} chars would take {gen * HOP / SAMPLE_RATE:.1f} s with voice {req.voice.id!r}; "
                f"at most {MAX_GEN_SECONDS:.0f} s per message (split it)"
            )
        ids = [self.vocab.get(t, 0) for t in self._tokenize(voice.ref_text + text)]
        seed = req.seed
        item = SampleItem(cond=voice.mel, text=tuple(ids), duration=voice.frames + gen, seed=seed)
        return item, voice

    def synthesize(self, requests: Sequence[SynthRequest]) -> list[Waveform]:
        """One waveform (float32, 24 kHz, reference cut off, reference loudness restored) per request."""
        self._require_loaded()
        if not requests:
            return []
        prepared = [self._item(r) for r in requests]
        out: list[Waveform | None] = [None] * len(requests)
        by_nfe: dict[int, list[int]] = {}
        for i, r in enumerate(requests):
            if r.nfe_step < 1:
                raise InputError(f"nfe_step must be >= 1, got {r.nfe_step}")
            by_nfe.setdefault(r.nfe_step, []).append(i)
        launched: list[tuple[list[int], list[torch.Tensor]]] = []
        for nfe, idx in by_nfe.items():
            sc = SamplerConfig(nfe_step=nfe, cfg_strength=self.config.cfg_strength, sway_coef=self.config.sway_coef)
            for part in self._parts([prepared[i] for i in idx], sc):
                sub = [idx[j] for j in part]
                launched.append((sub, self._run_split([prepared[i] for i in sub], sc)))
        # every sub-batch is queued on the device before the first result is fetched: the GPU does not wait for a
        # copy back and the next sub-batch's inputs in between
        for sub, waves in launched:
            for i, w in zip(sub, waves, strict=True):
                out[i] = np.ascontiguousarray(w.float().cpu().numpy(), dtype=np.float32)
        return [w for w in out if w is not None]

    def _parts(self, items: list[tuple[SampleItem, PreparedVoice]], sc: SamplerConfig) -> list[list[int]]:
        """``items`` as the sub-batches that finish soonest (with CUDA graphs; eager runs keep the batch whole):
        rows are padded up to a graph's batch size and every row to the batch's longest message, so 5 messages run
        as 4 + 1, and a long one apart from short ones, when that costs less on the graphs ready now
        (:func:`ishow.engine.accel.bucket_plan.split_batch`). No sub-batch's graph exceeds
        ``engine.max_batch_frames`` (rows × frames: the graph's memory grows with it), so a burst of long messages
        runs as a few smaller batches instead of one graph that would hold its memory for the rest of the stream."""
        from ishow.engine.accel.bucket_plan import split_batch

        assert self.sampler is not None
        if not self.sampler.use_graphs or len(items) <= 1:
            return [list(range(len(items)))]
        b = self.sampler.buckets
        frames = [it.total_frames() for it, _ in items]
        parts = split_batch(frames, b.area, b.max_area, self.sampler.cost_of(sc))
        if len(parts) > 1:
            _log.debug("batch of %d runs as %s", len(items), [[frames[i] for i in p] for p in parts])
        return parts

    def _run_split(self, items: list[tuple[SampleItem, PreparedVoice]], sc: SamplerConfig) -> list[torch.Tensor]:
        """Run a batch; on CUDA OOM retry it in halves; a single item that still does not fit raises."""
        try:
            return self._run(items, sc)
        except torch.OutOfMemoryError as e:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(items) == 1:
                frames = items[0][0].total_frames()
                raise OutOfMemoryError(
                    f"out of accelerator memory for a single message of {frames} frames on {self.device}: {e}"
                ) from e
            half = len(items) // 2
            _log.warning("out of accelerator memory on a batch of %d; retrying in halves", len(items))
            return self._run_split(items[:half], sc) + self._run_split(items[half:], sc)

    def _run(self, items: list[tuple[SampleItem, PreparedVoice]], sc: SamplerConfig) -> list[torch.Tensor]:
        """One sub-batch's waveforms on the device (queued, not waited for), loudness restored."""
        assert self.sampler is not None and self.vocoder_backend is not None
        mels = self.sampler.sample([it for it, _ in items], sc)
        # one vocoder call for the whole batch: frame masks make each item equal its own decode
        waves = self.vocoder_backend.decode(mels)
        out: list[torch.Tensor] = []
        for wave, (_, voice) in zip(waves, items, strict=True):
            if voice.rms < TARGET_RMS:
                wave = wave * (voice.rms / TARGET_RMS)
            out.append(wave)
        return out


def timed_synthesize(engine: F5Engine, requests: Sequence[SynthRequest]) -> tuple[list[Waveform], float]:
    """Synthesize and return the wall time in seconds (a convenience for benchmarks)."""
    t0 = time.perf_counter()
    out = engine.synthesize(requests)
    if engine.device is not None and engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    return out, time.perf_counter() - t0
