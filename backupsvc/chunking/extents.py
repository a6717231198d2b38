"""Restore planning: which object (or zeros) provides each byte of the volume.

Every backup of a chain contributes its objects; for each byte the newest
backup whose object covers it wins. Blocks the newest backup records as all
zeros and does not store itself are zeros whatever older backups hold (the
backup engine leaves such blocks out). Bytes no object covers are zeros.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from backupsvc.chunking.errors import IntegrityError
from backupsvc.chunking.manifest import ObjectEntry


@dataclass(frozen=True, eq=False)
class Source:
    """An object of backup number ``layer`` of the chain (0 = the full backup)."""

    layer: int
    entry: ObjectEntry


@dataclass
class Extent:
    start: int
    end: int
    source: Source | None       # None: the range is zeros


def plan_extents(layers: list[list[ObjectEntry]], newest_zero: list[tuple[int, int]],
                 size: int) -> list[Extent]:
    """Cover ``[0, size)`` with extents, each served by one object or zeros."""
    _ZERO = None
    items: list[tuple[int, int, int, Source | None]] = []   # start, end, priority, source
    newest = len(layers) - 1
    for n, entries in enumerate(layers):
        for entry in entries:
            if entry.end > size:
                raise IntegrityError(
                    "object %s (offset %d, length %d) lies beyond the end of the %d-byte "
                    "volume" % (entry.name, entry.offset, entry.end - entry.offset, size))
            source = Source(n, entry)
            for offset, length in entry.spans():      # a packed object: each of its runs
                if length:
                    items.append((offset, offset + length, 2 * n, source))
    # Between the older backups and the newest one's own objects.
    items.extend((s, e, 2 * newest - 1, _ZERO) for s, e in newest_zero if e > s)
    items.sort(key=lambda it: it[0])
    points = sorted({0, size, *(it[0] for it in items), *(it[1] for it in items)})

    extents: list[Extent] = []
    heap: list[tuple[int, int, int, Source | None]] = []   # -priority, seq, end, source
    j = 0
    for a, b in zip(points, points[1:], strict=False):
        while j < len(items) and items[j][0] <= a:
            start, end, prio, src = items[j]
            heapq.heappush(heap, (-prio, j, end, src))
            j += 1
        while heap and heap[0][2] <= a:
            heapq.heappop(heap)
        src = heap[0][3] if heap else _ZERO
        if extents and extents[-1].source is src and extents[-1].end == a:
            extents[-1].end = b
        else:
            extents.append(Extent(a, b, src))
    return extents
