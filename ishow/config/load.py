"""Loading the configuration: TOML → the frozen dataclasses of ``ishow.config.schema``, validated once.

Every problem is collected (not just the first) and reported as ``key.path: what was wrong`` so
``ishow check-config`` can list them all. Relative paths are resolved against ``root`` (a top-level key,
itself relative to the config file's folder; default: that folder).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ishow.config.addresses import host_entry_problem, origin_entry_problem, token_problem
from ishow.config.choices import (
    DEVICES,
    ENGINE_FALLBACKS,
    ENGINE_KINDS,
    MAX_BATCH_BUCKET,
    MODELS,
    ON_SHUTDOWN,
    PRECISIONS,
    SOURCE_KINDS,
    VOCODER_BACKENDS,
    one_of,
)
from ishow.config.schema import (
    WINDOW_MS_RANGE,
    Config,
    default_platform_templates,
    is_loopback,
)
from ishow.errors import ConfigError
from ishow.events import EventKind

T = TypeVar("T")
_Check = Callable[[Any], str | None]

TEMPLATE_KINDS = ("danmaku", "super_chat", "gift", "guard", "sub", "raid", "system")
TEMPLATE_FIELDS = ("user", "text", "amount", "currency", "gift", "num", "platform")
CAPTION_FIELDS = ("user", "text", "raw", "voice", "platform")


def _regex_problem(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as e:
        return f"not a valid regular expression ({e})"
    return None


def _template_problem(value: str) -> str | None:
    return _fields_problem(value, TEMPLATE_FIELDS)


def _fields_problem(value: str, fields: tuple[str, ...]) -> str | None:
    try:
        value.format(**dict.fromkeys(fields, ""))
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:  # "{user[x]}", "{user.x}"...
        return f"bad template ({type(e).__name__}: {e}); fields are {', '.join('{' + f + '}' for f in fields)}"
    return None


# Per-field checks beyond the type: return a message when the value is bad.
_CHECKS: dict[str, _Check] = {
    "server.port": lambda v: None if 0 <= v <= 65535 else "must be 0–65535",
    "server.max_text_chars": lambda v: None if v >= 1 else "must be ≥ 1",
    "server.max_body_bytes": lambda v: None if v >= 1024 else "must be ≥ 1024",
    "server.allowed_hosts": lambda v: host_entry_problem(v),
    "server.allowed_origins": lambda v: origin_entry_problem(v),
    "server.max_tts_concurrent": lambda v: None if 1 <= v <= 64 else "must be 1–64",
    "server.header_timeout_s": lambda v: None if 1 <= v <= 300 else "must be 1–300 s",
    "engine.kind": lambda v: None if v in ENGINE_KINDS else f"must be one of {one_of(ENGINE_KINDS)}",
    "engine.remote.url": lambda v: (
        None if v.startswith(("http://", "https://")) else "must be an http:// or https:// URL of `ishow serve`"
    ),
    "engine.remote.timeout_s": lambda v: None if 0 < v <= 600 else "must be > 0 and ≤ 600",
    "engine.remote.retry_s": lambda v: None if 0.1 <= v <= 600 else "must be 0.1–600",
    "engine.remote.client": lambda v: None if len(v) <= 64 and v.isprintable() else "must be ≤ 64 printable chars",
    "serve.port": lambda v: None if 1 <= v <= 65535 else "must be 1–65535",
    "serve.replicas": lambda v: None if 1 <= v <= 1024 else "must be 1–1024",
    "serve.max_replicas": lambda v: None if 0 <= v <= 1024 else "must be 0–1024",
    "serve.target_ongoing_requests": lambda v: None if v > 0 else "must be > 0",
    "serve.num_gpus": lambda v: None if 0 <= v <= 64 else "must be 0–64",
    "serve.num_cpus": lambda v: None if 0 <= v <= 1024 else "must be 0–1024",
    "serve.max_batch_size": lambda v: None if 1 <= v <= 256 else "must be 1–256",
    "serve.batch_wait_ms": lambda v: (
        None if 0 <= v <= WINDOW_MS_RANGE[1] else f"must be 0–{WINDOW_MS_RANGE[1]} ms (daemons already wait a window)"
    ),
    "serve.max_rows": lambda v: None if 1 <= v <= 256 else "must be 1–256",
    "serve.max_ongoing_requests": lambda v: None if v >= 1 else "must be ≥ 1",
    "serve.max_queued_requests": lambda v: None if v >= -1 else "must be ≥ 0 (or -1: unbounded)",
    "serve.max_voices": lambda v: None if v >= 1 else "must be ≥ 1",
    "serve.batch_log": lambda v: None if 1 <= v <= 10000 else "must be 1–10000",
    "engine.fallback": lambda v: None if v in ENGINE_FALLBACKS else f"must be one of {one_of(ENGINE_FALLBACKS)}",
    "engine.model": lambda v: None if v in MODELS else f"must be one of {one_of(MODELS)}",
    "engine.nfe_step": lambda v: None if 1 <= v <= 64 else "must be 1–64",
    "engine.cfg_strength": lambda v: None if 0 <= v <= 10 else "must be 0–10",
    "engine.speed": lambda v: None if 0.25 <= v <= 4 else "must be 0.25–4",
    "engine.device": lambda v: (
        None
        if v in DEVICES or (v.startswith("cuda:") and v[5:].isdigit())
        else f"must be {one_of(DEVICES)} or 'cuda:N'"
    ),
    "engine.precision": lambda v: None if v in PRECISIONS else f"must be one of {one_of(PRECISIONS)}",
    "engine.on_shutdown": lambda v: None if v in ON_SHUTDOWN else f"must be one of {one_of(ON_SHUTDOWN)}",
    "engine.shutdown_timeout_s": lambda v: None if 0 < v <= 600 else "must be > 0 and ≤ 600 seconds",
    "engine.max_batch_frames": lambda v: None if 1024 <= v <= 1 << 20 else f"must be 1024–{1 << 20} (rows × frames)",
    "engine.vocoder_backend": lambda v: None if v in VOCODER_BACKENDS else f"must be one of {one_of(VOCODER_BACKENDS)}",
    "batch.window_ms": lambda v: (
        None
        if WINDOW_MS_RANGE[0] <= v <= WINDOW_MS_RANGE[1]
        else f"must be {WINDOW_MS_RANGE[0]}–{WINDOW_MS_RANGE[1]} ms"
    ),
    "batch.max_items": lambda v: (
        None
        if 1 <= v <= MAX_BATCH_BUCKET
        else f"must be 1–{MAX_BATCH_BUCKET} (the largest CUDA-graph batch bucket; a bigger batch would run eagerly)"
    ),
    "queue.max_size": lambda v: None if v >= 1 else "must be ≥ 1",
    "queue.max_age_s": lambda v: None if v > 0 else "must be > 0",
    "queue.max_paid": lambda v: None if v >= 1 else "must be ≥ 1",
    "filter.min_chars": lambda v: None if v >= 0 else "must be ≥ 0",
    "filter.max_chars": lambda v: None if v >= 1 else "must be ≥ 1",
    "filter.banned_patterns": _regex_problem,
    "filter.min_user_level": lambda v: None if 0 <= v <= 60 else "must be 0–60",
    "filter.duplicate_window_s": lambda v: None if 0 <= v <= 3600 else "must be 0–3600",
    "filter.user_rate_limit": lambda v: None if 0 <= v <= 1000 else "must be 0–1000",
    **{f"templates.{k}": _template_problem for k in TEMPLATE_KINDS},
    **{f"templates.platforms.*.{k}": _template_problem for k in TEMPLATE_KINDS},
    "voice_map.rules.kind": lambda v: (
        None if v in ("", *(k.value for k in EventKind)) else f"must be one of {', '.join(k.value for k in EventKind)}"
    ),
    "sources.kind": lambda v: None if v in SOURCE_KINDS else f"must be one of {one_of(SOURCE_KINDS)}",
    "sources.gift_merge_s": lambda v: None if 0 <= v <= 60 else "must be 0–60",
    "sources.reconnect_max_s": lambda v: None if 1 <= v <= 600 else "must be 1–600",
    "sources.speed": lambda v: None if 0.01 <= v <= 100 else "must be 0.01–100",
    "voices.id": lambda v: (
        None if v and v.replace("_", "").replace("-", "").isalnum() else "must be letters, digits, _ or -"
    ),
    "voices.speed": lambda v: None if 0.25 <= v <= 4 else "must be 0.25–4",
    "voices.volume": lambda v: None if 0 <= v <= 4 else "must be 0–4",
    "outputs.local.volume": lambda v: None if 0 <= v <= 4 else "must be 0–4",
    "outputs.obs.max_client_queue": lambda v: None if v >= 1 else "must be ≥ 1",
    "outputs.obs.send_timeout_s": lambda v: None if v > 0 else "must be > 0",
    "outputs.obs.max_clients": lambda v: None if 1 <= v <= 1000 else "must be 1–1000",
    "outputs.obs.max_clients_per_remote": lambda v: None if 1 <= v <= 1000 else "must be 1–1000",
    "outputs.obs_websocket.url": lambda v: (
        None if v.startswith(("ws://", "wss://")) and len(v) > 6 else "must be a ws:// or wss:// URL"
    ),
    "outputs.obs_websocket.caption_template": lambda v: _fields_problem(v, CAPTION_FIELDS),
    "outputs.obs_websocket.caption_clear_s": lambda v: None if 0 <= v <= 3600 else "must be 0–3600",
    "outputs.obs_websocket.caption_width": lambda v: None if 8 <= v <= 500 else "must be 8–500",
    "outputs.obs_websocket.caption_max_lines": lambda v: None if 1 <= v <= 50 else "must be 1–50",
    "outputs.obs_websocket.duck_db": lambda v: None if 0 <= v <= 60 else "must be 0–60",
    "outputs.obs_websocket.duck_ramp_s": lambda v: None if 0 <= v <= 5 else "must be 0–5",
    "outputs.obs_websocket.media_base_url": lambda v: (
        None if v == "" or v.startswith(("http://", "https://")) else "must be empty or an http(s):// URL"
    ),
    "outputs.obs_websocket.request_timeout_s": lambda v: None if 0 < v <= 60 else "must be > 0 and ≤ 60",
    "outputs.obs_websocket.reconnect_max_s": lambda v: None if 1 <= v <= 600 else "must be 1–600",
    "outputs.obs_websocket.audio_keep": lambda v: None if 1 <= v <= 1000 else "must be 1–1000",
    "outputs.obs_websocket.audio_max_bytes": lambda v: None if v >= 1 << 20 else "must be ≥ 1048576",
}


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a config dataclass, computed once per class (parsing is hot in the fuzzer)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


class _Loader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[str] = []

    def table(self, cls: type[T], data: Any, path: str, check_path: str | None = None) -> T:
        """Build dataclass ``cls`` from TOML table ``data``; problems are recorded with ``path``."""
        check_path = check_path if check_path is not None else path
        if not isinstance(data, Mapping):
            self.problems.append(f"{path}: expected a table, got {_show(data)}")
            return _BAD  # type: ignore[return-value]
        hints = _hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in data:
            if key not in names:
                self.problems.append(f"{_join(path, key)}: unknown key; expected one of {', '.join(sorted(names))}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                continue
            key_path = _join(path, f.name)
            value = self.value(hints[f.name], data[f.name], key_path, _join(check_path, f.name))
            if value is not _BAD:
                values[f.name] = value
        missing = [
            f.name
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        for name in missing:
            if name not in data:
                self.problems.append(f"{_join(path, name)}: missing required key")
        if missing:
            return _BAD  # type: ignore[return-value]
        return cls(**values)

    def value(self, hint: Any, raw: Any, path: str, check_path: str) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            if raw == "" and Path in args:
                return None
            hint = next(a for a in args if a is not type(None))
            origin, args = typing.get_origin(hint), typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            return self.table(hint, raw, path, check_path)  # type: ignore[arg-type]
        if hint is Any:
            return raw
        if origin is dict:
            if not isinstance(raw, Mapping):
                self.problems.append(f"{path}: expected a table, got {_show(raw, path)}")
                return _BAD
            out_map = {str(k): self.value(args[1], v, f"{path}.{k}", f"{check_path}.*") for k, v in raw.items()}
            return _BAD if _BAD in out_map.values() else out_map
        if origin is tuple:
            if not isinstance(raw, list):
                self.problems.append(f"{path}: expected a list, got {_show(raw, path)}")
                return _BAD
            item = args[0]
            if dataclasses.is_dataclass(item):
                tables = [self.table(item, r, f"{path}[{i}]", check_path) for i, r in enumerate(raw)]  # type: ignore[arg-type]
                return tuple(t for t in tables if t is not _BAD)
            out = [self.value(item, r, f"{path}[{i}]", check_path) for i, r in enumerate(raw)]
            return _BAD if _BAD in out else tuple(out)
        ok: bool
        if hint is bool:
            ok = isinstance(raw, bool)
        elif hint is int:
            ok = isinstance(raw, int) and not isinstance(raw, bool)
        elif hint is float:
            ok = isinstance(raw, int | float) and not isinstance(raw, bool) and (isinstance(raw, float) or
                                                                               abs(raw) <= 2**63)  # fmt: skip
            raw = float(raw) if ok else raw
        elif hint is str:
            ok = isinstance(raw, str)
        elif hint is Path:
            ok = isinstance(raw, str) and raw != ""
            if ok:
                try:
                    p = Path(raw).expanduser()
                except RuntimeError as e:  # "~nosuchuser/x.wav": no such user, no home directory
                    self.problems.append(f"{path}: cannot expand {_show(raw, path)}: {e}")
                    return _BAD
                if not p.is_absolute() and _strip_index(check_path) in CONFINED_PATHS and _escapes(self.root, p):
                    self.problems.append(
                        f"{path}: {raw!r} points outside the project root {self.root}; put the file inside it "
                        "(e.g. voices/) or give an absolute path"
                    )
                    return _BAD
                raw = p if p.is_absolute() else self.root / p
        else:  # pragma: no cover - a programming error in the dataclasses above
            raise TypeError(f"unsupported config type {hint!r} at {path}")
        if not ok:
            self.problems.append(f"{path}: expected {_type_name(hint)}, got {_show(raw, path)}")
            return _BAD
        check = _CHECKS.get(_strip_index(check_path))
        msg = check(raw) if check else None
        if msg:
            self.problems.append(f"{path}: {msg}, got {_show(raw, path)}")
            return _BAD
        return raw


_BAD = object()
# Relative paths under these keys must stay inside ``root`` ("../../etc/passwd" is refused); an absolute path is
# the user's explicit choice and is accepted. Lexical check: symlinks the user placed inside the root are followed.
CONFINED_PATHS = frozenset({"voices.ref_audio"})


def _escapes(root: Path, relative: Path) -> bool:
    base = os.path.normpath(root)
    target = os.path.normpath(os.path.join(base, relative))
    return os.path.commonpath([base, target]) != base


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _strip_index(path: str) -> str:
    return re.sub(r"\[\d+\]", "", path)


def _type_name(hint: Any) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", Path: "a path string"}.get(
        hint, str(hint)
    )


SECRET_KEYS = frozenset({"token", "cookie", "access_key_secret", "code", "password"})


def _show(value: Any, path: str = "") -> str:
    """A short repr for error messages; secrets (by key name) are never echoed."""
    if path.rsplit(".", 1)[-1] in SECRET_KEYS:
        return f"<hidden {type(value).__name__}>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _cross_checks(cfg: Config, problems: list[str]) -> None:
    ids = [v.id for v in cfg.voices]
    seen: set[str] = set()
    for i, vid in enumerate(ids):
        if vid in seen:
            problems.append(f"voices[{i}].id: duplicate voice id {vid!r}")
        seen.add(vid)
    if not ids:
        problems.append("voices: at least one voice is required")
    mapped = [("voice_map.default", cfg.voice_map.default), ("voice_map.english", cfg.voice_map.english)]
    mapped += [(f"voice_map.pool[{i}]", v) for i, v in enumerate(cfg.voice_map.pool)]
    mapped += [(f"voice_map.rules[{i}].voice", r.voice) for i, r in enumerate(cfg.voice_map.rules)]
    for key, vid in mapped:
        if vid and vid not in seen:
            problems.append(f"{key}: unknown voice {vid!r}; configured voices: {', '.join(ids) or '(none)'}")
    if not cfg.server.loopback and not cfg.server.token:
        problems.append(
            f"server.token: required when server.host is not loopback (host is {cfg.server.host!r}); "
            "set a long random token (`ishow token` prints one)"
        )
    elif cfg.server.token:
        problem = token_problem(cfg.server.token, cfg.server.loopback)
        if problem:
            problems.append(f"server.token: {problem}")
    if not is_loopback(cfg.serve.host) and not cfg.serve.token:
        problems.append(
            f"serve.token: required when serve.host is not loopback (host is {cfg.serve.host!r}); "
            "set a long random token (`ishow token` prints one), or keep the service on loopback"
        )
    elif cfg.serve.token:
        problem = token_problem(cfg.serve.token, is_loopback(cfg.serve.host))
        if problem:
            problems.append(f"serve.token: {problem}")
    if cfg.serve.max_replicas and cfg.serve.max_replicas < cfg.serve.replicas:
        problems.append(f"serve.max_replicas: {cfg.serve.max_replicas} is below serve.replicas {cfg.serve.replicas}")
    if cfg.serve.max_ongoing_requests < cfg.serve.max_batch_size:
        problems.append(
            f"serve.max_ongoing_requests: {cfg.serve.max_ongoing_requests} is below serve.max_batch_size "
            f"{cfg.serve.max_batch_size}; a batch could never fill"
        )
    if cfg.filter.min_chars > cfg.filter.max_chars:
        problems.append(
            f"filter.min_chars: {cfg.filter.min_chars} is larger than filter.max_chars {cfg.filter.max_chars}"
        )
    for i, voice in enumerate(cfg.voices):
        if voice.ref_audio is not None and not voice.ref_text.strip():
            problems.append(f"voices[{i}].ref_text: the transcript of {voice.ref_audio} is required")
    for i, src in enumerate(cfg.sources):
        if src.kind == "demo" and src.file is not None and not src.file.is_file():
            problems.append(f"sources[{i}].file: no such file {str(src.file)!r}")
        if src.kind in ("bilibili", "twitch", "youtube") and not src.room.strip():
            what = {"bilibili": "a room id", "twitch": "a channel name", "youtube": "a video id, URL or @handle"}
            problems.append(f"sources[{i}].room: {src.kind} needs {what[src.kind]}")
        if src.kind == "bilibili_open":
            for key in ("access_key_id", "access_key_secret", "code"):
                if not getattr(src, key):
                    problems.append(f"sources[{i}].{key}: required for bilibili_open")
            if src.app_id <= 0:
                problems.append(f"sources[{i}].app_id: required for bilibili_open (a positive integer)")
        if src.kind == "websocket" and not src.path.startswith("/ws/"):
            problems.append(f"sources[{i}].path: must start with /ws/, got {src.path!r}")
    ows = cfg.outputs.obs_websocket
    if ows.enabled and not (ows.caption_input or ows.duck_inputs or ows.media_input or ows.scene_item):
        problems.append(
            "outputs.obs_websocket: enabled but nothing to do; set caption_input, duck_inputs, media_input "
            "or scene_item"
        )
    names = [s.name for s in cfg.sources if s.name]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"sources: duplicate source name {dup!r}")


def parse_config(text: str, root: Path = Path("."), origin: str = "<config>") -> Config:
    """Parse TOML ``text``; raises ``ConfigError`` listing every problem."""
    try:
        data = tomllib.loads(text)
    except (ValueError, RecursionError) as e:  # TOMLDecodeError; an int past 4300 digits; arrays nested too deep
        raise ConfigError(f"{origin}: not valid TOML: {e}") from e
    root_raw = data.pop("root", ".")
    if not isinstance(root_raw, str):
        raise ConfigError(f"root: expected a path string, got {_show(root_raw)}")
    try:
        root = (root / root_raw).resolve()
    except (OSError, ValueError) as e:  # an embedded NUL, a symlink loop
        raise ConfigError(f"root: {_show(root_raw)} is not a usable folder: {e}") from e
    loader = _Loader(root)
    cfg = loader.table(Config, data, "")
    if cfg is _BAD:  # pragma: no cover - the top level is always a table
        raise ConfigError(loader.problems)
    cfg = _rebase(cfg, root)
    given = data.get("templates", {}).get("platforms") if isinstance(data.get("templates"), Mapping) else None
    if isinstance(given, Mapping):  # listed platforms replace their defaults; the others keep theirs
        platforms = {**default_platform_templates(), **cfg.templates.platforms}
        cfg = dataclasses.replace(cfg, templates=dataclasses.replace(cfg.templates, platforms=platforms))
    problems = loader.problems
    _cross_checks(cfg, problems)
    if problems:
        raise ConfigError(problems)
    return cfg


def load_config(path: Path) -> Config:
    """Read and validate the config file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such config file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from e
    return parse_config(text, root=path.parent, origin=str(path))


def default_config(root: Path | None = None) -> Config:
    """The embedded default (used when no config file exists): paths relative to ``root`` (default: cwd)."""
    return _rebase(Config(), (root or Path.cwd()).resolve())


def _rebase(cfg: Config, base: Path) -> Config:
    def fix(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    engine = dataclasses.replace(
        cfg.engine,
        checkpoint=fix(cfg.engine.checkpoint),
        vocab=fix(cfg.engine.vocab),
        vocoder=fix(cfg.engine.vocoder),
        engines_dir=fix(cfg.engine.engines_dir),
        compile_cache=fix(cfg.engine.compile_cache),
    )
    voices = tuple(dataclasses.replace(v, ref_audio=fix(v.ref_audio) if v.ref_audio else None) for v in cfg.voices)
    wav = dataclasses.replace(cfg.outputs.wav, dir=fix(cfg.outputs.wav.dir))
    outputs = dataclasses.replace(cfg.outputs, wav=wav)
    return dataclasses.replace(cfg, root=base, engine=engine, voices=voices, outputs=outputs)
