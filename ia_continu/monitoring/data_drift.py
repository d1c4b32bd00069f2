"""Data drift: reference vs current window, per feature (concept drift: ``concept_drift``).

Dataset-level rule (also in the README): **data drift** is declared when at least
``min_features`` features drift. A feature drifts when both

1. its two-sample test rejects "same distribution" after a Benjamini–Hochberg correction
   across all features at level ``alpha`` (KS test for numeric features, chi-square test
   of homogeneity for categorical ones), and
2. its effect size is material: normalised Wasserstein distance (Wasserstein-1 divided by
   the reference standard deviation, i.e. "how many reference stds the mass moved") at
   least ``min_wasserstein`` for numeric features, PSI at least ``min_psi`` for categorical.

Under the complete null (independent tests), BH controls the family-wise error at ``alpha``,
so the dataset-level
false-alarm rate with ``min_features=1`` is at most ``alpha``; the effect-size floor keeps
huge windows from flagging shifts too small to matter.

Sources: scipy.stats.ks_2samp, chi2_contingency, wasserstein_distance and
false_discovery_control (scipy 1.17 reference); Benjamini & Hochberg (1995), "Controlling
the false discovery rate", JRSS B 57(1); PSI: Yurdakul (2018), "Statistical properties of
population stability index", Western Michigan University; normalised Wasserstein as in
Evidently's drift method ``wasserstein`` (docs.evidentlyai.com, data drift algorithm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

PSI_EPSILON = 1e-4  # floor on bin proportions so empty bins give a finite PSI
PSI_BINS = 10
KS_EXACT_MAX_EN = 10_000


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature between the reference and the current window.

    Attributes:
        feature: column name.
        kind: ``numeric`` or ``categorical``.
        test: ``ks`` (two-sample Kolmogorov–Smirnov) or ``chi2`` (homogeneity).
        statistic: KS D (0..1) or the chi-square statistic.
        p_value: raw p-value of the test.
        p_adjusted: Benjamini–Hochberg adjusted p-value across all features.
        effect: normalised Wasserstein (numeric, in reference stds) or PSI (categorical).
        psi: population stability index on reference deciles (numeric) or categories.
        drifted: the feature-level verdict (see module docstring).
    """

    feature: str
    kind: Literal["numeric", "categorical"]
    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    p_adjusted: float
    effect: float
    psi: float
    drifted: bool


@dataclass(frozen=True)
class DataDriftReport:
    """Per-feature drift results and the dataset-level verdict."""

    n_reference: int
    n_current: int
    alpha: float
    features: list[FeatureDrift]
    drift: bool
    drifted_features: list[str] = field(default_factory=list)

    @property
    def drift_share(self) -> float:
        """Fraction of features that drifted (0..1)."""
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["drift_share"] = self.drift_share
        return out


def _psi(ref_share: NDArray[np.float64], cur_share: NDArray[np.float64]) -> float:
    ref = np.clip(ref_share, PSI_EPSILON, None)
    cur = np.clip(cur_share, PSI_EPSILON, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks_p_value(d: float, n: int, m: int) -> float:
    """Asymptotic two-sample KS p-value for statistic ``d`` and sample sizes ``n``, ``m``.

    Up to an effective size ``n*m/(n+m)`` of 10,000 this is exactly what
    ``scipy.stats.ks_2samp(method="asymp")`` returns (``kstwo.sf(d, round(en))``); above it,
    the Kolmogorov limiting distribution ``kstwobign.sf(d * sqrt(en))``, which differs by
    O(1/sqrt(en)) and is ~100x cheaper than the exact ``kstwo`` at that size.
    """
    # scipy.stats is imported by the functions that test: the flow process imports this
    # module on every cycle, ahead of knowing whether there is anything to compare.
    from scipy import stats

    en = n * m / (n + m)
    if en <= KS_EXACT_MAX_EN:
        return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))
    return float(np.clip(stats.kstwobign.sf(d * np.sqrt(en)), 0.0, 1.0))


def numeric_psi(reference: NDArray[np.float64], current: NDArray[np.float64]) -> float:
    """PSI of ``current`` against ``reference`` on the reference's deciles (unitless, >= 0)."""
    return _numeric_sorted(np.sort(reference), np.sort(current))[3]


