"""The code location: every asset, the resources they use, the job and its schedule."""

import dagster as dg

from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.crm.assets import crm_sync
from acquisition_assets.crm.client import HubSpotCrmApi
from acquisition_assets.intake.assets import new_leads
from acquisition_assets.nurturing.assets import nurturing_enrollments, nurturing_sends
from acquisition_assets.nurturing.email_client import PostmarkEmailApi
from acquisition_assets.nurturing.engagement import engagement
from acquisition_assets.referrals.assets import referral_invites, referrals
from acquisition_assets.reporting.assets import acquisition_report, performance_metrics
from acquisition_assets.scoring.assets import lead_scoring_model, lead_segments, scored_leads
from acquisition_assets.settings import PipelineSettings

ALL_ASSETS = [
    new_leads,
    lead_scoring_model,
    scored_leads,
    lead_segments,
    nurturing_enrollments,
    nurturing_sends,
    engagement,
    referral_invites,
    referrals,
    crm_sync,
    acquisition_report,
    performance_metrics,
]

acquisition_job = dg.define_asset_job(
    "acquisition_job",
    selection=dg.AssetSelection.assets(*ALL_ASSETS),
    description="Every acquisition step, from new leads to the run's performance figures.",
)

# Stopped until someone turns it on in the UI, so a new deployment sends no email on its own.
acquisition_schedule = dg.ScheduleDefinition(
    name="acquisition_hourly",
    job=acquisition_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)


def build_resources() -> dict[str, dg.ConfigurableResource]:
    """Return the resources, with URLs and secrets read from the environment at run time."""
    return {
        "database": AcquisitionDatabase(),
        "settings": PipelineSettings(),
        "email_api": PostmarkEmailApi(
            api_url=dg.EnvVar("ACQUISITION_EMAIL_API_URL"),
            server_token=dg.EnvVar("ACQUISITION_EMAIL_API_TOKEN"),
        ),
        "crm_api": HubSpotCrmApi(
            api_url=dg.EnvVar("ACQUISITION_CRM_API_URL"),
            access_token=dg.EnvVar("ACQUISITION_CRM_API_TOKEN"),
        ),
    }


defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[acquisition_job],
    schedules=[acquisition_schedule],
    resources=build_resources(),
)
