"""A batch waiting to be sent again while another run reconciles it is not sent twice."""

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from acquisition_assets.core.breaker import CircuitBreaker
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.http import JsonApiClient, RetryPolicy
from acquisition_assets.core.schema import leads
from acquisition_assets.nurturing.email_client import PostmarkClient
from acquisition_assets.nurturing.ledger import (
    SendReport,
    enqueue,
    reconcile_in_flight,
    send_pending,
)
from acquisition_assets.sandbox.process import SandboxProcess
from acquisition_assets_tests.resilience.helpers import (
    ManualClock,
    keys_sent_more_than_once,
    load_leads,
    materialize,
    resources_for,
    send_statuses,
)

KIND = "claim_test"
SENDS = 5


def _client(
    database: AcquisitionDatabase, sandbox: SandboxProcess, sleep=lambda seconds: None
) -> PostmarkClient:
    http = JsonApiClient(
        "email",
        sandbox.email_url,
        headers={"X-Postmark-Server-Token": sandbox.email_token},
        timeout_seconds=2.0,
        pool_size=2,
        breaker=CircuitBreaker("email", database.engine, clock=ManualClock()),
        retry_policy=RetryPolicy(max_attempts=3),
        sleep=sleep,
    )
    return PostmarkClient(http)


def _enqueue(database: AcquisitionDatabase) -> None:
    with database.connect() as connection:
        lead_ids = connection.execute(select(leads.c.id).order_by(leads.c.id).limit(SENDS))
        rows = [
            {
                "idempotency_key": f"{KIND}:{lead_id}",
                "lead_id": lead_id,
                "kind": KIND,
                "to_address": f"lead-{lead_id}@example.com",
                "subject": "Hello",
                "text_body": "Hello from the resilience tests.",
                "tag": "test",
            }
            for lead_id in lead_ids.scalars()
        ]
    with database.begin() as connection:
        enqueue(connection, rows)


def _send(database: AcquisitionDatabase, client: PostmarkClient) -> SendReport:
    return send_pending(
        database,
        client,
        KIND,
        limit=SENDS,
        batch_size=SENDS,
        workers=1,
        from_address="test@example.com",
        message_stream="outbound",
        reconcile_after=timedelta(hours=1),
    )


def test_claim_renewal_stops_retry_after_reconciliation(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = load_leads(database_url, tmp_path)
    materialize(resources_for(database_url, fresh_sandbox, ManualClock()), ["new_leads"])
    _enqueue(database)
    other_run = _client(database, fresh_sandbox)

    def reconcile_elsewhere(seconds: float) -> None:
        # While this run waits out the 503, another run treats the batch as abandoned.
        reconcile_in_flight(database, other_run, KIND, timedelta(0), SendReport())

    fresh_sandbox.set_faults("email", script=[503], retry_after_seconds=0)
    report = _send(database, _client(database, fresh_sandbox, sleep=reconcile_elsewhere))

    assert any("was not sent again" in error for error in report.errors)
    assert fresh_sandbox.stats("email")["by_route"]["POST /email/batch"] == 1
    assert fresh_sandbox.stats("email")["messages_accepted"] == 0
    assert send_statuses(database, KIND) == {"pending": SENDS}

    _send(database, other_run)

    assert send_statuses(database, KIND) == {"sent": SENDS}
    assert fresh_sandbox.stats("email")["messages_accepted"] == SENDS
    assert keys_sent_more_than_once(fresh_sandbox) == {}
