"""YouTube live chat, sans-I/O: watch page HTML → API key, client version and chat continuation; the
``get_live_chat`` request body; its JSON responses → ChatEvents, Removals and the next continuation.

This is the web client's own (undocumented) innertube API, so every key we rely on is checked and a missing
one raises ``ProtocolError`` naming it ("YouTube page layout changed: no INNERTUBE_API_KEY"). One malformed
chat item does not cost the rest of its response: it is skipped and described in ``ChatChunk.errors``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from ishow.errors import ProtocolError, RemoteError
from ishow.events import ChatEvent, EventKind, Removal, User

PLATFORM = "youtube"
DEFAULT_API_BASE = "https://www.youtube.com"

_VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_HANDLE = re.compile(r"@[\w.\-·]{1,100}")
_CHANNEL_ID = re.compile(r"UC[A-Za-z0-9_-]{22}")
_INITIAL_DATA = re.compile(r"""ytInitialData["']?\]?\s*=\s*""")
_CURRENCY_SYMBOLS = {
    "$": "USD",
    "US$": "USD",
    "€": "EUR",
    "£": "GBP",
    "¥": "JPY",
    "￥": "JPY",
    "₩": "KRW",
    "₹": "INR",
    "₱": "PHP",
    "₫": "VND",
    "₪": "ILS",
    "₺": "TRY",
    "₽": "RUB",
    "CA$": "CAD",
    "A$": "AUD",
    "NZ$": "NZD",
    "HK$": "HKD",
    "NT$": "TWD",
    "MX$": "MXN",
    "R$": "BRL",
    "円": "JPY",
}
_AMOUNT = re.compile(r"\d[\d.,\u00a0\u202f' ]*")


class NotLiveError(RemoteError):
    """The page has no live chat to follow: the stream is not live, has ended, or its chat is disabled."""


def layout_error(what: str) -> ProtocolError:
    return ProtocolError(f"YouTube page layout changed: no {what}")


# ---------------------------------------------------------------------------------------------- rooms and pages


def watch_path(room: str) -> str:
    """Config ``room`` → the page path to load: a video id or watch/live/youtu.be URL → ``/watch?v=ID``; an
    ``@handle`` (or its URL) → ``/@handle/live``; a ``UC…`` channel id (or its URL) → ``/channel/UC…/live``."""
    text = room.strip()
    if _VIDEO_ID.fullmatch(text):
        return f"/watch?v={text}"
    if _HANDLE.fullmatch(text):
        return f"/{quote(text, safe='@')}/live"
    if _CHANNEL_ID.fullmatch(text):
        return f"/channel/{text}/live"
    url = urlsplit(text if "://" in text else "https://" + text)
    parts = [p for p in url.path.split("/") if p]
    host = (url.hostname or "").lower()
    if host == "youtu.be" and parts and _VIDEO_ID.fullmatch(parts[0]):
        return f"/watch?v={parts[0]}"
    if host.endswith("youtube.com") and parts:
        video = parse_qs(url.query).get("v", [""])[0]
        if parts[0] == "watch" and _VIDEO_ID.fullmatch(video):
            return f"/watch?v={video}"
        if parts[0] == "live" and len(parts) > 1 and _VIDEO_ID.fullmatch(parts[1]):
            return f"/watch?v={parts[1]}"
        if _HANDLE.fullmatch(parts[0]):
            return f"/{quote(parts[0], safe='@')}/live"
        if parts[0] == "channel" and len(parts) > 1 and _CHANNEL_ID.fullmatch(parts[1]):
            return f"/channel/{parts[1]}/live"
    raise ValueError(f"{room!r} is not a YouTube video id (11 characters), watch URL, @handle or UC… channel id")


@dataclass(frozen=True)
class WatchPage:
    api_key: str
    client_version: str
    continuation: str
    video_id: str


def _get(obj: Any, *path: str | int) -> Any:
    """``obj[p0][p1]...`` or None when any step is missing or of the wrong type."""
    for key in path:
        if isinstance(key, int):
            if not isinstance(obj, list) or not -len(obj) <= key < len(obj):
                return None
        elif not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def initial_data(html: str) -> dict[str, Any]:
    """The ``ytInitialData`` object embedded in a page (``var ytInitialData = {...};`` or ``window[...]``)."""
    m = _INITIAL_DATA.search(html)
    if m is None:
        raise layout_error("ytInitialData")
    try:
        obj, _ = json.JSONDecoder().raw_decode(html, m.end())
    except (ValueError, RecursionError) as e:  # ValueError: JSONDecodeError or a number past 4300 digits
        raise ProtocolError(f"YouTube page layout changed: ytInitialData is not JSON ({e})") from e
    if not isinstance(obj, dict):
        raise ProtocolError(f"YouTube page layout changed: ytInitialData is a {type(obj).__name__}, not an object")
    return obj


