"""The new_leads asset on each backend: validation, de-duplication and the watermark."""

import hashlib
import unicodedata
from pathlib import Path

import dagster as dg
from sqlalchemy import select

from acquisition_assets.core.clock import utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import lead_intake, lead_rejections, leads
from acquisition_assets.core.watermarks import read_watermark
from acquisition_assets.intake.assets import WATERMARK, new_leads
from acquisition_assets.intake.importer import import_leads
from acquisition_assets.intake.mapping import load_mapping
from acquisition_assets.settings import PipelineSettings
from acquisition_assets_tests.conftest import metadata_of
from acquisition_assets_tests.intake.helpers import (
    count_rows,
    write_xeducation_csv,
    xeducation_row,
)


def _materialize(database_url: str, **settings: object) -> dict[str, object]:
    """Materialize new_leads alone and return its metadata."""
    result = dg.materialize(
        [new_leads],
        resources={
            "database": AcquisitionDatabase(url=database_url),
            "settings": PipelineSettings(**settings),
        },
    )
    assert result.success
    return metadata_of(result, "new_leads")


def _add_intake(database: AcquisitionDatabase, *emails: str | None) -> list[int]:
    """Insert intake rows as another writer would, without the importer's normalization."""
    rows = []
    for email in emails:
        key = hashlib.sha256(f"test\x1f{len(rows)}\x1f{email}".encode()).hexdigest()
        rows.append(
            {
                "intake_key": key,
                "content_hash": key,
                "source": "test",
                "email": email,
                "email_opt_in": True,
                "received_at": utcnow(),
            }
        )
    with database.begin() as connection:
        result = connection.execute(lead_intake.insert().returning(lead_intake.c.id), rows)
        return list(result.scalars())


def _lead_emails(database: AcquisitionDatabase) -> list[str]:
    with database.connect() as connection:
        return list(connection.execute(select(leads.c.email).order_by(leads.c.id)).scalars())


def _validation_reasons(database: AcquisitionDatabase) -> dict[int, str]:
    with database.connect() as connection:
        rows = connection.execute(
            select(lead_rejections.c.intake_id, lead_rejections.c.reason_code).where(
                lead_rejections.c.stage == "validation"
            )
        ).all()
    return dict(rows)


def test_new_leads_rejects_case_duplicates(database_url: str) -> None:
    database = AcquisitionDatabase(url=database_url)
    ids = _add_intake(
        database, "Ana@Example.com", "bo@example.com", "ana@example.com", " ANA@EXAMPLE.COM "
    )

    metadata = _materialize(database_url)

    assert metadata["leads_created"] == 2
    assert metadata["rejected"] == 2
    assert metadata["rejection_reasons"] == {"duplicate_email": 2}
    assert _lead_emails(database) == ["ana@example.com", "bo@example.com"]
    assert _validation_reasons(database) == {ids[2]: "duplicate_email", ids[3]: "duplicate_email"}


def test_new_leads_rejects_address_of_earlier_lead(database_url: str) -> None:
    database = AcquisitionDatabase(url=database_url)
    _add_intake(database, "ana@example.com")
    _materialize(database_url)
    (later,) = _add_intake(database, "ANA@example.COM")

    metadata = _materialize(database_url)

    assert metadata["leads_created"] == 0
    assert _validation_reasons(database) == {later: "duplicate_email"}
    assert count_rows(database, leads) == 1


def test_new_leads_matches_unicode_forms(database_url: str) -> None:
    database = AcquisitionDatabase(url=database_url)
    composed = unicodedata.normalize("NFC", "josé@example.com")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    _add_intake(database, composed)
    _materialize(database_url)
    (later,) = _add_intake(database, decomposed)

    metadata = _materialize(database_url)

    assert metadata["leads_created"] == 0
    assert _validation_reasons(database) == {later: "duplicate_email"}
    assert _lead_emails(database) == [composed]


def test_new_leads_rejects_invalid_and_missing_addresses(database_url: str) -> None:
    database = AcquisitionDatabase(url=database_url)
    ids = _add_intake(database, "bad@foo.invalid", None, "ana@example.com")

    metadata = _materialize(database_url)

    assert metadata["leads_created"] == 1
    assert _validation_reasons(database) == {ids[0]: "invalid_email", ids[1]: "missing_field"}


def test_new_leads_dedupes_imported_case_variants(database_url: str, tmp_path: Path) -> None:
    database = AcquisitionDatabase(url=database_url)
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text(
        "source: webinar\ncolumns:\n  external_id: Id\n  email: Email\n", encoding="utf-8"
    )
    csv_file = tmp_path / "webinar.csv"
    csv_file.write_text("Id,Email\nw-1,Ana@Example.com\nw-2,ana@EXAMPLE.com\n", encoding="utf-8")

    assert import_leads(database, csv_file, load_mapping(mapping_file)).inserted == 2

    metadata = _materialize(database_url)

    assert metadata["leads_created"] == 1
    assert metadata["rejection_reasons"] == {"duplicate_email": 1}
    assert _lead_emails(database) == ["ana@example.com"]


def test_new_leads_respects_max_leads_per_run(database_url: str, tmp_path: Path) -> None:
    database = AcquisitionDatabase(url=database_url)
    path = write_xeducation_csv(
        tmp_path / "leads.csv", [xeducation_row(f"lead-{n}") for n in range(1, 6)]
    )
    import_leads(database, path)

    created, pending = [], []
    for _ in range(4):
        metadata = _materialize(database_url, max_leads_per_run=2)
        created.append(metadata["leads_created"])
        pending.append(metadata["more_intake_pending"])

    assert created == [2, 2, 1, 0]
    assert pending == [True, True, False, False]
    assert count_rows(database, leads) == 5
    with database.connect() as connection:
        last_intake = connection.execute(
            select(lead_intake.c.id).order_by(lead_intake.c.id.desc())
        ).scalar()
        assert read_watermark(connection, WATERMARK, "0") == str(last_intake)


def test_new_leads_rerun_adds_nothing(database_url: str, tmp_path: Path) -> None:
    database = AcquisitionDatabase(url=database_url)
    _add_intake(database, "ana@example.com", "ANA@example.com", "bad@foo.invalid")
    first = _materialize(database_url)
    leads_before = count_rows(database, leads)
    rejections_before = count_rows(database, lead_rejections)

    second = _materialize(database_url)

    assert first["leads_created"] == 1
    assert first["rejected"] == 2
    assert second["intake_rows_read"] == 0
    assert second["leads_created"] == 0
    assert second["rejected"] == 0
    assert count_rows(database, leads) == leads_before
    assert count_rows(database, lead_rejections) == rejections_before
