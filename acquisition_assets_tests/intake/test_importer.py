"""The CSV importer on each backend: every row inserted, already imported or rejected."""

import json
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine.interfaces import ExecuteStyle

from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import lead_intake, lead_rejections
from acquisition_assets.intake import importer
from acquisition_assets.intake.importer import ImportSummary, import_leads
from acquisition_assets.intake.mapping import MappingError, load_mapping
from acquisition_assets.intake.sample import write_sample
from acquisition_assets_tests.intake.helpers import (
    XEDUCATION_HEADERS,
    count_rows,
    intake_rows,
    rejections,
    write_csv,
    write_xeducation_csv,
    xeducation_row,
)

CUSTOM_HEADERS = ["Contact ID", "E-mail", "First Name", "Visits", "Campaign"]
CUSTOM_MAPPING = """\
source: webinar
columns:
  external_id: Contact ID
  email: E-mail
  first_name: First Name
  total_visits: Visits
"""


def _assert_nothing_lost(summary: ImportSummary) -> None:
    assert summary.rows_read == summary.inserted + summary.already_imported + summary.rejected


def _custom_mapping(tmp_path: Path):
    path = tmp_path / "webinar.yaml"
    path.write_text(CUSTOM_MAPPING, encoding="utf-8")
    return load_mapping(path)


def _custom_row(contact_id: str, email: str, **overrides: str) -> dict[str, str]:
    row = {
        "Contact ID": contact_id,
        "E-mail": email,
        "First Name": "Ana",
        "Visits": "2",
        "Campaign": "spring",
    }
    row.update(overrides)
    return row


def _reasons_by_row(database: AcquisitionDatabase) -> dict[int, str]:
    return {row.source_row: row.reason_code for row in rejections(database)}


def test_import_leads_derives_placeholder_addresses(
    database: AcquisitionDatabase, tmp_path: Path
) -> None:
    path = write_xeducation_csv(
        tmp_path / "leads.csv", [xeducation_row("7A1B-c2"), xeducation_row("lead-2")]
    )

    summary = import_leads(database, path)

    assert summary.inserted == 2
    rows = intake_rows(database)
    assert [row.email for row in rows] == ["7a1b-c2@leads.example.com", "lead-2@leads.example.com"]
    assert rows[0].external_id == "7A1B-c2"
    assert rows[0].source == "xeducation"
    assert rows[0].source_row == 2
    # "Do Not Email: No" means the lead did not opt out of email.
    assert rows[0].email_opt_in is True
    assert rows[0].total_visits == 3
    assert rows[0].page_views_per_visit == 1.5
    # "Select" is the web form's unchosen dropdown value, so it is stored as no value.
    assert rows[0].specialization is None


def test_import_leads_custom_layout_through_mapping(
    database: AcquisitionDatabase, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "webinar.csv",
        CUSTOM_HEADERS,
        [_custom_row("w-1", "Ana@Example.com"), _custom_row("w-2", " bo@example.com ")],
    )

    summary = import_leads(database, path, _custom_mapping(tmp_path))

    assert summary.inserted == 2
    assert summary.rejected == 0
    rows = intake_rows(database)
    assert [row.email for row in rows] == ["ana@example.com", "bo@example.com"]
    assert rows[0].source == "webinar"
    assert rows[0].first_name == "Ana"
    assert rows[0].total_visits == 2
    # An unmapped column is kept in the attributes JSON.
    assert json.loads(rows[0].attributes) == {"Campaign": "spring"}


def test_import_leads_rejects_invalid_emails(database: AcquisitionDatabase, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "webinar.csv",
        CUSTOM_HEADERS,
        [
            _custom_row("w-1", "ana@example.com"),
            _custom_row("w-2", "bad@foo.invalid"),
            _custom_row("w-3", "no-at-sign.example.com"),
            _custom_row("w-4", "two@@example.com"),
        ],
    )

    summary = import_leads(database, path, _custom_mapping(tmp_path))

    assert summary.inserted == 1
    assert summary.rejected == 3
    assert summary.rejection_reasons == {"invalid_email": 3}
    stored = rejections(database)
    assert {row.email for row in stored} == {
        "bad@foo.invalid",
        "no-at-sign.example.com",
        "two@@example.com",
    }
    assert all(row.stage == "import" for row in stored)
    assert all("invalid email address" in row.reason for row in stored)
    assert {row.external_id for row in stored} == {"w-2", "w-3", "w-4"}


