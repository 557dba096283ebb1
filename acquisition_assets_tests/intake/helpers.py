"""CSV and database helpers shared by the intake tests."""

import csv
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import lead_intake, lead_rejections
from acquisition_assets.intake.mapping import XEDUCATION

XEDUCATION_HEADERS = list(XEDUCATION.columns.values())


def xeducation_row(prospect_id: str, **overrides: str) -> dict[str, str]:
    """Return a valid row in the X Education layout; overrides are keyed by CSV header."""
    row = {
        "Prospect ID": prospect_id,
        "Lead Source": "Google",
        "Lead Origin": "API",
        "Do Not Email": "No",
        "Do Not Call": "No",
        "Converted": "0",
        "TotalVisits": "3",
        "Total Time Spent on Website": "420",
        "Page Views Per Visit": "1.5",
        "Last Activity": "Email Opened",
        "Country": "India",
        "City": "Mumbai",
        "What is your current occupation": "Student",
        "Specialization": "Select",
        "Tags": "",
        "Lead Quality": "",
    }
    row.update(overrides)
    return row


def write_csv(path: Path, headers: list[str], rows: list[dict[str, str]]) -> Path:
    """Write rows under the given header with the csv module, quoting where needed."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=headers)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_xeducation_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    return write_csv(path, XEDUCATION_HEADERS, rows)


def count_rows(database: AcquisitionDatabase, table: Any, *conditions: Any) -> int:
    statement = select(func.count()).select_from(table)
    for condition in conditions:
        statement = statement.where(condition)
    with database.connect() as connection:
        return connection.execute(statement).scalar_one()


def intake_rows(database: AcquisitionDatabase) -> list[Any]:
    with database.connect() as connection:
        return connection.execute(select(lead_intake).order_by(lead_intake.c.id)).all()


def rejections(database: AcquisitionDatabase) -> list[Any]:
    with database.connect() as connection:
        return connection.execute(select(lead_rejections).order_by(lead_rejections.c.id)).all()
