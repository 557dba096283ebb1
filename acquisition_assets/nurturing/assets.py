"""Assets that enroll leads in sequences, send the due emails and pull engagement events."""

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
from sqlalchemy import bindparam, func, select, update

from acquisition_assets.core.clock import as_utc, utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.errors import CircuitOpenError, RetryLaterError
from acquisition_assets.core.schema import (
    call_tasks,
    email_events,
    email_sends,
    leads,
    nurture_enrollments,
)
from acquisition_assets.core.sql import chunked, insert_ignore
from acquisition_assets.core.steps import StepRecorder
from acquisition_assets.core.watermarks import lock_watermark, read_watermark, set_watermark
from acquisition_assets.nurturing.email_client import PostmarkEmailApi
from acquisition_assets.nurturing.ledger import SendReport, enqueue, send_pending
from acquisition_assets.nurturing.sequences import SEQUENCES, UNSUBSCRIBE_FOOTER, step_of
from acquisition_assets.settings import PipelineSettings

NURTURE_KIND = "nurture"
EVENT_WATERMARK = "engagement.last_event_id"
EVENTS_PER_PAGE = 500
# Points a lead earns per engagement event; feeds the score at the next scoring.
ENGAGEMENT_POINTS = {"open": 1, "click": 3}
RECORD_TYPES = {
    "Delivery": "delivery",
    "Bounce": "bounce",
    "Open": "open",
    "Click": "click",
    "SubscriptionChange": "unsubscribe",
}


@dg.asset(
    group_name="nurturing",
    deps=["lead_segments"],
    kinds={"sql"},
    description="Sequence and next step per lead in the nurturing stage.",
)
def nurturing_enrollments(
    context: dg.AssetExecutionContext, database: AcquisitionDatabase, settings: PipelineSettings
) -> dg.MaterializeResult:
    step = StepRecorder(context, database, settings)
    now = utcnow()
    with database.begin(writes=["nurture_enrollments", "call_tasks"]) as connection:
        candidates = connection.execute(
            select(leads.c.id, leads.c.segment)
            .outerjoin(nurture_enrollments, nurture_enrollments.c.lead_id == leads.c.id)
            .where(leads.c.lifecycle_stage == "nurturing", nurture_enrollments.c.id.is_(None))
            .order_by(leads.c.id)
            .limit(settings.max_leads_per_run)
        ).all()
        rows = [
            {
                "lead_id": lead.id,
                "sequence": lead.segment,
                "next_step": 0,
                "status": "active",
                "enrolled_at": now,
                "next_due_at": now,
                "updated_at": now,
            }
            for lead in candidates
            if lead.segment in SEQUENCES
        ]
        enrolled = sum(
            insert_ignore(connection, nurture_enrollments, chunk, ["lead_id"])
            for chunk in chunked(rows, 1_000)
        )

        # Leads that converted, bounced or withdrew consent leave their sequence.
        leaving = select(leads.c.id).where(leads.c.lifecycle_stage != "nurturing")
        stopped = connection.execute(
            update(nurture_enrollments)
            .where(
                nurture_enrollments.c.status == "active", nurture_enrollments.c.lead_id.in_(leaving)
            )
            .values(
                status="stopped",
                stop_reason="lead left the nurturing stage",
                next_due_at=None,
                updated_at=now,
            )
        ).rowcount
        call_tasks_added = _queue_call_tasks(connection, settings, now)
        by_sequence = dict(
            connection.execute(
                select(nurture_enrollments.c.sequence, func.count())
                .where(nurture_enrollments.c.status == "active")
                .group_by(nurture_enrollments.c.sequence)
            )
            .tuples()
            .all()
        )
    context.log.info("nurturing_enrollments: %d enrolled, %d stopped", enrolled, stopped)
    return step.finish(
        enrolled + stopped,
        {
            "enrolled": dg.MetadataValue.int(enrolled),
            "stopped": dg.MetadataValue.int(stopped),
            "active_by_sequence": dg.MetadataValue.json(by_sequence),
            "call_tasks_added": dg.MetadataValue.int(call_tasks_added),
        },
    )


