"""The task loop: strategies, the score matrix, adapter isolation, EWC's data, fresh optimizers, resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import continual_arguments
from safetensors.torch import load_file
from transformers import TrainerCallback

from kemdy_adapters.continual import ContinualRun
from kemdy_adapters.ewc import EWCState
from kemdy_adapters.trainer import AVERAGE_FILE, ClassBalancedSampler, WeightAverage
from kemdy_adapters.training_args import parse_arguments


class Recorder(TrainerCallback):
    """Records every Trainer start: the optimizer object and whether it already held state."""

    def __init__(self):
        self.starts = []

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.starts.append({"output_dir": args.output_dir, "optimizer": id(optimizer),
                            "optimizer_state": len(optimizer.state) if optimizer is not None else None})


class StopAt(TrainerCallback):
    """Simulates a kill: raises when task `task` saves a checkpoint (or when it starts, with at="begin")."""

    def __init__(self, task: str, at: str):
        self.task, self.at = task, at

    def on_train_begin(self, args, state, control, **kwargs):
        if self.at == "begin" and f"/{self.task}/" in args.output_dir:
            raise KeyboardInterrupt("simulated stop")

    def on_save(self, args, state, control, **kwargs):
        if self.at == "save" and f"/{self.task}/" in args.output_dir:
            raise KeyboardInterrupt("simulated stop")


def run(tiny_checkpoints, sample_corpus, prepared_data, output, strategy, *extra, callbacks=None):
    model_args, data_args, args = continual_arguments(tiny_checkpoints, sample_corpus, output, "--strategy",
                                                      strategy, *extra)
    return ContinualRun(model_args, data_args, args, data=prepared_data, callbacks=callbacks).run()


@pytest.fixture(scope="module")
def adapter_run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path_factory):
    output = tmp_path_factory.mktemp("adapter")
    recorder = Recorder()
    results = run(tiny_checkpoints, sample_corpus, prepared_data, output, "adapter", callbacks=[recorder])
    return output, results, recorder


def test_adapter_earlier_task_unchanged_exactly(adapter_run):
    output, results, _ = adapter_run
    for metric, matrix in results["matrix"].items():
        assert matrix[1][0] == matrix[0][0], metric
        assert matrix[0][1] is None  # kemdy20's head does not exist after kemdy19
    assert results["summary"]["weighted_f1"]["forgetting"] == 0.0
    assert all(epoch in (1.0, 2.0) for epoch in results["best_epoch"].values())  # the kept epoch of 2
    assert results["confusion"]["kemdy19"]["kemdy19"] == results["confusion"]["kemdy20"]["kemdy19"]
    assert sorted(p.name for p in (output / "kemdy19" / "export").iterdir()) == [
        "config.json", "model.safetensors", "routing.safetensors", "task_config.json"]
    assert not (output / "kemdy19" / "checkpoints").exists()
    saved = json.loads((output / "results.json").read_text())
    assert saved["matrix"] == results["matrix"] and saved["order"] == ["kemdy19", "kemdy20"]


def test_a_fresh_optimizer_per_task(adapter_run):
    _, _, recorder = adapter_run
    assert [start["output_dir"].split("/")[-2] for start in recorder.starts] == ["kemdy19", "kemdy20"]
    assert recorder.starts[0]["optimizer"] != recorder.starts[1]["optimizer"]
    assert all(start["optimizer_state"] == 0 for start in recorder.starts)


@pytest.mark.parametrize("strategy", ["finetune", "task_a", "adapter_wo_pretrain"])
def test_other_strategies_fill_the_matrix(strategy, tiny_checkpoints, sample_corpus, prepared_data, tmp_path):
    results = run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path, strategy)
    matrix = results["matrix"]["macro_f1"]
    assert matrix[0][0] is not None and matrix[1][1] is not None
    if strategy == "task_a":
        assert matrix[0][1] is None and matrix[1][0] is None
    if strategy == "finetune":
        assert None not in matrix[0] + matrix[1]  # one shared head scores every task at every step
        assert not (tmp_path / "kemdy19" / "model").exists(), "the previous task's full model is removed"
    if strategy == "adapter_wo_pretrain":
        assert (tmp_path / "base" / "config.json").exists()
        assert matrix[1][0] == matrix[0][0]
    assert results["trainable_parameters"] > 0


def test_ewc_fisher_from_the_earlier_task_only(tiny_checkpoints, sample_corpus, prepared_data, tmp_path):
    results = run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path, "ewc")
    state = EWCState.load(tmp_path / "kemdy19" / "ewc")
    seen = set(state.samples["kemdy19"])
    assert state.tasks == ["kemdy19"] and len(seen) == 24
    train = prepared_data["kemdy19"]["train"]
    assert seen <= set(train["id"])
    # A seeded random sample over the whole training split, not its first (lowest-session) rows.
    assert seen != set(train["id"][:24])
    sessions = {session for identifier, session in zip(train["id"], train["session"]) if identifier in seen}
    assert len(sessions) >= len(set(train["session"])) - 1
    assert not seen & set(prepared_data["kemdy20"]["train"]["id"])
    assert not seen & set(prepared_data["kemdy19"]["test"]["id"])
    assert all((value >= 0).all() for value in state.fisher.values())
    log = json.loads(next((tmp_path / "kemdy20").glob("scores.json")).read_text())
    assert log["task"] == "kemdy20"
    assert results["matrix"]["weighted_f1"][1][0] is not None


def test_resume_after_the_first_task(adapter_run, tiny_checkpoints, sample_corpus, prepared_data, tmp_path):
    _, uninterrupted, _ = adapter_run
    with pytest.raises(KeyboardInterrupt):
        run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path, "adapter",
            callbacks=[StopAt("kemdy20", "begin")])
    finished = (tmp_path / "kemdy19" / "scores.json").stat().st_mtime_ns
    assert not (tmp_path / "results.json").exists()
    recorder = Recorder()
    resumed = run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path, "adapter", callbacks=[recorder])
    assert [start["output_dir"].split("/")[-2] for start in recorder.starts] == ["kemdy20"]
    assert (tmp_path / "kemdy19" / "scores.json").stat().st_mtime_ns == finished
    assert resumed["matrix"] == uninterrupted["matrix"]


def test_resume_in_the_middle_of_a_task(adapter_run, tiny_checkpoints, sample_corpus, prepared_data, tmp_path):
    _, uninterrupted, _ = adapter_run
    with pytest.raises(KeyboardInterrupt):
        run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path, "adapter",
            callbacks=[StopAt("kemdy19", "save")])
    assert list((tmp_path / "kemdy19" / "checkpoints").glob("checkpoint-*"))
    resumed = run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path, "adapter")
    assert resumed["matrix"] == uninterrupted["matrix"]


def test_weight_average_is_a_bias_corrected_mean_and_applied_only_inside_the_block():
    model = torch.nn.Linear(2, 1)
    model.bias.requires_grad_(False)
    average = WeightAverage(model, decay=0.5)
    assert list(average.sums) == ["weight"]
    for value in (1.0, 3.0, -2.0):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update(model)
    # (0.25 * 1 + 0.5 * 3 - 2) / (0.25 + 0.5 + 1): the weights 0.5^age, normalised; nothing of the zero start.
    expected = (0.25 * 1 + 0.5 * 3 - 2) / 1.75
    with average.applied(model):
        assert torch.allclose(model.weight, torch.full_like(model.weight, expected))
    assert torch.equal(model.weight, torch.full_like(model.weight, -2.0))
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_weight_average_is_validated_kept_and_resumed(adapter_run, tiny_checkpoints, sample_corpus, prepared_data,
                                                        tmp_path):
    plain_output = adapter_run[0]
    extra = ("--weight_average_decay", "0.8", "--keep_checkpoints", "true")
    whole = run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path / "whole", "adapter", *extra)

    def validation_losses(output):
        lines = (output / "kemdy19" / "logs" / "trainer_log.jsonl").read_text().splitlines()
        return [entry["eval_loss"] for entry in map(json.loads, lines) if "eval_loss" in entry]

    # The same training steps, but the average was validated, not the last step's weights.
    assert len(validation_losses(tmp_path / "whole")) == len(validation_losses(plain_output)) == 2
    assert validation_losses(tmp_path / "whole") != validation_losses(plain_output)
    # What the task exported (and every later score used) is the average saved with the kept checkpoint.
    checkpoints = tmp_path / "whole" / "kemdy19" / "checkpoints"
    last = max(checkpoints.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    best = Path(json.loads((last / "trainer_state.json").read_text())["best_model_checkpoint"])
    saved = load_file(str(best / AVERAGE_FILE))
    steps = int(saved.pop("__steps__"))
    exported = load_file(str(tmp_path / "whole" / "kemdy19" / "export" / "model.safetensors"))
    assert set(exported) == set(saved)
    for name, total in saved.items():
        assert torch.allclose(exported[name], total / (1 - 0.8 ** steps), atol=1e-6), name
    raw = load_file(str(best / "model.safetensors"))
    assert not torch.equal(raw["heads.kemdy19.classifier.weight"], exported["heads.kemdy19.classifier.weight"])
    # Stopped after the first checkpoint and resumed: the average goes on from the checkpoint's, so the same scores.
    with pytest.raises(KeyboardInterrupt):
        run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path / "resumed", "adapter", *extra,
            callbacks=[StopAt("kemdy19", "save")])
    resumed = run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path / "resumed", "adapter", *extra)
    assert resumed["matrix"] == whole["matrix"]
    # The tiny model's scores barely move, so compare the averages themselves: every checkpoint's, the ones written
    # after the resume included, is the uninterrupted run's.
    for first_path in sorted((tmp_path / "whole").rglob(AVERAGE_FILE)):
        first = load_file(str(first_path))
        again = load_file(str(tmp_path / "resumed" / first_path.relative_to(tmp_path / "whole")))
        assert int(again["__steps__"]) == int(first["__steps__"]), first_path
        assert all(torch.allclose(again[name], first[name], atol=1e-6) for name in first), first_path
    # A checkpoint written without averaging cannot be resumed with it.
    for average in (tmp_path / "resumed").rglob(AVERAGE_FILE):
        average.unlink()
    (tmp_path / "resumed" / "kemdy20" / "scores.json").unlink()
    (tmp_path / "resumed" / "kemdy20" / "export" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="without --weight_average_decay"):
        run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path / "resumed", "adapter", *extra)


def test_class_balanced_sampler_draws_classes_near_uniformly():
    labels = [4] * 870 + [3] * 100 + [0] * 20 + [1] * 10
    sampler = ClassBalancedSampler(labels, seed=0)
    draws = Counter(labels[i] for epoch in range(5) for i in (sampler.set_epoch(epoch), list(sampler))[1])
    assert set(draws) == {0, 1, 3, 4}
    for count in draws.values():
        assert abs(count / sum(draws.values()) - 0.25) < 0.03
    sampler.set_epoch(0)
    first = list(sampler)
    assert first == list(sampler) and first != (sampler.set_epoch(1), list(sampler))[1]


def test_length_grouped_class_balanced_batches_cut_padding():
    generator = torch.Generator().manual_seed(0)
    labels = [4] * 300 + [3] * 60 + [0] * 40
    lengths = torch.randint(16000, 80000, (len(labels),), generator=generator).tolist()
    plain = ClassBalancedSampler(labels, seed=1)
    grouped = ClassBalancedSampler(labels, seed=1, lengths=lengths, batch_size=8, group_batches=10)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        grouped.set_epoch(epoch)
        a, b = list(plain), list(grouped)
        assert sorted(a) == sorted(b) and a != b  # the same class-balanced draw, other batches

        def padded(order):
            batches = [order[k: k + 8] for k in range(0, len(order), 8)]
            return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)

        real = sum(lengths[i] for i in a)
        assert (padded(b) - real) < 0.3 * (padded(a) - real)  # far less padding
    assert b == list(grouped)  # seeded
    with pytest.raises(ValueError, match="lengths for"):
        ClassBalancedSampler(labels, lengths=lengths[:-1], batch_size=8)


def test_argument_errors_and_config_files(tmp_path):
    with pytest.raises(ValueError, match="unknown strategy 'replay'"):
        parse_arguments(["--strategy", "replay"])
    with pytest.raises(ValueError, match=r"task\(s\) \[.iemocap.\] have no corpus: name each as name=/path"):
        parse_arguments(["--tasks", "iemocap"])
    config = {"strategy": "ewc", "ewc_lambda": 100.0, "tasks": ["kemdy20", "kemdy19"], "output_dir": str(tmp_path),
              "fold": 3, "text_model": "some/bert"}
    (tmp_path / "run.json").write_text(json.dumps(config))
    (tmp_path / "run.yaml").write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in config.items()))
    for name in ("run.json", "run.yaml"):
        model_args, data_args, args = parse_arguments([str(tmp_path / name)])
        assert (args.strategy, args.ewc_lambda, args.tasks) == ("ewc", 100.0, ["kemdy20", "kemdy19"])
        assert data_args.fold == 3 and model_args.text_model == "some/bert"
        assert args.metric_for_best_model == "micro_f1" and args.learning_rate == 1e-5


def test_run_errors(tiny_checkpoints, sample_corpus, prepared_data, tmp_path):
    with pytest.raises(ValueError, match="'ewc' needs at least two tasks"):
        run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path, "ewc", "--tasks", "kemdy19")
    empty = {"kemdy19": prepared_data["kemdy19"], "kemdy20": {**prepared_data["kemdy20"]}}
    empty["kemdy20"]["test"] = prepared_data["kemdy20"]["test"].select([])
    with pytest.raises(ValueError, match="task 'kemdy20' has no test data in fold 0"):
        run(tiny_checkpoints, sample_corpus, empty, tmp_path, "adapter")
    (tmp_path / "ewc_run" / "kemdy19").mkdir(parents=True)
    (tmp_path / "ewc_run" / "kemdy19" / "scores.json").write_text("{}")
    needs = r"task 'kemdy20' \(ewc\) needs .*kemdy19/model/config.json from the earlier task 'kemdy19'"
    with pytest.raises(FileNotFoundError, match=needs):
        run(tiny_checkpoints, sample_corpus, prepared_data, tmp_path / "ewc_run", "ewc")
