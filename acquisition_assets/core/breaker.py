"""A circuit breaker whose state lives in the acquisition database, shared by all processes."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, select, update

from acquisition_assets.core.clock import wall_seconds
from acquisition_assets.core.errors import ApiError, ApiStatusError, CircuitOpenError
from acquisition_assets.core.schema import circuit_breaker_transitions, circuit_breakers
from acquisition_assets.core.sql import insert_ignore

logger = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
# Opening degrades the service, so it is a warning. Probing and closing are progress.
TRANSITION_LOG_LEVELS = {OPEN: logging.WARNING, HALF_OPEN: logging.INFO, CLOSED: logging.INFO}
MAX_ERROR_CHARS = 500

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
    """Return whether an error shows the service is unhealthy, as opposed to a bad request."""
    return isinstance(error, ApiError) and error.transient


class CircuitBreaker:
    """CLOSED, OPEN and HALF_OPEN, with the state in the `circuit_breakers` table.

    Calls through a closed breaker run in parallel: no lock is held during a call, and the
    database is written only when the failure count or the state changes. After the recovery
    timeout exactly one caller, in any process, wins the compare-and-set from OPEN to
    HALF_OPEN and makes the probe call; the others fail fast until the probe ends. A probe
    that records no outcome within `probe_timeout` seconds (its process died) may be taken
    over by the next caller. Errors for which `counts_as_failure` is false neither count as
    failures nor reset the count. Every state change is stored in
    `circuit_breaker_transitions` in the same transaction, and logged.
    """

    def __init__(
        self,
        name: str,
        engine: Engine,
        failure_threshold: int = 5,
        recovery_timeout: float = 60.0,
        clock: Callable[[], float] = wall_seconds,
        enabled: bool = True,
        probe_timeout: float = 60.0,
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
        if probe_timeout <= 0:
            raise ValueError(
                f"probe_timeout for breaker {name!r} is {probe_timeout}; "
                "it must be more than 0 seconds, and longer than one request may take"
            )
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.probe_timeout = probe_timeout
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

    def is_closed(self) -> bool:
        """Return whether calls may go out in parallel: the breaker is closed or disabled."""
        return not self.enabled or self.snapshot().state == CLOSED

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` through the breaker, raising CircuitOpenError if it is open."""
        if not self.enabled:
            return function()
        snapshot = self.snapshot()
        probe_started_at = None
        if snapshot.state != CLOSED:
            probe_started_at = self._claim_probe(snapshot)
        is_probe = probe_started_at is not None
        try:
            result = function()
        except BaseException as error:
            self._settle_failure(error, probe_started_at)
            raise
        if is_probe:
            self._close("probe succeeded")
        elif snapshot.failure_count:
            self._reset_failures()
        return result

    def _settle_failure(self, error: BaseException, probe_started_at: float | None) -> None:
        if counts_as_failure(error):
            self._record_failure(error, probe_started_at is not None)
        elif probe_started_at is None:
            return
        elif isinstance(error, ApiStatusError):
            # The service responded, so it is up, even though it rejected this request.
            self._close("probe reached the service")
        else:
            # An interrupt or a bug before any response shows nothing about the service, so
            # the probe is given back unused and the next caller may probe at once.
            self._transition(
                HALF_OPEN,
                OPEN,
                f"probe abandoned: {_describe(error)}",
                {"probe_started_at": None},
                circuit_breakers.c.probe_started_at == probe_started_at,
            )

    def _claim_probe(self, snapshot: BreakerSnapshot) -> float:
        """Claim the one probe call and return its start time, or raise CircuitOpenError."""
        now = self._clock()
        opened_at = snapshot.opened_at or 0.0
        retry_in = opened_at + self.recovery_timeout - now
        if snapshot.state == OPEN and retry_in <= 0:
            # Matching opened_at too keeps a caller with an old snapshot from probing again
            # after another probe already failed and reopened the breaker.
            if self._transition(
                OPEN,
                HALF_OPEN,
                "recovery timeout elapsed, sending one probe",
                {"probe_started_at": now},
                circuit_breakers.c.opened_at == snapshot.opened_at,
            ):
                return now
        if snapshot.state == HALF_OPEN and self._probe_is_stale(snapshot, now):
            if self._take_over_probe(snapshot, now):
                return now
        if snapshot.state == HALF_OPEN:
            situation = "half_open and its probe call is in flight"
        else:
            situation = f"open, next probe in {max(retry_in, 0.0):.1f} s"
        raise CircuitOpenError(
            f"circuit breaker {self.name!r} is {situation}; the call was not made "
            f"(last error: {snapshot.last_error})",
            breaker=self.name,
            retry_in=max(retry_in, 0.0),
        )

    def _probe_is_stale(self, snapshot: BreakerSnapshot, now: float) -> bool:
        started = snapshot.probe_started_at
        return started is not None and now - started >= self.probe_timeout

    def _take_over_probe(self, snapshot: BreakerSnapshot, now: float) -> bool:
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
            logger.warning(
                "circuit breaker %r: the probe started at %.3f recorded no outcome within "
                "%.1f s; sending a new probe",
                self.name,
                snapshot.probe_started_at,
                self.probe_timeout,
            )
        return claimed == 1

    def _record_failure(self, error: BaseException, is_probe: bool) -> None:
        message = _describe(error)
        if is_probe:
            self._transition(
                HALF_OPEN,
                OPEN,
                f"probe failed: {message}",
                {"opened_at": self._clock(), "last_error": message, "probe_started_at": None},
            )
            return
        now = self._clock()
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
            reason = f"{self.failure_threshold} consecutive failures, last: {message}"
            if opened:
                self._store_transition(connection, CLOSED, OPEN, reason, now)
        if opened:
            self._log_transition(CLOSED, OPEN, reason)

    def _reset_failures(self) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(circuit_breakers)
                .where(circuit_breakers.c.name == self.name, circuit_breakers.c.state == CLOSED)
                .values(failure_count=0, updated_at=self._clock())
            )

    def _close(self, reason: str) -> None:
        self._transition(
            HALF_OPEN,
            CLOSED,
            reason,
            {"failure_count": 0, "opened_at": None, "probe_started_at": None},
        )

    def _transition(
        self, expected: str, new: str, reason: str, values: dict[str, Any], *conditions: Any
    ) -> bool:
        """Move from `expected` to `new` if the state is still `expected`, storing the change."""
        now = self._clock()
        with self._engine.begin() as connection:
            changed = connection.execute(
                update(circuit_breakers)
                .where(
                    circuit_breakers.c.name == self.name,
                    circuit_breakers.c.state == expected,
                    *conditions,
                )
                .values(state=new, updated_at=now, **values)
            ).rowcount
            if changed:
                self._store_transition(connection, expected, new, reason, now)
        if changed:
            self._log_transition(expected, new, reason)
        return changed == 1

    def _store_transition(
        self, connection: Connection, from_state: str, to_state: str, reason: str, at: float
    ) -> None:
        connection.execute(
            circuit_breaker_transitions.insert().values(
                name=self.name, from_state=from_state, to_state=to_state, reason=reason, at=at
            )
        )

    def _log_transition(self, from_state: str, to_state: str, reason: str) -> None:
        logger.log(
            TRANSITION_LOG_LEVELS[to_state],
            "circuit breaker %r: %s -> %s (%s)",
            self.name,
            from_state,
            to_state,
            reason,
        )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
