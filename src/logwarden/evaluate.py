"""Evaluation: metrics that measure logwarden against ground truth.

For now this holds the parser metric, **grouping accuracy** (GA), the standard measure of
log parsers on the loghub benchmark (Zhu et al., "Tools and Benchmarks for Automated Log
Parsing", ICSE-SEIP 2019; ``logpai/logparser``'s ``evaluator.get_accuracy``).

GA looks only at how lines are grouped, never at the template text or the ids themselves:
a line counts as correct when the predicted group it was put in holds exactly the lines of
its true group, no more and no fewer. Splitting a true group in two, or merging two true
groups into one, makes every line of the groups involved wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

__all__ = ["grouping_accuracy"]

_MIXED = object()  # marks a predicted group whose lines come from several true groups


def grouping_accuracy(truth: Sequence[str], predicted: Sequence[Hashable]) -> float:
    """Fraction of lines whose predicted group equals their true group, as a set of lines.

    ``truth[i]`` and ``predicted[i]`` are the true and the predicted group label of line
    ``i``. Labels are only compared for equality within each sequence, so renaming the
    predicted labels (template ids) never changes the result.

    The result is 1.0 exactly when both sequences partition the lines the same way. For
    empty input it is 1.0: two partitions of no lines are equal, which keeps that "iff"
    true (loghub's evaluator would divide by zero there).

    Raises ValueError when the sequences differ in length.
    """
    n = len(truth)
    if len(predicted) != n:
        raise ValueError(
            f"truth and predicted differ in length: {n} lines vs {len(predicted)} labels"
        )
    if n == 0:
        return 1.0
    true_sizes = Counter(truth)
    # One pass over the predicted groups: their size, and the true label all their lines
    # share (_MIXED once two of their lines disagree).
    true_of: dict[Hashable, object] = {}
    pred_sizes: Counter[Hashable] = Counter()
    for t, p in zip(truth, predicted, strict=True):
        pred_sizes[p] += 1
        seen = true_of.setdefault(p, t)
        if seen is not _MIXED and seen != t:
            true_of[p] = _MIXED
    correct = 0
    for p, t in true_of.items():
        # A predicted group inside one true group and as large as it is that true group.
        if t is not _MIXED and pred_sizes[p] == true_sizes[t]:
            correct += pred_sizes[p]
    return correct / n
