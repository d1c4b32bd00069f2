"""Storage: batches, quarantine, drift and serving reports, the served-prediction index and API tokens (SQLAlchemy 2; schema by Alembic, ``migrate``)."""
