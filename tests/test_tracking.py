"""`--report_to tensorboard`: each task's curves from Trainer's own integration, and R after every task."""

from __future__ import annotations

import pytest
from conftest import continual_arguments
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from kemdy_adapters.continual import ContinualRun


def test_tensorboard_holds_each_tasks_curves_and_every_row_of_r(tiny_checkpoints, sample_corpus, hf_cache,
                                                                 tmp_path):
    run = tmp_path / "run"
    results = ContinualRun(*continual_arguments(
        tiny_checkpoints, sample_corpus, run, "--strategy", "finetune", "--report_to", "tensorboard",
        "--dataset_cache_dir", hf_cache)).run()
    for task in ("kemdy19", "kemdy20"):
        curves = EventAccumulator(str(run / task / "logs")).Reload()
        assert {"train/loss", "eval/macro_f1", "eval/loss"} <= set(curves.Tags()["scalars"])
        assert len(curves.Scalars("eval/macro_f1")) == 2  # one point per epoch
    tracker = EventAccumulator(str(run / "logs")).Reload()
    matrix = results["matrix"]["macro_f1"]
    first = tracker.Scalars("R/macro_f1/kemdy19")
    assert [event.step for event in first] == [0, 1]
    assert [event.value for event in first] == pytest.approx([matrix[0][0], matrix[1][0]], abs=1e-6)
    # One shared head scores the second task before it is learned too (R's upper triangle).
    second = tracker.Scalars("R/macro_f1/kemdy20")
    assert [event.value for event in second] == pytest.approx([matrix[0][1], matrix[1][1]], abs=1e-6)
    table = tracker.Tensors("R/macro_f1/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert table.splitlines()[0] == "| after \\ on | kemdy19 | kemdy20 |"
    assert f"| kemdy20 | {matrix[1][0]:.3f} | {matrix[1][1]:.3f} |" in table


def test_the_epoch_status_line_follows_training_on_a_terminal_only():
    """One rewritten line per evaluation on a TTY (task, epoch, validation score, best so far), cleared at the
    end; nothing at all on a pipe or log file, so a logged console does not grow with epochs."""
    import io
    from types import SimpleNamespace

    from kemdy_adapters.console import EpochStatus

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    args = SimpleNamespace(num_train_epochs=9.0, metric_for_best_model="micro_f1", greater_is_better=True)
    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        status = EpochStatus("kemdy19", stream=stream)
        status.on_train_begin(args, None, None)
        for epoch, value in ((1.0, 0.5), (2.0, 0.75), (3.0, 0.625)):
            status.on_evaluate(args, SimpleNamespace(epoch=epoch), None, metrics={"eval_micro_f1": value})
        status.on_train_end(args, None, None)
        out = stream.getvalue()
        if not shown:
            assert out == ""
            continue
        assert "\r  kemdy19: epoch 0/9" in out
        assert "\r  kemdy19: epoch 3/9, validation micro_f1 0.625 (best 0.750)" in out
        assert "\n" not in out and out.endswith("\r") and out.split("\r")[-2].strip() == ""
