"""Uncertainty: sample standard deviation, confidence intervals, paired comparisons, repeated seeds."""

from __future__ import annotations

import json
import math

import pytest

from kemdy_adapters.benchmark import Benchmark, parse_benchmark_arguments
from kemdy_adapters.report import format_difference, format_score, interval_reading
from kemdy_adapters.statistics import paired, summarize


def test_summarize_by_hand():
    summary = summarize([0.5, 0.7, None, 0.9])
    assert summary["n"] == 3 and summary["mean"] == pytest.approx(0.7)
    assert summary["std"] == pytest.approx(0.2)  # sample standard deviation (ddof 1)
    half = 4.302652729911275 * 0.2 / math.sqrt(3)  # t(0.975, 2 dof)
    assert summary["ci95"] == pytest.approx([0.7 - half, 0.7 + half])
    assert summarize([0.4]) == {"mean": 0.4, "std": 0.0, "n": 1, "units": 1, "ci95": None}
    assert summarize([None]) is None
    assert format_score(summary) == f"0.700 ± 0.200 [{0.7 - half:.2f}, {0.7 + half:.2f}]"


def test_paired_differences_and_wilcoxon():
    first = [0.60, 0.55, 0.70, 0.65, 0.58, 0.62]
    second = [0.40, 0.42, 0.45, 0.50, 0.41, 0.44]
    result = paired(first, second)
    differences = [a - b for a, b in zip(first, second)]
    assert result["n"] == 6 and result["mean_difference"] == pytest.approx(sum(differences) / 6)
    assert result["p_wilcoxon"] == pytest.approx(0.03125)  # all 6 positive: 2 / 2**6, exact two-sided
    assert result["ci95"][0] > 0
    assert paired([0.5, 0.5], [0.5, 0.5])["p_wilcoxon"] == 1.0
    assert format_difference(result).endswith("p = 0.031, 6 pairs")


def test_forgetting_of_one_task_is_read_against_its_interval():
    assert interval_reading(summarize([0.30, 0.35, 0.40])).endswith(": forgotten beyond the interval")
    assert interval_reading(summarize([-0.30, -0.35, -0.40])).endswith(": it gained beyond the interval")
    assert interval_reading(summarize([0.30, -0.20])).endswith(": the interval includes 0")
    assert interval_reading(summarize([0.30])) == "one fold, no interval"
    assert interval_reading(summarize([0.30, 0.32], units=[0, 0])) == "one fold, no interval"


def test_cells_of_one_fold_are_averaged_before_the_interval():
    # two orders (or seeds) per fold share the fold's test sessions: the interval is over the 3 fold means
    values, folds = [0.50, 0.70, 0.60, 0.64, 0.80, 0.90], [0, 0, 1, 1, 2, 2]
    grouped = summarize(values, folds)
    means = [0.60, 0.62, 0.85]
    assert grouped["n"] == 6 and grouped["units"] == 3
    assert grouped["mean"] == pytest.approx(sum(means) / 3)
    spread = math.sqrt(sum((m - sum(means) / 3) ** 2 for m in means) / 2)
    assert grouped["std"] == pytest.approx(spread)
    half = 4.302652729911275 * spread / math.sqrt(3)  # t(0.975, 2 dof): 3 folds, not 6 cells
    assert grouped["ci95"] == pytest.approx([sum(means) / 3 - half, sum(means) / 3 + half])
    assert grouped["ci95"][1] - grouped["ci95"][0] > summarize(values)["ci95"][1] - summarize(values)["ci95"][0]
    assert summarize([0.5, None, 0.7], [0, 0, 1])["units"] == 2  # a missing value leaves its fold's others
    with pytest.raises(ValueError, match="3 values but 2 units"):
        summarize([0.1, 0.2, 0.3], [0, 1])
    # paired: the six differences are all positive, but only the 3 fold means are independent
    first, second = [0.60, 0.55, 0.70, 0.65, 0.58, 0.62], [0.40, 0.42, 0.45, 0.50, 0.41, 0.44]
    result = paired(first, second, units=folds)
    assert (result["n"], result["units"]) == (6, 3)
    assert result["p_wilcoxon"] == pytest.approx(0.25)  # all 3 positive: 2 / 2**3
    assert format_difference(result).endswith("p = 0.250, 6 pairs in 3 folds")


def test_seeds_are_cells_and_strategies_are_compared(tiny_checkpoints, sample_corpus, hf_cache, tmp_path):
    text, speech = tiny_checkpoints
    bench = Benchmark(*parse_benchmark_arguments([
        "--output_dir", str(tmp_path), "--data_dir", str(sample_corpus), "--text_model", text, "--speech_model",
        speech, "--strategies", "task_a", "adapter", "--folds", "0", "--seeds", "1", "2", "--num_train_epochs", "1",
        "--learning_rate", "5e-3", "--projector_size", "16", "--max_speech_seconds", "2", "--dataset_cache_dir",
        hf_cache, "--disable_tqdm", "true", "--figures", "false"]))
    results = bench.run()
    assert results["seeds"] == [1, 2] and results["progress"] == {"finished": 6, "total": 6}
    assert (tmp_path / "runs" / "adapter" / "fold0-seed2" / "kemdy20-kemdy19" / "results.json").is_file()
    adapter = results["strategies"]["adapter"]
    assert sorted((cell["seed"], tuple(cell["order"])) for cell in adapter["folds"]) == [
        (1, ("kemdy19", "kemdy20")), (1, ("kemdy20", "kemdy19")), (2, ("kemdy19", "kemdy20")),
        (2, ("kemdy20", "kemdy19"))]
    score = adapter["final"]["kemdy19>kemdy20"]["kemdy19"]["macro_f1"]
    # both seeds are scored on fold 0's test sessions: two cells, one fold, so no interval
    assert (score["n"], score["units"], score["ci95"]) == (2, 1, None)
    task_a = results["strategies"]["task_a"]
    for cell in task_a["folds"]:  # task_a's average is over every task, each trained alone
        diagonal = [cell["matrix"]["macro_f1"][j][j] for j in range(2)]
        assert cell["average"]["macro_f1"] == pytest.approx(sum(diagonal) / 2)
    assert task_a["forgetting"]["macro_f1"] is None
    (comparison,) = results["comparisons"]
    assert (comparison["first"], comparison["second"], comparison["macro_f1"]["n"]) == ("task_a", "adapter", 4)
    expected = [next(c for c in task_a["folds"] if c["seed"] == cell["seed"])["average"]["macro_f1"]
                - cell["average"]["macro_f1"] for cell in adapter["folds"]]
    assert comparison["macro_f1"]["mean_difference"] == pytest.approx(sum(expected) / 4)
    assert comparison["macro_f1"]["units"] == 1 and comparison["macro_f1"]["ci95"] is None
    report = (tmp_path / "results.md").read_text()
    assert "## Paired comparisons" in report and "| task_a vs adapter |" in report
    assert "`adapter` forgot nothing: every earlier task's macro F1 stayed exactly equal in all 4 cells." in report
    assert json.loads((tmp_path / "results.json").read_text())["comparisons"] == results["comparisons"]
