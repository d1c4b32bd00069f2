"""Drift statistics: equality with scipy, the statistical contract, effect-size floor, edges."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray
from scipy import stats
from threadpoolctl import threadpool_limits

from ia_continu.monitoring import data_drift as drift
from ia_continu.monitoring.data_drift import (
    DataDriftReport,
    detect_data_drift,
    ks_p_value,
    numeric_psi,
)

# --------------------------------------------------------------------------------------
# (a) Equality with scipy
# --------------------------------------------------------------------------------------

SIZES = [(7, 11), (50, 80), (300, 300), (1_000, 3_000), (5_000, 20_000), (20_000, 20_000)]


def _sample(
    rng: np.random.Generator, n: int, shift: float, decimals: int | None
) -> NDArray[np.float64]:
    values = rng.normal(shift, 1.0, n)
    return np.round(values, decimals) if decimals is not None else values


@pytest.mark.parametrize(("n", "m"), SIZES)
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_numeric_sorted_equals_scipy(n: int, m: int, decimals: int | None) -> None:
    assert n * m / (n + m) <= drift.KS_EXACT_MAX_EN
    rng = np.random.default_rng([n, m, decimals if decimals is not None else 99])
    for shift in (0.0, 0.05, 0.3):
        ref = _sample(rng, n, 0.0, decimals)
        cur = _sample(rng, m, shift, decimals)
        d, p_value, effect, _ = drift._numeric_sorted(np.sort(ref), np.sort(cur))
        expected = stats.ks_2samp(ref, cur, method="asymp")
        assert d == pytest.approx(expected.statistic, rel=1e-12, abs=1e-15)
        assert p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
        wasserstein = stats.wasserstein_distance(ref, cur) / np.std(ref)
        assert effect == pytest.approx(wasserstein, rel=1e-9, abs=1e-12)


def test_numeric_sorted_heavy_ties_equal_scipy() -> None:
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 4, 500).astype(np.float64)
    cur = rng.integers(1, 5, 700).astype(np.float64)
    d, p_value, effect, _ = drift._numeric_sorted(np.sort(ref), np.sort(cur))
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert d == pytest.approx(expected.statistic, rel=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert effect == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref), rel=1e-9)


def test_ks_p_value_above_exact_size_is_close_to_scipy() -> None:
    rng = np.random.default_rng(11)
    n, m = 40_000, 30_000
    assert n * m / (n + m) > drift.KS_EXACT_MAX_EN
    for shift in (0.0, 0.005, 0.01, 0.02, 0.05):
        ref, cur = rng.standard_normal(n), rng.normal(shift, 1.0, m)
        d, p_value, _, _ = drift._numeric_sorted(np.sort(ref), np.sort(cur))
        expected = stats.ks_2samp(ref, cur, method="asymp")
        assert d == pytest.approx(expected.statistic, rel=1e-12)
        assert abs(p_value - expected.pvalue) < 0.01, shift


@pytest.mark.parametrize(("n", "m"), [(20_001, 20_001), (50_000, 50_000), (1_000_000, 30_000)])
def test_ks_p_value_limit_distribution_is_within_001_of_kstwo(n: int, m: int) -> None:
    en = n * m / (n + m)
    assert en > drift.KS_EXACT_MAX_EN
    for z in np.linspace(0.3, 3.0, 28):  # covers p from ~1 down to ~1e-8
        d = float(z / math.sqrt(en))
        assert abs(ks_p_value(d, n, m) - stats.kstwo.sf(d, np.round(en))) < 0.01, z


def test_ks_p_value_is_a_probability() -> None:
    assert ks_p_value(0.0, 100, 100) == 1.0
    assert ks_p_value(1.0, 100, 100) == pytest.approx(0.0, abs=1e-30)
    assert ks_p_value(0.0, 100_000, 100_000) == 1.0
    assert 0.0 <= ks_p_value(0.5, 100_000, 100_000) <= 1.0


def test_numeric_psi_zero_on_identical_samples_and_positive_on_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(10_000)
    assert numeric_psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    small = numeric_psi(ref, rng.normal(0.1, 1.0, 10_000))
    large = numeric_psi(ref, rng.normal(1.0, 1.0, 10_000))
    assert 0.0 < small < 0.1 < large


def test_numeric_psi_matches_decile_histogram() -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.standard_normal(3_000), rng.normal(0.4, 1.2, 2_000)
    # Bin i is [e_i, e_i+1) with e_k the (k * n / 10)-th order statistic of the reference,
    # so every bin holds exactly 10 % of the reference.
    edges = np.sort(ref)[np.arange(1, 10) * len(ref) // 10]
    bins = np.concatenate([[-np.inf], edges, [np.inf]])
    ref_share = np.histogram(ref, bins)[0] / len(ref)
    np.testing.assert_allclose(ref_share, 0.1)
    cur_share = np.histogram(cur, bins)[0] / len(cur)
    expected = float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))
    assert numeric_psi(ref, cur) == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------------------------------
# (b) The statistical contract: 20 numeric features, 10,000 rows, 0.1-std shift
# --------------------------------------------------------------------------------------

N_ROWS = 10_000
N_NUMERIC = 20
NUMERIC = [f"x{i:02d}" for i in range(N_NUMERIC)]
CATEGORICAL = ["c0", "c1", "c2"]
CATEGORIES = np.array(["a", "b", "c", "d"], dtype=object)
SHARES = [0.4, 0.3, 0.2, 0.1]
N_SEEDS = 100


def _window(rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    """N_ROWS rows: 20 standard normals (x00 shifted by ``shift``) and 3 categoricals."""
    values = rng.standard_normal((N_ROWS, N_NUMERIC))
    values[:, 0] += shift
    frame = pd.DataFrame(values, columns=NUMERIC)
    for column in CATEGORICAL:
        frame[column] = CATEGORIES[rng.choice(len(CATEGORIES), size=N_ROWS, p=SHARES)]
    return frame


@dataclass(frozen=True)
class Contract:
    """Reports of the contract runs: one per seed."""

    shifted: list[DataDriftReport]
    null: list[DataDriftReport]


@pytest.fixture(scope="module")
def contract() -> Contract:
    shifted, null = [], []
    # One BLAS thread: the ~20,000-element dot product in drift._numeric_sorted is ~400x
    # slower with OpenBLAS threads on an oversubscribed machine (CI runners, xdist).
    with threadpool_limits(limits=1, user_api="blas"):
        for seed in range(N_SEEDS):
            rng = np.random.default_rng(seed)
            reference, current = _window(rng), _window(rng)
            null.append(
                detect_data_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL)
            )
            current[NUMERIC[0]] += 0.1
            shifted.append(
                detect_data_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL)
            )
    return Contract(shifted, null)


def test_contract_detects_a_tenth_std_shift_in_95_percent_of_seeds(contract: Contract) -> None:
    detected = [NUMERIC[0] in r.drifted_features for r in contract.shifted]
    rate = sum(detected) / len(detected)
    print(f"detection rate of a 0.1-std shift: {rate:.3f} over {len(detected)} seeds")
    assert len(detected) >= 100
    assert rate >= 0.95


def test_contract_per_feature_false_alarm_rate_at_most_1_percent(contract: Contract) -> None:
    flags = [f.drifted for r in contract.null for f in r.features]
    rate = sum(flags) / len(flags)
    # Unshifted features of the shifted runs are nulls too.
    flags_shifted = [f.drifted for r in contract.shifted for f in r.features[1:]]
    rate_shifted = sum(flags_shifted) / len(flags_shifted)
    print(f"per-feature false alarms: {rate:.4f} (null runs), {rate_shifted:.4f} (shifted runs)")
    assert len(contract.null) >= 100
    assert rate <= 0.01
    assert rate_shifted <= 0.01


def test_contract_dataset_false_alarm_rate_at_most_5_percent(contract: Contract) -> None:
    alarms = [r.drift for r in contract.null]
    rate = sum(alarms) / len(alarms)
    print(f"dataset-level false alarms: {rate:.3f} over {len(alarms)} seeds")
    assert len(alarms) >= 100
    assert rate <= 0.05


def test_contract_report_shape(contract: Contract) -> None:
    report = contract.shifted[0]
    assert (report.n_reference, report.n_current, report.alpha) == (N_ROWS, N_ROWS, 0.05)
    assert [f.feature for f in report.features] == [*NUMERIC, *CATEGORICAL]
    assert {f.test for f in report.features[:N_NUMERIC]} == {"ks"}
    assert {f.kind for f in report.features[N_NUMERIC:]} == {"categorical"}
    assert {f.test for f in report.features[N_NUMERIC:]} == {"chi2"}
    raw = np.array([f.p_value for f in report.features])
    adjusted = stats.false_discovery_control(raw, method="bh")
    np.testing.assert_allclose([f.p_adjusted for f in report.features], adjusted)
    out = report.to_dict()
    assert out["drift_share"] == pytest.approx(len(report.drifted_features) / 23)
    json.dumps(out)


# --------------------------------------------------------------------------------------
# Categorical features: chi-square + PSI
# --------------------------------------------------------------------------------------


def _exact_categorical(
    rng: np.random.Generator, shares: list[float], n: int
) -> NDArray[np.object_]:
    counts = np.round(np.array(shares) * n).astype(int)
    values = np.repeat(CATEGORIES[: len(shares)], counts)
    return rng.permutation(values)


def test_categorical_share_change_is_flagged_and_unchanged_is_not() -> None:
    rng = np.random.default_rng(5)
    n = 16_000  # every share below is a whole number of rows
    before, after = [0.4, 0.3, 0.2, 0.1], [0.325, 0.24375, 0.35, 0.08125]  # "c": 20% -> 35%
    reference = pd.DataFrame(
        {"moved": _exact_categorical(rng, before, n), "same": _exact_categorical(rng, before, n)}
    )
    current = pd.DataFrame(
        {"moved": _exact_categorical(rng, after, n), "same": _exact_categorical(rng, before, n)}
    )
    report = detect_data_drift(reference, current, numeric=(), categorical=["moved", "same"])
    moved, same = report.features
    expected_psi = sum((a - b) * math.log(a / b) for a, b in zip(after, before, strict=True))
    assert expected_psi > 0.1
    assert moved.effect == pytest.approx(expected_psi, rel=1e-9)
    assert moved.psi == moved.effect
    assert moved.p_value < 1e-10
    assert moved.drifted
    assert same.statistic == pytest.approx(0.0, abs=1e-9)
    assert same.p_value == pytest.approx(1.0)
    assert same.effect == pytest.approx(0.0, abs=1e-12)
    assert not same.drifted
    assert report.drifted_features == ["moved"]
    assert report.drift


def test_categorical_statistic_equals_scipy_chi2_contingency() -> None:
    rng = np.random.default_rng(6)
    ref = pd.Series(CATEGORIES[rng.choice(4, size=500, p=SHARES)])
    cur = pd.Series(CATEGORIES[rng.choice(3, size=300, p=[0.5, 0.3, 0.2])])
    report = detect_data_drift(
        pd.DataFrame({"c": ref}), pd.DataFrame({"c": cur}), numeric=(), categorical=["c"]
    )
    table = np.array(
        [[int((ref == c).sum()) for c in CATEGORIES], [int((cur == c).sum()) for c in CATEGORIES]]
    )
    expected = stats.chi2_contingency(table, correction=False)
    assert report.features[0].statistic == pytest.approx(expected.statistic)
    assert report.features[0].p_value == pytest.approx(expected.pvalue)


def test_categorical_new_category_in_current_is_flagged() -> None:
    reference = pd.DataFrame({"c": ["a", "b"] * 500})
    current = pd.DataFrame({"c": ["a", "b", "z", "z"] * 250})
    feature = detect_data_drift(reference, current, numeric=(), categorical=["c"]).features[0]
    assert math.isfinite(feature.psi)
    assert feature.drifted


def test_single_category_in_both_windows_is_not_drift() -> None:
    frame = pd.DataFrame({"c": ["a"] * 100})
    feature = detect_data_drift(frame, frame, numeric=(), categorical=["c"]).features[0]
    assert (feature.statistic, feature.p_value, feature.effect, feature.drifted) == (
        0.0,
        1.0,
        0.0,
        False,
    )


def test_small_categorical_psi_is_not_flagged_even_when_significant() -> None:
    rng = np.random.default_rng(8)
    n = 200_000
    reference = pd.DataFrame({"c": _exact_categorical(rng, [0.5, 0.5], n)})
    current = pd.DataFrame({"c": _exact_categorical(rng, [0.52, 0.48], n)})
    feature = detect_data_drift(reference, current, numeric=(), categorical=["c"]).features[0]
    assert feature.p_adjusted < 0.05
    assert feature.effect < 0.1
    assert not feature.drifted


# --------------------------------------------------------------------------------------
# (c) Effect-size floor
# --------------------------------------------------------------------------------------


def test_huge_windows_do_not_flag_an_immaterial_shift() -> None:
    rng = np.random.default_rng(2)
    n = 1_000_000
    reference = pd.DataFrame({"x": rng.standard_normal(n)})
    current = pd.DataFrame({"x": rng.normal(0.02, 1.0, n)})
    report = detect_data_drift(reference, current, numeric=["x"])
    feature = report.features[0]
    assert feature.p_value < 1e-6  # KS is significant...
    assert feature.p_adjusted < 0.05
    assert feature.effect < 0.05  # ...but the mass moved only ~0.02 std
    assert feature.effect == pytest.approx(0.02, abs=0.01)
    assert not feature.drifted
    assert not report.drift
    # The floor is the only thing that held it back.
    lowered = detect_data_drift(reference, current, numeric=["x"], min_wasserstein=0.01)
    assert lowered.features[0].drifted


def test_min_features_sets_the_dataset_rule() -> None:
    rng = np.random.default_rng(4)
    reference = pd.DataFrame(rng.standard_normal((2_000, 3)), columns=["a", "b", "c"])
    current = pd.DataFrame(rng.standard_normal((2_000, 3)), columns=["a", "b", "c"])
    current[["a", "b"]] += 1.0
    numeric = ["a", "b", "c"]
    two = detect_data_drift(reference, current, numeric=numeric, min_features=2)
    three = detect_data_drift(reference, current, numeric=numeric, min_features=3)
    assert two.drifted_features == three.drifted_features == ["a", "b"]
    assert two.drift
    assert not three.drift
    assert two.drift_share == pytest.approx(2 / 3)


# --------------------------------------------------------------------------------------
# (d) Missing values, missing features, constant features
# --------------------------------------------------------------------------------------


def test_nan_values_are_dropped_per_feature() -> None:
    rng = np.random.default_rng(9)
    ref = rng.standard_normal(1_000)
    cur = rng.normal(0.5, 1.0, 800)
    ref_nan, cur_nan = ref.copy(), cur.copy()
    ref_nan[::10] = np.nan
    cur_nan[::7] = np.nan
    cats = np.array(["a", "b", None], dtype=object)
    ref_cat, cur_cat = cats[np.arange(1_000) % 3], cats[np.arange(800) % 3]
    report = detect_data_drift(
        pd.DataFrame({"x": ref_nan, "c": ref_cat}),
        pd.DataFrame({"x": cur_nan, "c": cur_cat}),
        numeric=["x"],
        categorical=["c"],
    )
    x, c = report.features
    clean_ref, clean_cur = ref_nan[~np.isnan(ref_nan)], cur_nan[~np.isnan(cur_nan)]
    expected = stats.ks_2samp(clean_ref, clean_cur, method="asymp")
    assert x.statistic == pytest.approx(expected.statistic)
    assert x.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert x.effect == pytest.approx(
        stats.wasserstein_distance(clean_ref, clean_cur) / np.std(clean_ref)
    )
    assert x.drifted
    assert math.isfinite(c.statistic)
    assert not c.drifted
    assert report.n_reference == 1_000  # rows of the window, before dropping


def test_all_missing_feature_raises() -> None:
    reference = pd.DataFrame({"x": [np.nan, np.nan], "c": [None, None]})
    current = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    with pytest.raises(ValueError, match="'x' has no value"):
        detect_data_drift(reference, current, numeric=["x"])
    with pytest.raises(ValueError, match="'c' has no value"):
        detect_data_drift(reference, current, numeric=(), categorical=["c"])


def test_missing_feature_raises() -> None:
    reference = pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 2.0]})
    current = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"missing.*\['y'\]"):
        detect_data_drift(reference, current, numeric=["x", "y"])
    with pytest.raises(ValueError, match=r"missing.*\['z'\]"):
        detect_data_drift(reference, current, numeric=["x"], categorical=["z"])
    with pytest.raises(ValueError, match="no feature"):
        detect_data_drift(reference, current, numeric=())


def test_constant_feature_unchanged_is_not_drift() -> None:
    frame = pd.DataFrame({"k": np.full(500, 3.0)})
    feature = detect_data_drift(frame, frame.copy(), numeric=["k"]).features[0]
    assert feature.statistic == 0.0
    assert feature.p_value == 1.0
    assert feature.effect == 0.0
    assert feature.psi == pytest.approx(0.0, abs=1e-12)
    assert not feature.drifted


def test_constant_reference_against_varying_current_is_drift() -> None:
    rng = np.random.default_rng(10)
    reference = pd.DataFrame({"k": np.zeros(500)})
    current = pd.DataFrame({"k": rng.standard_normal(500)})
    feature = detect_data_drift(reference, current, numeric=["k"]).features[0]
    assert feature.effect == math.inf  # no reference spread to normalise by
    assert feature.p_value < 1e-10
    assert feature.drifted


def test_constant_reference_moved_constant_is_drift() -> None:
    reference = pd.DataFrame({"k": np.zeros(200)})
    current = pd.DataFrame({"k": np.ones(200)})
    feature = detect_data_drift(reference, current, numeric=["k"]).features[0]
    assert feature.statistic == 1.0
    assert feature.effect == math.inf
    assert feature.drifted


def test_integer_columns_are_tested_as_numeric() -> None:
    reference = pd.DataFrame({"i": np.arange(1_000) % 10})
    current = pd.DataFrame({"i": np.arange(1_000) % 10 + 3})
    feature = detect_data_drift(reference, current, numeric=["i"]).features[0]
    assert feature.kind == "numeric"
    assert feature.drifted
