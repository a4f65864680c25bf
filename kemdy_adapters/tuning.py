"""One tuning rule for every strategy: the same budget of trials from a shared grid, chosen by the same criterion on
validation data only.

The rule, in full:
1. The grid (`--tuning_grid`) maps training or model settings (not the encoders) to the values to try. A key
   applies to the strategies that use it: `ewc_lambda` (and `ewc_gamma`, `fisher_samples`) to the consolidating
   strategies, `lwf_alpha` and `lwf_temperature` to the distilling ones, every other key (e.g. `learning_rate`,
   `text_pooling`) to all.
2. Budget: every strategy gets the same number of trials, `--tuning_trials` (default: the smallest grid among
   the strategies run). A strategy whose grid is larger gets a seeded random sample of that many grid points
   (random search), a smaller grid all of its points.
3. Trials run on the tuning fold (the first fold run), the first seed, and the tuning orders (default: every
   order; order-free strategies run once).
4. Criterion: the mean over tuning cells of the mean over tasks of validation macro F1 after the whole sequence
   (the last row of R on the validation sessions; for order-free strategies every task's own score). The test
   sessions are never looked at. Ties go to the earlier trial.
5. The chosen setting is used for every fold, order and seed; the tuning fold's cells reuse the chosen trial's
   runs (the same arguments give the same run).
Selection on the validation sessions of *all* tasks of the sequence is what continual-learning papers commonly do;
a real receiver of shared adapters could not do it (it has no validation data of earlier tasks), so the report
labels the scores as tuned that way.
"""

from __future__ import annotations

import itertools
import json

import numpy as np

from .strategies import Strategy

SCOPED_KEYS = {"ewc_lambda": "consolidates", "ewc_gamma": "consolidates", "fisher_samples": "consolidates",
               "lwf_alpha": "distills", "lwf_temperature": "distills"}
CRITERION_METRIC = "macro_f1"
RULE = ("same number of trials per strategy from one shared grid (random sample where a strategy's grid is larger), "
        "chosen by the mean validation macro F1 over every task after the whole sequence, on the tuning fold; "
        "selection sees the validation sessions of all tasks of the sequence (a real receiver of shared adapters "
        "could not), never the test sessions")


def parse_grid(grid) -> dict[str, list]:
    grid = json.loads(grid) if isinstance(grid, str) else dict(grid or {})
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"tuning_grid[{key!r}] must be a non-empty list of values, got {values!r}")
    return grid


def applies(key: str, strategy: Strategy) -> bool:
    scope = SCOPED_KEYS.get(key)
    return scope is None or bool(getattr(strategy, scope))


def strategy_grid(grid: dict[str, list], strategy: Strategy) -> list[dict]:
    """Every point of the grid's keys that apply to `strategy` ([{}] when none does)."""
    keys = [key for key in grid if applies(key, strategy)]
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[key] for key in keys))]


def trials(grid: dict[str, list], strategy: Strategy, budget: int, seed: int) -> list[dict]:
    """The strategy's `budget` trials: the whole grid if it has at most that many points, else a seeded sample."""
    points = strategy_grid(grid, strategy)
    if len(points) <= budget:
        return points
    chosen = np.random.default_rng(seed).choice(len(points), size=budget, replace=False)
    return [points[i] for i in sorted(chosen.tolist())]


def criterion(result: dict, strategy: Strategy) -> float | None:
    """Mean over tasks of validation macro F1 after the whole sequence (order-free strategies: the diagonal)."""
    matrix = result["validation_matrix"][CRITERION_METRIC]
    values = [matrix[j][j] for j in range(len(matrix))] if not strategy.carries_model else matrix[-1]
    values = [value for value in values if value is not None]
    return float(np.mean(values)) if values else None
