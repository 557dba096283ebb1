"""Funnel figures of the acquisition database, as counts and as a Markdown report."""

from typing import Any

from sqlalchemy import func, select

from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import (
    crm_sync_state,
    email_events,
    email_sends,
    lead_intake,
    lead_rejections,
    leads,
    nurture_enrollments,
    referral_invites,
    referrals,
)

# Report figures may be five minutes old; every write through the database resource
# invalidates them sooner.
REPORT_CACHE_TTL_SECONDS = 300.0
BAR_WIDTH = 40
INTAKE_STAGES = ("intake_rows", "rejected_at_import", "rejected_at_validation")


def _count(database: AcquisitionDatabase, name: str, table: Any, *conditions: Any) -> int:
    statement = select(func.count()).select_from(table)
    for condition in conditions:
        statement = statement.where(condition)
    rows = database.cached_rows(
        f"count:{name}", statement, tables=[table.name], ttl_seconds=REPORT_CACHE_TTL_SECONDS
    )
    return int(next(iter(rows[0].values())))


def funnel_counts(database: AcquisitionDatabase) -> dict[str, int]:
    """Count each stage of the funnel, from intake rows to contacts in the CRM."""
    distinct_leads = func.count(func.distinct(email_events.c.lead_id))

    def engaged(event_type: str) -> int:
        rows = database.cached_rows(
            f"engaged:{event_type}",
            select(distinct_leads).where(email_events.c.event_type == event_type),
            tables=["email_events"],
            ttl_seconds=REPORT_CACHE_TTL_SECONDS,
        )
        return int(next(iter(rows[0].values())))

    return {
        "intake_rows": _count(database, "intake", lead_intake),
        "rejected_at_import": _count(
            database, "rejected_import", lead_rejections, lead_rejections.c.stage == "import"
        ),
        "rejected_at_validation": _count(
            database,
            "rejected_validation",
            lead_rejections,
            lead_rejections.c.stage == "validation",
        ),
        "leads": _count(database, "leads", leads),
        "scored": _count(database, "scored", leads, leads.c.scored_at.is_not(None)),
        "hot": _count(database, "hot", leads, leads.c.segment == "hot"),
        "warm": _count(database, "warm", leads, leads.c.segment == "warm"),
        "cold": _count(database, "cold", leads, leads.c.segment == "cold"),
        "enrolled": _count(database, "enrolled", nurture_enrollments),
        "emails_sent": _count(database, "sent", email_sends, email_sends.c.status == "sent"),
        "emails_pending": _count(
            database, "pending", email_sends, email_sends.c.status.in_(["pending", "sending"])
        ),
        "emails_failed": _count(database, "failed", email_sends, email_sends.c.status == "failed"),
        "leads_delivered": engaged("delivery"),
        "leads_opened": engaged("open"),
        "leads_clicked": engaged("click"),
        "leads_bounced": engaged("bounce"),
        "leads_unsubscribed": engaged("unsubscribe"),
        "referral_invites": _count(database, "invites", referral_invites),
        "referrals_accepted": _count(
            database, "ref_ok", referrals, referrals.c.status == "accepted"
        ),
        "referrals_rejected": _count(
            database, "ref_bad", referrals, referrals.c.status == "rejected"
        ),
        "crm_contacts_synced": _count(
            database, "crm", crm_sync_state, crm_sync_state.c.status == "synced"
        ),
        "crm_contacts_rejected": _count(
            database, "crm_bad", crm_sync_state, crm_sync_state.c.status == "rejected"
        ),
    }


def render_report(counts: dict[str, int]) -> str:
    """Render the funnel as a Markdown table and a bar chart relative to the lead count."""
    lines = ["| stage | count | share |", "| --- | ---: | ---: |"]
    intake_base = (counts["intake_rows"] + counts["rejected_at_import"]) or 1
    lead_base = counts["leads"] or 1
    for name, value in counts.items():
        # Intake and rejection rows are shares of all rows received, the rest of leads.
        if name in INTAKE_STAGES:
            share = f"{100.0 * value / intake_base:.1f} % of rows"
        else:
            share = f"{100.0 * value / lead_base:.1f} % of leads"
        lines.append(f"| {name} | {value:,} | {share} |")
    chart_stages = [
        "leads",
        "enrolled",
        "leads_delivered",
        "leads_opened",
        "leads_clicked",
        "referral_invites",
        "referrals_accepted",
        "crm_contacts_synced",
    ]
    peak = max((counts[name] for name in chart_stages), default=0) or 1
    chart = ["```"]
    for name in chart_stages:
        bar = "#" * round(BAR_WIDTH * counts[name] / peak)
        chart.append(f"{name:<20} {bar:<{BAR_WIDTH}} {counts[name]:,}")
    chart.append("```")
    return "\n".join(["## Acquisition funnel", "", *lines, "", *chart])
