"""Versioned schema migrations of the acquisition database, applied with Alembic."""

from pathlib import Path

import filelock
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# An arbitrary constant shared by every process that migrates, so concurrent steps of one
# run wait for each other instead of racing to create the same tables.
_PG_ADVISORY_LOCK_ID = 741_852_963


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """Return the newest migration revision shipped with the package."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, f"no migrations found in {MIGRATIONS_DIR}"
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_schema(engine: Engine) -> str:
    """Apply every pending migration and return the revision the database is now at.

    Safe to call from many processes at once: an up-to-date database costs one query, and
    the migrating path holds a lock (a PostgreSQL advisory lock, a lock file beside a
    SQLite database) so only one process applies migrations.
    """
    head = head_revision()
    if current_revision(engine) == head:
        return head
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with filelock.FileLock(f"{engine.url.database}.migrate.lock", timeout=120):
            _upgrade_locked(engine)
    else:
        _upgrade_locked(engine)
    return head


def _upgrade_locked(engine: Engine) -> None:
    config = _alembic_config()
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_ADVISORY_LOCK_ID}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
