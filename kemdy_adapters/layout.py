"""The folders a run and a benchmark write, named in one place (the task loop, the benchmark and `push` read them
here instead of re-deriving paths).

A run folder (one strategy on one task order and fold):
    run.json              strategy, order, fold, seed, settings, precision and the tasks received from elsewhere
    base/                 adapter_wo_pretrain: the random encoders, so a resumed run rebuilds the same model
    <task>/checkpoints/   the Trainer's checkpoints while the task trains (removed once it is finished)
    <task>/logs/          the Trainer's logs (and its TensorBoard curves with --report_to tensorboard)
    logs/                 with --report_to tensorboard: the rows of R after every task (tracking.py)
    <task>/export/        adapter strategies: the task's adapters, head and routing statistics
    <task>/model/         carried full models: the whole model after this task (removed once the next is done)
    <task>/ewc/           consolidating strategies: anchor and Fisher after this task
    <task>/scores.json    written last, atomically: the task is finished
    results.json          the sequence's score matrices when every task is finished

A benchmark folder:
    results.json, results.md, figures/, floors/fold<k>.json (majority, chance, linear baselines),
    tuning/ (the tuning trials and tuning.json), runs/<strategy>/fold<k>[-seed<s>]/<task>-<task>-.../ (one run
    folder per cell)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def base(self) -> Path:
        return self.root / "base"

    def task(self, task: str) -> Path:
        return self.root / task

    def checkpoints(self, task: str) -> Path:
        return self.root / task / "checkpoints"

    def logs(self, task: str) -> Path:
        return self.root / task / "logs"

    @property
    def tracker(self) -> Path:
        return self.root / "logs"

    def export(self, task: str) -> Path:
        return self.root / task / "export"

    def model(self, task: str) -> Path:
        return self.root / task / "model"

    def ewc(self, task: str) -> Path:
        return self.root / task / "ewc"

    def scores(self, task: str) -> Path:
        return self.root / task / "scores.json"


@dataclass(frozen=True)
class BenchmarkLayout:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def report(self) -> Path:
        return self.root / "results.md"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def tuning(self) -> Path:
        return self.root / "tuning" / "tuning.json"

    def trial(self, strategy: str, trial: int, fold: int, order: list[str]) -> RunLayout:
        return RunLayout(self.root / "tuning" / strategy / f"trial{trial}" / f"fold{fold}" / "-".join(order))

    def floors(self, fold: int) -> Path:
        return self.root / "floors" / f"fold{fold}.json"

    def cell(self, strategy: str, fold: int, order: list[str], seed: int | None = None) -> RunLayout:
        """A cell's run folder; `seed` only where the benchmark ran several seeds (`fold<k>-seed<s>`)."""
        folder = f"fold{fold}" if seed is None else f"fold{fold}-seed{seed}"
        return RunLayout(self.root / "runs" / strategy / folder / "-".join(order))
