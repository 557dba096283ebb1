"""Retry-After: honoured in place up to the cap, deferring the work above it."""

import time
from pathlib import Path

import pytest

from acquisition_assets.core.breaker import CircuitBreaker
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.errors import ApiError
from acquisition_assets.core.http import JsonApiClient, RetryPolicy
from acquisition_assets.sandbox.process import SandboxProcess
from acquisition_assets_tests.conftest import metadata_of
from acquisition_assets_tests.resilience.helpers import (
    UP_TO_ENROLLMENTS,
    ManualClock,
    load_leads,
    materialize,
    resources_for,
    send_statuses,
)

CAP_SECONDS = 30.0
LONG_RETRY_AFTER_SECONDS = 120
WORKERS = 4


def test_retry_after_above_cap_defers_sends(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = load_leads(database_url, tmp_path)
    resources = resources_for(
        database_url,
        fresh_sandbox,
        ManualClock(),
        api={"retry_after_cap_seconds": CAP_SECONDS},
        max_workers=WORKERS,
    )
    materialize(resources, UP_TO_ENROLLMENTS)
    fresh_sandbox.set_faults(
        "email", rate_limit_rate=1.0, retry_after_seconds=LONG_RETRY_AFTER_SECONDS
    )

    started = time.monotonic()
    result = materialize(resources, ["nurturing_sends"])
    elapsed = time.monotonic() - started

    sends = metadata_of(result, "nurturing_sends")
    assert sends["sent"] == 0
    assert sends["deferred"] == sends["queued"]
    assert "retry after 120 s, more than the 30 s cap" in sends["deferred_because"]
    assert send_statuses(database) == {"pending": sends["queued"]}
    # One request per batch of the first round, and no worker waited out the Retry-After.
    assert fresh_sandbox.stats("email")["requests"] <= WORKERS
    assert elapsed < CAP_SECONDS


def test_retry_after_above_cap_defers_crm_sync(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    load_leads(database_url, tmp_path)
    resources = resources_for(
        database_url, fresh_sandbox, ManualClock(), api={"retry_after_cap_seconds": CAP_SECONDS}
    )
    materialize(resources, UP_TO_ENROLLMENTS)
    fresh_sandbox.set_faults(
        "crm", rate_limit_rate=1.0, retry_after_seconds=LONG_RETRY_AFTER_SECONDS
    )

    result = materialize(resources, ["referrals", "crm_sync"])

    sync = metadata_of(result, "crm_sync")
    assert sync["upserted"] == 0
    assert sync["deferred"] == sync["contacts_changed"]
    assert "more than the 30 s cap" in sync["deferred_because"]
    assert "more than the 30 s cap" in metadata_of(result, "referrals")["deferred_because"]
    assert fresh_sandbox.contacts()["count"] == 0


def _scripted_client(
    database: AcquisitionDatabase, sandbox: SandboxProcess, waits: list[float]
) -> JsonApiClient:
    breaker = CircuitBreaker("scripted", database.engine, clock=ManualClock())
    return JsonApiClient(
        "email",
        sandbox.email_url,
        headers={"X-Postmark-Server-Token": sandbox.email_token},
        timeout_seconds=2.0,
        pool_size=1,
        breaker=breaker,
        retry_policy=RetryPolicy(max_attempts=3, retry_after_cap_seconds=CAP_SECONDS),
        sleep=waits.append,
    )


@pytest.mark.parametrize(
    ("method", "path", "idempotent", "script", "waits", "requests"),
    [
        # A 503 or 429 within the cap: wait exactly Retry-After, even for a batch send.
        ("POST", "/email/batch", False, [503, 200], [7.0], 2),
        ("GET", "/webhook-events", True, [429, 200], [7.0], 2),
        # A 500 may come after the batch was sent, so a batch send is not repeated.
        ("POST", "/email/batch", False, [500, 200], [], 1),
        # Retry-After counts for 429 and 503 only, so a retried 502 backs off with jitter.
        ("GET", "/webhook-events", True, [502, 200], ["backoff"], 2),
    ],
    ids=["post-503", "get-429", "post-500", "get-502"],
)
def test_retry_policy_follows_status(
    fresh_sandbox: SandboxProcess,
    tmp_path: Path,
    method: str,
    path: str,
    idempotent: bool,
    script: list[int],
    waits: list[object],
    requests: int,
) -> None:
    database = AcquisitionDatabase(url=f"sqlite:///{tmp_path / 'retry.db'}")
    slept: list[float] = []
    client = _scripted_client(database, fresh_sandbox, slept)
    fresh_sandbox.set_faults("email", script=script, retry_after_seconds=7)
    body = [] if method == "POST" else None

    try:
        client.request(method, path, json=body, idempotent=idempotent)
        succeeded = True
    except ApiError:
        succeeded = False

    assert succeeded == (requests == 2)
    assert fresh_sandbox.stats("email")["requests"] == requests
    assert len(slept) == len(waits)
    for wait, expected in zip(slept, waits, strict=True):
        if expected == "backoff":
            assert wait < 7.0
        else:
            assert wait == expected
