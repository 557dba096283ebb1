"""The client-side request limit: callers over the window wait, and no call is dropped."""

import pytest

from acquisition_assets.core.ratelimit import RequestRateLimiter


class FakeTime:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_ratelimit_lets_requests_within_window_through() -> None:
    time = FakeTime()
    limiter = RequestRateLimiter(3, 10.0, clock=time.clock, sleep=time.sleep)
    for _ in range(3):
        limiter.acquire()
    assert time.sleeps == []


def test_ratelimit_waits_for_oldest_request_to_leave_window() -> None:
    time = FakeTime()
    limiter = RequestRateLimiter(2, 10.0, clock=time.clock, sleep=time.sleep)
    limiter.acquire()
    time.now = 4.0
    limiter.acquire()
    limiter.acquire()
    assert time.sleeps == [6.0]
    assert limiter.waited_seconds == 6.0


def test_ratelimit_never_exceeds_limit_in_any_window() -> None:
    time = FakeTime()
    limiter = RequestRateLimiter(5, 10.0, clock=time.clock, sleep=time.sleep)
    starts = []
    for _ in range(23):
        limiter.acquire()
        starts.append(time.now)
    for start in starts:
        in_window = [s for s in starts if start <= s < start + 10.0]
        assert len(in_window) <= 5


@pytest.mark.parametrize(("max_requests", "window"), [(0, 10.0), (5, 0.0), (5, -1.0)])
def test_ratelimit_rejects_invalid_limits(max_requests: int, window: float) -> None:
    with pytest.raises(ValueError):
        RequestRateLimiter(max_requests, window)
