"""Session folds equal the reference protocol's (hand-checked against an independent numpy computation)."""

from __future__ import annotations

import pytest

from kemdy_adapters.folds import session_fold, split_by_sessions

# (validation, test) session numbers per fold, as the reference drew them.
KEMDY19 = [
    ([6, 11], [8, 10, 14, 20]),
    ([10, 14], [9, 11, 15, 17]),
    ([7, 14], [2, 5, 6, 19]),
    ([7, 12], [1, 4, 13, 16]),
    ([15, 16], [3, 7, 12, 18]),
]
KEMDY20 = [
    ([8, 33], [10, 15, 16, 17, 19, 24, 30, 31]),
    ([10, 28], [2, 8, 20, 25, 27, 32, 38, 39]),
    ([4, 38], [1, 5, 9, 11, 22, 29, 34, 35]),
    ([25, 36], [6, 14, 18, 21, 26, 33, 37, 40]),
    ([11, 32], [3, 4, 7, 12, 13, 23, 28, 36]),
]


@pytest.mark.parametrize(("count", "table"), [(20, KEMDY19), (40, KEMDY20)])
def test_reference_sessions_per_fold(count, table):
    sessions = [f"Sess{i:02d}" for i in range(count, 0, -1)]  # order of the input must not matter
    for fold, (validation, test) in enumerate(table):
        split = session_fold(sessions + sessions[:3], fold)
        assert split.validation == [f"Sess{i:02d}" for i in validation]
        assert split.test == [f"Sess{i:02d}" for i in test]
        assert sorted(split.train + split.validation + split.test) == sorted(set(sessions))
        assert len(split.train) == count - count // 5 - 2


def test_every_session_is_tested_once():
    sessions = [f"Sess{i:02d}" for i in range(1, 41)]
    tested = [s for fold in range(5) for s in session_fold(sessions, fold).test]
    assert sorted(tested) == sessions


def test_bad_arguments():
    with pytest.raises(ValueError, match="fold must be in 0..4"):
        session_fold(["a", "b", "c", "d", "e"], 5)
    with pytest.raises(ValueError, match="at least 5 sessions"):
        session_fold(["a", "b"], 0)


def test_split_a_dataset_by_sessions():
    import datasets

    rows = {"session": [f"Sess{i % 10 + 1:02d}" for i in range(50)], "x": list(range(50))}
    splits = split_by_sessions(datasets.Dataset.from_dict(rows), 0)
    fold = session_fold(rows["session"], 0)
    assert set(splits["test"]["session"]) == set(fold.test)
    assert set(splits["validation"]["session"]) == set(fold.validation)
    assert sum(len(split) for split in splits.values()) == 50
