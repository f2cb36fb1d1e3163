"""Structure-aware fuzzing of every parser that reads outside input.

``python -m tools.fuzz --inputs N --seconds T --seed S [--parser NAME]`` (run from the repository root). Each
target feeds mutated seed frames to one parser entry point the way the daemon does; any exception other than the
target's allowed ``ishow.errors`` types is a failure, reported once per (type, innermost ishow frame) with a
minimized input.
"""

from __future__ import annotations

from tools.fuzz.runner import Report, Target, fuzz, render


def all_targets() -> list[Target]:
    from tools.fuzz import targets_bilibili, targets_chat, targets_local

    return [*targets_bilibili.TARGETS, *targets_chat.TARGETS, *targets_local.TARGETS]


def select(names: list[str] | None) -> list[Target]:
    """Targets by parser name (``youtube.chat``) or family (``youtube``); all when ``names`` is empty."""
    targets = all_targets()
    if not names:
        return targets
    known = {t.name for t in targets} | {t.family for t in targets}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown parser {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    return [t for t in targets if t.name in names or t.family in names]


def quotas(targets: list[Target], per_family: int) -> dict[str, int]:
    """``per_family`` inputs split evenly over each family's selected targets."""
    families: dict[str, list[Target]] = {}
    for t in targets:
        families.setdefault(t.family, []).append(t)
    out: dict[str, int] = {}
    for group in families.values():
        share, extra = divmod(per_family, len(group))
        for i, t in enumerate(group):
            out[t.name] = share + (1 if i < extra else 0)
    return out


__all__ = ["Report", "Target", "all_targets", "fuzz", "quotas", "render", "select"]
