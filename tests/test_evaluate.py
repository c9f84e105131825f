"""Grouping accuracy: hand-worked cases and properties of the definition."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logwarden.evaluate import grouping_accuracy


def partition(labels: Sequence[Hashable]) -> set[frozenset[int]]:
    groups: dict[Hashable, set[int]] = defaultdict(set)
    for i, label in enumerate(labels):
        groups[label].add(i)
    return {frozenset(g) for g in groups.values()}


def naive_ga(truth: Sequence[str], predicted: Sequence[Hashable]) -> float:
    """The definition read literally: lines of predicted groups that are also true groups."""
    true_groups = partition(truth)
    correct = sum(len(g) for g in partition(predicted) if g in true_groups)
    return correct / len(truth)


# --- hand-worked cases ----------------------------------------------------------------------


def test_perfect_grouping_with_other_label_names() -> None:
    truth = ["E1", "E1", "E2", "E3", "E3", "E3"]
    predicted = [7, 7, 3, 1, 1, 1]
    assert grouping_accuracy(truth, predicted) == 1.0


def test_split_group_makes_all_its_lines_wrong() -> None:
    # E1 (4 lines) is split 2+2: those 4 lines are wrong, E2's 2 lines are right -> 2/6.
    truth = ["E1", "E1", "E1", "E1", "E2", "E2"]
    predicted = [1, 1, 2, 2, 3, 3]
    assert grouping_accuracy(truth, predicted) == pytest.approx(2 / 6)


def test_merged_groups_make_all_their_lines_wrong() -> None:
    # E1 (2) and E2 (3) predicted as one group: 5 wrong; the singleton E3 is right -> 1/6.
    truth = ["E1", "E1", "E2", "E2", "E2", "E3"]
    predicted = [1, 1, 1, 1, 1, 2]
    assert grouping_accuracy(truth, predicted) == pytest.approx(1 / 6)


def test_all_singletons_only_count_true_singletons() -> None:
    # Every line alone: right only for lines whose true group is a singleton (E2, E3) -> 2/4.
    truth = ["E1", "E1", "E2", "E3"]
    predicted = [1, 2, 3, 4]
    assert grouping_accuracy(truth, predicted) == 0.5


def test_everything_in_one_group() -> None:
    assert grouping_accuracy(["a", "a", "b"], ["x", "x", "x"]) == 0.0
    assert grouping_accuracy(["a", "a", "a"], ["x", "x", "x"]) == 1.0


def test_same_sizes_but_mixed_membership_is_wrong() -> None:
    # Both predicted groups have the size of a true group, but each mixes E1 and E2.
    assert grouping_accuracy(["E1", "E1", "E2", "E2"], [1, 2, 1, 2]) == 0.0


def test_predicted_group_strictly_inside_a_true_group_is_wrong() -> None:
    # {0, 1} lies inside E1 = {0, 1, 2} but is not all of it; {2} is not E1 either.
    assert grouping_accuracy(["E1", "E1", "E1"], [1, 1, 2]) == 0.0


def test_labels_are_compared_only_within_each_sequence() -> None:
    # The same strings used crosswise: still the same partition.
    assert grouping_accuracy(["1", "1", "2"], ["2", "2", "1"]) == 1.0


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        grouping_accuracy(["E1", "E2"], [1])


def test_empty_input_is_perfect() -> None:
    assert grouping_accuracy([], []) == 1.0


# --- properties -------------------------------------------------------------------------------

labels = st.lists(st.integers(0, 5), min_size=1, max_size=40)


@st.composite
def truth_and_prediction(draw: st.DrawFn) -> tuple[list[str], list[int]]:
    truth = [f"E{t}" for t in draw(labels)]
    predicted = draw(st.lists(st.integers(0, 5), min_size=len(truth), max_size=len(truth)))
    return truth, predicted


@given(truth_and_prediction())
def test_matches_the_definition(case: tuple[list[str], list[int]]) -> None:
    truth, predicted = case
    assert grouping_accuracy(truth, predicted) == pytest.approx(naive_ga(truth, predicted))


@given(truth_and_prediction(), st.permutations(range(6)), st.sampled_from(["s", "t", "i"]))
def test_invariant_to_renaming_predicted_labels(
    case: tuple[list[str], list[int]], perm: list[int], style: str
) -> None:
    truth, predicted = case
    rename = {
        "s": lambda p: f"tpl-{perm[p]}",
        "t": lambda p: (perm[p], "x"),
        "i": lambda p: 1000 + perm[p],
    }[style]
    renamed = [rename(p) for p in predicted]
    assert grouping_accuracy(truth, renamed) == grouping_accuracy(truth, predicted)


@given(truth_and_prediction())
def test_perfect_iff_partitions_equal(case: tuple[list[str], list[int]]) -> None:
    truth, predicted = case
    same = partition(truth) == partition(predicted)
    assert (grouping_accuracy(truth, predicted) == 1.0) == same


@given(labels)
def test_any_relabelling_of_the_truth_is_perfect(raw: list[int]) -> None:
    truth = [f"E{t}" for t in raw]
    assert grouping_accuracy(truth, [t * 31 + 7 for t in raw]) == 1.0


@given(truth_and_prediction())
def test_symmetric_and_counts_whole_lines(case: tuple[list[str], list[int]]) -> None:
    truth, predicted = case
    ga = grouping_accuracy(truth, predicted)
    # Correct lines are those in blocks common to both partitions: symmetric by definition.
    assert ga == grouping_accuracy([str(p) for p in predicted], truth)
    correct = ga * len(truth)
    assert 0.0 <= ga <= 1.0
    assert abs(correct - round(correct)) < 1e-9
