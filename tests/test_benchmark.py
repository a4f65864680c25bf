"""The benchmark's output contract: results.json schema, results.md, figures, atomic writes, skip and resume."""

from __future__ import annotations

import json

import pytest
from test_continual import StopAt

from kemdy_adapters.benchmark import Benchmark, parse_benchmark_arguments
from kemdy_adapters.metrics import METRICS
from kemdy_adapters.storage import write_json

STRATEGIES = ["task_a", "finetune", "adapter"]


def arguments(tiny_checkpoints, sample_corpus, hf_cache, output):
    text, speech = tiny_checkpoints
    return parse_benchmark_arguments([
        "--output_dir", str(output), "--data_dir", str(sample_corpus), "--text_model", text, "--speech_model",
        speech, "--strategies", *STRATEGIES, "--folds", "0", "--num_train_epochs", "1", "--learning_rate", "1e-3",
        "--projector_size", "16", "--max_speech_seconds", "2", "--dataset_cache_dir", hf_cache, "--disable_tqdm",
        "true", "--strategy_overrides", '{"adapter": {"learning_rate": 0.005, "text_pooling": "mean"}}', "--note",
        "a tiny test run",
    ])


@pytest.fixture(scope="module")
def finished(tiny_checkpoints, sample_corpus, hf_cache, tmp_path_factory):
    output = tmp_path_factory.mktemp("bench")
    results = Benchmark(*arguments(tiny_checkpoints, sample_corpus, hf_cache, output)).run()
    return output, results


def test_results_json_contract(finished):
    output, returned = finished
    results = json.loads((output / "results.json").read_text())
    assert results["strategies"].keys() == returned["strategies"].keys() == set(STRATEGIES)
    assert results["tasks"] == ["kemdy19", "kemdy20"]
    assert results["progress"] == {"finished": 5, "total": 5}
    assert {"torch", "transformers", "adapters", "datasets", "device", "python"} <= set(results["environment"])
    assert results["config"]["benchmark"]["strategy_overrides"] == {
        "adapter": {"learning_rate": 0.005, "text_pooling": "mean"}}
    for strategy in results["strategies"].values():
        assert {"folds", "final", "bwt", "forgetting", "trainable_parameters", "export_bytes", "train_seconds"} <= set(
            strategy)
        for cell in strategy["folds"]:
            assert cell["fold"] == 0 and len(cell["order"]) == 2
            assert set(cell["matrix"]) == set(METRICS)
            for matrix in cell["matrix"].values():
                assert len(matrix) == 2 and all(len(row) == 2 for row in matrix)
        orders = ["kemdy19>kemdy20", "kemdy20>kemdy19"]
        assert sorted(strategy["final"]) == orders
        for order in orders:
            for task in ("kemdy19", "kemdy20"):
                score = strategy["final"][order][task]["weighted_f1"]
                assert 0 <= score["mean"] <= 1 and score["std"] >= 0
        assert set(strategy["bwt"]) == set(METRICS) and set(strategy["forgetting"]) == set(METRICS)
    task_a = results["strategies"]["task_a"]
    assert len(task_a["folds"]) == 1
    assert task_a["folds"][0]["matrix"]["macro_f1"][0][1] is None  # each task alone: the diagonal only
    assert task_a["final"]["kemdy19>kemdy20"] == task_a["final"]["kemdy20>kemdy19"]
    adapter = results["strategies"]["adapter"]
    assert adapter["forgetting"]["weighted_f1"]["mean"] == 0.0 and adapter["forgetting"]["weighted_f1"]["n"] == 2
    assert adapter["trainable_parameters"] < results["strategies"]["finetune"]["trainable_parameters"]
    # final[order][task] is that task's score after the whole order (the last row of R).
    cell = next(c for c in results["strategies"]["finetune"]["folds"] if c["order"] == ["kemdy19", "kemdy20"])
    # Each task's own forgetting: here one cell each, the order in which it was learned first.
    by_task = results["strategies"]["finetune"]["forgetting_by_task"]
    assert sorted(by_task) == ["kemdy19", "kemdy20"] and by_task["kemdy19"]["macro_f1"]["n"] == 1
    assert by_task["kemdy19"]["macro_f1"]["mean"] == pytest.approx(
        cell["matrix"]["macro_f1"][0][0] - cell["matrix"]["macro_f1"][1][0])
    assert adapter["forgetting_by_task"]["kemdy20"]["uar"]["mean"] == 0.0
    assert "forgetting_by_task" not in task_a
    assert results["strategies"]["finetune"]["final"]["kemdy19>kemdy20"]["kemdy19"]["uar"]["mean"] == pytest.approx(
        cell["matrix"]["uar"][1][0])


