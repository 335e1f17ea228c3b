"""Alembic revisions, oldest first: ``rNNNN_<what>.py``."""
