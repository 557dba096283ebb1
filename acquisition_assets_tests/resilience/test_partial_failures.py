"""Batches that partly fail: per-message ErrorCodes from the email API and 207 from the CRM."""

from collections import Counter
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import requests
from sqlalchemy import select, update

from acquisition_assets.core.breaker import CircuitBreaker
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import crm_sync_state, email_sends, leads, nurture_enrollments
from acquisition_assets.nurturing.email_client import SendResult
from acquisition_assets.nurturing.ledger import MAX_SEND_ATTEMPTS, enqueue, send_pending
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

REQUEST_TIMEOUT_SECONDS = 5.0
# Postmark ErrorCode 100 (maintenance) is not permanent, so the message is tried again.
TRANSIENT_CODE = 100
TEST_KIND = "test"


def _enrolled_leads(database: AcquisitionDatabase, count: int) -> list[Any]:
    with database.connect() as connection:
        return connection.execute(
            select(leads.c.id, leads.c.email)
            .join(nurture_enrollments, nurture_enrollments.c.lead_id == leads.c.id)
            .where(leads.c.email_opt_in.is_(True), leads.c.email_status == "active")
            .order_by(leads.c.id)
            .limit(count)
        ).all()


def _set_email(database: AcquisitionDatabase, lead_id: int, email: str) -> None:
    with database.begin() as connection:
        connection.execute(update(leads).where(leads.c.id == lead_id).values(email=email))


