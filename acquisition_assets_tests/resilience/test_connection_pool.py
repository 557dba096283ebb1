"""The email client's connection pool keeps a connection for every sending thread."""

import logging
from pathlib import Path

import pytest

from acquisition_assets.sandbox.process import SandboxProcess
from acquisition_assets_tests.conftest import metadata_of
from acquisition_assets_tests.resilience.helpers import (
    UP_TO_ENROLLMENTS,
    ManualClock,
    load_leads,
    materialize,
    resources_for,
)

# More threads than the 10 connections a requests adapter keeps by default.
WORKERS = 12
POOL_FULL = "Connection pool is full"


def test_pool_sized_to_workers_keeps_connections(
    fresh_sandbox: SandboxProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database_url = f"sqlite:///{tmp_path / 'pool.db'}"
    load_leads(database_url, tmp_path)
    resources = resources_for(
        database_url, fresh_sandbox, ManualClock(), max_workers=WORKERS, batch_size=2
    )
    materialize(resources, UP_TO_ENROLLMENTS)
    # Latency keeps every thread's request open at once, also on a loaded machine.
    fresh_sandbox.set_faults("email", latency_ms=1000)

    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        result = materialize(resources, ["nurturing_sends"])

    assert metadata_of(result, "nurturing_sends")["sent"] > WORKERS * 2
    # At least, because requests of an earlier test may still be held in the sandbox.
    assert fresh_sandbox.stats("email")["max_concurrent"] >= WORKERS
    assert [record for record in caplog.records if POOL_FULL in record.getMessage()] == []
