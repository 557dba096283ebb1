"""The `acquisition import-leads` command: a JSON summary, or a one-line error and exit 1."""

import json
from pathlib import Path

from click.testing import CliRunner

from acquisition_assets.cli import main
from acquisition_assets_tests.intake.helpers import (
    write_csv,
    write_xeducation_csv,
    xeducation_row,
)


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'acquisition.db'}"


def _assert_clean_error(result, message: str) -> None:
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"Error: {message}" in result.stderr
    assert "Traceback" not in result.output


def test_import_leads_command_prints_json_summary(database_url: str, tmp_path: Path) -> None:
    path = write_xeducation_csv(
        tmp_path / "leads.csv",
        [xeducation_row("lead-1"), xeducation_row("lead-2", TotalVisits="-4")],
    )

    result = CliRunner().invoke(main, ["import-leads", str(path), "--url", database_url])
    again = CliRunner().invoke(main, ["import-leads", str(path), "--url", database_url])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "rows_read": 2,
        "inserted": 1,
        "already_imported": 0,
        "rejected": 1,
        "rejected_before": 0,
        "rejection_reasons": {"impossible_value": 1},
    }
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["already_imported"] == 1
    assert json.loads(again.stdout)["rejected_before"] == 1


def test_import_leads_command_uses_mapping_file(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "source: webinar\ncolumns:\n  external_id: Id\n  email: Email\n", encoding="utf-8"
    )
    path = write_csv(
        tmp_path / "webinar.csv",
        ["Id", "Email"],
        [{"Id": "w-1", "Email": "ana@example.com"}, {"Id": "w-2", "Email": "bad@foo.invalid"}],
    )

    result = CliRunner().invoke(
        main,
        ["import-leads", str(path), "--mapping", str(mapping), "--url", _sqlite_url(tmp_path)],
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["inserted"] == 1
    assert summary["rejection_reasons"] == {"invalid_email": 1}


def test_import_leads_command_missing_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "absent.csv"

    result = CliRunner().invoke(main, ["import-leads", str(path), "--url", _sqlite_url(tmp_path)])

    _assert_clean_error(result, f"lead file {str(path)!r} not found")


def test_import_leads_command_binary_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb5U0#\xf4")

    result = CliRunner().invoke(main, ["import-leads", str(path), "--url", _sqlite_url(tmp_path)])

    _assert_clean_error(result, f"lead file {str(path)!r} is not UTF-8 text: line 1")


def test_import_leads_command_missing_columns_fails(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "leads.csv", ["Id", "Email"], [{"Id": "1", "Email": "a"}])

    result = CliRunner().invoke(main, ["import-leads", str(path), "--url", _sqlite_url(tmp_path)])

    _assert_clean_error(result, f"lead file {str(path)!r} is missing the columns ['City'")


def test_import_leads_command_bad_mapping_fails(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("source: webinar\ncolumns:\n  mail: Email\n", encoding="utf-8")
    path = write_csv(tmp_path / "webinar.csv", ["Email"], [{"Email": "ana@example.com"}])

    result = CliRunner().invoke(
        main,
        ["import-leads", str(path), "--mapping", str(mapping), "--url", _sqlite_url(tmp_path)],
    )

    _assert_clean_error(result, f"column mapping {str(mapping)!r} names unknown fields ['mail']")
