"""The real X Education export imports completely, and a second import adds nothing."""

import pytest
from sqlalchemy import select

from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import lead_intake, lead_rejections
from acquisition_assets.intake.importer import import_leads
from acquisition_assets_tests.conftest import XEDUCATION_CSV
from acquisition_assets_tests.intake.helpers import count_rows

XEDUCATION_ROWS = 9_240

pytestmark = pytest.mark.skipif(
    not XEDUCATION_CSV.is_file(),
    reason=f"the X Education export is not at {XEDUCATION_CSV}; these tests read the real file",
)


def test_import_leads_xeducation_file_completely(database: AcquisitionDatabase) -> None:
    summary = import_leads(database, XEDUCATION_CSV)

    assert summary.rows_read == XEDUCATION_ROWS
    assert summary.inserted + summary.rejected == XEDUCATION_ROWS
    assert summary.already_imported == 0
    assert count_rows(database, lead_intake) == summary.inserted
    assert count_rows(database, lead_rejections) == summary.rejected
    with database.connect() as connection:
        intake_rows = connection.execute(select(lead_intake).order_by(lead_intake.c.id)).all()
        reasons = connection.execute(select(lead_rejections.c.reason)).scalars().all()
    emails = [row.email for row in intake_rows]
    assert all(email.endswith("@leads.example.com") for email in emails)
    assert len(set(emails)) == len(emails)
    assert all(reason for reason in reasons)
    first = intake_rows[0]
    assert first.source == "xeducation"
    assert first.source_row == 2
    assert first.email == f"{first.external_id.lower()}@leads.example.com"
    # "Lead Number" is not an intake field, so it is kept in the attributes JSON.
    assert '"Lead Number"' in first.attributes

    again = import_leads(database, XEDUCATION_CSV)

    assert again.rows_read == XEDUCATION_ROWS
    assert again.inserted == 0
    assert again.already_imported == summary.inserted
    assert again.rejected == summary.rejected
    assert again.rejected_before == summary.rejected
    assert count_rows(database, lead_intake) == summary.inserted
    assert count_rows(database, lead_rejections) == summary.rejected
