"""Every command's --help, and the commands of the foundation on the sample corpus."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kemdy_adapters.cli import build_parser, main

COMMANDS = ["sample-corpus", "inspect", "train", "benchmark", "bench", "push", "predict", "pretrain", "demo"]


def test_console_script_help():
    executable = shutil.which("kemdy-adapters", path=str(Path(sys.executable).parent))
    assert executable, "the kemdy-adapters console script is not installed"
    result = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: kemdy-adapters " + command in out


def test_parser_lists_every_command():
    subparsers = next(action for action in build_parser()._actions if action.dest == "command")
    assert sorted(subparsers.choices) == sorted(COMMANDS)


def test_inspect_summarises_both_corpora(sample_corpus, hf_cache, capsys):
    assert main(["inspect", str(sample_corpus), "--cache-dir", hf_cache]) == 0
    captured = capsys.readouterr()
    assert "kemdy19: 1" in captured.out and "kemdy20: 1" in captured.out and "10 sessions" in captured.out
    assert "valence 2." in captured.out and "(1-5, mean ± sd)" in captured.out


def test_inspect_shows_no_library_progress_bars_unless_verbose(sample_corpus, tmp_path, capsys):
    import datasets

    try:
        assert main(["inspect", str(sample_corpus), "--corpus", "kemdy20", "--cache-dir", str(tmp_path / "a")]) == 0
        quiet = capsys.readouterr()
        assert "kemdy20: 1" in quiet.out and "examples" not in quiet.err + quiet.out
        assert main(["-v", "inspect", str(sample_corpus), "--corpus", "kemdy20", "--cache-dir",
                     str(tmp_path / "b")]) == 0
        assert "Generating train split" in capsys.readouterr().err  # the bar the default hides
    finally:
        datasets.enable_progress_bars()


def test_inspect_on_a_wrong_folder_fails_cleanly(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "not a KEMDY19 corpus folder" in capsys.readouterr().err


def test_demo_command_defaults_are_the_demos_own():
    from kemdy_adapters.demo import DEMO_EPOCHS

    assert build_parser().parse_args(["demo"]).epochs == DEMO_EPOCHS


def test_demo_arguments_carry_the_demos_recipe(tmp_path):
    from kemdy_adapters.benchmark import parse_benchmark_arguments
    from kemdy_adapters.demo import DEMO_DIMENSIONS, DEMO_RECIPE, demo_arguments

    _, model_args, _, args = parse_benchmark_arguments(
        demo_arguments(tmp_path, "text", "speech", tmp_path / "corpus", [0, 1], 9, 0))
    settings = {**vars(model_args), **vars(args)}
    assert {key: settings[key] for key in {**DEMO_DIMENSIONS, **DEMO_RECIPE}} == {**DEMO_DIMENSIONS, **DEMO_RECIPE}
    assert args.metric_for_best_model == DEMO_RECIPE["selection_metric"] and args.num_train_epochs == 9
    bench, *_ = parse_benchmark_arguments(demo_arguments(tmp_path, "text", "speech", tmp_path / "corpus", [0], 9, 0,
                                                         processes=2))
    assert bench.cell_processes == 2 and build_parser().parse_args(["demo", "--processes", "2"]).processes == 2
    assert bench.cell_threads == 1  # one thread per cell: the same scores for any number of processes


def test_demo_defaults_to_one_process_per_core(monkeypatch):
    import os

    from kemdy_adapters import demo

    assert build_parser().parse_args(["demo"]).processes is None  # run_demo then asks demo_processes
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert demo.demo_processes() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert demo.demo_processes() == demo.MAX_DEMO_PROCESSES


def test_one_process_trains_with_cell_threads_and_gives_its_threads_back():
    import torch

    from kemdy_adapters.workers import torch_threads

    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_demo_on_a_folder_without_both_corpora_fails_cleanly(tmp_path, capsys):
    (tmp_path / "KEMDy19").mkdir()
    assert main(["demo", "--output", str(tmp_path / "demo"), "--corpus", str(tmp_path)]) == 2
    assert f"{tmp_path}: no KEMDy20_v1_1 folder in it" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # nothing written before the check


def test_sample_corpus_command(tmp_path, capsys):
    assert main(["sample-corpus", "--output", str(tmp_path / "c"), "--sessions", "5"]) == 0
    out = capsys.readouterr().out
    assert "kemdy19:" in out and (tmp_path / "c" / "KEMDy19" / "annotation").is_dir()
    assert main(["sample-corpus", "--output", str(tmp_path / "c"), "--sessions", "5"]) == 2


def test_benchmark_console_is_for_people(tiny_checkpoints, sample_corpus, hf_cache, tmp_path):
    """Progress lines and the summary on the console; Trainer's metric dictionaries in the run's log file."""
    text, speech = tiny_checkpoints
    done = subprocess.run(
        [sys.executable, "-m", "kemdy_adapters.cli", "benchmark", "--output_dir", str(tmp_path), "--data_dir",
         str(sample_corpus), "--text_model", text, "--speech_model", speech, "--strategies", "adapter", "--folds",
         "0", "--num_train_epochs", "2", "--projector_size", "16", "--max_speech_seconds", "2",
         "--dataset_cache_dir", hf_cache, "--disable_tqdm", "true", "--floors", "false", "--figures", "false"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    console = done.stdout + done.stderr
    assert "Warning" not in console and "{'loss'" not in console and "examples/s" not in console, console
    assert len(console.splitlines()) < 30, console
    assert "[2/2] adapter fold 0 KEMDY20->KEMDY19" in console and "benchmark finished" in console
    log = tmp_path / "runs" / "adapter" / "fold0" / "kemdy19-kemdy20" / "kemdy19" / "logs" / "trainer_log.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert any("eval_macro_f1" in entry for entry in entries) and any("loss" in entry for entry in entries)
