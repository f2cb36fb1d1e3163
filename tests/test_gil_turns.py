"""The daemon runs with short GIL turns (see ishow.gil_turns) and gives the interpreter its old setting back."""

from __future__ import annotations

import sys
from typing import Any

from ishow.gil_turns import SWITCH_INTERVAL_S, short_gil_turns
from tests.conftest import espeak_config


def test_short_gil_turns_restores_the_previous_interval_even_on_error() -> None:
    before = sys.getswitchinterval()
    try:
        with short_gil_turns(0.002):
            assert sys.getswitchinterval() == 0.002
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert sys.getswitchinterval() == before


async def test_the_daemon_shortens_gil_turns_while_it_runs_and_restores_them(start_daemon: Any) -> None:
    before = sys.getswitchinterval()
    assert before != SWITCH_INTERVAL_S
    rd = await start_daemon(espeak_config())
    assert sys.getswitchinterval() == SWITCH_INTERVAL_S
    rd.stop.set()
    await rd.task
    assert sys.getswitchinterval() == before
