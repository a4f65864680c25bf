"""`kemdy-adapters bench`: one JSON line per case with measured figures, the profile, the plain baselines."""

from __future__ import annotations

import json

from kemdy_adapters.cli import main


def test_bench_prints_one_json_line_per_case(capsys):
    assert main(["bench", "--shapes", "tiny", "--strategies", "adapter", "plain_adapter", "--steps", "1",
                 "--speech-frozen-layers", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["strategy"] for line in lines] == ["adapter", "plain_adapter"]
    ours, plain = lines
    assert ours["speech_frozen_layers"] == 1 and ours["optimizer"] == "fused" and plain["optimizer"] == "foreach"
    for line in lines:
        for key in ("train_utt_per_s", "train_waveform_utt_per_s", "infer_utt_per_s", "infer_int8_utt_per_s",
                    "peak_rss_gb"):
            assert line[key] > 0, key
        assert 0 < line["trainable_parameters"] < line["model_parameters"]


def test_bench_profile_names_the_phases_and_operators(capsys):
    assert main(["bench", "--profile", "--shapes", "tiny", "--strategies", "finetune"]) == 0
    out = capsys.readouterr().out
    for phase in ("text forward", "speech forward + head", "backward", "optimizer"):
        assert phase in out
    assert "aten::" in out and "Self CPU" in out
