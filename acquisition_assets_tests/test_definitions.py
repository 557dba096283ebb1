"""The code location loads, and its job, resources and settings are what the UI shows."""

import dagster as dg

from acquisition_assets.definitions import ALL_ASSETS, acquisition_job, defs
from acquisition_assets.settings import PipelineSettings

CHAIN = [
    "new_leads", "lead_scoring_model", "scored_leads", "lead_segments", "nurturing_enrollments",
    "nurturing_sends", "engagement", "referral_invites", "referrals", "crm_sync",
    "acquisition_report", "performance_metrics",
]  # fmt: skip


def test_definitions_load_every_asset() -> None:
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == set(CHAIN)


def test_definitions_chain_keeps_every_step() -> None:
    graph = defs.resolve_asset_graph()
    for upstream, downstream in zip(CHAIN[2:], CHAIN[3:], strict=False):
        parents = {key.to_user_string() for key in graph.get(dg.AssetKey(downstream)).parent_keys}
        assert upstream in parents, f"{downstream} does not depend on {upstream}"
    scored_parents = graph.get(dg.AssetKey("scored_leads")).parent_keys
    assert dg.AssetKey("lead_scoring_model") in scored_parents


def test_acquisition_job_covers_all_assets() -> None:
    job = defs.resolve_job_def("acquisition_job")
    assert job.name == acquisition_job.name
    selected = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert selected == {asset.key.to_user_string() for asset in ALL_ASSETS}


def test_api_resources_read_urls_and_keys_from_environment() -> None:
    resources = defs.resources
    for name, fields in {
        "email_api": ("api_url", "server_token"),
        "crm_api": ("api_url", "access_token"),
    }.items():
        for field in fields:
            value = getattr(resources[name], field)
            assert isinstance(value, dg.EnvVar), f"{name}.{field} is not read through dg.EnvVar"


def test_settings_fields_have_descriptions() -> None:
    expected = {
        "enable_caching", "enable_circuit_breaker", "enable_batch_processing", "batch_size",
        "max_workers", "enable_ml_scoring", "enable_multichannel", "max_leads_per_run",
    }  # fmt: skip
    fields = PipelineSettings.model_fields
    assert expected <= set(fields)
    for name, field in fields.items():
        assert field.description, f"settings field {name} has no description"


def test_schedule_starts_stopped() -> None:
    schedule = defs.resolve_schedule_def("acquisition_hourly")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
