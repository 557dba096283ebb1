"""The `acquisition` command: schema upgrades, lead import, the sandbox, the demo and reports."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from acquisition_assets.core.database import (
    DATABASE_URL_ENV,
    AcquisitionDatabase,
    build_engine,
    resolve_database_url,
)
from acquisition_assets.core.migrations import upgrade_schema
from acquisition_assets.core.schema import acquisition_reports
from acquisition_assets.intake.importer import import_leads
from acquisition_assets.intake.mapping import XEDUCATION, MappingError, load_mapping
from acquisition_assets.intake.sample import write_sample

if TYPE_CHECKING:
    from acquisition_assets.sandbox.process import SandboxProcess

DEMO_DAGSTER_HOME = Path("data") / "dagster_home"
DEMO_SAMPLE = Path("data") / "sample_leads.csv"
DEMO_LOG = Path("data") / "demo_materialize.log"
DEMO_DATABASE = Path("data") / "demo.db"


@click.group()
def main() -> None:
    """Run and inspect the lead acquisition pipeline."""


@main.group()
def db() -> None:
    """Manage the acquisition database schema."""


@db.command("upgrade")
@click.option(
    "--url",
    default=None,
    help="Database URL; default: ACQUISITION_DATABASE_URL or data/acquisition.db.",
)
def db_upgrade(url: str | None) -> None:
    """Apply pending schema migrations."""
    engine = build_engine(url)
    revision = upgrade_schema(engine)
    click.echo(
        f"database {engine.url.render_as_string(hide_password=True)} is at revision {revision}"
    )


@main.command("import-leads")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--mapping",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML column mapping for a layout other than the X Education export.",
)
@click.option(
    "--url",
    default=None,
    help="Database URL; default: ACQUISITION_DATABASE_URL or data/acquisition.db.",
)
def import_leads_command(file: Path, mapping: Path | None, url: str | None) -> None:
    """Load a CSV lead export into the intake table; bad rows are recorded as rejections."""
    try:
        column_mapping = load_mapping(mapping) if mapping else XEDUCATION
        summary = import_leads(AcquisitionDatabase(url=url), file, column_mapping)
    except MappingError as error:
        raise click.ClickException(str(error)) from error
    except SQLAlchemyError as error:
        detail = str(error.orig if getattr(error, "orig", None) else error).strip()
        raise click.ClickException(
            f"database error: {detail}\nCheck --url or ACQUISITION_DATABASE_URL."
        ) from error
    click.echo(json.dumps(summary.as_dict(), indent=2))


@main.command("sample-leads")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rows", default=500, show_default=True, help="Number of valid leads to write.")
@click.option("--seed", default=7, show_default=True, help="Random seed, for a reproducible file.")
def sample_leads(file: Path, rows: int, seed: int) -> None:
    """Write a generated lead export in the X Education layout."""
    click.echo(str(write_sample(file, rows=rows, seed=seed)))


@main.command("sandbox")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Loopback address to serve on."
)
@click.option(
    "--email-port",
    default=8025,
    show_default=True,
    help="Port of the email API (0: any free port).",
)
@click.option(
    "--crm-port", default=8026, show_default=True, help="Port of the CRM API (0: any free port)."
)
@click.option(
    "--seed", default=0, show_default=True, help="Seed of the simulated engagement and faults."
)
@click.option(
    "--ports-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the base URLs as JSON to this file once both servers listen.",
)
def sandbox(host: str, email_port: int, crm_port: int, seed: int, ports_file: Path | None) -> None:
    """Serve the sandbox email provider and CRM on loopback until interrupted."""
    from acquisition_assets.sandbox.server import serve

    serve(host=host, email_port=email_port, crm_port=crm_port, seed=seed, ports_file=ports_file)


@main.command("report")
@click.option(
    "--url",
    default=None,
    help="Database URL; default: ACQUISITION_DATABASE_URL or data/acquisition.db.",
)
def report(url: str | None) -> None:
    """Print the newest acquisition report."""
    database = AcquisitionDatabase(url=url)
    with database.connect() as connection:
        markdown = connection.execute(
            select(acquisition_reports.c.markdown)
            .order_by(acquisition_reports.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()
    if markdown is None:
        raise click.ClickException("no report yet; materialize the assets first (make demo)")
    click.echo(markdown)


@main.command("demo")
@click.option(
    "--leads",
    "leads_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Lead export to run on; default: a generated sample.",
)
@click.option(
    "--mapping",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML column mapping for a layout other than the X Education export.",
)
def demo(leads_file: Path | None, mapping: Path | None) -> None:
    """Start the sandbox, import leads, materialize every asset and print the report.

    Without ACQUISITION_DATABASE_URL the demo starts from an empty data/demo.db, so its
    report covers exactly the given file. With it, the demo uses that database as it is.
    """
    from acquisition_assets.sandbox.process import start_sandbox

    if leads_file is None:
        leads_file = write_sample(DEMO_SAMPLE)
        click.echo(f"generated sample leads in {leads_file}")
    url = os.environ.get(DATABASE_URL_ENV)
    if not url:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{DEMO_DATABASE}{suffix}").unlink(missing_ok=True)
        url = resolve_database_url(f"sqlite:///{DEMO_DATABASE}")
    click.echo(f"database: {make_url(url).render_as_string(hide_password=True)}")
    with start_sandbox() as sandbox_process:
        click.echo(f"sandbox email API {sandbox_process.email_url}, CRM {sandbox_process.crm_url}")
        ctx = click.get_current_context()
        ctx.invoke(import_leads_command, file=leads_file, mapping=mapping, url=url)
        command = [
            str(Path(sys.executable).with_name("dagster")),
            "asset",
            "materialize",
            "-m",
            "acquisition_assets.definitions",
            "--select",
            "*",
        ]
        click.echo(f"materializing every asset: {shlex.join(command[1:])} (log: {DEMO_LOG})")
        with DEMO_LOG.open("w", encoding="utf-8") as log:
            finished = subprocess.run(
                command,
                env=_pipeline_environment(url, sandbox_process),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if finished.returncode != 0:
            tail = DEMO_LOG.read_text(encoding="utf-8").splitlines()[-40:]
            click.echo("\n".join(tail), err=True)
            raise click.ClickException(
                f"dagster asset materialize failed with exit code {finished.returncode}; "
                f"the whole log is in {DEMO_LOG}"
            )
    ctx.invoke(report, url=url)


def _pipeline_environment(url: str, sandbox_process: "SandboxProcess") -> dict[str, str]:
    """Return the environment a Dagster process needs to run the assets against the sandbox."""
    DEMO_DAGSTER_HOME.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        DATABASE_URL_ENV: url,
        "ACQUISITION_EMAIL_API_URL": sandbox_process.email_url,
        "ACQUISITION_EMAIL_API_TOKEN": sandbox_process.email_token,
        "ACQUISITION_CRM_API_URL": sandbox_process.crm_url,
        "ACQUISITION_CRM_API_TOKEN": sandbox_process.crm_token,
        "DAGSTER_HOME": str(DEMO_DAGSTER_HOME.resolve()),
    }


@main.command("ui")
@click.option("--port", default=3000, show_default=True, help="Port of the Dagster UI.")
def ui(port: int) -> None:
    """Start the sandbox and the Dagster UI on loopback, on the demo's database.

    Stop it with Ctrl-C; the sandbox stops with it.
    """
    from acquisition_assets.sandbox.process import start_sandbox

    url = os.environ.get(DATABASE_URL_ENV) or resolve_database_url(f"sqlite:///{DEMO_DATABASE}")
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "dev",
        "-w",
        "workspace.yaml",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with start_sandbox() as sandbox_process:
        click.echo(f"sandbox email API {sandbox_process.email_url}, CRM {sandbox_process.crm_url}")
        click.echo(
            f"Dagster UI on http://127.0.0.1:{port}, database {make_url(url).render_as_string()}"
        )
        try:
            subprocess.run(command, env=_pipeline_environment(url, sandbox_process), check=False)
        except KeyboardInterrupt:
            click.echo("stopping")