def _mark_inactive_at_provider(sandbox: SandboxProcess, address: str) -> None:
    """Send one message that hard-bounces, so the sandbox suppresses the address."""
    sandbox.set_faults("email", bounce_rate=1.0)
    message = {
        "From": "setup@example.com",
        "To": address,
        "Subject": "Set-up",
        "TextBody": "A message that bounces.",
        "Metadata": {},
    }
    response = requests.post(
        f"{sandbox.email_url}/email/batch",
        json=[message],
        headers={"X-Postmark-Server-Token": sandbox.email_token},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    response.raise_for_status()
    sandbox.set_faults("email", bounce_rate=0.0)


def _send_row(database: AcquisitionDatabase, lead_id: int) -> Any:
    with database.connect() as connection:
        return connection.execute(select(email_sends).where(email_sends.c.lead_id == lead_id)).one()


def test_permanent_error_codes_set_aside(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = load_leads(database_url, tmp_path)
    resources = resources_for(database_url, fresh_sandbox, ManualClock())
    materialize(resources, UP_TO_ENROLLMENTS)
    invalid, inactive = _enrolled_leads(database, 2)
    # The sandbox rejects recipients under .invalid with ErrorCode 300.
    _set_email(database, invalid.id, "broken@leads.invalid")
    _mark_inactive_at_provider(fresh_sandbox, inactive.email)

    first = metadata_of(materialize(resources, ["nurturing_sends"]), "nurturing_sends")

    assert first["failed_permanently"] == 2
    assert first["sent"] == first["queued"] - 2
    invalid_row = _send_row(database, invalid.id)
    assert invalid_row.status == "failed"
    assert invalid_row.error_code == 300
    assert invalid_row.last_error.startswith("ErrorCode 300: Invalid 'To' address")
    inactive_row = _send_row(database, inactive.id)
    assert inactive_row.status == "failed"
    assert inactive_row.error_code == 406
    with database.connect() as connection:
        status = connection.execute(
            select(leads.c.email_status).where(leads.c.id == inactive.id)
        ).scalar_one()
    assert status == "inactive"
    rejected_before = fresh_sandbox.stats("email")["messages_rejected"]
    assert rejected_before == 2

    second = metadata_of(materialize(resources, ["nurturing_sends"]), "nurturing_sends")

    assert second["claimed"] == 0
    assert fresh_sandbox.stats("email")["messages_rejected"] == rejected_before
    assert send_statuses(database) == {"sent": first["queued"] - 2, "failed": 2}


class ScriptedPostmark:
    """A Postmark client that returns scripted ErrorCodes for each key, then 0."""

    def __init__(self, database: AcquisitionDatabase, codes: dict[str, list[int]]):
        self.http = SimpleNamespace(breaker=CircuitBreaker("scripted", database.engine))
        self.codes = codes
        self.accepted: Counter = Counter()

    def send_batch(self, messages: list[dict[str, Any]], before_retry=None) -> list[SendResult]:
        results = []
        for message in messages:
            key = message["Metadata"]["idempotency_key"]
            script = self.codes.get(key, [])
            code = script.pop(0) if script else 0
            if code == 0:
                self.accepted[key] += 1
            results.append(
                SendResult(code, "scripted answer", f"message-{key}" if not code else None)
            )
        return results

    def search_outbound(self, metadata: dict[str, str], count: int = 500) -> list[dict[str, Any]]:
        return []


def _enqueue_test_sends(database: AcquisitionDatabase, lead_ids: list[int]) -> list[str]:
    rows = [
        {
            "idempotency_key": f"{TEST_KIND}:{lead_id}",
            "lead_id": lead_id,
            "kind": TEST_KIND,
            "to_address": f"lead-{lead_id}@example.com",
            "subject": "Hello",
            "text_body": "Hello from the resilience tests.",
            "tag": "test",
        }
        for lead_id in lead_ids
    ]
    with database.begin() as connection:
        enqueue(connection, rows)
    return [row["idempotency_key"] for row in rows]


def _pass(database: AcquisitionDatabase, client: ScriptedPostmark) -> None:
    send_pending(
        database,
        client,
        TEST_KIND,
        limit=10,
        batch_size=10,
        workers=1,
        from_address="test@example.com",
        message_stream="outbound",
        reconcile_after=timedelta(hours=1),
    )


def _statuses_by_key(database: AcquisitionDatabase) -> dict[str, tuple[str, int | None]]:
    with database.connect() as connection:
        rows = connection.execute(
            select(email_sends.c.idempotency_key, email_sends.c.status, email_sends.c.error_code)
        ).all()
    return {row.idempotency_key: (row.status, row.error_code) for row in rows}


def test_transient_error_code_retried_next_run(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = load_leads(database_url, tmp_path)
    materialize(resources_for(database_url, fresh_sandbox, ManualClock()), ["new_leads"])
    with database.connect() as connection:
        lead_ids = connection.execute(select(leads.c.id).order_by(leads.c.id).limit(3)).scalars()
        recovers, keeps_failing, fine = _enqueue_test_sends(database, list(lead_ids))
    client = ScriptedPostmark(
        database,
        {recovers: [TRANSIENT_CODE, TRANSIENT_CODE], keeps_failing: [TRANSIENT_CODE] * 10},
    )

    _pass(database, client)

    assert _statuses_by_key(database) == {
        recovers: ("pending", TRANSIENT_CODE),
        keeps_failing: ("pending", TRANSIENT_CODE),
        fine: ("sent", None),
    }
    for _ in range(MAX_SEND_ATTEMPTS):
        _pass(database, client)

    assert _statuses_by_key(database) == {
        recovers: ("sent", None),
        keeps_failing: ("failed", TRANSIENT_CODE),
        fine: ("sent", None),
    }
    assert client.accepted == {recovers: 1, fine: 1}
    # After MAX_SEND_ATTEMPTS results the row is set aside, so the rest of its script stays.
    assert len(client.codes[keeps_failing]) == 10 - MAX_SEND_ATTEMPTS


def test_crm_partial_batch_records_failures(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = load_leads(database_url, tmp_path)
    resources = resources_for(database_url, fresh_sandbox, ManualClock())
    materialize(resources, UP_TO_ENROLLMENTS)
    (rejected,) = _enrolled_leads(database, 1)
    _set_email(database, rejected.id, "broken@leads.invalid")

    first = metadata_of(materialize(resources, ["crm_sync"]), "crm_sync")

    assert first["failed"] == 1
    assert first["upserted"] == first["contacts_changed"] - 1
    with database.connect() as connection:
        state = connection.execute(
            select(crm_sync_state).where(crm_sync_state.c.lead_id == rejected.id)
        ).one()
    assert state.status == "rejected"
    assert "is not a valid email address" in state.last_error
    upserts_before = fresh_sandbox.contacts()["upsert_inputs"]

    second = metadata_of(materialize(resources, ["crm_sync"]), "crm_sync")

    assert second["contacts_changed"] == 0
    assert fresh_sandbox.contacts()["upsert_inputs"] == upserts_before


def test_crm_failed_batch_retried_next_run(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    load_leads(database_url, tmp_path)
    resources = resources_for(database_url, fresh_sandbox, ManualClock(), max_workers=1)
    materialize(resources, UP_TO_ENROLLMENTS)
    # Every attempt of the first batch fails. The default of 4 attempts stays below the
    # breaker threshold of 5, so the later batches still go out.
    fresh_sandbox.set_faults("crm", script=[503] * 4, retry_after_seconds=0)

    first = metadata_of(materialize(resources, ["crm_sync"]), "crm_sync")

    assert first["deferred"] == 5
    assert first["upserted"] == first["contacts_changed"] - 5

    second = metadata_of(materialize(resources, ["crm_sync"]), "crm_sync")

    assert second["contacts_changed"] == 5
    assert second["upserted"] == 5
    assert fresh_sandbox.contacts()["count"] == first["contacts_changed"]
