"""Reads from the event feed and the referral form: faults defer them, bad sign-ups are rejected."""

from pathlib import Path

import pytest
from sqlalchemy import select

from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import referrals
from acquisition_assets.intake.importer import import_leads
from acquisition_assets.intake.sample import write_sample
from acquisition_assets.sandbox.process import SandboxProcess
from acquisition_assets_tests.conftest import build_resources, materialize_all, metadata_of


def _loaded(database_url: str, tmp_path: Path) -> None:
    import_leads(
        AcquisitionDatabase(url=database_url), write_sample(tmp_path / "leads.csv", rows=30)
    )


@pytest.mark.parametrize(
    "faults",
    [
        {"outage": True},  # every request answered 503
        {"script": [500, 500, 500, 500, 500, 500, 500, 500]},  # a burst of server errors
    ],
)
def test_engagement_read_fault_defers_not_fails(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path, faults: dict
) -> None:
    _loaded(database_url, tmp_path)
    resources = build_resources(database_url, fresh_sandbox)
    materialize_all(resources)

    # Nothing new is due, so the feed read is the first email call of the run.
    fresh_sandbox.set_faults("email", **faults)
    result = materialize_all(resources)

    engagement = metadata_of(result, "engagement")
    assert "deferred_because" in engagement
    assert metadata_of(result, "crm_sync")["deferred"] == 0


def test_referrals_read_fault_defers_not_fails(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    _loaded(database_url, tmp_path)
    resources = build_resources(database_url, fresh_sandbox)
    materialize_all(resources)

    fresh_sandbox.set_faults("crm", outage=True)
    result = materialize_all(resources)

    assert "deferred_because" in metadata_of(result, "referrals")


@pytest.mark.parametrize(
    "values",
    [
        {"email": "friend@example.com", "referral_code": "X" * 65},  # code too long to store
        {"email": "friend@example.com", "firstname": "F" * 200, "referral_code": "R1"},
        {"email": "friend@example.com", "firstname": "F\x00", "referral_code": "R1"},
    ],
)
def test_referrals_malformed_signup_rejected_with_reason(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path, values: dict
) -> None:
    _loaded(database_url, tmp_path)
    fresh_sandbox.add_submission(values)
    fresh_sandbox.add_submission({"email": "second@example.com", "referral_code": "R1"})
    result = materialize_all(build_resources(database_url, fresh_sandbox))

    assert metadata_of(result, "referrals")["submissions_processed"] == 2
    with AcquisitionDatabase(url=database_url).connect() as connection:
        reasons = connection.execute(select(referrals.c.reason)).scalars().all()
    assert any(reason.startswith("malformed sign-up") for reason in reasons)
    assert any(reason.startswith("unknown referral code") for reason in reasons)