def _config_value(html: str, *keys: str) -> str:
    for key in keys:
        m = re.search(rf'"{key}"\s*:\s*"([^"\\]+)"', html)
        if m:
            return m.group(1)
    raise layout_error(keys[0])


def parse_watch_page(html: str) -> WatchPage:
    """Everything needed to poll the page's live chat. Raises ProtocolError (layout) or NotLiveError."""
    if "consent.youtube.com" in html and "ytInitialData" not in html:
        raise ProtocolError("YouTube answered with its cookie-consent page instead of the watch page")
    api_key = _config_value(html, "INNERTUBE_API_KEY")
    version = _config_value(html, "INNERTUBE_CONTEXT_CLIENT_VERSION", "INNERTUBE_CLIENT_VERSION")
    data = initial_data(html)
    results = _get(data, "contents", "twoColumnWatchNextResults")
    if not isinstance(results, dict) and isinstance(_get(data, "contents", "twoColumnBrowseResultsRenderer"), dict):
        raise NotLiveError("the channel is not live now (YouTube showed its channel page)")
    if not isinstance(results, dict):
        raise layout_error("contents.twoColumnWatchNextResults in ytInitialData")
    video_id = _get(data, "currentVideoEndpoint", "watchEndpoint", "videoId")
    video_id = video_id if isinstance(video_id, str) else ""
    bar = results.get("conversationBar")
    if not isinstance(bar, dict):
        raise NotLiveError(f"video {video_id or '?'} has no live chat (not live now, or not a live stream)")
    chat = bar.get("liveChatRenderer")
    if not isinstance(chat, dict):
        message = _text(_get(bar, "conversationBarRenderer", "availabilityMessage", "messageRenderer", "text"))
        raise NotLiveError(f"video {video_id or '?'} has no live chat: {message or 'chat unavailable'}")
    if chat.get("isReplay"):
        raise NotLiveError(f"video {video_id or '?'} is a recording: its stream has ended")
    # The view selector's last entry is "Live chat" (every message); the default continuation is "Top chat".
    items = _get(chat, "header", "liveChatHeaderRenderer", "viewSelector", "sortFilterSubMenuRenderer", "subMenuItems")
    token = _get(items, -1, "continuation", "reloadContinuationData", "continuation") if items else None
    if not isinstance(token, str) or not token:
        token = _get(chat, "continuations", 0, "reloadContinuationData", "continuation")
    if not isinstance(token, str) or not token:
        raise layout_error("liveChatRenderer.continuations[0].reloadContinuationData.continuation")
    return WatchPage(api_key=api_key, client_version=version, continuation=token, video_id=video_id)


def chat_url(api_base: str, api_key: str) -> str:
    return f"{api_base.rstrip('/')}/youtubei/v1/live_chat/get_live_chat?key={quote(api_key)}&prettyPrint=false"


def chat_request_body(client_version: str, continuation: str) -> dict[str, Any]:
    return {"context": {"client": {"clientName": "WEB", "clientVersion": client_version}}, "continuation": continuation}


# ---------------------------------------------------------------------------------------------- chat responses


@dataclass(frozen=True)
class ChatChunk:
    """One get_live_chat response: events in order, the next continuation (None: the chat has ended) and
    how long YouTube asks us to wait before the next poll; ``errors`` describes skipped malformed items."""

    items: tuple[ChatEvent | Removal, ...]
    continuation: str | None
    timeout_ms: int | None = None
    errors: tuple[str, ...] = ()


def _text(obj: Any) -> str:
    """A YouTube text object (``simpleText`` or ``runs``) as plain text; emoji runs are dropped."""
    if not isinstance(obj, dict):
        return ""
    if isinstance(obj.get("simpleText"), str):
        return " ".join(obj["simpleText"].split())
    runs = obj.get("runs")
    if not isinstance(runs, list):
        return ""
    parts = [r["text"] for r in runs if isinstance(r, dict) and isinstance(r.get("text"), str)]
    return " ".join("".join(parts).split())


