"""The training window: which past batches a challenger learns from.

After a concept drift the data before the change describes the old concept: training on
it drags the challenger back. Two rules, in order (``choose_window``):

1. **Since the change.** When the drift report estimated a change point and the batches
   from it to the newest (held out) batch hold at least ``min_change_rows`` labelled
   training rows, train on exactly those batches.
2. **Candidate windows.** Otherwise train one model per candidate size (the newest 1, 2,
   4, 8, … batches before the held-out batch, plus the batches since the change point
   when there are any), score each on the held-out newest batch, and keep, among the
   candidates within ``one_se`` binomial standard errors of the best score, the one with
   the most training rows (the one-standard-error rule of Breiman et al. 1984): a shorter
   window must beat a longer one by more than noise.

This is the window-size selection of Klinkenberg & Joachims (2000), "Detecting concept
drift with support vector machines" (ICML), which picks among candidate windows by their
error on the newest batch, with a geometric grid of sizes as in ADWIN (Bifet & Gavaldà
2007, "Learning from time-changing data with adaptive windowing", SDM).

The model that is gated is the one trained on the chosen window; the model that is then
promoted may be refitted on the same window shifted by one batch to include the held-out
batch (``refit_batch_ids``), as scikit-learn's ``GridSearchCV(refit=True)`` refits the
selected configuration on all the data it was chosen with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Candidate:
    """One training window: its label (``last_4``, ``since_change``) and batch ids."""

    label: str
    batch_ids: tuple[int, ...]


@dataclass(frozen=True)
class WindowChoice:
    """The chosen training window and why.

    Attributes:
        label: ``since_change``, ``last_<k>`` or ``bootstrap``.
        batch_ids: training batches of the gated challenger (the held-out batch excluded).
        refit_batch_ids: the same window shifted to end at the held-out batch.
        holdout_batch_id: the newest batch, held out.
        reason: one sentence for the MLflow run and the lineage.
        scores: held-out accuracy of each candidate tried (label -> 0..1).
    """

    label: str
    batch_ids: tuple[int, ...]
    refit_batch_ids: tuple[int, ...]
    holdout_batch_id: int
    reason: str
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def candidates(
    batch_ids: Sequence[int], sizes: Sequence[int], change_batch_id: int | None = None
) -> list[Candidate]:
    """Candidate training windows ending just before the newest batch (held out).

    Args:
        batch_ids: available batch ids in stream order, the held-out newest batch last.
        sizes: window sizes in batches; sizes beyond what is available collapse into one
            ``last_<available>`` candidate.
        change_batch_id: estimated first batch of the new concept, or None.

    Returns:
        Distinct windows, shortest first, ``since_change`` first when it differs from
        every size window. Empty when only the held-out batch is available.
    """
    before = list(batch_ids[:-1])
    found: list[Candidate] = []
    seen: set[tuple[int, ...]] = set()
    if change_batch_id is not None:
        since = tuple(b for b in before if b >= change_batch_id)
        if since:
            found.append(Candidate("since_change", since))
            seen.add(since)
    for size in sorted(set(sizes)):
        window = tuple(before[-size:]) if size > 0 else ()
        if window and window not in seen:
            found.append(Candidate(f"last_{len(window)}", window))
            seen.add(window)
    return found


def refit_ids(window: Sequence[int], batch_ids: Sequence[int]) -> tuple[int, ...]:
    """``window`` shifted by one batch to end at the newest of ``batch_ids`` (same length)."""
    start = list(batch_ids).index(window[0]) + 1
    return tuple(batch_ids[start : start + len(window)])


def choose_window(
    frame: pd.DataFrame,
    batch_ids: Sequence[int],
    sizes: Sequence[int],
    score: Callable[[pd.DataFrame, pd.DataFrame], float],
    *,
    change_batch_id: int | None = None,
    min_change_rows: int = 0,
    one_se: float = 1.0,
    batch_col: str = "batch_id",
) -> WindowChoice:
    """Choose the training window (see the module docstring).

    Args:
        frame: labelled rows of ``batch_ids`` with a ``batch_col`` column.
        batch_ids: batch ids in stream order, the newest (held out) last; at least two.
        sizes: candidate window sizes in batches (``IAC_TRAINING_WINDOW_BATCHES``).
        score: ``score(train_rows, holdout_rows)`` -> held-out accuracy of a model trained
            on ``train_rows``; raises ValueError when ``train_rows`` cannot be trained on
            (a single class), which discards that candidate.
        change_batch_id: first batch of the new concept from the drift report, or None.
        min_change_rows: training rows since the change that make rule 1 apply; 0 never
            applies it.
        one_se: width of the tie band in binomial standard errors of the best held-out
            accuracy, ``sqrt(a * (1 - a) / n_holdout)``; 0 keeps the best score (the
            longest window among equal scores).
        batch_col: the column holding batch ids.

    Raises:
        ValueError: fewer than two batches, or no candidate can be trained on (the last
            candidate's error is chained).
    """
    if len(batch_ids) < 2:
        raise ValueError("choosing a window needs the held-out batch and at least one before")
    holdout_id = batch_ids[-1]
    holdout = frame[frame[batch_col] == holdout_id]
    options = candidates(batch_ids, sizes, change_batch_id)

    def rows(window: Sequence[int]) -> pd.DataFrame:
        return frame[frame[batch_col].isin(window)]

    def chosen(option: Candidate, reason: str, scores: dict[str, float]) -> WindowChoice:
        return WindowChoice(
            option.label,
            option.batch_ids,
            refit_ids(option.batch_ids, batch_ids),
            holdout_id,
            reason,
            scores,
        )

    since = next((o for o in options if o.label == "since_change"), None)
    if since is not None and min_change_rows > 0:
        n_since = len(rows(since.batch_ids))
        if n_since >= min_change_rows:
            return chosen(
                since,
                f"concept drift from batch {change_batch_id}: {n_since} training rows since "
                f"the change (>= {min_change_rows})",
                {},
            )
    scores: dict[str, float] = {}
    last_error: ValueError | None = None
    for option in options:
        try:
            scores[option.label] = score(rows(option.batch_ids), holdout)
        except ValueError as exc:
            last_error = exc
    if not scores:
        raise ValueError(f"no candidate window can be trained on: {last_error}") from last_error
    top = max(scores.values())
    # One-standard-error rule (Breiman et al. 1984, "Classification and regression trees",
    # sec. 3.4.3): among windows scoring within ``one_se`` binomial standard errors of the
    # best, take the one with the most training rows; a shorter window must beat it by
    # more than noise.
    n_holdout = max(len(holdout), 1)
    slack = one_se * math.sqrt(top * (1 - top) / n_holdout)
    near = [o for o in options if o.label in scores and scores[o.label] >= top - slack - 1e-12]
    best = max(near, key=lambda o: len(rows(o.batch_ids)))
    tried = ", ".join(f"{label} {value:.3f}" for label, value in scores.items())
    return chosen(
        best,
        f"most training rows within {one_se:g} standard error ({slack:.3f}) of the best "
        f"held-out accuracy on batch {holdout_id} ({tried})",
        scores,
    )
