"""The Bilibili live danmaku wire format, sans-I/O: packets in and out, commands → events.

A websocket frame holds one or more packets, each a 16-byte big-endian header
(packet_len u32, header_len u16 = 16, proto_ver u16, op u32, seq u32) and a body. ``proto_ver`` says what the body
is: 0 JSON, 1 a big-endian int32 (heartbeat reply: popularity), 2 zlib- and 3 brotli-compressed nested packets.
Ops: 2 heartbeat, 3 heartbeat reply, 5 command, 7 auth, 8 auth reply (``{"code": 0}``; -101 = bad token).

Command decoding (``CommandDecoder``) lives in ``commands``; gift merging in ``gifts``; both are re-exported here.
"""

from __future__ import annotations

import enum
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import brotli  # no stubs; used for decompress only

from ishow.errors import ProtocolError
from ishow.sources.bilibili.fields import show

HEADER = struct.Struct(">IHHII")
HEADER_LEN = HEADER.size  # 16
MAX_PACKET_LEN = 16 * 1024 * 1024  # a declared length above this is garbage, not a packet
MAX_INFLATED_LEN = 16 * 1024 * 1024  # decompression-bomb guard for proto 2/3 bodies


class Op(enum.IntEnum):
    HEARTBEAT = 2
    HEARTBEAT_REPLY = 3
    COMMAND = 5
    AUTH = 7
    AUTH_REPLY = 8


class Ver(enum.IntEnum):
    JSON = 0
    INT32 = 1  # heartbeat reply body; also what web clients put on the packets they send
    ZLIB = 2
    BROTLI = 3


AUTH_OK = 0
AUTH_BAD_TOKEN = -101


@dataclass(frozen=True)
class Packet:
    ver: int
    op: int
    body: bytes
    seq: int = 1

    def encode(self) -> bytes:
        return encode_packet(self.op, self.body, ver=self.ver, seq=self.seq)


class FrameError(ProtocolError):
    """A frame was malformed at ``offset``; ``packets`` holds the packets decoded before the bad spot."""

    def __init__(self, message: str, offset: int, packets: list[Packet] | None = None) -> None:
        super().__init__(message)
        self.offset = offset
        self.packets: list[Packet] = packets or []


def encode_packet(op: int, body: bytes = b"", ver: int = Ver.INT32, seq: int = 1) -> bytes:
    return HEADER.pack(HEADER_LEN + len(body), HEADER_LEN, ver, op, seq) + body


def auth_body(roomid: int, token: str, uid: int = 0, buvid: str = "", protover: int = Ver.BROTLI) -> bytes:
    obj: dict[str, Any] = {"uid": uid, "roomid": roomid, "protover": protover, "platform": "web", "type": 2}
    if token:
        obj["key"] = token
    if buvid:
        obj["buvid"] = buvid
    return json.dumps(obj, separators=(",", ":")).encode()


def auth_packet(roomid: int, token: str, uid: int = 0, buvid: str = "", protover: int = Ver.BROTLI) -> bytes:
    """The op 7 packet a web client sends first (``token`` is secret: never log the packet)."""
    return encode_packet(Op.AUTH, auth_body(roomid, token, uid, buvid, protover))


def raw_auth_packet(body: str | bytes) -> bytes:
    """An op 7 packet with a ready-made body (the open platform's ``auth_body``)."""
    return encode_packet(Op.AUTH, body.encode() if isinstance(body, str) else body)


def heartbeat_packet() -> bytes:
    return encode_packet(Op.HEARTBEAT, b"")


def _inflate(ver: int, body: bytes, where: str) -> bytes:
    try:
        if ver == Ver.ZLIB:
            d = zlib.decompressobj()
            out = d.decompress(body, MAX_INFLATED_LEN)
            if d.unconsumed_tail:
                raise FrameError(f"{where}: zlib body inflates past {MAX_INFLATED_LEN} bytes", 0)
            if not d.eof:
                raise FrameError(f"{where}: zlib body of {len(body)} bytes is truncated", 0)
            return out
        b = brotli.Decompressor()
        out = b.process(body, output_buffer_limit=MAX_INFLATED_LEN)
        if len(out) > MAX_INFLATED_LEN or (len(out) == MAX_INFLATED_LEN and not b.is_finished()):
            raise FrameError(f"{where}: brotli body inflates past {MAX_INFLATED_LEN} bytes", 0)
        if not b.is_finished():
            raise FrameError(f"{where}: brotli body of {len(body)} bytes is truncated", 0)
        return bytes(out)
    except (zlib.error, brotli.error) as e:
        name = "zlib" if ver == Ver.ZLIB else "brotli"
        raise FrameError(f"{where}: bad {name} body of {len(body)} bytes: {e}", 0) from e


