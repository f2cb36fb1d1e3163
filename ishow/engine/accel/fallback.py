"""A fast GPU path with a permanent fallback, and whether Triton is importable.

The Triton kernels (conv position embedding, RoPE, the Vocos block) and the flash-varlen / cuDNN attention calls
each have a plain torch path that computes the same thing. Their first failure (a compile or launch error, a GPU the
kernel does not support) is logged once, with what takes over, and every later call takes the fallback:
:class:`Fallback` is that switch, one per fast path.
"""

from __future__ import annotations

import functools
import logging


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:  # CPU-only torch installs: the torch ops run instead
        return False
    return True


class Fallback:
    """The state of one fast path: ``failure`` is its first error (None while it works). ``what`` and ``instead``
    name the path and its replacement in the one warning, logged on ``log`` (the owning module's logger)."""

    def __init__(self, what: str, instead: str, log: logging.Logger) -> None:
        self.what = what
        self.instead = instead
        self.log = log
        self.failure: str | None = None

    @property
    def broken(self) -> bool:
        return self.failure is not None

    def fail(self, error: BaseException) -> None:
        """The fast path failed: remember the first error, say so once; callers take the fallback from now on."""
        if self.failure is None:
            self.failure = f"{type(error).__name__}: {error}"
            self.log.warning("%s failed (%s); using %s", self.what, self.failure, self.instead)
