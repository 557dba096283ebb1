"""Loads CSV lead exports into the intake table, recording every bad row as a rejection."""

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, select

from acquisition_assets.core.clock import utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import lead_intake, lead_rejections
from acquisition_assets.core.sql import insert_ignore
from acquisition_assets.intake.mapping import XEDUCATION, ColumnMapping, MappingError
from acquisition_assets.intake.validation import (
    MAX_PAGE_VIEWS_PER_VISIT,
    MAX_TIME_ON_SITE_SECONDS,
    MAX_TOTAL_VISITS,
    InvalidValue,
    normalize_email,
    parse_bool,
    parse_count,
    parse_number,
)

logger = logging.getLogger(__name__)

CHUNK_ROWS = 2_000
TEXT_FIELDS = (
    "first_name", "last_name", "lead_source", "lead_origin", "last_activity", "country",
    "city", "occupation", "specialization", "tags", "lead_quality", "referral_code",
)  # fmt: skip


@dataclass
class ImportSummary:
    """What one import did with the rows of a file."""

    rows_read: int = 0
    inserted: int = 0
    already_imported: int = 0
    rejected: int = 0
    rejected_before: int = 0
    rejection_reasons: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "inserted": self.inserted,
            "already_imported": self.already_imported,
            "rejected": self.rejected,
            "rejected_before": self.rejected_before,
            "rejection_reasons": dict(self.rejection_reasons),
        }


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _read_chunks(path: Path, mapping: ColumnMapping) -> Iterator[pd.DataFrame]:
    try:
        reader = pd.read_csv(
            path, dtype=str, keep_default_na=False, chunksize=CHUNK_ROWS, encoding="utf-8-sig"
        )
        yield from reader
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise MappingError(f"cannot read CSV file {str(path)!r}: {error}") from error


def _check_headers(path: Path, headers: list[str], mapping: ColumnMapping) -> None:
    missing = sorted(set(mapping.columns.values()) - set(headers))
    if missing:
        raise MappingError(
            f"CSV file {str(path)!r} lacks the columns {missing} that the "
            f"{mapping.source!r} mapping expects; pass a column mapping file with --mapping"
        )


def _clean(value: Any, mapping: ColumnMapping) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in mapping.null_values else text


def parse_row(raw: dict[str, str], mapping: ColumnMapping) -> dict[str, Any]:
    """Turn one CSV row into intake fields, or raise InvalidValue naming the first bad field."""
    values = {name: _clean(raw.get(column), mapping) for name, column in mapping.columns.items()}
    for name in mapping.required:
        if not values.get(name):
            raise InvalidValue("missing_field", f"required field {name!r} is empty")

    email = values.get("email")
    if email is None and mapping.placeholder_email_domain and values.get("external_id"):
        email = f"{values['external_id'].lower()}@{mapping.placeholder_email_domain}"
    if email is None:
        raise InvalidValue("missing_field", "required field 'email' is empty")

    do_not_email = parse_bool("do_not_email", values.get("do_not_email"))
    do_not_call = parse_bool("do_not_call", values.get("do_not_call"))
    email_opt_in = parse_bool("email_opt_in", values.get("email_opt_in"))
    call_opt_in = parse_bool("call_opt_in", values.get("call_opt_in"))
    row = {
        "external_id": values.get("external_id"),
        "email": normalize_email(email),
        "email_opt_in": email_opt_in if email_opt_in is not None else _negate(do_not_email),
        "call_opt_in": call_opt_in if call_opt_in is not None else _negate(do_not_call),
        "converted": parse_bool("converted", values.get("converted")),
        "total_visits": parse_count("total_visits", values.get("total_visits"), MAX_TOTAL_VISITS),
        "time_on_site_seconds": parse_count(
            "time_on_site_seconds", values.get("time_on_site_seconds"), MAX_TIME_ON_SITE_SECONDS
        ),
        "page_views_per_visit": parse_number(
            "page_views_per_visit", values.get("page_views_per_visit"), MAX_PAGE_VIEWS_PER_VISIT
        ),
    }
    for name in TEXT_FIELDS:
        row[name] = values.get(name)
    mapped_columns = set(mapping.columns.values())
    row["attributes"] = json.dumps(
        {k: v for k, v in raw.items() if k not in mapped_columns and _clean(v, mapping)},
        sort_keys=True,
    )
    return row


def _negate(value: bool | None) -> bool | None:
    return None if value is None else not value


