"""An email provider that is down: the breaker opens early, work is deferred, a probe recovers."""

from pathlib import Path

import dagster as dg

from acquisition_assets.core.breaker import CLOSED, HALF_OPEN, OPEN
from acquisition_assets.definitions import ALL_ASSETS
from acquisition_assets.sandbox.process import SandboxProcess
from acquisition_assets_tests.conftest import materialize_all, metadata_of
from acquisition_assets_tests.resilience.helpers import (
    UP_TO_ENROLLMENTS,
    ManualClock,
    breaker_state,
    keys_sent_more_than_once,
    ledger_keys,
    load_leads,
    materialize,
    resources_for,
    send_statuses,
    transitions,
)

THRESHOLD = 3
WORKERS = 4
RECOVERY_SECONDS = 60.0


def test_outage_defers_then_probe_recovers(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    clock = ManualClock()
    database = load_leads(database_url, tmp_path)
    resources = resources_for(
        database_url,
        fresh_sandbox,
        clock,
        api={"failure_threshold": THRESHOLD, "recovery_timeout_seconds": RECOVERY_SECONDS},
        max_workers=WORKERS,
    )
    materialize(resources, UP_TO_ENROLLMENTS)
    # Retry-After 0 keeps the in-place retries of 503 answers from sleeping.
    fresh_sandbox.set_faults("email", outage=True, retry_after_seconds=0)

    first = materialize_all(resources)
    sends = metadata_of(first, "nurturing_sends")
    queued = sends["queued"]
    assert queued >= 20
    assert sends["sent"] == 0
    assert sends["deferred"] == queued
    assert "circuit breaker 'email' is open" in sends["deferred_because"]
    assert send_statuses(database) == {"pending": queued}
    # Without the breaker, 4 attempts for each of the batches would reach the API.
    assert fresh_sandbox.stats("email")["requests"] <= THRESHOLD + WORKERS - 1
    assert breaker_state(database).state == OPEN
    assert "deferred_because" in metadata_of(first, "engagement")
    assert metadata_of(first, "performance_metrics")["breaker_email_times_opened"] == 1

    # Before the recovery timeout no call is made at all.
    requests_before = fresh_sandbox.stats("email")["requests"]
    clock.advance(RECOVERY_SECONDS - 1)
    materialize(resources, ["nurturing_sends"])
    assert fresh_sandbox.stats("email")["requests"] == requests_before

    # Once it elapses, exactly one probe goes out; it fails, so the breaker opens again.
    clock.advance(2)
    probe_run = materialize(resources, ["nurturing_sends"])
    assert fresh_sandbox.stats("email")["requests"] == requests_before + 1
    assert breaker_state(database).state == OPEN
    assert metadata_of(probe_run, "nurturing_sends")["deferred"] == queued

    # With the provider back, the next probe succeeds, the breaker closes, the work goes out.
    fresh_sandbox.set_faults("email", outage=False)
    clock.advance(RECOVERY_SECONDS + 1)
    recovered = materialize(resources, ["nurturing_sends"])
    assert metadata_of(recovered, "nurturing_sends")["sent"] == queued
    assert breaker_state(database).state == CLOSED
    assert send_statuses(database) == {"sent": queued}
    assert keys_sent_more_than_once(fresh_sandbox) == {}
    assert set(fresh_sandbox.messages()["by_idempotency_key"]) == ledger_keys(database)
    assert transitions(database) == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


def test_outage_fails_step_when_settings_ask(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = load_leads(database_url, tmp_path)
    resources = resources_for(
        database_url,
        fresh_sandbox,
        ManualClock(),
        api={"failure_threshold": THRESHOLD},
        fail_on_open_circuit=True,
    )
    materialize(resources, UP_TO_ENROLLMENTS)
    fresh_sandbox.set_faults("email", outage=True, retry_after_seconds=0)

    result = dg.materialize(
        ALL_ASSETS, selection=["nurturing_sends"], resources=resources, raise_on_error=False
    )

    assert not result.success
    failures = [event for event in result.all_events if event.is_step_failure]
    assert [event.step_key for event in failures] == ["nurturing_sends"]
    assert "sends deferred" in failures[0].step_failure_data.error.message
    assert set(send_statuses(database)) == {"pending"}


def test_outage_during_reconciliation_defers(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = load_leads(database_url, tmp_path)
    resources = resources_for(
        database_url,
        fresh_sandbox,
        ManualClock(),
        api={"failure_threshold": THRESHOLD},
        email={"timeout_seconds": 0.3, "reconcile_after_seconds": 0},
    )
    materialize(resources, UP_TO_ENROLLMENTS)
    # Every answer is lost: the provider stores the batch, the client times out.
    fresh_sandbox.set_faults("email", lost_response_rate=1.0, timeout_seconds=0.6)
    materialize(resources, ["nurturing_sends"])
    in_flight = send_statuses(database)["sending"]
    assert in_flight > 0

    fresh_sandbox.set_faults("email", lost_response_rate=0.0, outage=True, retry_after_seconds=0)
    result = materialize(resources, ["nurturing_sends"])

    sends = metadata_of(result, "nurturing_sends")
    assert "circuit breaker 'email' is open" in sends["deferred_because"]
    assert sends["in_flight_after"] == in_flight
    assert sends["reconciled_sent"] == 0
    assert send_statuses(database)["sending"] == in_flight
