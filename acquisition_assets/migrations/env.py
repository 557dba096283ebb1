"""Alembic environment: runs migrations on the connection that the caller passes in."""

from alembic import context

from acquisition_assets.core.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "Migrations run through acquisition_assets.core.migrations.upgrade_schema "
        "or `acquisition db upgrade`, which pass in a database connection."
    )

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
