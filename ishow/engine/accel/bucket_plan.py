"""Which (rows, frames) buckets to capture ahead of chat, in what order, and which ready bucket serves a batch.

Pure policy, no torch: :mod:`ishow.engine.accel.graphs` and :mod:`ishow.engine.accel.vocoder_backends` ask
:func:`cover_bucket` on every batch (nothing is ever captured on a message's path once the engine runs with a
background warmer), and :class:`ishow.engine.f5_engine.F5Engine` builds its warm-up list with :func:`plan_buckets` from
the frame counts the configured voices produce for typical chat.

A bucket is ``(rows, frames)``: a batch of ``b`` items of up to ``n`` frames fits a bucket with ``rows >= b`` and
``frames >= n`` (masks make the padding exact).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

Bucket = tuple[int, int]
K = TypeVar("K", bound=Hashable)

MAX_MISSES = 64  # bucket keys remembered for the warmer between two of its looks (the oldest go first)


# A ready bucket serves a batch only when it costs at most this many times the batch's own bucket (rows × frames):
# batch 1 on a batch-2 graph, or 640 frames on a 1024-frame graph, is still faster than the eager path (about 4×
# slower than a graph at batch 1 on an H100/H200); batch 1 on a batch-16 graph is not.
MAX_PAD_FACTOR = 4.0


def cover_bucket(need: Bucket, ready: Iterable[Bucket], max_pad: float = MAX_PAD_FACTOR) -> Bucket | None:
    """The ready bucket that serves a batch whose own bucket is ``need``: ``need`` itself when ready, else the
    smallest ready bucket (by rows × frames, then fewer rows) with at least its rows and frames and at most
    ``max_pad`` times its area; None when none qualifies (the caller runs eagerly)."""
    rows, frames = need
    best: Bucket | None = None
    for r, f in ready:
        if r < rows or f < frames or r * f > max_pad * rows * frames:
            continue
        if best is None or (r * f, r) < (best[0] * best[1], best[0]):
            best = (r, f)
    return best


def smallest_at_least(sizes: Iterable[int], n: int) -> int | None:
    """The smallest of ``sizes`` that is ≥ n (a batch of n items' row bucket), or None when all are smaller."""
    return min((b for b in sizes if b >= n), default=None)


def coarse_frames(frames: int, coarse: int, frames_of: Callable[[int], int | None]) -> int:
    """A frame bucket rounded up to the coarse step of multi-row buckets; unchanged past the last bucket
    (``frames_of`` of the rounded count is not itself). The one rule for the warm-up plan and for
    :meth:`ishow.engine.accel.graphs.Buckets.area`."""
    c = -(-frames // coarse) * coarse
    return c if frames_of(c) == c else frames


class MissLog(Generic[K]):
    """Bucket keys that batches asked for and did not find captured, oldest first, at most ``limit`` (the oldest
    are forgotten first); the warmer takes them to capture later. Not thread-safe: the owner's lock guards it."""

    def __init__(self, limit: int = MAX_MISSES) -> None:
        self.limit = limit
        self._keys: OrderedDict[K, None] = OrderedDict()

    def add(self, key: K) -> None:
        self._keys[key] = None
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)

    def discard(self, key: K) -> None:
        self._keys.pop(key, None)

    def take(self) -> list[K]:
        """Every remembered key, oldest first; the log is empty afterwards."""
        out = list(self._keys)
        self._keys.clear()
        return out


def plan_buckets(
    lengths: Sequence[int],
    row_sizes: Sequence[int],
    frames_of: Callable[[int], int | None],
    coarse: int,
    single: int = 1,
    max_area: int | None = None,
) -> list[Bucket]:
    """:func:`plan_stages`, essential then refinement, as one list."""
    essential, refine = plan_stages(lengths, row_sizes, frames_of, coarse, single, max_area)
    return essential + refine


def plan_stages(
    lengths: Sequence[int],
    row_sizes: Sequence[int],
    frames_of: Callable[[int], int | None],
    coarse: int,
    single: int = 1,
    max_area: int | None = None,
) -> tuple[list[Bucket], list[Bucket]]:
    """Buckets to capture, most useful first, without duplicates.

    ``lengths``: frame counts of likely messages, most likely first (all configured voices interleaved);
    ``row_sizes``: the batch sizes the daemon can form (1 and the bucket sizes up to ``batch.max_items``);
    ``frames_of``: a length's frame bucket (None when too long for any bucket); ``coarse``: the frame step used
    for batches of more than one row (coarser: fewer captures, the padding is shared by the whole batch);
    ``single``: the row size a message alone runs in (1, or 2 for the vocoder, which has no 1-row graphs);
    ``max_area``: no bucket of more rows than ``single`` with rows × frames above it (the engine splits such
    batches, see :func:`split_batch`).

    Order: (1) batch 1 at every frame bucket, in the order the lengths come; (2) every larger batch size, largest
    first, at the largest planned frames within ``max_area`` (so a burst has a graph as soon as possible, padding
    shorter messages);
    (3) the remaining coarse frame buckets of the larger batch sizes, smallest batch first.
    (1) and (2) are essential: with them every planned batch has a graph (its own, or a larger one within
    ``MAX_PAD_FACTOR``); (3) refines (less padding). Returns (essential, refinement).
    """
    fine: list[int] = []
    for n in lengths:
        f = frames_of(n)
        if f is not None and f not in fine:
            fine.append(f)
    if not fine:
        return [], []
    essential: list[Bucket] = []
    if single in row_sizes:
        essential.extend((single, f) for f in fine)
    multi = sorted({r for r in row_sizes if r > single})
    coarse_list: list[int] = []
    for f in fine:
        c = coarse_frames(f, coarse, frames_of)
        if c not in coarse_list:
            coarse_list.append(c)
    allowed = {r: [c for c in coarse_list if max_area is None or r * c <= max_area] for r in multi}
    tops = {r: max(cs) for r, cs in allowed.items() if cs}
    essential.extend((r, tops[r]) for r in reversed(multi) if r in tops)
    refine = [(r, c) for r in multi for c in allowed[r] if c != tops.get(r)]
    unique = list(dict.fromkeys(essential))
    return unique, [b for b in dict.fromkeys(refine) if b not in unique]


# What a DiT graph of rows × frames costs to replay, relative to row-frames of an 8-row graph of few frames: a graph of
# few rows leaves much of the GPU idle (ROW_WEIGHTS), and attention grows with the square of the frames (each
# row-frame costs 1 + frames / ATTENTION_FRAMES). Fitted to `tools/burst_split.py` and `ishow bench` on an H200
# (session 9, untraced): µs per row-frame 14.2 at 8 × 1024 and 15.2 at 8 × 1280, 15.1 at 4 × 768, 15.3 at
# 4 × 1024 and 16.1 at 4 × 1280, 21.0 at 1 × 768; session 8's trace gave 17.2 at 2 × 768–1024 (with its sync
# overhead, so a little high).
ROW_WEIGHTS: dict[int, float] = {1: 1.4, 2: 1.15, 4: 1.05, 8: 1.0, 16: 1.0}
ATTENTION_FRAMES = 3000
# What one more sub-batch costs beyond its graph (:func:`weighted_area`), in the same units (~10.6 µs each on an
# H200): its vocoder run and the host work around both, ~1 ms.
SPLIT_OVERHEAD = 90
# A group with no ready graph runs eagerly: this many times its bucket's cost (batch 1: 93 vs 16 ms on an H200).
EAGER_FACTOR = 4


def weighted_area(rows: int, frames: int) -> int:
    """What replaying a graph of ``rows`` × ``frames`` costs: its row-frames × its rows' weight (:data:`ROW_WEIGHTS`;
    1.0 for other row counts) × (1 + frames / :data:`ATTENTION_FRAMES`). E.g. on an H200 the e2e burst's second
    batch of 8 runs faster as one 8 × 1280 graph than as 1 + 2 + 1 + 4 rows (161–168 vs 169 ms), and 8 messages of
    880–1215 frames faster as 4 × 1024 + 4 × 1280 than as one 8 × 1280 graph (145–150 vs 155–161 ms)."""
    return round(rows * frames * ROW_WEIGHTS.get(rows, 1.0) * (1 + frames / ATTENTION_FRAMES))


def split_batch(
    frames: Sequence[int],
    area: Callable[[int, int], int | None],
    max_area: int | None,
    cost: Callable[[int, int], int | None] | None = None,
    overhead: int = SPLIT_OVERHEAD,
) -> list[list[int]]:
    """Item indices of one batch grouped into the sub-batches that finish it soonest.

    ``frames``: each item's frame count; ``area(k, n)``: rows × frames of the bucket a batch of ``k`` items of up
    to ``n`` frames runs in (None: no bucket, it runs eagerly); no group of more than one item may exceed
    ``max_area`` (None: no limit); a single item is always a group of its own if need be, however long.
    ``cost(k, n)``: what running such a group costs now (default ``area``: every row-frame alike; the engine passes
    the ready graph's :func:`weighted_area`, with a penalty where only the eager path is left; None: that group is
    not allowed), plus ``overhead`` per group.

    Groups are runs of the items sorted by length (for a cost that grows with the rows and with the longest item,
    some best split is always such runs: similar lengths together, least padding). A batch whose best plan is one
    group stays whole, in its order. Every index appears exactly once.

    Why split a batch that fits: rows are padded up to a bucket size, so 5 messages run on an 8-row graph (3 rows
    of padding); 4 + 1 costs less. And a long message pads every row of its batch to its length."""
    n = len(frames)
    if n <= 1:
        return [list(range(n))] if n else []
    price = cost if cost is not None else area
    order = sorted(range(n), key=lambda j: frames[j])
    inf = (float("inf"), 0)
    best: list[tuple[float, int]] = [(0.0, 0)] + [inf] * n  # (cost, groups) of the first j sorted items
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = frames[order[j - 1]]
        for i in range(j):
            k = j - i
            planned = area(k, longest)
            if k > 1 and (planned is None or (max_area is not None and planned > max_area)):
                continue
            c = price(k, longest)
            if c is None:
                if k > 1:
                    continue
                c = EAGER_FACTOR * longest  # a message alone always runs
            total = (best[i][0] + c + overhead, best[i][1] + 1)
            if total < best[j]:
                best[j], cut[j] = total, i
    groups: list[list[int]] = []
    j = n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    groups.reverse()
    if len(groups) == 1:
        return [list(range(n))]
    return groups


def likely_lengths(shortest: int, longest: int, step: int) -> list[int]:
    """Message sizes (e.g. UTF-8 bytes) from ``shortest`` to ``longest``, most likely first: chat is mostly short,
    so ascending."""
    return list(range(shortest, longest + 1, max(1, step)))
