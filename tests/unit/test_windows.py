"""The training window: candidates, the since-change rule, the one-standard-error choice."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import pytest

from ia_continu.training.windows import (
    Candidate,
    WindowChoice,
    candidates,
    choose_window,
    refit_ids,
)


def frame_of(rows: Mapping[int, int], batch_col: str = "batch_id") -> pd.DataFrame:
    """``rows[batch] `` labelled rows per batch, in stream order."""
    ids = [b for b, n in rows.items() for _ in range(n)]
    return pd.DataFrame(
        {batch_col: ids, "x": range(len(ids)), "y": [i % 2 for i in range(len(ids))]}
    )


class FakeScore:
    """Held-out accuracy by training window (batch ids); records what it was given.

    A window mapped to an exception raises it (a candidate that cannot be trained on).
    """

    def __init__(
        self, by_window: Mapping[tuple[int, ...], float | Exception], batch_col: str = "batch_id"
    ) -> None:
        self.by_window = by_window
        self.batch_col = batch_col
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...], int]] = []

    def __call__(self, train: pd.DataFrame, holdout: pd.DataFrame) -> float:
        window = tuple(sorted(set(train[self.batch_col])))
        self.calls.append((window, tuple(sorted(set(holdout[self.batch_col]))), len(holdout)))
        outcome = self.by_window[window]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def se(accuracy: float, n: int) -> float:
    return math.sqrt(accuracy * (1 - accuracy) / n)


# --------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------


def test_candidates_shortest_first_ending_before_the_holdout() -> None:
    assert candidates([1, 2, 3, 4, 5, 6], [1, 2, 4]) == [
        Candidate("last_1", (5,)),
        Candidate("last_2", (4, 5)),
        Candidate("last_4", (2, 3, 4, 5)),
    ]


def test_sizes_beyond_what_is_available_collapse() -> None:
    assert candidates([10, 11, 12, 13], [8, 1, 4, 2, 4]) == [
        Candidate("last_1", (12,)),
        Candidate("last_2", (11, 12)),
        Candidate("last_3", (10, 11, 12)),
    ]


def test_since_change_comes_first_and_is_not_repeated() -> None:
    assert candidates([1, 2, 3, 4, 5, 6], [1, 2, 4], change_batch_id=3) == [
        Candidate("since_change", (3, 4, 5)),
        Candidate("last_1", (5,)),
        Candidate("last_2", (4, 5)),
        Candidate("last_4", (2, 3, 4, 5)),
    ]
    # Since the change = the last two batches: the size window is dropped, not doubled.
    assert candidates([1, 2, 3, 4, 5, 6], [1, 2, 4], change_batch_id=4) == [
        Candidate("since_change", (4, 5)),
        Candidate("last_1", (5,)),
        Candidate("last_4", (2, 3, 4, 5)),
    ]


def test_change_in_the_holdout_batch_gives_no_since_change_window() -> None:
    assert candidates([1, 2, 3], [1], change_batch_id=3) == [Candidate("last_1", (2,))]


def test_change_before_every_batch_is_the_whole_history() -> None:
    assert candidates([4, 5, 6], [1], change_batch_id=0) == [
        Candidate("since_change", (4, 5)),
        Candidate("last_1", (5,)),
    ]


def test_empty_when_only_the_holdout_batch_is_available() -> None:
    assert candidates([7], [1, 2, 4], change_batch_id=7) == []
    assert candidates([7], [1, 2, 4]) == []


def test_non_positive_sizes_give_no_window() -> None:
    assert candidates([1, 2, 3, 4], [0, 1, -2]) == [Candidate("last_1", (3,))]
    assert candidates([1, 2, 3, 4], []) == []


# --------------------------------------------------------------------------------------
# Refit ids
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ((5,), (6,)),
        ((4, 5), (5, 6)),
        ((2, 3, 4, 5), (3, 4, 5, 6)),
        ((1, 2, 3, 4, 5), (2, 3, 4, 5, 6)),
    ],
)
def test_refit_ids_shift_the_window_to_end_at_the_newest_batch(
    window: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    assert refit_ids(window, [1, 2, 3, 4, 5, 6]) == expected


def test_refit_ids_with_non_contiguous_ids() -> None:
    assert refit_ids((30, 40), (10, 30, 40, 70)) == (40, 70)


# --------------------------------------------------------------------------------------
# The since-change rule
# --------------------------------------------------------------------------------------


def test_since_change_applies_at_exactly_min_change_rows() -> None:
    frame = frame_of({1: 50, 2: 50, 3: 40, 4: 60, 5: 50})
    score = FakeScore({})
    choice = choose_window(
        frame, [1, 2, 3, 4, 5], [1, 2, 4], score, change_batch_id=3, min_change_rows=100
    )
    assert choice == WindowChoice(
        label="since_change",
        batch_ids=(3, 4),
        refit_batch_ids=(4, 5),
        holdout_batch_id=5,
        reason="concept drift from batch 3: 100 training rows since the change (>= 100)",
        scores={},
    )
    assert score.calls == []  # nothing trained to choose


def test_since_change_one_row_short_falls_back_to_the_candidates() -> None:
    frame = frame_of({1: 50, 2: 50, 3: 40, 4: 60, 5: 50})
    score = FakeScore({(3, 4): 0.8, (4,): 0.6, (1, 2, 3, 4): 0.7})
    choice = choose_window(
        frame, [1, 2, 3, 4, 5], [1, 2, 4], score, change_batch_id=3, min_change_rows=101
    )
    assert choice.label == "since_change"  # chosen on its score this time
    assert choice.scores == {"since_change": 0.8, "last_1": 0.6, "last_4": 0.7}
    assert choice.reason.startswith("most training rows within 1 standard error")


def test_since_change_rule_with_one_row_required() -> None:
    frame = frame_of({1: 5, 2: 1, 3: 5})
    choice = choose_window(
        frame, [1, 2, 3], [2], FakeScore({}), change_batch_id=2, min_change_rows=1
    )
    assert choice.label == "since_change"
    assert choice.reason == "concept drift from batch 2: 1 training rows since the change (>= 1)"


def test_since_change_rule_is_off_by_default() -> None:
    frame = frame_of({1: 50, 2: 50, 3: 50})
    score = FakeScore({(2,): 0.9, (1, 2): 0.5})
    choice = choose_window(frame, [1, 2, 3], [1, 2], score, change_batch_id=2)
    assert choice.label == "since_change"  # the same batch as last_1: scored, not taken as is
    assert choice.scores == {"since_change": 0.9, "last_2": 0.5}
    assert choice.reason.startswith("most training rows within 1 standard error (0.042) ")


def test_min_change_rows_without_a_change_point_scores_the_candidates() -> None:
    frame = frame_of({1: 50, 2: 50, 3: 50})
    choice = choose_window(frame, [1, 2, 3], [1], FakeScore({(2,): 0.9}), min_change_rows=10)
    assert choice.label == "last_1"


# --------------------------------------------------------------------------------------
# The one-standard-error choice
# --------------------------------------------------------------------------------------


def test_the_longest_window_within_one_standard_error_wins() -> None:
    frame = frame_of({1: 100, 2: 100, 3: 100, 4: 100, 5: 100, 6: 100})
    slack = se(0.80, 100)  # 0.040
    score = FakeScore(
        {(5,): 0.80, (4, 5): 0.77, (2, 3, 4, 5): 0.80 - slack + 1e-6, (1, 2, 3, 4, 5): 0.70}
    )
    choice = choose_window(frame, [1, 2, 3, 4, 5, 6], [1, 2, 4, 8], score)
    assert choice == WindowChoice(
        label="last_4",
        batch_ids=(2, 3, 4, 5),
        refit_batch_ids=(3, 4, 5, 6),
        holdout_batch_id=6,
        reason=(
            "most training rows within 1 standard error (0.040) of the best held-out accuracy "
            "on batch 6 (last_1 0.800, last_2 0.770, last_4 0.760, last_5 0.700)"
        ),
        scores={"last_1": 0.80, "last_2": 0.77, "last_4": 0.80 - slack + 1e-6, "last_5": 0.70},
    )
    # Every candidate was scored on the held-out batch alone, all its rows.
    assert [call[1:] for call in score.calls] == [((6,), 100)] * 4
    assert [call[0] for call in score.calls] == [(5,), (4, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5)]


def test_just_outside_the_slack_is_not_chosen() -> None:
    frame = frame_of({1: 100, 2: 100, 3: 100, 4: 100})
    slack = se(0.80, 100)
    score = FakeScore({(3,): 0.80, (2, 3): 0.80 - slack - 1e-6, (1, 2, 3): 0.5})
    choice = choose_window(frame, [1, 2, 3, 4], [1, 2, 3], score)
    assert choice.label == "last_1"


def test_one_se_zero_takes_the_best() -> None:
    frame = frame_of({1: 100, 2: 100, 3: 100, 4: 100})
    score = FakeScore({(3,): 0.78, (2, 3): 0.80, (1, 2, 3): 0.79})
    choice = choose_window(frame, [1, 2, 3, 4], [1, 2, 3], score, one_se=0.0)
    assert choice.label == "last_2"
    assert choice.reason == (
        "most training rows within 0 standard error (0.000) of the best held-out accuracy on "
        "batch 4 (last_1 0.780, last_2 0.800, last_3 0.790)"
    )


def test_one_se_zero_treats_float_noise_as_a_tie() -> None:
    frame = frame_of({1: 100, 2: 100, 3: 100})
    score = FakeScore({(2,): 0.8, (1, 2): 0.8 - 1e-12})
    assert choose_window(frame, [1, 2, 3], [1, 2], score, one_se=0.0).label == "last_2"
    score = FakeScore({(2,): 0.8, (1, 2): 0.8 - 3e-12})
    assert choose_window(frame, [1, 2, 3], [1, 2], score, one_se=0.0).label == "last_1"


def test_the_slack_is_two_standard_errors_with_one_se_two() -> None:
    frame = frame_of({1: 100, 2: 100, 3: 100})
    slack = 2 * se(0.8, 100)  # 0.080
    score = FakeScore({(2,): 0.8, (1, 2): 0.8 - slack + 1e-6})
    choice = choose_window(frame, [1, 2, 3], [1, 2], score, one_se=2.0)
    assert choice.label == "last_2"
    assert "within 2 standard error (0.080)" in choice.reason


def test_the_slack_uses_the_holdout_size() -> None:
    # One held-out row, a score of 0.5: slack sqrt(0.25 / 1) = 0.5.
    frame = frame_of({1: 10, 2: 10, 3: 1})
    score = FakeScore({(2,): 0.5, (1, 2): 0.1})
    choice = choose_window(frame, [1, 2, 3], [1, 2], score)
    assert choice.label == "last_2"
    assert "(0.500)" in choice.reason
    assert score.calls[0][2] == 1


def test_a_perfect_best_score_leaves_no_slack() -> None:
    frame = frame_of({1: 100, 2: 100, 3: 100})
    score = FakeScore({(2,): 1.0, (1, 2): 0.99})
    choice = choose_window(frame, [1, 2, 3], [1, 2], score)
    assert choice.label == "last_1"
    assert "(0.000)" in choice.reason


def test_a_window_that_cannot_be_trained_on_is_skipped() -> None:
    frame = frame_of({1: 100, 2: 100, 3: 100, 4: 100})
    score = FakeScore({(3,): ValueError("a single class"), (2, 3): 0.7, (1, 2, 3): 0.5})
    choice = choose_window(frame, [1, 2, 3, 4], [1, 2, 4], score)
    assert choice.label == "last_2"
    assert choice.scores == {"last_2": 0.7, "last_3": 0.5}
    assert choice.reason.endswith("(last_2 0.700, last_3 0.500)")


def test_no_window_that_can_be_trained_on_raises_with_the_last_error() -> None:
    frame = frame_of({1: 100, 2: 100, 3: 100})
    last = ValueError("only class 1 in window (1, 2)")
    score = FakeScore({(2,): ValueError("only class 0"), (1, 2): last})
    with pytest.raises(ValueError) as info:
        choose_window(frame, [1, 2, 3], [1, 2], score)
    assert str(info.value) == "no candidate window can be trained on: only class 1 in window (1, 2)"
    assert info.value.__cause__ is last


def test_no_candidate_at_all_raises() -> None:
    frame = frame_of({1: 100, 2: 100})
    with pytest.raises(ValueError) as info:
        choose_window(frame, [1, 2], [], FakeScore({}))
    assert str(info.value) == "no candidate window can be trained on: None"
    assert info.value.__cause__ is None


def test_two_batches_are_enough_one_is_not() -> None:
    frame = frame_of({1: 100, 2: 100})
    choice = choose_window(frame, [1, 2], [1, 2, 4], FakeScore({(1,): 0.6}))
    assert (choice.label, choice.batch_ids, choice.refit_batch_ids) == ("last_1", (1,), (2,))
    assert choice.holdout_batch_id == 2
    with pytest.raises(ValueError) as info:
        choose_window(frame, [2], [1], FakeScore({}))
    assert str(info.value) == "choosing a window needs the held-out batch and at least one before"


def test_another_batch_column() -> None:
    frame = frame_of({1: 100, 2: 100, 3: 100}, batch_col="batch")
    score = FakeScore({(2,): 0.8, (1, 2): 0.6}, batch_col="batch")
    choice = choose_window(frame, [1, 2, 3], [1, 2], score, batch_col="batch")
    assert choice.label == "last_1"


def test_to_dict() -> None:
    choice = choose_window(frame_of({1: 4, 2: 4}), [1, 2], [1], FakeScore({(1,): 0.75}))
    assert choice.to_dict() == {
        "label": "last_1",
        "batch_ids": (1,),
        "refit_batch_ids": (2,),
        "holdout_batch_id": 2,
        "reason": choice.reason,
        "scores": {"last_1": 0.75},
    }
