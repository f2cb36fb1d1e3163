"""The most recent utterances' audio, for ``GET /audio/<id>.wav`` (an OBS Media Source plays them from there).

Bounded by count and by bytes (PCM16 size): adding one more evicts the oldest. Audio is kept as samples and
encoded to WAV only when OBS asks (in a worker thread, by the server).
"""

from __future__ import annotations

import collections

from ishow.events import Audio


class AudioStore:
    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict[str, Audio] = collections.OrderedDict()
        self._bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def put(self, audio: Audio) -> bool:
        """Keep ``audio`` under its utterance id; False when it alone is larger than ``max_bytes``."""
        size = _size(audio)
        uid = audio.utterance.id
        if size > self.max_bytes:
            return False
        old = self._items.pop(uid, None)
        if old is not None:
            self._bytes -= _size(old)
        self._items[uid] = audio
        self._bytes += size
        while len(self._items) > self.max_items or self._bytes > self.max_bytes:
            _, gone = self._items.popitem(last=False)
            self._bytes -= _size(gone)
            self.evicted += 1
        return True

    def get(self, utterance_id: str) -> Audio | None:
        return self._items.get(utterance_id)


def _size(audio: Audio) -> int:
    return 44 + 2 * len(audio.samples)  # the WAV file: header + PCM16
