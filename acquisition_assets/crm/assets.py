"""The crm_sync asset: changed contacts upserted to the CRM in batches."""

import hashlib
import json
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
from sqlalchemy import func, select

from acquisition_assets.core.clock import utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.errors import ApiError, CircuitOpenError, RetryLaterError
from acquisition_assets.core.privacy import mask_emails_in
from acquisition_assets.core.schema import crm_sync_state, leads
from acquisition_assets.core.sql import chunked, upsert
from acquisition_assets.core.steps import StepRecorder
from acquisition_assets.crm.client import (
    MAX_BATCH_INPUTS,
    HubSpotClient,
    HubSpotCrmApi,
    UpsertOutcome,
)
from acquisition_assets.settings import PipelineSettings

# HubSpot's default lifecycle stage values.
LIFECYCLE_STAGES = {"customer": "customer", "nurturing": "lead", "suppressed": "other"}
STATE_COLUMNS = [
    "contact_hash",
    "crm_id",
    "status",
    "attempts",
    "last_error",
    "synced_at",
    "updated_at",
]


def contact_properties(lead: Any) -> dict[str, str | None]:
    """Map a lead to HubSpot contact properties, every value a string as the API expects."""

    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    return {
        "email": lead.email,
        "firstname": lead.first_name,
        "lastname": lead.last_name,
        "lifecyclestage": LIFECYCLE_STAGES.get(lead.lifecycle_stage or "", "lead"),
        "acquisition_source": lead.source,
        "acquisition_lead_source": lead.lead_source,
        "acquisition_score": text(lead.score),
        "acquisition_segment": lead.segment,
        "acquisition_email_status": lead.email_status,
        "acquisition_engagement_score": text(lead.engagement_score),
        "acquisition_referral_code": lead.referral_code,
        "acquisition_referred_by": text(lead.referred_by_lead_id),
    }


def contact_hash(properties: dict[str, str | None]) -> str:
    return hashlib.sha256(json.dumps(properties, sort_keys=True).encode()).hexdigest()


def _changed_contacts(database: AcquisitionDatabase, limit: int) -> tuple[list[dict], int]:
    columns = [
        leads.c.id,
        leads.c.email,
        leads.c.first_name,
        leads.c.last_name,
        leads.c.lifecycle_stage,
        leads.c.source,
        leads.c.lead_source,
        leads.c.score,
        leads.c.segment,
        leads.c.email_status,
        leads.c.engagement_score,
        leads.c.referral_code,
        leads.c.referred_by_lead_id,
        crm_sync_state.c.contact_hash,
        crm_sync_state.c.status,
        crm_sync_state.c.attempts,
        crm_sync_state.c.crm_id,
    ]
    changed: list[dict] = []
    scanned = 0
    last_id = 0
    with database.connect() as connection:
        # Hashing happens here, so scan in id order and stop once `limit` changed contacts.
        while len(changed) < limit:
            page = connection.execute(
                select(*columns)
                .outerjoin(crm_sync_state, crm_sync_state.c.lead_id == leads.c.id)
                .where(leads.c.id > last_id, leads.c.segmented_at.is_not(None))
                .order_by(leads.c.id)
                .limit(2_000)
            ).all()
            if not page:
                break
            last_id = page[-1].id
            scanned += len(page)
            for lead in page:
                properties = contact_properties(lead)
                digest = contact_hash(properties)
                if digest != lead.contact_hash or lead.status not in ("synced", "rejected"):
                    changed.append({"lead": lead, "properties": properties, "hash": digest})
                    if len(changed) >= limit:
                        break
    return changed, scanned


def _state_rows(batch: list[dict], outcome: UpsertOutcome, now: Any) -> list[dict[str, Any]]:
    rows = []
    for item in batch:
        lead = item["lead"]
        email = lead.email.lower()
        error = outcome.errors.get(email)
        crm_id = outcome.crm_ids.get(email)
        if crm_id and not error:
            rows.append(
                {
                    "lead_id": lead.id,
                    "contact_hash": item["hash"],
                    "crm_id": crm_id,
                    "status": "synced",
                    "attempts": (lead.attempts or 0) + 1,
                    "last_error": None,
                    "synced_at": now,
                    "updated_at": now,
                }
            )
        else:
            # The CRM rejected these properties: wait for them to change before trying again.
            rows.append(
                {
                    "lead_id": lead.id,
                    "contact_hash": item["hash"],
                    "crm_id": lead.crm_id,
                    "status": "rejected",
                    "attempts": (lead.attempts or 0) + 1,
                    "last_error": mask_emails_in(
                        error or "the CRM returned no result for this contact"
                    ),
                    "synced_at": None,
                    "updated_at": now,
                }
            )
    return rows


