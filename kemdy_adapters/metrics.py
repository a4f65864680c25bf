"""Scores of one evaluation (accuracy, weighted/macro F1, UAR, confusion) and of a continual run's score matrix.

The score matrix R has one row per training step and one column per task: `R[i][j]` is the score on task j
after training task i (`None` where a task cannot be scored yet, e.g. a per-task head not learned yet). From it,
following Avalanche's definitions (ContinualAI/avalanche, `avalanche.evaluation.metrics`):
- `average`: the mean of the last row (every task, after the whole sequence);
- `forgetting` of task j: its score right after it was learned minus its score after the last task, averaged
  over every task but the last;
- `bwt` (backward transfer): the negative of forgetting, i.e. final minus just-learned, averaged the same way.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

METRICS = ("weighted_f1", "macro_f1", "uar", "accuracy")
# Valence and arousal (1-5, the mean of the raters), for tasks with regression outputs: the concordance
# correlation coefficient (CCC, the dimensional challenges' score), Pearson r and the RMSE, per dimension.
DIMENSIONS = ("valence", "arousal")
DIMENSION_SCORES = ("ccc", "pearson", "rmse")
DIMENSION_METRICS = tuple(f"{dimension}_{score}" for dimension in DIMENSIONS for score in DIMENSION_SCORES)


def classification_scores(predictions, references) -> dict[str, float]:
    """Scores of class predictions against references (integer class ids).

    `micro_f1` equals `accuracy` for single-label classification; it is kept under its own name because the
    reference method selected its epochs by "micro F1". Macro F1 and UAR (unweighted average recall, the mean
    of per-class recalls) both average over the classes present in the references of this test set, so the
    class set does not change with the predictions; a prediction outside it (e.g. -1 for an utterance routed to
    a task with other labels) still counts as an error.
    """
    predictions, references = np.asarray(predictions), np.asarray(references)
    if predictions.shape != references.shape or predictions.ndim != 1:
        raise ValueError(f"predictions {predictions.shape} and references {references.shape} must be equal 1-D")
    if len(references) == 0:
        raise ValueError("no references to score")
    present = np.unique(references)
    return {
        "accuracy": float(accuracy_score(references, predictions)),
        "micro_f1": float(f1_score(references, predictions, average="micro")),
        "weighted_f1": float(f1_score(references, predictions, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(references, predictions, labels=present, average="macro", zero_division=0)),
        "uar": float(recall_score(references, predictions, labels=present, average="macro", zero_division=0)),
    }


def concordance(predictions, references) -> float:
    """Lin's concordance correlation coefficient, 2 cov / (var_p + var_r + (mean_p - mean_r)^2), with population
    (ddof 0) moments; 0.0 when both are constant (no agreement beyond the mean can be shown)."""
    predictions, references = np.asarray(predictions, dtype=float), np.asarray(references, dtype=float)
    mean_p, mean_r = predictions.mean(), references.mean()
    constant = np.ptp(predictions) == 0 or np.ptp(references) == 0  # exactly 0, not a rounding residue
    covariance = 0.0 if constant else float(np.mean((predictions - mean_p) * (references - mean_r)))
    denominator = predictions.var() + references.var() + (mean_p - mean_r) ** 2
    return float(2 * covariance / denominator) if denominator > 0 else 0.0


def dimension_scores(predictions, references, dimensions=DIMENSIONS) -> dict[str, float]:
    """`<dimension>_ccc`, `_pearson` and `_rmse` of (N, D) predictions against (N, D) references. Pearson r is
    0.0 where either side is constant (a constant predictor correlates with nothing)."""
    predictions, references = np.asarray(predictions, dtype=float), np.asarray(references, dtype=float)
    if predictions.shape != references.shape or predictions.ndim != 2 or predictions.shape[1] != len(dimensions):
        raise ValueError(f"predictions {predictions.shape} and references {references.shape} must both be "
                         f"(N, {len(dimensions)})")
    if len(references) == 0:
        raise ValueError("no references to score")
    scores = {}
    for k, dimension in enumerate(dimensions):
        p, r = predictions[:, k], references[:, k]
        pearson = float(np.corrcoef(p, r)[0, 1]) if np.ptp(p) > 0 and np.ptp(r) > 0 else 0.0
        scores |= {f"{dimension}_ccc": concordance(p, r), f"{dimension}_pearson": pearson,
                   f"{dimension}_rmse": float(np.sqrt(np.mean((p - r) ** 2)))}
    return scores


def confusion(predictions, references, num_labels: int) -> list[list[int]]:
    """Confusion counts, rows = reference class, columns = predicted class."""
    return confusion_matrix(references, predictions, labels=list(range(num_labels))).tolist()


def _defined(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def matrix_summary(matrix: list[list[float | None]], sequential: bool = True) -> dict[str, float | None]:
    """Average after the last task, backward transfer and forgetting of a square score matrix.

    `sequential=False` (each task trained alone, or all jointly): the average is over the diagonal, i.e. every
    task's own score, and there is no sequence to forget along (BWT and forgetting are None)."""
    size = len(matrix)
    if size == 0 or any(len(row) != size for row in matrix):
        raise ValueError(f"the score matrix must be square, got {[len(row) for row in matrix]}")
    if not sequential:
        own = [matrix[j][j] for j in range(size) if _defined(matrix[j][j])]
        return {"average": float(np.mean(own)) if own else None, "bwt": None, "forgetting": None}
    last = [value for value in matrix[-1] if _defined(value)]
    drops = [drop for drop in task_forgetting(matrix) if drop is not None]
    forgetting = float(np.mean(drops)) if drops else None
    return {
        "average": float(np.mean(last)) if last else None,
        "bwt": 0.0 - forgetting if forgetting is not None else None,
        "forgetting": forgetting,
    }


def task_forgetting(matrix: list[list[float | None]]) -> list[float | None]:
    """Forgetting of each task learned before the last: its score right after it was learned minus its score
    after the last task (None where either is undefined)."""
    return [matrix[j][j] - matrix[-1][j] if _defined(matrix[j][j]) and _defined(matrix[-1][j]) else None
            for j in range(len(matrix) - 1)]


def split_predictions(predictions):
    """`Trainer.predict`'s predictions as (logits, dimensions or None): a task with regression outputs gives the
    tuple (logits, dimensions), any other task the logits alone."""
    if isinstance(predictions, (tuple, list)):
        return predictions[0], (predictions[1] if len(predictions) > 1 else None)
    return predictions, None


def compute_metrics(eval_prediction) -> dict[str, float]:
    """A `Trainer` `compute_metrics`: class scores from logits (the kept epoch is chosen on these alone)."""
    logits, _ = split_predictions(eval_prediction.predictions)
    return classification_scores(np.argmax(logits, axis=-1), eval_prediction.label_ids)