def parse_amount(text: str) -> tuple[float, str]:
    """``"$5.00"`` → (5.0, "USD"); ``"¥1,000"`` → (1000.0, "JPY"); ``"5,00 €"`` → (5.0, "EUR");
    ``"PLN 20.00"`` → (20.0, "PLN"). An unknown symbol is kept as the currency."""
    m = _AMOUNT.search(text)
    if m is None:
        raise ProtocolError(f"purchase amount {text[:40]!r} has no number")
    number = re.sub(r"[\s\u00a0\u202f']", "", m.group()).rstrip(".,")
    symbol = (text[: m.start()] + text[m.end() :]).strip()
    if "," in number and "." in number:
        decimal = "." if number.rfind(".") > number.rfind(",") else ","
    else:
        sep = "," if "," in number else "."
        grouped = re.fullmatch(rf"\d{{1,3}}(\{sep}\d{{3}})+", number) is not None
        decimal = "" if grouped or sep not in number else sep
    thousands = {",", "."} - {decimal}
    digits = "".join(ch for ch in number if ch not in thousands).replace(",", ".")
    try:
        amount = float(digits)
    except ValueError as e:
        raise ProtocolError(f"purchase amount {text[:40]!r} is not a number") from e
    if not math.isfinite(amount):  # 400 digits make inf, which would be read aloud as "inf"
        raise ProtocolError(f"purchase amount {text[:40]!r} is too large")
    currency = _CURRENCY_SYMBOLS.get(symbol, symbol.upper() if re.fullmatch(r"[A-Za-z]{3}", symbol) else symbol)
    return amount, currency


def _badges(renderer: dict[str, Any]) -> tuple[tuple[str, ...], bool]:
    badges: list[str] = []
    for badge in renderer.get("authorBadges") or ():
        b = _get(badge, "liveChatAuthorBadgeRenderer")
        if not isinstance(b, dict):
            continue
        icon = _get(b, "icon", "iconType")
        if isinstance(icon, str):
            badges.append(f"{icon.lower()}/1")
        elif "customThumbnail" in b:
            badges.append("member/1")
    return tuple(badges), any(b in ("moderator/1", "owner/1") for b in badges)


def _user(renderer: dict[str, Any], name: str = "") -> User:
    uid = renderer.get("authorExternalChannelId")
    if not isinstance(uid, str) or not uid:
        raise ProtocolError("chat item has no authorExternalChannelId")
    badges, moderator = _badges(renderer)
    return User(id=uid, name=name or _text(renderer.get("authorName")) or uid, badges=badges, moderator=moderator)


def _event(
    renderer: dict[str, Any],
    room: str,
    kind: EventKind,
    text: str,
    *,
    user: User | None = None,
    amount: float = 0.0,
    currency: str = "",
    gift: str = "",
    count: int = 0,
    emote_only: bool = False,
) -> ChatEvent:
    msg_id = renderer.get("id")
    if not isinstance(msg_id, str) or not msg_id:
        raise ProtocolError("chat item has no id")
    event = ChatEvent(
        PLATFORM,
        room,
        user or _user(renderer),
        kind,
        text,
        amount=amount,
        currency=currency,
        msg_id=msg_id,
        gift=gift,
        count=count,
        emote_only=emote_only,
    )
    usec = renderer.get("timestampUsec")
    if isinstance(usec, str) and usec.isascii() and usec.isdigit() and len(usec) <= 18:  # µs since 1970 fit int64
        return replace(event, timestamp=int(usec) / 1e6)
    return event


def _only_emoji(message: Any) -> bool:
    """The message has emoji runs and no text."""
    runs = _get(message, "runs")
    return (
        isinstance(runs, list)
        and bool(runs)
        and not _text(message)
        and any("emoji" in r for r in runs if isinstance(r, dict))
    )


def _first_number(text: str) -> int:
    m = re.search(r"\d[\d,.]*", text)
    return int(re.sub(r"\D", "", m.group())) if m else 0


