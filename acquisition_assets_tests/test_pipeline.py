"""The whole asset graph, materialized in-process against the sandbox over HTTP."""

from pathlib import Path

from sqlalchemy import select

from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import (
    crm_sync_state,
    email_sends,
    lead_intake,
    lead_rejections,
    leads,
    nurture_enrollments,
    referrals,
)
from acquisition_assets.core.watermarks import read_watermark
from acquisition_assets.crm.assets import contact_hash, contact_properties
from acquisition_assets.definitions import ALL_ASSETS
from acquisition_assets.intake.importer import import_leads
from acquisition_assets.intake.sample import write_sample
from acquisition_assets.sandbox.process import SandboxProcess
from acquisition_assets_tests.conftest import (
    build_resources,
    count_rows,
    materialize_all,
    metadata_of,
)


def _contacts_out_of_sync(database: AcquisitionDatabase) -> int:
    """Count segmented leads whose CRM properties differ from what was last upserted."""
    with database.connect() as connection:
        rows = connection.execute(
            select(leads, crm_sync_state.c.contact_hash.label("synced_hash"))
            .outerjoin(crm_sync_state, crm_sync_state.c.lead_id == leads.c.id)
            .where(leads.c.segmented_at.is_not(None))
        ).all()
    return sum(1 for row in rows if contact_hash(contact_properties(row)) != row.synced_hash)


def _load_sample(database_url: str, tmp_path: Path, rows: int = 120) -> AcquisitionDatabase:
    database = AcquisitionDatabase(url=database_url)
    import_leads(database, write_sample(tmp_path / "leads.csv", rows=rows))
    return database


