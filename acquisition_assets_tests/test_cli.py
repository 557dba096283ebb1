"""The command lines a user types: `dagster asset materialize` and `acquisition`."""

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from acquisition_assets.cli import main
from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.core.schema import acquisition_reports, leads
from acquisition_assets.intake.importer import import_leads
from acquisition_assets.intake.sample import write_sample
from acquisition_assets.sandbox.process import SandboxProcess

REPO = Path(__file__).resolve().parents[1]


def test_dagster_cli_materializes_every_asset(
    database_url: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = AcquisitionDatabase(url=database_url)
    import_leads(database, write_sample(tmp_path / "leads.csv", rows=60))
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "ACQUISITION_DATABASE_URL": database_url,
        "ACQUISITION_EMAIL_API_URL": fresh_sandbox.email_url,
        "ACQUISITION_EMAIL_API_TOKEN": fresh_sandbox.email_token,
        "ACQUISITION_CRM_API_URL": fresh_sandbox.crm_url,
        "ACQUISITION_CRM_API_TOKEN": fresh_sandbox.crm_token,
    }
    command = [
        str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
        "-m", "acquisition_assets.definitions", "--select", "*",
    ]  # fmt: skip
    finished = subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    with database.connect() as connection:
        assert connection.execute(select(func.count()).select_from(leads)).scalar_one() == 60
        assert (
            connection.execute(select(func.count()).select_from(acquisition_reports)).scalar_one()
            == 1
        )
    assert fresh_sandbox.contacts()["count"] > 0


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'upgrade.db'}"
    runner = CliRunner()
    first = runner.invoke(main, ["db", "upgrade", "--url", url])
    second = runner.invoke(main, ["db", "upgrade", "--url", url])
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "revision 0001" in second.output


def test_report_without_runs_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", "--url", f"sqlite:///{tmp_path / 'empty.db'}"])
    assert result.exit_code != 0
    assert "materialize the assets first" in result.output


def test_workspace_file_loads_the_code_location(tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("dagster")), "definitions", "validate",
        "-w", "workspace.yaml",
    ]  # fmt: skip
    environment = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    finished = subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "All code locations passed validation" in finished.stderr + finished.stdout