def parse_item(item: dict[str, Any], room: str) -> ChatEvent | None:
    """One ``addChatItemAction.item``; None for item kinds that are not read aloud (placeholders, viewer
    engagement banners...). Memberships: ``text`` is YouTube's header ("Welcome to …!", "Member for 6 months")
    then the member's own message; ``count`` the months or memberships gifted."""
    if isinstance(r := item.get("liveChatTextMessageRenderer"), dict):
        message = r.get("message")
        return _event(r, room, EventKind.DANMAKU, _text(message), emote_only=_only_emoji(message))
    if isinstance(r := item.get("liveChatPaidMessageRenderer"), dict) or isinstance(
        r := item.get("liveChatPaidStickerRenderer"), dict
    ):
        price = _text(r.get("purchaseAmountText"))
        if not price:
            raise ProtocolError("paid chat item has no purchaseAmountText")
        amount, currency = parse_amount(price)
        message = r.get("message")
        sticker = "liveChatPaidStickerRenderer" in item
        return _event(
            r,
            room,
            EventKind.SUPER_CHAT,
            _text(message),
            amount=amount,
            currency=currency,
            emote_only=sticker or _only_emoji(message),
        )
    if isinstance(r := item.get("liveChatMembershipItemRenderer"), dict):
        primary, sub = _text(r.get("headerPrimaryText")), _text(r.get("headerSubtext"))
        header = primary or sub or "New member"
        text = " ".join(p for p in (header, _text(r.get("message"))) if p)
        return _event(r, room, EventKind.SUB, text, gift=sub if primary else "", count=_first_number(primary))
    if isinstance(r := item.get("liveChatSponsorshipsGiftPurchaseAnnouncementRenderer"), dict):
        head = _get(r, "header", "liveChatSponsorshipsHeaderRenderer")
        if not isinstance(head, dict):
            raise ProtocolError("membership gift item has no header.liveChatSponsorshipsHeaderRenderer")
        user = _user({**head, "authorExternalChannelId": r.get("authorExternalChannelId")})
        text = _text(head.get("primaryText"))
        return _event(r, room, EventKind.SUB, text, user=user, count=_first_number(text))
    return None


def parse_action(action: dict[str, Any], room: str) -> ChatEvent | Removal | None:
    if isinstance(a := action.get("addChatItemAction"), dict):
        item = a.get("item")
        if not isinstance(item, dict):
            raise ProtocolError("addChatItemAction has no item")
        return parse_item(item, room)
    for key, field in (("markChatItemAsDeletedAction", "targetItemId"), ("removeChatItemAction", "targetItemId")):
        if isinstance(a := action.get(key), dict):
            if not isinstance(target := a.get(field), str) or not target:
                raise ProtocolError(f"{key} has no {field}")
            return Removal(PLATFORM, msg_id=target)
    for key in ("markChatItemsByAuthorAsDeletedAction", "removeChatItemByAuthorAction"):
        if isinstance(a := action.get(key), dict):
            if not isinstance(channel := a.get("externalChannelId"), str) or not channel:
                raise ProtocolError(f"{key} has no externalChannelId")
            return Removal(PLATFORM, user_id=channel)
    return None


_CONTINUATION_KINDS = (
    "invalidationContinuationData",
    "timedContinuationData",
    "reloadContinuationData",
)


def parse_chat_response(obj: Any, room: str) -> ChatChunk:
    """A get_live_chat JSON response → ChatChunk. Raises ProtocolError when its outline is not the expected one."""
    if not isinstance(obj, dict):
        raise ProtocolError(f"YouTube get_live_chat response is a {type(obj).__name__}, not an object")
    chat = _get(obj, "continuationContents", "liveChatContinuation")
    if not isinstance(chat, dict):
        keys = ", ".join(list(obj)[:8]) or "none"
        raise ProtocolError(
            f"YouTube get_live_chat response changed: no continuationContents.liveChatContinuation (keys: {keys})"
        )
    token: str | None = None
    timeout_ms: int | None = None
    continuations = chat.get("continuations") or []
    if not isinstance(continuations, list):
        raise ProtocolError(
            f"YouTube liveChatContinuation.continuations is a {type(continuations).__name__}, not a list"
        )
    for cont in continuations:
        data = next((cont[k] for k in _CONTINUATION_KINDS if isinstance(cont, dict) and k in cont), None)
        if isinstance(data, dict) and isinstance(data.get("continuation"), str):
            token = data["continuation"]
            t = data.get("timeoutMs")
            timeout_ms = t if isinstance(t, int) and not isinstance(t, bool) else None
            break
    items: list[ChatEvent | Removal] = []
    errors: list[str] = []
    actions = chat.get("actions") or []
    if not isinstance(actions, list):
        raise ProtocolError(f"YouTube liveChatContinuation.actions is a {type(actions).__name__}, not a list")
    for n, action in enumerate(actions):
        try:
            if not isinstance(action, dict):
                raise ProtocolError(f"action is a {type(action).__name__}")
            event = parse_action(action, room)
        except (ProtocolError, ValueError, TypeError) as e:
            errors.append(f"actions[{n}]: {e}")
            continue
        if event is not None:
            items.append(event)
    return ChatChunk(tuple(items), token, timeout_ms, tuple(errors))


def parse_chat_body(body: bytes, room: str) -> ChatChunk:
    """A get_live_chat HTTP response body → ChatChunk; a body that is not JSON raises ProtocolError."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:  # ValueError covers JSONDecodeError, bad UTF-8 and huge ints
        raise ProtocolError(f"YouTube get_live_chat answered with something that is not JSON: {e}") from e
    return parse_chat_response(data, room)
