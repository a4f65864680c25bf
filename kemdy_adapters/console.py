"""The console within a cell: one status line that follows the task, epoch and validation score as training goes.

On a terminal, `EpochStatus` keeps a single line up to date under the benchmark's cell line
(`  kemdy19: epoch 3/9, validation micro_f1 0.612 (best 0.640)`) and clears it when the task is done, so the
console's line count does not grow with epochs. Anywhere else (a pipe, a CI log, a file) it writes nothing:
every epoch's metrics are in `<task>/logs/trainer_log.jsonl` either way, and `--console_logs` prints them.
"""

from __future__ import annotations

import sys

from transformers import TrainerCallback


class EpochStatus(TrainerCallback):
    """Rewrites one terminal line after every evaluation of task `task`; silent unless `stream` is a TTY."""

    def __init__(self, task: str, stream=None):
        self.task = task
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = 0
        self.best: float | None = None

    def _show(self, text: str) -> None:
        if not self.enabled:
            return
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)

    def on_train_begin(self, args, state, control, **kwargs):
        self._show(f"  {self.task}: epoch 0/{_epochs(args)}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metric = args.metric_for_best_model or "loss"
        value = (metrics or {}).get(f"eval_{metric}")
        if value is None:
            return
        better = (lambda new, old: new > old) if args.greater_is_better else (lambda new, old: new < old)
        if self.best is None or better(value, self.best):
            self.best = value
        self._show(f"  {self.task}: epoch {round(state.epoch or 0)}/{_epochs(args)}, validation {metric} "
                   f"{value:.3f} (best {self.best:.3f})")

    def on_train_end(self, args, state, control, **kwargs):
        if self.enabled and self.width:
            self.stream.write("\r" + " " * self.width + "\r")  # the cell's own lines stay; the status goes
            self.stream.flush()
            self.width = 0


def _epochs(args) -> str:
    epochs = args.num_train_epochs
    return str(int(epochs)) if float(epochs).is_integer() else f"{epochs:g}"
