"""The email breaker over real HTTP: what counts as a failure, and one probe across processes."""

import multiprocessing
import time
from collections import Counter

import pytest

from acquisition_assets.core.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.errors import ApiServerError
from acquisition_assets.nurturing.email_client import EMAIL_BREAKER
from acquisition_assets.sandbox.process import SandboxProcess
from acquisition_assets_tests.resilience.helpers import breaker_state, transitions
from acquisition_assets_tests.resilience.probe_worker import (
    call_together,
    open_email_client,
    outcome_of,
)

CALLS_PER_PROCESS = 5
PROCESSES = 2
JOIN_TIMEOUT_SECONDS = 60.0


@pytest.mark.parametrize(
    ("script", "outcomes", "state"),
    [
        # The 400 neither counts nor resets, so the third 503 reaches the threshold of 3.
        (
            [503, 503, 400, 503, 503],
            ["ApiServerError", "ApiServerError", "ApiClientError", "ApiServerError"],
            OPEN,
        ),
        # A success resets the count, so two more 503s stay below the threshold.
        (
            [503, 503, 200, 503, 503],
            ["ApiServerError", "ApiServerError", "ok", "ApiServerError", "ApiServerError"],
            CLOSED,
        ),
    ],
    ids=["client-error-in-between", "success-in-between"],
)
def test_breaker_counts_scripted_statuses(
    database_url: str,
    fresh_sandbox: SandboxProcess,
    script: list[int],
    outcomes: list[str],
    state: str,
) -> None:
    client = open_email_client(
        database_url,
        fresh_sandbox.email_url,
        fresh_sandbox.email_token,
        threads=1,
        failure_threshold=3,
    )
    fresh_sandbox.set_faults("email", script=script, retry_after_seconds=0)

    seen = [outcome_of(lambda: client.fetch_events(0)) for _ in script]

    reached = len(outcomes)
    assert seen[:reached] == outcomes
    assert seen[reached:] == ["CircuitOpenError"] * (len(script) - reached)
    assert fresh_sandbox.stats("email")["requests"] == reached
    assert breaker_state(AcquisitionDatabase(url=database_url)).state == state


def test_half_open_one_probe_across_processes(
    database_url: str, fresh_sandbox: SandboxProcess
) -> None:
    database = AcquisitionDatabase(url=database_url)
    # Opened long ago by wall time, so the recovery timeout has elapsed for the callers.
    opener = CircuitBreaker(
        EMAIL_BREAKER, database.engine, failure_threshold=1, clock=lambda: time.time() - 1_000
    )
    with pytest.raises(ApiServerError):
        opener.call(lambda: (_ for _ in ()).throw(ApiServerError("unavailable", 503)))
    # The probe fails slowly, so the other calls arrive while it is in flight.
    fresh_sandbox.set_faults("email", outage=True, latency_ms=300)

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(
            target=call_together,
            args=(
                database_url,
                fresh_sandbox.email_url,
                fresh_sandbox.email_token,
                CALLS_PER_PROCESS,
                barrier,
                results,
            ),
        )
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes = Counter()
    for _ in processes:
        outcomes.update(results.get(timeout=JOIN_TIMEOUT_SECONDS))
    for process in processes:
        process.join(JOIN_TIMEOUT_SECONDS)

    assert [process.exitcode for process in processes] == [0] * PROCESSES
    assert fresh_sandbox.stats("email")["requests"] == 1
    assert outcomes == {"ApiServerError": 1, "CircuitOpenError": PROCESSES * CALLS_PER_PROCESS - 1}
    assert transitions(database) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]
