"""Dialect-aware bulk statements shared by every store: insert-or-ignore and upsert."""

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

Row = dict[str, Any]


def _insert_for(connection: Connection, table: Table):
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    if connection.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(
        f"database dialect {connection.dialect.name!r} is not supported; use SQLite or PostgreSQL"
    )


def chunked(items: Iterable, size: int) -> Iterator[list]:
    """Yield lists of at most `size` items."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def insert_ignore(
    connection: Connection, table: Table, rows: Sequence[Row], conflict_columns: Sequence[str]
) -> int:
    """Insert rows in bulk, skipping those that collide on `conflict_columns`.

    Returns the number of rows inserted.
    """
    if not rows:
        return 0
    # RETURNING makes SQLAlchemy send multi-row INSERT statements ("insertmanyvalues");
    # without it psycopg2 executes one statement per row. The returned keys also give an
    # exact count of the rows inserted.
    statement = (
        _insert_for(connection, table)
        .on_conflict_do_nothing(index_elements=list(conflict_columns))
        .returning(table.c[conflict_columns[0]])
    )
    result = connection.execute(statement, list(rows))
    return len(result.all())


def upsert(
    connection: Connection,
    table: Table,
    rows: Sequence[Row],
    conflict_columns: Sequence[str],
    update_columns: Sequence[str],
) -> None:
    """Insert rows in bulk, updating `update_columns` of rows that already exist."""
    if not rows:
        return
    statement = _insert_for(connection, table)
    statement = statement.on_conflict_do_update(
        index_elements=list(conflict_columns),
        set_={name: statement.excluded[name] for name in update_columns},
    ).returning(table.c[conflict_columns[0]])
    connection.execute(statement, list(rows)).all()
