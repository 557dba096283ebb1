"""Tests of the in-process sandbox pieces that need no server: knobs, limiter and counters."""

import pytest

from acquisition_assets.sandbox.addresses import is_valid_address
from acquisition_assets.sandbox.knobs import CrmKnobs, EmailKnobs, KnobError, update_knobs
from acquisition_assets.sandbox.state import RequestStats, SlidingWindowLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_limiter_rejects_over_limit():
    limiter = SlidingWindowLimiter(FakeClock(), window_seconds=10)

    allowed = [limiter.allow("token", limit=3) for _ in range(4)]

    assert allowed == [True, True, True, False]


def test_limiter_frees_capacity_after_window():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock, window_seconds=10)
    limiter.allow("token", limit=1)

    clock.now += 9.9
    still_limited = limiter.allow("token", limit=1)
    clock.now += 0.1
    freed = limiter.allow("token", limit=1)

    assert still_limited is False
    assert freed is True


def test_limiter_keeps_tokens_apart():
    limiter = SlidingWindowLimiter(FakeClock(), window_seconds=10)
    limiter.allow("first", limit=1)

    assert limiter.allow("second", limit=1) is True


def test_limiter_zero_limit_disables_check():
    limiter = SlidingWindowLimiter(FakeClock(), window_seconds=10)

    assert all(limiter.allow("token", limit=0) for _ in range(1000))


def test_request_stats_clear_keeps_in_flight():
    stats = RequestStats()
    stats.begin("POST /email/batch")
    stats.begin("POST /email/batch")
    stats.finish(200)

    stats.clear()
    stats.finish(200)

    assert stats.in_flight == 0
    assert stats.requests == 0
    assert stats.max_concurrent == 1
    assert stats.by_status == {"200": 1}


def test_update_knobs_applies_partial_update():
    knobs = CrmKnobs()

    update_knobs(knobs, {"rate_limit_per_10s": 5, "latency_ms": 20})

    assert knobs.rate_limit_per_10s == 5
    assert knobs.latency_ms == 20.0
    assert knobs.error_status == 503


def test_update_knobs_changes_nothing_on_error():
    knobs = EmailKnobs()

    with pytest.raises(KnobError):
        update_knobs(knobs, {"open_rate": 1.0, "click_rate": -0.1})

    assert knobs.open_rate == 0.45


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("lead@example.com", True),
        ("Lead Name@example.com", False),
        ("no-at-sign", False),
        ("@example.com", False),
        ("lead@", False),
        ("lead@host.invalid", False),
        ("lead@HOST.INVALID", False),
    ],
)
def test_is_valid_address_cases(address, valid):
    assert is_valid_address(address) is valid
