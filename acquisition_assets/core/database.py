"""The database resource: engine, migrations on set-up and TTL-cached reads."""

import os
from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from acquisition_assets.core.cache import CacheStats, QueryCache
from acquisition_assets.core.migrations import upgrade_schema

DATABASE_URL_ENV = "ACQUISITION_DATABASE_URL"
DEFAULT_SQLITE_PATH = Path("data") / "acquisition.db"

# Seconds a SQLite writer waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_SECONDS = 60


def resolve_database_url(url: str | None = None) -> str:
    """Return the URL to use: the argument, then ACQUISITION_DATABASE_URL, then a SQLite file.

    A bare postgresql:// URL is pinned to psycopg2, the driver this package installs,
    because SQLAlchemy 2.1 maps it to psycopg 3.
    """
    url = url or os.environ.get(DATABASE_URL_ENV)
    if not url:
        DEFAULT_SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{DEFAULT_SQLITE_PATH}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return parsed.render_as_string(hide_password=False)


def _enable_sqlite_concurrency(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.close()


def build_engine(url: str | None = None) -> Engine:
    """Create an engine for the resolved URL, with SQLite set up for several processes."""
    resolved = resolve_database_url(url)
    if resolved.startswith("sqlite"):
        engine = create_engine(
            resolved,
            poolclass=NullPool,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        event.listen(engine, "connect", _enable_sqlite_concurrency)
        return engine
    # Every API worker thread of a step writes its own batch results, so the pool allows
    # as many connections as the largest worker count the settings accept (64).
    return create_engine(resolved, pool_pre_ping=True, pool_size=5, max_overflow=64)


class AcquisitionDatabase(dg.ConfigurableResource):
    """The acquisition database: SQLite by default, PostgreSQL through a URL.

    Set-up applies pending migrations, so every step works on the current schema.
    """

    url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the acquisition database. Empty means the value of "
            "ACQUISITION_DATABASE_URL, or else the SQLite file data/acquisition.db."
        ),
    )
    cache_max_entries: int = Field(
        default=1024, description="Maximum number of cached query results (entries)."
    )

    _engine: Engine | None = PrivateAttr(default=None)
    _cache: QueryCache = PrivateAttr(default_factory=QueryCache)
    _caching_enabled: bool = PrivateAttr(default=True)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._engine = build_engine(self.url)
        self._cache = QueryCache(maxsize=self.cache_max_entries)
        upgrade_schema(self._engine)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            # Direct use outside Dagster, for example from the command line.
            self._engine = build_engine(self.url)
            upgrade_schema(self._engine)
        return self._engine

    def set_caching(self, enabled: bool) -> None:
        """Turn cached reads on or off for the rest of this step."""
        self._caching_enabled = enabled

    @contextmanager
    def begin(self, writes: Iterable[str] = ()) -> Iterator[Connection]:
        """Open a transaction that commits on success and rolls back on any error.

        `writes` names the tables the transaction changes: their cached reads are dropped
        after the commit.
        """
        written = tuple(writes)
        with self.engine.begin() as connection:
            yield connection
        if written:
            self._cache.invalidate(written)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """Open a connection for reads that are not cached."""
        with self.engine.connect() as connection:
            yield connection

    def cached_rows(
        self,
        name: str,
        statement: Any,
        tables: Iterable[str],
        ttl_seconds: float,
        params: Hashable = (),
    ) -> tuple:
        """Run a read and return its rows as a tuple, served from the cache within the TTL.

        `name` and `params` identify the query. `tables` lists the tables it reads, so a
        write through `begin(writes=...)` invalidates it.
        """

        def load() -> tuple:
            with self.engine.connect() as connection:
                return tuple(connection.execute(statement).mappings().all())

        if not self._caching_enabled:
            return load()
        return self._cache.get_or_load(name, params, tables, ttl_seconds, load)

    def cache_stats(self) -> CacheStats:
        """Return this process's query cache counters."""
        return self._cache.stats()
