"""Field parsing and address validation shared by the importer and the new_leads asset."""

import math

from email_validator import EmailNotValidError, validate_email

TRUE_WORDS = frozenset({"yes", "y", "true", "1"})
FALSE_WORDS = frozenset({"no", "n", "false", "0"})

# Bounds past which a web-analytics figure is a broken export rather than a person.
MAX_TOTAL_VISITS = 10_000
MAX_TIME_ON_SITE_SECONDS = 30 * 24 * 3600
MAX_PAGE_VIEWS_PER_VISIT = 1_000


class InvalidValue(ValueError):
    """A field's value is impossible; the message names the field and the value."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def normalize_email(address: str) -> str:
    """Return the canonical, lower-cased form of an address, or raise InvalidValue.

    Deliverability (DNS) is not checked, so validation works offline. Reserved names such
    as .invalid and .test are rejected, because mail to them cannot be delivered.
    """
    try:
        result = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidValue(
            "invalid_email", f"invalid email address {address!r}: {error}"
        ) from error
    return result.normalized.lower()


def parse_bool(field: str, value: str | None) -> bool | None:
    if value is None:
        return None
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidValue("impossible_value", f"{field} must be yes or no, got {value!r}")


def parse_count(field: str, value: str | None, maximum: float) -> int | None:
    number = parse_number(field, value, maximum)
    if number is None:
        return None
    if number != int(number):
        raise InvalidValue("impossible_value", f"{field} must be a whole number, got {value!r}")
    return int(number)


def parse_number(field: str, value: str | None, maximum: float) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError as error:
        raise InvalidValue(
            "impossible_value", f"{field} must be a number, got {value!r}"
        ) from error
    if math.isnan(number) or math.isinf(number):
        raise InvalidValue("impossible_value", f"{field} must be a finite number, got {value!r}")
    if number < 0:
        raise InvalidValue("impossible_value", f"{field} cannot be negative, got {value!r}")
    if number > maximum:
        raise InvalidValue(
            "impossible_value", f"{field} of {value!r} is above the plausible maximum {maximum:g}"
        )
    return number


def check_length(field: str, value: str | None, maximum: int) -> str | None:
    """Return the value, or raise InvalidValue when it has more than `maximum` characters."""
    if value is not None and len(value) > maximum:
        raise InvalidValue(
            "value_too_long",
            f"{field} is {len(value)} characters long, above the maximum {maximum}",
        )
    return value
