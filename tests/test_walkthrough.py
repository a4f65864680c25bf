"""The three-institution walk-through in examples/ runs end to end at tiny scale, as a newcomer would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "share_adapters.py"
SHARED = ["README.md", "config.json", "model.safetensors", "routing.safetensors", "task_config.json"]


def test_share_adapters_walkthrough(tmp_path):
    workdir = tmp_path / "share"
    done = subprocess.run([sys.executable, str(EXAMPLE), "--workdir", str(workdir), "--scale", "tiny"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert [step["step"] for step in summary["steps"]] == [
        "a-train", "a-push", "b-train", "b-push", "c-train", "c-push", "serve-predict"]
    assert all(step["exit_code"] == 0 for step in summary["steps"])
    assert summary["shared_files"] == {task: SHARED for task in ("kemdy19", "kemdy20", "clinic")}
    assert all(10_000 < size < 200_000 for size in summary["shared_bytes"].values())
    assert summary["received"] == {"a": [], "b": ["kemdy19"], "c": ["kemdy19", "kemdy20"]}
    assert summary["received_logits_bit_identical"] == {"kemdy19": True, "kemdy20": True}
    # Each institution's matrix covers only its own task: it has no test data of the received ones.
    assert {name: run["order"] for name, run in summary["score_matrices"].items()} == {
        "a": ["kemdy19"], "b": ["kemdy20"], "c": ["clinic"]}
    assert all(len(run["macro_f1"]) == 1 for run in summary["score_matrices"].values())
    assert summary["errors"] == 0 and summary["utterances"] >= 60
    chain = summary["chain_matrix"]["matrix"]["macro_f1"]
    assert [[value is None for value in row] for row in chain] == [[False, True, True], [False, False, True],
                                                                   [False, False, False]]
    assert chain[1][0] == chain[2][0] == chain[0][0] and chain[2][1] == chain[1][1]
    assert summary["chain_earlier_tasks_unchanged"] is True
    assert summary["routing_accuracy"]["overall"] > 0.6  # three tasks: chance is 1/3
    # B and C never saw A's corpus: nothing in their run folders points at it.
    for institution in ("b", "c"):
        for path in (workdir / institution / "run").rglob("*.json"):
            assert "KEMDy19" not in path.read_text(), path
    card = (workdir / "c" / "push" / "README.md").read_text()
    assert "received without their data" in card and "inst-a/kemdy19-adapter" in card
    assert "[share] routing accuracy over 3 tasks" in done.stdout
