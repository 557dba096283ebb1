"""In-memory state of the sandbox: what each service received, its knobs and its counters."""

import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from acquisition_assets.sandbox.knobs import CrmKnobs, EmailKnobs, FaultKnobs

DEFAULT_EMAIL_TOKEN = "sandbox-email-token"
DEFAULT_CRM_TOKEN = "sandbox-crm-token"

REFERRAL_FORM_GUID = "referral-signup"
RATE_LIMIT_WINDOW_SECONDS = 10.0


def utc_timestamp() -> str:
    """Return the current time as ISO-8601 UTC with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def epoch_millis() -> int:
    """Return the current wall-clock time in milliseconds since the Unix epoch."""
    return int(time.time() * 1000)


@dataclass
class RequestStats:
    """Counters of the API requests one service received; /_sandbox/* routes are not counted."""

    requests: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_route: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    max_concurrent: int = 0
    in_flight: int = 0

    def begin(self, route: str) -> None:
        """Count a request that has started."""
        self.requests += 1
        self.by_route[route] += 1
        self.in_flight += 1
        self.max_concurrent = max(self.max_concurrent, self.in_flight)

    def finish(self, status: int | None) -> None:
        """Count a finished request; status is None when no response was started."""
        self.in_flight -= 1
        if status is not None:
            self.by_status[str(status)] += 1

    def clear(self) -> None:
        """Zero the counters but keep in_flight, because those requests are still running."""
        self.requests = 0
        self.by_status.clear()
        self.by_route.clear()
        self.faults.clear()
        self.max_concurrent = self.in_flight

    def to_dict(self) -> dict[str, Any]:
        """Return the counters as a JSON-ready dict."""
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "by_route": dict(self.by_route),
            "faults": dict(self.faults),
            "max_concurrent": self.max_concurrent,
            "in_flight": self.in_flight,
        }


class SlidingWindowLimiter:
    """Per-key limit of requests within the last window seconds of a monotonic clock."""

    def __init__(self, clock: Callable[[], float], window_seconds: float) -> None:
        self._clock = clock
        self._window_seconds = window_seconds
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str, limit: int) -> bool:
        """Record a request for key and return True, or return False when key is over limit.

        A limit of 0 disables the check. Rejected requests are not recorded, so a client
        that backs off regains capacity once its old requests leave the window.
        """
        if limit <= 0:
            return True

        now = self._clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self._window_seconds:
            hits.popleft()
        if len(hits) >= limit:
            return False
        hits.append(now)
        return True

    def clear(self) -> None:
        """Forget all recorded requests."""
        self._hits.clear()


@dataclass
class ServiceState:
    """Knobs, counters and fault randomness of one service."""

    name: str
    seed: int
    knobs_factory: Callable[[], FaultKnobs]
    knobs: FaultKnobs = field(init=False)
    stats: RequestStats = field(default_factory=RequestStats)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Restore default knobs, zero the counters and restart the seeded randomness."""
        self.knobs = self.knobs_factory()
        self.stats.clear()
        # A string seed per service keeps the two services' fault sequences independent.
        self.rng = random.Random(f"{self.seed}/{self.name}")


@dataclass
class EmailStore:
    """Accepted messages, generated webhook events and the suppression list."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    suppressed: set[str] = field(default_factory=set)
    messages_rejected: int = 0
    # Event ids start again at 1 in every store, so clients need to tell feeds apart.
    feed_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def add_event(self, event: dict[str, Any]) -> None:
        """Append an event under the next event id, which is the feed cursor."""
        self.events.append({"ID": len(self.events) + 1, **event})


@dataclass
class Contact:
    """A CRM contact keyed by lower-cased email."""

    id: str
    email: str
    properties: dict[str, str | None]
    created_at: str
    updated_at: str
    upserts: int = 0


@dataclass
class CrmStore:
    """Contacts, upsert counters and form submissions of the CRM."""

    contacts: dict[str, Contact] = field(default_factory=dict)
    contact_ids: set[str] = field(default_factory=set)
    upsert_inputs: int = 0
    # Prefix of every submissions cursor, so a cursor from an earlier store is rejected.
    cursor_prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    submissions: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {REFERRAL_FORM_GUID: []}
    )

    def add_submission(self, form_guid: str, values: dict[str, str]) -> dict[str, Any]:
        """Store a form submission, creating the form if it is new, and return it."""
        submission = {
            "submittedAt": epoch_millis(),
            "values": [{"name": name, "value": value} for name, value in values.items()],
            "pageUrl": "http://127.0.0.1/referral",
        }
        self.submissions.setdefault(form_guid, []).append(submission)
        return submission

    def submission_count(self) -> int:
        """Return the number of submissions over all forms."""
        return sum(len(items) for items in self.submissions.values())


class SandboxState:
    """State that both services share; the sandbox process creates one instance."""

    def __init__(
        self,
        seed: int = 0,
        email_token: str = DEFAULT_EMAIL_TOKEN,
        crm_token: str = DEFAULT_CRM_TOKEN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seed = seed
        self.email_token = email_token
        self.crm_token = crm_token
        self.email = ServiceState("email", seed, EmailKnobs)
        self.crm = ServiceState("crm", seed, CrmKnobs)
        self.email_store = EmailStore()
        self.crm_store = CrmStore()
        self.crm_limiter = SlidingWindowLimiter(clock, RATE_LIMIT_WINDOW_SECONDS)

    @property
    def email_knobs(self) -> EmailKnobs:
        """Knobs of the email provider."""
        assert isinstance(self.email.knobs, EmailKnobs)
        return self.email.knobs

    @property
    def crm_knobs(self) -> CrmKnobs:
        """Knobs of the CRM."""
        assert isinstance(self.crm.knobs, CrmKnobs)
        return self.crm.knobs

    def reset(self) -> None:
        """Clear the data of both services and restore their knobs and counters."""
        self.email.reset()
        self.crm.reset()
        self.email_store = EmailStore()
        self.crm_store = CrmStore()
        self.crm_limiter.clear()
