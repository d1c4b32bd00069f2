"""What one policy did on one stream, and the figures the stream benchmark reports from it.

A :class:`PolicyTrace` holds, per tested batch (``t >= 1``; batch 0 only trains), what
the model in place predicted *before* the policy could learn that batch (prequential,
test-then-train: Gama, Sebastião & Rodrigues 2013, "On evaluating stream learning
algorithms", Machine Learning 90(3)), and what the policy did after it: retrain,
promote, flag concept drift, flag data drift. Index ``i`` of every list is batch
``batch_ids[i]``; a flag or promotion at batch ``t`` acts from batch ``t + 1`` on.

From traces: :func:`drift_response` (delay to flag and promotion around known drift
points, accuracy before, after and at recovery), :func:`alarm_rates` (flags per 100
cycles, for false alarms on a stable control), :func:`plot_stream` (per-batch accuracy
PNG) and :func:`markdown_rows` (the per-stream table).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score

from bench._common import RESULTS_DIR, fmt

RESPONSE_WINDOW = 5
FLAG_WITHIN = 2
RECOVERY_TOLERANCE = 0.02


@dataclass
class PolicyTrace:
    """Per tested batch record of one policy on one stream (lists aligned on ``batch_ids``).

    Attributes:
        policy: policy name (``never``, ``ours``, ``arf``...).
        batch_ids: tested batch positions, increasing (``1..n_batches - 1``).
        n: labelled rows tested in each batch.
        correct: rows of each batch whose label was predicted.
        y_true: each batch's labels, as ``str`` arrays of length ``n[i]``.
        y_pred: each batch's predictions, as ``str`` arrays of length ``n[i]``.
        retrain: a challenger (or a new model) was trained after testing the batch.
        promoted: the model in place changed after testing the batch.
        concept_drift: the policy flagged concept drift on the batch (None: no test ran).
        data_drift: the policy flagged data drift on the batch (None: no test ran).
        notes: free text for the report (what the policy is, what it cannot say).
        seconds: wall time of the whole replay, when measured.
    """

    policy: str
    batch_ids: list[int] = field(default_factory=list)
    n: list[int] = field(default_factory=list)
    correct: list[int] = field(default_factory=list)
    y_true: list[np.ndarray] = field(default_factory=list)
    y_pred: list[np.ndarray] = field(default_factory=list)
    retrain: list[bool] = field(default_factory=list)
    promoted: list[bool] = field(default_factory=list)
    concept_drift: list[bool | None] = field(default_factory=list)
    data_drift: list[bool | None] = field(default_factory=list)
    notes: str = ""
    seconds: float | None = None

    def add(
        self,
        batch_id: int,
        y_true: Any,
        y_pred: Any,
        *,
        retrain: bool = False,
        promoted: bool = False,
        concept_drift: bool | None = None,
        data_drift: bool | None = None,
    ) -> None:
        """Record one tested batch: labels and predictions (cast to ``str``), then the update.

        Raises:
            ValueError: ``y_true`` and ``y_pred`` differ in length, or ``batch_id`` does
                not follow the last recorded one.
        """
        truth = np.asarray(y_true).astype(str)
        predicted = np.asarray(y_pred).astype(str)
        if truth.shape != predicted.shape:
            raise ValueError(f"batch {batch_id}: {truth.shape} labels vs {predicted.shape}")
        if self.batch_ids and batch_id <= self.batch_ids[-1]:
            raise ValueError(f"batch {batch_id} recorded after batch {self.batch_ids[-1]}")
        self.batch_ids.append(int(batch_id))
        self.n.append(len(truth))
        self.correct.append(int(np.sum(truth == predicted)))
        self.y_true.append(truth)
        self.y_pred.append(predicted)
        self.retrain.append(bool(retrain))
        self.promoted.append(bool(promoted))
        self.concept_drift.append(concept_drift)
        self.data_drift.append(data_drift)

    @property
    def test_rows(self) -> int:
        """Labelled rows tested over the stream."""
        return int(sum(self.n))

    @property
    def accuracy(self) -> float:
        """Prequential accuracy, row-weighted: all correct predictions over all test rows (0..1)."""
        return sum(self.correct) / self.test_rows if self.test_rows else float("nan")

    def _all(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.y_true:
            return np.array([], dtype=str), np.array([], dtype=str)
        return np.concatenate(self.y_true), np.concatenate(self.y_pred)

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes present in the test rows (0..1).

        ``sklearn.metrics.balanced_accuracy_score`` over all test rows (Brodersen et al.
        2010); a predicted class absent from the truth adds no recall term.
        """
        truth, predicted = self._all()
        if not len(truth):
            return float("nan")
        with warnings.catch_warnings():
            # "y_pred contains classes not in y_true" is expected on a stream, not a bug.
            warnings.simplefilter("ignore", UserWarning)
            return float(balanced_accuracy_score(truth, predicted))

    @property
    def macro_f1(self) -> float:
        """Unweighted mean of per-class F1 over the classes in truth or predictions (0..1).

        ``sklearn.metrics.f1_score(average="macro", zero_division=0)``: a class never
        predicted, or predicted but never true, scores 0.
        """
        truth, predicted = self._all()
        if not len(truth):
            return float("nan")
        return float(f1_score(truth, predicted, average="macro", zero_division=0))

    @property
    def retrains(self) -> int:
        """Batches after which a model was trained."""
        return sum(self.retrain)

    @property
    def promotions(self) -> int:
        """Batches after which the model in place changed."""
        return sum(self.promoted)

    @property
    def batch_accuracy(self) -> list[float]:
        """Accuracy of each tested batch (0..1; NaN for a batch with no labelled row)."""
        return [c / k if k else float("nan") for c, k in zip(self.correct, self.n, strict=True)]

    @property
    def classes(self) -> list[str]:
        """Labels seen in the test rows, sorted."""
        truth, _ = self._all()
        return sorted(set(truth.tolist()))

    def batches_where(self, flags: Sequence[bool | None]) -> list[int]:
        """Batch ids whose entry in ``flags`` (one of this trace's lists) is True."""
        return [b for b, f in zip(self.batch_ids, flags, strict=True) if f]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays); accuracies in 0..1 rounded to 6 decimals."""
        return {
            "policy": self.policy,
            "prequential_accuracy": _round(self.accuracy),
            "balanced_accuracy": _round(self.balanced_accuracy),
            "macro_f1": _round(self.macro_f1),
            "test_rows": self.test_rows,
            "test_batches": len(self.batch_ids),
            "retrains": self.retrains,
            "promotions": self.promotions,
            "concept_drift_flags": sum(bool(f) for f in self.concept_drift),
            "data_drift_flags": sum(bool(f) for f in self.data_drift),
            "alarm_rates": alarm_rates(self),
            "retrain_batches": self.batches_where(self.retrain),
            "promotion_batches": self.batches_where(self.promoted),
            "concept_drift_batches": self.batches_where(self.concept_drift),
            "data_drift_batches": self.batches_where(self.data_drift),
            "batch_accuracy": [_round(a, 4) for a in self.batch_accuracy],
            "seconds": None if self.seconds is None else round(self.seconds, 2),
            "notes": self.notes,
        }


def _round(value: float, digits: int = 6) -> float | None:
    return None if value != value else round(value, digits)  # NaN -> None (JSON null)


def _first(batches: Sequence[int], start: int, stop: int) -> int | None:
    """The first of ``batches`` (increasing) in ``[start, stop)``, or None."""
    return next((b for b in batches if start <= b < stop), None)


def _mean_over(accuracy: dict[int, float], batches: range) -> float | None:
    """Unweighted mean accuracy over the tested batches among ``batches``, or None."""
    values = [accuracy[b] for b in batches if b in accuracy]
    return float(np.mean(values)) if values else None


def drift_response(
    trace: PolicyTrace,
    drift_batches: Sequence[int],
    window: int = RESPONSE_WINDOW,
    flag_within: int = FLAG_WITHIN,
    tolerance: float = RECOVERY_TOLERANCE,
) -> list[dict[str, Any]]:
    """How ``trace`` reacted to each known drift ``d`` (first batch of the new concept).

    Per drift, accuracies in 0..1 (None when no batch is available):

    * ``flag_delay``: ``t - d`` for the first concept-drift flag at ``t >= d`` and before
      the next drift (None: never flagged in that span);
    * ``promotion_delay``: the same for the first promotion;
    * ``pre_accuracy``: mean batch accuracy over ``d - window .. d - 1``;
    * ``post_accuracy``: over ``d .. d + window - 1`` (the old model on the new concept,
      plus whatever the policy did meanwhile);
    * ``recovery_accuracy``: over the ``window`` batches after the first promotion ``p``
      (``p + 1 .. p + window``: the promoted model serves from ``p + 1``), cut at the
      next drift;
    * ``flagged_in_time``: ``flag_delay <= flag_within``;
    * ``recovered``: ``recovery_accuracy >= pre_accuracy - tolerance``.

    Batch means are unweighted (every batch of a stream has the same size but the last).
    """
    accuracy = dict(zip(trace.batch_ids, trace.batch_accuracy, strict=True))
    flags = trace.batches_where(trace.concept_drift)
    promotions = trace.batches_where(trace.promoted)
    last = trace.batch_ids[-1] if trace.batch_ids else -1
    drifts = sorted(drift_batches)
    out: list[dict[str, Any]] = []
    for i, d in enumerate(drifts):
        end = drifts[i + 1] if i + 1 < len(drifts) else last + 1
        flag = _first(flags, d, end)
        promotion = _first(promotions, d, end)
        pre = _mean_over(accuracy, range(d - window, d))
        recovery = None
        if promotion is not None:
            recovery = _mean_over(accuracy, range(promotion + 1, min(promotion + 1 + window, end)))
        out.append(
            {
                "drift_batch": d,
                "flag_batch": flag,
                "flag_delay": None if flag is None else flag - d,
                "promotion_batch": promotion,
                "promotion_delay": None if promotion is None else promotion - d,
                "pre_accuracy": pre,
                "post_accuracy": _mean_over(accuracy, range(d, min(d + window, end))),
                "recovery_accuracy": recovery,
                "flagged_in_time": flag is not None and flag - d <= flag_within,
                # The slack absorbs float error at exactly ``tolerance`` below.
                "recovered": recovery is not None
                and pre is not None
                and recovery >= pre - tolerance - 1e-12,
            }
        )
    return out


def alarm_rates(trace: PolicyTrace) -> dict[str, float | int | None]:
    """Concept-drift and data-drift flags per 100 cycles.

    A cycle is a tested batch whose flag is not None (the policy ran that test); a
    policy that never tests gets None rates. On a stable stream every flag is false.
    """
    out: dict[str, float | int | None] = {}
    for kind, flags in (("concept_drift", trace.concept_drift), ("data_drift", trace.data_drift)):
        ran = [f for f in flags if f is not None]
        alarms = sum(bool(f) for f in ran)
        out[f"{kind}_cycles"] = len(ran)
        out[f"{kind}_alarms"] = alarms
        out[f"{kind}_per_100"] = round(100 * alarms / len(ran), 3) if ran else None
    return out


def plot_stream(
    stream_name: str,
    traces: Sequence[PolicyTrace],
    drift_batches: Sequence[int],
    ours: str = "ours",
    path: Path | None = None,
    smooth: int = 1,
) -> Path:
    """Per-batch accuracy of every policy, known drifts and ``ours``'s flags; a PNG.

    One line per trace (percent accuracy over batch id; ``smooth > 1``: trailing mean
    over that many batches; ``ours`` thick and black), a dashed vertical line at each
    known drift, and on the ``ours`` line a red triangle at each concept-drift flag and a green dot at each
    promotion. 1000 x 450 px.

    Returns:
        The written path (default ``bench/results/streams-<stream_name>.png``).
    """
    # Imported here: the Agg backend is chosen on use, not as an import side effect.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if path is None:
        path = RESULTS_DIR / f"streams-{stream_name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100, layout="constrained")
    try:
        for trace in traces:
            acc = np.asarray(trace.batch_accuracy, dtype=float) * 100
            if smooth > 1:
                cumulative = np.cumsum(np.insert(acc, 0, 0.0))
                counts = np.minimum(np.arange(1, len(acc) + 1), smooth)
                acc = (cumulative[1:] - cumulative[np.arange(len(acc)) + 1 - counts]) / counts
            is_ours = trace.policy == ours
            ax.plot(
                trace.batch_ids,
                acc,
                label=trace.policy,
                color="black" if is_ours else None,
                linewidth=2.0 if is_ours else 1.0,
                alpha=1.0 if is_ours else 0.75,
                zorder=3 if is_ours else 2,
            )
            if is_ours:
                at = dict(zip(trace.batch_ids, acc, strict=True))
                flagged = trace.batches_where(trace.concept_drift)
                promoted = trace.batches_where(trace.promoted)
                ax.scatter(
                    flagged,
                    [at[b] for b in flagged],
                    marker="v",
                    s=40,
                    color="tab:red",
                    zorder=4,
                    label=f"{ours}: concept drift flagged",
                )
                ax.scatter(
                    promoted,
                    [at[b] for b in promoted],
                    marker="o",
                    s=30,
                    facecolors="none",
                    edgecolors="tab:green",
                    linewidths=1.5,
                    zorder=5,
                    label=f"{ours}: promotion",
                )
        for i, d in enumerate(drift_batches):
            ax.axvline(
                d,
                color="0.3",
                linestyle="--",
                linewidth=1,
                zorder=1,
                label="known drift" if i == 0 else None,
            )
        suffix = f" (trailing mean of {smooth} batches)" if smooth > 1 else ""
        ax.set_title(f"{stream_name}: prequential accuracy per batch{suffix}")
        ax.set_xlabel("batch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def is_multiclass(traces: Sequence[PolicyTrace]) -> bool:
    """More than two labels among the test rows of any trace."""
    return any(len(t.classes) > 2 for t in traces)


def markdown_header(multiclass: bool) -> list[str]:
    """Columns of the per-stream table (macro-F1 only for multi-class streams)."""
    header = ["policy", "prequential acc (%)", "balanced acc (%)"]
    if multiclass:
        header.append("macro-F1 (%)")
    return [*header, "retrains", "promotions"]


def markdown_rows(
    traces: Sequence[PolicyTrace], multiclass: bool | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-stream table, one row per trace, percentages 2 decimals.

    ``multiclass`` None: decided from the test labels (:func:`is_multiclass`).
    """
    if multiclass is None:
        multiclass = is_multiclass(traces)
    rows = []
    for t in traces:
        row = [t.policy, fmt(t.accuracy * 100, 2), fmt(t.balanced_accuracy * 100, 2)]
        if multiclass:
            row.append(fmt(t.macro_f1 * 100, 2))
        rows.append([*row, str(t.retrains), str(t.promotions)])
    return markdown_header(multiclass), rows
