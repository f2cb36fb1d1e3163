"""obs-websocket v5 (the server built into OBS 28+), sans-I/O: JSON text frames in → events out; requests → frames.

From the published protocol (obs-websocket ``docs/generated/protocol.md``, RPC version 1), JSON subprotocol
``obswebsocket.json``. Every message is ``{"op": int, "d": {...}}``:

- op 0 Hello (server): ``obsWebSocketVersion``, ``rpcVersion``, optional ``authentication: {challenge, salt}``
- op 1 Identify (client): ``rpcVersion``, ``authentication`` (when asked), ``eventSubscriptions`` (bit mask)
- op 2 Identified (server): ``negotiatedRpcVersion``
- op 5 Event (server): ``eventType``, ``eventIntent``, optional ``eventData``
- op 6 Request (client): ``requestType``, ``requestId``, optional ``requestData``
- op 7 RequestResponse (server): ``requestType``, ``requestId``, ``requestStatus: {result, code, comment?}``,
  optional ``responseData``

Authentication: ``secret = base64(sha256(password + salt))``, ``auth = base64(sha256(secret + challenge))``.
A wrong password makes OBS close the connection with code 4009 (AuthenticationFailed).

``ObsProtocol`` is one connection's state: feed it each text frame with ``receive``; it returns the frames to
send (the Identify after Hello) and the events for the client (``Identified``, ``Response``, ``ObsEvent``).
Nothing here touches a socket or a clock.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from ishow.errors import ProtocolError, RemoteError

SUBPROTOCOL = "obswebsocket.json"
RPC_VERSION = 1
MAX_FRAME = 1 << 20  # our responses are small; a bigger frame is refused by the websocket layer

OP_HELLO, OP_IDENTIFY, OP_IDENTIFIED, OP_REIDENTIFY, OP_EVENT, OP_REQUEST, OP_RESPONSE = 0, 1, 2, 3, 5, 6, 7

# EventSubscription bits: 0 = none. We only send requests; events are not needed (and cost OBS work).
EVENTS_NONE = 0

# WebSocketCloseCode
CLOSE_CODES: dict[int, str] = {
    1000: "Normal",
    1001: "GoingAway (OBS is closing)",
    1006: "Abnormal (the connection dropped)",
    4000: "UnknownReason",
    4002: "MessageDecodeError",
    4003: "MissingDataField",
    4004: "InvalidDataFieldType",
    4005: "InvalidDataFieldValue",
    4006: "UnknownOpCode",
    4007: "NotIdentified",
    4008: "AlreadyIdentified",
    4009: "AuthenticationFailed",
    4010: "UnsupportedRpcVersion",
    4011: "SessionInvalidated",
    4012: "UnsupportedFeature",
}
CLOSE_AUTH_FAILED = 4009

# RequestStatus codes that matter to us (the full list is in the protocol document)
STATUS_SUCCESS = 100
STATUS_NOT_READY = 207
STATUS_RESOURCE_NOT_FOUND = 600
STATUS_INVALID_RESOURCE_TYPE = 602
STATUS_NAMES: dict[int, str] = {
    0: "Unknown",
    10: "NoError",
    100: "Success",
    203: "MissingRequestType",
    204: "UnknownRequestType",
    205: "GenericError",
    207: "NotReady",
    300: "MissingRequestField",
    301: "MissingRequestData",
    400: "InvalidRequestField",
    401: "InvalidRequestFieldType",
    402: "RequestFieldOutOfRange",
    403: "RequestFieldEmpty",
    600: "ResourceNotFound",
    601: "ResourceAlreadyExists",
    602: "InvalidResourceType",
    604: "InvalidResourceState",
    605: "InvalidInputKind",
    606: "ResourceNotConfigurable",
    700: "ResourceCreationFailed",
    701: "ResourceActionFailed",
    702: "RequestProcessingFailed",
    703: "CannotAct",
}


class ObsProtocolError(ProtocolError):
    """OBS sent a frame that does not follow obs-websocket v5."""


class ObsAuthError(RemoteError):
    """OBS asks for a password and none is configured (OBS itself refuses a wrong one with close 4009)."""


def auth_string(password: str, salt: str, challenge: str) -> str:
    """The ``authentication`` field of Identify for this Hello's ``salt`` and ``challenge``."""
    secret = base64.b64encode(hashlib.sha256((password + salt).encode("utf-8")).digest()).decode("ascii")
    return base64.b64encode(hashlib.sha256((secret + challenge).encode("utf-8")).digest()).decode("ascii")


def close_reason(code: int | None) -> str:
    if code is None:
        return "connection lost"
    return f"close {code} {CLOSE_CODES.get(code, '')}".strip()


@dataclass(frozen=True)
class Identified:
    obs_version: str
    rpc_version: int


