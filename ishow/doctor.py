"""``ishow doctor``: everything a stream needs, checked before going live, with the fix for each failure.

Each check is a function returning ``Check`` values; nothing here prints (``report`` formats, the CLI prints).
Severity says how bad a failed check is: ``blocker`` (the stream cannot work: exit status 1), ``warning`` (it
works, degraded: e.g. the espeak fallback speaks because F5 weights are missing) or ``info`` (facts).
Checks touch only local files, the configured port and, when a daemon already runs there, its /healthz and /obs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ishow.bytecode_cache import torch_bytecode
from ishow.config.load import default_config, load_config
from ishow.config.schema import DEFAULT_CONFIG, Config
from ishow.errors import ConfigError, IshowError

Severity = Literal["blocker", "warning", "info"]
HTTP_TIMEOUT_S = 2.0
FETCH_FIX = 'run `ishow models fetch` (≈1.4 GB into models/), or set engine.kind = "espeak"'


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    severity: Severity
    detail: str
    fix: str = ""

    @property
    def blocks(self) -> bool:
        return not self.ok and self.severity == "blocker"


def _degraded(cfg: Config) -> Severity:
    """Severity of a broken F5 part: a warning when the espeak fallback will speak instead."""
    return "warning" if cfg.engine.fallback == "espeak" else "blocker"


# ---------------------------------------------------------------- config


def check_config(path: Path | None) -> tuple[Config, list[Check]]:
    """Load the config (every problem listed); on failure the other checks run on the built-in defaults."""
    if path is None:
        cfg = default_config()
        return cfg, [Check("config", True, "info", f"no config file ({DEFAULT_CONFIG} missing): built-in defaults")]
    try:
        cfg = load_config(path)
    except ConfigError as e:
        problems = "\n".join(f"  {p}" for p in e.problems)
        detail = f"{path}: {len(e.problems)} problem(s); other checks use the built-in defaults\n{problems}"
        fix = f"edit {path} (each line names the key), then `ishow check-config {path}`"
        return default_config(), [Check("config", False, "blocker", detail, fix)]
    return cfg, [Check("config", True, "info", f"{path}: valid ({len(cfg.voices)} voices, {len(cfg.sources)} sources)")]


# ---------------------------------------------------------------- runtime


def check_python() -> list[Check]:
    ok = sys.version_info >= (3, 11)
    return [
        Check(
            "python",
            ok,
            "blocker",
            f"Python {platform.python_version()} ({sys.executable})",
            "" if ok else "install Python ≥ 3.11",
        )
    ]


def check_torch(cfg: Config) -> list[Check]:
    try:
        import torch
    except ImportError as e:
        return [
            Check(
                "torch",
                False,
                _degraded(cfg),
                f"torch cannot be imported: {e}",
                "pip install torch (CPU) or a CUDA build; see README",
            )
        ]
    out = [Check("torch", True, "info", f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'})")]
    wants_cuda = cfg.engine.device.startswith("cuda")
    if not torch.cuda.is_available():
        sev: Severity = _degraded(cfg) if wants_cuda and cfg.engine.kind == "f5" else "info"
        detail = "no CUDA device: F5 runs on the CPU (slow; fine for tests), espeak is unaffected"
        if wants_cuda:
            detail = f"engine.device = {cfg.engine.device!r} but no CUDA device is available"
        out.append(
            Check(
                "cuda",
                not wants_cuda,
                sev,
                detail,
                'install the NVIDIA driver and a CUDA build of torch, or set engine.device = "auto"',
            )
        )
        return out
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        name = torch.cuda.get_device_name(i)
        low = free < 2 * 2**30
        out.append(
            Check(
                f"cuda:{i}",
                not low,
                "warning",
                f"{name}: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB",
                "F5TTS_v1_Base needs ≈2 GiB: close other GPU programs" if low else "",
            )
        )
    return out


def check_bytecode(cfg: Config, source: Path | None = None, *, dont_write: bool | None = None) -> list[Check]:
    """Is torch's compiled bytecode cached (:func:`ishow.bytecode_cache.torch_bytecode`)? Only F5 imports torch."""
    state = torch_bytecode(source, dont_write) if cfg.engine.kind == "f5" else None
    if state is None:
        return []
    return [Check("bytecode", state.ok, "info" if state.ok else "warning", state.detail, state.fix)]


