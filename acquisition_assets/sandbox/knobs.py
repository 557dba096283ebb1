"""Fault and behaviour knobs that tests set on each sandbox service at run time."""

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Each knob's metadata names the check that its new values must pass.
RATE = {"kind": "rate"}
NON_NEGATIVE = {"kind": "non_negative"}
COUNT = {"kind": "count"}
STATUS = {"kind": "status"}
FLAG = {"kind": "flag"}
STATUS_LIST = {"kind": "status_list"}


class KnobError(ValueError):
    """Error raised for a knob update with an unknown knob name or an invalid value."""


@dataclass
class FaultKnobs:
    """Fault injection settings shared by both services; the rates are fractions of requests."""

    latency_ms: float = field(default=0.0, metadata=NON_NEGATIVE)
    error_rate: float = field(default=0.0, metadata=RATE)
    error_status: int = field(default=503, metadata=STATUS)
    rate_limit_rate: float = field(default=0.0, metadata=RATE)
    retry_after_seconds: int = field(default=1, metadata=COUNT)
    timeout_rate: float = field(default=0.0, metadata=RATE)
    timeout_seconds: float = field(default=30.0, metadata=NON_NEGATIVE)
    lost_response_rate: float = field(default=0.0, metadata=RATE)
    outage: bool = field(default=False, metadata=FLAG)
    script: list[int] = field(default_factory=list, metadata=STATUS_LIST)


@dataclass
class EmailKnobs(FaultKnobs):
    """Email provider knobs: fault settings plus the engagement event rates."""

    bounce_rate: float = field(default=0.03, metadata=RATE)
    open_rate: float = field(default=0.45, metadata=RATE)
    click_rate: float = field(default=0.4, metadata=RATE)
    unsubscribe_rate: float = field(default=0.02, metadata=RATE)


@dataclass
class CrmKnobs(FaultKnobs):
    """CRM knobs: fault settings plus the per-token rate limit (0 disables it)."""

    rate_limit_per_10s: int = field(default=190, metadata=COUNT)


def knobs_to_dict(knobs: FaultKnobs) -> dict[str, Any]:
    """Return the knobs as a JSON-ready dict."""
    return asdict(knobs)


def update_knobs(knobs: FaultKnobs, changes: Any) -> None:
    """Apply a partial update, or raise KnobError and change nothing."""
    if not isinstance(changes, dict):
        raise KnobError("The knob update must be a JSON object of knob names to values.")

    kinds = {knob.name: knob.metadata["kind"] for knob in fields(knobs)}
    unknown = sorted(name for name in changes if name not in kinds)
    if unknown:
        raise KnobError(f"Unknown knobs {unknown}; valid knobs are {sorted(kinds)}.")

    checked = {name: _check_value(name, kinds[name], value) for name, value in changes.items()}
    for name, value in checked.items():
        setattr(knobs, name, value)


def _check_value(name: str, kind: str, value: Any) -> Any:
    """Return the value converted to the knob's type, or raise KnobError."""
    if kind == "flag":
        if not isinstance(value, bool):
            raise KnobError(f"Knob '{name}' must be true or false; got {value!r}.")
        return value
    if kind == "status_list":
        if not isinstance(value, list):
            raise KnobError(f"Knob '{name}' must be a list of HTTP status codes; got {value!r}.")
        return [_check_status(name, item) for item in value]
    if kind == "status":
        return _check_status(name, value)

    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KnobError(f"Knob '{name}' must be a number; got {value!r}.")
    if value < 0:
        raise KnobError(f"Knob '{name}' must not be negative; got {value!r}.")
    if kind == "rate" and value > 1:
        raise KnobError(f"Knob '{name}' is a fraction and must be between 0 and 1; got {value!r}.")
    if kind == "count":
        if value != int(value):
            raise KnobError(f"Knob '{name}' must be a whole number; got {value!r}.")
        return int(value)
    return float(value)


def _check_status(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise KnobError(f"Knob '{name}' needs HTTP status codes from 100 to 599; got {value!r}.")
    return value
