"""Concept drift: is the champion's error rate on the newest batch significantly higher?

The detector compares two error counts of the same model: the **reference** (its errors on
its validation rows, pooled with its first batches in service) and the **current window**
(its errors on the newest labelled batch). Drift is declared when a one-sided test of equal
proportions rejects "the current error rate is not higher" at level ``alpha`` *and* the
increase is at least ``min_effect`` (so a huge batch cannot flag a shift too small to
matter).

The test is the one of STEPD (Nishida & Yamauchi 2007, "Detecting concept drift using
statistical testing", Discovery Science, LNCS 4755): the pooled two-proportion z statistic
with a continuity correction,

    z = (p_cur - p_ref - 0.5 * (1/n_cur + 1/n_ref)) / sqrt(p * (1 - p) * (1/n_cur + 1/n_ref))

with ``p`` the pooled error rate, compared with the standard normal (``scipy.stats.norm``).
It accounts for both sample sizes: a reference measured on 84 rows widens the test, it does
not move a fixed threshold. Under a stable concept the per-cycle false-alarm rate is at most
``alpha`` (the correction makes the test conservative); ``bench/streams.py`` measures it on
a stable control stream.

The change point (the first batch of the new concept) is estimated by the split that makes
the errors after it most significantly higher than the reference (the maximum of the same
statistic over the candidate starts, as in binary segmentation: Scott & Knott 1974; Page
1954 for the cumulative-sum idea).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorCount:
    """Errors of a model on ``n`` labelled rows.

    Raises:
        ValueError: ``n`` is negative or ``errors`` is outside ``[0, n]``.
    """

    n: int
    errors: int

    def __post_init__(self) -> None:
        if self.n < 0 or not 0 <= self.errors <= self.n:
            raise ValueError(f"need 0 <= errors <= n, got errors={self.errors}, n={self.n}")

    @property
    def rate(self) -> float:
        """Error rate (0..1); NaN without rows."""
        return self.errors / self.n if self.n else math.nan

    def __add__(self, other: ErrorCount) -> ErrorCount:
        return ErrorCount(self.n + other.n, self.errors + other.errors)


@dataclass(frozen=True)
class BatchScore:
    """The champion's errors on one batch it served, as stored in a drift report.

    Attributes:
        batch_id: the batch.
        count: its errors on the batch's labelled rows.
        drift: whether that cycle flagged concept drift.
    """

    batch_id: int
    count: ErrorCount
    drift: bool


def dispersion(groups: Sequence[ErrorCount]) -> float:
    """Overdispersion of error counts across batches: Pearson chi-square / (groups - 1).

    Rows of a batch are not independent in real streams (errors come in runs: a week of
    Elec2, a season of weather), so batch error rates vary more than the binomial allows
    and a test that assumes independent rows raises false alarms. The quasi-binomial
    dispersion factor (Wedderburn 1974, "Quasi-likelihood functions, generalized linear
    models, and the Gauss-Newton method", Biometrika 61(3); McCullagh & Nelder 1989,
    "Generalized linear models", sec. 4.5) measures by how much; the test statistic is
    divided by its square root.

    Returns:
        The factor, at least 1.0 (1.0 with fewer than two non-empty groups or a pooled
        rate of 0 or 1).
    """
    used = [g for g in groups if g.n > 0]
    if len(used) < 2:
        return 1.0
    pooled = sum(g.errors for g in used) / sum(g.n for g in used)
    if pooled <= 0.0 or pooled >= 1.0:
        return 1.0
    chi2 = sum((g.errors - g.n * pooled) ** 2 / (g.n * pooled * (1 - pooled)) for g in used)
    return max(1.0, chi2 / (len(used) - 1))


def proportions_test(
    current: ErrorCount, reference: ErrorCount, dispersion: float = 1.0
) -> tuple[float, float]:
    """One-sided STEPD test that ``current``'s error rate exceeds ``reference``'s.

    ``dispersion`` (>= 1, see :func:`dispersion`) widens the variance: the statistic is
    divided by ``sqrt(dispersion)``.

    Returns:
        ``(z, p_value)``; ``(0.0, 1.0)`` when either count has no row or the pooled error
        rate is 0 or 1 (nothing to compare).
    """
    # Imported here: the flow process imports this module on every cycle, and scipy.stats
    # costs more to import than the rest of the concept-drift test.
    from scipy import stats

    if current.n == 0 or reference.n == 0:
        return 0.0, 1.0
    pooled = (current.errors + reference.errors) / (current.n + reference.n)
    if pooled <= 0.0 or pooled >= 1.0:
        return 0.0, 1.0
    inverse = 1 / current.n + 1 / reference.n
    z = (current.rate - reference.rate - 0.5 * inverse) / math.sqrt(
        pooled * (1 - pooled) * inverse * dispersion
    )
    return z, float(stats.norm.sf(z))


def reference_count(
    validation: ErrorCount | None, service: Sequence[BatchScore], batches: int
) -> tuple[ErrorCount, list[int], list[ErrorCount]]:
    """The champion's reference errors: validation rows plus its first batches in service.

    The first ``batches`` batches the champion served without a concept-drift flag are
    pooled with its validation rows, so a reference first measured on a small hold-out
    grows to several batches as the champion serves (``service`` in stream order).

    Returns:
        ``(pooled count, batch ids pooled, the pooled groups)``: the groups are the
        validation count and each pooled batch's, for :func:`dispersion`.
    """
    pooled = validation or ErrorCount(0, 0)
    groups = [validation] if validation is not None else []
    used: list[int] = []
    for score in service:
        if len(used) >= batches:
            break
        if not score.drift:
            pooled = pooled + score.count
            groups.append(score.count)
            used.append(score.batch_id)
    return pooled, used, groups


def change_point(
    reference: ErrorCount,
    after: Sequence[tuple[int, ErrorCount]],
    current_batch_id: int,
    dispersion: float = 1.0,
) -> int:
    """First batch of the new concept: the start whose errors to now differ most.

    Args:
        reference: the champion's reference errors.
        after: ``(batch_id, errors)`` of the batches served after the reference batches,
            in stream order, the current batch last.
        current_batch_id: the newest batch (the answer when ``after`` is empty).
        dispersion: quasi-binomial dispersion of the reference batches (>= 1, see
            :func:`dispersion`), passed to :func:`proportions_test`.

    Returns:
        The batch id ``c`` maximising the STEPD statistic of the pooled errors of batches
        ``c..current`` against ``reference`` (the newest such ``c`` on ties).
    """
    best, best_z = current_batch_id, -math.inf
    tail = ErrorCount(0, 0)
    for batch_id, count in reversed(after):
        tail = tail + count
        z, _ = proportions_test(tail, reference, dispersion)
        if z > best_z:
            best, best_z = batch_id, z
    return best


@dataclass(frozen=True)
class ConceptDrift:
    """The concept-drift verdict on the newest batch.

    Attributes:
        accuracy: champion accuracy on the newest batch (0..1).
        n: labelled rows of the newest batch.
        errors: champion errors on them.
        reference_accuracy: 1 - reference error rate, or None without a reference.
        reference_n: rows in the reference (validation + pooled service batches).
        reference_errors: errors on them.
        reference_batch_ids: service batches pooled into the reference.
        statistic: STEPD z statistic (divided by ``sqrt(dispersion)``).
        p_value: one-sided p-value.
        dispersion: quasi-binomial dispersion of the reference batches (>= 1).
        alpha: test level.
        min_effect: smallest error-rate increase that counts (absolute, 0..1).
        drift: the verdict.
        change_batch_id: estimated first batch of the new concept (drift only).
        reason: one sentence.
    """

    accuracy: float
    n: int
    errors: int
    reference_accuracy: float | None
    reference_n: int
    reference_errors: int
    reference_batch_ids: list[int]
    statistic: float
    p_value: float
    dispersion: float
    alpha: float
    min_effect: float
    drift: bool
    change_batch_id: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def detect_concept_drift(
    current: ErrorCount,
    current_batch_id: int,
    *,
    validation: ErrorCount | None,
    service: Sequence[BatchScore] = (),
    reference_batches: int = 3,
    alpha: float = 0.01,
    min_effect: float = 0.02,
) -> ConceptDrift:
    """Concept drift of the champion on the newest batch (see the module docstring).

    Args:
        current: champion errors on the newest batch.
        current_batch_id: id of the newest batch (never pooled into the reference).
        validation: champion errors on its validation (hold-out) rows, or None if unknown.
        service: the champion's earlier batches in service, in stream order.
        reference_batches: first unflagged service batches pooled into the reference.
        alpha: one-sided level of the test (per cycle false-alarm bound).
        min_effect: smallest error-rate increase declared drift (absolute).

    Raises:
        ValueError: ``alpha`` not in (0, 1), ``min_effect`` not in [0, 1) or
            ``reference_batches`` negative.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 <= min_effect < 1.0:
        raise ValueError(f"min_effect must be in [0, 1), got {min_effect}")
    if reference_batches < 0:
        raise ValueError(f"reference_batches must be >= 0, got {reference_batches}")
    earlier = [s for s in service if s.batch_id != current_batch_id]
    reference, used, groups = reference_count(validation, earlier, reference_batches)
    phi = dispersion(groups)
    accuracy = 1 - current.rate if current.n else math.nan

    def verdict(drift: bool, z: float, p: float, change: int | None, reason: str) -> ConceptDrift:
        return ConceptDrift(
            accuracy=accuracy,
            n=current.n,
            errors=current.errors,
            reference_accuracy=1 - reference.rate if reference.n else None,
            reference_n=reference.n,
            reference_errors=reference.errors,
            reference_batch_ids=used,
            statistic=z,
            p_value=p,
            dispersion=phi,
            alpha=alpha,
            min_effect=min_effect,
            drift=drift,
            change_batch_id=change,
            reason=reason,
        )

    if reference.n == 0:
        return verdict(False, 0.0, 1.0, None, "no reference error rate for this champion yet")
    if current.n == 0:
        return verdict(False, 0.0, 1.0, None, "no labelled row in the newest batch")
    z, p = proportions_test(current, reference, phi)
    increase = current.rate - reference.rate
    described = (
        f"error {current.rate:.3f} on {current.n} rows vs reference {reference.rate:.3f} "
        f"on {reference.n} rows (p={p:.2g}{'' if phi == 1.0 else f', dispersion {phi:.2f}'})"
    )
    if p < alpha and increase >= min_effect:
        last_reference = max(used, default=-math.inf)
        after = [(s.batch_id, s.count) for s in earlier if s.batch_id > last_reference]
        tail = [*after, (current_batch_id, current)]
        change = change_point(reference, tail, current_batch_id, phi)  # pragma: no mutate
        return verdict(True, z, p, change, f"concept drift: {described}")
    why = f"p >= {alpha:g}" if p >= alpha else f"increase {increase:+.3f} < {min_effect:g}"
    return verdict(False, z, p, None, f"no concept drift: {described}; {why}")
