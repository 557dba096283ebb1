"""The email send ledger: every send is a row with a unique idempotency key, written first.

A row moves pending -> sending -> sent | failed. The key (kind, lead, step) is unique, so
enqueuing the same email twice does nothing. A batch is claimed by writing a fresh batch id
into its rows before the API call, and every message carries that id and its own key in
Postmark metadata. Rows a crash or a lost answer leaves in 'sending' are reconciled with
the provider's outbound message search (by batch id) before anything is sent again: found
messages become 'sent', missing ones go back to 'pending'.
"""

import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update

from acquisition_assets.core.clock import utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.errors import (
    ApiClientError,
    ApiError,
    CircuitOpenError,
    RetryLaterError,
)
from acquisition_assets.core.privacy import mask_emails_in
from acquisition_assets.core.schema import email_sends, leads
from acquisition_assets.core.sql import chunked, insert_ignore
from acquisition_assets.nurturing.email_client import (
    MAX_BATCH_MESSAGES,
    PERMANENT_ERROR_CODES,
    PostmarkClient,
)

logger = logging.getLogger(__name__)

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
# Attempts after which a send that keeps failing transiently is set aside as failed.
MAX_SEND_ATTEMPTS = 5
# Postmark ErrorCode 406: the recipient hard-bounced, complained or unsubscribed earlier.
INACTIVE_RECIPIENT = 406


@dataclass
class SendReport:
    """What one pass over the ledger did."""

    claimed: int = 0
    sent: int = 0
    failed_permanently: int = 0
    retry_later: int = 0
    unknown_outcome: int = 0
    deferred: int = 0
    reconciled_sent: int = 0
    reconciled_pending: int = 0
    pending_after: int = 0
    deferred_reasons: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Add to counters; batches run in threads, so updates take a lock."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_metadata(self) -> dict[str, int]:
        return {
            "claimed": self.claimed,
            "sent": self.sent,
            "failed_permanently": self.failed_permanently,
            "retry_later": self.retry_later,
            "unknown_outcome": self.unknown_outcome,
            "deferred": self.deferred,
            "reconciled_sent": self.reconciled_sent,
            "reconciled_pending": self.reconciled_pending,
            "pending_after": self.pending_after,
        }


def enqueue(connection: Any, rows: list[dict[str, Any]]) -> int:
    """Add sends as pending rows; a key that exists already is skipped. Returns rows added."""
    now = utcnow()
    prepared = [
        {**row, "status": PENDING, "attempts": 0, "created_at": now, "updated_at": now}
        for row in rows
    ]
    added = 0
    for chunk in chunked(prepared, 1_000):
        added += insert_ignore(connection, email_sends, chunk, ["idempotency_key"])
    return added


def reconcile_in_flight(
    database: AcquisitionDatabase,
    client: PostmarkClient,
    kind: str,
    older_than: timedelta,
    report: SendReport,
) -> None:
    """Settle rows left in 'sending' by asking the provider which of their messages exist."""
    cutoff = utcnow() - older_than
    with database.connect() as connection:
        batches = (
            connection.execute(
                select(email_sends.c.claimed_by)
                .where(
                    email_sends.c.kind == kind,
                    email_sends.c.status == SENDING,
                    email_sends.c.claimed_at <= cutoff,
                )
                .distinct()
            )
            .scalars()
            .all()
        )
    for batch_id in batches:
        found = client.search_outbound({"send_batch": batch_id})
        message_ids = {
            (message.get("Metadata") or {}).get("idempotency_key"): message.get("MessageID")
            for message in found
        }
        with database.begin(writes=["email_sends"]) as connection:
            rows = connection.execute(
                select(email_sends.c.id, email_sends.c.idempotency_key).where(
                    email_sends.c.claimed_by == batch_id, email_sends.c.status == SENDING
                )
            ).all()
            now = utcnow()
            settled = [
                {
                    "row_id": row.id,
                    "new_status": SENT,
                    "message_id": message_ids[row.idempotency_key],
                    "error": None,
                    "sent": now,
                    "now": now,
                }
                for row in rows
                if row.idempotency_key in message_ids
            ]
            unsent = [
                {
                    "row_id": row.id,
                    "new_status": PENDING,
                    "message_id": None,
                    "error": "not found at the provider after an interrupted send",
                    "sent": None,
                    "now": now,
                }
                for row in rows
                if row.idempotency_key not in message_ids
            ]
            _apply(connection, settled + unsent)
        report.add(reconciled_sent=len(settled))
        report.add(reconciled_pending=len(unsent))
        logger.info(
            "reconciled batch %s: %d found at the provider, %d returned to pending",
            batch_id,
            len(settled),
            len(unsent),
        )


