"""The real daemon (espeak) driving a local obs-websocket v5 server: requests per utterance, failures, recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import soundfile as sf
from structlog.testing import capture_logs

from ishow.config.schema import Config
from ishow.outputs.obs_websocket import ObsWebsocketSink
from tests.browser import browser_fixture, new_page  # noqa: F401 - the `browser` fixture
from tests.conftest import espeak_config
from tests.obsws_server import FakeInput, FakeObs
from tests.test_daemon_e2e import read_utterance

PASSWORD = "s3cret-Pa55"


def obs_config(url: str, **changes: Any) -> Config:
    cfg = espeak_config()
    settings: dict[str, Any] = {
        "enabled": True,
        "url": url,
        "password": PASSWORD,
        "caption_input": "TTS Caption",
        "duck_inputs": ("Music",),
        "duck_db": 12.0,
        "media_input": "TTS Audio",
        "scene_item": "TTS speaking",
        "caption_clear_s": 0.2,
        "request_timeout_s": 1.0,
        "reconnect_max_s": 2.0,
    }
    ows = dataclasses.replace(cfg.outputs.obs_websocket, **{**settings, **changes})
    return dataclasses.replace(cfg, outputs=dataclasses.replace(cfg.outputs, obs_websocket=ows))


def obs_inputs() -> dict[str, FakeInput]:
    return {
        "TTS Caption": FakeInput("text_ft2_source_v2", settings={"text": "", "font": {"size": 48}}),
        "Music": FakeInput("ffmpeg_source", volume_db=-6.0),
        "TTS Audio": FakeInput("ffmpeg_source"),
    }


@pytest.fixture
async def fake_obs() -> AsyncIterator[Callable[..., Any]]:
    servers: list[FakeObs] = []

    async def make(**kwargs: Any) -> FakeObs:
        kwargs.setdefault("password", PASSWORD)
        kwargs.setdefault("inputs", obs_inputs())
        kwargs.setdefault("scenes", {"Scene": {"TTS speaking": 7, "Camera": 1}})
        server = FakeObs(**kwargs)
        await server.start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        await s.stop()


def sink_of(rd: Any) -> ObsWebsocketSink:
    return next(s for s in rd.daemon.sinks if isinstance(s, ObsWebsocketSink))


async def until(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def caption_cleared(obs: FakeObs, since: int) -> bool:
    return ("SetInputSettings", {"inputName": "TTS Caption", "inputSettings": {"text": ""}, "overlay": True}) in (
        obs.requests(since)
    )


async def say(http: aiohttp.ClientSession, url: str, user: str, text: str) -> str:
    r = await http.post(f"{url}/api/messages", json={"user": user, "text": text})
    body = await r.json()
    assert body["queued"] is True, body
    return str(body["id"])


async def test_one_utterance_request_sequence(start_daemon: Any, fake_obs: Any) -> None:
    obs = await fake_obs()
    rd = await start_daemon(obs_config(obs.url))
    sink = sink_of(rd)
    await until(lambda: sink.status == "connected", "connected")
    # the Identify carried the SHA-256 challenge answer; the configured inputs were checked once
    assert obs.auth_failures == 0 and "authentication" in obs.identifies[0]
    assert obs.requests() == [
        ("GetInputSettings", {"inputName": "TTS Caption"}),
        ("GetInputSettings", {"inputName": "TTS Audio"}),
        ("GetInputVolume", {"inputName": "Music"}),
        ("GetCurrentProgramScene", {}),
        ("GetSceneItemId", {"sceneName": "Scene", "sourceName": "TTS speaking"}),
    ]
    since = len(obs.log)
    async with aiohttp.ClientSession() as http:
        uid = await say(http, rd.url, "viewer", "hello there")
        await until(lambda: caption_cleared(obs, since), "caption cleared")
        wav_url = f"{rd.url}/audio/{uid}.wav"
        vol = [("SetInputVolume", {"inputName": "Music", "inputVolumeDb": db}) for db in (-10.0, -14.0, -18.0)]
        back = [("SetInputVolume", {"inputName": "Music", "inputVolumeDb": db}) for db in (-14.0, -10.0, -6.0)]
        caption = {"inputName": "TTS Caption", "overlay": True}
        media = {"is_local_file": False, "input": wav_url, "restart_on_activate": False}
        restart = {"inputName": "TTS Audio", "mediaAction": "OBS_WEBSOCKET_MEDIA_INPUT_ACTION_RESTART"}
        item = {"sceneName": "Scene", "sceneItemId": 7}
        assert obs.requests(since) == [
            ("SetInputSettings", {**caption, "inputSettings": {"text": "viewer: hello there"}}),
            ("GetInputVolume", {"inputName": "Music"}),
            *vol,
            ("SetInputSettings", {"inputName": "TTS Audio", "inputSettings": media, "overlay": True}),
            ("TriggerMediaInputAction", restart),
            ("SetSceneItemEnabled", {**item, "sceneItemEnabled": True}),
            *back,
            ("SetSceneItemEnabled", {**item, "sceneItemEnabled": False}),
            ("SetInputSettings", {**caption, "inputSettings": {"text": ""}}),
        ]
        assert all(r.code == 100 for r in obs.log)
        print("\nrequest log of one utterance (from the test obs-websocket server):")
        for r in obs.log[since:]:
            print(f"  {r.type:<24} {json.dumps(r.data, ensure_ascii=False)} -> {r.code}")
        # OBS's Media Source fetches exactly what was spoken
        resp = await http.get(wav_url)
        assert resp.status == 200 and resp.content_type == "audio/wav"
        samples, rate = sf.read(io.BytesIO(await resp.read()), dtype="float32")
        assert rate == 24000 and len(samples) > 24000 * 0.3
        assert (await http.get(f"{rd.url}/audio/nope.wav")).status == 404
        health = await (await http.get(f"{rd.url}/healthz")).json()
    state = next(o for o in health["outputs"] if o["name"] == "obs_websocket")
    assert state["connected"] is True and state["status"] == "connected" and state["problems"] == []
    assert obs.inputs["Music"].volume_db == -6.0 and obs.item_enabled[("Scene", 7)] is False
    assert obs.inputs["TTS Caption"].settings == {"text": "", "font": {"size": 48}}  # overlay kept the style
    assert obs.inputs["TTS Audio"].media_actions == ["OBS_WEBSOCKET_MEDIA_INPUT_ACTION_RESTART"]


async def test_wrong_password_reported_once_and_speech_continues(start_daemon: Any, fake_obs: Any) -> None:
    obs = await fake_obs()
    with capture_logs() as logs:
        rd = await start_daemon(obs_config(obs.url, password="wrong-Pa55word"))
        sink = sink_of(rd)
        await until(lambda: obs.auth_failures >= 2, "two refused attempts")
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/obs") as ws:
            uid = await say(http, rd.url, "viewer", "still talking")
            header, _ = await read_utterance(ws)
            health_text = await (await http.get(f"{rd.url}/healthz")).text()
    assert header["id"] == uid
    assert sink.status == "auth_failed"
    state = sink.state()
    assert state["connected"] is False
    problem = state["problems"][0]  # type: ignore[index]
    assert "rejected the password (close 4009 AuthenticationFailed)" in problem
    assert "outputs.obs_websocket.password" in problem and "Show Connect Info" in problem
    warnings = [e for e in logs if e["event"] == "obs websocket problem"]
    assert len(warnings) == 1, warnings
    assert "wrong-Pa55word" not in repr(logs) + health_text and PASSWORD not in repr(logs)
    assert obs.log == []  # never identified: no request was sent


async def test_missing_input_reported_with_fix_then_found(
    start_daemon: Any, fake_obs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ishow.outputs.obs_websocket.REVALIDATE_S", 0.0)
    inputs = obs_inputs()
    del inputs["TTS Caption"]
    obs = await fake_obs(inputs=inputs)
    with capture_logs() as logs:
        rd = await start_daemon(obs_config(obs.url))
        sink = sink_of(rd)
        await until(lambda: sink.status == "connected", "connected")
        state = sink.state()
        assert state["missing"] == ["TTS Caption"]
        assert state["problems"] == [
            "input 'TTS Caption' does not exist in OBS; create a Text (GDI+ / FreeType 2) source with that name"
        ]
        since = len(obs.log)
        async with aiohttp.ClientSession() as http:
            await say(http, rd.url, "viewer", "first")
            await until(
                lambda: (
                    ("SetSceneItemEnabled", {"sceneName": "Scene", "sceneItemId": 7, "sceneItemEnabled": False})
                    in obs.requests(since)
                ),
                "utterance end",
            )
            # the rest still works; the caption is skipped (only the re-checks touch it)
            sent = obs.requests(since)
            assert (
                "TriggerMediaInputAction",
                {"inputName": "TTS Audio", "mediaAction": "OBS_WEBSOCKET_MEDIA_INPUT_ACTION_RESTART"},
            ) in sent
            assert not any(t == "SetInputSettings" and d["inputName"] == "TTS Caption" for t, d in sent)
            # the streamer creates the source: the next utterance uses it
            obs.inputs["TTS Caption"] = FakeInput("text_gdiplus_v3")
            await say(http, rd.url, "viewer", "second")
            await until(lambda: obs.inputs["TTS Caption"].settings.get("text") == "viewer: second", "caption shown")
            await until(lambda: caption_cleared(obs, since), "caption cleared")
    assert sink.state()["missing"] == [] and sink.state()["problems"] == []
    problems = [e["problem"] for e in logs if e["event"] == "obs websocket problem"]
    assert len(problems) == 1 and "TTS Caption" in problems[0]
    assert any(e["event"] == "obs websocket problem resolved" for e in logs)


async def test_obs_goes_away_mid_utterance_volume_restored_on_reconnect(start_daemon: Any, fake_obs: Any) -> None:
    obs = await fake_obs()
    rd = await start_daemon(obs_config(obs.url))
    sink = sink_of(rd)
    await until(lambda: sink.status == "connected", "connected")
    obs.drop_after = "TriggerMediaInputAction"  # OBS quits right after starting the media: music is down
    async with aiohttp.ClientSession() as http:
        await say(http, rd.url, "viewer", "this is a somewhat longer message so that it is still playing")
        await asyncio.wait_for(obs.dropped.wait(), 20)
        port = obs.port
        await obs.stop()
        assert obs.inputs["Music"].volume_db == -18.0  # OBS kept the ducked level
        await until(lambda: sink.status != "connected", "disconnect noticed")
        since = len(obs.log)
        await obs.start(port)  # OBS is back
        await until(lambda: obs.inputs["Music"].volume_db == -6.0, "volume restored", timeout=30)
        await until(lambda: len(obs.requests(since)) >= 2, "the caption cleared after it", timeout=30)
    assert obs.requests(since)[:2] == [
        ("SetInputVolume", {"inputName": "Music", "inputVolumeDb": -6.0}),
        ("SetInputSettings", {"inputName": "TTS Caption", "inputSettings": {"text": ""}, "overlay": True}),
    ]
    await until(lambda: sink.status == "connected", "reconnected")
    assert sink.state()["ducked"] == [] and obs.connections == 2


async def test_stalled_obs_never_blocks_the_other_outputs(start_daemon: Any, fake_obs: Any) -> None:
    obs = await fake_obs()
    rd = await start_daemon(obs_config(obs.url))
    sink = sink_of(rd)
    await until(lambda: sink.status == "connected", "connected")
    obs.stall = True  # OBS hangs: requests are read but never answered
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{rd.url}/ws/obs") as ws:
        ids = [await say(http, rd.url, "viewer", text) for text in ("one message", "another message")]
        got = [(await read_utterance(ws))[0]["id"] for _ in ids]
        assert got == ids  # the browser-source output kept speaking
        await until(lambda: sink.status == "stalled", "stall detected")
    problem = sink.state()["problems"][0]  # type: ignore[index]
    assert "OBS did not answer" in problem and "within 1 s" in problem
    assert any(r.code is None for r in obs.log)


async def test_shutdown_restores_volume_and_clears_caption(start_daemon: Any, fake_obs: Any) -> None:
    obs = await fake_obs()
    rd = await start_daemon(obs_config(obs.url))
    sink = sink_of(rd)
    await until(lambda: sink.status == "connected", "connected")
    async with aiohttp.ClientSession() as http:
        await say(http, rd.url, "viewer", "a long message that is still being read when the daemon stops")
    # all shown: the music ducked (a ramp), then the scene item, which the sender sends after the ramp
    await until(lambda: obs.inputs["Music"].volume_db == -18.0, "ducked")
    await until(lambda: obs.item_enabled.get(("Scene", 7)) is True, "scene item shown")
    rd.stop.set()
    await asyncio.wait_for(rd.task, 30)
    assert obs.inputs["Music"].volume_db == -6.0
    assert obs.inputs["TTS Caption"].settings["text"] == ""
    assert obs.item_enabled[("Scene", 7)] is False


def test_config_password_hidden_and_checked() -> None:
    from ishow.config.load import parse_config
    from ishow.errors import ConfigError

    bad = '[outputs.obs_websocket]\nenabled = true\npassword = 12345678\nurl = "http://x"\nduck_db = 99\n'
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    text = str(err.value)
    assert "outputs.obs_websocket.password: expected a string, got <hidden int>" in text
    assert "12345678" not in text
    assert "outputs.obs_websocket.url: must be a ws:// or wss:// URL" in text
    assert "outputs.obs_websocket.duck_db: must be 0–60, got 99.0" in text
    assert "enabled but nothing to do" in text
    cfg = parse_config('[outputs.obs_websocket]\nenabled = true\npassword = "pw-XYZ"\ncaption_input = "C"\n')
    assert cfg.outputs.obs_websocket.password == "pw-XYZ" and "pw-XYZ" not in repr(cfg)


async def test_audio_route_needs_the_token(start_daemon: Any, fake_obs: Any) -> None:
    obs = await fake_obs()
    cfg = obs_config(obs.url)
    cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, token="tok-AUDIO"))
    rd = await start_daemon(cfg)
    sink = sink_of(rd)
    await until(lambda: sink.status == "connected", "connected")
    since = len(obs.log)
    auth = {"Authorization": "Bearer tok-AUDIO"}
    async with aiohttp.ClientSession() as http:
        r = await http.post(f"{rd.url}/api/messages", json={"user": "v", "text": "token please"}, headers=auth)
        uid = (await r.json())["id"]
        await until(lambda: obs.inputs["TTS Audio"].media_actions != [], "media restarted")
        url = obs.inputs["TTS Audio"].settings["input"]
        assert url == f"http://127.0.0.1:{rd.daemon.port}/audio/{uid}.wav?token=tok-AUDIO"  # what OBS fetches
        assert (await http.get(url)).status == 200
        assert (await http.get(f"{rd.url}/audio/{uid}.wav")).status == 401
        assert (await http.get(f"{rd.url}/audio/{uid}.wav?token=nope")).status == 401
        assert (await http.get(f"{rd.url}/audio/{uid}.wav", headers=auth)).status == 200
    assert len(obs.requests(since)) > 0


async def test_doctor_reports_obs_websocket(start_daemon: Any, fake_obs: Any) -> None:
    from ishow.doctor import check_obs_websocket, probe_daemon

    obs = await fake_obs()
    # no daemon: doctor probes OBS itself
    (check,) = await asyncio.to_thread(check_obs_websocket, obs_config(obs.url), None)
    assert check.ok and "connected (probed from here), obs-websocket 5.5.2" in check.detail
    (check,) = await asyncio.to_thread(check_obs_websocket, obs_config(obs.url, password="bad-Pw-999"), None)
    assert not check.ok and "auth_failed" in check.detail and "rejected the password" in check.detail
    assert "bad-Pw-999" not in check.detail
    (check,) = await asyncio.to_thread(check_obs_websocket, obs_config(obs.url, scene_item="Nope"), None)
    assert not check.ok and "source 'Nope' is not in the program scene; add it there" in check.detail
    await obs.stop()
    (check,) = await asyncio.to_thread(check_obs_websocket, obs_config(obs.url), None)
    assert not check.ok and "unreachable" in check.detail and "Enable WebSocket server" in check.detail
    # a running daemon: doctor shows what it sees
    obs2 = await fake_obs(inputs={"Music": FakeInput("ffmpeg_source")})
    cfg = obs_config(obs2.url)
    rd = await start_daemon(cfg)
    await until(lambda: sink_of(rd).status == "connected", "connected")
    live = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, port=rd.daemon.port))
    daemon = await asyncio.to_thread(probe_daemon, live)
    (check,) = check_obs_websocket(live, daemon)
    assert not check.ok and "connected (the running daemon reports)" in check.detail
    assert "input 'TTS Caption' does not exist in OBS" in check.detail
    assert "input 'TTS Audio' does not exist in OBS; create a Media Source" in check.detail


async def test_panel_shows_obs_websocket_state(browser: Any, start_daemon: Any, fake_obs: Any) -> None:
    inputs = obs_inputs()
    del inputs["TTS Caption"]
    obs = await fake_obs(inputs=inputs)
    rd = await start_daemon(obs_config(obs.url))
    await until(lambda: sink_of(rd).status == "connected", "connected")
    page = await new_page(browser, width=1280, height=860)
    await page.goto(f"{rd.url}/")
    box = "document.getElementById('st-obsws')"
    await page.wait(f"() => {box}.textContent === 'connected · missing: TTS Caption'")
    assert "create a Text (GDI+ / FreeType 2) source" in str(await page.eval(f"() => {box}.title"))
    assert await page.eval(f"() => {box}.querySelector('.chip').classList.contains('warn')")
    await obs.stop()  # OBS quits: the panel follows
    await page.wait(f"() => {box}.textContent.startsWith('unreachable') || {box}.textContent === 'disconnected'")
    assert page.errors == []


async def test_skip_stops_the_media_and_unducks(start_daemon: Any, fake_obs: Any) -> None:
    obs = await fake_obs()
    cfg = obs_config(obs.url)
    rd = await start_daemon(dataclasses.replace(cfg, outputs=dataclasses.replace(cfg.outputs, realtime=True)))
    sink = sink_of(rd)
    await until(lambda: sink.status == "connected", "connected")
    async with aiohttp.ClientSession() as http:
        await say(http, rd.url, "viewer", "a long message that the moderator will skip before it ends, really long")
        await until(lambda: obs.item_enabled.get(("Scene", 7)) is True, "speaking: ducked, media started, item shown")
        since = len(obs.log)
        r = await http.post(f"{rd.url}/api/control", json={"action": "skip"})
        assert (await r.json())["skipped"]
        await until(lambda: caption_cleared(obs, since), "caption cleared")
    assert obs.requests(since)[0] == (
        "TriggerMediaInputAction",
        {"inputName": "TTS Audio", "mediaAction": "OBS_WEBSOCKET_MEDIA_INPUT_ACTION_STOP"},
    )
    assert obs.inputs["Music"].volume_db == -6.0


async def test_outbox_keeps_the_newest_command_of_each_kind() -> None:
    from ishow.config.schema import ObsWebsocketOutputConfig
    from ishow.outputs.obsws_plan import Caption, Duck, Media, SceneItem

    sink = ObsWebsocketSink(ObsWebsocketOutputConfig(caption_input="C", duck_inputs=("M",)))
    sink._emit(Caption("dropped: not connected"))
    assert sink.counters["dropped_not_connected"] == 1 and sink.state()["pending"] == 0
    sink._conn = object()  # type: ignore[assignment]  # "connected": commands wait in the outbox
    for i in range(50):  # OBS is slow: nothing is sent meanwhile
        sink._emit(Caption(f"c{i}"))
        sink._emit(Duck(True))
        sink._emit(Media(f"u{i}", play=True))
        sink._emit(SceneItem(True))
        sink._emit(Duck(False))
        sink._emit(SceneItem(False))
    assert list(sink._outbox) == [Caption("c49"), Media("u49", play=True), Duck(False), SceneItem(False)]
    assert sink.counters["replaced"] == 50 * 6 - 4


async def test_a_streamed_message_is_shown_once_whole(start_daemon: Any, fake_obs: Any) -> None:
    """Issue 12: a long message reaches outputs in parts; OBS gets one caption and one whole /audio/<id>.wav."""
    import dataclasses

    import numpy as np

    from ishow.events import Audio, Utterance

    obs = await fake_obs()
    rd = await start_daemon(obs_config(obs.url))
    sink = sink_of(rd)
    await until(lambda: sink.status == "connected", "connected")
    since = len(obs.log)
    whole = Audio(Utterance(id="L1", text="a long one", voice="v", user="fan"), np.full(36000, 0.1, np.float32))
    await sink.play(dataclasses.replace(whole, samples=whole.samples[:12000], part=0, final=False))
    assert sink.store is not None and sink.store.get("L1") is None  # not shown until it is whole
    await sink.play(dataclasses.replace(whole, samples=whole.samples[12000:], part=1, final=True))
    await until(lambda: caption_cleared(obs, since), "caption cleared")
    captions = [r for r in obs.requests(since) if r[0] == "SetInputSettings" and r[1]["inputName"] == "TTS Caption"]
    assert [c[1]["inputSettings"]["text"] for c in captions] == ["fan: a long one", ""]
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{rd.url}/audio/L1.wav")
        samples, _ = sf.read(io.BytesIO(await resp.read()), dtype="float32")
    assert len(samples) == 36000
