"""`kemdy-adapters bench`: one JSON line per case with measured figures, the profile, the plain baselines."""

from __future__ import annotations

import json

from kemdy_adapters.cli import main
from kemdy_adapters.precision import cpu_instruction_sets


def test_bench_prints_one_json_line_per_case(capsys):
    assert main(["bench", "--shapes", "tiny", "--strategies", "adapter", "plain_adapter", "--steps", "1",
                 "--speech-frozen-layers", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["strategy"] for line in lines] == ["adapter", "plain_adapter"]
    ours, plain = lines
    assert ours["speech_frozen_layers"] == 1 and ours["optimizer"] == "fused" and plain["optimizer"] == "foreach"
    assert (ours["batch_size"], ours["threads"]) == (4, 2)
    for line in lines:
        for precision in ("", "_bf16"):  # fp32 and bf16 side by side, by default
            for kind in ("train", "train_waveform", "infer"):
                assert line[f"{kind}{precision}_utt_per_s"] > 0, (kind, precision)
        assert line["infer_int8_utt_per_s"] > 0 and line["peak_rss_gb"] > 0
        assert 0 < line["trainable_parameters"] < line["model_parameters"]
        # every figure says what it was measured on
        assert line["device"] == "cpu" and line["cpu"] and line["cpu_isa"] == " ".join(cpu_instruction_sets())


def test_bench_profile_names_the_phases_and_operators(capsys):
    assert main(["bench", "--profile", "--shapes", "tiny", "--strategies", "finetune"]) == 0
    out = capsys.readouterr().out
    for phase in ("text forward", "speech forward + head", "backward", "optimizer"):
        assert phase in out
    assert "aten::" in out and "Self CPU" in out


def test_a_demo_cell_trains_and_scores_in_bf16_on_the_cpu(sample_corpus, tmp_path):
    """Trainer's --bf16 on a CPU (autocast) and bf16 scoring, end to end, as the GPU check runs them at base
    shapes: the cell finishes, and its scores are real ones."""
    from kemdy_adapters.speed import demo_cell

    line = demo_cell(tmp_path, shape="tiny", corpus=sample_corpus)
    assert line["precision"] == "bf16" and line["cpu_isa"] and line["seconds"] > 0
    assert set(line["macro_f1"]) == {"kemdy19", "kemdy20"}
    assert all(0 <= value <= 1 for value in line["macro_f1"].values())
    (run,) = (tmp_path / "cell").rglob("run.json")
    assert json.loads(run.read_text())["precision"] == {"train": "bf16", "inference": "bf16"}
