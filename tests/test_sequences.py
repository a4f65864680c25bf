"""Sequences of any length and label sets, online EWC over three tasks, and continuing from received tasks."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import continual_arguments

from kemdy_adapters.benchmark import Benchmark, parse_benchmark_arguments
from kemdy_adapters.continual import ContinualRun
from kemdy_adapters.data import MultimodalCollator, MultimodalProcessor, model_batches
from kemdy_adapters.ewc import EWCState
from kemdy_adapters.export import TaskExportError
from kemdy_adapters.metrics import METRICS
from kemdy_adapters.modeling import MultimodalEmotionModel

ORDERS = ["kemdy19,kemdy20,clinic", "clinic,kemdy20,kemdy19"]


@pytest.fixture(scope="module")
def three_tasks(tiny_checkpoints, sample_corpus, clinic_corpus, hf_cache, tmp_path_factory):
    output = tmp_path_factory.mktemp("three")
    text, speech = tiny_checkpoints
    parsed = parse_benchmark_arguments([
        "--output_dir", str(output), "--data_dir", str(sample_corpus), "--text_model", text, "--speech_model",
        speech, "--strategies", "adapter", "finetune", "ewc", "lwf", "--folds", "0", "--floors", "false",
        "--orders",
        ORDERS[0], ORDERS[1].replace("clinic", f"clinic={clinic_corpus}", 1), "--num_train_epochs", "1",
        "--learning_rate", "5e-3", "--projector_size", "16", "--max_speech_seconds", "2", "--dataset_cache_dir",
        hf_cache, "--fisher_samples", "16", "--fisher_batch_size", "4", "--ewc_gamma", "0.5", "--disable_tqdm",
        "true"])
    return output, Benchmark(*parsed).run()


def test_three_task_matrices(three_tasks):
    output, results = three_tasks
    assert results["tasks"] == ["clinic", "kemdy19", "kemdy20"] and results["progress"]["finished"] == 8
    assert results["labels"]["clinic"] == ["calm", "tense", "cheerful", "low"]
    for name, strategy in results["strategies"].items():
        assert len(strategy["folds"]) == 2
        for cell in strategy["folds"]:
            for metric in METRICS:
                matrix = cell["matrix"][metric]
                assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
                for i in range(3):
                    for j in range(3):
                        # Label sets differ, so every strategy keeps a head per task: nothing before its task.
                        assert (matrix[i][j] is None) == (j > i), (name, metric, i, j)
                if name.startswith("adapter"):  # every earlier task's entries stay exactly equal
                    assert all(matrix[i][j] == matrix[j][j] for j in range(3) for i in range(j, 3)), metric
        assert strategy["scenario"].startswith("task-incremental")
    assert results["strategies"]["adapter"]["forgetting"]["macro_f1"]["mean"] == 0.0
    assert set(results["strategy_records"]) == {"adapter", "finetune", "ewc", "lwf"}
    lwf = json.loads((output / "runs" / "lwf" / "fold0" / "kemdy19-kemdy20-clinic" / "clinic" / "scores.json"
                      ).read_text())
    distilled = [entry["lwf_distillation"] for entry in lwf["log_history"] if "lwf_distillation" in entry]
    assert distilled and all(value > 0 for value in distilled)  # two earlier heads distilled into the third task


def test_three_task_report_routing_and_online_ewc(three_tasks):
    output, results = three_tasks
    report = (output / "results.md").read_text()
    assert "## Strategies and scenarios" in report and "CLINIC 4 classes (calm, tense, cheerful, low)" in report
    for task in ("CLINIC", "KEMDY19", "KEMDY20"):
        assert f"| {task} |" in report
    figures = {path.name for path in (output / "figures").iterdir()}
    assert {"matrix_adapter.png", "confusion_adapter.png", "forgetting.png"} <= figures
    agnostic = results["strategies"]["adapter"]["task_agnostic"]
    assert agnostic["routing_accuracy"]["shallow"]["mean"] > 0.6  # three tasks: chance is 1/3
    cell = output / "runs" / "ewc" / "fold0" / "kemdy19-kemdy20-clinic"
    first, second = EWCState.load(cell / "kemdy19" / "ewc"), EWCState.load(cell / "kemdy20" / "ewc")
    assert first.tasks == ["kemdy19"] and second.tasks == ["kemdy19", "kemdy20"]
    assert set(second.samples) == {"kemdy19", "kemdy20"}
    shared = [name for name in first.fisher if name.startswith("text_encoder.") and name in second.fisher]
    assert shared and any(not torch.equal(second.fisher[name], 0.5 * first.fisher[name]) for name in shared)
    assert not (cell / "clinic" / "ewc").exists()  # nothing to consolidate after the last task


def test_model_card_of_a_generic_task(three_tasks, tmp_path):
    from kemdy_adapters.hub import card_yaml, prepare_task_folder

    output, results = three_tasks
    files = prepare_task_folder(output, "clinic", tmp_path / "push", "inst-c/clinic-adapter")
    assert sorted(path.name for path in files) == ["README.md", "config.json", "model.safetensors",
                                                   "routing.safetensors", "task_config.json"]
    card = (tmp_path / "push" / "README.md").read_text()
    metadata = card_yaml(card)
    assert "language" not in metadata and "datasets" not in metadata and metadata["license_name"] == "data-owner-terms"
    assert "Labels, in output order: calm, tense, cheerful, low." in card and "4 labels" in card
    assert "ETRI" not in card and "KEMDy" not in card
    final = results["strategies"]["adapter"]["final"]["clinic>kemdy20>kemdy19"]["clinic"]["macro_f1"]["mean"]
    assert next(m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]
                if m["name"] == "macro F1") == round(final, 4)


def run(tiny_checkpoints, sample_corpus, data, output, *extra):
    model_args, data_args, args = continual_arguments(tiny_checkpoints, sample_corpus, output, *extra)
    return ContinualRun(model_args, data_args, args, data=data).run()


@pytest.fixture(scope="module")
def sender(tiny_checkpoints, sample_corpus, prepared_data, tmp_path_factory):
    """Institution A: learns kemdy19 alone."""
    output = tmp_path_factory.mktemp("sender")
    results = run(tiny_checkpoints, sample_corpus, {"kemdy19": prepared_data["kemdy19"]}, output, "--tasks",
                  "kemdy19", "--strategy", "adapter")
    return output / "kemdy19" / "export", results


def test_continue_from_a_received_task(sender, tiny_checkpoints, sample_corpus, prepared_data, prepared_clinic,
                                       clinic_corpus, tmp_path):
    export, _ = sender
    data = {"kemdy20": prepared_data["kemdy20"], "clinic": prepared_clinic}
    results = run(tiny_checkpoints, sample_corpus, data, tmp_path, "--tasks", "kemdy20", f"clinic={clinic_corpus}",
                  "--strategy",
                  "adapter", "--from_tasks", str(export))
    assert results["order"] == ["kemdy20", "clinic"]
    assert len(results["matrix"]["macro_f1"]) == 2  # rows and columns only for this run's own tasks
    assert [item["task"] for item in results["received"]] == ["kemdy19"]
    assert json.loads((tmp_path / "run.json").read_text())["received"][0]["source"] == str(export)
    agnostic = results["task_agnostic"]
    assert agnostic["tasks"] == ["kemdy19", "kemdy20", "clinic"]  # the received task is routed among
    assert set(agnostic["routed_to"]) == {"kemdy20", "clinic"}
    assert sorted(p.name for p in (tmp_path / "clinic" / "export").iterdir()) == [
        "config.json", "model.safetensors", "routing.safetensors", "task_config.json"]
    assert json.loads((tmp_path / "clinic" / "export" / "task_config.json").read_text())["labels"] == [
        "calm", "tense", "cheerful", "low"]

    # The received task's logits in the receiver's final model are bit-identical to the sender's.
    text, speech = tiny_checkpoints
    alone = MultimodalEmotionModel.from_encoders(text, speech, projector_size=16)
    alone.load_task(export)
    together = MultimodalEmotionModel.from_encoders(text, speech, projector_size=16)
    for folder in (export, tmp_path / "kemdy20" / "export", tmp_path / "clinic" / "export"):
        together.load_task(folder)
    processor = MultimodalProcessor.from_checkpoints(text, speech, max_speech_seconds=2)
    alone.eval(), together.eval()
    with torch.no_grad():
        for inputs in model_batches(prepared_data["kemdy19"]["test"], MultimodalCollator(processor.tokenizer), 8,
                                    "cpu"):
            assert torch.equal(alone(**inputs, task="kemdy19").logits, together(**inputs, task="kemdy19").logits)


def test_received_tasks_that_do_not_fit_fail_before_training(sender, tiny_checkpoints, sample_corpus,
                                                               prepared_data, tmp_path):
    export, _ = sender
    data = {"kemdy20": prepared_data["kemdy20"]}
    with pytest.raises(TaskExportError, match="adapter_reduction_factor: task has 12, model has 4"):
        run(tiny_checkpoints, sample_corpus, data, tmp_path / "a", "--tasks", "kemdy20", "--from_tasks",
            str(export), "--adapter_reduction_factor", "4")
    with pytest.raises(TaskExportError, match="other base weights"):
        run(tiny_checkpoints, sample_corpus, data, tmp_path / "b", "--tasks", "kemdy20", "--from_tasks",
            str(export), "--strategy", "adapter_wo_pretrain")
    with pytest.raises(ValueError, match="received task 'kemdy19' is also a task of this run"):
        run(tiny_checkpoints, sample_corpus, {**data, "kemdy19": prepared_data["kemdy19"]}, tmp_path / "c",
            "--tasks", "kemdy19", "kemdy20", "--from_tasks", str(export))
    assert not (tmp_path / "a" / "kemdy20" / "checkpoints").exists()
    assert not (tmp_path / "b" / "kemdy20" / "checkpoints").exists()


@pytest.fixture(scope="module")
def speech_only(tiny_checkpoints, clinic_corpus, tmp_path_factory):
    """The clinic corpus without its transcript column: a speech-only task, `calls`."""
    import csv
    import shutil

    from kemdy_adapters.data import load_task_splits
    from kemdy_adapters.tasks import TaskSpec

    folder = shutil.copytree(clinic_corpus, tmp_path_factory.mktemp("calls") / "calls")
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as stream:
        rows = [{key: value for key, value in row.items() if key != "text"} for row in csv.DictReader(stream)]
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    spec = TaskSpec.from_folder("calls", folder)
    assert spec.modalities == ("speech",)
    processor = MultimodalProcessor.from_checkpoints(*tiny_checkpoints, max_speech_seconds=2)
    return folder, load_task_splits(spec, None, 0, processor)


@pytest.mark.parametrize("strategy", ["task_a", "finetune", "ewc", "adapter", "adapter_wo_pretrain"])
def test_a_speech_only_task_in_every_strategy(strategy, speech_only, tiny_checkpoints, sample_corpus,
                                              prepared_data, tmp_path):
    folder, calls = speech_only
    results = run(tiny_checkpoints, sample_corpus, {"calls": calls, "kemdy20": prepared_data["kemdy20"]}, tmp_path,
                  "--tasks", f"calls={folder}", "kemdy20", "--strategy", strategy, "--num_train_epochs", "1")
    assert results["modalities"] == {"calls": ["speech"], "kemdy20": ["speech", "text"]}
    assert results["matrix"]["macro_f1"][0][0] is not None and results["matrix"]["macro_f1"][1][1] is not None
    if strategy != "adapter":
        return
    from kemdy_adapters.inference import EmotionRecognizer

    recognizer = EmotionRecognizer.from_pretrained(tmp_path / "calls" / "export")
    assert recognizer.model.task_modalities("calls") == ["speech"]
    wav = next(folder.rglob("*.wav"))
    first = recognizer.logits(wav, "오늘 정말 기분이 좋아요", task="calls")
    assert torch.equal(first, recognizer.logits(wav, "화가 나 진짜", task="calls"))
    assert torch.equal(first, recognizer.logits(wav, None, task="calls"))


@pytest.mark.parametrize("strategy", ["joint", "lwf"])
def test_joint_upper_bound_and_lwf(strategy, tiny_checkpoints, sample_corpus, prepared_data, tmp_path):
    results = run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path, "--strategy", strategy)
    matrix = results["matrix"]["macro_f1"]
    if strategy == "joint":
        assert matrix[0] == matrix[1] and None not in matrix[0]  # one model, trained once, on both tasks
        assert results["summary"]["macro_f1"]["forgetting"] is None
        assert results["summary"]["macro_f1"]["average"] == pytest.approx((matrix[0][0] + matrix[1][1]) / 2)
        assert results["scenario"].startswith("not continual")
        saved = json.loads((tmp_path / "_joint" / "scores.json").read_text())
        assert saved["scores"]["kemdy20"]["support"] == len(prepared_data["kemdy20"]["test"])
        with pytest.raises(ValueError, match="needs one label set"):
            run(tiny_checkpoints, sample_corpus, {**prepared_data, "clinic": _clinic(prepared_data)}, tmp_path / "x",
                "--strategy", "joint", "--tasks", "kemdy19", "clinic=/unused")
    else:
        assert None not in matrix[0] + matrix[1]  # one shared head scores both tasks at every step
        log = json.loads((tmp_path / "kemdy20" / "scores.json").read_text())["log_history"]
        assert any(entry.get("lwf_distillation", 0) > 0 for entry in log)
        first = json.loads((tmp_path / "kemdy19" / "scores.json").read_text())["log_history"]
        assert not any("lwf_distillation" in entry for entry in first)  # nothing to distil on the first task


def _clinic(prepared_data):
    """kemdy19's prepared splits under other label names: another label set, for the joint error."""
    import datasets

    return {name: split.cast_column("label", datasets.ClassLabel(names=[f"c{i}" for i in range(7)]))
            for name, split in prepared_data["kemdy19"].items()}
