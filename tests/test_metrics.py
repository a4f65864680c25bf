"""Metrics against hand-computed values; average, BWT and forgetting on hand-written matrices."""

from __future__ import annotations

import pytest

from kemdy_adapters.metrics import classification_scores, confusion, matrix_summary, task_forgetting


def test_scores_by_hand():
    references = [0, 0, 0, 0, 1, 1, 2, 2]
    predictions = [0, 0, 0, 1, 1, 0, 2, 1]
    scores = classification_scores(predictions, references)
    # class 0: precision 3/4, recall 3/4 -> F1 .75; class 1: P 1/3 R 1/2 -> F1 .4; class 2: P 1 R 1/2 -> F1 2/3
    assert scores["accuracy"] == pytest.approx(5 / 8)
    assert scores["micro_f1"] == pytest.approx(5 / 8)
    assert scores["macro_f1"] == pytest.approx((0.75 + 0.4 + 2 / 3) / 3)
    assert scores["weighted_f1"] == pytest.approx((4 * 0.75 + 2 * 0.4 + 2 * 2 / 3) / 8)
    assert scores["uar"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)


def test_always_neutral_on_a_neutral_heavy_set():
    """Weighted F1 hides the failure that macro F1 and UAR show (KEMDy20's problem)."""
    references = [4] * 87 + [3] * 13
    scores = classification_scores([4] * 100, references)
    assert scores["accuracy"] == pytest.approx(0.87)
    assert scores["weighted_f1"] == pytest.approx(0.87 * (2 * 0.87 / 1.87))
    assert scores["macro_f1"] == pytest.approx((2 * 0.87 / 1.87) / 2)
    assert scores["uar"] == pytest.approx(0.5)


def test_macro_f1_and_uar_average_over_the_reference_classes():
    """A class that occurs only among the predictions does not enter the average (it stays an error)."""
    references = [0, 0, 1, 1]
    predictions = [0, 2, 1, 1]  # class 2 is predicted but absent from the references
    scores = classification_scores(predictions, references)
    # class 0: P 1, R 1/2 -> F1 2/3; class 1: P 1, R 1 -> F1 1; over the reference classes {0, 1} only
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert scores["uar"] == pytest.approx((1 / 2 + 1) / 2)
    routed_away = classification_scores([-1, 0, 1, 1], references)  # -1: routed to a task with other labels
    assert routed_away["macro_f1"] == pytest.approx((2 / 3 + 1) / 2) and routed_away["accuracy"] == 0.75


def test_matrix_summary_of_order_free_strategies():
    matrix = [[0.6, None], [None, 0.4]]  # task_a: each task alone
    assert matrix_summary(matrix, sequential=False) == {"average": pytest.approx(0.5), "bwt": None,
                                                         "forgetting": None}


def test_confusion_rows_are_references():
    assert confusion([0, 1, 1], [0, 0, 1], 3) == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_matrix_summary_by_hand():
    matrix = [
        [0.80, 0.10, 0.05],
        [0.60, 0.70, 0.20],
        [0.50, 0.65, 0.90],
    ]
    summary = matrix_summary(matrix)
    assert summary["average"] == pytest.approx((0.50 + 0.65 + 0.90) / 3)
    assert summary["forgetting"] == pytest.approx(((0.80 - 0.50) + (0.70 - 0.65)) / 2)
    assert summary["bwt"] == pytest.approx(-summary["forgetting"])
    # Each task learned before the last, on its own: the first lost 0.30, the second 0.05.
    assert task_forgetting(matrix) == [pytest.approx(0.30), pytest.approx(0.05)]
    assert task_forgetting([[0.4, None], [0.6, 0.9]]) == [pytest.approx(-0.2)]  # backward transfer
    assert task_forgetting([[None, None], [0.6, 0.9]]) == [None] and task_forgetting([[0.9]]) == []


def test_matrix_summary_with_unscored_cells():
    # A per-task head cannot score a task not learned yet; task_a has only its diagonal.
    assert matrix_summary([[0.7, None], [0.7, 0.9]]) == {"average": pytest.approx(0.8), "bwt": 0.0, "forgetting": 0.0}
    assert matrix_summary([[0.7, None], [None, 0.9]]) == {"average": 0.9, "bwt": None, "forgetting": None}


def test_bad_inputs():
    with pytest.raises(ValueError, match="square"):
        matrix_summary([[1.0, 2.0]])
    with pytest.raises(ValueError, match="must be equal 1-D"):
        classification_scores([0, 1], [0])


def test_local_evaluate_module_matches_and_works_offline():
    from kemdy_adapters.evaluate_metrics import load_metric

    metric = load_metric()
    references, predictions = [0, 0, 0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 0, 2, 1]
    metric.add_batch(predictions=predictions[:3], references=references[:3])
    metric.add_batch(predictions=predictions[3:], references=references[3:])
    assert metric.compute() == pytest.approx(classification_scores(predictions, references))
