"""Loads CSV lead exports into the intake table, recording every bad row as a rejection."""

import csv
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from acquisition_assets.core.clock import utcnow
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import lead_intake, lead_rejections
from acquisition_assets.intake.mapping import XEDUCATION, ColumnMapping, MappingError
from acquisition_assets.intake.validation import (
    MAX_PAGE_VIEWS_PER_VISIT,
    MAX_TIME_ON_SITE_SECONDS,
    MAX_TOTAL_VISITS,
    InvalidValue,
    check_length,
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
# Key of a malformed row's raw record that contains the fields past the last header.
EXTRA_FIELDS_KEY = "_extra_fields"


@dataclass
class ImportSummary:
    """Counts of what one import did with the rows of a file.

    Every row read is counted once, as inserted, already imported or rejected.
    `rejected_before` counts the rejected rows whose rejection was already on record.
    """

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


@dataclass(frozen=True)
class CsvRecord:
    """One record of a CSV file and the line of the file where it starts."""

    line: int
    fields: list[str]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _read_records(path: Path) -> Iterator[CsvRecord]:
    """Yield every non-blank record of the file, the header first.

    Raises MappingError when the file is not UTF-8 text or not parseable as CSV.
    """
    name = str(path)
    line = 1
    try:
        # utf-8-sig drops the byte order mark that Excel writes before the header. Strict
        # parsing raises on a quote left open, which would otherwise swallow the rows after it.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            for fields in reader:
                if fields:  # the csv module returns [] for a blank line
                    yield CsvRecord(line, fields)
                line = reader.line_num + 1
    except UnicodeDecodeError as error:
        raise MappingError(
            f"lead file {name!r} is not UTF-8 text: line {_first_undecodable_line(path)} "
            f"has an invalid byte ({error.reason}); save the file as CSV with UTF-8 encoding"
        ) from error
    except csv.Error as error:
        raise MappingError(
            f"lead file {name!r} is not valid CSV at line {line}: {error}; "
            "check that every quoted field is closed"
        ) from error
    except OSError as error:
        raise MappingError(f"cannot read lead file {name!r}: {error}") from error


def _first_undecodable_line(path: Path) -> int:
    """Return the number of the first line that is not valid UTF-8, or 0 if there is none.

    The text reader decodes blocks of several lines, so its error has no line number.
    """
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _read_headers(path: Path, header: CsvRecord | None, mapping: ColumnMapping) -> list[str]:
    """Return the stripped header names, or raise MappingError if a mapped column is missing."""
    if header is None:
        raise MappingError(f"lead file {str(path)!r} is empty; expected a CSV header row")
    headers = [name.strip() for name in header.fields]
    repeated = sorted(name for name, count in Counter(headers).items() if count > 1)
    if repeated:
        raise MappingError(
            f"lead file {str(path)!r} has the columns {repeated} more than once; "
            "rename or remove the copies"
        )
    missing = sorted(set(mapping.columns.values()) - set(headers))
    if missing:
        raise MappingError(
            f"lead file {str(path)!r} is missing the columns {missing} that the "
            f"{mapping.source!r} mapping expects; fix the header row or pass a column "
            "mapping file with --mapping"
        )
    return headers


def _clean(value: Any, mapping: ColumnMapping) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in mapping.null_values else text


def parse_row(raw: dict[str, str], mapping: ColumnMapping) -> dict[str, Any]:
    """Turn one CSV row into intake fields, or raise InvalidValue naming the first bad field."""
    for column, value in raw.items():
        # PostgreSQL text cannot store NUL, and no export writes one on purpose.
        if "\x00" in str(value):
            raise InvalidValue("malformed_row", f"column {column!r} contains a NUL character")
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
        "external_id": _fit("external_id", values.get("external_id")),
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
        row[name] = _fit(name, values.get(name))
    mapped_columns = set(mapping.columns.values())
    row["attributes"] = json.dumps(
        {k: v for k, v in raw.items() if k not in mapped_columns and _clean(v, mapping)},
        sort_keys=True,
    )
    return row


def _fit(name: str, value: str | None) -> str | None:
    """Return the value, or raise InvalidValue if it is longer than its lead_intake column.

    PostgreSQL rejects an over-long value for the whole statement, so one such row would
    otherwise fail its chunk.
    """
    return check_length(name, value, lead_intake.c[name].type.length)


def _negate(value: bool | None) -> bool | None:
    return None if value is None else not value


def import_leads(
    database: AcquisitionDatabase, path: str | Path, mapping: ColumnMapping = XEDUCATION
) -> ImportSummary:
    """Load a CSV export into lead_intake in chunks; bad rows go to lead_rejections.

    The whole file is read once before anything is written, so a file that cannot be
    decoded or parsed raises MappingError and imports nothing. Each chunk is then one
    transaction. A row's key is its source and external id (or its content when it has no
    id), so importing a file again adds nothing. A second row with a known id but different
    content is rejected as a conflicting duplicate, not silently dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"lead file {str(path)!r} not found")
    # Parse the whole file first, so that a decoding or CSV error raises before any write.
    for _ in _read_records(path):
        pass

    records = _read_records(path)
    headers = _read_headers(path, next(records, None), mapping)
    summary = ImportSummary()
    while chunk := list(islice(records, CHUNK_ROWS)):
        _import_chunk(database, path.name, headers, chunk, mapping, summary)
        summary.rows_read += len(chunk)
    logger.info(
        "imported %s: %d rows read, %d inserted, %d already imported, %d rejected",
        path.name,
        summary.rows_read,
        summary.inserted,
        summary.already_imported,
        summary.rejected,
    )
    return summary


def _raw_row(headers: list[str], record: CsvRecord) -> dict[str, Any]:
    raw: dict[str, Any] = dict(zip(headers, record.fields, strict=False))
    if len(record.fields) > len(headers):
        raw[EXTRA_FIELDS_KEY] = record.fields[len(headers) :]
    return raw


def _import_chunk(
    database: AcquisitionDatabase,
    file_name: str,
    headers: list[str],
    records: list[CsvRecord],
    mapping: ColumnMapping,
    summary: ImportSummary,
) -> None:
    now = utcnow()
    intake_rows: list[dict[str, Any]] = []
    raw_rows: dict[int, dict[str, Any]] = {}
    rejections: list[dict[str, Any]] = []
    for record in records:
        raw = _raw_row(headers, record)
        content_hash = _digest(*(f"{k}={v}" for k, v in sorted(raw.items())))
        try:
            if len(record.fields) != len(headers):
                raise InvalidValue(
                    "malformed_row",
                    f"the row has {len(record.fields)} fields but the header has {len(headers)}",
                )
            row = parse_row(raw, mapping)
        except InvalidValue as error:
            rejections.append(
                _rejection(mapping, file_name, record.line, raw, content_hash, error, now)
            )
            continue
        identity = row["external_id"] or content_hash
        raw_rows[record.line] = raw
        intake_rows.append(
            {
                **row,
                "intake_key": _digest(mapping.source, identity),
                "content_hash": content_hash,
                "source": mapping.source,
                "source_file": file_name,
                "source_row": record.line,
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
                error = InvalidValue(
                    "duplicate_external_id",
                    f"external id {row['external_id']!r} was imported before with other values",
                )
                raw = raw_rows[row["source_row"]]
                rejections.append(
                    _rejection(
                        mapping, file_name, row["source_row"], raw, row["content_hash"], error, now
                    )
                )
            else:
                summary.already_imported += 1
        new_rejections = _insert_new(connection, lead_rejections, rejections, "rejection_key")
    summary.rejected += len(rejections)
    summary.rejected_before += len(rejections) - len(new_rejections)
    summary.rejection_reasons.update(r["reason_code"] for r in rejections)


def _insert_new(
    connection: Connection, table: Table, rows: list[dict[str, Any]], key: str
) -> set[str]:
    """Insert the rows whose `key` is not stored yet and return the keys inserted.

    SQLAlchemy 2.1 (read in 2.1.9) sends an ON CONFLICT insert as multi-row VALUES batches
    only when it has RETURNING. Without it, psycopg2 runs the statement once per row.
    """
    if not rows:
        return set()
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    return set(connection.execute(statement, rows).scalars())


def _insert_intake(connection: Connection, rows: list[dict[str, Any]]) -> set[int]:
    """Insert rows whose key is new and return the ids (id()) of the row dicts inserted."""
    if not rows:
        return set()
    # Reading the stored keys first keeps a re-import from sending every row again.
    stored = set(
        connection.execute(
            select(lead_intake.c.intake_key).where(
                lead_intake.c.intake_key.in_({row["intake_key"] for row in rows})
            )
        ).scalars()
    )
    first_of_key: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["intake_key"] not in stored:
            first_of_key.setdefault(row["intake_key"], row)
    inserted = _insert_new(connection, lead_intake, list(first_of_key.values()), "intake_key")
    return {id(first_of_key[key]) for key in inserted}


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
    line: int,
    raw: dict[str, Any],
    content_hash: str,
    error: InvalidValue,
    now: datetime,
) -> dict[str, Any]:
    external_column = mapping.column_for("external_id")
    email_column = mapping.column_for("email")
    return {
        "rejection_key": _digest("import", mapping.source, content_hash, error.code),
        "stage": "import",
        "source_file": file_name,
        "source_row": line,
        "external_id": _truncate(raw.get(external_column), lead_rejections.c.external_id),
        "email": _truncate(raw.get(email_column), lead_rejections.c.email),
        "reason_code": error.code,
        "reason": str(error),
        "raw": json.dumps(raw, sort_keys=True),
        "rejected_at": now,
    }


def _truncate(value: Any, column: Column) -> str | None:
    """Fit a value copied from a bad row into its rejection column, which must not fail.

    The full value stays in the rejection's `raw` JSON.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().replace("\x00", "")[: column.type.length]
