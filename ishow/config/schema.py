"""The configuration as frozen dataclasses (the schema, with defaults and comments).

``ishow.config.load`` turns config/ishowtts.toml into these, validated once, every problem named by key path.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from ishow.config.engine import EngineConfig
from ishow.config.serve import ServeConfig
from ishow.config.voice import VoiceSpec

DEFAULT_CONFIG = Path("config/ishowtts.toml")
WINDOW_MS_RANGE: tuple[int, int] = (50, 100)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 27121
    token: str = field(default="", repr=False)  # a secret: never in a repr or a log line
    max_text_chars: int = 2000
    max_body_bytes: int = 65536
    # Host headers accepted besides 127.0.0.1, localhost and [::1] at the bound port and `host` itself (DNS
    # rebinding guard): "name" (with or without the bound port) or "name:port" (exact), e.g. a reverse proxy's name
    allowed_hosts: tuple[str, ...] = ()
    # browser origins allowed besides this server's own, e.g. "https://dashboard.example"; requests and websocket
    # upgrades carrying any other Origin get 403 (requests without Origin — curl, bots, local tools — are not affected)
    allowed_origins: tuple[str, ...] = ()
    max_tts_concurrent: int = 2  # /api/tts requests synthesizing or waiting at once; more get 429 + Retry-After
    header_timeout_s: float = 10.0  # a connection that has not sent a complete request head by then is closed

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


@dataclass(frozen=True)
class BatchConfig:
    window_ms: int = 80  # clamped to 50–100 ms
    max_items: int = 8
    # while a window is open and the engine idle, synthesize the messages already in it; handed over at the close
    early_start: bool = True


@dataclass(frozen=True)
class QueueConfig:
    max_size: int = 30  # when full, the oldest normal-priority chat is dropped; paid events are never dropped
    max_age_s: float = 45.0  # normal chat older than this when its turn comes is dropped as stale
    max_paid: int = 100  # paid items waiting at most; past it the oldest paid item is dropped ("paid_overflow")


@dataclass(frozen=True)
class FilterConfig:
    """What is not read aloud. Every drop is counted by reason in /metrics and logged at debug level."""

    min_chars: int = 1
    max_chars: int = 200  # longer chat is dropped (paid messages are shortened instead)
    banned_words: tuple[str, ...] = ()  # matched through spacing, case and full-width tricks
    banned_patterns: tuple[str, ...] = ()  # regular expressions (Python syntax), case-insensitive
    blocked_users: tuple[str, ...] = ()  # names or ids never read
    trusted_users: tuple[str, ...] = ()  # names or ids that skip gates, duplicate and rate checks
    drop_links: bool = True  # drop messages that are only a link
    drop_emote_only: bool = True  # drop messages that are only emotes/stickers/emoji
    command_prefixes: tuple[str, ...] = ("!",)
    paid_only: bool = False  # read only super chats, gifts, guards, subs
    min_user_level: int = 0  # Bilibili user level gate (0: off)
    require_medal: bool = False  # Bilibili: only viewers wearing a fan medal
    guard_only: bool = False  # Bilibili: only 舰长/提督/总督
    subscribers_only: bool = False  # Twitch subscribers / YouTube members (and moderators)
    duplicate_window_s: float = 30.0  # the same text again within this window is dropped (0: off)
    user_rate_limit: int = 6  # at most this many messages per user per minute are read (0: off)


@dataclass(frozen=True)
class PlatformTemplates:
    """Per-platform overrides; a key left out falls back to the general template."""

    danmaku: str | None = None
    super_chat: str | None = None
    gift: str | None = None
    guard: str | None = None
    sub: str | None = None
    raid: str | None = None
    system: str | None = None


def default_platform_templates() -> dict[str, PlatformTemplates]:
    return {
        "twitch": PlatformTemplates(
            super_chat="{user} cheered {amount} bits: {text}",
            sub="{user} subscribed! {text}",
            raid="{user} is raiding with {num} viewers!",
        ),
        "youtube": PlatformTemplates(
            super_chat="{user} sent a super chat of {amount} {currency}: {text}",
            sub="{user} became a member! {text}",
        ),
    }


@dataclass(frozen=True)
class TemplateConfig:
    """What is spoken per event kind. Fields: {user} {text} {amount} {currency} {gift} {num} {platform}.

    An empty template disables that kind.
    """

    danmaku: str = "{text}"
    super_chat: str = "{user}的醒目留言：{text}"
    gift: str = "谢谢{user}的{num}个{gift}"
    guard: str = "感谢{user}开通了{gift}"
    sub: str = "感谢{user}的订阅"
    raid: str = "欢迎{user}带来的{num}位观众"
    system: str = ""
    platforms: dict[str, PlatformTemplates] = field(default_factory=default_platform_templates)

    def for_kind(self, kind: str, platform: str) -> str:
        override = self.platforms.get(platform)
        value = getattr(override, kind, None) if override is not None else None
        return value if value is not None else str(getattr(self, kind, self.danmaku))


@dataclass(frozen=True)
class SourceConfig:
    """One ``[[sources]]`` entry. Which keys matter depends on ``kind`` (see config/ishowtts.toml)."""

    kind: str = "demo"
    name: str = ""
    enabled: bool = True
    # demo: a JSONL chat recording (none → the built-in sample chat), replay speed, loop at the end
    file: Path | None = None
    speed: float = 1.0
    loop: bool = False
    # bilibili: room id (short or long); twitch: channel login; youtube: video id, watch URL or @handle
    room: str = ""
    # bilibili: optional login cookie (SESSDATA=...; names are masked without it); never logged
    cookie: str = field(default="", repr=False)
    # twitch: OAuth token ("oauth:..."; empty → anonymous justinfan login) and its nick
    token: str = field(default="", repr=False)
    nick: str = ""
    # bilibili_open (open platform / 身份码): app id, key id/secret and the streamer's 身份码
    app_id: int = 0
    access_key_id: str = ""
    access_key_secret: str = field(default="", repr=False)
    code: str = field(default="", repr=False)
    # endpoint overrides (tests point these at local servers); empty → the platform's real endpoints
    ws_url: str = ""
    api_base: str = ""
    # websocket input: local path served by our HTTP server (e.g. "/ws/input")
    path: str = "/ws/input"
    # websocket input: paid fields (kind, amount, currency, gift, count), the moderator flag and platform names of
    # real platform sources count only when true; otherwise every frame is ordinary chat from that tool
    trusted: bool = False
    # bilibili: merge repeated gifts from one user within this window
    gift_merge_s: float = 3.0
    # reconnect backoff ceiling (jittered exponential from 1 s)
    reconnect_max_s: float = 30.0


@dataclass(frozen=True)
class VoiceRule:
    """``[[voice_map.rules]]``: the first rule whose non-empty fields all match picks the voice."""

    voice: str
    platform: str = ""
    kind: str = ""  # danmaku, super_chat, gift, guard, sub, raid, system
    user: str = ""  # a user name or id


@dataclass(frozen=True)
class VoiceMapConfig:
    default: str = "default_zh"  # voice for chat containing Chinese (and everything when `english` is empty)
    english: str = "default_en"  # voice for chat without Chinese characters; "" → use `default`
    pool: tuple[str, ...] = ()  # give each viewer a voice from this pool by a stable hash of their user id
    rules: tuple[VoiceRule, ...] = ()


@dataclass(frozen=True)
class LocalOutputConfig:
    enabled: bool = True
    device: str = ""  # sounddevice output device: name, index as text, or "" for the system default
    volume: float = 1.0


@dataclass(frozen=True)
class ObsOutputConfig:
    enabled: bool = True
    max_client_queue: int = 64  # utterances buffered per OBS client; a client that falls further behind is dropped
    send_timeout_s: float = 5.0
    max_clients: int = 32  # OBS pages connected at once (refused with 503 past it)
    max_clients_per_remote: int = 8  # ...and from one remote address


@dataclass(frozen=True)
class ObsWebsocketOutputConfig:
    """OBS's own websocket server (obs-websocket v5, OBS 28+): captions, ducking, media source, a scene item."""

    enabled: bool = False
    url: str = "ws://127.0.0.1:4455"  # OBS → Tools → WebSocket Server Settings
    password: str = field(default="", repr=False)  # a secret: never in a repr, a log line or a config error
    caption_input: str = ""  # a Text (GDI+ / FreeType 2) input that shows the caption while speech plays
    caption_template: str = "{user}: {text}"  # fields: {user} {text} {raw} {voice} {platform}
    caption_clear_s: float = 3.0  # the caption is cleared this long after the speech ends
    caption_width: int = 40  # characters per caption line (long text is wrapped)
    caption_max_lines: int = 4  # more lines are cut with "…"
    duck_inputs: tuple[str, ...] = ()  # inputs lowered while speech plays (e.g. the music source)
    duck_db: float = 12.0  # by this many dB
    duck_ramp_s: float = 0.15  # volume ramp length, down and up
    media_input: str = ""  # a Media Source that plays each utterance from /audio/<id>.wav
    media_base_url: str = ""  # how OBS reaches this daemon; "" → http://127.0.0.1:<server.port>
    scene: str = ""  # the scene that holds scene_item; "" → the program scene when OBS connects
    scene_item: str = ""  # a source in that scene shown only while speech plays (e.g. a "TTS speaking" image)
    request_timeout_s: float = 3.0  # OBS not answering a request in time → reconnect; the daemon never waits
    reconnect_max_s: float = 30.0  # reconnect backoff ceiling (jittered exponential from 1 s)
    audio_keep: int = 16  # recent utterances kept for /audio/<id>.wav ...
    audio_max_bytes: int = 33554432  # ... and at most this many WAV bytes in all


