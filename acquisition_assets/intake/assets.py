"""The new_leads asset: intake rows past the watermark, validated, normalized, de-duplicated."""

import hashlib
from typing import Any

import dagster as dg
from sqlalchemy import Connection, select

from acquisition_assets.core.clock import utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.privacy import mask_email
from acquisition_assets.core.schema import lead_intake, lead_rejections, leads
from acquisition_assets.core.sql import chunked, insert_ignore
from acquisition_assets.core.steps import StepRecorder, preview
from acquisition_assets.core.watermarks import lock_watermark, set_watermark
from acquisition_assets.intake.validation import InvalidValue, normalize_email
from acquisition_assets.settings import PipelineSettings

WATERMARK = "new_leads.last_intake_id"
LEAD_FIELDS = (
    "first_name", "last_name", "lead_source", "lead_origin", "converted", "total_visits",
    "time_on_site_seconds", "page_views_per_visit", "last_activity", "country", "occupation",
    "lead_quality",
)  # fmt: skip


def _rejection(intake: Any, code: str, reason: str, now: Any) -> dict[str, Any]:
    return {
        "rejection_key": hashlib.sha256(f"validation:{intake.id}".encode()).hexdigest(),
        "stage": "validation",
        "intake_id": intake.id,
        "source_file": intake.source_file,
        "source_row": intake.source_row,
        "external_id": intake.external_id,
        "email": intake.email,
        "reason_code": code,
        "reason": reason,
        "raw": "{}",
        "rejected_at": now,
    }


def _existing_leads(connection: Connection, emails: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in chunked(sorted(emails), 500):
        found.update(
            connection.execute(
                select(leads.c.email, leads.c.id).where(leads.c.email.in_(chunk))
            ).all()
        )
    return found


def _referrers(connection: Connection, codes: set[str]) -> dict[str, int]:
    if not codes:
        return {}
    return dict(
        connection.execute(
            select(leads.c.referral_code, leads.c.id).where(leads.c.referral_code.in_(codes))
        ).all()
    )


def normalize_addresses(intake_rows: list[Any]) -> dict[str, str | InvalidValue]:
    """Normalize each distinct intake address once, keeping the error of an invalid one.

    Existing leads are looked up by these forms, the same that build_leads stores, because
    a form that differs only in Unicode normalization would otherwise miss its lead and
    break the unique address of leads.
    """
    addresses: dict[str, str | InvalidValue] = {}
    for row in intake_rows:
        if row.email and row.email not in addresses:
            try:
                addresses[row.email] = normalize_email(row.email)
            except InvalidValue as error:
                addresses[row.email] = error
    return addresses


def build_leads(
    intake_rows: list[Any],
    addresses: dict[str, str | InvalidValue],
    existing: dict[str, int],
    referrers: dict[str, int],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split intake rows into new lead rows and rejections, each rejection with its reason.

    `addresses` is normalize_addresses(intake_rows) and `existing` maps the addresses of
    stored leads to their ids.
    """
    now = utcnow()
    new_rows: list[dict[str, Any]] = []
    rejections: list[dict[str, Any]] = []
    taken: dict[str, int] = {}
    for intake in intake_rows:
        if not intake.email:
            rejections.append(
                _rejection(intake, "missing_field", "the intake row has no email", now)
            )
            continue
        email = addresses[intake.email]
        if isinstance(email, InvalidValue):
            rejections.append(_rejection(intake, email.code, str(email), now))
            continue
        if email in existing:
            rejections.append(
                _rejection(
                    intake,
                    "duplicate_email",
                    f"lead {existing[email]} already has the address {mask_email(email)}",
                    now,
                )
            )
            continue
        if email in taken:
            rejections.append(
                _rejection(
                    intake,
                    "duplicate_email",
                    f"intake row {taken[email]} of the same run has the address "
                    f"{mask_email(email)}",
                    now,
                )
            )
            continue
        taken[email] = intake.id
        row = {name: getattr(intake, name) for name in LEAD_FIELDS}
        row.update(
            intake_id=intake.id,
            email=email,
            email_domain=email.rpartition("@")[2],
            source=intake.source,
            # Consent is opt-in: a row that does not say yes gets no email.
            email_opt_in=bool(intake.email_opt_in),
            call_opt_in=bool(intake.call_opt_in),
            referred_by_lead_id=referrers.get(intake.referral_code)
            if intake.referral_code
            else None,
            created_at=now,
            updated_at=now,
        )
        new_rows.append(row)
    return new_rows, rejections


@dg.asset(
    group_name="intake",
    kinds={"sql"},
    description="Intake rows past the watermark, validated, normalized and de-duplicated.",
)
def new_leads(
    context: dg.AssetExecutionContext,
    database: AcquisitionDatabase,
    settings: PipelineSettings,
) -> dg.MaterializeResult:
    step = StepRecorder(context, database, settings)
    with database.begin(writes=["leads", "lead_rejections", "pipeline_watermarks"]) as connection:
        last_id = int(lock_watermark(connection, WATERMARK, "0"))
        intake_rows = connection.execute(
            select(lead_intake)
            .where(lead_intake.c.id > last_id)
            .order_by(lead_intake.c.id)
            .limit(settings.max_leads_per_run)
        ).all()
        addresses = normalize_addresses(intake_rows)
        valid = {email for email in addresses.values() if isinstance(email, str)}
        existing = _existing_leads(connection, valid)
        codes = {row.referral_code for row in intake_rows if row.referral_code}
        new_rows, rejections = build_leads(
            intake_rows, addresses, existing, _referrers(connection, codes)
        )
        for chunk in chunked(new_rows, 1_000):
            insert_ignore(connection, leads, chunk, ["intake_id"])
        insert_ignore(connection, lead_rejections, rejections, ["rejection_key"])
        if intake_rows:
            set_watermark(connection, WATERMARK, str(intake_rows[-1].id))
        pending = connection.execute(
            select(lead_intake.c.id)
            .where(lead_intake.c.id > (intake_rows[-1].id if intake_rows else last_id))
            .limit(1)
        ).first()

    reasons: dict[str, int] = {}
    for rejection in rejections:
        reasons[rejection["reason_code"]] = reasons.get(rejection["reason_code"], 0) + 1
    context.log.info(
        "new_leads: %d intake rows read, %d leads created, %d rejected",
        len(intake_rows),
        len(new_rows),
        len(rejections),
    )
    return step.finish(
        len(intake_rows),
        {
            "intake_rows_read": dg.MetadataValue.int(len(intake_rows)),
            "leads_created": dg.MetadataValue.int(len(new_rows)),
            "rejected": dg.MetadataValue.int(len(rejections)),
            "rejection_reasons": dg.MetadataValue.json(reasons),
            "more_intake_pending": dg.MetadataValue.bool(pending is not None),
            "watermark": dg.MetadataValue.int(intake_rows[-1].id if intake_rows else last_id),
            "preview": preview(
                [{**row, "email": mask_email(row["email"])} for row in new_rows],
                ["intake_id", "email", "source", "lead_source", "email_opt_in"],
            ),
        },
    )
