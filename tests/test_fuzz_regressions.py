"""One test per distinct failure the parser fuzzer (``python -m tools.fuzz``) found, with its minimized input.

Before the fixes each input let a non-project exception out of the parser (named in the test's docstring, with
the line it came from); now each gives the parser's own error type, or a correct result.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ishow.config.load import parse_config
from ishow.errors import ConfigError, InputError, ProtocolError
from ishow.events import ChatEvent
from ishow.server import json_object
from ishow.sources.bilibili import api
from ishow.sources.bilibili import open_protocol as op
from ishow.sources.bilibili.commands import CommandDecoder, DecodeOptions
from ishow.sources.bilibili.protocol import Op, Packet, packet_json
from ishow.sources.twitch import protocol as tw
from ishow.sources.wsinput import parse_frame
from ishow.sources.youtube import protocol as yt
from tests import bilibili_frames as bf
from tests.test_youtube import chat_response, text_msg, watch_page

HUGE = 10**400  # JSON carries it; float() cannot
DIGITS = "9" * 5000  # past Python's 4300-digit int() limit
DEEP = "[" * 5000 + "]" * 5000  # past the recursion limit of json and tomllib


def web(obj: dict[str, object]) -> tuple[object, ...]:
    """A command the way wsconn decodes it: JSON text in an op 5 packet."""
    packet = Packet(0, Op.COMMAND, json.dumps(obj).encode())
    return CommandDecoder(options=DecodeOptions(interact=True, stickers=True)).decode(packet_json(packet))


def open_(obj: dict[str, object]) -> tuple[object, ...]:
    return op.OpenCommandDecoder().decode(packet_json(Packet(0, Op.COMMAND, json.dumps(obj).encode())))


# ---------------------------------------------------------------------------------------------- Bilibili web


def test_gift_timestamp_huge_int() -> None:
    """OverflowError at ishow/sources/bilibili/fields.py number (float(huge int))."""
    with pytest.raises(ProtocolError, match=r"SEND_GIFT.timestamp: expected a number, got int <1329-bit integer>"):
        web({"cmd": "SEND_GIFT", "data": {"giftName": "辣", "timestamp": HUGE}})


def test_gift_num_huge_int() -> None:
    """OverflowError at ishow/sources/bilibili/commands.py _gift (price * num / 1000.0)."""
    with pytest.raises(ProtocolError, match=r"SEND_GIFT\.num: expected a 64-bit integer"):
        web({"cmd": "SEND_GIFT", "data": {"giftName": "辣", "num": HUGE, "price": 100}})


def test_guard_num_huge_int() -> None:
    """OverflowError at ishow/sources/bilibili/commands.py _guard (price * num / 1000.0)."""
    with pytest.raises(ProtocolError, match=r"GUARD_BUY\.num: expected a 64-bit integer"):
        web({"cmd": "GUARD_BUY", "data": {"guard_level": 3, "num": HUGE, "price": 198000}})


def test_danmaku_timestamp_huge_int() -> None:
    """OverflowError at ishow/sources/bilibili/commands.py _danmaku (ts_ms / 1000.0)."""
    obj = bf.danmu()
    obj["info"][0][4] = HUGE
    with pytest.raises(ProtocolError, match=r"DANMU_MSG.info\[0\]\[4\]: expected a 64-bit integer"):
        web(obj)
    obj["info"][0][4] = 2**64 - 1  # the largest accepted still decodes
    (event,) = web(obj)
    assert isinstance(event, ChatEvent) and event.text == "主播好"


def test_api_reply_too_deep_or_huge() -> None:
    """RecursionError out of the web client's ``get_json`` (json.loads caught only ValueError): now ``reply_json``."""
    for raw in (DEEP.encode(), f'{{"code": {DIGITS}}}'.encode(), b"\xff"):
        with pytest.raises(ProtocolError, match="room_init: expected a JSON body"):
            api.reply_json(raw, "room_init")
    deep: object = "x"
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(api.ApiError, match="code 7: <deeply nested list>"):
        api.check({"code": 7, "message": deep}, "room_init")


# ---------------------------------------------------------------------------------------------- Bilibili open


def test_open_price_huge_int() -> None:
    """OverflowError at ishow/sources/bilibili/fields.py number, from the open platform's gift price."""
    with pytest.raises(ProtocolError, match=r"SEND_GIFT\.price: expected a number"):
        open_({"cmd": "LIVE_OPEN_PLATFORM_SEND_GIFT", "data": {"price": HUGE}})


def test_open_gift_num_huge_int() -> None:
    """OverflowError at ishow/sources/bilibili/open_protocol.py _gift (price * num / 1000.0)."""
    with pytest.raises(ProtocolError, match=r"SEND_GIFT\.gift_num: expected a 64-bit integer"):
        open_({"cmd": "LIVE_OPEN_PLATFORM_SEND_GIFT", "data": {"gift_name": "x", "gift_num": HUGE, "price": 1}})


