"""A local obs-websocket v5 server for tests, written from the published protocol document (RPC version 1).

Speaks the JSON subprotocol: Hello (with an authentication challenge when a password is set) → Identify (checked:
op, rpcVersion, the SHA-256 authentication string; a wrong one closes with 4009) → Identified; then Requests
(op 6) answered with RequestResponses (op 7) whose requestStatus codes follow OBS (100 Success, 600
ResourceNotFound, 204 UnknownRequestType, ...). It holds a configurable set of inputs (kind, settings, volume)
and scenes with their items, and logs every request. ``stall`` makes it accept requests and never answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web


@dataclass
class FakeInput:
    kind: str
    volume_db: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    media_actions: list[str] = field(default_factory=list)


@dataclass
class LoggedRequest:
    type: str
    data: dict[str, Any]
    code: int | None  # None: not answered


def _b64sha(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


class FakeObs:
    def __init__(
        self,
        *,
        password: str = "",
        inputs: dict[str, FakeInput] | None = None,
        scenes: dict[str, dict[str, int]] | None = None,
        stall: bool = False,
    ) -> None:
        self.password = password
        self.inputs = inputs if inputs is not None else {}
        self.scenes = scenes if scenes is not None else {"Scene": {}}
        self.program_scene = next(iter(self.scenes))
        self.item_enabled: dict[tuple[str, int], bool] = {}
        self.stall = stall
        self.log: list[LoggedRequest] = []
        self.identifies: list[dict[str, Any]] = []
        self.auth_failures = 0
        self.connections = 0
        self.drop_after: str | None = None  # close the connection right after answering this request type
        self.dropped = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """OBS quits: every connection closed, the port closed."""
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1001, message=b"OBS closing"), 1)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def requests(self, since: int = 0) -> list[tuple[str, dict[str, Any]]]:
        return [(r.type, r.data) for r in self.log[since:]]

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("obswebsocket.json",))
        await ws.prepare(request)
        self._sockets.add(ws)
        self.connections += 1
        try:
            await self._session(ws)
        finally:
            self._sockets.discard(ws)
        return ws

    async def _session(self, ws: web.WebSocketResponse) -> None:
        hello: dict[str, Any] = {"obsWebSocketVersion": "5.5.2", "rpcVersion": 1}
        challenge = salt = ""
        if self.password:
            challenge, salt = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            hello["authentication"] = {"challenge": challenge, "salt": salt}
        await ws.send_str(json.dumps({"op": 0, "d": hello}))
        identified = False
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                await ws.close(code=4002, message=b"binary frames need the msgpack subprotocol")
                return
            try:
                frame = json.loads(msg.data)
                op, d = frame["op"], frame["d"]
            except (ValueError, KeyError, TypeError):
                await ws.close(code=4002, message=b"MessageDecodeError")
                return
            if not identified:
                if op != 1:
                    await ws.close(code=4007, message=b"NotIdentified")
                    return
                self.identifies.append(d)
                if d.get("rpcVersion") != 1:
                    await ws.close(code=4010, message=b"UnsupportedRpcVersion")
                    return
                if self.password:
                    expected = _b64sha(_b64sha(self.password + salt) + challenge)
                    if d.get("authentication") != expected:
                        self.auth_failures += 1
                        await ws.close(code=4009, message=b"Authentication failed.")
                        return
                identified = True
                await ws.send_str(json.dumps({"op": 2, "d": {"negotiatedRpcVersion": 1}}))
                continue
            if op != 6:
                await ws.close(code=4006, message=b"UnknownOpCode")
                return
            rtype, rid, data = d.get("requestType"), d.get("requestId"), d.get("requestData") or {}
            entry = LoggedRequest(str(rtype), data, None)
            self.log.append(entry)
            if self.stall:
                continue
            code, comment, response = self._answer(str(rtype), data)
            entry.code = code
            body: dict[str, Any] = {
                "requestType": rtype,
                "requestId": rid,
                "requestStatus": {"result": code == 100, "code": code, **({"comment": comment} if comment else {})},
            }
            if response is not None:
                body["responseData"] = response
            await ws.send_str(json.dumps({"op": 7, "d": body}))
            if self.drop_after == rtype:
                self.drop_after = None
                self.dropped.set()
                await ws.close(code=1001, message=b"OBS closing")
                return

    def _answer(self, rtype: str, data: dict[str, Any]) -> tuple[int, str, dict[str, Any] | None]:
        def input_named() -> tuple[int, str, FakeInput | None]:
            name = data.get("inputName")
            if not isinstance(name, str):
                return 300, "Your request is missing the `inputName` field.", None
            found = self.inputs.get(name)
            if found is None:
                return 600, f"No source was found by the name of `{name}`.", None
            return 100, "", found

        if rtype == "GetCurrentProgramScene":
            return 100, "", {"currentProgramSceneName": self.program_scene, "sceneName": self.program_scene}
        if rtype in ("GetSceneItemId", "SetSceneItemEnabled"):
            scene = self.scenes.get(str(data.get("sceneName")))
            if scene is None:
                return 600, f"No scene was found by the name of `{data.get('sceneName')}`.", None
            if rtype == "GetSceneItemId":
                item = scene.get(str(data.get("sourceName")))
                if item is None:
                    return 600, "No scene items were found in the specified scene by that criteria.", None
                return 100, "", {"sceneItemId": item}
            item_id, enabled = data.get("sceneItemId"), data.get("sceneItemEnabled")
            if item_id not in scene.values():
                return 600, "Unable to find a scene item by that ID in the specified scene.", None
            if not isinstance(enabled, bool):
                return 300, "Your request is missing the `sceneItemEnabled` field.", None
            assert isinstance(item_id, int)  # it equals one of the scene's (int) ids
            self.item_enabled[(str(data["sceneName"]), item_id)] = enabled
            return 100, "", None
        input_requests = ("GetInputSettings", "SetInputSettings", "GetInputVolume", "SetInputVolume")
        if rtype not in (*input_requests, "TriggerMediaInputAction"):
            return 204, "Your request type is not valid.", None
        code, comment, inp = input_named()
        if inp is None:
            return code, comment, None
        if rtype == "GetInputSettings":
            return 100, "", {"inputSettings": dict(inp.settings), "inputKind": inp.kind}
        if rtype == "SetInputSettings":
            settings = data.get("inputSettings")
            if not isinstance(settings, dict):
                return 300, "Your request is missing the `inputSettings` field.", None
            inp.settings = {**inp.settings, **settings} if data.get("overlay", True) else dict(settings)
            return 100, "", None
        if rtype == "GetInputVolume":
            return 100, "", {"inputVolumeDb": inp.volume_db, "inputVolumeMul": 10 ** (inp.volume_db / 20)}
        if rtype == "SetInputVolume":
            level = data.get("inputVolumeDb")
            if not isinstance(level, (int, float)) or not -100 <= level <= 26:
                return 402, "The field value of `inputVolumeDb` is out of range.", None
            inp.volume_db = float(level)
            return 100, "", None
        if inp.kind != "ffmpeg_source":
            return 605, "The specified input does not support media actions.", None
        inp.media_actions.append(str(data.get("mediaAction")))
        return 100, "", None
