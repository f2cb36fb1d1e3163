"""The fast-path switch shared by the Triton kernels and the attention calls: first failure kept, logged once."""

from __future__ import annotations

import logging

import pytest

from ishow.engine.accel.fallback import Fallback


def test_the_first_failure_is_kept_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("ishow.test.fallback")
    path = Fallback("the Triton RoPE kernel", "torch ops", log)
    assert not path.broken and path.failure is None
    with caplog.at_level(logging.WARNING, logger="ishow.test.fallback"):
        path.fail(RuntimeError("PTX too new"))
        path.fail(ValueError("a second error"))
    assert path.broken and path.failure == "RuntimeError: PTX too new"
    assert [r.getMessage() for r in caplog.records] == [
        "the Triton RoPE kernel failed (RuntimeError: PTX too new); using torch ops"
    ]
