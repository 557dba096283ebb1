"""The engagement asset: delivery, open, click, bounce and unsubscribe events from the feed."""

import json
from collections import Counter
from datetime import datetime
from typing import Any

import dagster as dg
from sqlalchemy import bindparam, select, update

from acquisition_assets.core.clock import as_utc, utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.errors import ApiError
from acquisition_assets.core.schema import email_events, email_sends, leads
from acquisition_assets.core.sql import chunked, insert_ignore
from acquisition_assets.core.steps import StepRecorder, record_deferral
from acquisition_assets.core.watermarks import lock_watermark, read_watermark, set_watermark
from acquisition_assets.nurturing.email_client import PostmarkEmailApi
from acquisition_assets.settings import PipelineSettings

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
        except ApiError as error:
            # An open breaker, a long Retry-After or a transient failure defers the read.
            # A rejected request, such as a wrong token, is a configuration error and fails.
            if not error.transient:
                raise
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
    record_deferral(context, settings, "fetching events", deferred_because, metadata)
    return step.finish(fetched, metadata)
