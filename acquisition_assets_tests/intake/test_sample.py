"""The generated sample export: reproducible, in the X Education layout, three bad rows."""

import csv
from pathlib import Path

from acquisition_assets.intake.sample import write_sample
from acquisition_assets_tests.intake.helpers import XEDUCATION_HEADERS


def test_write_sample_is_reproducible(tmp_path: Path) -> None:
    first = write_sample(tmp_path / "a" / "leads.csv", rows=25, seed=3)
    second = write_sample(tmp_path / "b" / "leads.csv", rows=25, seed=3)
    other_seed = write_sample(tmp_path / "c" / "leads.csv", rows=25, seed=4)

    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other_seed.read_bytes()


def test_write_sample_layout_and_bad_rows(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "leads.csv", rows=10)

    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))

    assert list(rows[0]) == XEDUCATION_HEADERS
    assert len(rows) == 13
    assert len({row["Prospect ID"] for row in rows}) == 13
    assert rows[-3]["Prospect ID"] == ""
    assert rows[-2]["TotalVisits"] == "-3"
    assert rows[-1]["Do Not Email"] == "Maybe"
