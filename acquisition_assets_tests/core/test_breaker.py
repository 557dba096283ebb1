"""The shared circuit breaker, driven by a manual clock on each database backend."""

import logging
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from acquisition_assets.core.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.errors import (
    ApiClientError,
    ApiServerError,
    ApiTransportError,
    CircuitOpenError,
)
from acquisition_assets.core.schema import circuit_breaker_transitions

RECOVERY_SECONDS = 30.0
PROBE_TIMEOUT_SECONDS = 25.0
BARRIER_TIMEOUT_SECONDS = 5.0


@pytest.fixture
def sqlite_database(tmp_path: Path) -> AcquisitionDatabase:
    """A SQLite database for tests whose outcome does not depend on the backend."""
    return AcquisitionDatabase(url=f"sqlite:///{tmp_path / 'breaker.db'}")


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _breaker(
    database: AcquisitionDatabase, clock: ManualClock, threshold: int = 3, **options
) -> CircuitBreaker:
    return CircuitBreaker(
        "test",
        database.engine,
        failure_threshold=threshold,
        recovery_timeout=RECOVERY_SECONDS,
        clock=clock,
        probe_timeout=PROBE_TIMEOUT_SECONDS,
        **options,
    )


def _raise(error: BaseException) -> Callable[[], None]:
    def call() -> None:
        raise error

    return call


def _fail(breaker: CircuitBreaker, error: BaseException | None = None) -> None:
    error = error or ApiServerError("service unavailable", 503)
    with pytest.raises(type(error)):
        breaker.call(_raise(error))


def _open(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        _fail(breaker)
    assert breaker.snapshot().state == OPEN


def _transitions(database: AcquisitionDatabase) -> list[tuple[str, str]]:
    with database.connect() as connection:
        rows = connection.execute(
            select(
                circuit_breaker_transitions.c.from_state, circuit_breaker_transitions.c.to_state
            ).order_by(circuit_breaker_transitions.c.id)
        ).all()
    return [(row.from_state, row.to_state) for row in rows]


def test_breaker_opens_after_threshold(database: AcquisitionDatabase) -> None:
    breaker = _breaker(database, ManualClock())

    _fail(breaker)
    _fail(breaker)
    assert breaker.snapshot().state == CLOSED
    assert breaker.snapshot().failure_count == 2
    _fail(breaker)

    assert breaker.snapshot().state == OPEN
    assert _transitions(database) == [(CLOSED, OPEN)]


def test_breaker_open_fails_fast_without_calling(sqlite_database: AcquisitionDatabase) -> None:
    clock = ManualClock()
    breaker = _breaker(sqlite_database, clock)
    _open(breaker)
    calls = []
    clock.now += RECOVERY_SECONDS - 1

    with pytest.raises(CircuitOpenError, match="'test' is open, next probe in 1.0 s") as raised:
        breaker.call(lambda: calls.append("called"))

    assert calls == []
    assert raised.value.retry_in == pytest.approx(1.0)


def test_breaker_probe_success_closes(database: AcquisitionDatabase) -> None:
    clock = ManualClock()
    breaker = _breaker(database, clock)
    _open(breaker)
    clock.now += RECOVERY_SECONDS

    assert breaker.call(lambda: "answer") == "answer"

    snapshot = breaker.snapshot()
    assert snapshot.state == CLOSED
    assert snapshot.failure_count == 0
    assert _transitions(database) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_breaker_probe_failure_restarts_timeout(database: AcquisitionDatabase) -> None:
    clock = ManualClock()
    breaker = _breaker(database, clock)
    _open(breaker)
    clock.now += RECOVERY_SECONDS

    _fail(breaker, ApiTransportError("timed out"))

    snapshot = breaker.snapshot()
    assert snapshot.state == OPEN
    assert snapshot.opened_at == clock.now
    assert "ApiTransportError: timed out" in snapshot.last_error
    clock.now += RECOVERY_SECONDS - 1
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)
    assert _transitions(database) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
def test_breaker_client_error_neither_counts_nor_resets(
    sqlite_database: AcquisitionDatabase, status: int
) -> None:
    breaker = _breaker(sqlite_database, ManualClock())
    _fail(breaker)
    _fail(breaker)

    _fail(breaker, ApiClientError("rejected", status))

    assert breaker.snapshot().failure_count == 2
    _fail(breaker)
    assert breaker.snapshot().state == OPEN


@pytest.mark.parametrize(
    "error",
    [
        ApiServerError("request timeout", 408),
        ApiServerError("too many requests", 429),
        ApiServerError("bad gateway", 502),
        ApiTransportError("connection refused"),
    ],
    ids=["408", "429", "502", "transport"],
)
def test_breaker_counts_transient_errors(
    sqlite_database: AcquisitionDatabase, error: Exception
) -> None:
    breaker = _breaker(sqlite_database, ManualClock(), threshold=1)

    _fail(breaker, error)

    assert breaker.snapshot().state == OPEN


def test_breaker_success_resets_failure_count(sqlite_database: AcquisitionDatabase) -> None:
    breaker = _breaker(sqlite_database, ManualClock())
    _fail(breaker)
    _fail(breaker)

    breaker.call(lambda: None)

    assert breaker.snapshot().failure_count == 0
    _fail(breaker)
    _fail(breaker)
    assert breaker.snapshot().state == CLOSED


