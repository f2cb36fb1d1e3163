"""Prometheus metrics, one registry per daemon instance (so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("ishow_messages", "Chat events received", ["platform"], registry=r)
        # Accounting: every message received ends once, as spoken or dropped(reason) (refused at the door, or
        # dropped after it was accepted into the queue): ishow_messages = spoken + Σ dropped (+ still waiting).
        self.dropped = Counter("ishow_dropped_messages", "Messages not spoken, by reason", ["reason"], registry=r)
        self.accepted = Counter("ishow_messages_accepted", "Messages that passed the filters", registry=r)
        self.chunks = Counter("ishow_text_chunks", "Chunks synthesized for messages longer than one chunk", registry=r)
        self.queue_depth = Gauge("ishow_queue_depth", "Utterances waiting for synthesis", registry=r)
        self.batches = Counter("ishow_batches", "Batches synthesized", ["engine"], registry=r)
        self.batch_size = Histogram(
            "ishow_batch_size", "Utterances per batch", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r
        )
        self.synth_seconds = Histogram(
            "ishow_synth_seconds",
            "Wall time per batch synthesis",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.audio_seconds = Counter("ishow_audio_seconds", "Seconds of audio synthesized", registry=r)
        self.rtf = Gauge("ishow_rtf", "Real-time factor of the last batch (synth seconds / audio seconds)", registry=r)
        self.queue_wait = Histogram(
            "ishow_queue_wait_seconds",
            "From a message's arrival to its hand-off to the outputs",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
            registry=r,
        )
        self.spoken = Counter("ishow_utterances_spoken", "Utterances handed to the outputs", registry=r)
        self.synth_errors = Counter("ishow_synth_errors", "Utterances that failed to synthesize", ["kind"], registry=r)
        self.gc_pauses = Counter(
            "ishow_gc_pauses", "Garbage collections that stopped the daemon for 50 ms or more", ["generation"],
            registry=r,
        )  # fmt: skip
        self.loop_lag = Histogram(
            "ishow_loop_lag_seconds",
            "How much later than due the event loop ran a timer (see ishow.loop_watch)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=r,
        )
        self.source_state = Gauge(
            "ishow_source_connected", "1 when the source is connected/running", ["source"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