def test_open_guard_num_huge_int() -> None:
    """OverflowError at ishow/sources/bilibili/open_protocol.py _guard (price * num / 1000.0)."""
    with pytest.raises(ProtocolError, match=r"GUARD\.guard_num: expected a 64-bit integer"):
        open_({"cmd": "LIVE_OPEN_PLATFORM_GUARD", "data": {"guard_level": 3, "guard_num": HUGE}})


def test_deeply_nested_cmd_is_named_not_repred() -> None:
    """RecursionError at ishow/sources/bilibili/open_protocol.py decode_open_command (repr of the cmd)."""
    deep: object = 0
    for _ in range(1000):  # about what json.loads accepts: repr() a few frames further down cannot print it
        deep = [deep]
    obj = {"cmd": deep}
    with pytest.raises(ProtocolError, match="command has cmd <deeply nested list>; expected a string"):
        op.OpenCommandDecoder().decode(obj)
    with pytest.raises(ProtocolError, match="command has cmd <deeply nested list>; expected a string"):
        CommandDecoder().decode(obj)


def test_open_reply_too_deep_or_huge() -> None:
    """RecursionError/ValueError out of the open client's json.loads (now ``reply_json``, a ProtocolError)."""
    for raw in (DEEP.encode(), f'{{"code": {DIGITS}}}'.encode(), b"\xff"):
        with pytest.raises(ProtocolError, match="open platform /v2/app/start: expected a JSON body"):
            op.reply_json(raw, op.START_PATH)
    assert op.reply_json(b'{"code": 0}', op.START_PATH) == {"code": 0}


# ---------------------------------------------------------------------------------------------- Twitch


def test_emote_position_past_4300_digits() -> None:
    """ValueError at ishow/sources/twitch/protocol.py parse_emotes (int() of 5001 digits)."""
    line = f"@emotes=25:0-{DIGITS} :a!a@a PRIVMSG #c :Kappa"
    with pytest.raises(ProtocolError, match="is outside the message"):
        tw.interpret(tw.parse_line(line))


def test_int_tag_past_4300_digits() -> None:
    """ValueError at ishow/sources/twitch/protocol.py _int_tag (int() of 5000 digits)."""
    line = f"@msg-id=resub;tmi-sent-ts={DIGITS};user-id=1 :tmi.twitch.tv USERNOTICE #c"
    with pytest.raises(ProtocolError, match="is not a non-negative integer of at most 18 digits"):
        tw.interpret(tw.parse_line(line))


def test_bits_tag_huge() -> None:
    """OverflowError at ishow/sources/twitch/protocol.py Privmsg.event (float(bits) with 401 digits)."""
    line = f"@bits=1{'0' * 400};user-id=1 :a!a@a PRIVMSG #c :Cheer100 hi"
    with pytest.raises(ProtocolError, match="tag bits="):
        tw.interpret(tw.parse_line(line))


def test_cheer_word_past_4300_digits() -> None:
    """ValueError at ishow/sources/twitch/protocol.py strip_cheers (int() of the 5000 digits after "Cheer100")."""
    line = f"@bits=150;user-id=1 :ch!ch@ch PRIVMSG #ronni :Cheer100{DIGITS} Cheer50 hi"
    event = tw.interpret(tw.parse_line(line))
    assert isinstance(event, ChatEvent) and event.text == f"Cheer100{DIGITS} hi" and event.amount == 150.0


def test_timestamp_tag_huge() -> None:
    """OverflowError at ishow/sources/twitch/protocol.py _timestamp (ms / 1000.0 with 401 digits)."""
    line = f"@tmi-sent-ts=1{'0' * 400};user-id=1 :a!a@a PRIVMSG #c :hi"
    with pytest.raises(ProtocolError, match="tmi-sent-ts"):
        tw.interpret(tw.parse_line(line))
    ok = tw.interpret(tw.parse_line("@tmi-sent-ts=999999999999999999;user-id=1 :a!a@a PRIVMSG #c :hi"))
    assert isinstance(ok, ChatEvent) and ok.timestamp == pytest.approx(1e15)


# ---------------------------------------------------------------------------------------------- YouTube


@pytest.mark.parametrize("value", [1, True, 2.5, "NEXT", {"timedContinuationData": {}}])
def test_continuations_not_a_list(value: object) -> None:
    """TypeError at ishow/sources/youtube/protocol.py parse_chat_response (``for cont in 0``): the issue's bug."""
    obj = {"continuationContents": {"liveChatContinuation": {"continuations": value}}}
    with pytest.raises(ProtocolError, match=r"liveChatContinuation\.continuations is a"):
        yt.parse_chat_response(obj, "room")


def test_timestamp_usec_huge() -> None:
    """OverflowError at ishow/sources/youtube/protocol.py _event (int(usec) / 1e6 with 401 digits): the item is
    still read, without the timestamp (YouTube's field is an int64 of microseconds)."""
    action = text_msg("m1", "hi", usec="1" + "0" * 400)
    chunk = yt.parse_chat_response(chat_response([action]), "room")
    (event,) = chunk.items
    assert isinstance(event, ChatEvent) and event.text == "hi !" and event.timestamp > 1.7e9 and not chunk.errors


