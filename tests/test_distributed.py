"""Two CPU processes (torchrun, gloo) train and score like one process at the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("distributed_run.py")


def _run(command, env):
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.mark.distributed
def test_two_processes_match_one(manifest, sample_corpus, hf_cache, tmp_path):
    from kemdy_adapters.tiny import save_tiny_encoders

    # Without dropout, one process at batch 8 and two at batch 4 compute the same steps (dropout masks would
    # otherwise be drawn from different random streams).
    text, speech = save_tiny_encoders(tmp_path / "encoders", [s["text"] for s in manifest["segments"]], dropout=0.0)
    text, speech = str(text), str(speech)
    common = ["--text_model", text, "--speech_model", speech, "--data_dir", str(sample_corpus), "--tasks", "kemdy19",
              "--strategy", "adapter", "--num_train_epochs", "1", "--learning_rate", "1e-3", "--projector_size", "16",
              "--max_speech_seconds", "2", "--dataset_cache_dir", hf_cache, "--seed", "5", "--disable_tqdm", "true",
              "--use_cpu", "true", "--per_device_eval_batch_size", "8", "--dropout", "0",
              "--logging_strategy", "steps", "--logging_steps", "1", "--keep_checkpoints", "true"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    _run([sys.executable, str(SCRIPT), *common, "--output_dir", str(tmp_path / "one"),
          "--per_device_train_batch_size", "8"], env)
    torchrun = Path(sys.executable).with_name("torchrun")
    _run([str(torchrun), "--nproc_per_node", "2", "--nnodes", "1", "--master_addr", "127.0.0.1",
          "--master_port", "29531", str(SCRIPT), *common, "--output_dir", str(tmp_path / "two"),
          "--per_device_train_batch_size", "4"], env)
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    scores_one = json.loads((tmp_path / "one" / "kemdy19" / "scores.json").read_text())["scores"]["kemdy19"]
    scores_two = json.loads((tmp_path / "two" / "kemdy19" / "scores.json").read_text())["scores"]["kemdy19"]
    # Every test utterance is scored exactly once, in both runs (no duplicates from the padded last batch).
    assert scores_one["support"] == scores_two["support"]
    assert sum(map(sum, scores_two["confusion"])) == scores_one["support"]
    # Every step sees the same 8 utterances (rank 0 the first 4, rank 1 the next 4), so the losses agree; the
    # last step of the epoch differs: with an uneven count accelerate completes rank 1's batch from the start.
    losses = []
    for run in ("one", "two"):
        (state,) = (tmp_path / run / "kemdy19" / "checkpoints").glob("checkpoint-*/trainer_state.json")
        losses.append([entry["loss"] for entry in json.loads(state.read_text())["log_history"] if "loss" in entry])
    assert len(losses[0]) == len(losses[1]) > 3
    assert losses[0][:-1] == pytest.approx(losses[1][:-1], abs=1e-4)
    for metric in ("weighted_f1", "macro_f1", "uar", "accuracy"):
        assert one["matrix"][metric][0][0] is not None and two["matrix"][metric][0][0] is not None
    # Only rank 0 wrote: one export, no stray files from rank 1.
    assert sorted(p.name for p in (tmp_path / "two" / "kemdy19" / "export").iterdir()) == [
        "config.json", "model.safetensors", "routing.safetensors", "task_config.json"]
