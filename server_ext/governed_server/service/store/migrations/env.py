"""Alembic environment: always runs on the connection (and transaction) that ``migrate`` hands over.

``governed_server.service.store.migrate`` opens the transaction and takes the migration lock first, so this
file never creates its own engine; offline (SQL script) mode is not supported.
"""

from __future__ import annotations

from alembic import context

from governed_server.service.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through governed_server.service.store.migrate, which passes a connection"
    )

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
