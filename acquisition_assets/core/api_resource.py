"""Fields and wiring shared by the resources that hold an external API's client settings."""

from collections.abc import Callable

import dagster as dg
from pydantic import Field

from acquisition_assets.core.breaker import CircuitBreaker
from acquisition_assets.core.clock import wall_seconds
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.http import RetryPolicy
from acquisition_assets.settings import PipelineSettings

# Margin added to the longest time one request can take, connect plus read timeout, to get
# the time after which another process takes over a probe that recorded no outcome (seconds).
PROBE_MARGIN_SECONDS = 5.0


class ApiResource(dg.ConfigurableResource):
    """Timeouts, retries and breaker thresholds of one external API."""

    timeout_seconds: float = Field(
        default=10.0, gt=0, description="Connect and read timeout of each request (seconds)."
    )
    max_attempts: int = Field(
        default=4, ge=1, description="Attempts per request, the first one included (attempts)."
    )
    backoff_base_seconds: float = Field(
        default=0.5,
        ge=0,
        description="First retry delay before jitter; doubles per attempt (seconds).",
    )
    retry_after_cap_seconds: float = Field(
        default=30.0,
        ge=0,
        description=(
            "Longest Retry-After honoured in place; a longer one defers the work (seconds)."
        ),
    )
    failure_threshold: int = Field(
        default=5,
        ge=1,
        description="Consecutive failures that open the circuit breaker (failures).",
    )
    recovery_timeout_seconds: float = Field(
        default=60.0, ge=0, description="Time an open breaker waits before one probe (seconds)."
    )

    def clock(self) -> Callable[[], float]:
        """Return the breaker's time source in epoch seconds.

        Dagster rebuilds resources from their fields, so a test moves time by overriding
        this method in a subclass rather than by setting an attribute.
        """
        return wall_seconds

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_base_seconds=self.backoff_base_seconds,
            retry_after_cap_seconds=self.retry_after_cap_seconds,
        )

    def breaker(
        self, name: str, database: AcquisitionDatabase, settings: PipelineSettings
    ) -> CircuitBreaker:
        return CircuitBreaker(
            name,
            database.engine,
            failure_threshold=self.failure_threshold,
            recovery_timeout=self.recovery_timeout_seconds,
            clock=self.clock(),
            enabled=settings.enable_circuit_breaker,
            probe_timeout=2 * self.timeout_seconds + PROBE_MARGIN_SECONDS,
        )
