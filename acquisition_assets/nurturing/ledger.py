"""The email send ledger: every send is a row with a unique idempotency key, written first.

A row moves pending -> sending -> sent | failed. The key (kind, lead, step) is unique, so
enqueuing the same email twice does nothing. A batch is claimed by writing a fresh batch id
into its rows before the API call, and every message carries that id and its own key in
Postmark metadata. Rows a crash or a lost response leaves in 'sending' are reconciled with
the provider's outbound message search (by batch id) before anything is sent again: found
messages become 'sent', missing ones go back to 'pending'. A batch that is about to be sent
again renews its claim first, so a reconciliation in another process and a retry here
cannot both send it.
"""

import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from acquisition_assets.core.clock import utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.errors import (
    ApiClientError,
    ApiError,
    CircuitOpenError,
    RetryLaterError,
)
from acquisition_assets.core.http import was_not_processed
from acquisition_assets.core.privacy import mask_emails_in
from acquisition_assets.core.schema import email_sends, leads
from acquisition_assets.core.sql import chunked, insert_ignore
from acquisition_assets.nurturing.email_client import (
    MAX_BATCH_MESSAGES,
    PERMANENT_ERROR_CODES,
    PostmarkClient,
    SendResult,
)

logger = logging.getLogger(__name__)

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
# Attempts after which a send that keeps failing transiently is set aside as failed.
MAX_SEND_ATTEMPTS = 5
# Postmark ErrorCode 406: the recipient hard-bounced, complained or unsubscribed earlier.
INACTIVE_RECIPIENT = 406
MAX_ERROR_CHARS = 1000


class ClaimLostError(Exception):
    """The rows of a batch in flight were settled or claimed again by another run."""


@dataclass
class SendReport:
    """Counters of one pass over the ledger."""

    claimed: int = 0
    sent: int = 0
    failed_permanently: int = 0
    retry_later: int = 0
    rejected: int = 0
    unknown_outcome: int = 0
    deferred: int = 0
    reconciled_sent: int = 0
    reconciled_pending: int = 0
    pending_after: int = 0
    in_flight_after: int = 0
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
            "rejected": self.rejected,
            "unknown_outcome": self.unknown_outcome,
            "deferred": self.deferred,
            "reconciled_sent": self.reconciled_sent,
            "reconciled_pending": self.reconciled_pending,
            "pending_after": self.pending_after,
            "in_flight_after": self.in_flight_after,
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
    """Settle rows left in 'sending' by asking the provider which of their messages exist.

    Only batches claimed at least `older_than` ago are settled, so a batch another process
    is still sending is left alone. When the provider cannot be asked, the rows stay in
    'sending' and the reason goes into the report: an open breaker or a long Retry-After as
    a deferral, any other API error as an error.
    """
    # NOTE: a single attempt that outlasts `older_than` (connect plus read timeout, or a
    # provider that keeps processing after the client gave up) may be reconciled as missing
    # while the provider still sends it, and is then sent twice.
    cutoff = utcnow() - older_than
    batches = _stale_batches(database, kind, cutoff)
    for position, batch_id in enumerate(batches):
        try:
            found = client.search_outbound({"send_batch": batch_id})
        except (CircuitOpenError, RetryLaterError) as error:
            report.deferred_reasons.append(str(error))
            logger.warning(
                "reconciliation deferred, %d batches stay in flight: %s",
                len(batches) - position,
                error,
            )
            return
        except ApiError as error:
            report.errors.append(mask_emails_in(str(error)))
            logger.warning(
                "reconciliation stopped, %d batches stay in flight: %s",
                len(batches) - position,
                mask_emails_in(str(error)),
            )
            return
        message_ids = {
            (message.get("Metadata") or {}).get("idempotency_key"): message.get("MessageID")
            for message in found
        }
        settled, unsent = _settle_batch(database, batch_id, cutoff, message_ids)
        report.add(reconciled_sent=settled, reconciled_pending=unsent)
        logger.info(
            "reconciled batch %s: %d found at the provider, %d returned to pending",
            batch_id,
            settled,
            unsent,
        )