def check_tensorrt(cfg: Config) -> list[Check]:
    engines_dir = cfg.engine.engines_dir if cfg.engine.engines_dir.is_absolute() else cfg.root / cfg.engine.engines_dir
    try:
        import tensorrt as trt

        version: str | None = str(trt.__version__)
    except ImportError:
        version = None
    plans = sorted(engines_dir.glob("vocos-*.plan")) if engines_dir.is_dir() else []
    out = [
        Check(
            "tensorrt",
            True,
            "info",
            f"TensorRT {version}" if version else "TensorRT not installed (optional: the vocoder runs in torch)",
            "" if version else "optional: pip install tensorrt (≥ 10) on an NVIDIA machine",
        )
    ]
    if not plans:
        fix = "`ishow engines build` on the streaming machine" if version else ""
        out.append(Check("engine cache", True, "info", f"{engines_dir}: no built engines", fix))
        return out
    stale = []
    for plan in plans:
        try:
            key = json.loads(plan.with_suffix(".json").read_text(encoding="utf-8"))
            if version is not None and key.get("tensorrt") != version:
                stale.append(f"{plan.name} (built with TensorRT {key.get('tensorrt')})")
        except (OSError, ValueError):
            stale.append(f"{plan.name} (no readable .json sidecar)")
    detail = f"{engines_dir}: {len(plans)} engine(s)" + (f"; stale: {', '.join(stale)}" if stale else "")
    out.append(
        Check(
            "engine cache",
            not stale,
            "warning",
            detail,
            "`ishow engines build` rebuilds stale engines" if stale else "",
        )
    )
    return out


# ---------------------------------------------------------------- weights and voices


def read_safetensors_header(path: Path) -> tuple[int, dict[str, str], dict[str, list[int]]]:
    """(tensor count, metadata, shapes) from a safetensors header, without loading the tensors.

    Raises ``IshowError`` naming the file when it is truncated or not safetensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = list(f.keys())
            shapes = {k: list(f.get_slice(k).get_shape()) for k in keys[:4096]}
            return len(keys), dict(f.metadata() or {}), shapes
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise IshowError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from e


def check_weights(cfg: Config) -> list[Check]:
    eng = cfg.engine
    if eng.kind != "f5":
        return [Check("weights", True, "info", f"engine.kind = {eng.kind!r}: no F5 weights needed")]
    sev = _degraded(cfg)
    fallback = " (the espeak fallback speaks instead)" if sev == "warning" else ""
    out: list[Check] = []
    ckpt = eng.checkpoint
    if not ckpt.is_file():
        out.append(Check("weights", False, sev, f"checkpoint {ckpt} does not exist{fallback}", FETCH_FIX))
    elif ckpt.suffix == ".safetensors":
        try:
            count, meta, shapes = read_safetensors_header(ckpt)
        except IshowError as e:
            out.append(Check("weights", False, sev, f"{e}{fallback}", f"delete it and {FETCH_FIX}"))
        else:
            emb = next((s for k, s in shapes.items() if k.endswith("text_embed.text_embed.weight")), None)
            arch = "ishow metadata" if "ishow.dit_config" in meta else f"text embedding {emb}"
            size = ckpt.stat().st_size / 2**20
            out.append(Check("weights", True, "info", f"{ckpt} ({size:.1f} MiB, {count} tensors, {arch})"))
    else:
        out.append(
            Check(
                "weights",
                True,
                "info",
                f"{ckpt} ({ckpt.stat().st_size / 2**20:.1f} MiB; .pt: "
                "header not checked, loaded with weights_only=True)",
            )
        )
    if not eng.vocab.is_file():
        out.append(Check("vocab", False, sev, f"vocab {eng.vocab} does not exist{fallback}", FETCH_FIX))
    else:
        lines = sum(1 for _ in eng.vocab.open(encoding="utf-8", errors="replace"))
        out.append(Check("vocab", lines > 0, sev, f"{eng.vocab}: {lines} tokens", "" if lines else FETCH_FIX))
    missing = [n for n in ("config.yaml", "pytorch_model.bin") if not (eng.vocoder / n).is_file()]
    if missing:
        out.append(Check("vocoder", False, sev, f"{eng.vocoder}: missing {', '.join(missing)}{fallback}", FETCH_FIX))
    else:
        out.append(Check("vocoder", True, "info", f"{eng.vocoder}: config.yaml, pytorch_model.bin"))
    return out


def check_voices(cfg: Config) -> list[Check]:
    from ishow.voices import check_reference

    out: list[Check] = []
    cloning = cfg.engine.kind == "f5"
    for voice in cfg.voices:
        if voice.ref_audio is None:
            out.append(Check(f"voice {voice.id}", True, "info", "no reference recording (espeak voice)"))
            continue
        try:
            _, info = check_reference(voice.ref_audio)
        except (IshowError, OSError, RuntimeError, ImportError) as e:
            sev: Severity = "warning" if cloning else "info"
            out.append(
                Check(
                    f"voice {voice.id}",
                    False,
                    sev,
                    f"{voice.ref_audio}: cannot be checked: {e}" if isinstance(e, ImportError) else f"{e}",
                    f"pip install {e.name}"
                    if isinstance(e, ImportError)
                    else 'record a clean 3–12 s wav; `ishow voices add ID WAV "transcript"` checks it',
                )
            )
            continue
        out.append(
            Check(
                f"voice {voice.id}", True, "info", f"{voice.ref_audio.name}: {info.seconds:.1f} s, RMS {info.rms:.3f}"
            )
        )
    return out


# ---------------------------------------------------------------- devices and network


def check_audio(cfg: Config, query: Callable[[], list[dict[str, object]]] | None = None) -> list[Check]:
    if not cfg.outputs.local.enabled:
        return [Check("audio output", True, "info", "outputs.local disabled (OBS page only)")]
    fix = "install PortAudio (apt install libportaudio2) or set [outputs.local] enabled = false; OBS still gets audio"
    try:
        if query is None:
            import sounddevice as sd

            devices = [dict(d) for d in sd.query_devices()]
        else:
            devices = query()
    except (OSError, ImportError) as e:
        return [Check("audio output", False, "warning", f"no local audio: {e}", fix)]
    except Exception as e:  # noqa: BLE001 - PortAudioError and friends: a report, not a crash
        return [Check("audio output", False, "warning", f"audio devices cannot be listed: {e}", fix)]
    outputs = [d for d in devices if int(str(d.get("max_output_channels", 0))) > 0]
    if not outputs:
        return [Check("audio output", False, "warning", "no audio output device found", fix)]
    names = ", ".join(str(d.get("name", "?")) for d in outputs[:4])
    return [Check("audio output", True, "info", f"{len(outputs)} output device(s): {names}")]


def _listening_pid(port: int) -> str:
    """``pid 123 (cmdline)`` of the process listening on ``port`` (Linux /proc; '' when unknown)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            for line in list(f)[1:]:
                parts = line.split()
                if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    if not inodes:
        return ""
    targets = {f"socket:[{i}]" for i in inodes}
    for pid in _pids():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                        return f"pid {pid} ({cmd.strip()[:80]})"
    return ""


