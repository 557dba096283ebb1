"""A materialization killed with SIGKILL in the middle of sending, then run again."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import email_sends
from acquisition_assets.sandbox.process import SandboxProcess
from acquisition_assets_tests.conftest import metadata_of
from acquisition_assets_tests.resilience.helpers import (
    UP_TO_ENROLLMENTS,
    ManualClock,
    keys_sent_more_than_once,
    ledger_keys,
    load_leads,
    materialize,
    resources_for,
    send_statuses,
)

# Runs nurturing_sends with the resources of the code location, read from the environment.
MATERIALIZE_SENDS = """
import json
import sys

import dagster as dg

from acquisition_assets.definitions import ALL_ASSETS, build_resources
from acquisition_assets.settings import PipelineSettings

resources = build_resources()
resources["settings"] = PipelineSettings(**json.loads(sys.argv[1]))
dg.materialize(ALL_ASSETS, selection=["nurturing_sends"], resources=resources)
"""
SETTINGS = {"batch_size": 5, "max_workers": 2, "max_leads_per_run": 100}
# Latency of each batch before the switch, so the sender is still busy when the test acts.
BATCH_LATENCY_MS = 100
# Seconds the sandbox delays each response after the switch, below the client's 10 s timeout.
HELD_RESPONSE_SECONDS = 2.0
DEADLINE_SECONDS = 30.0
POLL_SECONDS = 0.01


def _start_sender(database_url: str, sandbox: SandboxProcess, workdir: Path) -> subprocess.Popen:
    environment = {
        **os.environ,
        "ACQUISITION_DATABASE_URL": database_url,
        "ACQUISITION_EMAIL_API_URL": sandbox.email_url,
        "ACQUISITION_EMAIL_API_TOKEN": sandbox.email_token,
        "ACQUISITION_CRM_API_URL": sandbox.crm_url,
        "ACQUISITION_CRM_API_TOKEN": sandbox.crm_token,
    }
    environment.pop("DAGSTER_HOME", None)
    with open(workdir / "sender.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", MATERIALIZE_SENDS, json.dumps(SETTINGS)],
            cwd=workdir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _sent_rows(database: AcquisitionDatabase) -> int:
    with database.connect() as connection:
        return connection.execute(
            select(func.count()).select_from(email_sends).where(email_sends.c.status == "sent")
        ).scalar_one()


def _wait_for(condition: Callable[[], bool], sender: subprocess.Popen, log: Path) -> None:
    """Poll until `condition` is true while the sender runs, or kill it and fail at the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if sender.poll() is not None:
            raise AssertionError(
                f"the sender exited with {sender.returncode} too early:\n"
                + log.read_text(errors="replace")
            )
        if time.monotonic() > deadline:
            sender.kill()
            sender.wait()
            raise AssertionError("the condition was not met in time:\n" + log.read_text())
        time.sleep(POLL_SECONDS)


def _held_responses(sandbox: SandboxProcess) -> int:
    return sandbox.stats("email")["faults"].get("lost_response", 0)


def _wait_until_stored(sandbox: SandboxProcess) -> None:
    """Wait until every request still in the sandbox is a stored batch with a held response."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while sandbox.stats("email")["in_flight"] > _held_responses(sandbox):
        assert time.monotonic() < deadline
        time.sleep(POLL_SECONDS)


def test_killed_sends_resume_exactly_once(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = load_leads(database_url, tmp_path, rows=SETTINGS["max_leads_per_run"])
    resources = resources_for(
        database_url,
        fresh_sandbox,
        ManualClock(),
        email={"reconcile_after_seconds": 0},
        max_leads_per_run=SETTINGS["max_leads_per_run"],
    )
    materialize(resources, UP_TO_ENROLLMENTS)
    fresh_sandbox.set_faults("email", latency_ms=BATCH_LATENCY_MS)
    log = tmp_path / "sender.log"

    sender = _start_sender(database_url, fresh_sandbox, tmp_path)
    _wait_for(lambda: _sent_rows(database) >= 2 * SETTINGS["batch_size"], sender, log)
    # From here on the provider stores each batch at once and delays its response, so the
    # kill lands after the provider accepted a batch and before the ledger recorded it.
    fresh_sandbox.set_faults(
        "email", latency_ms=0, lost_response_rate=1.0, timeout_seconds=HELD_RESPONSE_SECONDS
    )
    _wait_for(lambda: _held_responses(fresh_sandbox) > 0, sender, log)
    sender.send_signal(signal.SIGKILL)
    sender.wait()
    _wait_until_stored(fresh_sandbox)

    assert sender.returncode == -signal.SIGKILL
    killed = send_statuses(database)
    accepted = fresh_sandbox.stats("email")["messages_accepted"]
    assert killed["sent"] > 0
    assert killed["sending"] > 0
    assert killed["pending"] > 0
    assert accepted > killed["sent"]

    fresh_sandbox.set_faults("email", lost_response_rate=0.0)
    rerun = materialize(resources, ["nurturing_sends"])

    queued = sum(killed.values())
    sends = metadata_of(rerun, "nurturing_sends")
    assert sends["reconciled_sent"] == accepted - killed["sent"]
    assert send_statuses(database) == {"sent": queued}
    assert keys_sent_more_than_once(fresh_sandbox) == {}
    assert set(fresh_sandbox.messages()["by_idempotency_key"]) == ledger_keys(database)
    assert fresh_sandbox.stats("email")["messages_accepted"] == queued