def _split(data: bytes, depth: int, base: str) -> list[Packet]:
    out: list[Packet] = []
    pos, n = 0, len(data)
    while pos < n:
        if n - pos < HEADER_LEN:
            raise FrameError(
                f"{base}offset {pos}: {n - pos} trailing bytes, shorter than a {HEADER_LEN}-byte header", pos, out
            )
        plen, hlen, ver, op, seq = HEADER.unpack_from(data, pos)
        if hlen < HEADER_LEN or plen < hlen:
            raise FrameError(
                f"{base}offset {pos}: bad header (packet_len {plen}, header_len {hlen}); "
                f"expected header_len >= {HEADER_LEN} and packet_len >= header_len",
                pos,
                out,
            )
        if plen > n - pos:
            raise FrameError(f"{base}offset {pos}: packet_len {plen} but only {n - pos} bytes remain", pos, out)
        body = data[pos + hlen : pos + plen]
        if ver in (Ver.ZLIB, Ver.BROTLI):
            where = f"{base}offset {pos}"
            if depth > 0:
                raise FrameError(f"{where}: compressed packet nested inside a compressed packet", pos, out)
            try:
                out.extend(_split(_inflate(ver, body, where), depth + 1, f"{where} (inflated) "))
            except FrameError as e:
                raise FrameError(str(e), pos, out + e.packets) from e
        else:
            out.append(Packet(ver, op, bytes(body), seq))
        pos += plen
    return out


def parse_frame(data: bytes | bytearray | memoryview) -> list[Packet]:
    """All packets of one websocket frame, compressed ones expanded in order.

    Raises ``FrameError`` (a ``ProtocolError``) naming the offset and lengths of the first bad spot; its
    ``packets`` are the good packets before it, so a caller can keep them.
    """
    return _split(bytes(data), 0, "")


@dataclass
class PacketReader:
    """Incremental parser for a byte stream of packets (split or concatenated at any byte).

    ``feed`` returns the packets completed so far. A malformed header raises ``FrameError`` and drops the
    buffer (the stream cannot be resynchronized); a bad compressed body raises but keeps the stream in sync.
    """

    _buf: bytearray = field(default_factory=bytearray)

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        self._buf += data
        out: list[Packet] = []
        while len(self._buf) >= HEADER_LEN:
            plen, hlen, _, _, _ = HEADER.unpack_from(self._buf, 0)
            if hlen < HEADER_LEN or plen < hlen or plen > MAX_PACKET_LEN:
                self._buf.clear()
                raise FrameError(f"stream: bad header (packet_len {plen}, header_len {hlen}); buffer dropped", 0, out)
            if len(self._buf) < plen:
                break
            chunk = bytes(self._buf[:plen])
            del self._buf[:plen]
            try:
                out.extend(parse_frame(chunk))
            except FrameError as e:
                raise FrameError(str(e), e.offset, out + e.packets) from e
        return out


def popularity(packet: Packet) -> int:
    """The int32 of a heartbeat reply (op 3)."""
    if len(packet.body) < 4:
        raise ProtocolError(f"heartbeat reply body has {len(packet.body)} bytes; expected 4")
    return int.from_bytes(packet.body[:4], "big", signed=True)


def packet_json(packet: Packet) -> dict[str, Any]:
    try:
        obj = json.loads(packet.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(f"op {packet.op} body is not JSON ({len(packet.body)} bytes: {packet.body[:60]!r})") from e
    if not isinstance(obj, dict):
        raise ProtocolError(f"op {packet.op} body is JSON {type(obj).__name__}; expected an object")
    return obj


def auth_reply_code(packet: Packet) -> int:
    """The ``code`` of an auth reply (op 8): 0 accepted, -101 bad token. An empty body counts as accepted."""
    if packet.op != Op.AUTH_REPLY:
        raise ProtocolError(f"expected an auth reply (op {int(Op.AUTH_REPLY)}), got op {packet.op}")
    if not packet.body.strip():
        return AUTH_OK
    code = packet_json(packet).get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        raise ProtocolError(f"auth reply has code {show(code)}; expected an integer")
    return code


# Re-exports: the command layer and gift merging are part of this module's public API.
from ishow.sources.bilibili.commands import CommandDecoder, DecodeOptions, decode_command  # noqa: E402
from ishow.sources.bilibili.gifts import GiftMerger, gift_text, parse_gift_text  # noqa: E402

__all__ = [
    "AUTH_BAD_TOKEN",
    "AUTH_OK",
    "HEADER_LEN",
    "CommandDecoder",
    "DecodeOptions",
    "FrameError",
    "GiftMerger",
    "Op",
    "Packet",
    "PacketReader",
    "Ver",
    "auth_body",
    "auth_packet",
    "auth_reply_code",
    "decode_command",
    "encode_packet",
    "gift_text",
    "heartbeat_packet",
    "packet_json",
    "parse_frame",
    "parse_gift_text",
    "popularity",
    "raw_auth_packet",
]
