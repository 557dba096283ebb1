"""Helpers of the resilience tests: a manual clock, resources on it, ledger and sandbox reads."""

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
from sqlalchemy import select

from acquisition_assets.core.breaker import BreakerSnapshot, CircuitBreaker
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import circuit_breaker_transitions, email_sends
from acquisition_assets.crm.client import HubSpotCrmApi
from acquisition_assets.definitions import ALL_ASSETS
from acquisition_assets.intake.importer import import_leads
from acquisition_assets.intake.sample import write_sample
from acquisition_assets.nurturing.assets import NURTURE_KIND
from acquisition_assets.nurturing.email_client import EMAIL_BREAKER, PostmarkEmailApi
from acquisition_assets.sandbox.process import SandboxProcess
from acquisition_assets.settings import PipelineSettings

# The assets that nurturing_sends depends on, so a test can enroll leads before a fault.
# lead_scoring_model is left out because training takes over a second and scored_leads
# scores with points while no model exists.
UP_TO_ENROLLMENTS = ["new_leads", "scored_leads", "lead_segments", "nurturing_enrollments"]
START_SECONDS = 1_000_000.0


class ManualClock:
    """A clock in epoch seconds that moves only when a test advances it."""

    def __init__(self, start: float = START_SECONDS):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def clocked_email_api(clock: Callable[[], float], **fields: Any) -> PostmarkEmailApi:
    """Build an email resource whose breaker reads `clock`.

    Dagster rebuilds resources from their fields, so the clock travels in a subclass.
    """

    class ClockedPostmarkEmailApi(PostmarkEmailApi):
        def clock(self) -> Callable[[], float]:
            return clock

    return ClockedPostmarkEmailApi(**fields)


def clocked_crm_api(clock: Callable[[], float], **fields: Any) -> HubSpotCrmApi:
    """Build a CRM resource whose breaker reads `clock`."""

    class ClockedHubSpotCrmApi(HubSpotCrmApi):
        def clock(self) -> Callable[[], float]:
            return clock

    return ClockedHubSpotCrmApi(**fields)


def resources_for(
    database_url: str,
    sandbox: SandboxProcess,
    clock: Callable[[], float],
    api: dict[str, Any] | None = None,
    email: dict[str, Any] | None = None,
    **settings: Any,
) -> dict[str, dg.ConfigurableResource]:
    """Resources on the sandbox with fast retries, a manual clock and small batches.

    `api` sets fields of both API resources and `email` those of the email resource alone;
    `settings` sets PipelineSettings fields.
    """
    limits = {
        "timeout_seconds": 2.0,
        "backoff_base_seconds": 0.01,
        "recovery_timeout_seconds": 60.0,
        **(api or {}),
    }
    pipeline = {"max_leads_per_run": 60, "batch_size": 5, "max_workers": 4, **settings}
    return {
        "database": AcquisitionDatabase(url=database_url),
        "settings": PipelineSettings(**pipeline),
        "email_api": clocked_email_api(
            clock,
            api_url=sandbox.email_url,
            server_token=sandbox.email_token,
            **{**limits, **(email or {})},
        ),
        "crm_api": clocked_crm_api(
            clock, api_url=sandbox.crm_url, access_token=sandbox.crm_token, **limits
        ),
    }


def load_leads(database_url: str, tmp_path: Path, rows: int = 60) -> AcquisitionDatabase:
    """Import a sample file of `rows` good leads and return the database."""
    database = AcquisitionDatabase(url=database_url)
    import_leads(database, write_sample(tmp_path / "leads.csv", rows=rows))
    return database


def materialize(
    resources: dict[str, dg.ConfigurableResource], selection: list[str]
) -> dg.ExecuteInProcessResult:
    """Materialize the selected assets in this process and fail the test if a step fails."""
    result = dg.materialize(ALL_ASSETS, selection=selection, resources=resources)
    assert result.success
    return result


def send_statuses(database: AcquisitionDatabase, kind: str = NURTURE_KIND) -> Counter:
    """Count the ledger rows of one kind by status."""
    with database.connect() as connection:
        statuses = connection.execute(
            select(email_sends.c.status).where(email_sends.c.kind == kind)
        ).scalars()
        return Counter(statuses)


def ledger_keys(database: AcquisitionDatabase, status: str | None = None) -> set[str]:
    """Return the idempotency keys of all ledger rows, or of those in one status."""
    statement = select(email_sends.c.idempotency_key)
    if status is not None:
        statement = statement.where(email_sends.c.status == status)
    with database.connect() as connection:
        return set(connection.execute(statement).scalars())


def keys_sent_more_than_once(sandbox: SandboxProcess) -> dict[str, int]:
    """Return the idempotency keys the sandbox accepted more than once, with their counts."""
    counts = sandbox.messages()["by_idempotency_key"]
    return {key: count for key, count in counts.items() if count > 1}


def breaker_state(database: AcquisitionDatabase, name: str = EMAIL_BREAKER) -> BreakerSnapshot:
    """Read a breaker's shared state through a breaker object on the same table."""
    return CircuitBreaker(name, database.engine).snapshot()


def transitions(database: AcquisitionDatabase, name: str = EMAIL_BREAKER) -> list[tuple[str, str]]:
    """Return a breaker's recorded transitions as (from, to) pairs, oldest first."""
    with database.connect() as connection:
        rows = connection.execute(
            select(circuit_breaker_transitions.c.from_state, circuit_breaker_transitions.c.to_state)
            .where(circuit_breaker_transitions.c.name == name)
            .order_by(circuit_breaker_transitions.c.id)
        ).all()
    return [(row.from_state, row.to_state) for row in rows]
