"""The aiohttp application: /healthz, /metrics, /api/*, the control panel (/ and /static/*), /obs and /ws/obs.

Bad requests always get a 4xx JSON ``{"error": ...}`` that names the field and what was wrong; handlers never
raise past the error middleware, so a bad request cannot take the daemon down.

Trust boundary (see ``ishow.web_guard``): Host and Origin are checked on every route before the token; endpoints
that take a JSON body accept it only as ``Content-Type: application/json`` (415 otherwise), so a cross-origin
"simple" POST (text/plain, form) never reaches a handler; JSON depth and integer size are bounded; every string
field is valid Unicode without control characters. No CORS headers are sent.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from ishow.boundary import control_problem, loads_limited, valid_text
from ishow.errors import (
    InputError,
    LocalError,
    PayloadTooLargeError,
    TooManyRequestsError,
    UnsupportedMediaTypeError,
)
from ishow.metrics import CONTENT_TYPE
from ishow.policy.compose import Dropped, pick_voice, speech_text
from ishow.policy.filters import clean_text
from ishow.web_guard import RequestGuard, guard_middleware

if TYPE_CHECKING:
    from ishow.control_surface import ControlSurface

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONTROL: web.AppKey[ControlSurface] = web.AppKey("control")
WEB_CACHE: web.AppKey[dict[str, str]] = web.AppKey("web_cache", dict)
TTS_SLOTS: web.AppKey[TtsSlots] = web.AppKey("tts_slots")
# nfe_step values /api/tts accepts besides the configured one: each distinct value can cost a CUDA graph per
# (batch, length) bucket, so clients cannot pick arbitrary ones
API_NFE_STEPS = (4, 7, 8, 16, 32)
TTS_RETRY_AFTER_S = 2


class TtsSlots:
    """At most ``limit`` /api/tts requests synthesizing or waiting for the engine; more are refused at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self.refused = 0


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PayloadTooLargeError as e:
        return json_error(413, str(e))
    except UnsupportedMediaTypeError as e:
        return json_error(415, str(e))
    except TooManyRequestsError as e:
        response = json_error(429, str(e))
        response.headers["Retry-After"] = str(TTS_RETRY_AFTER_S)
        return response
    except InputError as e:
        return json_error(400, str(e))
    except web.HTTPException as e:
        if e.status >= 400 and e.content_type != "application/json":
            reason = e.text if e.text and not e.text.startswith(f"{e.status}:") else e.reason
            return json_error(e.status, reason or "request failed")
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("request handler failed", path=request.path)
        return json_error(500, "internal error; see the daemon log")


def token_middleware(token: str) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and request.path.startswith(("/api/", "/ws/", "/audio/")):
            given = request.query.get("token", "")
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                given = auth[7:]
            # hmac.compare_digest needs ASCII (or bytes); a header with other bytes is simply a wrong token
            if not given.isascii() or not hmac.compare_digest(given.encode(), token.encode()):
                return json_error(401, "missing or wrong token: send 'Authorization: Bearer <token>' or ?token=")
        return await handler(request)

    return check


async def read_json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise UnsupportedMediaTypeError(
            f"this endpoint takes a JSON body sent as 'Content-Type: application/json'; got "
            f"{request.headers.get('Content-Type', '(none)')[:100]!r}"
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        limit = request.app[CONTROL].config.server.max_body_bytes
        raise PayloadTooLargeError(f"request body too large: the limit is {limit} bytes") from e
    return json_object(body)


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object (pure; raises InputError)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"body is not valid JSON: not UTF-8 ({e})") from e
    obj = loads_limited(text)
    if not isinstance(obj, dict):
        raise InputError(f"body must be a JSON object, got {type(obj).__name__}")
    return obj


def field_str(obj: dict[str, Any], key: str, *, required: bool, max_len: int | None = None) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise InputError(f"'{key}' is required")
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise InputError(f"'{key}' must be a string, got {type(value).__name__}")
    if max_len is not None and len(value) > max_len:
        raise InputError(f"'{key}' is too long: {len(value)} characters, the limit is {max_len}")
    problem = control_problem(key, value)
    if problem:
        raise InputError(problem)
    return valid_text(value)


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# ---------------------------------------------------------------------- handlers


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTROL].health())


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[CONTROL].metrics(), headers={"Content-Type": CONTENT_TYPE})


async def voices(request: web.Request) -> web.Response:
    cfg = request.app[CONTROL].config
    return web.json_response(
        {
            "default": cfg.voice_map.default,
            "voices": [
                {
                    "id": v.id,
                    "ref_audio": v.ref_audio.name if v.ref_audio else None,
                    "ref_text": v.ref_text,
                    "speed": v.speed,
                    "volume": v.volume,
                }
                for v in cfg.voices
            ],
        }
    )


