"""The ``[serve]`` table: the shared synthesis service (``ishow serve``, Ray Serve); see README "Scaling out"."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServeConfig:
    # Ray cluster: "" starts a local one for this process; "auto" joins the cluster `ray start --head` runs on
    # this machine; "HOST:6379" joins a cluster's head node
    address: str = ""
    host: str = "127.0.0.1"  # where the service's HTTP ingress listens (any other address requires `token`)
    port: int = 8600
    token: str = field(default="", repr=False)  # daemons send "Authorization: Bearer <token>"; never logged
    replicas: int = 1  # engine replicas (each holds one model copy on `num_gpus` GPUs)
    max_replicas: int = 0  # > replicas: autoscale between `replicas` and this many on load
    target_ongoing_requests: float = 4.0  # autoscaling: requests in flight per replica to aim for
    num_gpus: float = 1.0  # GPUs per replica (0 on a CPU-only machine)
    num_cpus: float = 1.0  # CPUs per replica
    max_batch_size: int = 16  # daemon requests grouped into one engine batch (each carries 1–max_items rows)
    batch_wait_ms: float = 10.0  # wait at most this for more daemons once a request arrives (0–100 ms)
    max_rows: int = 16  # rows per engine call; a larger group is split into chunks of this many
    max_ongoing_requests: int = 64  # per replica (≥ max_batch_size so a batch can fill)
    max_queued_requests: int = 256  # beyond this the service answers 503 at once and daemons use their fallback
    max_voices: int = 256  # voices registered per replica
    batch_log: int = 64  # recent batches per replica shown by GET /stats
