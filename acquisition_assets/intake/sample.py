"""Generates a sample lead export in the X Education layout, with a few bad rows on purpose."""

import csv
import random
import uuid
from pathlib import Path

from acquisition_assets.intake.mapping import XEDUCATION

SOURCES = [
    "Google",
    "Direct Traffic",
    "Olark Chat",
    "Organic Search",
    "Reference",
    "Referral Sites",
]
ORIGINS = ["Landing Page Submission", "API", "Lead Add Form"]
ACTIVITIES = [
    "Email Opened",
    "SMS Sent",
    "Page Visited on Website",
    "Email Link Clicked",
    "Olark Chat Conversation",
    "Converted to Lead",
    "Email Bounced",
]
OCCUPATIONS = ["Unemployed", "Working Professional", "Student", "Select"]


def _good_row(rng: random.Random) -> dict[str, str]:
    visits = rng.choice([0, 1, 2, 3, 4, 5, 8, 12])
    minutes = rng.randint(0, 35) if visits else 0
    occupation = rng.choice(OCCUPATIONS)
    # Conversion follows time on site and occupation, as in the real export, so the trained
    # model has a signal to find and the sample has hot leads as well as cold ones.
    conversion_chance = (
        0.05 + 0.6 * minutes / 35 + (0.25 if occupation == "Working Professional" else 0)
    )
    return {
        "Prospect ID": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "Lead Source": rng.choice(SOURCES),
        "Lead Origin": rng.choice(ORIGINS),
        "Do Not Email": "Yes" if rng.random() < 0.08 else "No",
        "Do Not Call": "No",
        "Converted": "1" if rng.random() < conversion_chance else "0",
        "TotalVisits": str(visits),
        "Total Time Spent on Website": str(minutes * 60 + rng.randint(0, 59) if minutes else 0),
        "Page Views Per Visit": f"{rng.choice([0, 1, 1.5, 2, 3, 4]) if visits else 0}",
        "Last Activity": rng.choice(ACTIVITIES),
        "Country": rng.choice(["India", "", "United States"]),
        "City": rng.choice(["Mumbai", "Select", "Other Cities"]),
        "What is your current occupation": occupation,
        "Specialization": rng.choice(["Select", "Finance Management", "Marketing Management"]),
        "Tags": rng.choice(["", "Will revert after reading the email", "Ringing"]),
        "Lead Quality": rng.choice(["", "Might be", "High in Relevance"]),
    }


def write_sample(path: str | Path, rows: int = 500, seed: int = 7) -> Path:
    """Write `rows` good leads plus three bad rows (missing id, negative visits, bad flag)."""
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    headers = list(XEDUCATION.columns.values())
    records = [_good_row(rng) for _ in range(rows)]
    records.append({**_good_row(rng), "Prospect ID": ""})
    records.append({**_good_row(rng), "TotalVisits": "-3"})
    records.append({**_good_row(rng), "Do Not Email": "Maybe"})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=headers)
        writer.writeheader()
        writer.writerows(records)
    return path
