"""``python -m tools.fuzz``: run the parser fuzzers and print counts, times and each distinct failure."""

from __future__ import annotations

import argparse
import sys
import time

from tools.fuzz import fuzz, quotas, render, select
from tools.fuzz.runner import TargetStats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__)
    ap.add_argument(
        "--inputs",
        type=int,
        default=None,
        help="inputs per parser family, split over its parsers (default 10000; unbounded when only --seconds is given)",
    )
    ap.add_argument("--seconds", type=float, default=None, help="total time bound, shared equally by the parsers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parser", action="append", help="a parser (youtube.chat) or family (youtube); repeatable")
    ap.add_argument("--hang", type=float, default=5.0, help="seconds after which one input counts as a hang")
    ap.add_argument("--no-minimize", action="store_true", help="report failing inputs as found")
    ap.add_argument("--list", action="store_true", help="list the parsers and exit")
    args = ap.parse_args(argv)
    try:
        targets = select(args.parser)
    except ValueError as e:
        ap.error(str(e))
    if args.list:
        for t in targets:
            print(f"{t.name:<22} {t.family:<14} allowed: {', '.join(e.__name__ for e in t.allowed)}")
        return 0
    started = time.perf_counter()

    def progress(s: TargetStats) -> None:
        print(f"  {s.target}: {s.inputs} inputs in {s.seconds:.1f} s, {s.failures} failing", file=sys.stderr)

    command = " ".join(["python -m tools.fuzz", *(argv if argv is not None else sys.argv[1:])])
    print(command, file=sys.stderr)
    inputs = args.inputs if args.inputs is not None else (10_000 if args.seconds is None else 10**12)
    report = fuzz(targets, quotas(targets, inputs), args.seconds, args.seed, do_minimize=not args.no_minimize,
                  hang_s=args.hang or None, progress=progress)  # fmt: skip
    print(render(report))
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
