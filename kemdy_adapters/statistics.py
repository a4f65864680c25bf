"""Uncertainty over cells (folds x orders x seeds): sample standard deviation, a 95 % confidence interval of the
mean (Student's t), and paired comparisons between strategies on the same cells (mean difference with its 95 %
interval and a two-sided Wilcoxon signed-rank p-value).

The cells of one fold (its task orders and training seeds) are scored on the same test sessions, so they are
not independent samples: given `units` (each value's fold), the values of a unit are averaged first and the
spread, interval and test are taken over the units. Training seeds then make each fold's score less noisy
instead of narrowing the interval as if they were new test sessions."""

from __future__ import annotations

import math

import numpy as np


def summarize(values, units=None) -> dict | None:
    """`{"mean", "std", "n", "units", "ci95"}` of the defined values (n: how many; std: sample standard deviation,
    ddof 1; ci95: the t-interval of the mean, None for a single unit); None when there is no value.

    `units`: one label per value (its fold). The values of a unit are averaged first, and mean, std and interval
    are those of the unit means (`units`: how many there are); without it every value is its own unit."""
    grouped = _by_unit(values, units)
    if not grouped:
        return None
    means = [float(np.mean(group)) for group in grouped.values()]
    k = len(means)
    mean = float(np.mean(means))
    std = float(np.std(means, ddof=1)) if k > 1 else 0.0
    return {"mean": mean, "std": std, "n": sum(len(group) for group in grouped.values()), "units": k,
            "ci95": _interval(mean, std, k)}


def _by_unit(values, units=None) -> dict[object, list[float]]:
    """The defined values grouped by their unit (each value its own unit when `units` is None)."""
    values = list(values)
    labels = list(range(len(values))) if units is None else list(units)
    if len(labels) != len(values):
        raise ValueError(f"summarize: {len(values)} values but {len(labels)} units")
    grouped: dict = {}
    for value, label in zip(values, labels):
        if value is not None and not math.isnan(value):
            grouped.setdefault(label, []).append(float(value))
    return grouped


def _interval(mean: float, std: float, n: int) -> list[float] | None:
    if n < 2:
        return None
    from scipy.stats import t

    half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return [mean - half, mean + half]


def paired(first: list[float], second: list[float], units=None) -> dict | None:
    """`first - second` over matched cells: mean difference, its 95 % t-interval, the Wilcoxon signed-rank
    p-value (two-sided; 1.0 when every difference is 0) and the number of pairs. `units` (each pair's fold):
    the differences of a unit are averaged first and interval and test are over the units (`units`: how many;
    with 5 units no two-sided p-value is below 0.0625)."""
    labels = list(range(len(first))) if units is None else list(units)
    kept = [(a - b, label) for a, b, label in zip(first, second, labels) if a is not None and b is not None]
    if not kept:
        return None
    summary = summarize([difference for difference, _ in kept], [label for _, label in kept])
    grouped = _by_unit([difference for difference, _ in kept], [label for _, label in kept])
    differences = np.array([np.mean(group) for group in grouped.values()], dtype=float)
    if np.allclose(differences, 0.0):
        p_value = 1.0
    elif len(differences) < 2:
        p_value = None
    else:
        from scipy.stats import wilcoxon

        p_value = float(wilcoxon(differences, zero_method="wilcox", alternative="two-sided").pvalue)
    return {"mean_difference": summary["mean"], "ci95": summary["ci95"], "p_wilcoxon": p_value,
            "n": len(kept), "units": len(differences)}