def test_graph_materializes_every_asset(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = _load_sample(database_url, tmp_path)
    result = materialize_all(build_resources(database_url, fresh_sandbox))

    materialized = {
        event.asset_key.to_user_string() for event in result.get_asset_materialization_events()
    }
    assert materialized == {asset.key.to_user_string() for asset in ALL_ASSETS}
    assert metadata_of(result, "new_leads")["leads_created"] == 120
    assert metadata_of(result, "nurturing_sends")["sent"] > 0
    assert metadata_of(result, "engagement")["events_fetched"] > 0
    assert metadata_of(result, "crm_sync")["upserted"] > 0
    assert "Acquisition funnel" in metadata_of(result, "acquisition_report")["report"]
    assert count_rows(database, leads) == 120


def test_graph_counts_consistent_from_intake_to_crm(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = _load_sample(database_url, tmp_path)
    # Enough clicks that referral invites go out and friends sign up within three runs.
    fresh_sandbox.set_faults("email", open_rate=0.9, click_rate=0.8)
    resources = build_resources(database_url, fresh_sandbox)
    for _ in range(3):
        materialize_all(resources)

    intake = count_rows(database, lead_intake)
    lead_count = count_rows(database, leads)
    validation_rejections = count_rows(
        database, lead_rejections, lead_rejections.c.stage == "validation"
    )
    with database.connect() as connection:
        watermark = int(read_watermark(connection, "new_leads.last_intake_id", "0"))
    # Sign-ups that the last run's referrals step wrote wait for the next run's new_leads.
    pending = count_rows(database, lead_intake, lead_intake.c.id > watermark)
    assert intake == lead_count + validation_rejections + pending
    # The sample has three bad rows, each rejected at import with a reason.
    assert count_rows(database, lead_rejections, lead_rejections.c.stage == "import") == 3
    # Referral sign-ups became intake rows and then leads.
    accepted = count_rows(database, referrals, referrals.c.status == "accepted")
    assert accepted > 0
    referral_intake = count_rows(database, lead_intake, lead_intake.c.source == "referral")
    assert referral_intake == accepted
    assert count_rows(database, leads, leads.c.source == "referral") <= accepted
    # Only leads in the nurturing stage are enrolled, and every send belongs to a lead.
    enrolled_outside = count_rows(
        database,
        nurture_enrollments,
        nurture_enrollments.c.status == "active",
        nurture_enrollments.c.lead_id.in_(
            select(leads.c.id).where(leads.c.lifecycle_stage != "nurturing")
        ),
    )
    assert enrolled_outside == 0
    synced = count_rows(database, crm_sync_state, crm_sync_state.c.status == "synced")
    assert synced == fresh_sandbox.contacts()["count"]
    assert synced == count_rows(database, leads, leads.c.segmented_at.is_not(None))


def test_graph_rerun_sends_no_email_twice(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = _load_sample(database_url, tmp_path)
    resources = build_resources(database_url, fresh_sandbox)
    materialize_all(resources)
    sent_after_first = count_rows(database, email_sends, email_sends.c.status == "sent")
    second = materialize_all(resources)

    # Later sequence steps are days away, so the second run sends only the first step to
    # leads it enrolled itself (friends who signed up through a referral).
    assert (
        metadata_of(second, "nurturing_sends")["sent"]
        == metadata_of(second, "nurturing_enrollments")["enrolled"]
    )
    messages = fresh_sandbox.messages()
    assert messages["count"] == count_rows(database, email_sends, email_sends.c.status == "sent")
    assert messages["count"] >= sent_after_first
    assert set(messages["by_idempotency_key"].values()) == {1}


def test_graph_rerun_upserts_only_changed_contacts(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = _load_sample(database_url, tmp_path)
    resources = build_resources(database_url, fresh_sandbox)
    materialize_all(resources)
    materialize_all(resources)

    for _ in range(2):
        inputs_before = fresh_sandbox.contacts()["upsert_inputs"]
        result = materialize_all(resources)
        upserted = metadata_of(result, "crm_sync")["upserted"]
        # crm_sync runs after every step that changes leads, so what it found changed is
        # exactly what reached the CRM, and nothing else did.
        assert fresh_sandbox.contacts()["upsert_inputs"] - inputs_before == upserted
        assert upserted == metadata_of(result, "crm_sync")["contacts_changed"]
        assert _contacts_out_of_sync(database) == 0

    # Once no new leads, events or sign-ups arrive, a run upserts nothing at all.
    for _ in range(6):
        result = materialize_all(resources)
        quiet = (
            metadata_of(result, "new_leads")["leads_created"] == 0
            and metadata_of(result, "engagement")["events_fetched"] == 0
            and metadata_of(result, "referrals")["submissions_processed"] == 0
        )
        if quiet:
            break
    assert quiet, "the pipeline kept finding new work after 6 runs"
    final = materialize_all(resources)
    assert metadata_of(final, "crm_sync")["upserted"] == 0
    assert metadata_of(final, "nurturing_sends")["sent"] == 0


def test_graph_reads_feeds_of_replaced_sandbox(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = _load_sample(database_url, tmp_path)
    fresh_sandbox.set_faults("email", open_rate=0.9, click_rate=0.8)
    resources = build_resources(database_url, fresh_sandbox)
    materialize_all(resources)

    # A new event feed and form store: the cursors stored by the first run no longer apply.
    fresh_sandbox.reset()
    fresh_sandbox.set_faults("email", open_rate=0.9, click_rate=0.8)
    import_leads(database, write_sample(tmp_path / "more.csv", rows=40, seed=99))
    second = materialize_all(resources)

    sent = metadata_of(second, "nurturing_sends")["sent"]
    engagement = metadata_of(second, "engagement")
    assert sent >= 40
    # Every accepted message produces a delivery or a bounce event at least.
    assert engagement["delivery_events"] + engagement["bounce_events"] >= sent
    assert engagement["events_for_unknown_messages"] == 0
    assert metadata_of(second, "referrals")["submissions_processed"] > 0


def test_performance_metrics_report_run_cache_totals(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    _load_sample(database_url, tmp_path, rows=30)
    result = materialize_all(build_resources(database_url, fresh_sandbox))

    figures = metadata_of(result, "performance_metrics")
    assert figures["cache_hits"] == figures["figures"]["cache"]["hits"]
    assert figures["cache_misses"] == figures["figures"]["cache"]["misses"]
    # In one process, performance_metrics reads the report's counts from the cache.
    assert figures["cache_hits"] > 0
