"""The Dagster UI: `dagster dev` serves the code location and a launched run succeeds."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.intake.importer import import_leads
from acquisition_assets.intake.sample import write_sample
from acquisition_assets.sandbox.process import SandboxProcess

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 90
RUN_TIMEOUT_SECONDS = 300
LAUNCH = """
mutation {
  launchRun(executionParams: {
    selector: {repositoryLocationName: "acquisition_assets", repositoryName: "__repository__",
               jobName: "acquisition_job"},
    runConfigData: {}
  }) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
RUN_STATUS = 'query { runOrError(runId: "%s") { ... on Run { status } } }'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(url: str, query: str) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query}, timeout=30)
    response.raise_for_status()
    return response.json()["data"]


@pytest.fixture
def dagster_dev(tmp_path: Path, fresh_sandbox: SandboxProcess):
    database_url = f"sqlite:///{tmp_path / 'ui.db'}"
    import_leads(
        AcquisitionDatabase(url=database_url), write_sample(tmp_path / "leads.csv", rows=40)
    )
    port = _free_port()
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "ACQUISITION_DATABASE_URL": database_url,
        "ACQUISITION_EMAIL_API_URL": fresh_sandbox.email_url,
        "ACQUISITION_EMAIL_API_TOKEN": fresh_sandbox.email_token,
        "ACQUISITION_CRM_API_URL": fresh_sandbox.crm_url,
        "ACQUISITION_CRM_API_TOKEN": fresh_sandbox.crm_token,
    }
    command = [
        str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml",
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO, env=environment, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    try:
        yield url
    finally:
        # dagster dev 1.13 leaves its child processes running on SIGTERM, so stop the group.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_ui_lists_location_and_runs_job(dagster_dev: str, fresh_sandbox: SandboxProcess) -> None:
    locations = _graphql(
        dagster_dev, "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
    )
    names = [entry["name"] for entry in locations["workspaceOrError"]["locationEntries"]]
    assert names == ["acquisition_assets"]

    launched = _graphql(dagster_dev, LAUNCH)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    status = None
    while time.monotonic() < deadline:
        status = _graphql(dagster_dev, RUN_STATUS % run_id)["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS"
    assert fresh_sandbox.contacts()["count"] > 0