def test_import_leads_rejects_missing_id(database: AcquisitionDatabase, tmp_path: Path) -> None:
    path = write_xeducation_csv(
        tmp_path / "leads.csv",
        [xeducation_row("lead-1"), xeducation_row(""), xeducation_row("   ")],
    )

    summary = import_leads(database, path)

    assert summary.inserted == 1
    assert summary.rejection_reasons == {"missing_field": 2}
    assert _reasons_by_row(database) == {3: "missing_field", 4: "missing_field"}
    assert all("external_id" in row.reason for row in rejections(database))


def test_import_leads_rejects_missing_email(database: AcquisitionDatabase, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "webinar.csv",
        CUSTOM_HEADERS,
        [_custom_row("w-1", "ana@example.com"), _custom_row("w-2", "")],
    )

    summary = import_leads(database, path, _custom_mapping(tmp_path))

    assert summary.inserted == 1
    assert summary.rejection_reasons == {"missing_field": 1}
    assert "'email'" in rejections(database)[0].reason


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("TotalVisits", "-3"),  # negative count
        ("TotalVisits", "three"),  # not a number
        ("TotalVisits", "2.5"),  # a visit count is whole
        ("TotalVisits", "50000"),  # above MAX_TOTAL_VISITS
        ("Total Time Spent on Website", "inf"),  # not finite
        ("Total Time Spent on Website", "99999999"),  # over 30 days on the site
        ("Page Views Per Visit", "-0.5"),  # negative average
        ("Page Views Per Visit", "1e6"),  # above MAX_PAGE_VIEWS_PER_VISIT
        ("Converted", "2"),  # a flag is yes or no
        ("Do Not Email", "Maybe"),  # a flag is yes or no
    ],
)
def test_import_leads_rejects_impossible_values(
    database: AcquisitionDatabase, tmp_path: Path, header: str, value: str
) -> None:
    path = write_xeducation_csv(
        tmp_path / "leads.csv",
        [xeducation_row("lead-1"), xeducation_row("lead-2", **{header: value})],
    )

    summary = import_leads(database, path)

    assert summary.inserted == 1
    assert summary.rejection_reasons == {"impossible_value": 1}
    stored = rejections(database)
    assert stored[0].external_id == "lead-2"
    assert stored[0].source_row == 3
    assert repr(value) in stored[0].reason
    assert json.loads(stored[0].raw)[header] == value


def test_import_leads_twice_adds_nothing(database: AcquisitionDatabase, tmp_path: Path) -> None:
    path = write_xeducation_csv(
        tmp_path / "leads.csv",
        [xeducation_row("lead-1"), xeducation_row("lead-2"), xeducation_row("lead-3", City="")],
    )
    # The same bad row twice has one rejection on record.
    bad_row = xeducation_row("lead-4", TotalVisits="-1")
    bad = write_xeducation_csv(tmp_path / "bad.csv", [bad_row, bad_row])

    first = import_leads(database, path)
    first_bad = import_leads(database, bad)
    second = import_leads(database, path)
    second_bad = import_leads(database, bad)

    assert first.inserted == 3
    assert second.inserted == 0
    assert second.already_imported == 3
    assert first_bad.rejected == 2
    assert first_bad.rejected_before == 1
    assert second_bad.rejected == 2
    assert second_bad.rejected_before == 2
    assert count_rows(database, lead_intake) == 3
    assert count_rows(database, lead_rejections) == 1
    _assert_nothing_lost(second)


