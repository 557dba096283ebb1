"""Fixtures shared by the suite: the sandbox process, a database per backend, resources."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.engine import make_url

from acquisition_assets.core.database import AcquisitionDatabase
from acquisition_assets.crm.client import HubSpotCrmApi
from acquisition_assets.definitions import ALL_ASSETS
from acquisition_assets.nurturing.email_client import PostmarkEmailApi
from acquisition_assets.sandbox.process import SandboxProcess, start_sandbox
from acquisition_assets.settings import PipelineSettings

POSTGRES_URL_ENV = "ACQUISITION_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
# The public X Education export lives outside the repository, because its licence does not
# allow redistribution. ACQUISITION_XEDUCATION_CSV points the tests at another copy.
XEDUCATION_CSV = Path(
    os.environ.get("ACQUISITION_XEDUCATION_CSV")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "xeducation" / "Leads.csv"
)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxProcess]:
    with start_sandbox(seed=1) as process:
        yield process


@pytest.fixture
def fresh_sandbox(sandbox: SandboxProcess) -> SandboxProcess:
    """The session's sandbox with its data, counters and fault knobs cleared."""
    sandbox.reset()
    return sandbox


def _postgres_server_url() -> str:
    return os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)


def _create_postgres_database() -> tuple[str, str]:
    server = make_url(_postgres_server_url())
    name = f"acquisition_test_{uuid.uuid4().hex[:12]}"
    try:
        connection = psycopg2.connect(
            host=server.host,
            port=server.port or 5432,
            user=server.username,
            dbname=server.database or "postgres",
            connect_timeout=5,
        )
    except psycopg2.OperationalError as error:
        if os.environ.get("CI") or os.environ.get(POSTGRES_URL_ENV):
            raise
        pytest.skip(f"PostgreSQL at {server.host}:{server.port} is not reachable: {error}")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return name, server.set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(name: str) -> None:
    server = make_url(_postgres_server_url())
    connection = psycopg2.connect(
        host=server.host,
        port=server.port or 5432,
        user=server.username,
        dbname=server.database or "postgres",
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'acquisition.db'}"
        return
    name, url = _create_postgres_database()
    yield url
    _drop_postgres_database(name)


@pytest.fixture
def database(database_url: str) -> AcquisitionDatabase:
    return AcquisitionDatabase(url=database_url)


def build_resources(
    database_url: str, sandbox: SandboxProcess, **settings: object
) -> dict[str, dg.ConfigurableResource]:
    """Resources pointed at the sandbox, with fast retries so fault tests stay short."""
    api_limits = {
        "timeout_seconds": 2.0,
        "backoff_base_seconds": 0.01,
        "recovery_timeout_seconds": 60.0,
    }
    return {
        "database": AcquisitionDatabase(url=database_url),
        "settings": PipelineSettings(**settings),
        "email_api": PostmarkEmailApi(
            api_url=sandbox.email_url, server_token=sandbox.email_token, **api_limits
        ),
        "crm_api": HubSpotCrmApi(
            api_url=sandbox.crm_url, access_token=sandbox.crm_token, **api_limits
        ),
    }


def materialize_all(resources: dict[str, dg.ConfigurableResource]) -> dg.ExecuteInProcessResult:
    """Materialize every asset in this process and fail the test if any step fails."""
    result = dg.materialize(ALL_ASSETS, resources=resources, raise_on_error=True)
    assert result.success
    return result


def count_rows(database: AcquisitionDatabase, table: Table, *conditions: Any) -> int:
    """Count a table's rows that meet every condition."""
    statement = select(func.count()).select_from(table)
    for condition in conditions:
        statement = statement.where(condition)
    with database.connect() as connection:
        return connection.execute(statement).scalar_one()


def metadata_of(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    """Return an asset's materialization metadata as plain values."""
    events = result.asset_materializations_for_node(asset)
    assert events, f"{asset} was not materialized"
    return {key: value.value for key, value in events[-1].metadata.items()}