def test_report_and_figures(finished):
    output, results = finished
    report = (output / "results.md").read_text()
    assert "> a tiny test run" in report
    assert "## What each task retains" in report and "## Plasticity" in report and "BWT" in report
    assert "| KEMDY19 (published) | 0.704 | 0.525 | 0.681 | - | - |" in report
    # The published numbers come with their whole caveat.
    assert "alternately in every epoch" in report and "estimated on KEMDy20's data" in report
    assert "## Protocol" in report and "learning rate: 0.001 (reference: 1e-05)" in report
    retained = results["strategies"]["adapter"]["final"]["kemdy20>kemdy19"]["kemdy20"]["macro_f1"]["mean"]
    forgot = results["strategies"]["finetune"]["forgetting_by_task"]["kemdy19"]["macro_f1"]["mean"]
    assert "### Forgetting of each task" in report and "| adapter | KEMDY20 | 1 | 0.000 | 0.000 | 0.000 |" in report
    assert f"  - of KEMDY19: {forgot:+.3f} over 1 cell (one fold, no interval)." in report
    assert f"{retained:.3f}" in report
    figures = sorted(path.name for path in (output / "figures").iterdir())
    assert figures == ["confusion_adapter.png", "confusion_finetune.png", "confusion_task_a.png", "forgetting.png",
                       "matrix_adapter.png", "matrix_finetune.png", "matrix_task_a.png"]
    assert all((output / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in figures)
    export = output / "runs" / "adapter" / "fold0" / "kemdy19-kemdy20" / "kemdy19" / "export"
    assert (export / "model.safetensors").exists()


def test_a_strategy_may_set_model_settings_but_not_the_encoders(finished, tiny_checkpoints, sample_corpus, hf_cache,
                                                                tmp_path):
    output, _ = finished
    cells = {name: output / "runs" / name / "fold0" / "kemdy19-kemdy20" for name in ("adapter", "finetune")}
    settings = {name: json.loads((cell / "run.json").read_text())["settings"] for name, cell in cells.items()}
    assert settings["adapter"]["learning_rate"] == 0.005 and settings["adapter"]["text_pooling"] == "mean"
    assert settings["finetune"]["learning_rate"] == 1e-3 and settings["finetune"]["text_pooling"] == "cls"
    export = json.loads((cells["adapter"] / "kemdy19" / "export" / "task_config.json").read_text())
    assert export["text_pooling"] == "mean"
    parsed = arguments(tiny_checkpoints, sample_corpus, hf_cache, tmp_path)
    parsed[0].strategy_overrides = {"adapter": {"text_model": "another/bert"}}
    with pytest.raises(ValueError, match="'text_model' cannot vary between runs of one benchmark"):
        Benchmark(*parsed)  # refused before any work starts
    parsed[0].strategy_overrides = {}
    parsed[0].tuning_grid = {"no_such_setting": [1, 2]}
    with pytest.raises(ValueError, match="tuning_grid sets unknown argument 'no_such_setting'"):
        Benchmark(*parsed)
    assert list(tmp_path.iterdir()) == []


def test_rerun_skips_finished_cells(finished, tiny_checkpoints, sample_corpus, hf_cache, capsys):
    output, results = finished
    stamps = {path: path.stat().st_mtime_ns for path in (output / "runs").rglob("results.json")}
    again = Benchmark(*arguments(tiny_checkpoints, sample_corpus, hf_cache, output)).run()
    printed = capsys.readouterr().out
    assert printed.count("done already, skipped") == 5
    assert "[1/5] task_a fold 0 KEMDY19->KEMDY20: done already, skipped" in printed
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert again["strategies"]["adapter"]["folds"] == results["strategies"]["adapter"]["folds"]


def test_interrupted_benchmark_resumes(tiny_checkpoints, sample_corpus, hf_cache, tmp_path):
    parsed = arguments(tiny_checkpoints, sample_corpus, hf_cache, tmp_path)
    parsed[0].strategies = ["finetune"]
    parsed[0].figures = False
    with pytest.raises(KeyboardInterrupt):
        Benchmark(*parsed, callbacks=[StopAt("kemdy20", "save")]).run()
    partial = json.loads((tmp_path / "results.json").read_text())  # valid while the run was stopped
    assert partial["progress"] == {"finished": 0, "total": 2}
    first_task = tmp_path / "runs" / "finetune" / "fold0" / "kemdy19-kemdy20" / "kemdy19" / "scores.json"
    stamp = first_task.stat().st_mtime_ns
    results = Benchmark(*parsed).run()
    assert first_task.stat().st_mtime_ns == stamp
    assert results["progress"] == {"finished": 2, "total": 2}


def test_atomic_json_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    with pytest.raises(ValueError):
        write_json(path, {"nan": float("nan")})  # never write invalid JSON
    assert json.loads(path.read_text()) == {"ok": 1}


def test_reference_config_reproduces_the_reference_settings():
    from pathlib import Path

    config = Path(__file__).resolve().parent.parent / "examples" / "configs" / "reference.yaml"
    bench, model_args, data_args, args = parse_benchmark_arguments([str(config)])
    assert bench.strategies == ["task_a", "finetune", "ewc", "adapter", "adapter_wo_pretrain", "joint", "lwf"]
    assert bench.folds == [0, 1, 2, 3, 4] and bench.order_lists() == [["kemdy19", "kemdy20"], ["kemdy20", "kemdy19"]]
    assert (model_args.text_model, model_args.speech_model) == ("klue/bert-base", "facebook/wav2vec2-base-960h")
    assert (args.learning_rate, args.per_device_train_batch_size, args.num_train_epochs) == (1e-5, 8, 40)
    assert (args.ewc_lambda, data_args.max_text_length, data_args.max_speech_seconds) == (5000, 256, 5.0)
    assert args.class_balanced_sampling and args.metric_for_best_model == "micro_f1"
    # The reference's optimisation: constant learning rate, AdamW's default weight decay, no clipping, seed 12.
    assert str(args.lr_scheduler_type) in ("constant", "SchedulerType.CONSTANT")
    assert (args.weight_decay, args.max_grad_norm, args.seed) == (0.01, 0.0, 12)
    assert "adamw" in str(args.optim).lower()
    # The reference's adapter variant.
    assert (model_args.adapter_non_linearity, model_args.adapter_init, model_args.task_layer_norms) == (
        "gelu", "reference", True)
    assert model_args.adapter_reduction_factor == 12 and args.fisher_samples >= 1_000_000
    assert not args.bf16 and not args.fp16 and args.inference_precision == "fp32"  # fp32, as the reference
    from kemdy_adapters.report import protocol_deviations

    specific = protocol_deviations({"training": args.to_dict(), "model": vars(model_args)})
    assert not [line for line in specific if "reference:" in line]  # nothing run-specific deviates


def test_floors_beside_every_score(finished, sample_corpus):
    import numpy as np

    from kemdy_adapters.hf_dataset import load_kemdy
    from kemdy_adapters.metrics import classification_scores
    from kemdy_adapters.tasks import task_splits

    output, results = finished
    floors = json.loads((output / "floors" / "fold0.json").read_text())
    assert set(floors) == {"kemdy19", "kemdy20"}
    for task, kinds in floors.items():
        assert set(kinds) == {"majority", "chance", "linear_audio", "linear_text", "linear"}
        splits = task_splits(load_kemdy(task, sample_corpus), 0)
        majority = np.bincount(splits["train"]["label"]).argmax()
        expected = classification_scores(np.full(len(splits["test"]), majority), splits["test"]["label"])
        assert kinds["majority"]["macro_f1"] == pytest.approx(expected["macro_f1"])
        assert kinds["chance"]["uar"] == pytest.approx(1 / 7, abs=0.05)  # uniform guesses recall 1/7 per class
        assert all(0 <= kinds[kind][metric] <= 1 for kind in kinds for metric in METRICS)
        assert results["floors"][task]["linear"]["macro_f1"]["mean"] == kinds["linear"]["macro_f1"]
    # The generated corpora carry their labels in words and prosody: the linear baseline learns them.
    assert floors["kemdy19"]["linear"]["macro_f1"] > floors["kemdy19"]["majority"]["macro_f1"] + 0.2
    report = (output / "results.md").read_text()
    assert "## Floors" in report
    assert "| task | task_a | finetune | adapter | *majority class* | *linear baseline* |" in report
    # Every strategy's kept score as a multiple of the linear baseline's and of task_a's, from the same numbers.
    adapter, task_a = (results["strategies"][name]["final"]["kemdy19>kemdy20"]["kemdy19"]["macro_f1"]["mean"]
                       for name in ("adapter", "task_a"))
    linear = results["floors"]["kemdy19"]["linear"]["macro_f1"]["mean"]
    row = next(line for line in report.split("## Against the linear baseline")[1].splitlines()
               if line.startswith("| adapter |"))
    kemdy19 = row.split("|")[2].strip()
    assert kemdy19.endswith(f": {adapter / linear:.3f}x the linear baseline, {adapter / task_a:.3f}x `task_a`")
