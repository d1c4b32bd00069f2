"""Persistence of batches and drift reports (SQLAlchemy 2, schema under Alembic)."""