def test_import_leads_counts_exact_repeat(database: AcquisitionDatabase, tmp_path: Path) -> None:
    path = write_xeducation_csv(
        tmp_path / "leads.csv",
        [xeducation_row("lead-1"), xeducation_row("lead-2"), xeducation_row("lead-1")],
    )

    summary = import_leads(database, path)

    assert summary.inserted == 2
    assert summary.already_imported == 1
    assert summary.rejected == 0
    assert count_rows(database, lead_intake) == 2


def test_import_leads_rejects_conflicting_id_within_file(
    database: AcquisitionDatabase, tmp_path: Path
) -> None:
    path = write_xeducation_csv(
        tmp_path / "leads.csv",
        [xeducation_row("lead-1"), xeducation_row("lead-1", Country="Kenya")],
    )

    summary = import_leads(database, path)

    assert summary.inserted == 1
    assert summary.rejection_reasons == {"duplicate_external_id": 1}
    assert intake_rows(database)[0].country == "India"
    stored = rejections(database)
    assert stored[0].source_row == 3
    assert stored[0].external_id == "lead-1"
    assert "'lead-1'" in stored[0].reason
    _assert_nothing_lost(summary)


def test_import_leads_rejects_conflicting_id_across_imports(
    database: AcquisitionDatabase, tmp_path: Path
) -> None:
    first_file = write_xeducation_csv(tmp_path / "first.csv", [xeducation_row("lead-1")])
    second_file = write_xeducation_csv(
        tmp_path / "second.csv",
        [xeducation_row("lead-1", TotalVisits="9"), xeducation_row("lead-2")],
    )

    import_leads(database, first_file)
    summary = import_leads(database, second_file)
    again = import_leads(database, second_file)

    assert summary.inserted == 1
    assert summary.rejection_reasons == {"duplicate_external_id": 1}
    assert rejections(database)[0].source_file == "second.csv"
    assert [row.total_visits for row in intake_rows(database)] == [3, 3]
    assert again.rejected == 1
    assert again.rejected_before == 1
    assert count_rows(database, lead_rejections) == 1


def test_import_leads_detects_duplicates_across_chunks(
    database: AcquisitionDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "CHUNK_ROWS", 2)
    path = write_xeducation_csv(
        tmp_path / "leads.csv",
        [
            xeducation_row("lead-1"),
            xeducation_row("lead-2"),
            xeducation_row("lead-3"),
            xeducation_row("lead-1"),
            xeducation_row("lead-2", City="Pune"),
        ],
    )

    summary = import_leads(database, path)

    assert summary.rows_read == 5
    assert summary.inserted == 3
    assert summary.already_imported == 1
    assert summary.rejection_reasons == {"duplicate_external_id": 1}
    assert _reasons_by_row(database) == {6: "duplicate_external_id"}


def test_import_leads_reads_bom_prefixed_file(
    database: AcquisitionDatabase, tmp_path: Path
) -> None:
    path = write_xeducation_csv(tmp_path / "leads.csv", [xeducation_row("lead-1")])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())

    summary = import_leads(database, path)

    assert summary.inserted == 1
    assert intake_rows(database)[0].external_id == "lead-1"


def test_import_leads_keeps_quoted_commas(database: AcquisitionDatabase, tmp_path: Path) -> None:
    path = write_xeducation_csv(
        tmp_path / "leads.csv",
        [
            xeducation_row("lead-1", Tags="Ringing, then busy", City='Navi "New" Mumbai'),
            xeducation_row("lead-2", Tags="line one\nline two"),
            xeducation_row("lead-3"),
        ],
    )
    assert '"Ringing, then busy"' in path.read_text(encoding="utf-8")

    summary = import_leads(database, path)

    assert summary.inserted == 3
    rows = intake_rows(database)
    assert rows[0].tags == "Ringing, then busy"
    assert rows[0].city == 'Navi "New" Mumbai'
    assert rows[1].tags == "line one\nline two"
    # The quoted line break makes lead-3 start on line 5 of the file.
    assert [row.source_row for row in rows] == [2, 3, 5]


