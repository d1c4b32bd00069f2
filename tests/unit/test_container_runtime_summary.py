"""The container run-time benchmark's summary (``bench.container_runtime.summarize``):
durations from the scheduled time, p95 against each series' target, skipped share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench.container_runtime import RunTiming, percentile, summarize

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _run(i: int, series: str, seconds: float | None, state: str = "Completed") -> RunTiming:
    scheduled = T0 + timedelta(seconds=30 * i)
    end = None if seconds is None else scheduled + timedelta(seconds=seconds)
    return RunTiming(
        id=f"r{i}",
        name=f"run-{i}",
        series=series,
        scheduled=scheduled,
        pending=scheduled - timedelta(seconds=5),
        start=scheduled,
        end=end,
        state=state,
        retrained=series == "with_retrain",
    )


def test_p95_is_numpy_linear_percentile_and_none_without_values() -> None:
    assert percentile(list(range(1, 21)), 95) == pytest.approx(19.05)
    assert percentile([4.0], 95) == 4.0
    assert percentile([], 95) is None


def test_summary_per_series_from_scheduled_time_skipped_and_failed_apart() -> None:
    without = [_run(i, "without_retrain", 5.0 + i) for i in range(19)]  # 5..23 s
    without.append(_run(19, "without_retrain", 0.5, state="Skipped"))
    with_retrain = [_run(20 + i, "with_retrain", 12.0) for i in range(18)]
    with_retrain += [
        _run(38, "with_retrain", 40.0, state="Failed"),
        _run(39, "with_retrain", None, state="Running"),
    ]

    summary = summarize(without + with_retrain)

    no_retrain = summary["series"]["without_retrain"]
    # The skipped run's 0.5 s is not a run time: 19 completed runs of 5..23 s.
    assert no_retrain["completed"] == 19 and no_retrain["skipped"] == 1
    assert no_retrain["failed"] == 0
    assert no_retrain["median_s"] == 14.0
    assert no_retrain["p95_s"] == pytest.approx(22.1)
    assert no_retrain["max_s"] == 23.0
    assert no_retrain["target_p95_s"] == 10.0 and no_retrain["meets_target"] is False
    retrain = summary["series"]["with_retrain"]
    assert retrain["completed"] == 18 and retrain["skipped"] == 0 and retrain["failed"] == 2
    assert retrain["retrained"] == 20
    assert retrain["p95_s"] == 12.0 and retrain["meets_target"] is True
    assert summary["runs"] == 40 and summary["skipped"] == 1
    assert summary["skipped_share"] == 0.025


def test_a_series_without_a_completed_run_has_no_statistics() -> None:
    summary = summarize([_run(0, "with_retrain", 1.0, state="Skipped")])
    series = summary["series"]["with_retrain"]
    assert series["median_s"] is None and series["p95_s"] is None
    assert series["meets_target"] is None
    assert summary["skipped_share"] == 1.0