def _queue_call_tasks(connection: Any, settings: PipelineSettings, now: Any) -> int:
    """Queue a sales call for hot leads who accept calls but not email (multichannel)."""
    if not settings.enable_multichannel:
        return 0
    candidates = (
        connection.execute(
            select(leads.c.id)
            .outerjoin(call_tasks, call_tasks.c.lead_id == leads.c.id)
            .where(
                leads.c.segment == "hot",
                leads.c.lifecycle_stage == "suppressed",
                leads.c.call_opt_in.is_(True),
                call_tasks.c.id.is_(None),
            )
            .limit(settings.max_leads_per_run)
        )
        .scalars()
        .all()
    )
    rows = [
        {
            "lead_id": lead_id,
            "reason": "hot lead without email consent who accepts calls",
            "status": "open",
            "created_at": now,
        }
        for lead_id in candidates
    ]
    return insert_ignore(connection, call_tasks, rows, ["lead_id"])


def _due_sends(
    connection: Any, limit: int, now: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Build ledger rows for due steps and the matching enrollment advances."""
    due = connection.execute(
        select(
            nurture_enrollments.c.id,
            nurture_enrollments.c.lead_id,
            nurture_enrollments.c.sequence,
            nurture_enrollments.c.next_step,
            leads.c.email,
            leads.c.first_name,
        )
        .join(leads, leads.c.id == nurture_enrollments.c.lead_id)
        .where(
            nurture_enrollments.c.status == "active",
            nurture_enrollments.c.next_due_at <= now,
            leads.c.email_status == "active",
            leads.c.email_opt_in.is_(True),
        )
        .order_by(nurture_enrollments.c.next_due_at, nurture_enrollments.c.id)
        .limit(limit)
    ).all()
    sends, advances = [], []
    for row in due:
        current = step_of(row.sequence, row.next_step)
        if current is None:
            advances.append(
                {
                    "row_id": row.id,
                    "step": row.next_step,
                    "status": "completed",
                    "due": None,
                    "now": now,
                }
            )
            continue
        name = row.first_name or "there"
        sends.append(
            {
                "idempotency_key": f"{NURTURE_KIND}:{row.lead_id}:{row.sequence}:{row.next_step}",
                "lead_id": row.lead_id,
                "kind": NURTURE_KIND,
                "sequence": row.sequence,
                "step": row.next_step,
                "to_address": row.email,
                "subject": current.subject,
                "text_body": current.body.format(name=name)
                + UNSUBSCRIBE_FOOTER.format(link=f"https://example.com/unsubscribe/{row.lead_id}"),
                "tag": current.template,
                "metadata_json": json.dumps({"lead_id": str(row.lead_id)}),
            }
        )
        following = step_of(row.sequence, row.next_step + 1)
        advances.append(
            {
                "row_id": row.id,
                "step": row.next_step + 1,
                "status": "active" if following else "completed",
                "due": now + following.delay if following else None,
                "now": now,
            }
        )
    return sends, advances


def send_report_metadata(report: SendReport) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        name: dg.MetadataValue.int(value) for name, value in report.as_metadata().items()
    }
    if report.deferred_reasons:
        metadata["deferred_because"] = dg.MetadataValue.text(report.deferred_reasons[0][:500])
    if report.errors:
        metadata["errors"] = dg.MetadataValue.json(report.errors[:10])
    return metadata


def raise_if_needed(report: SendReport, settings: PipelineSettings, what: str) -> None:
    """Fail the step on an open breaker when the settings ask for it."""
    if report.deferred_reasons and settings.fail_on_open_circuit:
        raise dg.Failure(
            description=f"{what}: {report.deferred} sends deferred: {report.deferred_reasons[0]}",
            metadata=send_report_metadata(report),
        )


@dg.asset(
    group_name="nurturing",
    deps=["nurturing_enrollments"],
    kinds={"postmark", "sql"},
    description="Due sequence steps, written to the send ledger and sent through the email API.",
)
def nurturing_sends(
    context: dg.AssetExecutionContext,
    database: AcquisitionDatabase,
    settings: PipelineSettings,
    email_api: PostmarkEmailApi,
) -> dg.MaterializeResult:
    step = StepRecorder(context, database, settings)
    now = utcnow()
    with database.begin(writes=["email_sends", "nurture_enrollments"]) as connection:
        sends, advances = _due_sends(connection, settings.max_leads_per_run, now)
        # Enqueuing and advancing share one transaction: each step is queued exactly once.
        enqueued = enqueue(connection, sends)
        if advances:
            connection.execute(
                update(nurture_enrollments)
                .where(nurture_enrollments.c.id == bindparam("row_id"))
                .values(
                    next_step=bindparam("step"),
                    status=bindparam("status"),
                    next_due_at=bindparam("due"),
                    updated_at=bindparam("now"),
                ),
                advances,
            )
    client = email_api.open(database, settings)
    step.track(client.http)
    report = send_pending(
        database,
        client,
        NURTURE_KIND,
        limit=settings.max_leads_per_run,
        batch_size=settings.batch_size,
        workers=settings.worker_count(),
        from_address=email_api.from_address,
        message_stream=email_api.message_stream,
        reconcile_after=timedelta(seconds=email_api.reconcile_after_seconds),
    )
    context.log.info(
        "nurturing_sends: %d queued, %d sent, %d set aside as failed, %d to retry, "
        "%d outcome unknown, %d deferred, %d still pending",
        enqueued,
        report.sent,
        report.failed_permanently,
        report.retry_later,
        report.unknown_outcome,
        report.deferred,
        report.pending_after,
    )
    raise_if_needed(report, settings, "nurturing_sends")
    return step.finish(
        report.claimed,
        {"queued": dg.MetadataValue.int(enqueued), **send_report_metadata(report)},
    )


def _event_rows(
    events: list[dict[str, Any]], sends_by_message: dict[str, Any], feed_id: str | None, now: Any
) -> list[dict[str, Any]]:
    """Turn feed events into email_events rows, linked to the send whose message they are.

    Events are matched by the provider's message id, which is unique across every sender of
    the account. An event for a message this database never sent is kept, unlinked.
    """
    rows = []
    for event in events:
        event_type = RECORD_TYPES.get(event.get("RecordType", ""))
        if event_type is None:
            continue
        send = sends_by_message.get(event.get("MessageID"))
        occurred = (
            event.get("DeliveredAt")
            or event.get("BouncedAt")
            or event.get("ReceivedAt")
            or event.get("ChangedAt")
        )
        rows.append(
            {
                "provider_event_id": f"{feed_id}:{event['ID']}" if feed_id else str(event["ID"]),
                "provider_message_id": event.get("MessageID"),
                "send_id": send.id if send else None,
                "lead_id": send.lead_id if send else None,
                "event_type": event_type,
                "occurred_at": _parse_time(occurred) or now,
                "payload": json.dumps(event, sort_keys=True),
                "received_at": now,
            }
        )
    return rows


def parse_feed_cursor(cursor: str) -> tuple[str | None, int]:
    """Split a stored cursor "<feed id>:<last event id>" (or a bare id) into its parts."""
    feed_id, _, last_id = cursor.rpartition(":")
    return (feed_id or None), int(last_id or 0)


def format_feed_cursor(feed_id: str | None, last_id: int) -> str:
    return f"{feed_id}:{last_id}" if feed_id else str(last_id)


def _parse_time(value: str | None) -> Any:
    if not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _apply_engagement(connection: Any, rows: list[dict[str, Any]], now: Any) -> Counter:
    counts: Counter = Counter(row["event_type"] for row in rows)
    points: Counter = Counter()
    bounced, unsubscribed = set(), set()
    for row in rows:
        if row["lead_id"] is None:
            continue
        points[row["lead_id"]] += ENGAGEMENT_POINTS.get(row["event_type"], 0)
        if row["event_type"] == "bounce":
            bounced.add(row["lead_id"])
        elif row["event_type"] == "unsubscribe":
            unsubscribed.add(row["lead_id"])
    engaged = [
        {"lead": lead_id, "delta": delta, "now": now} for lead_id, delta in points.items() if delta
    ]
    if engaged:
        # last_engaged_at after scored_at makes the next scoring pick the engagement up.
        connection.execute(
            update(leads)
            .where(leads.c.id == bindparam("lead"))
            .values(
                engagement_score=leads.c.engagement_score + bindparam("delta"),
                last_engaged_at=bindparam("now"),
                updated_at=bindparam("now"),
            ),
            engaged,
        )
    for lead_ids, status, reason, values in (
        (bounced, "bounced", "hard bounce reported by the email provider", {}),
        (
            unsubscribed,
            "unsubscribed",
            "unsubscribed through the email provider",
            {"email_opt_in": False},
        ),
    ):
        for chunk in chunked(sorted(lead_ids), 500):
            connection.execute(
                update(leads)
                .where(leads.c.id.in_(chunk))
                .values(
                    email_status=status,
                    suppression_reason=reason,
                    updated_at=now,
                    **values,
                )
            )
    return counts


@dg.asset(
    group_name="nurturing",
    deps=["nurturing_sends"],
    kinds={"postmark", "sql"},
    description="Delivery, open, click, bounce and unsubscribe events pulled from the email API.",
)
def engagement(
    context: dg.AssetExecutionContext,
    database: AcquisitionDatabase,
    settings: PipelineSettings,
    email_api: PostmarkEmailApi,
) -> dg.MaterializeResult:
    step = StepRecorder(context, database, settings)
    client = email_api.open(database, settings)
    step.track(client.http)
    totals: Counter = Counter()
    fetched = 0
    unmatched = 0
    deferred_because = None
    while fetched < settings.max_leads_per_run * 5:
        with database.connect() as connection:
            cursor = read_watermark(connection, EVENT_WATERMARK, "")
        feed_id, after = parse_feed_cursor(cursor)
        # The HTTP call stays outside the transaction, so no database lock waits on the API.
        try:
            events, last_id, current_feed = client.fetch_events(after, EVENTS_PER_PAGE)
            if feed_id and current_feed and current_feed != feed_id:
                context.log.warning(
                    "engagement: event feed %s replaced feed %s; reading it from the start",
                    current_feed,
                    feed_id,
                )
                events, last_id, current_feed = client.fetch_events(0, EVENTS_PER_PAGE)
        except (CircuitOpenError, RetryLaterError) as error:
            # The watermark stays put, so the next run fetches these events.
            deferred_because = str(error)
            break
        new_cursor = format_feed_cursor(current_feed, last_id)
        with database.begin(writes=["email_events", "leads", "pipeline_watermarks"]) as connection:
            if lock_watermark(connection, EVENT_WATERMARK, "") != cursor:
                continue  # another run stored this page meanwhile
            if not events:
                set_watermark(connection, EVENT_WATERMARK, new_cursor)
                break
            fetched += len(events)
            message_ids = {e.get("MessageID") for e in events} - {None, ""}
            sends_by_message = {
                row.provider_message_id: row
                for chunk in chunked(sorted(message_ids), 500)
                for row in connection.execute(
                    select(
                        email_sends.c.id, email_sends.c.lead_id, email_sends.c.provider_message_id
                    ).where(email_sends.c.provider_message_id.in_(chunk))
                ).all()
            }
            now = utcnow()
            rows = _event_rows(events, sends_by_message, current_feed, now)
            known = (
                set(
                    connection.execute(
                        select(email_events.c.provider_event_id).where(
                            email_events.c.provider_event_id.in_(
                                [r["provider_event_id"] for r in rows]
                            )
                        )
                    ).scalars()
                )
                if rows
                else set()
            )
            fresh = [row for row in rows if row["provider_event_id"] not in known]
            unmatched += sum(1 for row in fresh if row["send_id"] is None)
            insert_ignore(connection, email_events, fresh, ["provider_event_id"])
            totals.update(_apply_engagement(connection, fresh, now))
            set_watermark(connection, EVENT_WATERMARK, new_cursor)
    context.log.info("engagement: %d events fetched: %s", fetched, dict(totals))
    metadata = {
        "events_fetched": dg.MetadataValue.int(fetched),
        "events_for_unknown_messages": dg.MetadataValue.int(unmatched),
        **{
            f"{kind}_events": dg.MetadataValue.int(totals.get(kind, 0))
            for kind in RECORD_TYPES.values()
        },
    }
    if deferred_because:
        context.log.warning("engagement: fetching events deferred: %s", deferred_because)
        if settings.fail_on_open_circuit:
            raise dg.Failure(
                description=f"engagement: fetching events deferred: {deferred_because}"
            )
        metadata["deferred_because"] = dg.MetadataValue.text(deferred_because[:500])
    return step.finish(fetched, metadata)
