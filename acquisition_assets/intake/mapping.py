"""Column mappings from a CSV export's layout to the intake table's fields."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from acquisition_assets.core.schema import lead_intake
from acquisition_assets.intake.validation import InvalidValue, normalize_email

# Intake fields a mapping may fill. Columns mapped to none of them are kept in `attributes`.
INTAKE_FIELDS = (
    "external_id",
    "email",
    "first_name",
    "last_name",
    "lead_source",
    "lead_origin",
    "email_opt_in",
    "call_opt_in",
    "do_not_email",
    "do_not_call",
    "converted",
    "total_visits",
    "time_on_site_seconds",
    "page_views_per_visit",
    "last_activity",
    "country",
    "city",
    "occupation",
    "specialization",
    "tags",
    "lead_quality",
    "referral_code",
)

# Keys a mapping file may contain.
MAPPING_KEYS = ("source", "columns", "placeholder_email_domain", "required", "null_values")

# The second-level names that RFC 2606 reserves for examples. Mail to them cannot reach a
# real inbox. The reserved top-level names (.invalid, .test) fail address validation.
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")

MAX_SOURCE_LENGTH = lead_intake.c.source.type.length

DEFAULT_NULL_VALUES = frozenset({"", "select", "nan", "null", "n/a"})


class MappingError(ValueError):
    """A lead file or its column mapping is unusable; the message names the problem and fix."""


@dataclass(frozen=True)
class ColumnMapping:
    """The mapping of one export layout onto intake fields."""

    source: str
    columns: dict[str, str]
    # Lower-cased values that mean 'nothing chosen', such as the 'Select' of a web form's
    # dropdown.
    null_values: frozenset[str] = DEFAULT_NULL_VALUES
    # When a row has no address, it gets <external id>@<this domain>.
    placeholder_email_domain: str | None = None
    required: tuple[str, ...] = ("external_id",)

    def column_for(self, intake_field: str) -> str | None:
        return self.columns.get(intake_field)


XEDUCATION = ColumnMapping(
    source="xeducation",
    columns={
        "external_id": "Prospect ID",
        "lead_source": "Lead Source",
        "lead_origin": "Lead Origin",
        "do_not_email": "Do Not Email",
        "do_not_call": "Do Not Call",
        "converted": "Converted",
        "total_visits": "TotalVisits",
        "time_on_site_seconds": "Total Time Spent on Website",
        "page_views_per_visit": "Page Views Per Visit",
        "last_activity": "Last Activity",
        "country": "Country",
        "city": "City",
        "occupation": "What is your current occupation",
        "specialization": "Specialization",
        "tags": "Tags",
        "lead_quality": "Lead Quality",
    },
    # The public X Education export has no addresses. example.com is reserved (RFC 2606),
    # so these placeholders can never reach a real inbox.
    placeholder_email_domain="leads.example.com",
)


def is_reserved_domain(domain: str) -> bool:
    """Return whether `domain` is one of RESERVED_DOMAINS or a subdomain of one."""
    name = domain.strip().lower()
    return any(name == reserved or name.endswith("." + reserved) for reserved in RESERVED_DOMAINS)


def load_mapping(path: str | Path) -> ColumnMapping:
    """Read and check a YAML mapping file, raising MappingError on the first problem.

    The file contains `source` (a name for the layout), `columns` (intake field: CSV
    header) and optionally `placeholder_email_domain`, `required` (fields a row must
    fill, by default external_id if mapped, else email) and `null_values`.
    """
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise MappingError(f"column mapping file {name!r} not found")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise MappingError(f"cannot read column mapping {name!r}: {error}") from error
    if not isinstance(document, dict):
        raise MappingError(
            f"column mapping {name!r} must be a YAML mapping with 'source' and 'columns' keys"
        )

    unknown_keys = sorted(str(key) for key in set(document) - set(MAPPING_KEYS))
    if unknown_keys:
        raise MappingError(
            f"column mapping {name!r} has unknown keys {unknown_keys}; "
            f"valid keys: {', '.join(MAPPING_KEYS)}"
        )
    columns = _columns(name, document.get("columns"))
    placeholder = _placeholder_domain(name, document.get("placeholder_email_domain"), columns)
    return ColumnMapping(
        source=_source(name, document.get("source")),
        columns=columns,
        null_values=_null_values(name, document.get("null_values")),
        placeholder_email_domain=placeholder,
        required=_required(name, document.get("required"), columns),
    )


def _source(name: str, source: Any) -> str:
    if not isinstance(source, str) or not source.strip():
        raise MappingError(f"column mapping {name!r} needs a non-empty 'source' name")
    if len(source.strip()) > MAX_SOURCE_LENGTH:
        raise MappingError(
            f"column mapping {name!r} has a 'source' longer than {MAX_SOURCE_LENGTH} characters"
        )
    return source.strip()


def _columns(name: str, columns: Any) -> dict[str, str]:
    if not isinstance(columns, dict) or not columns:
        raise MappingError(
            f"column mapping {name!r} needs a 'columns' mapping of intake field to CSV header"
        )
    unknown = sorted(str(field) for field in set(columns) - set(INTAKE_FIELDS))
    if unknown:
        raise MappingError(
            f"column mapping {name!r} names unknown fields {unknown}; "
            f"valid fields: {', '.join(INTAKE_FIELDS)}"
        )
    blank = sorted(
        field
        for field, header in columns.items()
        if not isinstance(header, str) or not header.strip()
    )
    if blank:
        raise MappingError(
            f"column mapping {name!r} gives no CSV header for the fields {blank}; "
            "write the header text after each field, or remove the field"
        )
    return {field: header.strip() for field, header in columns.items()}


def _placeholder_domain(name: str, domain: Any, columns: dict[str, str]) -> str | None:
    if domain is None:
        if "email" not in columns:
            raise MappingError(
                f"column mapping {name!r} maps no 'email' column; map one or set "
                "'placeholder_email_domain' to a reserved domain such as leads.example.com"
            )
        return None
    if not isinstance(domain, str) or not is_reserved_domain(domain):
        # A placeholder under a real domain could send mail to a stranger's inbox.
        raise MappingError(
            f"column mapping {name!r} has the placeholder_email_domain {domain!r}, which is not "
            f"reserved; use {' or '.join(RESERVED_DOMAINS)} or a subdomain of one"
        )
    try:
        normalize_email(f"placeholder@{domain.strip()}")
    except InvalidValue as error:
        raise MappingError(
            f"column mapping {name!r} has the placeholder_email_domain {domain!r}, which is not "
            f"a valid domain: {error}"
        ) from error
    if "external_id" not in columns:
        raise MappingError(
            f"column mapping {name!r} sets 'placeholder_email_domain' but maps no 'external_id' "
            "column to build the placeholder addresses from; map one"
        )
    return domain.strip().lower()


def _required(name: str, required: Any, columns: dict[str, str]) -> tuple[str, ...]:
    if required is None:
        return ("external_id",) if "external_id" in columns else ("email",)
    if not isinstance(required, list) or not all(isinstance(field, str) for field in required):
        raise MappingError(
            f"column mapping {name!r} has 'required: {required!r}'; write a list of "
            "intake fields such as [external_id, email]"
        )
    unmapped = sorted(set(required) - set(columns))
    if unmapped:
        # Rows cannot fill a field that no column feeds, so every row would be rejected.
        raise MappingError(
            f"column mapping {name!r} requires the fields {unmapped}, which 'columns' does "
            "not map; map them or remove them from 'required'"
        )
    return tuple(required)


def _null_values(name: str, values: Any) -> frozenset[str]:
    if values is None:
        return DEFAULT_NULL_VALUES
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise MappingError(
            f"column mapping {name!r} has 'null_values: {values!r}'; write a list of strings "
            "such as ['', 'Select']"
        )
    # An empty cell always means no value, whatever the list contains.
    return frozenset({""} | {value.strip().lower() for value in values})