def test_breaker_probe_client_error_closes(sqlite_database: AcquisitionDatabase) -> None:
    clock = ManualClock()
    breaker = _breaker(sqlite_database, clock)
    _open(breaker)
    clock.now += RECOVERY_SECONDS

    _fail(breaker, ApiClientError("unknown contact", 404))

    assert breaker.snapshot().state == CLOSED


def test_breaker_interrupted_probe_reopens_at_once(database: AcquisitionDatabase) -> None:
    clock = ManualClock()
    breaker = _breaker(database, clock)
    _open(breaker)
    opened_at = breaker.snapshot().opened_at
    clock.now += RECOVERY_SECONDS

    _fail(breaker, KeyboardInterrupt())

    snapshot = breaker.snapshot()
    assert snapshot.state == OPEN
    assert snapshot.opened_at == opened_at
    assert breaker.call(lambda: "probe") == "probe"
    assert breaker.snapshot().state == CLOSED


def test_breaker_state_shared_between_instances(database: AcquisitionDatabase) -> None:
    clock = ManualClock()
    first = _breaker(database, clock)
    second = _breaker(database, clock)

    _fail(first)
    _fail(second)
    _fail(first)

    assert second.snapshot().state == OPEN
    with pytest.raises(CircuitOpenError):
        second.call(lambda: None)


def test_breaker_closed_calls_run_in_parallel(database: AcquisitionDatabase) -> None:
    breaker = _breaker(database, ManualClock())
    threads = 8
    # Every call waits for all the others inside the breaker: a lock held during a call
    # would leave the barrier short and raise BrokenBarrierError.
    barrier = threading.Barrier(threads, timeout=BARRIER_TIMEOUT_SECONDS)
    outcomes: list[str] = []

    def call() -> None:
        try:
            breaker.call(barrier.wait)
            outcomes.append("passed")
        except threading.BrokenBarrierError:
            outcomes.append("serialized")

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert outcomes == ["passed"] * threads


def test_breaker_half_open_admits_one_probe(database: AcquisitionDatabase) -> None:
    clock = ManualClock()
    probe_started = threading.Event()
    others_done = threading.Event()
    breakers = [_breaker(database, clock) for _ in range(6)]
    _open(breakers[0])
    clock.now += RECOVERY_SECONDS
    outcomes: list[str] = []

    def probe() -> str:
        probe_started.set()
        assert others_done.wait(BARRIER_TIMEOUT_SECONDS)
        return "probe"

    def call(breaker: CircuitBreaker) -> None:
        try:
            outcomes.append(breaker.call(probe))
        except CircuitOpenError:
            outcomes.append("rejected")

    prober = threading.Thread(target=call, args=(breakers[0],))
    prober.start()
    assert probe_started.wait(BARRIER_TIMEOUT_SECONDS)
    for breaker in breakers[1:]:
        call(breaker)
    others_done.set()
    prober.join()

    assert Counter(outcomes) == {"probe": 1, "rejected": 5}
    assert breakers[0].snapshot().state == CLOSED


def test_breaker_stale_probe_taken_over(database: AcquisitionDatabase) -> None:
    clock = ManualClock()
    dead = _breaker(database, clock)
    alive = _breaker(database, clock)
    _open(dead)
    clock.now += RECOVERY_SECONDS

    # The probing process dies inside its call, so it records no outcome.
    dead._claim_probe(dead.snapshot())
    clock.now += PROBE_TIMEOUT_SECONDS - 1
    with pytest.raises(CircuitOpenError, match="probe call is in flight"):
        alive.call(lambda: None)
    clock.now += 1

    assert alive.call(lambda: "second probe") == "second probe"
    assert alive.snapshot().state == CLOSED


def test_breaker_disabled_calls_through(sqlite_database: AcquisitionDatabase) -> None:
    clock = ManualClock()
    _open(_breaker(sqlite_database, clock))

    disabled = _breaker(sqlite_database, clock, enabled=False)

    assert disabled.call(lambda: "called") == "called"
    assert disabled.is_closed()


def test_breaker_logs_transitions(
    sqlite_database: AcquisitionDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    breaker = _breaker(sqlite_database, clock, threshold=1)

    with caplog.at_level(logging.INFO, logger="acquisition_assets.core.breaker"):
        _fail(breaker)
        clock.now += RECOVERY_SECONDS
        breaker.call(lambda: None)

    messages = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert [level for level, _ in messages] == ["WARNING", "INFO", "INFO"]
    assert "'test': closed -> open (1 consecutive failures" in messages[0][1]
    assert "'test': open -> half_open" in messages[1][1]
    assert "'test': half_open -> closed (probe succeeded)" in messages[2][1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # A threshold of 0 would open the breaker before any failure.
        ({"failure_threshold": 0}, "failure_threshold for breaker 'test' is 0; it must be 1"),
        ({"failure_threshold": -2}, "failure_threshold for breaker 'test' is -2"),
        # A negative wait has no meaning, while 0 probes on the next call.
        ({"recovery_timeout": -1.0}, "recovery_timeout for breaker 'test' is -1.0; it must be 0"),
        # A probe timeout of 0 would let every caller take over the probe.
        ({"probe_timeout": 0.0}, "probe_timeout for breaker 'test' is 0.0; it must be more"),
    ],
)
def test_breaker_rejects_invalid_settings(
    sqlite_database: AcquisitionDatabase, options: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker("test", sqlite_database.engine, **options)
