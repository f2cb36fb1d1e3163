"""A short soak through the real daemon (espeak, OBS client, paced player): structural invariants only.

The long run is ``python -m tools.soak --minutes 30 --json out.json`` (figures in the ops notes); this test runs
the same code for ~20 s and checks what must hold however long it runs. No timing is asserted.
"""

from __future__ import annotations

from tools.soak import format_summary, soak


async def test_short_soak_keeps_its_promises() -> None:
    result = await soak(20.0, rate=50.0, engine="espeak", time_scale=8.0, paid_every=50, sample_s=2.0, drain_s=90.0)
    sm = result["summary"]
    print("\n" + format_summary(result))
    assert sm["messages"] == 1000 and sm["paid_sent"] == 20
    assert sm["paid_spoken"] == sm["paid_sent"]  # no paid event lost
    assert sm["queue_max_unpaid"] <= sm["queue_limit"]  # chat above the limit is dropped...
    assert sm["queue_max"] <= sm["queue_limit"] + sm["paid_sent"]  # ...only paid events may exceed it
    assert sm["spoken"] > 0 and sm["obs_received"] == sm["spoken"]  # the OBS client got every utterance
    assert sm["obs_missing"] == 0 and sm["obs_unexpected"] == 0 and sm["obs_reconnects"] == 0
    assert sm["fds_end"] <= sm["fds_base"] + 4 and sm["fds_max"] <= sm["fds_base"] + 16
    assert sm["tasks_end"] <= sm["tasks_base"] + 4 and sm["tasks_max"] <= sm["tasks_base"] + 16
    spoken_or_dropped = sm["spoken"] + sum(sm["drops"].values())
    assert spoken_or_dropped == sm["messages"], sm  # every message accounted for: spoken or dropped with a reason