@dataclass(frozen=True)
class Response:
    """One RequestResponse: ``ok`` is ``requestStatus.result``; ``code`` its status code."""

    request_id: str
    request_type: str
    ok: bool
    code: int
    comment: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        text = f"{self.request_type} failed: {self.code} {STATUS_NAMES.get(self.code, '')}".rstrip()
        return f"{text} ({self.comment})" if self.comment else text


@dataclass(frozen=True)
class ObsEvent:
    event_type: str
    data: dict[str, Any] = field(default_factory=dict)


Event = Identified | Response | ObsEvent


def encode(op: int, data: dict[str, Any]) -> str:
    return json.dumps({"op": op, "d": data}, ensure_ascii=False, separators=(",", ":"))


class ObsProtocol:
    """One obs-websocket v5 connection, client side."""

    def __init__(self, password: str = "", *, events: int = EVENTS_NONE, id_prefix: str = "ishow") -> None:
        self._password = password
        self._events = events
        self._ids = itertools.count(1)
        self._prefix = id_prefix
        self.hello_seen = False
        self.identified = False
        self.obs_version = ""

    def receive(self, text: str) -> tuple[list[str], list[Event]]:
        """One text frame from OBS → (frames to send now, events). Raises ``ObsProtocolError`` on bad frames."""
        try:
            msg = json.loads(text)
        except ValueError as e:
            raise ObsProtocolError(f"obs-websocket frame is not JSON: {text[:80]!r}") from e
        if not isinstance(msg, dict) or not isinstance(msg.get("op"), int) or not isinstance(msg.get("d"), dict):
            raise ObsProtocolError(f'expected {{"op": int, "d": object}}, got {text[:80]!r}')
        op: int = msg["op"]
        d: dict[str, Any] = msg["d"]
        if op == OP_HELLO:
            return [self._identify(d)], []
        if op == OP_IDENTIFIED:
            if not self.hello_seen:
                raise ObsProtocolError("Identified before Hello")
            self.identified = True
            return [], [Identified(self.obs_version, _int(d, "negotiatedRpcVersion"))]
        if not self.identified:
            raise ObsProtocolError(f"op {op} before Identified")
        if op == OP_RESPONSE:
            status = d.get("requestStatus")
            if not isinstance(status, dict) or not isinstance(status.get("result"), bool):
                raise ObsProtocolError(f"RequestResponse without requestStatus.result: {text[:120]!r}")
            data = d.get("responseData")
            return [], [
                Response(
                    request_id=_str(d, "requestId"),
                    request_type=_str(d, "requestType"),
                    ok=status["result"],
                    code=int(status.get("code", 0)) if isinstance(status.get("code"), int) else 0,
                    comment=str(status.get("comment") or "")[:300],
                    data=data if isinstance(data, dict) else {},
                )
            ]
        if op == OP_EVENT:
            data = d.get("eventData")
            return [], [ObsEvent(_str(d, "eventType"), data if isinstance(data, dict) else {})]
        return [], []  # batch responses etc.: we never ask for them; ignore other ops forward-compatibly

    def request(self, request_type: str, data: dict[str, Any] | None = None) -> tuple[str, str]:
        """A Request frame: returns ``(request_id, frame)``."""
        if not self.identified:
            raise ObsProtocolError(f"cannot send {request_type}: not identified yet")
        rid = f"{self._prefix}-{next(self._ids)}"
        body: dict[str, Any] = {"requestType": request_type, "requestId": rid}
        if data is not None:
            body["requestData"] = data
        return rid, encode(OP_REQUEST, body)

    def _identify(self, hello: dict[str, Any]) -> str:
        if self.hello_seen:
            raise ObsProtocolError("a second Hello on one connection")
        self.hello_seen = True
        self.obs_version = str(hello.get("obsWebSocketVersion", ""))[:40]
        rpc = hello.get("rpcVersion")
        if not isinstance(rpc, int) or rpc < RPC_VERSION:
            raise ObsProtocolError(f"OBS speaks rpcVersion {rpc!r}; ishow needs {RPC_VERSION} (obs-websocket 5.x)")
        body: dict[str, Any] = {"rpcVersion": RPC_VERSION, "eventSubscriptions": self._events}
        auth = hello.get("authentication")
        if auth is not None:
            if not isinstance(auth, dict):
                raise ObsProtocolError(f"Hello.authentication must be an object, got {type(auth).__name__}")
            if not self._password:
                raise ObsAuthError("OBS requires a password and outputs.obs_websocket.password is empty")
            body["authentication"] = auth_string(self._password, _str(auth, "salt"), _str(auth, "challenge"))
        return encode(OP_IDENTIFY, body)


def _str(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str):
        raise ObsProtocolError(f"expected a string field {key!r}, got {type(value).__name__}")
    return value


def _int(d: dict[str, Any], key: str) -> int:
    value = d.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ObsProtocolError(f"expected an integer field {key!r}, got {type(value).__name__}")
    return value
