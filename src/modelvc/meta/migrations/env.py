"""Alembic environment: runs only online, on the connection modelvc hands over.

modelvc builds the alembic Config in code (modelvc.meta.migrate) and passes an open
connection, already inside the caller's transaction, as
`config.attributes["connection"]`; no alembic.ini and no URL live here.
"""

from __future__ import annotations

from alembic import context

from modelvc.meta.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "modelvc migrations run through modelvc.meta.migrate with a connection; "
        "the alembic command line is not supported"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
