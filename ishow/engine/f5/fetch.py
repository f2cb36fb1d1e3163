"""Download the official F5TTS_v1_Base checkpoint and the vocos-mel-24khz vocoder (``ishow models fetch`` only).

Nothing here runs at import. Revisions are pinned; after download each file's size is checked against a plausible
range so a truncated download or an HTML error page fails loudly instead of at load time.

Pinned revisions and sizes come from a public manifest of hub assets (not verified against the hub from here,
which has no network access to it); ``FetchError`` names the file if the hub disagrees.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ishow.errors import LocalError

F5_REPO = "SWivid/F5-TTS"
F5_REVISION = "84e5a410d9cead4de2f847e7c9369a6440bdfaca"
VOCOS_REPO = "charactr/vocos-mel-24khz"
VOCOS_REVISION = "0feb3fdd929bcd6649e0e7c5a688cf7dd012ef21"


class FetchError(LocalError):
    """A model file could not be downloaded or looks wrong after download."""


@dataclass(frozen=True)
class RemoteFile:
    repo: str
    revision: str
    filename: str  # path inside the repo
    subdir: str  # folder under the destination that mirrors the repo; the file lands at subdir/filename
    min_bytes: int
    max_bytes: int


FILES: tuple[RemoteFile, ...] = (
    # model_1250000.safetensors is 1 348 435 761 bytes (fp32 EMA weights, ~337 M parameters)
    RemoteFile(F5_REPO, F5_REVISION, "F5TTS_v1_Base/model_1250000.safetensors", "",
               1_300_000_000, 1_400_000_000),
    RemoteFile(F5_REPO, F5_REVISION, "F5TTS_v1_Base/vocab.txt", "", 5_000, 50_000),
    RemoteFile(VOCOS_REPO, VOCOS_REVISION, "config.yaml", "vocos-mel-24khz", 200, 5_000),
    # pytorch_model.bin is 54 365 991 bytes (13.5 M parameters)
    RemoteFile(VOCOS_REPO, VOCOS_REVISION, "pytorch_model.bin", "vocos-mel-24khz", 50_000_000, 60_000_000),
)  # fmt: skip

Downloader = Callable[[RemoteFile, Path], Path]


def hub_download(f: RemoteFile, local_dir: Path) -> Path:
    """Download one file to ``local_dir/f.filename`` with ``huggingface_hub.hf_hub_download`` (imported lazily)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise FetchError("`ishow models fetch` needs huggingface_hub: pip install huggingface_hub") from e
    try:
        return Path(hf_hub_download(repo_id=f.repo, filename=f.filename, revision=f.revision, local_dir=local_dir))
    except Exception as e:
        raise FetchError(f"could not download {f.repo}@{f.revision[:12]}:{f.filename}: {e}") from e


def check_size(f: RemoteFile, path: Path) -> None:
    size = path.stat().st_size
    if not f.min_bytes <= size <= f.max_bytes:
        raise FetchError(
            f"{path} is {size} bytes; expected {f.min_bytes}–{f.max_bytes} for {f.repo}:{f.filename} "
            "(truncated or not the expected file; delete it and run `ishow models fetch` again)"
        )


def fetch_models(dest: Path, downloader: Downloader | None = None) -> list[Path]:
    """Put F5TTS_v1_Base/{model_1250000.safetensors,vocab.txt} and vocos-mel-24khz/{config.yaml,pytorch_model.bin}
    under ``dest``; files already there with a plausible size are kept. Returns the final paths."""
    dest = Path(dest)
    download = downloader or hub_download
    out: list[Path] = []
    for f in FILES:
        local_dir = dest / f.subdir if f.subdir else dest
        target = local_dir / f.filename
        if target.is_file():
            try:
                check_size(f, target)
                out.append(target)
                continue
            except FetchError:
                target.unlink()
        local_dir.mkdir(parents=True, exist_ok=True)
        got = download(f, local_dir)
        if not got.is_file():
            raise FetchError(f"download of {f.repo}:{f.filename} reported {got}, which is not a file")
        check_size(f, got)
        if got.resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(got, target)
        out.append(target)
    return out
