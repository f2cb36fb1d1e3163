"""Strict loading of F5-TTS DiT checkpoints, and tiny random checkpoints in the real format for tests.

Accepted files:

* ``.safetensors`` with keys ``ema_model.transformer.*`` (the official ``model_1250000.safetensors``), or
  ``transformer.*``, or bare DiT keys; upstream's ``initted``/``step`` and ``mel_spec.*`` buffers are ignored.
* ``.pt``/``.pth``/``.ckpt`` holding ``ema_model_state_dict`` (read with ``torch.load(weights_only=True)``).

The architecture is inferred from the tensor shapes (heads from ``dim_head`` 64, as every official config uses),
or read from the ``ishow.dit_config`` safetensors metadata when present. Any missing, unexpected or mis-shaped key
raises ``ModelLoadError`` listing them: never a silent partial load.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ishow.engine.f5.dit import CONFIGS, TINY, DiT, DiTConfig
from ishow.errors import ModelLoadError, WeightsMissingError

METADATA_KEY = "ishow.dit_config"
IGNORED_KEYS = frozenset({"initted", "step"})
IGNORED_PREFIXES = ("mel_spec.",)
FETCH_HINT = "run `ishow models fetch` to download F5TTS_v1_Base (or `ishow models tiny DIR` for a tiny test model)"
_MAX_LISTED = 20


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" … and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else "")


def read_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read the raw tensors (CPU) and the safetensors metadata (empty for ``.pt``) of a checkpoint file."""
    path = Path(path)
    if not path.exists():
        raise WeightsMissingError(f"checkpoint {str(path)!r} does not exist; {FETCH_HINT}")
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {str(path)!r} is not a regular file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta: dict[str, str] = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(
                f"checkpoint {str(path)!r} is not a readable safetensors file (truncated?): {e}"
            ) from e
        return tensors, meta
    if path.suffix in (".pt", ".pth", ".ckpt"):
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise ModelLoadError(f"checkpoint {str(path)!r} is not a readable torch file (truncated?): {e}") from e
        if not isinstance(obj, dict) or not isinstance(obj.get("ema_model_state_dict"), dict):
            found = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
            raise ModelLoadError(f"checkpoint {str(path)!r} has no 'ema_model_state_dict'; found {found}")
        sd = obj["ema_model_state_dict"]
        bad = [str(k) for k, v in sd.items() if not isinstance(v, Tensor) and k not in IGNORED_KEYS]
        if bad:
            raise ModelLoadError(f"checkpoint {str(path)!r}: non-tensor entries {_listing(bad)}")
        return {str(k): v for k, v in sd.items() if isinstance(v, Tensor)}, {}
    raise ModelLoadError(f"checkpoint {str(path)!r}: unknown format {path.suffix!r}; expected .safetensors or .pt")


def normalize_keys(raw: dict[str, Tensor]) -> dict[str, Tensor]:
    """Strip ``ema_model.`` and ``transformer.`` prefixes; drop ``initted``/``step``/``mel_spec.*``."""
    out: dict[str, Tensor] = {}
    for key, value in raw.items():
        k = key.removeprefix("ema_model.")
        if k in IGNORED_KEYS or k.startswith(IGNORED_PREFIXES):
            continue
        out[k.removeprefix("transformer.")] = value
    return out


