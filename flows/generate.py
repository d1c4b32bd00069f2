"""``generate``: ingest one batch from the configured source."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.hooks import notify_failure
from flows.tasks import ingest_batch
from ia_continu.data.storage.repository import IngestResult


@flow(name="generate", on_failure=[notify_failure])
def generate(ingest_key: str | None = None) -> IngestResult:
    """Ingest the next batch; a rerun with the same key (default: this flow run) adds nothing.

    A batch that fails validation is quarantined (``quarantined`` true in the result, with
    its ``reason``), logged as a warning, and the run still completes: the stream moves on.
    """
    key = ingest_key or f"flow-run:{flow_run.get_id()}"
    batch = ingest_batch(key)
    if batch.quarantined:
        get_run_logger().warning(
            "batch quarantined: %(source)s position %(position)s, %(n_rows)s rows, "
            "quarantine id %(quarantine_id)s (new: %(created)s): %(reason)s",
            batch.model_dump(),
        )
        return batch
    get_run_logger().info(
        "batch %(batch_id)s: %(source)s position %(position)s, %(n_rows)s rows (new: %(created)s)",
        batch.model_dump(),
    )
    return batch


if __name__ == "__main__":
    generate()