def sync_batches(
    database: AcquisitionDatabase,
    client: HubSpotClient,
    batches: Iterable[list[dict]],
    workers: int,
) -> dict[str, Any]:
    """Upsert batches in parallel and store each contact's outcome; stop on an open breaker."""
    totals = {"synced": 0, "failed": 0, "deferred": 0, "errors": []}
    stop: list[str] = []
    lock = threading.Lock()

    def add(name: str, count: int) -> None:
        with lock:
            totals[name] += count

    def run(batch: list[dict]) -> None:
        if stop:
            add("deferred", len(batch))
            return
        try:
            outcome = client.upsert_contacts([item["properties"] for item in batch])
        except (CircuitOpenError, RetryLaterError) as error:
            stop.append(str(error))
            add("deferred", len(batch))
            return
        except ApiError as error:
            # Upserts are idempotent, so the batch is simply tried again next run.
            add("deferred", len(batch))
            totals["errors"].append(mask_emails_in(str(error)))
            return
        rows = _state_rows(batch, outcome, utcnow())
        with database.begin(writes=["crm_sync_state"]) as connection:
            upsert(connection, crm_sync_state, rows, ["lead_id"], STATE_COLUMNS)
        add("synced", sum(1 for row in rows if row["status"] == "synced"))
        add("failed", sum(1 for row in rows if row["status"] == "rejected"))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, batches))
    totals["stopped_because"] = stop[0] if stop else None
    return totals


@dg.asset(
    group_name="crm",
    deps=["referrals", "lead_segments"],
    kinds={"hubspot", "sql"},
    description="Contacts whose properties changed since the last sync, upserted to the CRM.",
)
def crm_sync(
    context: dg.AssetExecutionContext,
    database: AcquisitionDatabase,
    settings: PipelineSettings,
    crm_api: HubSpotCrmApi,
) -> dg.MaterializeResult:
    step = StepRecorder(context, database, settings)
    changed, scanned = _changed_contacts(database, settings.max_leads_per_run)
    client = crm_api.open(database, settings)
    step.track(client.http)
    batch_size = max(1, min(settings.batch_size, MAX_BATCH_INPUTS))
    totals = sync_batches(database, client, chunked(changed, batch_size), settings.worker_count())
    with database.connect() as connection:
        in_sync = connection.execute(
            select(func.count())
            .select_from(crm_sync_state)
            .where(crm_sync_state.c.status == "synced")
        ).scalar_one()
        failing = connection.execute(
            select(func.count())
            .select_from(crm_sync_state)
            .where(crm_sync_state.c.status == "rejected")
        ).scalar_one()
    context.log.info(
        "crm_sync: %d of %d contacts changed; %d upserted, %d failed, %d deferred",
        len(changed),
        scanned,
        totals["synced"],
        totals["failed"],
        totals["deferred"],
    )
    if totals["stopped_because"] and settings.fail_on_open_circuit:
        raise dg.Failure(
            description=(
                f"crm_sync: {totals['deferred']} contacts deferred: {totals['stopped_because']}"
            )
        )
    metadata = {
        "contacts_scanned": dg.MetadataValue.int(scanned),
        "contacts_changed": dg.MetadataValue.int(len(changed)),
        "upserted": dg.MetadataValue.int(totals["synced"]),
        "failed": dg.MetadataValue.int(totals["failed"]),
        "deferred": dg.MetadataValue.int(totals["deferred"]),
        "contacts_in_sync": dg.MetadataValue.int(in_sync),
        "contacts_rejected": dg.MetadataValue.int(failing),
    }
    if totals["stopped_because"]:
        metadata["deferred_because"] = dg.MetadataValue.text(totals["stopped_because"][:500])
    if totals["errors"]:
        metadata["errors"] = dg.MetadataValue.json(totals["errors"][:10])
    return step.finish(len(changed), metadata)
