"""Local inputs: websocket input frames, the HTTP API's JSON bodies, and the TOML config file.

- ``wsinput.frame``: text frames → ``ishow.sources.wsinput.parse_frame`` (InputError allowed).
- ``http.body``: request bodies → ``ishow.server.json_object`` and the field checks every route applies
  (``field_str``; /api/tts text through ``clean_text`` and ``speech_text``) (InputError allowed).
- ``config.toml``: file bytes → UTF-8 → ``ishow.config.load.parse_config`` as ``load_config`` does (ConfigError
  allowed; a file that is not UTF-8 is what ``load_config`` turns into a ConfigError).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from ishow.config.load import parse_config
from ishow.errors import ConfigError, InputError
from ishow.policy.compose import speech_text
from ishow.policy.filters import clean_text
from ishow.server import field_str, json_object
from ishow.sources.wsinput import parse_frame
from tools.fuzz.mutate import Mutator, dumps, json_keys, pooled, surrogate_bytes, tweak_bytes, tweak_text
from tools.fuzz.runner import ROOT, Target

# ---------------------------------------------------------------------------------------------- websocket input

WS_FRAMES: tuple[dict[str, Any], ...] = (
    {"user": "ann", "text": "hi", "id": "x1"},
    {
        "type": "chat",
        "user": "bob",
        "uid": "7",
        "text": "gg",
        "platform": "tiktok",
        "kind": "super_chat",
        "amount": 30,
        "currency": "CNY",
        "moderator": True,
    },
    {"user": "cat", "text": "", "kind": "gift", "gift": "rose", "count": 3, "amount": 1.5},
    {"type": "remove", "id": "x1"},
    {"type": "remove", "uid": "7", "platform": "tiktok"},
)
WS_KEYS = ("type", "user", "uid", "text", "platform", "kind", "amount", "currency", "moderator", "id", "gift", "count")


def ws_frame(m: Mutator) -> str:
    raw = dumps(m.json(m.rng.choice(WS_FRAMES)), m.rng).decode("utf-8", "surrogatepass")
    return m.text(raw) if m.rng.random() < 0.3 else raw


def run_ws_frame(text: str) -> None:
    parse_frame(text, "websocket")


# ---------------------------------------------------------------------------------------------- HTTP bodies

HTTP_BODIES: tuple[dict[str, Any], ...] = (
    {"user": "ann", "text": "hello 123", "platform": "api", "voice": "default"},
    {"text": "你好，世界 https://example.com 666", "voice": "default", "nfe_step": 7},
    {"action": "pause"},
    {"user": "spammer", "minutes": 10},
)
HTTP_KEYS = ("user", "text", "platform", "voice", "nfe_step", "action", "minutes")


def http_body(m: Mutator) -> bytes:
    body = dumps(m.json(m.rng.choice(HTTP_BODIES)), m.rng)
    return m.bytes(body) if m.rng.random() < 0.3 else body


def run_http_body(body: bytes) -> None:
    """Every route's pure checks on one body: /api/messages, /api/tts, /api/control, /api/mute."""
    obj = json_object(body)
    for key, max_len in (("user", 64), ("platform", 32), ("voice", 64), ("action", 16)):
        with contextlib.suppress(InputError):
            field_str(obj, key, required=False, max_len=max_len)
    text = field_str(obj, "text", required=True, max_len=500)
    speech_text(clean_text(text))


# ---------------------------------------------------------------------------------------------- config

DEFAULT_TOML = (Path(ROOT) / "config" / "ishowtts.toml").read_text(encoding="utf-8")
DEFAULT = tomllib.loads(DEFAULT_TOML)
_ROOT_DIR = Path(tempfile.gettempdir()) / "ishow-fuzz-config"


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else json.dumps(k, ensure_ascii=False)


def toml_value(v: Any, depth: int = 0) -> str:
    """One TOML value (inline arrays and tables); ``None`` has no TOML form and becomes ``""``."""
    if depth > 2000:
        return "0"
    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x, depth + 1) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(str(k))} = {toml_value(x, depth + 1)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def toml_document(doc: Any) -> str:
    """A TOML file for a (mutated) config tree: scalars first, then ``[table]`` and ``[[array]]`` sections."""
    if not isinstance(doc, dict):
        return f"value = {toml_value(doc)}\n"
    head: list[str] = []
    body: list[str] = []
    for k, v in doc.items():
        if isinstance(v, dict):
            body.append(f"\n[{_key(k)}]")
            body.extend(f"{_key(str(kk))} = {toml_value(vv)}" for kk, vv in v.items())
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                body.append(f"\n[[{_key(k)}]]")
                body.extend(f"{_key(str(kk))} = {toml_value(vv)}" for kk, vv in item.items())
        else:
            head.append(f"{_key(k)} = {toml_value(v)}")
    return "\n".join(head + body) + "\n"


def config_file(m: Mutator) -> bytes:
    r = m.rng
    choice = r.random()
    if choice < 0.03:
        raw = surrogate_bytes(DEFAULT_TOML)
    else:
        sections = list(DEFAULT)
        picked = {k: DEFAULT[k] for k in r.sample(sections, r.randint(1, 2 if choice < 0.9 else len(sections)))}
        try:
            raw = surrogate_bytes(toml_document(m.json(picked)))
        except (ValueError, RecursionError):  # a huge int str() refuses to write
            raw = b"x = 1\n"
    return m.bytes(raw) if r.random() < 0.3 else raw


def run_config(raw: bytes) -> None:
    """The file's bytes as ``load_config`` reads them, parsed against a real (empty) project root."""
    _ROOT_DIR.mkdir(exist_ok=True)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # load_config reports this as a ConfigError ("cannot read")
    parse_config(text, root=_ROOT_DIR, origin="fuzz.toml")


TARGETS = [
    Target("wsinput.frame", "wsinput", pooled(ws_frame, tweak_text), run_ws_frame, (InputError,), WS_KEYS),
    Target("http.body", "http", pooled(http_body, tweak_bytes), run_http_body, (InputError,), HTTP_KEYS),
    Target("config.toml", "config", pooled(config_file, tweak_bytes), run_config, (ConfigError,), json_keys(DEFAULT)),
]