def _numeric_sorted(
    ref: NDArray[np.float64], cur: NDArray[np.float64]
) -> tuple[float, float, float, float]:
    """KS D, KS p-value, normalised Wasserstein-1 and PSI from two *sorted* samples.

    One pass over the merged sample gives both empirical CDFs: D is their largest gap and
    W1 the integral of the gap, exactly as ``scipy.stats.ks_2samp`` and
    ``scipy.stats.wasserstein_distance`` compute them (scipy's ``_cdf_distance`` with
    p=1); the p-value comes from :func:`ks_p_value`. Tests check equality with scipy;
    sharing one merge per feature is ~3x faster than the two scipy calls.
    """
    n, m = len(ref), len(cur)
    both = np.concatenate([ref, cur])
    # Both halves are sorted runs, so a stable argsort is a linear merge (timsort).
    order = np.argsort(both, kind="stable")
    merged = both[order]
    ref_seen = np.cumsum(order < n)
    gap = ref_seen / n - (np.arange(1, n + m + 1) - ref_seen) / m
    # ECDFs are right-continuous: within a run of ties only the last position counts.
    last_of_ties = np.append(merged[1:] != merged[:-1], True)
    abs_gap = np.abs(gap)
    d = float(abs_gap[last_of_ties].max())
    p_value = ks_p_value(d, n, m)
    wasserstein = float(np.dot(abs_gap[:-1], np.diff(merged)))
    scale = float(np.std(ref))
    effect = wasserstein / scale if scale > 0 else (np.inf if wasserstein > 0 else 0.0)
    edges = np.unique(ref[np.minimum((np.arange(1, PSI_BINS) * n) // PSI_BINS, n - 1)])
    ref_share = np.diff(np.searchsorted(ref, edges, side="left"), prepend=0, append=n) / n
    cur_share = np.diff(np.searchsorted(cur, edges, side="left"), prepend=0, append=m) / m
    return d, p_value, effect, _psi(ref_share, cur_share)


def _categorical(reference: pd.Series, current: pd.Series) -> tuple[float, float, float, float]:
    from scipy import stats

    codes, categories = pd.factorize(pd.concat([reference, current], ignore_index=True))
    k = len(categories)
    table = np.vstack(
        [
            np.bincount(codes[: len(reference)], minlength=k),
            np.bincount(codes[len(reference) :], minlength=k),
        ]
    )
    if table.shape[1] < 2:
        return 0.0, 1.0, 0.0, 0.0
    result = stats.chi2_contingency(table, correction=False)
    psi = _psi(table[0] / table[0].sum(), table[1] / table[1].sum())
    return float(result.statistic), float(result.pvalue), psi, psi


def detect_data_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    alpha: float = 0.05,
    min_wasserstein: float = 0.05,
    min_psi: float = 0.1,
    min_features: int = 1,
) -> DataDriftReport:
    """Compare the current window with the reference window, feature by feature.

    Args:
        reference: rows the champion was trained on (n_ref x columns).
        current: the newest rows (n_cur x columns).
        numeric: numeric feature names (KS test, normalised Wasserstein effect).
        categorical: categorical feature names (chi-square test, PSI effect).
        alpha: false-discovery level of the BH correction; with ``min_features=1`` also
            the dataset-level false-alarm bound under no drift.
        min_wasserstein: smallest material shift of a numeric feature, in reference stds.
        min_psi: smallest material PSI of a categorical feature.
        min_features: drifted features needed for dataset-level drift.

    Returns:
        The report; missing values are dropped per feature before testing.

    Raises:
        ValueError: a feature is missing, or a window has no non-missing value for it.
    """
    from scipy import stats

    names = [*numeric, *categorical]
    if not names:
        raise ValueError("no feature to compare")
    missing = [c for c in names if c not in reference.columns or c not in current.columns]
    if missing:
        raise ValueError(f"features missing from a window: {missing}")
    raw: list[tuple[str, Literal["numeric", "categorical"], tuple[float, float, float, float]]]
    raw = []
    for column in numeric:
        ref = reference[column].to_numpy(dtype=np.float64)
        cur = current[column].to_numpy(dtype=np.float64)
        ref, cur = np.sort(ref[~np.isnan(ref)]), np.sort(cur[~np.isnan(cur)])
        if len(ref) == 0 or len(cur) == 0:
            raise ValueError(f"feature {column!r} has no value in a window")
        raw.append((column, "numeric", _numeric_sorted(ref, cur)))
    for column in categorical:
        ref_s, cur_s = reference[column].dropna(), current[column].dropna()
        if len(ref_s) == 0 or len(cur_s) == 0:
            raise ValueError(f"feature {column!r} has no value in a window")
        raw.append((column, "categorical", _categorical(ref_s, cur_s)))

    p_values = np.array([r[2][1] for r in raw])
    adjusted = stats.false_discovery_control(p_values, method="bh")
    features = []
    for (column, kind, (statistic, p_value, effect, psi)), p_adj in zip(raw, adjusted, strict=True):
        floor = min_wasserstein if kind == "numeric" else min_psi
        features.append(
            FeatureDrift(
                feature=column,
                kind=kind,
                test="ks" if kind == "numeric" else "chi2",
                statistic=statistic,
                p_value=p_value,
                p_adjusted=float(p_adj),
                effect=effect,
                psi=psi,
                drifted=bool(p_adj < alpha and effect >= floor),
            )
        )
    drifted = [f.feature for f in features if f.drifted]
    return DataDriftReport(
        n_reference=len(reference),
        n_current=len(current),
        alpha=alpha,
        features=features,
        drift=len(drifted) >= min_features,
        drifted_features=drifted,
    )
