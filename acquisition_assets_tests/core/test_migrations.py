"""Schema migrations: applied once, safe to repeat, and in step with the table definitions."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from acquisition_assets.core.database import AcquisitionDatabase, build_engine
from acquisition_assets.core.migrations import current_revision, head_revision, upgrade_schema
from acquisition_assets.core.schema import metadata


def test_upgrade_reaches_head_and_repeats_safely(database_url: str) -> None:
    engine = build_engine(database_url)
    assert current_revision(engine) is None
    assert upgrade_schema(engine) == head_revision()
    assert upgrade_schema(engine) == head_revision()
    assert current_revision(engine) == head_revision()


def test_migrated_schema_matches_table_definitions(database_url: str) -> None:
    engine = build_engine(database_url)
    upgrade_schema(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_database_resource_migrates_on_first_use(database_url: str) -> None:
    database = AcquisitionDatabase(url=database_url)
    assert current_revision(database.engine) == head_revision()