def test_import_leads_rejects_wrong_field_count(
    database: AcquisitionDatabase, tmp_path: Path
) -> None:
    path = write_xeducation_csv(tmp_path / "leads.csv", [xeducation_row("lead-1")])
    good_line = path.read_text(encoding="utf-8").splitlines()[1]
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(good_line.replace("lead-1", "lead-2") + ",surplus\r\n")
        handle.write("lead-3,API,Google\r\n")
        handle.write(good_line.replace("lead-1", "lead-4") + "\r\n")

    summary = import_leads(database, path)

    assert summary.rows_read == 4
    assert summary.inserted == 2
    assert summary.rejection_reasons == {"malformed_row": 2}
    stored = {row.external_id: row for row in rejections(database)}
    assert set(stored) == {"lead-2", "lead-3"}
    assert "17 fields" in stored["lead-2"].reason
    assert json.loads(stored["lead-2"].raw)[importer.EXTRA_FIELDS_KEY] == ["surplus"]
    assert "3 fields" in stored["lead-3"].reason


def test_import_leads_rejects_nul_character(database: AcquisitionDatabase, tmp_path: Path) -> None:
    path = write_xeducation_csv(
        tmp_path / "leads.csv",
        [xeducation_row("lead-1"), xeducation_row("lead-2", City="Mum\x00bai")],
    )

    summary = import_leads(database, path)

    assert summary.inserted == 1
    assert summary.rejection_reasons == {"malformed_row": 1}
    assert "'City'" in rejections(database)[0].reason


def test_import_leads_rejects_overlong_values(
    database: AcquisitionDatabase, tmp_path: Path
) -> None:
    long_id = "x" * 300
    path = write_xeducation_csv(
        tmp_path / "leads.csv",
        [
            xeducation_row("lead-1"),
            xeducation_row("lead-2", City="C" * 129),
            xeducation_row(long_id),
        ],
    )

    summary = import_leads(database, path)

    assert summary.inserted == 1
    assert summary.rejected == 2
    stored = {row.source_row: row for row in rejections(database)}
    assert stored[3].reason_code == "value_too_long"
    assert "city" in stored[3].reason
    assert stored[4].reason_code == "value_too_long"
    assert "external_id" in stored[4].reason
    # The rejection keeps the first 128 characters, as its column allows; raw keeps them all.
    assert stored[4].external_id == long_id[:128]
    assert json.loads(stored[4].raw)["Prospect ID"] == long_id


def test_import_leads_sample_file(database: AcquisitionDatabase, tmp_path: Path) -> None:
    path = write_sample(tmp_path / "sample.csv", rows=40)

    summary = import_leads(database, path)

    assert summary.rows_read == 43
    assert summary.inserted == 40
    assert summary.rejection_reasons == {"missing_field": 1, "impossible_value": 2}


def test_import_leads_sends_rows_in_batches(database: AcquisitionDatabase, tmp_path: Path) -> None:
    path = write_sample(tmp_path / "sample.csv", rows=3_000)
    styles: list[ExecuteStyle] = []
    event.listen(
        database.engine,
        "before_cursor_execute",
        lambda _conn, _cursor, _sql, _params, context, _many: styles.append(context.execute_style),
    )

    summary = import_leads(database, path)

    assert summary.inserted == 3_000
    assert summary.rejected == 3
    # psycopg2 sends a DBAPI executemany as one statement per row.
    assert ExecuteStyle.EXECUTEMANY not in styles
    # Two chunks, each a key lookup and 1,000-row insert batches, then the rejections.
    assert len(styles) <= 8


def test_import_leads_header_only_file(database: AcquisitionDatabase, tmp_path: Path) -> None:
    path = write_xeducation_csv(tmp_path / "leads.csv", [])

    summary = import_leads(database, path)

    assert summary.rows_read == 0
    assert count_rows(database, lead_intake) == 0


