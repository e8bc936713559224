"""A bounded LRU of object blocks, by bytes."""

from __future__ import annotations

import collections

__all__ = ["BlockCache"]

BlockKey = tuple[int, int]
"""(object id, block position)"""


class BlockCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: collections.OrderedDict[BlockKey, bytes] = collections.OrderedDict()
        self.size = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: BlockKey) -> bytes | None:
        data = self._data.get(key)
        if data is None:
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return data

    def put(self, key: BlockKey, data: bytes) -> None:
        # A block larger than the whole cache would only evict everything else for nothing.
        if len(data) > self.capacity or key in self._data:
            return
        self._data[key] = data
        self.size += len(data)
        while self.size > self.capacity:
            _, old = self._data.popitem(last=False)
            self.size -= len(old)

    def drop_object(self, object_id: int) -> None:
        """Forget every block of an object (it was deleted)."""
        for key in [k for k in self._data if k[0] == object_id]:
            self.size -= len(self._data.pop(key))
