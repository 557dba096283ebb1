"""A circuit breaker whose state lives in the acquisition database, shared by all processes."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Engine, select, update

from acquisition_assets.core.clock import wall_seconds
from acquisition_assets.core.errors import ApiError, CircuitOpenError
from acquisition_assets.core.schema import circuit_breaker_transitions, circuit_breakers
from acquisition_assets.core.sql import insert_ignore

logger = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

T = TypeVar("T")


@dataclass(frozen=True)
class BreakerSnapshot:
    """The shared state of one breaker as read from the database."""

    name: str
    state: str
    failure_count: int
    opened_at: float | None
    probe_started_at: float | None
    last_error: str | None


def counts_as_failure(error: BaseException) -> bool:
    """Return whether an error says the service is unhealthy, as opposed to a bad request."""
    return isinstance(error, ApiError) and error.transient


class CircuitBreaker:
    """CLOSED, OPEN and HALF_OPEN, with the state in the `circuit_breakers` table.

    Calls through a closed breaker run in parallel: no lock is held during a call, and the
    database is written only when the failure count or the state changes. After the recovery
    timeout exactly one caller, in any process, wins the compare-and-set from OPEN to
    HALF_OPEN and makes the probe call; the others fail fast until the probe ends. Errors
    for which `counts_as_failure` is false neither count as failures nor reset the count.
    """

    def __init__(
        self,
        name: str,
        engine: Engine,
        failure_threshold: int = 5,
        recovery_timeout: float = 60.0,
        clock: Callable[[], float] = wall_seconds,
        enabled: bool = True,
    ):
        if failure_threshold < 1:
            raise ValueError(
                f"failure_threshold for breaker {name!r} is {failure_threshold}; "
                "it must be 1 or more"
            )
        if recovery_timeout < 0:
            raise ValueError(
                f"recovery_timeout for breaker {name!r} is {recovery_timeout}; "
                "it must be 0 seconds or more"
            )
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.enabled = enabled
        self._engine = engine
        self._clock = clock
        with engine.begin() as connection:
            insert_ignore(
                connection,
                circuit_breakers,
                [{"name": name, "state": CLOSED, "failure_count": 0, "updated_at": clock()}],
                ["name"],
            )

    def snapshot(self) -> BreakerSnapshot:
        """Read the current shared state."""
        with self._engine.connect() as connection:
            row = connection.execute(
                select(circuit_breakers).where(circuit_breakers.c.name == self.name)
            ).one()
        return BreakerSnapshot(
            row.name,
            row.state,
            row.failure_count,
            row.opened_at,
            row.probe_started_at,
            row.last_error,
        )

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` through the breaker, raising CircuitOpenError if it is open."""
        if not self.enabled:
            return function()
        snapshot = self.snapshot()
        is_probe = False
        if snapshot.state != CLOSED:
            is_probe = self._claim_probe(snapshot)
        try:
            result = function()
        except BaseException as error:
            if counts_as_failure(error):
                self._record_failure(error, is_probe)
            elif is_probe:
                # The service answered, so it is up, even though this request was rejected.
                self._close("probe reached the service")
            raise
        if is_probe:
            self._close("probe succeeded")
        elif snapshot.failure_count:
            self._reset_failures()
        return result

    def _claim_probe(self, snapshot: BreakerSnapshot) -> bool:
        now = self._clock()
        opened_at = snapshot.opened_at or 0.0
        retry_in = opened_at + self.recovery_timeout - now
        if snapshot.state == OPEN and retry_in <= 0:
            claimed = self._compare_and_set(OPEN, HALF_OPEN, {"probe_started_at": now})
            if claimed:
                self._log_transition(OPEN, HALF_OPEN, "recovery timeout elapsed, sending one probe")
                return True
        if snapshot.state == HALF_OPEN and self._probe_is_stale(snapshot, now):
            # The process that claimed the probe died before recording its outcome.
            with self._engine.begin() as connection:
                claimed = connection.execute(
                    update(circuit_breakers)
                    .where(
                        circuit_breakers.c.name == self.name,
                        circuit_breakers.c.state == HALF_OPEN,
                        circuit_breakers.c.probe_started_at == snapshot.probe_started_at,
                    )
                    .values(probe_started_at=now, updated_at=now)
                ).rowcount
            if claimed:
                return True
        raise CircuitOpenError(
            f"circuit breaker {self.name!r} is {snapshot.state}; the call was not made "
            f"(last error: {snapshot.last_error})",
            breaker=self.name,
            retry_in=max(retry_in, 0.0),
        )

    def _probe_is_stale(self, snapshot: BreakerSnapshot, now: float) -> bool:
        started = snapshot.probe_started_at
        return started is not None and now - started >= max(self.recovery_timeout, 1.0) * 2

    def _record_failure(self, error: BaseException, is_probe: bool) -> None:
        now = self._clock()
        message = f"{type(error).__name__}: {error}"[:500]
        if is_probe:
            self._compare_and_set(
                HALF_OPEN, OPEN, {"opened_at": now, "last_error": message, "probe_started_at": None}
            )
            self._log_transition(HALF_OPEN, OPEN, f"probe failed: {message}")
            return
        with self._engine.begin() as connection:
            connection.execute(
                update(circuit_breakers)
                .where(circuit_breakers.c.name == self.name)
                .values(
                    failure_count=circuit_breakers.c.failure_count + 1,
                    last_error=message,
                    updated_at=now,
                )
            )
            opened = connection.execute(
                update(circuit_breakers)
                .where(
                    circuit_breakers.c.name == self.name,
                    circuit_breakers.c.state == CLOSED,
                    circuit_breakers.c.failure_count >= self.failure_threshold,
                )
                .values(state=OPEN, opened_at=now, updated_at=now)
            ).rowcount
        if opened:
            self._log_transition(
                CLOSED, OPEN, f"{self.failure_threshold} consecutive failures, last: {message}"
            )

    def _reset_failures(self) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(circuit_breakers)
                .where(circuit_breakers.c.name == self.name, circuit_breakers.c.state == CLOSED)
                .values(failure_count=0, updated_at=self._clock())
            )

    def _close(self, reason: str) -> None:
        if self._compare_and_set(
            HALF_OPEN, CLOSED, {"failure_count": 0, "opened_at": None, "probe_started_at": None}
        ):
            self._log_transition(HALF_OPEN, CLOSED, reason)

    def _compare_and_set(self, expected: str, new: str, values: dict) -> bool:
        with self._engine.begin() as connection:
            changed = connection.execute(
                update(circuit_breakers)
                .where(circuit_breakers.c.name == self.name, circuit_breakers.c.state == expected)
                .values(state=new, updated_at=self._clock(), **values)
            ).rowcount
        return changed == 1

    def _log_transition(self, from_state: str, to_state: str, reason: str) -> None:
        logger.warning("circuit breaker %r: %s -> %s (%s)", self.name, from_state, to_state, reason)
        with self._engine.begin() as connection:
            connection.execute(
                circuit_breaker_transitions.insert().values(
                    name=self.name,
                    from_state=from_state,
                    to_state=to_state,
                    reason=reason,
                    at=self._clock(),
                )
            )
