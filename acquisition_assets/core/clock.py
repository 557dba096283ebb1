"""Time sources, injectable so tests move time instead of sleeping."""

import time
from datetime import datetime, timezone


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def wall_seconds() -> float:
    """Return the current time in seconds since the epoch."""
    return time.time()


def as_utc(value: datetime | None) -> datetime | None:
    """Attach UTC to a naive datetime, as SQLite returns stored timestamps without a zone."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)
