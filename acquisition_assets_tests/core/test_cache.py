"""The TTL query cache: expiry, invalidation by table, and one load per missing key."""

import threading

from acquisition_assets.core.cache import QueryCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cache_serves_hit_within_ttl() -> None:
    clock = FakeClock()
    cache = QueryCache(timer=clock)
    loads = []
    for _ in range(3):
        cache.get_or_load("q", (), ["leads"], 60, lambda: loads.append(1) or ("row",))
    assert len(loads) == 1
    stats = cache.stats()
    assert stats.hits == 2
    assert stats.misses == 1


def test_cache_expires_after_ttl() -> None:
    clock = FakeClock()
    cache = QueryCache(timer=clock)
    cache.get_or_load("q", (), ["leads"], 60, lambda: ("old",))
    clock.now = 61
    value = cache.get_or_load("q", (), ["leads"], 60, lambda: ("new",))
    assert value == ("new",)
    assert cache.stats().misses == 2


def test_cache_entries_have_their_own_ttl() -> None:
    clock = FakeClock()
    cache = QueryCache(timer=clock)
    cache.get_or_load("short", (), ["leads"], 60, lambda: ("a",))
    cache.get_or_load("long", (), ["leads"], 300, lambda: ("b",))
    clock.now = 120
    assert cache.stats().size == 1
    assert cache.get_or_load("long", (), ["leads"], 300, lambda: ("other",)) == ("b",)


def test_cache_invalidation_drops_entries_of_the_table() -> None:
    cache = QueryCache(timer=FakeClock())
    cache.get_or_load("leads", (), ["leads"], 60, lambda: (1,))
    cache.get_or_load("sends", (), ["email_sends"], 60, lambda: (2,))
    cache.invalidate(["leads"])
    assert cache.get_or_load("leads", (), ["leads"], 60, lambda: (3,)) == (3,)
    assert cache.get_or_load("sends", (), ["email_sends"], 60, lambda: (4,)) == (2,)
    assert cache.stats().invalidations == 1


def test_cache_write_during_load_keeps_value_out() -> None:
    cache = QueryCache(timer=FakeClock())

    def load_while_written() -> tuple:
        cache.invalidate(["leads"])
        return ("stale",)

    assert cache.get_or_load("q", (), ["leads"], 60, load_while_written) == ("stale",)
    assert cache.get_or_load("q", (), ["leads"], 60, lambda: ("fresh",)) == ("fresh",)


def test_cache_concurrent_misses_load_once() -> None:
    cache = QueryCache(timer=FakeClock())
    started = threading.Event()
    release = threading.Event()
    calls = []

    def slow_load() -> tuple:
        calls.append(1)
        started.set()
        release.wait(5)
        return ("value",)

    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(cache.get_or_load("q", (), ["leads"], 60, slow_load))
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    started.wait(5)
    release.set()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1
    assert results == [("value",)] * 8


def test_cache_failed_load_lets_next_caller_retry() -> None:
    cache = QueryCache(timer=FakeClock())

    def failing() -> tuple:
        raise RuntimeError("database unavailable")

    try:
        cache.get_or_load("q", (), ["leads"], 60, failing)
    except RuntimeError:
        pass
    assert cache.get_or_load("q", (), ["leads"], 60, lambda: ("ok",)) == ("ok",)
