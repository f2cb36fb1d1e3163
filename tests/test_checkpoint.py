"""Strict checkpoint loading, tiny model writer, architecture inference, and the fetch size checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ishow.engine.f5.checkpoint import (
    TinyPaths,
    infer_config,
    load_dit,
    normalize_keys,
    read_checkpoint,
    write_tiny_model,
)
from ishow.engine.f5.dit import F5TTS_V1_BASE, F5TTS_V1_SMALL, TINY, DiT, DiTConfig
from ishow.engine.f5.fetch import FILES, FetchError, RemoteFile, fetch_models
from ishow.errors import ModelLoadError, WeightsMissingError

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyPaths:
    return write_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


def test_tiny_model_layout(tiny: TinyPaths) -> None:
    raw = load_file(str(tiny.checkpoint))
    assert "initted" in raw and "step" in raw
    assert all(k.startswith("ema_model.transformer.") for k in raw if k not in ("initted", "step"))
    assert (tiny.vocoder / "config.yaml").is_file() and (tiny.vocoder / "pytorch_model.bin").is_file()
    assert tiny.vocab.read_text(encoding="utf-8").splitlines()[0] == " "


def test_tiny_model_loads_and_is_deterministic(tiny: TinyPaths, tmp_path: Path) -> None:
    model = load_dit(tiny.checkpoint)
    assert model.config.dim == TINY.dim and model.config.text_num_embeds == 2545
    again = load_dit(write_tiny_model(tmp_path, seed=0).checkpoint)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_vocos_of_tiny_model_loads(tiny: TinyPaths) -> None:
    from ishow.engine.f5.vocos import load_vocos

    voc = load_vocos(tiny.vocoder)
    audio = voc.decode(torch.randn(1, 100, 20) - 4)
    assert audio.shape == (1, 19 * 256) and float(audio.abs().max()) > 0


def resave(src: Path, dst: Path, edit: object) -> Path:
    tensors = load_file(str(src))
    edit(tensors)  # type: ignore[operator]
    meta = {"ishow.dit_config": json.dumps(TINY.to_dict())}
    save_file(tensors, str(dst), metadata=meta)
    return dst


def test_missing_key_is_listed(tiny: TinyPaths, tmp_path: Path) -> None:
    key = "ema_model.transformer.transformer_blocks.1.attn.to_k.bias"
    path = resave(tiny.checkpoint, tmp_path / "m.safetensors", lambda t: t.pop(key))
    with pytest.raises(ModelLoadError, match=r"missing keys: transformer_blocks\.1\.attn\.to_k\.bias"):
        load_dit(path)


def test_extra_key_is_listed(tiny: TinyPaths, tmp_path: Path) -> None:
    path = resave(
        tiny.checkpoint,
        tmp_path / "e.safetensors",
        lambda t: t.update({"ema_model.transformer.extra.weight": torch.zeros(3)}),
    )
    with pytest.raises(ModelLoadError, match=r"unexpected keys: extra\.weight"):
        load_dit(path)


def test_misshaped_key_is_listed(tiny: TinyPaths, tmp_path: Path) -> None:
    key = "ema_model.transformer.proj_out.bias"
    path = resave(tiny.checkpoint, tmp_path / "s.safetensors", lambda t: t.update({key: torch.zeros(7)}))
    with pytest.raises(ModelLoadError, match=r"mis-shaped keys: proj_out\.bias \(file \[7\], model \[100\]\)"):
        load_dit(path)


def test_missing_file_names_path_and_command(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "model_1250000.safetensors"
    with pytest.raises(WeightsMissingError, match="ishow models fetch") as e:
        load_dit(path)
    assert str(path) in str(e.value)


def test_truncated_and_garbage_files(tiny: TinyPaths, tmp_path: Path) -> None:
    data = tiny.checkpoint.read_bytes()
    trunc = tmp_path / "t.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"t\.safetensors"):
        load_dit(trunc)
    garbage = tmp_path / "g.pt"
    garbage.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelLoadError, match=r"g\.pt"):
        load_dit(garbage)
    wrong = tmp_path / "w.bin"
    wrong.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unknown format"):
        load_dit(wrong)


def test_pt_checkpoint_with_ema_state_dict(tmp_path: Path) -> None:
    # a .pt carries no metadata, so the architecture comes from shapes alone (dim_head 64, as in official configs)
    config = DiTConfig(dim=64, depth=2, heads=2, dim_head=64, text_dim=32, conv_layers=1)
    model = DiT(config)
    sd = {f"ema_model.transformer.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "model.pt"
    torch.save({"ema_model_state_dict": {**sd, "initted": torch.tensor(True), "step": torch.tensor(3)}}, path)
    loaded = load_dit(path)
    assert loaded.config == config
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    torch.save({"model_state_dict": {}}, tmp_path / "bad.pt")
    with pytest.raises(ModelLoadError, match="ema_model_state_dict"):
        load_dit(tmp_path / "bad.pt")


def test_prefix_variants_are_accepted() -> None:
    t = torch.zeros(1)
    raw = {"ema_model.transformer.a": t, "initted": t, "step": t, "ema_model.mel_spec.x": t}
    assert list(normalize_keys(raw)) == ["a"]
    assert list(normalize_keys({"transformer.b": t})) == ["b"]
    assert list(normalize_keys({"c": t})) == ["c"]


@pytest.mark.parametrize(("name", "config"), [("F5TTS_v1_Base", F5TTS_V1_BASE), ("F5TTS_v1_Small", F5TTS_V1_SMALL)])
def test_infer_official_architectures_from_shapes(name: str, config: object) -> None:
    table = json.loads((GOLDEN / "dit_keys.json").read_text())[name]
    sd = {k: torch.empty(v, device="meta") for k, v in table.items()}
    assert infer_config(sd) == config


def test_expected_architecture_mismatch(tiny: TinyPaths) -> None:
    with pytest.raises(ModelLoadError, match="asks for F5TTS_v1_Base"):
        load_dit(tiny.checkpoint, expect="F5TTS_v1_Base")


def test_read_checkpoint_returns_metadata(tiny: TinyPaths) -> None:
    _, meta = read_checkpoint(tiny.checkpoint)
    assert json.loads(meta["ishow.dit_config"]) == TINY.to_dict()


def test_not_a_dit_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    save_file({"ema_model.foo": torch.zeros(2)}, str(path))
    with pytest.raises(ModelLoadError, match="not an F5-TTS DiT checkpoint"):
        load_dit(path)


def test_state_dict_of_ours_round_trips_through_safetensors(tmp_path: Path) -> None:
    model = DiT(TINY)
    path = tmp_path / "m.safetensors"
    save_file({f"transformer.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"ishow.dit_config": json.dumps(TINY.to_dict())})  # fmt: skip
    loaded = load_dit(path)
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )


# -- fetch (no hub here: the downloader is replaced) --------------------------------------------------------------


def fake_downloader(sizes: dict[str, int], calls: list[str]) -> object:
    def download(f: RemoteFile, local_dir: Path) -> Path:
        calls.append(f.filename)
        path = local_dir / f.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            fh.truncate(sizes.get(f.filename, f.min_bytes))  # sparse file of the plausible size
        return path

    return download


def test_fetch_places_files_and_skips_present_ones(tmp_path: Path) -> None:
    calls: list[str] = []
    paths = fetch_models(tmp_path, downloader=fake_downloader({}, calls))  # type: ignore[arg-type]
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "F5TTS_v1_Base/model_1250000.safetensors",
        "F5TTS_v1_Base/vocab.txt",
        "vocos-mel-24khz/config.yaml",
        "vocos-mel-24khz/pytorch_model.bin",
    ]
    assert len(calls) == len(FILES)
    calls.clear()
    fetch_models(tmp_path, downloader=fake_downloader({}, calls))  # type: ignore[arg-type]
    assert calls == []


def test_fetch_rejects_implausible_size(tmp_path: Path) -> None:
    calls: list[str] = []
    dl = fake_downloader({"pytorch_model.bin": 1234}, calls)
    with pytest.raises(FetchError, match=r"pytorch_model\.bin is 1234 bytes"):
        fetch_models(tmp_path, downloader=dl)  # type: ignore[arg-type]


def test_fetch_revisions_are_pinned() -> None:
    assert all(len(f.revision) == 40 for f in FILES)
