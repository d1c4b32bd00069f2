"""Registry reads and the rollback for the model page, bounded in time: MLflow's client
retries for minutes by default, the page must answer within seconds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ia_continu.training import registry


def bound_mlflow_calls(timeout_seconds: float) -> None:
    """No retries, a ``timeout_seconds`` HTTP timeout (whole seconds, at least 1) for every
    MLflow call of this process (:func:`ia_continu.training.registry.bound_mlflow_http`)."""
    registry.bound_mlflow_http(0, timeout_seconds)


@dataclass(frozen=True)
class AliasInfo:
    """A registry alias and the version behind it.

    Attributes:
        validation_accuracy: accuracy on its held-out rows at training time (0..1), the
            start of its concept-drift reference; None for a version without the tag.
        validation_rows: how many held-out rows (tag ``validation_rows``; None before
            issue 12).
        window: training window chosen (tag ``window``: ``last_8``, ``since_change``,
            ``bootstrap``…; None before issue 12).
        registered_at: creation time in Unix milliseconds, as MLflow gives it.
    """

    alias: str
    version: int
    run_id: str | None
    validation_accuracy: float | None
    metrics: dict[str, float]
    registered_at: Any
    validation_rows: int | None = None
    window: str | None = None

    def describe(self) -> str:
        """One line: ``validation accuracy 0.912 on 336 rows · window last_8``; empty when
        the version has none of those tags."""
        parts = []
        if self.validation_accuracy is not None:
            rows = f" on {self.validation_rows} rows" if self.validation_rows else ""
            parts.append(f"validation accuracy {self.validation_accuracy:.3f}{rows}")
        if self.window:
            parts.append(f"window `{self.window}`")
        return " · ".join(parts)


def aliases(tracking_uri: str, name: str) -> list[AliasInfo]:
    """``champion`` and ``previous`` (those that exist), with their run metrics and the
    version's validation and window tags.

    Raises:
        mlflow.exceptions.MlflowException: the registry cannot be read.
    """
    client = registry.client(tracking_uri)
    found = []
    for alias in (registry.CHAMPION, registry.PREVIOUS):
        ref = registry.get_alias(client, name, alias)
        if ref is None:
            continue
        version = client.get_model_version(name, str(ref.version))
        metrics = dict(client.get_run(ref.run_id).data.metrics) if ref.run_id else {}
        found.append(
            AliasInfo(
                alias,
                ref.version,
                ref.run_id,
                ref.validation_accuracy,
                metrics,
                version.creation_timestamp,
                validation_rows=ref.validation_rows,
                window=registry.Lineage.from_tags(version.tags).window,
            )
        )
    return found


def rollback(tracking_uri: str, name: str) -> int:
    """Point ``champion`` back at ``previous``; returns the new champion version.

    Raises:
        LookupError: there is no ``previous`` version.
    """
    return registry.rollback(registry.client(tracking_uri), name)
