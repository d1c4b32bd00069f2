"""Data: where batches come from and how they are kept.

A source (``sources``: CSV replay or synthetic generator; ``serving_source``: the API's own
traffic once its labels arrive) gives the batch at a stream position; ``validation``
(pandera) decides whether it may be stored or goes to quarantine with its reasons;
``labels`` joins delayed ground truth to served predictions; ``storage`` holds batches,
reports and the served-prediction index (SQLAlchemy 2, Alembic); ``stream_check`` tells an
operator, before anything runs, whether the configured stream can be used.
"""
