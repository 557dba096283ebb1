"""A thread-safe TTL cache for query results, invalidated by the tables a write touches."""

import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from cachetools import TLRUCache


@dataclass(frozen=True)
class CacheStats:
    """Counters of one cache since it was created."""

    hits: int
    misses: int
    size: int
    invalidations: int

    @property
    def hit_ratio(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class QueryCache:
    """Cache of immutable query results, each entry with its own TTL and source tables.

    Concurrent lookups of one missing key load it once: the other threads wait on a
    condition until the first one stores the value, so an expired entry does not cause a
    stampede of identical queries. Values must be immutable (tuples of rows), because every
    caller receives the same object.
    """

    def __init__(self, maxsize: int = 1024, timer: Callable[[], float] = time.monotonic):
        self._entries = TLRUCache(maxsize=maxsize, ttu=self._expiry, timer=timer)
        self._condition = threading.Condition()
        self._loading: set[Hashable] = set()
        self._keys_by_table: dict[str, set[Hashable]] = {}
        self._table_versions: dict[str, int] = {}
        self._hits = 0
        self._misses = 0
        self._invalidations = 0

    @staticmethod
    def _expiry(key: tuple, value: Any, now: float) -> float:
        ttl_seconds = key[0]
        return now + ttl_seconds

    def get_or_load(
        self,
        name: str,
        params: Hashable,
        tables: Iterable[str],
        ttl_seconds: float,
        loader: Callable[[], Any],
    ) -> Any:
        """Return the cached value for (name, params), calling `loader` on a miss."""
        key = (ttl_seconds, name, params)
        tables = tuple(tables)
        with self._condition:
            while True:
                try:
                    value = self._entries[key]
                except KeyError:
                    if key not in self._loading:
                        break
                    self._condition.wait()
                    continue
                self._hits += 1
                return value
            self._loading.add(key)
            self._misses += 1
            versions_before = [self._table_versions.get(table, 0) for table in tables]

        try:
            value = loader()
        except BaseException:
            with self._condition:
                self._loading.discard(key)
                self._condition.notify_all()
            raise

        with self._condition:
            self._loading.discard(key)
            # A write to one of the tables during the load makes this value stale already.
            versions_after = [self._table_versions.get(table, 0) for table in tables]
            if versions_after == versions_before:
                self._entries[key] = value
                for table in tables:
                    self._keys_by_table.setdefault(table, set()).add(key)
            self._condition.notify_all()
        return value

    def invalidate(self, tables: Iterable[str]) -> None:
        """Drop every entry read from any of `tables`."""
        with self._condition:
            for table in tables:
                self._table_versions[table] = self._table_versions.get(table, 0) + 1
                for key in self._keys_by_table.pop(table, set()):
                    if self._entries.pop(key, None) is not None:
                        self._invalidations += 1

    def clear(self) -> None:
        """Drop every entry."""
        with self._condition:
            self._entries.clear()
            self._keys_by_table.clear()

    def stats(self) -> CacheStats:
        """Return the hit, miss and size counters."""
        with self._condition:
            self._entries.expire()
            return CacheStats(self._hits, self._misses, len(self._entries), self._invalidations)
