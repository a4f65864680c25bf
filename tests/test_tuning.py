"""One tuning rule for every strategy: same budget, same criterion, validation data only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kemdy_adapters.benchmark import Benchmark, parse_benchmark_arguments
from kemdy_adapters.strategies import get_strategy
from kemdy_adapters.tuning import strategy_grid, trials

GRID = {"learning_rate": [1e-3, 5e-3], "ewc_lambda": [10.0, 1000.0]}


def test_grids_and_budgets():
    assert strategy_grid(GRID, get_strategy("adapter")) == [{"learning_rate": 1e-3}, {"learning_rate": 5e-3}]
    assert len(strategy_grid(GRID, get_strategy("ewc"))) == 4
    sample = trials(GRID, get_strategy("ewc"), 2, seed=0)
    assert len(sample) == 2 and all(set(point) == {"learning_rate", "ewc_lambda"} for point in sample)
    assert sample == trials(GRID, get_strategy("ewc"), 2, seed=0)  # seeded
    assert strategy_grid({"lwf_alpha": [1.0]}, get_strategy("adapter")) == [{}]


def tuned_arguments(tiny_checkpoints, sample_corpus, hf_cache, output, *extra):
    text, speech = tiny_checkpoints
    return parse_benchmark_arguments([
        "--output_dir", str(output), "--data_dir", str(sample_corpus), "--text_model", text, "--speech_model",
        speech, "--strategies", "adapter", "ewc", "--folds", "0", "--tuning_grid", json.dumps(GRID),
        "--tuning_orders", "kemdy19,kemdy20", "--num_train_epochs", "1", "--projector_size", "16",
        "--max_speech_seconds", "2", "--dataset_cache_dir", hf_cache, "--fisher_samples", "16",
        "--fisher_batch_size", "4", "--disable_tqdm", "true", "--floors", "false", *extra])


@pytest.fixture(scope="module")
def tuned(tiny_checkpoints, sample_corpus, hf_cache, tmp_path_factory):
    output = tmp_path_factory.mktemp("tuned")
    return output, Benchmark(*tuned_arguments(tiny_checkpoints, sample_corpus, hf_cache, output)).run()


def test_every_strategy_gets_the_same_budget_and_rule(tuned):
    output, results = tuned
    tuning = json.loads((output / "tuning" / "tuning.json").read_text())
    assert results["tuning"] == tuning and tuning["budget"] == 2 and tuning["orders"] == ["kemdy19>kemdy20"]
    for name in ("adapter", "ewc"):
        data = tuning["strategies"][name]
        assert len(data["trials"]) == 2
        for item in data["trials"]:
            run = json.loads((output / "tuning" / name / f"trial{item['trial']}" / "fold0" / "kemdy19-kemdy20" /
                              "results.json").read_text())
            last = run["validation_matrix"]["macro_f1"][-1]
            assert item["criterion"] == pytest.approx(np.mean(last))  # validation only, never the test sessions
        best = max(data["trials"], key=lambda item: item["criterion"])
        assert data["chosen"] == best["trial"] and data["settings"] == best["settings"]
    assert set(tuning["strategies"]["ewc"]["settings"]) == {"learning_rate", "ewc_lambda"}
    assert set(tuning["strategies"]["adapter"]["settings"]) == {"learning_rate"}


def test_the_chosen_setting_runs_every_cell(tuned):
    output, results = tuned
    for name in ("adapter", "ewc"):
        chosen = results["tuning"]["strategies"][name]
        cell = output / "runs" / name / "fold0"
        trial = output / "tuning" / name / f"trial{chosen['chosen']}" / "fold0" / "kemdy19-kemdy20"
        # The tuning order's cell is the chosen trial's run; the other order ran with the chosen setting.
        assert json.loads((cell / "kemdy19-kemdy20" / "results.json").read_text()) == json.loads(
            (trial / "results.json").read_text())
        settings = json.loads((cell / "kemdy20-kemdy19" / "run.json").read_text())["settings"]
        assert all(settings[key] == value for key, value in chosen["settings"].items())
    report = (output / "results.md").read_text()
    assert "## Tuning" in report and "never the test sessions" in report
    assert (output / "figures" / "tradeoff_ewc.png").read_bytes()[:4] == b"\x89PNG"


def test_trials_and_cells_side_by_side_give_the_same_results(tuned, tiny_checkpoints, sample_corpus, hf_cache,
                                                            tmp_path, capsys):
    """--cell_processes 2: trials, cells and the floors in two worker processes, the results those of one process
    with as many threads as each worker (`--cell_threads`)."""
    import torch

    _, reference = tuned
    capsys.readouterr()
    results = Benchmark(*tuned_arguments(tiny_checkpoints, sample_corpus, hf_cache, tmp_path, "--cell_processes",
                                         "2", "--cell_threads", str(torch.get_num_threads()), "--floors", "true",
                                         "--figures", "false")).run()
    console = capsys.readouterr().out
    assert results["tuning"] == reference["tuning"]
    for name, strategy in reference["strategies"].items():
        assert {key: value for key, value in results["strategies"][name].items() if key != "train_seconds"} == {
            key: value for key, value in strategy.items() if key != "train_seconds"}, name
    assert results["progress"] == {"finished": 4, "total": 4}
    assert results["floors"]["kemdy19"]["linear"]["macro_f1"]["mean"] > 0  # computed in a worker
    assert "floors of fold 0 (beside the training)" in console and console.count("[tuning]") == 4
    assert "(elapsed" in console and "Traceback" not in console
