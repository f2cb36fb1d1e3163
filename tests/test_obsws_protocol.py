"""obs-websocket v5 protocol (sans-I/O), captions and ramps, the audio store."""

from __future__ import annotations

import base64
import hashlib
import json

import numpy as np
import pytest

from ishow.events import Audio, Utterance
from ishow.outputs.audio_store import AudioStore
from ishow.outputs.obsws_plan import caption_text, media_url, ramp_levels, ramp_steps
from ishow.outputs.obsws_protocol import (
    Identified,
    ObsAuthError,
    ObsEvent,
    ObsProtocol,
    ObsProtocolError,
    Response,
    auth_string,
)


def hello(auth: dict[str, str] | None = None) -> str:
    d: dict[str, object] = {"obsWebSocketVersion": "5.5.2", "rpcVersion": 1}
    if auth is not None:
        d["authentication"] = auth
    return json.dumps({"op": 0, "d": d})


def test_auth_string_is_the_documented_two_step_sha256() -> None:
    secret = base64.b64encode(hashlib.sha256(b"pw" + b"SALT").digest())
    expected = base64.b64encode(hashlib.sha256(secret + b"CHAL").digest()).decode()
    assert auth_string("pw", "SALT", "CHAL") == expected
    assert auth_string("pw2", "SALT", "CHAL") != expected


def test_handshake_with_and_without_authentication() -> None:
    p = ObsProtocol("pw")
    frames, events = p.receive(hello({"challenge": "C", "salt": "S"}))
    assert events == []
    identify = json.loads(frames[0])
    assert identify["op"] == 1
    assert identify["d"] == {"rpcVersion": 1, "eventSubscriptions": 0, "authentication": auth_string("pw", "S", "C")}
    frames, events = p.receive('{"op":2,"d":{"negotiatedRpcVersion":1}}')
    assert frames == [] and events == [Identified("5.5.2", 1)]
    # no authentication asked: none sent, even with a password configured
    frames, _ = ObsProtocol("pw").receive(hello())
    assert "authentication" not in json.loads(frames[0])["d"]


def test_password_required_but_missing() -> None:
    with pytest.raises(ObsAuthError, match="requires a password"):
        ObsProtocol("").receive(hello({"challenge": "C", "salt": "S"}))


def identified() -> ObsProtocol:
    p = ObsProtocol()
    p.receive(hello())
    p.receive('{"op":2,"d":{"negotiatedRpcVersion":1}}')
    return p


def test_requests_and_responses() -> None:
    p = identified()
    rid, frame = p.request("GetInputVolume", {"inputName": "Music"})
    sent = json.loads(frame)
    assert sent == {
        "op": 6,
        "d": {"requestType": "GetInputVolume", "requestId": rid, "requestData": {"inputName": "Music"}},
    }
    rid2, _ = p.request("GetVersion")
    assert rid2 != rid
    ok = {"requestType": "GetInputVolume", "requestId": rid, "requestStatus": {"result": True, "code": 100}}
    _, events = p.receive(json.dumps({"op": 7, "d": {**ok, "responseData": {"inputVolumeDb": -3.0}}}))
    assert events == [Response(rid, "GetInputVolume", True, 100, "", {"inputVolumeDb": -3.0})]
    bad = {"result": False, "code": 600, "comment": "No source was found by the name of `X`."}
    _, events = p.receive(json.dumps({"op": 7, "d": {**ok, "requestStatus": bad}}))
    (resp,) = events
    assert isinstance(resp, Response) and not resp.ok and resp.code == 600
    assert resp.describe() == "GetInputVolume failed: 600 ResourceNotFound (No source was found by the name of `X`.)"
    _, events = p.receive('{"op":5,"d":{"eventType":"ExitStarted","eventIntent":1}}')
    assert events == [ObsEvent("ExitStarted", {})]


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1,2]",
        '{"op":"7","d":{}}',
        '{"op":7}',
        '{"op":7,"d":{"requestId":"x","requestType":"T"}}',
        '{"op":7,"d":{"requestId":1,"requestType":"T","requestStatus":{"result":true,"code":100}}}',
    ],
)
def test_malformed_frames_are_protocol_errors(frame: str) -> None:
    with pytest.raises(ObsProtocolError):
        identified().receive(frame)


def test_order_is_enforced() -> None:
    with pytest.raises(ObsProtocolError, match="before Hello"):
        ObsProtocol().receive('{"op":2,"d":{"negotiatedRpcVersion":1}}')
    p = ObsProtocol()
    with pytest.raises(ObsProtocolError, match="not identified"):
        p.request("GetVersion")
    p.receive(hello())
    with pytest.raises(ObsProtocolError, match="before Identified"):
        p.receive('{"op":7,"d":{}}')
    with pytest.raises(ObsProtocolError, match="second Hello"):
        p.receive(hello())
    with pytest.raises(ObsProtocolError, match="rpcVersion"):
        ObsProtocol().receive('{"op":0,"d":{"rpcVersion":0}}')


def test_caption_template_and_wrapping() -> None:
    u = Utterance(id="u1", text="hello there", voice="v", user="ann", raw="hello there :)")
    assert caption_text("{user}: {text}", u, 40, 4) == "ann: hello there"
    assert caption_text("{raw}", u, 40, 4) == "hello there :)"
    long = Utterance(id="u2", text="word " * 50, voice="v", user="bob")
    lines = caption_text("{user}: {text}", long, 20, 3).split("\n")
    assert len(lines) == 3 and all(len(line) <= 20 for line in lines) and lines[-1].endswith("…")
    zh = Utterance(id="u3", text="主播晚上好" * 10, voice="v", user="小明")
    assert [len(x) for x in caption_text("{text}", zh, 20, 4).split("\n")] == [20, 20, 10]


def test_ramps() -> None:
    assert ramp_steps(0.15) == 3 and ramp_steps(0) == 1 and ramp_steps(10) == 6
    assert ramp_levels(-6.0, -18.0, 3) == [-10.0, -14.0, -18.0]
    assert ramp_levels(-18.0, -6.0, 1) == [-6.0]
    assert media_url("http://127.0.0.1:1/", "u1", "") == "http://127.0.0.1:1/audio/u1.wav"
    assert media_url("http://h:1", "u1", "t") == "http://h:1/audio/u1.wav?token=t"


def test_audio_store_bounded_by_count_and_bytes() -> None:
    def audio(i: int, n: int) -> Audio:
        return Audio(Utterance(id=f"u{i}", text="x", voice="v"), np.zeros(n, dtype=np.float32))

    store = AudioStore(max_items=3, max_bytes=8_500)
    for i in range(5):
        assert store.put(audio(i, 100))
    assert len(store) == 3 and store.get("u0") is None and store.get("u4") is not None
    assert store.put(audio(9, 4000))  # 8044 bytes: the oldest go until count and bytes fit
    assert [k for k in ("u3", "u4", "u9") if store.get(k)] == ["u4", "u9"]
    assert store.bytes == 8044 + 244 and store.evicted == 4
    assert not store.put(audio(10, 5000))  # larger than the whole budget
    assert store.get("u9") is not None