@dataclass(frozen=True)
class WavOutputConfig:
    enabled: bool = False
    dir: Path = Path("out/wav")


@dataclass(frozen=True)
class OutputsConfig:
    realtime: bool = True  # pace hand-offs at playback speed (false: as fast as synthesis, e.g. wav rendering)
    local: LocalOutputConfig = LocalOutputConfig()
    obs: ObsOutputConfig = ObsOutputConfig()
    wav: WavOutputConfig = WavOutputConfig()
    obs_websocket: ObsWebsocketOutputConfig = ObsWebsocketOutputConfig()


def _default_voices() -> tuple[VoiceSpec, ...]:
    return (
        VoiceSpec(
            id="default_zh",
            ref_audio=Path("voices/default_zh.wav"),
            ref_text="大家好，欢迎来到我的直播间，今天我们一起聊天玩游戏。",
        ),
        VoiceSpec(
            id="default_en",
            ref_audio=Path("voices/default_en.wav"),
            ref_text="Hello everyone, welcome to the stream. Thanks for hanging out with me today.",
        ),
    )


@dataclass(frozen=True)
class Config:
    root: Path = Path(".")
    server: ServerConfig = ServerConfig()
    engine: EngineConfig = EngineConfig()
    batch: BatchConfig = BatchConfig()
    queue: QueueConfig = QueueConfig()
    filter: FilterConfig = FilterConfig()
    templates: TemplateConfig = TemplateConfig()
    sources: tuple[SourceConfig, ...] = (SourceConfig(),)
    voices: tuple[VoiceSpec, ...] = field(default_factory=_default_voices)
    voice_map: VoiceMapConfig = VoiceMapConfig()
    outputs: OutputsConfig = OutputsConfig()
    serve: ServeConfig = ServeConfig()

    def voice(self, voice_id: str) -> VoiceSpec | None:
        return next((v for v in self.voices if v.id == voice_id), None)

    @property
    def window_s(self) -> float:
        lo, hi = WINDOW_MS_RANGE
        return min(max(self.batch.window_ms, lo), hi) / 1000.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
