"""Assets that invite engaged leads to refer friends and turn referral sign-ups into leads."""

import hashlib
import json
import secrets
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg
from sqlalchemy import bindparam, func, select, update

from acquisition_assets.core.clock import utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.errors import (
    ApiClientError,
    ApiError,
)
from acquisition_assets.core.privacy import mask_email
from acquisition_assets.core.schema import email_events, lead_intake, leads
from acquisition_assets.core.schema import referral_invites as referral_invites_table
from acquisition_assets.core.schema import referrals as referrals_table
from acquisition_assets.core.sql import chunked, insert_ignore
from acquisition_assets.core.steps import StepRecorder, preview, record_deferral
from acquisition_assets.core.watermarks import lock_watermark, read_watermark, set_watermark
from acquisition_assets.crm.client import HubSpotCrmApi
from acquisition_assets.intake.validation import InvalidValue, normalize_email
from acquisition_assets.nurturing.assets import raise_if_needed, send_report_metadata
from acquisition_assets.nurturing.email_client import PostmarkEmailApi
from acquisition_assets.nurturing.ledger import enqueue, send_pending
from acquisition_assets.settings import PipelineSettings

INVITE_KIND = "referral_invite"
SUBMISSION_WATERMARK = "referrals.form_cursor"
REWARD_POINTS = 100
# A referrer earns rewards for at most this many friends, which caps the gain from fake sign-ups.
MAX_REWARDED_PER_REFERRER = 10
SUBMISSIONS_PER_PAGE = 50


def _referral_code(lead_id: int) -> str:
    # The lead id keeps codes unique; the random part keeps them unguessable.
    return f"R{lead_id:X}{secrets.token_hex(3).upper()}"


@dg.asset(
    group_name="referrals",
    deps=["engagement"],
    kinds={"postmark", "sql"},
    description="Leads who clicked a nurturing email get a referral code and an invite.",
)
def referral_invites(
    context: dg.AssetExecutionContext,
    database: AcquisitionDatabase,
    settings: PipelineSettings,
    email_api: PostmarkEmailApi,
) -> dg.MaterializeResult:
    step = StepRecorder(context, database, settings)
    now = utcnow()
    clicked = select(email_events.c.lead_id).where(email_events.c.event_type == "click")
    with database.begin(writes=["referral_invites", "leads", "email_sends"]) as connection:
        candidates = connection.execute(
            select(leads.c.id, leads.c.email, leads.c.first_name)
            .outerjoin(referral_invites_table, referral_invites_table.c.lead_id == leads.c.id)
            .where(
                referral_invites_table.c.id.is_(None),
                leads.c.id.in_(clicked),
                leads.c.email_status == "active",
                leads.c.email_opt_in.is_(True),
            )
            .order_by(leads.c.id)
            .limit(settings.max_leads_per_run)
        ).all()
        invites, codes, sends = [], [], []
        for lead in candidates:
            code = _referral_code(lead.id)
            key = f"{INVITE_KIND}:{lead.id}"
            invites.append(
                {"lead_id": lead.id, "referral_code": code, "send_key": key, "invited_at": now}
            )
            codes.append({"lead": lead.id, "code": code, "now": now})
            sends.append(
                {
                    "idempotency_key": key,
                    "lead_id": lead.id,
                    "kind": INVITE_KIND,
                    "to_address": lead.email,
                    "subject": "Invite a friend, both of you get a course voucher",
                    "text_body": (
                        f"Hi {lead.first_name or 'there'},\n\nshare your link and you both get a "
                        f"voucher: https://example.com/referral?code={code}"
                    ),
                    "tag": "referral-invite",
                    "metadata_json": json.dumps({"lead_id": str(lead.id), "referral_code": code}),
                }
            )
        insert_ignore(connection, referral_invites_table, invites, ["lead_id"])
        # A run going on at the same time may have invited some of these leads first. Only
        # the codes this run stored go to the leads and into invite emails.
        stored = _stored_codes(connection, [invite["lead_id"] for invite in invites])
        invites = [i for i in invites if stored.get(i["lead_id"]) == i["referral_code"]]
        codes = [c for c in codes if stored.get(c["lead"]) == c["code"]]
        sends = [
            m
            for m in sends
            if stored.get(m["lead_id"]) == json.loads(m["metadata_json"])["referral_code"]
        ]
        if codes:
            connection.execute(
                update(leads)
                .where(leads.c.id == bindparam("lead"))
                .values(referral_code=bindparam("code"), updated_at=bindparam("now")),
                codes,
            )
        queued = enqueue(connection, sends)

    client = email_api.open(database, settings)
    step.track(client.http)
    report = send_pending(
        database,
        client,
        INVITE_KIND,
        limit=settings.max_leads_per_run,
        batch_size=settings.batch_size,
        workers=settings.worker_count(),
        from_address=email_api.from_address,
        message_stream=email_api.message_stream,
        reconcile_after=timedelta(seconds=email_api.reconcile_after_seconds),
    )
    context.log.info("referral_invites: %d invited, %d invites sent", len(invites), report.sent)
    raise_if_needed(report, settings, "referral_invites")
    return step.finish(
        len(invites) + report.claimed,
        {
            "invited": dg.MetadataValue.int(len(invites)),
            "queued": dg.MetadataValue.int(queued),
            **send_report_metadata(report),
        },
    )


