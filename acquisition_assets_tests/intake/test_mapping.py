"""Column mapping files: a valid one loads, and each kind of mistake raises MappingError."""

from pathlib import Path

import pytest

from acquisition_assets.intake.mapping import (
    DEFAULT_NULL_VALUES,
    MappingError,
    is_reserved_domain,
    load_mapping,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_mapping_reads_all_options(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
source: " webinar "
columns:
  external_id: " Contact ID "
  email: E-mail
placeholder_email_domain: Webinar.Example.org
required: [external_id]
null_values: [Unknown, "-"]
""",
    )

    mapping = load_mapping(path)

    assert mapping.source == "webinar"
    assert mapping.columns == {"external_id": "Contact ID", "email": "E-mail"}
    assert mapping.placeholder_email_domain == "webinar.example.org"
    assert mapping.required == ("external_id",)
    assert mapping.null_values == frozenset({"", "unknown", "-"})


def test_load_mapping_defaults_required_to_email(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: events\ncolumns:\n  email: Email\n")

    mapping = load_mapping(path)

    assert mapping.required == ("email",)
    assert mapping.placeholder_email_domain is None
    assert mapping.null_values == DEFAULT_NULL_VALUES


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # a misspelt field under columns
        (
            "source: s\ncolumns:\n  email: Email\n  emial: Mail\n",
            r"unknown fields \['emial'\]",
        ),
        # a misspelt top-level key
        (
            "source: s\ncolumns:\n  email: Email\nplaceholder_domain: leads.example.com\n",
            r"unknown keys \['placeholder_domain'\]",
        ),
        ("columns:\n  email: Email\n", "non-empty 'source'"),  # no source
        ("source: '  '\ncolumns:\n  email: Email\n", "non-empty 'source'"),  # blank source
        (f"source: {'s' * 65}\ncolumns:\n  email: Email\n", "longer than 64"),
        ("source: s\n", "needs a 'columns' mapping"),  # no columns
        ("source: s\ncolumns: [Email]\n", "needs a 'columns' mapping"),  # a list, not a map
        # neither an email column nor a placeholder domain
        ("source: s\ncolumns:\n  external_id: Id\n", "maps no 'email' column"),
        # a header left empty or not text
        (
            "source: s\ncolumns:\n  email: Email\n  first_name:\n  city: 3\n",
            r"no CSV header for the fields \['city', 'first_name'\]",
        ),
        # a placeholder under a real domain could reach a real inbox
        (
            "source: s\ncolumns:\n  external_id: Id\nplaceholder_email_domain: gmail.com\n",
            "not reserved",
        ),
        # a domain that only starts with a reserved name
        (
            "source: s\ncolumns:\n  external_id: Id\n"
            "placeholder_email_domain: example.com.attacker.net\n",
            "not reserved",
        ),
        # the placeholder is built from the external id
        (
            "source: s\ncolumns:\n  first_name: Name\nplaceholder_email_domain: example.com\n",
            "maps no 'external_id'",
        ),
        # a domain that no address can have
        (
            "source: s\ncolumns:\n  external_id: Id\n"
            "placeholder_email_domain: bad_name.example.com\n",
            "not a valid domain",
        ),
        # a string where a list belongs would require the fields 'e', 'm', ...
        (
            "source: s\ncolumns:\n  email: Email\nrequired: email\n",
            "write a list of intake fields",
        ),
        # a required field that no column feeds would reject every row
        (
            "source: s\ncolumns:\n  email: Email\nrequired: [email, external_id]\n",
            r"requires the fields \['external_id'\]",
        ),
        ("source: s\ncolumns:\n  email: Email\nnull_values: Select\n", "write a list of strings"),
        ("- source\n- columns\n", "must be a YAML mapping"),  # a list document
        ("", "must be a YAML mapping"),  # an empty file
        ("source: [unclosed\n", "cannot read column mapping"),  # invalid YAML
    ],
)
def test_load_mapping_rejects_bad_file(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)

    with pytest.raises(MappingError, match=message):
        load_mapping(path)


def test_load_mapping_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="'.*absent.yaml' not found"):
        load_mapping(tmp_path / "absent.yaml")


def test_load_mapping_undecodable_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_bytes(b"source: caf\xe9\n")

    with pytest.raises(MappingError, match="cannot read column mapping"):
        load_mapping(path)


@pytest.mark.parametrize(
    ("domain", "reserved"),
    [
        ("example.com", True),
        ("leads.example.com", True),
        ("LEADS.EXAMPLE.ORG", True),
        ("example.net", True),
        ("notexample.com", False),  # a real name that only ends in the same letters
        ("example.com.attacker.net", False),
        ("example.co", False),
    ],
)
def test_is_reserved_domain_cases(domain: str, reserved: bool) -> None:
    assert is_reserved_domain(domain) is reserved
