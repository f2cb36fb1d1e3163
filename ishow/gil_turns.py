"""How long a thread may keep the GIL while another waits for it: shorter in the daemon than Python's 5 ms.

The engine thread gives the GIL up in every torch call (so the GPU work never blocks the event loop) and takes it
back after, some 50 times per batch. While the event loop is busy (a burst of requests, a batch's hand-off to the
outputs), each take-back waits until the loop's turn ends: up to the switch interval. Measured on an H200
(``python3 tools/gil_probe.py``, one 768-frame message): 16.5 ms alone; beside a busy Python thread 254 ms at the
default 5 ms, 36 ms at 1 ms, 26.5 ms at 0.2 ms. The daemon runs with :data:`SWITCH_INTERVAL_S` and puts the old
value back when it stops.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

SWITCH_INTERVAL_S = 0.0005


@contextlib.contextmanager
def short_gil_turns(interval_s: float = SWITCH_INTERVAL_S) -> Iterator[None]:
    """``sys.setswitchinterval(interval_s)`` for the block, the previous value restored after."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(interval_s)
    try:
        yield
    finally:
        sys.setswitchinterval(old)