def test_purchase_amount_too_large_is_refused() -> None:
    """Not an exception before, but a paid message of "$" + 400 digits became amount=inf (read aloud "inf")."""
    with pytest.raises(ProtocolError, match="is too large"):
        yt.parse_amount("$" + "9" * 400)
    assert yt.parse_amount("$" + "9" * 300) == (float("9" * 300), "USD")


def test_chat_body_too_deep_or_huge() -> None:
    """RecursionError/ValueError out of the YouTube client's json.loads (now ``parse_chat_body``)."""
    for raw in (DEEP.encode(), f'{{"a": {DIGITS}}}'.encode(), b"\xed\xa0\x80"):
        with pytest.raises(ProtocolError, match="not JSON"):
            yt.parse_chat_body(raw, "room")


def test_watch_page_initial_data_too_deep() -> None:
    """RecursionError at ishow/sources/youtube/protocol.py initial_data (raw_decode of deep arrays)."""
    page = '"INNERTUBE_CONTEXT_CLIENT_VERSION":"1","INNERTUBE_API_KEY":"k" ytInitialData={"":' + DEEP + "}"
    with pytest.raises(ProtocolError, match="ytInitialData is not JSON"):
        yt.parse_watch_page(page)


def test_watch_page_initial_data_huge_int() -> None:
    """ValueError at ishow/sources/youtube/protocol.py initial_data (a 5000-digit number)."""
    page = watch_page().replace('"isReplay": false', f'"isReplay": {DIGITS}')
    with pytest.raises(ProtocolError, match="ytInitialData is not JSON"):
        yt.parse_watch_page(page)


# ---------------------------------------------------------------------------------------------- local inputs


@pytest.mark.parametrize("amount", [HUGE, -HUGE])
def test_ws_amount_huge_int(amount: int) -> None:
    """OverflowError at ishow/sources/wsinput.py parse_frame (math.isfinite(huge int)); the JSON reader at the door
    now refuses integers past 20 digits before any field is read."""
    with pytest.raises(InputError, match="an integer with 401 digits; at most 20 digits are accepted"):
        parse_frame(json.dumps({"user": "t", "text": "", "amount": amount}))


@pytest.mark.parametrize("frame", [DIGITS, DEEP], ids=["digits", "deep"])
def test_ws_frame_not_json(frame: str) -> None:
    """ValueError / RecursionError at ishow/sources/wsinput.py parse_frame (json.loads)."""
    with pytest.raises(InputError, match="frame is not acceptable JSON"):
        parse_frame(frame)


@pytest.mark.parametrize("body", [DEEP.encode(), DIGITS.encode(), f'{{"text": {DIGITS}}}'.encode()])
def test_http_body_not_json(body: bytes) -> None:
    """RecursionError / ValueError at ishow/server.py json_object (json.loads): a 500 before, a 400 now."""
    with pytest.raises(InputError, match="body is not acceptable JSON"):
        json_object(body)


def test_config_deeply_nested_array(tmp_path: Path) -> None:
    """RecursionError at ishow/config_load.py parse_config (tomllib.loads)."""
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("e=" + "[" * 1000 + "]" * 1000, root=tmp_path)


def test_config_int_past_4300_digits(tmp_path: Path) -> None:
    """ValueError at ishow/config_load.py parse_config (tomllib int())."""
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config(f"[server]\nport = {DIGITS}\n", root=tmp_path)


def test_config_float_key_huge_int(tmp_path: Path) -> None:
    """OverflowError at ishow/config_load.py value (float(huge int) for a float key)."""
    text = f"[[sources]]\nkind = 'demo'\nspeed = 1{'0' * 400}\n"
    with pytest.raises(ConfigError, match=r"sources\[0\].speed: expected a number, got 1000"):
        parse_config(text, root=tmp_path)


@pytest.mark.parametrize("template", ["{user[x]}", "{user.upper.x}"])
def test_config_template_bad_field_access(tmp_path: Path, template: str) -> None:
    """TypeError at ishow/config_load.py _template_problem ("{user[x]}": string indices must be integers)."""
    with pytest.raises(ConfigError, match=r"templates.danmaku: bad template \((TypeError|AttributeError)"):
        parse_config(f"[templates]\ndanmaku = {json.dumps(template)}\n", root=tmp_path)


def test_config_path_with_unknown_user(tmp_path: Path) -> None:
    """RuntimeError at ishow/config_load.py value (Path.expanduser: "Could not determine home directory")."""
    text = "[[voices]]\nid = 'a'\nref_audio = '~no-such-user-ishow/a.wav'\nref_text = 'x'\n"
    with pytest.raises(ConfigError, match=r"voices\[0\].ref_audio: cannot expand '~no-such-user-ishow/a.wav'"):
        parse_config(text, root=tmp_path)


def test_config_root_with_nul(tmp_path: Path) -> None:
    """ValueError at ishow/config_load.py parse_config (Path.resolve: embedded null byte)."""
    with pytest.raises(ConfigError, match="root: 'a\\\\x00b' is not a usable folder"):
        parse_config('root = "a\\u0000b"\n', root=tmp_path)