def claim_batch(database: AcquisitionDatabase, kind: str, size: int) -> tuple[str, list[Any]]:
    """Mark up to `size` pending rows as 'sending' under a new batch id and return them.

    The status guard in the UPDATE makes the claim atomic: a row another worker claimed
    first is not taken again.
    """
    batch_id = uuid.uuid4().hex
    now = utcnow()
    with database.begin(writes=["email_sends"]) as connection:
        candidates = (
            select(email_sends.c.id)
            .where(email_sends.c.kind == kind, email_sends.c.status == PENDING)
            .order_by(email_sends.c.id)
            .limit(size)
        )
        if connection.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        ids = connection.execute(candidates).scalars().all()
        if not ids:
            return batch_id, []
        connection.execute(
            update(email_sends)
            .where(email_sends.c.id.in_(ids), email_sends.c.status == PENDING)
            .values(
                status=SENDING,
                claimed_by=batch_id,
                claimed_at=now,
                attempts=email_sends.c.attempts + 1,
                updated_at=now,
            )
        )
        rows = connection.execute(
            select(email_sends)
            .where(email_sends.c.claimed_by == batch_id)
            .order_by(email_sends.c.id)
        ).all()
    return batch_id, rows


def _message(row: Any, batch_id: str, from_address: str, stream: str) -> dict[str, Any]:
    metadata = {
        **json.loads(row.metadata_json),
        "idempotency_key": row.idempotency_key,
        "send_batch": batch_id,
    }
    return {
        "From": from_address,
        "To": row.to_address,
        "Subject": row.subject,
        "TextBody": row.text_body,
        "Tag": row.tag,
        "Metadata": metadata,
        "MessageStream": stream,
    }


def _apply(connection: Any, changes: list[dict[str, Any]]) -> None:
    if not changes:
        return
    statement = (
        update(email_sends)
        .where(email_sends.c.id == bindparam("row_id"))
        .values(
            status=bindparam("new_status"),
            provider_message_id=bindparam("message_id"),
            last_error=bindparam("error"),
            sent_at=bindparam("sent"),
            updated_at=bindparam("now"),
        )
    )
    connection.execute(statement, changes)


def _suppress_inactive(connection: Any, lead_ids: list[int]) -> None:
    if lead_ids:
        connection.execute(
            update(leads)
            .where(leads.c.id.in_(lead_ids), leads.c.email_status == "active")
            .values(
                email_status="inactive",
                suppression_reason="the provider marked the recipient inactive",
                updated_at=utcnow(),
            )
        )


def _record_answers(
    database: AcquisitionDatabase, rows: list[Any], results: list[Any], report: SendReport
) -> None:
    now = utcnow()
    changes: list[dict[str, Any]] = []
    inactive: list[int] = []
    for row, result in zip(rows, results, strict=True):
        change = {
            "row_id": row.id,
            "message_id": result.message_id,
            "sent": None,
            "now": now,
            "error": None,
        }
        if result.error_code == 0:
            change.update(new_status=SENT, sent=now)
            report.add(sent=1)
        elif result.error_code in PERMANENT_ERROR_CODES or row.attempts >= MAX_SEND_ATTEMPTS:
            change.update(
                new_status=FAILED,
                error=f"ErrorCode {result.error_code}: {mask_emails_in(result.message)}",
            )
            report.add(failed_permanently=1)
            if result.error_code == INACTIVE_RECIPIENT:
                inactive.append(row.lead_id)
        else:
            change.update(
                new_status=PENDING,
                error=f"ErrorCode {result.error_code}: {mask_emails_in(result.message)}",
            )
            report.add(retry_later=1)
        changes.append(change)
    with database.begin(writes=["email_sends", "leads"]) as connection:
        _apply(connection, changes)
        _suppress_inactive(connection, inactive)


