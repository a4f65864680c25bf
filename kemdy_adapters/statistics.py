"""Uncertainty over cells (folds x orders x seeds): sample standard deviation, a 95 % confidence interval of the
mean (Student's t), and paired comparisons between strategies on the same cells (mean difference with its 95 %
interval and a two-sided Wilcoxon signed-rank p-value)."""

from __future__ import annotations

import math

import numpy as np


def summarize(values) -> dict | None:
    """`{"mean", "std", "n", "ci95"}` of the defined values (std: sample standard deviation, ddof 1; ci95: the
    t-interval of the mean, None for a single value); None when there is no value."""
    values = [float(value) for value in values if value is not None and not math.isnan(value)]
    if not values:
        return None
    n = len(values)
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n, "ci95": _interval(mean, std, n)}


def _interval(mean: float, std: float, n: int) -> list[float] | None:
    if n < 2:
        return None
    from scipy.stats import t

    half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return [mean - half, mean + half]


def paired(first: list[float], second: list[float]) -> dict | None:
    """`first - second` over matched cells: mean difference, its 95 % t-interval, the Wilcoxon signed-rank
    p-value (two-sided; 1.0 when every difference is 0) and the number of pairs."""
    pairs = [(a, b) for a, b in zip(first, second) if a is not None and b is not None]
    if not pairs:
        return None
    differences = np.array([a - b for a, b in pairs], dtype=float)
    summary = summarize(differences)
    if np.allclose(differences, 0.0):
        p_value = 1.0
    elif len(differences) < 2:
        p_value = None
    else:
        from scipy.stats import wilcoxon

        p_value = float(wilcoxon(differences, zero_method="wilcox", alternative="two-sided").pvalue)
    return {"mean_difference": summary["mean"], "ci95": summary["ci95"], "p_wilcoxon": p_value,
            "n": len(differences)}