def _pids() -> Iterator[str]:
    with contextlib.suppress(OSError):
        yield from (p for p in os.listdir("/proc") if p.isdigit())


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as r:
            return int(r.status), r.read(1 << 20)
    except urllib.error.HTTPError as e:
        return e.code, b""


def _daemon_url(cfg: Config) -> str:
    host = cfg.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{'[' + host + ']' if ':' in host else host}:{cfg.server.port}"


def probe_daemon(cfg: Config) -> dict[str, object] | None:
    """The /healthz JSON of an ishow daemon on the configured port, or None."""
    try:
        status, body = _get(_daemon_url(cfg) + "/healthz")
        data = json.loads(body) if status == 200 else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "engine" in data and "queue" in data else None


def check_port(cfg: Config, daemon: dict[str, object] | None) -> list[Check]:
    host, port = cfg.server.host, cfg.server.port
    if port == 0:
        return [Check("port", True, "info", "server.port = 0: a free port is picked at start")]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does: TIME_WAIT is not "in use"
        try:
            s.bind((host, port))
        except OSError as e:
            if daemon is not None:
                return [Check("port", True, "info", f"{host}:{port} is served by a running ishow daemon")]
            if e.errno == errno.EADDRINUSE:
                who = _listening_pid(port)
                return [
                    Check(
                        "port",
                        False,
                        "blocker",
                        f"{host}:{port} is in use by {who or 'another program'}",
                        "stop that program, or set server.port (or `ishow run --port N`)",
                    )
                ]
            return [
                Check(
                    "port",
                    False,
                    "blocker",
                    f"cannot bind {host}:{port}: {e}",
                    "set server.host to 127.0.0.1 or an address of this machine",
                )
            ]
    scope = "loopback only" if cfg.server.loopback else "reachable from the network (token required)"
    return [Check("port", True, "info", f"{host}:{port} is free ({scope})")]


