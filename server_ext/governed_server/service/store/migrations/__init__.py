"""Alembic migrations of the governance store, shipped in the package (no alembic.ini needed)."""
