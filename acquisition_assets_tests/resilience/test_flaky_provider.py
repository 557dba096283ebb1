"""An email provider that fails often: everything is sent within a few runs, nothing twice."""

from pathlib import Path

from acquisition_assets.sandbox.process import SandboxProcess
from acquisition_assets_tests.conftest import metadata_of
from acquisition_assets_tests.resilience.helpers import (
    UP_TO_ENROLLMENTS,
    ManualClock,
    keys_sent_more_than_once,
    ledger_keys,
    load_leads,
    materialize,
    resources_for,
    send_statuses,
)

MAX_RUNS = 5
RECOVERY_SECONDS = 60.0
# The sandbox holds the response to a timed-out or lost request for SANDBOX_HOLD, longer than
# the client waits, so the client never receives it.
CLIENT_TIMEOUT_SECONDS = 0.2
SANDBOX_HOLD_SECONDS = 0.4


def test_flaky_provider_sends_everything_once(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    clock = ManualClock()
    database = load_leads(database_url, tmp_path)
    resources = resources_for(
        database_url,
        fresh_sandbox,
        clock,
        api={"recovery_timeout_seconds": RECOVERY_SECONDS},
        # Runs follow each other here, so no batch of an earlier run can still be in flight.
        email={"timeout_seconds": CLIENT_TIMEOUT_SECONDS, "reconcile_after_seconds": 0},
    )
    materialize(resources, UP_TO_ENROLLMENTS)
    fresh_sandbox.set_faults(
        "email",
        error_rate=0.3,
        timeout_rate=0.1,
        lost_response_rate=0.1,
        timeout_seconds=SANDBOX_HOLD_SECONDS,
        retry_after_seconds=0,
    )

    runs = []
    for _ in range(MAX_RUNS):
        runs.append(metadata_of(materialize(resources, ["nurturing_sends"]), "nurturing_sends"))
        if set(send_statuses(database)) == {"sent"}:
            break
        # An open breaker probes again in the next run.
        clock.advance(RECOVERY_SECONDS + 1)

    queued = runs[0]["queued"]
    faults = fresh_sandbox.stats("email")["faults"]
    assert faults["error_rate"] > 0
    assert faults["timeout"] > 0
    assert faults["lost_response"] > 0
    assert sum(run["unknown_outcome"] for run in runs) > 0
    assert sum(run["reconciled_sent"] for run in runs) > 0
    assert send_statuses(database) == {"sent": queued}
    assert keys_sent_more_than_once(fresh_sandbox) == {}
    assert set(fresh_sandbox.messages()["by_idempotency_key"]) == ledger_keys(database)