def test_import_leads_skips_blank_lines(database: AcquisitionDatabase, tmp_path: Path) -> None:
    path = write_xeducation_csv(
        tmp_path / "leads.csv", [xeducation_row("lead-1"), xeducation_row("lead-2")]
    )
    header, first, second = path.read_text(encoding="utf-8").splitlines()
    path.write_text(f"{header}\n\n{first}\n\n\n{second}\n\n", encoding="utf-8")

    summary = import_leads(database, path)

    assert summary.rows_read == 2
    assert summary.inserted == 2
    assert [row.source_row for row in intake_rows(database)] == [3, 6]


def test_import_leads_missing_headers_named(tmp_path: Path) -> None:
    headers = [h for h in XEDUCATION_HEADERS if h not in ("Prospect ID", "TotalVisits")]
    path = write_csv(tmp_path / "leads.csv", headers, [])
    database = AcquisitionDatabase(url=f"sqlite:///{tmp_path / 'unused.db'}")

    with pytest.raises(MappingError) as raised:
        import_leads(database, path)

    message = str(raised.value)
    assert "['Prospect ID', 'TotalVisits']" in message
    assert "--mapping" in message


def test_import_leads_names_missing_mapped_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "webinar.csv", ["Contact ID", "First Name"], [])
    database = AcquisitionDatabase(url=f"sqlite:///{tmp_path / 'unused.db'}")

    with pytest.raises(MappingError, match=r"\['E-mail', 'Visits'\]"):
        import_leads(database, path, _custom_mapping(tmp_path))


def test_import_leads_strips_header_spaces(database: AcquisitionDatabase, tmp_path: Path) -> None:
    headers = [f" {header} " for header in XEDUCATION_HEADERS]
    rows = [{f" {k} ": v for k, v in xeducation_row("lead-1").items()}]
    path = write_csv(tmp_path / "leads.csv", headers, rows)

    summary = import_leads(database, path)

    assert summary.inserted == 1
    assert intake_rows(database)[0].country == "India"


def test_import_leads_rejects_repeated_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "leads.csv", [*XEDUCATION_HEADERS, "City"], [])
    database = AcquisitionDatabase(url=f"sqlite:///{tmp_path / 'unused.db'}")

    with pytest.raises(MappingError, match=r"\['City'\] more than once"):
        import_leads(database, path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),  # no header row
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),  # a binary file
        ("Prospect ID,City\n1,Köln\n".encode("utf-16"), "not UTF-8"),  # Excel's UTF-16 text
        (b'Prospect ID,City\nlead-1,"Mumbai\nlead-2,Pune\n', "not valid CSV at line 2"),
    ],
)
def test_import_leads_unreadable_file_raises(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes(content)
    database = AcquisitionDatabase(url=f"sqlite:///{tmp_path / 'unused.db'}")

    with pytest.raises(MappingError, match=message):
        import_leads(database, path)


def test_import_leads_missing_file_raises(tmp_path: Path) -> None:
    database = AcquisitionDatabase(url=f"sqlite:///{tmp_path / 'unused.db'}")

    with pytest.raises(MappingError, match="not found"):
        import_leads(database, tmp_path / "absent.csv")


@pytest.mark.parametrize(
    "tail",
    [
        b"lead-9,Caf\xe9\n",  # a Latin-1 byte, not UTF-8
        b'lead-9,"open quote\n',  # a quote never closed
    ],
)
def test_import_leads_bad_file_tail_imports_nothing(
    database: AcquisitionDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tail: bytes,
) -> None:
    monkeypatch.setattr(importer, "CHUNK_ROWS", 2)
    path = write_xeducation_csv(
        tmp_path / "leads.csv", [xeducation_row(f"lead-{n}") for n in range(1, 6)]
    )
    path.write_bytes(path.read_bytes() + tail)

    with pytest.raises(MappingError, match="line 7"):
        import_leads(database, path)

    assert count_rows(database, lead_intake) == 0
    assert count_rows(database, lead_rejections) == 0