def _stale_batches(database: AcquisitionDatabase, kind: str, cutoff: datetime) -> list[str]:
    with database.connect() as connection:
        return list(
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


def _settle_batch(
    database: AcquisitionDatabase,
    batch_id: str,
    cutoff: datetime,
    message_ids: dict[str | None, str | None],
) -> tuple[int, int]:
    """Mark a stale batch's rows sent or pending by what the provider has, and count both."""
    with database.begin(writes=["email_sends"]) as connection:
        rows = connection.execute(
            select(email_sends.c.id, email_sends.c.idempotency_key).where(
                email_sends.c.claimed_by == batch_id,
                email_sends.c.status == SENDING,
                email_sends.c.claimed_at <= cutoff,
            )
        ).all()
        now = utcnow()
        changes = []
        for row in rows:
            found = row.idempotency_key in message_ids
            changes.append(
                {
                    "row_id": row.id,
                    "new_status": SENT if found else PENDING,
                    "message_id": message_ids.get(row.idempotency_key),
                    "code": None,
                    "error": None if found else "not found at the provider after a lost send",
                    "sent": now if found else None,
                    "now": now,
                    "batch": batch_id,
                    "owner": batch_id if found else None,
                }
            )
        # The cutoff guard skips rows whose claim a retry renewed after they were read.
        _apply(connection, changes, email_sends.c.claimed_at <= cutoff)
    settled = sum(1 for change in changes if change["new_status"] == SENT)
    return settled, len(changes) - settled


def claim_batch(
    database: AcquisitionDatabase, kind: str, size: int, after_id: int = 0
) -> tuple[str, list[Any]]:
    """Mark up to `size` pending rows with an id above `after_id` as 'sending' and return them.

    The rows get a new batch id. The status guard in the UPDATE makes the claim atomic: a
    row another worker claimed first is not taken again.
    """
    batch_id = uuid.uuid4().hex
    now = utcnow()
    with database.begin(writes=["email_sends"]) as connection:
        candidates = (
            select(email_sends.c.id)
            .where(
                email_sends.c.kind == kind,
                email_sends.c.status == PENDING,
                email_sends.c.id > after_id,
            )
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


def _renew_claim(database: AcquisitionDatabase, batch_id: str, size: int) -> None:
    """Refresh a batch's claim time before it is sent again, or raise ClaimLostError."""
    now = utcnow()
    with database.begin(writes=["email_sends"]) as connection:
        renewed = connection.execute(
            update(email_sends)
            .where(email_sends.c.claimed_by == batch_id, email_sends.c.status == SENDING)
            .values(claimed_at=now, updated_at=now)
        ).rowcount
    if renewed != size:
        raise ClaimLostError(
            f"email batch {batch_id!r} was not sent again: {size - renewed} of its {size} rows "
            "were reconciled or claimed by another run while this one waited to retry"
        )


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


def _apply(connection: Connection, changes: list[dict[str, Any]], *conditions: Any) -> None:
    """Write outcomes to rows still in 'sending' under the change's batch id."""
    if not changes:
        return
    statement = (
        update(email_sends)
        .where(
            email_sends.c.id == bindparam("row_id"),
            email_sends.c.status == SENDING,
            email_sends.c.claimed_by == bindparam("batch"),
            *conditions,
        )
        .values(
            status=bindparam("new_status"),
            provider_message_id=bindparam("message_id"),
            error_code=bindparam("code"),
            last_error=bindparam("error"),
            sent_at=bindparam("sent"),
            claimed_by=bindparam("owner"),
            updated_at=bindparam("now"),
        )
    )
    connection.execute(statement, changes)


def _suppress_inactive(connection: Connection, lead_ids: list[int]) -> None:
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


def _outcome(row: Any, result: SendResult) -> str:
    if result.error_code == 0:
        return SENT
    if result.error_code in PERMANENT_ERROR_CODES or row.attempts >= MAX_SEND_ATTEMPTS:
        return FAILED
    return PENDING


def _record_answers(
    database: AcquisitionDatabase,
    batch_id: str,
    rows: list[Any],
    results: list[SendResult],
    report: SendReport,
) -> None:
    """Store the provider's result for each message, except in rows settled meanwhile."""
    now = utcnow()
    with database.begin(writes=["email_sends", "leads"]) as connection:
        still_claimed = select(email_sends.c.id).where(
            email_sends.c.claimed_by == batch_id, email_sends.c.status == SENDING
        )
        if connection.dialect.name == "postgresql":
            # Lock the rows so a reconciliation cannot settle them between read and write.
            still_claimed = still_claimed.with_for_update()
        owned = set(connection.execute(still_claimed).scalars())
        changes: list[dict[str, Any]] = []
        inactive: list[int] = []
        for row, result in zip(rows, results, strict=True):
            if row.id not in owned:
                continue
            status = _outcome(row, result)
            error = None
            if status != SENT:
                error = f"ErrorCode {result.error_code}: {mask_emails_in(result.message)}"
            changes.append(
                {
                    "row_id": row.id,
                    "new_status": status,
                    "message_id": result.message_id,
                    "code": result.error_code or None,
                    "error": error,
                    "sent": now if status == SENT else None,
                    "now": now,
                    "batch": batch_id,
                    "owner": batch_id,
                }
            )
            if status == FAILED and result.error_code == INACTIVE_RECIPIENT:
                inactive.append(row.lead_id)
        _apply(connection, changes)
        _suppress_inactive(connection, inactive)
    statuses = [change["new_status"] for change in changes]
    report.add(
        sent=statuses.count(SENT),
        failed_permanently=statuses.count(FAILED),
        retry_later=statuses.count(PENDING),
    )
    if len(changes) < len(rows):
        logger.warning(
            "email batch %s: %d rows were settled by a reconciliation before the response "
            "arrived; their reconciled status stands",
            batch_id,
            len(rows) - len(changes),
        )


def _release(
    database: AcquisitionDatabase, batch_id: str, error: str, *, keep_attempt: bool = False
) -> None:
    """Return a batch's claimed rows to pending: the provider did not act on them."""
    now = utcnow()
    with database.begin(writes=["email_sends"]) as connection:
        connection.execute(
            update(email_sends)
            .where(email_sends.c.claimed_by == batch_id, email_sends.c.status == SENDING)
            .values(
                status=PENDING,
                claimed_by=None,
                last_error=error[:MAX_ERROR_CHARS],
                updated_at=now,
                attempts=email_sends.c.attempts if keep_attempt else email_sends.c.attempts - 1,
            )
        )


def _count_by_status(database: AcquisitionDatabase, kind: str) -> dict[str, int]:
    with database.connect() as connection:
        return dict(
            connection.execute(
                select(email_sends.c.status, func.count())
                .where(email_sends.c.kind == kind)
                .group_by(email_sends.c.status)
            ).all()
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

    A pass takes each row at most once. An open breaker or a Retry-After beyond the cap
    stops the pass, in reconciliation or in sending: the rows not yet sent stay pending and
    count as deferred. A batch the provider
    did not act on (429, 503, no connection) goes back to pending. A batch whose outcome is
    unknown (timeout, lost answer, other 5xx) stays in 'sending' until reconciliation
    settles it.
    """
    report = SendReport()
    reconcile_in_flight(database, client, kind, reconcile_after, report)
    batch_size = max(1, min(batch_size, MAX_BATCH_MESSAGES))
    stop_reason: list[str] = list(report.deferred_reasons)

    def send_one(claim: tuple[str, list[Any]]) -> None:
        batch_id, rows = claim
        if stop_reason:
            _release(database, batch_id, f"deferred: {stop_reason[0]}")
            report.add(deferred=len(rows))
            return
        messages = [_message(row, batch_id, from_address, message_stream) for row in rows]
        try:
            results = client.send_batch(
                messages, before_retry=lambda: _renew_claim(database, batch_id, len(rows))
            )
        except (CircuitOpenError, RetryLaterError) as error:
            stop_reason.append(str(error))
            _release(database, batch_id, f"deferred: {error}")
            report.add(deferred=len(rows))
            return
        except ClaimLostError as error:
            logger.warning("%s", error)
            report.errors.append(str(error))
            return
        except ApiClientError as error:
            # The provider rejected the whole batch (a bad token, say): nothing was sent.
            _release(database, batch_id, f"rejected: {error}", keep_attempt=True)
            report.errors.append(mask_emails_in(str(error)))
            report.add(rejected=len(rows))
            return
        except ApiError as error:
            _settle_failed_batch(database, batch_id, len(rows), error, report)
            return
        except ValueError as error:
            # A response that does not match the batch: the provider may have sent it.
            report.add(unknown_outcome=len(rows))
            report.errors.append(mask_emails_in(str(error)))
            return
        _record_answers(database, batch_id, rows, results, report)
        if on_batch:
            on_batch(batch_id, len(rows))

    remaining = limit
    # Claims follow the id order from this cursor, so a row that goes back to pending is
    # tried again in the next run, not in a tight loop within this one.
    last_claimed_id = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while remaining > 0 and not stop_reason:
            # While the breaker is not closed the next call is its probe: send that batch
            # alone, because parallel ones would fail fast and stop the pass.
            width = workers if client.http.breaker.is_closed() else 1
            claims = []
            while len(claims) < width and remaining > 0:
                batch_id, rows = claim_batch(
                    database, kind, min(batch_size, remaining), last_claimed_id
                )
                if not rows:
                    break
                last_claimed_id = rows[-1].id
                claims.append((batch_id, rows))
                remaining -= len(rows)
                report.add(claimed=len(rows))
            if not claims:
                break
            list(pool.map(send_one, claims))

    counts = _count_by_status(database, kind)
    report.pending_after = counts.get(PENDING, 0)
    report.in_flight_after = counts.get(SENDING, 0)
    report.deferred_reasons = stop_reason
    if stop_reason:
        # Released rows plus the pending rows this pass would still have taken on.
        attempted = report.claimed - report.deferred
        report.deferred = min(limit - attempted, report.pending_after)
    return report


def _settle_failed_batch(
    database: AcquisitionDatabase, batch_id: str, size: int, error: ApiError, report: SendReport
) -> None:
    report.errors.append(mask_emails_in(str(error)))
    if was_not_processed(error):
        _release(database, batch_id, f"not processed: {error}")
        report.add(retry_later=size)
        return
    # The provider may or may not have accepted the batch: leave it to reconciliation.
    report.add(unknown_outcome=size)
    logger.warning(
        "email batch %s outcome unknown (%s); it will be reconciled",
        batch_id,
        mask_emails_in(str(error)),
    )
