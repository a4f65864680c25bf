"""Reliability: interrupted saves, integrity, argument errors, locks, empty annotation files, push, file modes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import continual_arguments
from safetensors.torch import load_file, save_file
from test_continual import StopAt

from kemdy_adapters.cli import main
from kemdy_adapters.continual import ContinualRun
from kemdy_adapters.export import TaskExportError, seal_task
from kemdy_adapters.storage import RunLock, RunLockedError, write_json


def run(tiny_checkpoints, sample_corpus, prepared_data, output, *extra, callbacks=None):
    model_args, data_args, args = continual_arguments(tiny_checkpoints, sample_corpus, output, "--strategy",
                                                      "adapter", *extra)
    return ContinualRun(model_args, data_args, args, data=prepared_data, callbacks=callbacks).run()


@pytest.fixture(scope="module")
def exported(tiny_checkpoints, sample_corpus, prepared_data, tmp_path_factory):
    output = tmp_path_factory.mktemp("exported")
    results = run(tiny_checkpoints, sample_corpus, {"kemdy19": prepared_data["kemdy19"]}, output, "--tasks",
                  "kemdy19")
    return output / "kemdy19" / "export", results


def test_resume_skips_a_checkpoint_killed_while_saving(tiny_checkpoints, sample_corpus, prepared_data, exported,
                                                       tmp_path, caplog):
    data = {"kemdy19": prepared_data["kemdy19"]}
    with pytest.raises(KeyboardInterrupt):
        run(tiny_checkpoints, sample_corpus, data, tmp_path, "--tasks", "kemdy19",
            callbacks=[StopAt("kemdy19", "save")])
    checkpoints = tmp_path / "kemdy19" / "checkpoints"
    complete = sorted(checkpoints.glob("checkpoint-*"))
    assert complete
    # What a SIGKILL in the middle of Trainer's save leaves: the weights, but no trainer_state.json.
    partial = checkpoints / "checkpoint-9999"
    shutil.copytree(complete[-1], partial)
    (partial / "trainer_state.json").unlink()
    resumed = run(tiny_checkpoints, sample_corpus, data, tmp_path, "--tasks", "kemdy19")
    assert resumed["matrix"] == exported[1]["matrix"]
    assert "incomplete checkpoint" in caplog.text and "checkpoint-9999" in caplog.text


def tampered(export, tmp_path, name):
    folder = shutil.copytree(export, tmp_path / name)
    return folder, json.loads((folder / "task_config.json").read_text())


def test_integrity_covers_weights_labels_and_settings(exported, tiny_checkpoints, tmp_path):
    from kemdy_adapters.inference import EmotionRecognizer

    export, _ = exported
    folder, config = tampered(export, tmp_path, "renamed")
    config["labels"][0] = "furious"
    (folder / "task_config.json").write_text(json.dumps(config))
    with pytest.raises(TaskExportError, match="task_config.json: modified after export"):
        EmotionRecognizer.from_pretrained(folder)
    folder, _ = tampered(export, tmp_path, "flipped")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-8:] = bytes(8)
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(TaskExportError, match="model.safetensors: contents differ from the SHA-256"):
        EmotionRecognizer.from_pretrained(folder)
    folder, config = tampered(export, tmp_path, "routing")
    (folder / "routing.safetensors").write_bytes((folder / "routing.safetensors").read_bytes() + b" ")
    with pytest.raises(TaskExportError, match="routing.safetensors: contents differ"):
        EmotionRecognizer.from_pretrained(folder)
    folder, config = tampered(export, tmp_path, "old")
    for key in ("files_sha256", "config_sha256"):
        del config[key]
    (folder / "task_config.json").write_text(json.dumps(config))
    with pytest.raises(TaskExportError, match="no integrity record"):
        EmotionRecognizer.from_pretrained(folder)
    assert EmotionRecognizer.from_pretrained(folder, allow_unverified=True).tasks == ["kemdy19"]


def test_non_finite_scores_are_a_per_item_error_and_json_stays_valid(exported, sample_corpus, tmp_path, capsys):
    export, _ = exported
    folder, _ = tampered(export, tmp_path, "nan")
    weights = load_file(folder / "model.safetensors")
    key = next(name for name in weights if name.endswith("classifier.weight"))
    weights[key] = torch.full_like(weights[key], float("nan"))
    save_file(weights, folder / "model.safetensors", metadata={"format": "kemdy-adapters-task", "task": "kemdy19"})
    seal_task(folder)  # a consistent, sealed export whose weights are NaN: the digest cannot catch it
    wav = next((sample_corpus / "KEMDy20_v1_1" / "wav").rglob("*.wav"))
    output = tmp_path / "out.jsonl"
    assert main(["predict", "--task", str(folder), "--wav", str(wav), "--output", str(output)]) == 2
    (record,) = [json.loads(line) for line in output.read_text().splitlines()]  # valid JSON, no NaN
    assert "non-finite scores" in record["error"]
    missing = tmp_path / "nowhere.wav"
    assert main(["predict", "--task", str(export), "--wav", str(missing), "--output", str(output)]) == 2
    assert json.loads(output.read_text())["error"] == f"{missing}: no such file"


def test_user_errors_are_one_line_with_exit_2(tmp_path, tiny_checkpoints, sample_corpus, capsys):
    text, speech = tiny_checkpoints
    common = ["--text_model", text, "--speech_model", speech, "--data_dir", str(sample_corpus)]
    cases = [
        (["train", "--strategy", "replay", *common], "unknown strategy 'replay'"),
        (["train", "--num_train_epochs", "-1", *common], "num_train_epochs must be > 0"),
        (["train", "--fold", "7", *common], "fold must be in 0..4"),
        (["benchmark", "--folds", "7", *common], "folds must be distinct values in 0..4"),
        (["train", "--learning_rate", "0", *common], "learning_rate must be > 0"),
    ]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cases.append((["train", "--output_dir", str(blocker / "run"), "--tasks", "kemdy19", "--num_train_epochs", "1",
                   *common], "kemdy-adapters train: error:"))
    config = tmp_path / "run.yaml"
    config.write_text("strategy: adapter\nlearning_rte: 0.1\n")
    cases.append((["train", str(config)], "learning_rte"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
        assert err.startswith(f"kemdy-adapters {argv[0]}: error: "), err
    assert main(["predict", "--task", "x", "--wav", "y.wav", "--output", str(blocker / "out.jsonl")]) == 2
    assert "loaded tasks" not in capsys.readouterr().err  # the output path was checked before loading a model


def test_a_locked_run_folder_is_refused_and_a_stale_lock_taken_over(tmp_path, caplog):
    with RunLock(tmp_path, command="first"):
        with pytest.raises(RunLockedError, match=f"in use by process {os.getpid()} .*first"):
            with RunLock(tmp_path):
                pass
    assert not (tmp_path / ".lock").exists()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    import socket

    write_json(tmp_path / ".lock", {"pid": int(finished.stdout), "host": socket.gethostname(), "started": "x"})
    with RunLock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert "stale lock" in caplog.text


def test_two_benchmarks_into_one_folder(tiny_checkpoints, sample_corpus, hf_cache, tmp_path):
    from kemdy_adapters.benchmark import Benchmark, parse_benchmark_arguments

    text, speech = tiny_checkpoints
    parsed = parse_benchmark_arguments(["--output_dir", str(tmp_path), "--data_dir", str(sample_corpus),
                                        "--text_model", text, "--speech_model", speech, "--strategies", "adapter",
                                        "--folds", "0", "--dataset_cache_dir", hf_cache])
    with RunLock(tmp_path, command="kemdy-adapters benchmark"):
        with pytest.raises(RunLockedError, match="in use by process"):
            Benchmark(*parsed).run()
    assert not (tmp_path / "runs").exists()  # refused before any cell started


def test_an_annotation_file_without_rows_is_reported(sample_corpus, tmp_path):
    from kemdy_adapters.corpus import scan_corpus

    corpus = shutil.copytree(sample_corpus / "KEMDy20_v1_1", tmp_path / "KEMDy20_v1_1")
    path = corpus / "annotation" / "Sess03_eval.csv"
    path.write_text("\n".join(path.read_text(encoding="utf-8").splitlines()[:2]) + "\n", encoding="utf-8")
    segments, report = scan_corpus(corpus, "kemdy20")
    assert report.empty_files == ["Sess03_eval.csv"]
    assert "annotation file(s) with a header and no rows" in report.summary()
    assert not any(segment.session == "Sess03" for segment in segments)


def test_push_verifies_and_leaves_no_half_folder(exported, tmp_path, monkeypatch):
    export, _ = exported
    folder, _ = tampered(export, tmp_path, "damaged")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-4:] = bytes(4)
    (folder / "model.safetensors").write_bytes(bytes(data))
    target = tmp_path / "push"
    assert main(["push", "--task", "kemdy19", "--from", str(folder), "--repo-id", "lab/x", "--dry-run",
                 "--to-dir", str(target)]) == 2
    assert not target.exists() and not list(tmp_path.glob(".push.partial-*"))

    calls = []

    def full_disk(source, destination, *args, **kwargs):
        calls.append(destination)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return shutil.copy2(source, destination)

    monkeypatch.setattr("kemdy_adapters.hub.shutil.copyfile", full_disk)
    assert main(["push", "--task", "kemdy19", "--from", str(export), "--repo-id", "lab/x", "--dry-run",
                 "--to-dir", str(target)]) == 2
    assert not target.exists() and not list(tmp_path.glob(".push.partial-*"))


def test_base_checkpoints_named_by_a_task_are_read_as_safetensors_only(tiny_checkpoints, tmp_path):
    from transformers import AutoTokenizer, BertModel

    from kemdy_adapters.inference import EmotionRecognizer
    from kemdy_adapters.modeling import MultimodalEmotionModel

    text, speech = tiny_checkpoints
    pickled = tmp_path / "text_bin"
    BertModel.from_pretrained(text).save_pretrained(pickled, safe_serialization=False)
    AutoTokenizer.from_pretrained(text).save_pretrained(pickled)
    assert (pickled / "pytorch_model.bin").is_file() and not (pickled / "model.safetensors").exists()
    model = MultimodalEmotionModel.from_encoders(str(pickled), speech, tasks={"kemdy19": None}, projector_size=16)
    model.save_task(tmp_path / "task", "kemdy19")
    with pytest.raises(OSError, match="safetensors"):
        EmotionRecognizer.from_pretrained(tmp_path / "task")


def test_cli_leaves_remote_code_trust_to_the_loading_call():
    code = ("import os; os.environ.pop('HF_DATASETS_TRUST_REMOTE_CODE', None); import kemdy_adapters.cli; "
            "print(os.environ.get('HF_DATASETS_TRUST_REMOTE_CODE'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "None"


def test_written_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "results.json", {"ok": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o644
