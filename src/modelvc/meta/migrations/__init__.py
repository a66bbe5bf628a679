"""Alembic migrations of the metadata schema, run programmatically (see migrate.py)."""
