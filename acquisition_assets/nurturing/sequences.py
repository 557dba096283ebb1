"""Nurturing sequences: which emails each segment receives, and when."""

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class SequenceStep:
    """One email of a sequence, sent `delay` after the previous one (or on enrollment)."""

    delay: timedelta
    template: str
    subject: str
    body: str


SEQUENCES: dict[str, tuple[SequenceStep, ...]] = {
    "hot": (
        SequenceStep(
            timedelta(0),
            "hot-welcome",
            "Your course shortlist is ready",
            "Hi {name},\n\nyou looked closely at our courses, so here is a shortlist "
            "picked for you, with the next intake dates.",
        ),
        SequenceStep(
            timedelta(days=2),
            "hot-advisor",
            "Talk to an advisor this week",
            "Hi {name},\n\nan admissions advisor can answer your questions in a "
            "15-minute call. Pick a time that suits you.",
        ),
    ),
    "warm": (
        SequenceStep(
            timedelta(0),
            "warm-welcome",
            "Three ways our graduates moved ahead",
            "Hi {name},\n\nhere are three short stories from graduates who changed "
            "roles after a course with us.",
        ),
        SequenceStep(
            timedelta(days=4),
            "warm-guide",
            "A free guide to choosing a course",
            "Hi {name},\n\nour guide compares formats, workloads and outcomes.",
        ),
        SequenceStep(
            timedelta(days=7),
            "warm-offer",
            "Early enrolment closes soon",
            "Hi {name},\n\nearly enrolment for the next intake closes in two weeks.",
        ),
    ),
    "cold": (
        SequenceStep(
            timedelta(0),
            "cold-welcome",
            "Thanks for your interest",
            "Hi {name},\n\nthanks for visiting. Here is what you can learn with us.",
        ),
        SequenceStep(
            timedelta(days=7),
            "cold-digest",
            "This month's free webinars",
            "Hi {name},\n\nfree live webinars this month, open to everyone.",
        ),
        SequenceStep(
            timedelta(days=14),
            "cold-checkin",
            "Still curious?",
            "Hi {name},\n\nif now is not the time, no problem: reply STOP to stop.",
        ),
    ),
}

UNSUBSCRIBE_FOOTER = "\n\nYou receive this because you asked about our courses. Unsubscribe: {link}"


def step_of(sequence: str, index: int) -> SequenceStep | None:
    """Return the step at `index`, or None once the sequence is complete."""
    steps = SEQUENCES[sequence]
    return steps[index] if index < len(steps) else None
