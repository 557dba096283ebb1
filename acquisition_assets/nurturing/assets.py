"""Assets that enroll leads in nurturing sequences and send the emails that are due."""

import json
from datetime import timedelta
from typing import Any

import dagster as dg
from sqlalchemy import bindparam, func, select, update

from acquisition_assets.core.clock import utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import (
    call_tasks,
    leads,
    nurture_enrollments,
)
from acquisition_assets.core.sql import chunked, insert_ignore
from acquisition_assets.core.steps import StepRecorder
from acquisition_assets.nurturing.email_client import PostmarkEmailApi
from acquisition_assets.nurturing.ledger import SendReport, enqueue, send_pending
from acquisition_assets.nurturing.sequences import SEQUENCES, UNSUBSCRIBE_FOOTER, step_of
from acquisition_assets.settings import PipelineSettings

NURTURE_KIND = "nurture"


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
            ).all()
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