def _release(
    database: AcquisitionDatabase, rows: list[Any], error: str, *, keep_attempt: bool = False
) -> None:
    """Return claimed rows to pending: the provider never processed them."""
    now = utcnow()
    with database.begin(writes=["email_sends"]) as connection:
        connection.execute(
            update(email_sends)
            .where(email_sends.c.id.in_([row.id for row in rows]), email_sends.c.status == SENDING)
            .values(
                status=PENDING,
                claimed_by=None,
                last_error=error[:1000],
                updated_at=now,
                attempts=email_sends.c.attempts if keep_attempt else email_sends.c.attempts - 1,
            )
        )


def send_pending(
    database: AcquisitionDatabase,
    client: PostmarkClient,
    kind: str,
    *,
    limit: int,
    batch_size: int,
    workers: int,
    from_address: str,
    message_stream: str,
    reconcile_after: timedelta,
    on_batch: Callable[[str, int], None] | None = None,
) -> SendReport:
    """Send up to `limit` pending rows of one kind in batches, `workers` batches at a time.

    An open breaker or a Retry-After beyond the cap stops the pass: the rows not yet sent
    stay pending and count as deferred. A batch whose outcome is unknown (timeout, lost
    answer, 5xx) stays in 'sending' until reconciliation settles it.
    """
    report = SendReport()
    reconcile_in_flight(database, client, kind, reconcile_after, report)
    batch_size = max(1, min(batch_size, MAX_BATCH_MESSAGES))
    stop_reason: list[str] = []

    def send_one(batch_rows: tuple[str, list[Any]]) -> None:
        batch_id, rows = batch_rows
        if stop_reason:
            _release(database, rows, f"deferred: {stop_reason[0]}")
            report.add(deferred=len(rows))
            return
        messages = [_message(row, batch_id, from_address, message_stream) for row in rows]
        try:
            results = client.send_batch(messages)
        except (CircuitOpenError, RetryLaterError) as error:
            stop_reason.append(str(error))
            _release(database, rows, f"deferred: {error}")
            report.add(deferred=len(rows))
            return
        except ApiClientError as error:
            _release(database, rows, f"rejected: {error}", keep_attempt=True)
            report.errors.append(str(error))
            report.add(deferred=len(rows))
            return
        except (ApiError, ValueError) as error:
            # The provider may or may not have accepted the batch: leave it to reconciliation.
            report.add(unknown_outcome=len(rows))
            report.errors.append(mask_emails_in(str(error)))
            logger.warning(
                "email batch %s outcome unknown (%s); it will be reconciled", batch_id, error
            )
            return
        _record_answers(database, rows, results, report)
        if on_batch:
            on_batch(batch_id, len(rows))

    remaining = limit
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while remaining > 0 and not stop_reason:
            claims = []
            while len(claims) < workers and remaining > 0:
                batch_id, rows = claim_batch(database, kind, min(batch_size, remaining))
                if not rows:
                    break
                claims.append((batch_id, rows))
                remaining -= len(rows)
                report.add(claimed=len(rows))
            if not claims:
                break
            list(pool.map(send_one, claims))
    report.deferred_reasons = stop_reason
    with database.connect() as connection:
        report.pending_after = connection.execute(
            select(func.count())
            .select_from(email_sends)
            .where(and_(email_sends.c.kind == kind, email_sends.c.status == PENDING))
        ).scalar_one()
    return report