def import_leads(
    database: AcquisitionDatabase, path: str | Path, mapping: ColumnMapping = XEDUCATION
) -> ImportSummary:
    """Load a CSV export into lead_intake in chunks; bad rows go to lead_rejections.

    Each chunk is one transaction. A row's key is its source and external id (or its content
    when it has no id), so importing a file again adds nothing. A second row with a known id
    but different content is rejected as a conflicting duplicate, not silently dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"lead file {str(path)!r} not found")
    summary = ImportSummary()
    first_row = 2  # the header is line 1
    for chunk in _read_chunks(path, mapping):
        if summary.rows_read == 0:
            _check_headers(path, list(chunk.columns), mapping)
        records = chunk.to_dict("records")
        _import_chunk(database, path.name, first_row, records, mapping, summary)
        first_row += len(records)
        summary.rows_read += len(records)
    logger.info(
        "imported %s: %d rows read, %d inserted, %d already imported, %d rejected",
        path.name,
        summary.rows_read,
        summary.inserted,
        summary.already_imported,
        summary.rejected,
    )
    return summary


def _import_chunk(
    database: AcquisitionDatabase,
    file_name: str,
    first_row: int,
    records: list[dict[str, str]],
    mapping: ColumnMapping,
    summary: ImportSummary,
) -> None:
    now = utcnow()
    intake_rows: list[dict[str, Any]] = []
    rejections: list[dict[str, Any]] = []
    for offset, raw in enumerate(records):
        row_number = first_row + offset
        content_hash = _digest(*(f"{k}={v}" for k, v in sorted(raw.items())))
        try:
            row = parse_row(raw, mapping)
        except InvalidValue as error:
            rejections.append(
                _rejection(
                    mapping, file_name, row_number, raw, content_hash, error.code, str(error), now
                )
            )
            continue
        identity = row["external_id"] or content_hash
        intake_rows.append(
            {
                **row,
                "intake_key": _digest(mapping.source, identity),
                "content_hash": content_hash,
                "source": mapping.source,
                "source_file": file_name,
                "source_row": row_number,
                "received_at": now,
            }
        )

    with database.begin(writes=["lead_intake", "lead_rejections"]) as connection:
        inserted = _insert_intake(connection, intake_rows)
        conflicts = _conflicting_duplicates(connection, intake_rows, inserted)
        for row in intake_rows:
            if id(row) in inserted:
                summary.inserted += 1
            elif id(row) in conflicts:
                rejections.append(
                    _rejection(
                        mapping,
                        file_name,
                        row["source_row"],
                        records[row["source_row"] - first_row],
                        row["content_hash"],
                        "duplicate_external_id",
                        f"external id {row['external_id']!r} was imported before with other values",
                        now,
                    )
                )
            else:
                summary.already_imported += 1
        new_rejections = insert_ignore(connection, lead_rejections, rejections, ["rejection_key"])
    summary.rejected += len(rejections)
    summary.rejected_before += len(rejections) - new_rejections
    summary.rejection_reasons.update(r["reason_code"] for r in rejections)


def _insert_intake(connection: Connection, rows: list[dict[str, Any]]) -> set[int]:
    """Insert rows whose key is new and return the ids (id()) of the row dicts inserted."""
    if not rows:
        return set()
    keys = [row["intake_key"] for row in rows]
    existing = set(
        connection.execute(
            select(lead_intake.c.intake_key).where(lead_intake.c.intake_key.in_(keys))
        ).scalars()
    )
    fresh: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["intake_key"] not in existing and row["intake_key"] not in fresh:
            fresh[row["intake_key"]] = row
    insert_ignore(connection, lead_intake, list(fresh.values()), ["intake_key"])
    return {id(row) for row in fresh.values()}


def _conflicting_duplicates(
    connection: Connection, rows: list[dict[str, Any]], inserted: set[int]
) -> set[int]:
    """Return the ids (id()) of rows that collide with a stored row of other content."""
    leftovers = [row for row in rows if id(row) not in inserted]
    if not leftovers:
        return set()
    stored = dict(
        connection.execute(
            select(lead_intake.c.intake_key, lead_intake.c.content_hash).where(
                lead_intake.c.intake_key.in_({row["intake_key"] for row in leftovers})
            )
        ).all()
    )
    return {id(row) for row in leftovers if stored.get(row["intake_key"]) != row["content_hash"]}


def _rejection(
    mapping: ColumnMapping,
    file_name: str,
    row_number: int,
    raw: dict[str, str],
    content_hash: str,
    code: str,
    reason: str,
    now: Any,
) -> dict[str, Any]:
    external_column = mapping.column_for("external_id")
    email_column = mapping.column_for("email")
    return {
        "rejection_key": _digest("import", mapping.source, content_hash, code),
        "stage": "import",
        "source_file": file_name,
        "source_row": row_number,
        "external_id": (raw.get(external_column) or None) if external_column else None,
        "email": (raw.get(email_column) or None) if email_column else None,
        "reason_code": code,
        "reason": reason,
        "raw": json.dumps(raw, sort_keys=True),
        "rejected_at": now,
    }
