"""``ingest_labels``: index served predictions and join ground truth (inbox files, SQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task

from flows.hooks import notify_failure
from flows.retries import IO_RETRIES
from ia_continu.data import labels
from ia_continu.data.storage.engine import get_engine
from ia_continu.data.storage.served import JoinResult, prune_served
from ia_continu.settings import get_settings


@task(name="ingest-label-inbox", **IO_RETRIES)
def ingest_label_inbox() -> labels.InboxResult:
    """Index new predictions, then process each new file of ``IAC_LABELS_DIR`` once."""
    settings = get_settings()
    return labels.ingest_inbox(
        settings,
        get_engine(settings.resolved_database_url),
        get_engine(settings.resolved_prediction_log_database_url),
    )


@task(name="ingest-label-sql", **IO_RETRIES)
def ingest_label_sql() -> JoinResult:
    """Run ``IAC_LABELS_SQL_QUERY`` on ``IAC_LABELS_SQL_URL`` and join the result."""
    settings = get_settings()
    return labels.ingest_sql(settings, get_engine(settings.resolved_database_url))


@task(name="prune-served-predictions", **IO_RETRIES)
def prune_served_predictions() -> int:
    """Delete batched served predictions older than ``IAC_SERVED_RETENTION_HOURS``."""
    settings = get_settings()
    if not settings.served_retention_hours:
        return 0
    cutoff = datetime.now(UTC) - timedelta(hours=settings.served_retention_hours)
    return prune_served(get_engine(settings.resolved_database_url), cutoff)


@flow(name="ingest_labels", on_failure=[notify_failure])
def ingest_labels() -> dict[str, Any]:
    """Join the ground truth that arrived since the last run to the served predictions.

    Returns:
        ``files_processed``, ``files_rejected``, ``files_waiting``, ``files_already_seen``
        and the join counts (``rows``, ``joined``, ``duplicates``, ``conflicts``,
        ``unknown``, ``invalid``, ``resolved``) over the inbox and the SQL source, plus
        the per-file detail (``files``), ``indexed``, ``sql`` (None when not set) and
        ``pruned`` (served predictions deleted by the retention).
    """
    logger = get_run_logger()
    inbox = ingest_label_inbox()
    sql = ingest_label_sql() if labels.sql_configured(get_settings()) else None
    totals = inbox.totals.plus(sql) if sql is not None else inbox.totals
    summary = inbox.to_dict()
    result: dict[str, Any] = {
        "files_processed": summary["files_processed"],
        "files_rejected": summary["files_rejected"],
        "files_waiting": summary["files_waiting"],
        "files_already_seen": summary["files_already_seen"],
        **totals.to_dict(),
        "files": summary["files"],
        "waiting": summary["waiting"],
        "already_seen": summary["already_seen"],
        "indexed": summary["index"],
        "sql": sql.to_dict() if sql is not None else None,
        "pruned": prune_served_predictions(),
    }
    kept_aside = labels.summarise(inbox.files)
    if sql is not None and sql.quarantined:
        kept_aside += f"{'; ' if kept_aside else ''}sql: {sql.conflicts} conflicts, "
        kept_aside += f"{sql.unknown} unknown ids, {sql.invalid} invalid rows"
    if kept_aside:
        logger.warning("labels kept aside (quarantined_labels, label_files): %s", kept_aside)
    logger.info(
        "labels: %(files_processed)s files processed, %(files_rejected)s rejected, "
        "%(files_waiting)s waiting, %(files_already_seen)s already seen; %(rows)s rows: "
        "%(joined)s joined, %(duplicates)s duplicates, %(conflicts)s conflicts, "
        "%(unknown)s unknown, %(invalid)s invalid; %(resolved)s earlier unknown resolved",
        result,
    )
    return result


if __name__ == "__main__":
    ingest_labels()
