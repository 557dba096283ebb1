"""Column mappings from a CSV export's layout to the intake table's fields."""

from dataclasses import dataclass, field
from pathlib import Path

import yaml

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


class MappingError(ValueError):
    """A column mapping file is invalid."""


@dataclass(frozen=True)
class ColumnMapping:
    """How one export layout maps onto intake fields."""

    source: str
    columns: dict[str, str]
    # Values that mean 'nothing chosen', such as the 'Select' of a web form's dropdown.
    null_values: frozenset[str] = frozenset({"", "select", "nan", "null", "n/a"})
    # When the export carries no addresses, each lead gets <external id>@<this domain>.
    placeholder_email_domain: str | None = None
    required: tuple[str, ...] = ("external_id",)
    extra: dict[str, str] = field(default_factory=dict)

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


def load_mapping(path: str | Path) -> ColumnMapping:
    """Read a YAML mapping file: `source`, `columns` (field: CSV header) and options."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise MappingError(f"cannot read column mapping {str(path)!r}: {error}") from error
    if not isinstance(document, dict):
        raise MappingError(f"column mapping {str(path)!r} must be a YAML mapping")

    source = document.get("source")
    columns = document.get("columns")
    if not isinstance(source, str) or not source.strip():
        raise MappingError(f"column mapping {str(path)!r} needs a non-empty 'source' name")
    if not isinstance(columns, dict) or not columns:
        raise MappingError(f"column mapping {str(path)!r} needs a 'columns' mapping")
    unknown = sorted(set(columns) - set(INTAKE_FIELDS))
    if unknown:
        raise MappingError(
            f"column mapping {str(path)!r} names unknown fields {unknown}; "
            f"valid fields: {', '.join(INTAKE_FIELDS)}"
        )
    placeholder = document.get("placeholder_email_domain")
    if "email" not in columns and not placeholder:
        raise MappingError(
            f"column mapping {str(path)!r} maps no 'email' column; map one or set "
            "'placeholder_email_domain' to a reserved domain such as leads.example.com"
        )
    required = tuple(
        document.get("required", ["external_id"] if "external_id" in columns else ["email"])
    )
    return ColumnMapping(
        source=source.strip(),
        columns={str(k): str(v) for k, v in columns.items()},
        placeholder_email_domain=placeholder,
        required=required,
    )