def check_obs(cfg: Config, daemon: dict[str, object] | None) -> list[Check]:
    page = f"{_daemon_url(cfg)}/obs"
    if not cfg.outputs.obs.enabled:
        return [Check("obs page", True, "info", "outputs.obs disabled")]
    if daemon is None:
        return [
            Check(
                "obs page",
                True,
                "info",
                f"daemon not running; once started, add a Browser source: {page}",
                "`ishow run` (or the systemd unit in deploy/)",
            )
        ]
    try:
        status, body = _get(page)
    except OSError as e:
        return [Check("obs page", False, "blocker", f"{page}: {e}", "check the daemon log")]
    ok = status == 200 and b"<html" in body.lower()
    return [
        Check(
            "obs page",
            ok,
            "blocker",
            f"{page}: HTTP {status}; engine {daemon.get('engine')}, queue {daemon.get('queue')}",
            "" if ok else "check the daemon log",
        )
    ]


def check_obs_websocket(cfg: Config, daemon: dict[str, object] | None) -> list[Check]:
    """OBS's own websocket: the running daemon's view of it, or one probe (connect, identify, inputs) from here."""
    ows = cfg.outputs.obs_websocket
    if not ows.enabled:
        return [Check("obs websocket", True, "info", "outputs.obs_websocket disabled")]
    outputs = daemon.get("outputs") if daemon is not None else None
    state = (
        next(
            (o for o in outputs if isinstance(o, dict) and o.get("name") == "obs_websocket"),
            None,
        )
        if isinstance(outputs, list)
        else None
    )
    where = "the running daemon reports"
    if state is None:
        import asyncio

        from ishow.outputs.obs_websocket import ObsWebsocketSink

        where = "probed from here"
        try:
            state = asyncio.run(asyncio.wait_for(ObsWebsocketSink(ows).probe(), 4 * ows.request_timeout_s + 5))
        except TimeoutError:
            state = {"status": "stalled", "problems": [f"no answer from OBS at {ows.url}"]}
    listed = state.get("problems")
    problems = [str(p) for p in listed] if isinstance(listed, list) else []
    status = state.get("status")
    ok = status == "connected" and not problems
    detail = f"{ows.url}: {status} ({where})"
    if state.get("obs_version"):
        detail += f", obs-websocket {state['obs_version']}"
    if problems:
        detail += "\n" + "\n".join(problems)
    fix = "" if ok else "see above; README: Use OBS's own websocket"
    return [Check("obs websocket", ok, "warning", detail, fix)]


# ---------------------------------------------------------------- all together


def run_checks(path: Path | None, *, audio_query: Callable[[], list[dict[str, object]]] | None = None) -> list[Check]:
    cfg, checks = check_config(path)
    daemon = probe_daemon(cfg) if cfg.server.port else None
    checks = check_python() + check_torch(cfg) + check_bytecode(cfg) + check_tensorrt(cfg) + checks
    checks += check_weights(cfg) + check_voices(cfg) + check_audio(cfg, audio_query)
    checks += check_port(cfg, daemon) + check_obs(cfg, daemon) + check_obs_websocket(cfg, daemon)
    return checks


MARKS = {"ok": "[ OK ]", "blocker": "[FAIL]", "warning": "[WARN]", "info": "[INFO]"}


def report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        mark = MARKS["ok"] if c.ok else MARKS[c.severity]
        first, *rest = c.detail.split("\n")
        lines.append(f"{mark} {c.name.ljust(width)}  {first}")
        lines += [f"{' ' * (8 + width)}{r}" for r in rest]
        if c.fix and not c.ok:
            lines.append(f"{' ' * (8 + width)}fix: {c.fix}")
        elif c.fix and c.severity == "info":
            lines.append(f"{' ' * (8 + width)}next: {c.fix}")
    blockers = [c for c in checks if c.blocks]
    warnings = [c for c in checks if not c.ok and c.severity == "warning"]
    if blockers:
        lines.append(f"\n{len(blockers)} problem(s) block a stream: {', '.join(c.name for c in blockers)}")
    else:
        lines.append(f"\nready to stream ({len(warnings)} warning(s))")
    return "\n".join(lines)


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.blocks for c in checks) else 0
