"""Field parsers and address normalization shared by the importer and new_leads."""

import pytest

from acquisition_assets.intake.validation import (
    InvalidValue,
    check_length,
    normalize_email,
    parse_bool,
    parse_count,
    parse_number,
)


@pytest.mark.parametrize(
    ("address", "normalized"),
    [
        ("ana@example.com", "ana@example.com"),
        (" Ana.Lopez@EXAMPLE.com ", "ana.lopez@example.com"),
        ("bo+news@sub.example.org", "bo+news@sub.example.org"),
    ],
)
def test_normalize_email_valid_addresses(address: str, normalized: str) -> None:
    assert normalize_email(address) == normalized


@pytest.mark.parametrize(
    "address",
    [
        "bad@foo.invalid",  # reserved top-level name, undeliverable
        "ana@example.test",  # reserved top-level name, undeliverable
        "ana.example.com",  # no @
        "ana@@example.com",
        "ana@",
        "@example.com",
        "ana lopez@example.com",  # a space in the local part
        "Ana <ana@example.com>",  # a display name, not an address
        "ana@localhost",
        "a\x00b@example.com",
    ],
)
def test_normalize_email_rejects_invalid(address: str) -> None:
    with pytest.raises(InvalidValue) as raised:
        normalize_email(address)

    assert raised.value.code == "invalid_email"
    assert "invalid email address" in str(raised.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Yes", True), (" no ", False), ("1", True), ("0", False), ("TRUE", True), (None, None)],
)
def test_parse_bool_accepts_flags(value: str | None, expected: bool | None) -> None:
    assert parse_bool("converted", value) is expected


def test_parse_bool_rejects_other_words() -> None:
    with pytest.raises(InvalidValue, match="converted must be yes or no, got 'Maybe'") as raised:
        parse_bool("converted", "Maybe")

    assert raised.value.code == "impossible_value"


@pytest.mark.parametrize(
    ("value", "expected"), [("0", 0), (" 12 ", 12), ("3.0", 3), ("100", 100), (None, None)]
)
def test_parse_count_accepts_whole_numbers(value: str | None, expected: int | None) -> None:
    assert parse_count("total_visits", value, 100) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "cannot be negative"),
        ("2.5", "whole number"),
        ("101", "above the plausible maximum 100"),
        ("abc", "must be a number"),
        ("nan", "finite"),
        ("-inf", "finite"),
        ("", "must be a number"),
    ],
)
def test_parse_count_rejects_impossible(value: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=message) as raised:
        parse_count("total_visits", value, 100)

    assert raised.value.code == "impossible_value"


def test_parse_number_keeps_fractions() -> None:
    assert parse_number("page_views_per_visit", "2.75", 10) == 2.75


def test_check_length_limits_characters() -> None:
    assert check_length("city", "é" * 5, 5) == "é" * 5
    assert check_length("city", None, 5) is None

    with pytest.raises(InvalidValue, match="city is 6 characters long") as raised:
        check_length("city", "Mumbai", 5)

    assert raised.value.code == "value_too_long"