def _count(sd: dict[str, Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def infer_config(sd: dict[str, Tensor], meta: dict[str, str] | None = None, where: str = "checkpoint") -> DiTConfig:
    """The DiT architecture of a normalized state dict (metadata wins when present)."""
    if meta and METADATA_KEY in meta:
        try:
            return DiTConfig.from_dict(json.loads(meta[METADATA_KEY]))
        except (ValueError, TypeError) as e:
            raise ModelLoadError(f"{where}: bad {METADATA_KEY} metadata {meta[METADATA_KEY]!r}: {e}") from e
    needed = ("time_embed.time_mlp.0.weight", "text_embed.text_embed.weight", "proj_out.weight",
              "transformer_blocks.0.attn.to_q.weight", "transformer_blocks.0.ff.ff.0.0.weight")  # fmt: skip
    missing = [k for k in needed if k not in sd]
    if missing:
        sample = _listing(sorted(sd)[:5])
        raise ModelLoadError(f"{where}: not an F5-TTS DiT checkpoint; missing keys {_listing(missing)} (has {sample})")
    dim = int(sd["time_embed.time_mlp.0.weight"].shape[0])
    inner = int(sd["transformer_blocks.0.attn.to_q.weight"].shape[0])
    dim_head = 64
    if inner % dim_head:
        raise ModelLoadError(f"{where}: attention width {inner} is not a multiple of dim_head 64")
    emb = sd["text_embed.text_embed.weight"]
    return DiTConfig(
        dim=dim,
        depth=_count(sd, r"transformer_blocks\.(\d+)\."),
        heads=inner // dim_head,
        dim_head=dim_head,
        ff_mult=int(sd["transformer_blocks.0.ff.ff.0.0.weight"].shape[0]) // dim,
        mel_dim=int(sd["proj_out.weight"].shape[0]),
        text_num_embeds=int(emb.shape[0]) - 1,
        text_dim=int(emb.shape[1]),
        conv_layers=_count(sd, r"text_embed\.text_blocks\.(\d+)\."),
    )


def check_state_dict(model: torch.nn.Module, sd: dict[str, Tensor], where: str = "checkpoint") -> None:
    """Raise ``ModelLoadError`` listing every missing, unexpected and mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    mismatched = sorted(
        f"{k} (file {list(sd[k].shape)}, model {list(expected[k].shape)})"
        for k in set(expected) & set(sd)
        if tuple(sd[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"mis-shaped keys: {_listing(mismatched)}")
    if problems:
        raise ModelLoadError(f"{where} does not match the DiT architecture: " + "; ".join(problems))


def load_dit(
    path: Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    expect: str | None = None,
) -> DiT:
    """Load a DiT checkpoint strictly. ``expect`` (``F5TTS_v1_Base``/``F5TTS_v1_Small``) checks the architecture."""
    where = f"checkpoint {str(path)!r}"
    raw, meta = read_checkpoint(Path(path))
    sd = normalize_keys(raw)
    config = infer_config(sd, meta, where)
    if expect is not None and expect in CONFIGS and expect != "tiny" and CONFIGS[expect] != config:
        names = [n for n, c in CONFIGS.items() if c == config]
        raise ModelLoadError(
            f"{where} holds a {names[0] if names else config} model; the configuration asks for {expect}"
        )
    try:
        model = DiT(config)
    except ValueError as e:
        raise ModelLoadError(f"{where}: unusable architecture {config}: {e}") from e
    check_state_dict(model, sd, where)
    bad = [k for k, v in sd.items() if not torch.is_floating_point(v) or not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelLoadError(f"{where}: non-finite or non-float tensors {_listing(bad)}")
    model.load_state_dict(sd, strict=True)
    return model.to(device=device, dtype=dtype).eval()


@dataclass(frozen=True)
class TinyPaths:
    root: Path
    checkpoint: Path
    vocab: Path
    vocoder: Path


def randomize_(model: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    """Fill every parameter with seeded random values (weights ~ N(0, 1/fan_in), vectors ~ N(0, std²))."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / max(1, p[0].numel()) ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def write_tiny_model(dir: Path, seed: int = 0) -> TinyPaths:
    """Write a tiny random F5 model in the real formats: ``model.safetensors`` (``ema_model.transformer.*`` keys,
    config in metadata), ``vocab.txt`` (the packaged F5 vocab) and ``vocos/`` (config.yaml + pytorch_model.bin)."""
    from safetensors.torch import save_file

    from ishow.engine.f5.text import load_vocab

    root = Path(dir)
    root.mkdir(parents=True, exist_ok=True)
    vocab = root / "vocab.txt"
    vocab.write_bytes(importlib.resources.files("ishow.engine.f5").joinpath("vocab.txt").read_bytes())
    config = DiTConfig(**{**TINY.to_dict(), "text_num_embeds": len(load_vocab(vocab))})
    model = DiT(config)
    randomize_(model, seed)
    tensors = {f"ema_model.transformer.{k}": v.contiguous() for k, v in model.state_dict().items()}
    tensors["initted"] = torch.tensor([True])  # ema_pytorch's buffers, as in the official file
    tensors["step"] = torch.tensor([0])
    checkpoint = root / "model.safetensors"
    save_file(tensors, str(checkpoint), metadata={METADATA_KEY: json.dumps(config.to_dict()), "format": "pt"})
    vocoder = root / "vocos"
    write_tiny_vocos(vocoder, seed=seed)
    return TinyPaths(root=root, checkpoint=checkpoint, vocab=vocab, vocoder=vocoder)


def write_tiny_vocos(
    folder: Path, seed: int = 0, dim: int = 64, intermediate_dim: int = 192, num_layers: int = 2
) -> Path:
    """Write a random Vocos in the vocos-mel-24khz format (``config.yaml`` + ``pytorch_model.bin``, same keys and
    mel/STFT settings) with a small backbone, through ``ishow.engine.f5.vocos``."""
    from ishow.engine.f5.vocos import Vocos, VocosConfig, save_vocos

    config = VocosConfig(dim=dim, intermediate_dim=intermediate_dim, num_layers=num_layers, head_dim=dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        model = Vocos(config)
    save_vocos(Path(folder), model, config)
    return Path(folder)
