"""``ishow serve``: arguments and the foreground process (imports ray only when it runs)."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import threading
from pathlib import Path
from types import FrameType

from ishow.config import Config, is_loopback
from ishow.errors import ConfigError


def build_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--config", type=Path, help="config file: [serve] and the [engine] model paths")
    p.add_argument("--address", help='Ray cluster to join ("auto", "HOST:6379"); default [serve] address, "" = local')
    p.add_argument("--host", help="override serve.host (any non-loopback host requires serve.token)")
    p.add_argument("--port", type=int, help="override serve.port")
    p.add_argument("--replicas", type=int, help="override serve.replicas")
    p.add_argument("--num-gpus", type=float, help="override serve.num_gpus (GPUs per replica; 0 on CPU)")
    p.add_argument("--device", help="override engine.device for the replicas (cpu, cuda)")
    return p


def apply_overrides(cfg: Config, args: argparse.Namespace) -> Config:
    serve = cfg.serve
    for key in ("address", "host", "port", "replicas", "num_gpus"):
        value = getattr(args, key, None)
        if value is not None:
            serve = dataclasses.replace(serve, **{key: value})
    if not is_loopback(serve.host) and not serve.token:
        raise ConfigError(f"serve.token: required when the service listens on {serve.host!r}; set a long random token")
    if serve.replicas < 1 or serve.num_gpus < 0:
        raise ConfigError(f"--replicas must be ≥ 1 and --num-gpus ≥ 0, got {serve.replicas} and {serve.num_gpus}")
    engine = cfg.engine if not getattr(args, "device", None) else dataclasses.replace(cfg.engine, device=args.device)
    return dataclasses.replace(cfg, serve=serve, engine=engine)


def serve_main(args: argparse.Namespace, cfg: Config) -> int:
    cfg = apply_overrides(cfg, args)
    try:
        from ishow.serve import app
    except ImportError as e:
        raise ConfigError(f"ishow serve needs Ray Serve: pip install 'ishow[cluster]' ({e})") from e
    sc = cfg.serve
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    started_ray = not sc.address
    try:
        where = f"Ray cluster {sc.address}" if sc.address else "a local Ray"
        print(f"deploying {sc.replicas} replica(s) of the F5 engine ({cfg.engine.checkpoint}) on {where} ...")
        url = app.start(sc, cfg.engine)
        print(f"ishow synthesis service ready at {url} (POST /synthesize, GET /healthz, GET /stats)")
        print(f'daemons: [engine] kind = "remote" and [engine.remote] url = "{url}"; Ctrl-C stops the service')
        while not stop.wait(3600):  # bounded wait per loop; ends on SIGINT/SIGTERM
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        print("stopping the service ...")
        app.stop(started_ray)
    return 0
