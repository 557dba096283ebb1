"""The real X Education export, from import to CRM, on each database backend."""

import pytest
from sqlalchemy import func, select

from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import (
    crm_sync_state,
    email_sends,
    lead_intake,
    lead_rejections,
    leads,
)
from acquisition_assets.definitions import ALL_ASSETS
from acquisition_assets.intake.importer import import_leads
from acquisition_assets.sandbox.process import SandboxProcess
from acquisition_assets_tests.conftest import (
    XEDUCATION_CSV,
    build_resources,
    count_rows,
    materialize_all,
    metadata_of,
)

XEDUCATION_ROWS = 9_240

pytestmark = pytest.mark.skipif(
    not XEDUCATION_CSV.is_file(), reason=f"the X Education export is not at {XEDUCATION_CSV}"
)


def test_xeducation_export_runs_from_intake_to_crm(
    database_url: str, fresh_sandbox: SandboxProcess
) -> None:
    database = AcquisitionDatabase(url=database_url)
    summary = import_leads(database, XEDUCATION_CSV)
    assert summary.rows_read == XEDUCATION_ROWS
    assert summary.inserted + summary.rejected == XEDUCATION_ROWS
    assert (
        count_rows(database, lead_intake)
        + count_rows(database, lead_rejections, lead_rejections.c.stage == "import")
        == XEDUCATION_ROWS
    )
    with database.connect() as connection:
        reasons = connection.execute(select(lead_rejections.c.reason)).scalars().all()
    assert all(reason for reason in reasons)

    resources = build_resources(database_url, fresh_sandbox, batch_size=100)
    first = materialize_all(resources)
    materialized = {e.asset_key.to_user_string() for e in first.get_asset_materialization_events()}
    assert materialized == {asset.key.to_user_string() for asset in ALL_ASSETS}

    created = metadata_of(first, "new_leads")["leads_created"]
    rejected = metadata_of(first, "new_leads")["rejected"]
    assert created + rejected == summary.inserted
    assert metadata_of(first, "lead_scoring_model")["trained"] is True
    assert metadata_of(first, "lead_scoring_model")["holdout_auc"] > 0.7
    # Every lead who consented and has not converted got the first email of a sequence.
    with database.connect() as connection:
        nurtured = connection.execute(
            select(func.count()).select_from(leads).where(leads.c.lifecycle_stage == "nurturing")
        ).scalar_one()
    assert metadata_of(first, "nurturing_enrollments")["enrolled"] >= nurtured

    second = materialize_all(resources)
    assert metadata_of(second, "crm_sync")["deferred"] == 0
    messages = fresh_sandbox.messages()
    assert set(messages["by_idempotency_key"].values()) == {1}
    assert messages["count"] == count_rows(database, email_sends, email_sends.c.status == "sent")
    segmented = count_rows(database, leads, leads.c.segmented_at.is_not(None))
    assert count_rows(database, crm_sync_state, crm_sync_state.c.status == "synced") == segmented
    assert fresh_sandbox.contacts()["count"] == segmented
