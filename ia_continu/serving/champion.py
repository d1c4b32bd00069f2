"""The champion being served and its hot reload.

:class:`ChampionWatcher` polls the registry alias (one cheap call), and when it points
at another version loads that version by its pinned URI, warms it on its input
example, and swaps a single reference. A request reads that reference once, so it
finishes on the model it started with; a failed load or an unreachable registry
leaves the last good model serving, and a fresh start whose champion cannot be loaded
serves ``previous``.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import mlflow
import mlflow.artifacts
import mlflow.sklearn
import numpy as np
import pandas as pd
from loguru import logger
from mlflow.models import Model

from ia_continu.logs import redact
from ia_continu.serving.onnx_runtime import OnnxPredictor, compile_onnx
from ia_continu.serving.signature import SignatureValidator
from ia_continu.training import registry


class NonFiniteOutput(ValueError):
    """The model gave no finite probability for some rows (inputs far out of range)."""

    def __init__(self, rows: list[int]):
        super().__init__(f"no finite probability for rows {rows[:10]}")
        self.rows = rows


@dataclass(frozen=True)
class ServedModel:
    """A loaded registered model version, ready to predict."""

    name: str
    version: int
    alias: str
    model: Any
    validator: SignatureValidator
    run_id: str | None
    trained_at: datetime | None
    metrics: dict[str, float]
    signature: dict[str, Any]
    onnx: OnnxPredictor | None = None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def runtime(self) -> str:
        """``onnxruntime`` when the converted pipeline serves, else ``scikit-learn``."""
        return "onnxruntime" if self.onnx is not None else "scikit-learn"

    def predict(self, arrays: dict[str, np.ndarray]) -> tuple[list[Any], list[float] | None]:
        """Predicted class and its probability for each row.

        Args:
            arrays: one array per input column (:meth:`SignatureValidator.arrays`).

        Returns:
            ``(labels, probabilities)``; probabilities is None for a model without
            ``predict_proba``. Labels are plain Python values (str, int, float, bool).

        Raises:
            NonFiniteOutput: some rows got NaN/inf probabilities.
        """
        with np.errstate(all="ignore"):
            if self.onnx is not None:
                proba = self.onnx.predict_proba(arrays)
            elif hasattr(self.model, "predict_proba"):
                proba = np.asarray(
                    self.model.predict_proba(self.validator.frame(arrays)), dtype=float
                )
            else:
                return np.asarray(self.model.predict(self.validator.frame(arrays))).tolist(), None
        best = proba.argmax(axis=1)
        chosen = proba[np.arange(len(best)), best]
        bad = ~np.isfinite(proba).all(axis=1)
        if bad.any():
            raise NonFiniteOutput(np.flatnonzero(bad).tolist())
        labels = np.asarray(self.model.classes_)[best].tolist()
        return labels, chosen.tolist()


def load_served_model(
    tracking_uri: str,
    name: str,
    version: int,
    alias: str,
    max_batch_rows: int,
    use_onnx: bool = True,
) -> ServedModel:
    """Download ``models:/name/version``, load it and warm it on its input example.

    With ``use_onnx``, a linear pipeline is also converted to ONNX and served by
    onnxruntime when it reproduces scikit-learn on the input example
    (:mod:`ia_continu.serving.onnx_runtime`).

    Raises:
        mlflow.exceptions.MlflowException: registry or artifact store failure.
        ia_continu.serving.signature.UnsupportedSignature: no usable input signature.
    """
    mlflow_client = registry.client(tracking_uri)
    details = mlflow_client.get_model_version(name, str(version))
    run = mlflow_client.get_run(details.run_id) if details.run_id else None
    with tempfile.TemporaryDirectory(prefix="iac-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=tmp
        )
        meta = Model.load(local)
        validator = SignatureValidator(meta.signature, max_batch_rows)
        model = mlflow.sklearn.load_model(local)
        example = meta.load_input_example(local)
    served = ServedModel(
        name=name,
        version=version,
        alias=alias,
        model=model,
        validator=validator,
        run_id=details.run_id,
        trained_at=(
            datetime.fromtimestamp(run.info.start_time / 1000, UTC)
            if run is not None and run.info.start_time
            else None
        ),
        metrics=dict(run.data.metrics) if run is not None else {},
        signature=meta.signature.to_dict() if meta.signature else {},
    )
    if isinstance(example, pd.DataFrame) and not example.empty:
        check = validator.arrays(example.to_dict(orient="records"))
        if use_onnx:
            served = replace(served, onnx=compile_onnx(model, validator.columns, check))
        # First predict pays for lazy imports and allocations; do it before serving.
        served.predict(check)
    return served


def _why(exc: BaseException, limit: int) -> str:
    """An exception as one public line: /ready shows it to anyone, so no URL password,
    token or webhook secret (:func:`ia_continu.logs.redact`), and bounded in length."""
    return redact(f"{type(exc).__name__}: {exc}")[:limit]


class PollOutcome(StrEnum):
    """What one poll of the registry did."""

    UNCHANGED = "unchanged"
    RELOADED = "reloaded"
    FALLBACK = "fallback"
    NO_CHAMPION = "no_champion"
    UNREACHABLE = "unreachable"
    LOAD_FAILED = "load_failed"


Loader = Callable[..., ServedModel]


class ChampionWatcher:
    """Holds the served model and swaps it when the registry alias moves.

    When the version behind ``alias`` cannot be loaded (corrupted artifact, missing
    dependency, unusable signature), the model already loaded keeps serving; with
    nothing loaded yet (a fresh start), the version behind ``fallback_alias``
    (``previous``) is loaded instead, so a broken champion does not take serving
    down. :attr:`fallback_reason` says why another version than the alias's serves.

    Args:
        tracking_uri: MLflow tracking/registry URI.
        name: registered model name.
        alias: alias to follow (``champion``).
        max_batch_rows: passed to each model's :class:`SignatureValidator`.
        loader: how a version is loaded (tests inject failures here).
        use_onnx: try the ONNX fast path for each loaded version.
        retry_failed_after: seconds before a version that failed to load is tried again.
        fallback_alias: alias served at start-up when ``alias`` cannot be loaded
            (``previous``); None disables the fallback.
    """

    def __init__(
        self,
        tracking_uri: str,
        name: str,
        alias: str = registry.CHAMPION,
        max_batch_rows: int = 10_000,
        loader: Loader = load_served_model,
        use_onnx: bool = True,
        retry_failed_after: float = 60.0,
        fallback_alias: str | None = registry.PREVIOUS,
    ):
        self.tracking_uri = tracking_uri
        self.name = name
        self.alias = alias
        self.max_batch_rows = max_batch_rows
        self._loader = loader
        self.use_onnx = use_onnx
        self.retry_failed_after = retry_failed_after
        self.fallback_alias = fallback_alias if fallback_alias != alias else None
        # version -> (monotonic time of its failed load, why it failed)
        self._failures: dict[int, tuple[float, str]] = {}
        self.current: ServedModel | None = None
        self.last_poll_at: datetime | None = None
        self.last_outcome: PollOutcome | None = None
        self.last_error: str | None = None
        self.alias_version: int | None = None  # version behind ``alias`` at the last poll
        self.fallback_reason: str | None = None
        self._lock = threading.Lock()  # one poll at a time

    @property
    def registry_reachable(self) -> bool | None:
        """False after a poll that could not reach the registry; None before any poll."""
        if self.last_outcome is None:
            return None
        return self.last_outcome is not PollOutcome.UNREACHABLE

    def poll_once(self) -> PollOutcome:
        """One registry call; loads and swaps if the alias points at a new version.

        Never raises: failures are returned (and logged) and the current model stays.
        """
        with self._lock:
            outcome = self._poll()
            self.last_outcome = outcome
            self.last_poll_at = datetime.now(UTC)
            return outcome

    def _poll(self) -> PollOutcome:
        try:
            ref = registry.get_alias(registry.client(self.tracking_uri), self.name, self.alias)
        except Exception as exc:  # any client failure means "unreachable"
            self.last_error = _why(exc, 500)
            if self.last_outcome is not PollOutcome.UNREACHABLE:  # log the change, not every poll
                logger.warning("model registry unreachable, keeping the served model: {}", exc)
            return PollOutcome.UNREACHABLE
        if ref is None:
            self.alias_version = None
            self.last_error = f"{self.name!r} has no {self.alias!r} alias"
            return PollOutcome.NO_CHAMPION
        self.alias_version = ref.version
        current = self.current
        if current is not None and current.version == ref.version:
            if current.alias != self.alias:  # e.g. a rollback onto the fallback version
                self.current = replace(current, alias=self.alias)
                logger.info(
                    "{} version {} is {!r} again: fallback over", self.name, ref.version, self.alias
                )
            self.last_error = None
            self.fallback_reason = None
            return PollOutcome.UNCHANGED
        loaded = self._load(ref.version, self.alias)
        if loaded is not None:
            self.current = loaded  # the swap: one reference assignment
            self.last_error = None
            self.fallback_reason = None
            logger.info(
                "serving {} version {} with {} (was {})",
                self.name,
                loaded.version,
                loaded.runtime,
                current.version if current is not None else "none",
            )
            return PollOutcome.RELOADED
        reason = (
            f"{self.alias} version {ref.version} cannot be loaded: {self._failures[ref.version][1]}"
        )
        if current is not None:
            serving = (
                f"keeping version {current.version}"
                if current.alias == self.alias
                else f"serving {current.alias} version {current.version}"
            )
            if self.fallback_reason is None:
                logger.error("{}; {}", reason, serving)
            self.fallback_reason = f"{reason}; {serving}"[:500]
            return PollOutcome.LOAD_FAILED
        return self._fall_back(reason)

    def _load(self, version: int, alias: str) -> ServedModel | None:
        """Load ``version`` (None if it failed, now or less than ``retry_failed_after`` ago)."""
        failed = self._failures.get(version)
        if failed is not None and time.monotonic() - failed[0] < self.retry_failed_after:
            return None  # do not download a broken version every poll
        try:
            loaded = self._loader(
                self.tracking_uri,
                self.name,
                version,
                alias,
                self.max_batch_rows,
                use_onnx=self.use_onnx,
            )
        except Exception as exc:  # a bad version must not take serving down
            why = _why(exc, 400)
            self._failures[version] = (time.monotonic(), why)
            self.last_error = f"version {version}: {why}"
            logger.error("could not load {} version {}: {}", self.name, version, exc)
            return None
        self._failures.pop(version, None)
        return loaded

    def _fall_back(self, reason: str) -> PollOutcome:
        """Nothing serves and the alias's version cannot load: serve ``fallback_alias``."""
        self.last_error = reason[:500]
        self.fallback_reason = None
        if self.fallback_alias is None:
            return PollOutcome.LOAD_FAILED
        try:
            ref = registry.get_alias(
                registry.client(self.tracking_uri), self.name, self.fallback_alias
            )
        except Exception as exc:
            self.last_error = f"{reason}; {self.fallback_alias!r} unreadable: {_why(exc, 300)}"
            return PollOutcome.LOAD_FAILED
        if ref is None:
            self.last_error = f"{reason}; no {self.fallback_alias!r} alias to fall back to"[:500]
            return PollOutcome.LOAD_FAILED
        loaded = self._load(ref.version, self.fallback_alias)
        if loaded is None:
            why = self._failures[ref.version][1]
            self.last_error = (
                f"{reason}; {self.fallback_alias} version {ref.version} cannot be loaded "
                f"either: {why}"
            )[:500]
            return PollOutcome.LOAD_FAILED
        self.current = loaded
        self.last_error = reason[:500]
        self.fallback_reason = f"{reason}; serving {self.fallback_alias} version {ref.version}"[
            :500
        ]
        logger.error(
            "{}; serving {} version {} of {} instead",
            reason,
            self.fallback_alias,
            ref.version,
            self.name,
        )
        return PollOutcome.FALLBACK
