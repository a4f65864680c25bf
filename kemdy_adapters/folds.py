"""Session-wise cross-validation folds, drawn exactly as the reference method drew them.

`sklearn.model_selection.KFold(n_splits=5, shuffle=True, random_state=12)` over the sorted session ids; in
fold k (0-based), two validation sessions are drawn from the training sessions with
`numpy.random.RandomState(12 + k).choice(train_sessions, 2, replace=False)` (kemdy-format.md, section 8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold

REFERENCE_SEED = 12


@dataclass(frozen=True)
class SessionFold:
    """The sessions of one fold; every session is in exactly one of the three lists."""

    fold: int
    train: list[str]
    validation: list[str]
    test: list[str]


def session_fold(
    sessions, fold: int, n_splits: int = 5, seed: int = REFERENCE_SEED, n_validation: int = 2
) -> SessionFold:
    """Splits session ids into train / validation / test sessions for fold `fold` (0-based).

    Args:
        sessions: Session ids in any order, duplicates allowed (e.g. a dataset's `session` column).
        fold: Which fold, `0 <= fold < n_splits`.
        n_splits: Number of folds (5 in the reference protocol).
        seed: KFold's random_state; fold k draws its validation sessions with `RandomState(seed + k)`.
        n_validation: Validation sessions drawn from the training sessions (2 in the reference protocol).

    Returns:
        A `SessionFold` whose lists keep the sorted session order.
    """
    unique = sorted(set(sessions))
    if not 0 <= fold < n_splits:
        raise ValueError(f"fold must be in 0..{n_splits - 1}, got {fold}")
    if len(unique) < n_splits:
        raise ValueError(f"{n_splits}-fold cross-validation needs at least {n_splits} sessions, got {len(unique)}")
    train_index, test_index = list(KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(unique))[fold]
    train = [unique[i] for i in train_index]
    if len(train) <= n_validation:
        raise ValueError(f"fold {fold} has {len(train)} training sessions, too few to hold out {n_validation}")
    validation = set(np.random.RandomState(seed + fold).choice(train, n_validation, replace=False).tolist())
    return SessionFold(
        fold=fold,
        train=[session for session in train if session not in validation],
        validation=[session for session in train if session in validation],
        test=[unique[i] for i in test_index],
    )


def session_rows(sessions, fold: int, **kwargs) -> dict[str, list[int]]:
    """The positions in `sessions` (one session id per row) of `fold`'s train, validation and test rows."""
    sessions = list(sessions)
    chosen = session_fold(sessions, fold, **kwargs)
    members = {"train": set(chosen.train), "validation": set(chosen.validation), "test": set(chosen.test)}
    return {name: [i for i, session in enumerate(sessions) if session in group] for name, group in members.items()}


def split_by_sessions(dataset, fold: int, **kwargs):
    """Returns a `datasets.DatasetDict` with `train`, `validation` and `test` rows of `fold`'s sessions."""
    import datasets

    rows = session_rows(dataset["session"], fold, **kwargs)
    return datasets.DatasetDict({name: dataset.select(indices) for name, indices in rows.items()})
