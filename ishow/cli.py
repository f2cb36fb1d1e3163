"""Command line: ishow run | say | check-config | models | voices | bench | serve | engines build | token | doctor."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

from ishow.audio_format import SAMPLE_RATE
from ishow.config.load import default_config, load_config
from ishow.config.schema import DEFAULT_CONFIG, Config
from ishow.errors import ConfigError, IshowError, StartupError


def _config_path(path: Path | None) -> Path | None:
    if path is not None:
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def _load(path: Path | None) -> Config:
    found = _config_path(path)
    return load_config(found) if found is not None else default_config()


def cmd_run(args: argparse.Namespace) -> int:
    from ishow.app import Daemon, install_signal_handlers

    cfg = _load(args.config)
    if args.port is not None:
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, port=args.port))
    missing = [v for v in cfg.voices if v.ref_audio is not None and not v.ref_audio.is_file()]
    if missing:
        for v in missing:
            print(
                f"error: voice {v.id!r}: reference audio {v.ref_audio} does not exist; fix voices[].ref_audio in the "
                f"config or add it with `ishow voices add {v.id} FILE.wav TRANSCRIPT`",
                file=sys.stderr,
            )
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        remove = install_signal_handlers(stop)
        try:
            await Daemon(cfg, config_path=_config_path(args.config)).run(stop)
        finally:
            remove()

    asyncio.run(main())
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import soundfile as sf

    from ishow.engine.worker import EngineWorker
    from ishow.policy.compose import pick_voice

    cfg = _load(args.config)
    engine_cfg = cfg.engine
    if args.engine:
        engine_cfg = dataclasses.replace(engine_cfg, kind=args.engine)
    if args.checkpoint:
        engine_cfg = dataclasses.replace(engine_cfg, checkpoint=args.checkpoint, model="auto")
    if args.vocoder:
        engine_cfg = dataclasses.replace(engine_cfg, vocoder=args.vocoder)
    if args.vocab:
        engine_cfg = dataclasses.replace(engine_cfg, vocab=args.vocab)
    if args.device:
        engine_cfg = dataclasses.replace(engine_cfg, device=args.device)

    async def main() -> int:
        worker = EngineWorker(engine_cfg, cfg.voices, background_warmup=False)  # one message: warm up first
        await worker.start()
        try:
            voice = args.voice or pick_voice(cfg, args.text)
            if getattr(args, "voice_test", False) and worker.active_kind != "f5":
                print(
                    f"note: the {worker.active_kind} engine speaks every voice with its own synthetic voice; "
                    f"cloning {voice!r} needs the F5 weights: run `ishow models fetch`, then test again",
                    file=sys.stderr,
                )
            t0 = time.perf_counter()
            result, chunks = await worker.synthesize_text(args.text, voice, nfe_step=args.nfe_step, seed=args.seed)
            elapsed = time.perf_counter() - t0
        finally:
            await worker.close()
        if result.audio is None:
            print(f"error: {result.error}", file=sys.stderr)
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(args.out, result.audio, SAMPLE_RATE, subtype="PCM_16")
        dur = len(result.audio) / SAMPLE_RATE
        rms = float(np.sqrt(np.mean(np.square(result.audio, dtype=np.float64)))) if len(result.audio) else 0.0
        print(
            f"wrote {args.out}: {dur:.2f} s, RMS {rms:.4f}, engine {result.engine}, voice {voice}, "
            f"{chunks} chunk{'s' if chunks != 1 else ''}"
        )
        print(f"synthesis took {elapsed:.2f} s (real-time factor {elapsed / max(dur, 1e-9):.3f})")
        return 0

    return asyncio.run(main())


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.path)
    except ConfigError as e:
        print(f"{args.path}: {len(e.problems)} problem(s):", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"{args.path}: OK ({len(cfg.voices)} voices, {len(cfg.sources)} sources, engine {cfg.engine.kind})")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from ishow.doctor import exit_code, report, run_checks

    checks = run_checks(_config_path(args.config))
    print(report(checks))
    return exit_code(checks)


def cmd_models_tiny(args: argparse.Namespace) -> int:
    from ishow.engine.f5.checkpoint import write_tiny_model

    paths = write_tiny_model(args.dir, seed=args.seed)
    print(f"tiny random F5 model written to {args.dir} (for tests and demos; it speaks noise, not words):")
    for name, value in dataclasses.asdict(paths).items():
        print(f"  {name}: {value}")
    return 0


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from ishow.engine.f5.fetch import fetch_models

    for path in fetch_models(args.dest):
        print(f"  {path}")
    return 0


def cmd_voices_add(args: argparse.Namespace) -> int:
    from ishow.voices import add_voice

    path = _config_path(args.config)
    if path is None:
        print(f"error: no config file ({DEFAULT_CONFIG} is missing); pass --config", file=sys.stderr)
        return 1
    dest, info = add_voice(path, args.id, args.wav, args.transcript)
    print(f"added voice {args.id!r}: {dest} ({info.seconds:.1f} s, RMS {info.rms:.3f}) to {path}")
    print(f'try it: ishow voices test {args.id} "你好，欢迎来到直播间"')
    return 0


def cmd_voices_test(args: argparse.Namespace) -> int:
    args.voice = args.id
    args.voice_test = True
    for name in ("engine", "checkpoint", "vocoder", "vocab", "device", "nfe_step", "seed"):
        setattr(args, name, getattr(args, name, None))
    if args.out is None:
        args.out = Path("out") / "voices" / f"{args.id}-test.wav"
    return cmd_say(args)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.e2e:
        from ishow.bench.e2e import main as e2e_main

        return e2e_main(args)
    if args.remote:
        from ishow.bench.remote import main as remote_main

        return remote_main(args)
    from ishow.bench.local import main as bench_main

    return bench_main(args=args)


def cmd_serve(args: argparse.Namespace) -> int:
    from ishow.serve.command import serve_main

    return serve_main(args, _load(args.config))


def cmd_engines_build(args: argparse.Namespace) -> int:
    import torch

    from ishow.engine.accel.vocoder_backends import tensorrt_vocoder
    from ishow.engine.f5.vocos import load_vocos

    cfg = _load(args.config).engine
    device = torch.device(args.device or (cfg.device if cfg.device != "auto" else "cuda"))
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ConfigError("engines build: TensorRT engines are built on a CUDA device; none is available")
    vocos = load_vocos(Path(cfg.vocoder), device=device)
    out = args.engines_dir or Path(cfg.engines_dir)
    tensorrt_vocoder(vocos, device, out, force=args.force)
    print(f"TensorRT vocoder engine ready under {out}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from ishow.web_guard import new_token

    print(new_token())
    return 0


def cmd_voices(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    for v in cfg.voices:
        ok = "ok" if v.ref_audio is None or v.ref_audio.is_file() else "MISSING"
        print(f"{v.id}\t{v.ref_audio} [{ok}]\t{v.ref_text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ishow", description="Live-stream chat text-to-speech daemon (F5-TTS).")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-json", action="store_true", default=None, help="JSON log lines (default: when not a TTY)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, help=f"config file (default: {DEFAULT_CONFIG} if present, else built-in)")
    run.add_argument("--port", type=int, help="override server.port")
    run.set_defaults(func=cmd_run)

    say = sub.add_parser("say", help="synthesize one text to a wav file (same engine path as the daemon)")
    say.add_argument("text")
    say.add_argument("--out", type=Path, required=True)
    say.add_argument("--voice", default="")
    say.add_argument("--config", type=Path)
    say.add_argument("--engine", choices=["f5", "espeak"])
    say.add_argument("--checkpoint", type=Path, help="override engine.checkpoint")
    say.add_argument("--vocoder", type=Path, help="override engine.vocoder (folder)")
    say.add_argument("--vocab", type=Path, help="override engine.vocab")
    say.add_argument("--device", help="override engine.device")
    say.add_argument("--nfe-step", type=int, default=None)
    say.add_argument("--seed", type=int, default=None)
    say.set_defaults(func=cmd_say)

    check = sub.add_parser("check-config", help="validate a config file and list every problem")
    check.add_argument("path", type=Path, nargs="?", default=DEFAULT_CONFIG)
    check.set_defaults(func=cmd_check_config)

    doctor = sub.add_parser("doctor", help="check everything a stream needs; prints the fix for each problem")
    doctor.add_argument("--config", type=Path, help=f"config file (default: {DEFAULT_CONFIG} if present)")
    doctor.set_defaults(func=cmd_doctor)

    models = sub.add_parser("models", help="model weights")
    msub = models.add_subparsers(dest="models_command", required=True)
    fetch = msub.add_parser("fetch", help="download F5TTS_v1_Base and vocos-mel-24khz (huggingface_hub)")
    fetch.add_argument("--dest", type=Path, default=Path("models"))
    fetch.set_defaults(func=cmd_models_fetch)
    tiny = msub.add_parser("tiny", help="write a tiny random F5 + Vocos model in the real file formats")
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=cmd_models_tiny)

    from ishow.bench.args import build_parser as bench_parser

    bench = sub.add_parser("bench", help="time text → waveform at the real model size (and upstream, if present)")
    bench_parser(bench)
    bench.set_defaults(func=cmd_bench)

    from ishow.serve.command import build_parser as serve_parser

    serve = sub.add_parser("serve", help="run the F5 engine as a shared synthesis service on Ray Serve (GPU pool)")
    serve_parser(serve)
    serve.set_defaults(func=cmd_serve)

    engines = sub.add_parser("engines", help="accelerator engines")
    esub = engines.add_subparsers(dest="engines_command", required=True)
    build = esub.add_parser("build", help="build (or reuse) the TensorRT Vocos engine under engine.engines_dir")
    build.add_argument("--config", type=Path)
    build.add_argument("--device", help="cuda or cuda:N (default: engine.device)")
    build.add_argument("--engines-dir", type=Path, help="override engine.engines_dir")
    build.add_argument("--force", action="store_true", help="rebuild even when the cached engine's key matches")
    build.set_defaults(func=cmd_engines_build)

    token = sub.add_parser(
        "token", help="print a random server token (for server.token; required off loopback, ≥ 16 characters)"
    )
    token.set_defaults(func=cmd_token)

    voices = sub.add_parser("voices", help="list, add and test voices")
    voices.add_argument("--config", type=Path)
    voices.set_defaults(func=cmd_voices)
    vsub = voices.add_subparsers(dest="voices_command")
    vadd = vsub.add_parser("add", help="validate a 3–12 s reference recording and add it to the config")
    vadd.add_argument("id")
    vadd.add_argument("wav", type=Path)
    vadd.add_argument("transcript", help="the exact words spoken in the recording")
    vadd.add_argument("--config", type=Path)
    vadd.set_defaults(func=cmd_voices_add)
    vtest = vsub.add_parser("test", help="synthesize a test sentence with a configured voice")
    vtest.add_argument("id")
    vtest.add_argument("text")
    vtest.add_argument("--out", type=Path, help="default: out/voices/ID-test.wav")
    vtest.add_argument("--config", type=Path)
    vtest.add_argument("--engine", choices=["f5", "espeak"])
    vtest.set_defaults(func=cmd_voices_test)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ishow.logs import configure

    configure(args.log_level, args.log_json)
    try:
        return int(args.func(args))
    except ConfigError as e:
        if len(e.problems) == 1:
            print(f"configuration error: {e.problems[0]}", file=sys.stderr)
            return 2
        print(f"configuration error ({len(e.problems)} problem(s)):", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    except StartupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except IshowError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
