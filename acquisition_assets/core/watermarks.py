"""Named progress markers (last id, cursor) that let a step resume where the last run ended."""

from sqlalchemy import Connection, select, update

from acquisition_assets.core.clock import utcnow
from acquisition_assets.core.schema import pipeline_watermarks
from acquisition_assets.core.sql import insert_ignore


def lock_watermark(connection: Connection, name: str, default: str) -> str:
    """Return a watermark's value, locking its row until the transaction ends.

    On PostgreSQL the row lock makes concurrent runs of one step take turns; SQLite allows
    one writer at a time anyway.
    """
    insert_ignore(
        connection,
        pipeline_watermarks,
        [{"name": name, "value": default, "updated_at": utcnow()}],
        ["name"],
    )
    statement = select(pipeline_watermarks.c.value).where(pipeline_watermarks.c.name == name)
    if connection.dialect.name == "postgresql":
        statement = statement.with_for_update()
    return connection.execute(statement).scalar_one()


def set_watermark(connection: Connection, name: str, value: str) -> None:
    connection.execute(
        update(pipeline_watermarks)
        .where(pipeline_watermarks.c.name == name)
        .values(value=value, updated_at=utcnow())
    )


def read_watermark(connection: Connection, name: str, default: str) -> str:
    value = connection.execute(
        select(pipeline_watermarks.c.value).where(pipeline_watermarks.c.name == name)
    ).scalar_one_or_none()
    return default if value is None else value
