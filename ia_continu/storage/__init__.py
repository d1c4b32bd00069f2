"""Persistence of batches, quarantined batches and drift reports (SQLAlchemy 2, Alembic)."""