def _stored_codes(connection: Any, lead_ids: list[int]) -> dict[int, str]:
    stored: dict[int, str] = {}
    for chunk in chunked(lead_ids, 500):
        stored.update(
            connection.execute(
                select(
                    referral_invites_table.c.lead_id, referral_invites_table.c.referral_code
                ).where(referral_invites_table.c.lead_id.in_(chunk))
            ).all()
        )
    return stored


def _values(submission: dict[str, Any]) -> dict[str, str]:
    return {str(v.get("name")): str(v.get("value") or "") for v in submission.get("values", [])}


# Maximum lengths that the referral and intake columns accept.
FIELD_LIMITS = {"referral_code": 32, "email": 320, "firstname": 128}


def _malformed(values: dict[str, str]) -> str | None:
    """Return why a sign-up's values cannot be stored, or None when they can."""
    for name, value in values.items():
        if "\x00" in value:
            return f"field {name!r} contains a NUL character"
    for name, limit in FIELD_LIMITS.items():
        if len(values.get(name, "")) > limit:
            return f"field {name!r} is longer than {limit} characters"
    return None


def judge_submissions(
    submissions: list[dict[str, Any]],
    referrers: dict[str, Any],
    known_emails: set[str],
    rewarded_so_far: Counter,
    now: datetime,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check each sign-up and return (referral rows, intake rows for the accepted friends)."""
    referral_rows, intake_rows = [], []
    seen: set[str] = set()
    for submission in submissions:
        values = _values(submission)
        code = values.get("referral_code", "").strip()
        raw_email = values.get("email", "")
        key = submission_key(submission)
        submitted_ms = submission.get("submittedAt")
        submitted = (
            datetime.fromtimestamp(submitted_ms / 1000, timezone.utc) if submitted_ms else None
        )
        row = {
            "submission_key": key,
            "referral_code": code or None,
            "referrer_lead_id": None,
            "referred_email": None,
            "referred_intake_id": None,
            "status": "rejected",
            "reward_points": 0,
            "submitted_at": submitted,
            "processed_at": now,
        }
        referral_rows.append(row)
        problem = _malformed(values)
        if problem:
            # Stored without the offending values, which the columns could not hold.
            row["referral_code"] = None
            row["reason"] = f"malformed sign-up: {problem}"
            continue
        referrer = referrers.get(code)
        try:
            email = normalize_email(raw_email)
        except InvalidValue as error:
            row["reason"] = str(error).replace(raw_email, mask_email(raw_email))
            continue
        row["referred_email"] = email
        if referrer is None:
            row["reason"] = f"unknown referral code {code!r}"
            continue
        row["referrer_lead_id"] = referrer.id
        if email == referrer.email:
            row["reason"] = "self-referral: the friend's address is the referrer's own"
        elif email in known_emails:
            row["reason"] = "the friend is already a lead"
        elif email in seen:
            row["reason"] = "the friend was referred twice in the same batch"
        else:
            seen.add(email)
            row["status"] = "accepted"
            if rewarded_so_far[referrer.id] < MAX_REWARDED_PER_REFERRER:
                rewarded_so_far[referrer.id] += 1
                row["reward_points"] = REWARD_POINTS
                row["reason"] = f"valid referral; {REWARD_POINTS} points to the referrer"
            else:
                row["reason"] = (
                    f"valid referral; no reward past {MAX_REWARDED_PER_REFERRER} per referrer"
                )
            intake_rows.append(
                {
                    "intake_key": hashlib.sha256(f"referral\x1f{email}".encode()).hexdigest(),
                    "content_hash": key,
                    "source": "referral",
                    "email": email,
                    "first_name": values.get("firstname") or None,
                    "lead_source": "referral",
                    "lead_origin": "Referral Form",
                    # The referral form requires consent to email before it submits.
                    "email_opt_in": True,
                    "call_opt_in": False,
                    "referral_code": code,
                    "attributes": json.dumps({"page_url": submission.get("pageUrl")}),
                    "received_at": now,
                }
            )
    return referral_rows, intake_rows


@dg.asset(
    group_name="referrals",
    deps=["referral_invites"],
    kinds={"hubspot", "sql"},
    description="Referral sign-ups attributed to their referrer, checked, rewarded and admitted.",
)
def referrals(
    context: dg.AssetExecutionContext,
    database: AcquisitionDatabase,
    settings: PipelineSettings,
    crm_api: HubSpotCrmApi,
) -> dg.MaterializeResult:
    step = StepRecorder(context, database, settings)
    client = crm_api.open(database, settings)
    step.track(client.http)
    outcomes: Counter = Counter()
    examples: list[dict[str, Any]] = []
    processed = 0
    deferred_because = None
    while processed < settings.max_leads_per_run:
        with database.connect() as connection:
            cursor = read_watermark(connection, SUBMISSION_WATERMARK, "")
        try:
            page, next_cursor, used_cursor = _read_page(context, client, crm_api, cursor)
        except ApiError as error:
            # An open breaker, a long Retry-After or a transient failure defers the read.
            # A rejected request, such as a wrong token, is a configuration error and fails.
            if not error.transient:
                raise
            # The cursor stays put, so the next run reads these sign-ups.
            deferred_because = str(error)
            break
        with database.begin(
            writes=["referrals", "lead_intake", "pipeline_watermarks"]
        ) as connection:
            if lock_watermark(connection, SUBMISSION_WATERMARK, "") != cursor:
                continue  # another run stored this page meanwhile
            rows, intake_rows = _judge_page(connection, page)
            insert_ignore(connection, referrals_table, rows, ["submission_key"])
            insert_ignore(connection, lead_intake, intake_rows, ["intake_key"])
            _link_intake(connection, rows)
            # On the last page the cursor stays at this page's start: the next run reads the
            # page again and takes only the sign-ups that it has not stored yet.
            set_watermark(connection, SUBMISSION_WATERMARK, next_cursor or used_cursor)
        processed += len(rows)
        outcomes.update(row["status"] for row in rows)
        examples.extend(rows)
        if not next_cursor:
            break
    context.log.info("referrals: %d sign-ups processed: %s", processed, dict(outcomes))
    metadata = {
        "submissions_processed": dg.MetadataValue.int(processed),
        "accepted": dg.MetadataValue.int(outcomes.get("accepted", 0)),
        "rejected": dg.MetadataValue.int(outcomes.get("rejected", 0)),
        "preview": preview(
            [{**r, "referred_email": mask_email(r["referred_email"])} for r in examples],
            ["referral_code", "referred_email", "status", "reason", "reward_points"],
        ),
    }
    record_deferral(context, settings, "reading sign-ups", deferred_because, metadata)
    return step.finish(processed, metadata)


def _read_page(
    context: dg.AssetExecutionContext, client: Any, crm_api: HubSpotCrmApi, cursor: str
) -> tuple[list[dict[str, Any]], str | None, str]:
    """Read one page of sign-ups; return it, the next cursor and the cursor it was read at.

    A stored cursor that the CRM rejects (a replaced form, a restarted sandbox) is dropped
    and the form is read from the start. Sign-ups stored before are skipped by their key.
    """
    guid = crm_api.referral_form_guid
    try:
        page, next_cursor = client.form_submissions(guid, cursor or None, SUBMISSIONS_PER_PAGE)
        return page, next_cursor, cursor
    except ApiClientError as error:
        if not cursor or error.status != 400:
            raise
        context.log.warning("referrals: stored cursor rejected (%s); reading from the start", error)
    page, next_cursor = client.form_submissions(guid, None, SUBMISSIONS_PER_PAGE)
    return page, next_cursor, ""


def submission_key(submission: dict[str, Any]) -> str:
    """Identify a sign-up by its whole content, including the time it was submitted."""
    return hashlib.sha256(json.dumps(submission, sort_keys=True).encode()).hexdigest()


def _judge_page(connection: Any, page: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    stored = (
        set(
            connection.execute(
                select(referrals_table.c.submission_key).where(
                    referrals_table.c.submission_key.in_([submission_key(s) for s in page])
                )
            ).scalars()
        )
        if page
        else set()
    )
    page = [submission for submission in page if submission_key(submission) not in stored]
    codes = {_values(s).get("referral_code", "").strip() for s in page} - {""}
    referrers = (
        {
            row.referral_code: row
            for row in connection.execute(
                select(leads.c.id, leads.c.email, leads.c.referral_code).where(
                    leads.c.referral_code.in_(codes)
                )
            ).all()
        }
        if codes
        else {}
    )
    emails = set()
    for submission in page:
        try:
            emails.add(normalize_email(_values(submission).get("email", "")))
        except InvalidValue:
            pass
    known = set()
    for chunk in chunked(sorted(emails), 500):
        known.update(
            connection.execute(select(leads.c.email).where(leads.c.email.in_(chunk))).scalars()
        )
        known.update(
            connection.execute(
                select(lead_intake.c.email).where(lead_intake.c.email.in_(chunk))
            ).scalars()
        )
    rewarded = (
        Counter(
            dict(
                connection.execute(
                    select(referrals_table.c.referrer_lead_id, func.count())
                    .where(
                        referrals_table.c.reward_points > 0,
                        referrals_table.c.referrer_lead_id.in_([r.id for r in referrers.values()]),
                    )
                    .group_by(referrals_table.c.referrer_lead_id)
                ).all()
            )
        )
        if referrers
        else Counter()
    )
    return judge_submissions(page, referrers, known, rewarded, utcnow())


def _link_intake(connection: Any, rows: list[dict[str, Any]]) -> None:
    accepted = [r for r in rows if r["status"] == "accepted"]
    if not accepted:
        return
    connection.execute(
        update(referrals_table)
        .where(referrals_table.c.submission_key == bindparam("key"))
        .values(
            referred_intake_id=select(lead_intake.c.id)
            .where(lead_intake.c.email == bindparam("email"), lead_intake.c.source == "referral")
            .scalar_subquery()
        ),
        [{"key": r["submission_key"], "email": r["referred_email"]} for r in accepted],
    )