async def tts(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    cfg = control.config
    obj = await read_json_object(request)
    limit = cfg.server.max_text_chars
    text = speech_text(clean_text(field_str(obj, "text", required=True, max_len=limit)))
    if not text:
        raise InputError("'text' is empty (nothing speakable after removing links, emotes and spaces)")
    voice = field_str(obj, "voice", required=False, max_len=64) or pick_voice(cfg, text)
    nfe = obj.get("nfe_step")
    allowed = sorted({*API_NFE_STEPS, cfg.engine.nfe_step})
    if nfe is not None and (not isinstance(nfe, int) or isinstance(nfe, bool) or nfe not in allowed):
        raise InputError(f"'nfe_step' must be an integer, one of {allowed}; got {json.dumps(nfe)[:40]}")
    control.check_voice(voice)  # UnknownVoiceError → 400 before taking a slot
    slots = request.app[TTS_SLOTS]
    if slots.busy >= slots.limit:
        slots.refused += 1
        raise TooManyRequestsError(
            f"{slots.busy} /api/tts requests are already being synthesized (the limit is {slots.limit}; "
            "server.max_tts_concurrent); retry later"
        )
    slots.busy += 1
    try:  # live chat batches go to the engine before waiting /api/tts requests
        result = await control.tts(text, voice, nfe)
    finally:
        slots.busy -= 1
    if result.error is not None:
        status = 400 if isinstance(result.error, InputError) else 503
        return json_error(status, str(result.error))
    assert result.audio is not None
    body = await asyncio.to_thread(wav_bytes, result.audio, result.sample_rate)
    return web.Response(body=body, content_type="audio/wav", headers={"X-Ishow-Engine": result.engine})


async def messages(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    obj = await read_json_object(request)
    limit = control.config.server.max_text_chars
    user = field_str(obj, "user", required=True, max_len=64)
    text = field_str(obj, "text", required=True, max_len=limit)
    platform = field_str(obj, "platform", required=False, max_len=32) or "api"
    voice = field_str(obj, "voice", required=False, max_len=64)
    if voice:
        control.check_voice(voice)  # UnknownVoiceError → 400
    outcome = control.submit(user, text, platform, voice)
    if isinstance(outcome, Dropped):
        return web.json_response({"queued": False, "dropped": outcome.reason}, status=202)
    return web.json_response(
        {"queued": True, "id": outcome.id, "text": outcome.text, "voice": outcome.voice}, status=202
    )


async def status(request: web.Request) -> web.Response:
    """Numbers for the control panel: engine, RTF of the last batch, backlog, sources, outputs."""
    return web.json_response(request.app[CONTROL].status())


async def queue_view(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTROL].snapshot())


async def control_action(request: web.Request) -> web.Response:
    """``{"action": "pause"|"resume"|"skip"|"clear"}``."""
    obj = await read_json_object(request)
    action = field_str(obj, "action", required=True, max_len=16)
    result = await request.app[CONTROL].control(action)
    log.info("control", action=action)
    return web.json_response(result)


async def remove_item(request: web.Request) -> web.Response:
    if not request.app[CONTROL].remove(request.match_info["id"]):
        return json_error(404, f"no waiting utterance with id {request.match_info['id']!r}")
    return web.json_response({"ok": True, "removed": request.match_info["id"]})


async def mute(request: web.Request) -> web.Response:
    """``{"user": str, "minutes": number}``; minutes 0 unmutes."""
    obj = await read_json_object(request)
    user = field_str(obj, "user", required=True, max_len=64)
    if not user:
        raise InputError("'user' is empty")
    minutes = obj.get("minutes", 10)
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or not 0 <= minutes <= 24 * 60:
        raise InputError(f"'minutes' must be a number 0–1440, got {json.dumps(minutes)}")
    control = request.app[CONTROL]
    if minutes == 0:
        return web.json_response({"ok": True, "unmuted": control.unmute(user)})
    return web.json_response({"ok": True, "removed": control.mute(user, float(minutes))})


WEB_ASSETS = {"panel.js": "text/javascript", "panel.css": "text/css"}  # served at /static/<name>


def _read_web(name: str) -> str:
    try:
        return resources.files("ishow").joinpath("web").joinpath(name).read_text(encoding="utf-8")
    except OSError as e:
        raise LocalError(f"cannot read ishow/web/{name}: {e}") from e


async def _web_text(request: web.Request, name: str) -> str:
    cache = request.app[WEB_CACHE]
    if name not in cache:
        cache[name] = await asyncio.to_thread(_read_web, name)
    return cache[name]


async def index(request: web.Request) -> web.Response:
    """The control panel (``ishow/web/panel.html``); it calls /api/* with the ``?token=`` of its own URL."""
    html = await _web_text(request, "panel.html")
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-cache"})


async def static_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = WEB_ASSETS.get(name)
    if content_type is None:
        raise web.HTTPNotFound(text=f"no such asset {name!r}")
    body = await _web_text(request, name)
    return web.Response(text=body, content_type=content_type, headers={"Cache-Control": "no-cache"})


def build_app(control: ControlSurface) -> web.Application:
    cfg = control.config.server
    guard = RequestGuard(cfg.host, cfg.allowed_hosts, cfg.allowed_origins)
    app = web.Application(
        middlewares=[error_middleware, guard_middleware(guard), token_middleware(cfg.token)],
        client_max_size=cfg.max_body_bytes,
    )
    app[CONTROL] = control
    app[WEB_CACHE] = {}
    app[TTS_SLOTS] = TtsSlots(cfg.max_tts_concurrent)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static_asset)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/voices", voices)
    app.router.add_post("/api/tts", tts)
    app.router.add_post("/api/messages", messages)
    app.router.add_get("/api/status", status)
    app.router.add_get("/api/queue", queue_view)
    app.router.add_delete("/api/queue/{id}", remove_item)
    app.router.add_post("/api/control", control_action)
    app.router.add_post("/api/mute", mute)
    app.router.add_routes(control.routes())
    return app
