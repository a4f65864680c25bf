"""`kemdy-adapters benchmark`: every chosen strategy x session fold x task order, aggregated into one report.

Output folder (`--output_dir`):
    results.json   the contract read by tests and tools (written atomically after every finished cell)
    results.md     the reference paper's table shape, plasticity, BWT/forgetting (see report.py)
    figures/       confusion matrices, forgetting chart, score-matrix heatmaps (PNG)
    runs/<strategy>/fold<k>/<task>-<task>/   one continual run per cell: exports, scores, logs
Re-running the same command skips finished cells and resumes an interrupted one.
"""

from __future__ import annotations

import copy
import json
import logging
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .baselines import DIMENSION_FLOORS, FLOORS
from .continual import ContinualRun, load_fold, make_processor
from .layout import BenchmarkLayout
from .metrics import DIMENSION_METRICS, METRICS, task_forgetting
from .report import format_settings
from .statistics import paired, summarize
from .storage import RunLock, ensure_writable, read_json, write_json
from .strategies import STRATEGIES, get_strategy
from .tasks import split_task_items
from .training_args import (
    ContinualTrainingArguments,
    DataArguments,
    ModelArguments,
    check_task_sources,
    parse_with,
)
from .tuning import CRITERION_METRIC, criterion, parse_grid, strategy_grid, trials
from .tuning import RULE as TUNING_RULE
from .workers import WorkerPool, threads_per_worker, torch_threads

logger = logging.getLogger(__name__)

ENCODER_KEYS = ("text_model", "speech_model")
"""Model settings that neither a strategy override nor a tuning grid may vary: every cell of a benchmark reads the
same prepared inputs (tokens and speech features), which the encoders decide."""

PUBLISHED = {
    "description": (
        "the reference prototype's published numbers (weighted F1 on the real KEMDy19 / KEMDy20 with klue/bert-base "
        "and wav2vec2-base-960h, 5 session folds; github.com/WoongheeLee/continual_erc_etri). Read them with their "
        "whole caveat: its `adapter` numbers come from training both corpora alternately in every epoch (joint "
        "multi-task training, not a sequence) with a separate best checkpoint per task, so they belong beside "
        "`joint` rather than beside sequential adapters; its `ewc` KEMDy19 number comes from the run whose Fisher "
        "was estimated on KEMDy20's data (the new task's, not the earlier task's); and its scores are weighted F1 "
        "only, each task scored with its own checkpoint. Runs on other data or encoders are not comparable with "
        "them at all, and even on the real corpora this protocol differs (see Protocol)"),
    "weighted_f1": {
        "kemdy19": {"task_a": 0.704, "finetune": 0.525, "ewc": 0.600, "adapter": 0.681, "adapter_wo_pretrain": 0.511},
        "kemdy20": {"task_a": 0.871, "finetune": 0.766, "ewc": 0.762, "adapter": 0.848, "adapter_wo_pretrain": 0.834},
    },
}


@dataclass
class BenchmarkArguments:
    """Which cells to run. Model, data and training settings come from the other argument groups."""

    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES), metadata={"help": "strategies to run"})
    folds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4], metadata={"help": "session folds to run"})
    orders: list[str] = field(
        default_factory=lambda: ["kemdy19,kemdy20", "kemdy20,kemdy19"],
        metadata={"help": "task orders of any length, each comma-separated; a task may be named name=path (a corpus "
                          "folder) once; task_a runs once per fold, in the first order"},
    )
    strategy_overrides: str = field(
        default=None,
        metadata={"help": 'per-strategy training or model settings as JSON, e.g. {"adapter": {"learning_rate": '
                          '1e-4, "text_pooling": "cls"}} (any TrainingArguments or ModelArguments field but the '
                          'encoders)'},
    )
    seeds: list[int] = field(
        default=None,
        metadata={"help": "training seeds: every fold x order x seed is a cell (default: the one --seed; given "
                          "seeds put the cells in runs/<strategy>/fold<k>-seed<s>/)"})
    tuning_grid: str = field(
        default=None,
        metadata={"help": 'one grid for every strategy, as JSON, e.g. {"learning_rate": [1e-3, 1e-2], "ewc_lambda": '
                          '[1e3, 1e4]}: training or model settings (e.g. text_pooling); keys apply to the '
                          'strategies that use them; see tuning.py for the rule'})
    tuning_trials: int = field(
        default=None, metadata={"help": "trials per strategy (default: the smallest grid among the strategies)"})
    tuning_orders: list[str] = field(
        default=None, metadata={"help": "orders the trials run in (default: every order)"})
    floors: bool = field(
        default=True,
        metadata={"help": "score the floors of every test set: majority class, chance, and the eGeMAPS + TF-IDF "
                          "linear baseline (baselines.py)"})
    figures: bool = field(default=True, metadata={"help": "draw the PNG figures"})
    cell_processes: int = field(
        default=1,
        metadata={"help": "cells (and tuning trials) trained at once, each in its own process with the CPU cores "
                          "shared out as threads (workers.py); 1: one after another in this process. The results "
                          "are those of one process with the same number of threads"})
    cell_threads: int = field(
        default=None,
        metadata={"help": "torch threads each cell (and tuning trial) trains with (default: this process's threads, "
                          "shared out among the cell_processes); the same value gives the same results whatever "
                          "cell_processes is"})
    note: str = field(default=None, metadata={"help": "a sentence printed at the top of results.md"})

    def __post_init__(self):
        unknown = [name for name in self.strategies if name not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
        self.task_locations = {}
        for order in self.orders:
            items = order.split(",") if isinstance(order, str) else list(order)
            self.task_locations.update(split_task_items(items)[1])
        self.tuning_grid = parse_grid(self.tuning_grid) if self.tuning_grid else {}
        if self.cell_processes < 1:
            raise ValueError(f"cell_processes must be at least 1, got {self.cell_processes}")
        if self.cell_threads is not None and self.cell_threads < 1:
            raise ValueError(f"cell_threads must be at least 1, got {self.cell_threads}")
        if self.tuning_trials is not None and self.tuning_trials < 1:
            raise ValueError(f"tuning_trials must be at least 1, got {self.tuning_trials}")
        if isinstance(self.strategy_overrides, str):
            self.strategy_overrides = json.loads(self.strategy_overrides)
        self.strategy_overrides = self.strategy_overrides or {}
        for name in self.strategy_overrides:
            if name not in STRATEGIES:
                raise ValueError(f"strategy_overrides names an unknown strategy {name!r}")

    def order_lists(self) -> list[list[str]]:
        """The orders as lists of task names (name=path items give their name)."""
        return [split_task_items(order.split(",") if isinstance(order, str) else list(order))[0]
                for order in self.orders]


@dataclass(frozen=True)
class Cell:
    """One continual run of the benchmark: a strategy on one fold, task order and seed."""

    strategy: str
    fold: int
    order: list[str]
    seed: int


def setting_target(key: str, model_args: ModelArguments, args: ContinualTrainingArguments, where: str):
    """The argument group (model or training) that a per-strategy or tuned setting `key` belongs to."""
    if key in ENCODER_KEYS:
        raise ValueError(f"{where}: {key!r} cannot vary between runs of one benchmark (every strategy reads the "
                         "same prepared inputs); run a benchmark per encoder instead")
    target = model_args if hasattr(model_args, key) else args
    if not hasattr(target, key):
        raise ValueError(f"{where} sets unknown argument {key!r}")
    return target


def order_key(order: list[str]) -> str:
    return ">".join(order)


def environment(args: ContinualTrainingArguments) -> dict:
    import adapters
    import datasets
    import torch
    import transformers

    from . import __version__
    from .precision import hardware, resolve_precision, training_precision

    cpu = hardware("cpu")
    return {
        "kemdy_adapters": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "adapters": adapters.__version__,
        "datasets": datasets.__version__,
        "device": str(args.device),
        "processes": args.world_size,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu": cpu["cpu"],
        "cpu_isa": cpu["cpu_isa"],
        "train_precision": training_precision(args),
        "inference_precision": resolve_precision(args.inference_precision, args.device),
    }


class Benchmark:
    """Runs the cells in order (fold, then strategy, then order) and rewrites the report after each."""

    def __init__(self, bench: BenchmarkArguments, model_args: ModelArguments, data_args: DataArguments,
                 args: ContinualTrainingArguments, callbacks: list | None = None, status_line: bool = True):
        check_cells(bench, data_args)
        if bench.cell_processes > 1 and args.world_size > 1:
            raise ValueError(f"cell_processes {bench.cell_processes} runs cells side by side in one process each; "
                             f"it cannot be combined with {args.world_size} distributed processes")
        self.bench, self.model_args, self.data_args, self.args = bench, model_args, data_args, args
        self.callbacks = callbacks or []
        self.status_line = status_line
        for name, settings in bench.strategy_overrides.items():  # every setting checked before any work starts
            for key in settings:
                setting_target(key, model_args, args, f"strategy_overrides[{name!r}]")
        for key in bench.tuning_grid:
            setting_target(key, model_args, args, "tuning_grid")
        self.output = ensure_writable(args.output_dir)
        if not args.console_logs:
            import datasets

            datasets.disable_progress_bars()  # the console shows progress per cell; details go to the logs
        self.layout = BenchmarkLayout(self.output)
        self.orders = bench.order_lists()
        tasks = {task for order in self.orders for task in order}
        if any(sorted(order) != sorted(tasks) or len(set(order)) != len(order) for order in self.orders):
            raise ValueError(f"every order must hold the same distinct tasks, got {self.orders}")
        self.tasks = sorted(tasks)
        self.task_locations = {**args.task_locations, **bench.task_locations}
        self.seeds = list(bench.seeds) if bench.seeds else [args.seed]
        self.cells = [
            Cell(strategy, fold, list(order), seed)
            for fold in bench.folds
            for seed in self.seeds
            for strategy in bench.strategies
            for order in (self.orders if get_strategy(strategy).carries_model else self.orders[:1])
        ]
        self._processor = None
        self._data: dict[int, dict] = {}
        self._corpora: dict = {}
        self._resolved: dict | None = None
        self._pool: WorkerPool | None = None
        self.tuning = read_json(self.layout.tuning) if bench.tuning_grid else None

    def cell_layout(self, cell: Cell):
        return self.layout.cell(cell.strategy, cell.fold, cell.order, cell.seed if self.bench.seeds else None)

    def _fold_data(self, fold: int) -> dict:
        """Each fold's prepared splits, shared by every strategy and order. Every corpus is prepared once and each
        fold selects its rows from it (so the speech cache, too, is computed once per corpus); cells run fold by
        fold, so only the current fold's selection is kept."""
        if fold not in self._data:
            if self._processor is None:
                self._processor = make_processor(self.model_args, self.data_args)
            data = load_fold(self.data_args, self.args, self._specs(), fold, self._processor, self._corpora)
            self._corpora = {task: splits.corpus for task, splits in data.items()}
            self._data = {fold: data}
        return self._data[fold]

    def _cell_args(self, cell: Cell, output_dir: Path | None = None, overrides: dict | None = None):
        args = copy.deepcopy(self.args)
        args.strategy = cell.strategy
        args.tasks = list(cell.order)
        args.seed = cell.seed
        args.task_locations = dict(self.task_locations)
        if not get_strategy(cell.strategy).receives:
            args.from_tasks = []  # received tasks join only the strategies that keep them untouched
        args.output_dir = str(output_dir or self.cell_layout(cell).root)
        model_args = copy.deepcopy(self.model_args)
        settings = {**self.bench.strategy_overrides.get(cell.strategy, {}), **(overrides or {})}
        for key, value in settings.items():
            setattr(setting_target(key, model_args, args, f"the settings of {cell.strategy}"), key, value)
        data_args = copy.deepcopy(self.data_args)
        data_args.fold = cell.fold
        return model_args, data_args, args

    def run_cell(self, cell: Cell, output_dir: Path | None = None, overrides: dict | None = None) -> dict:
        model_args, data_args, args = self._cell_args(cell, output_dir, overrides)
        return ContinualRun(model_args, data_args, args, data=self._fold_data(cell.fold),
                            callbacks=self.callbacks, status_line=self.status_line).run()

    def do_job(self, job: tuple) -> dict | None:
        """One job: `(label, "cell", cell, output_dir, overrides)` returns the run's results, `(label, "floors",
        folds)` computes those folds' floors."""
        if job[1] == "floors":
            for fold in job[2]:
                self.run_floors(fold)
            return None
        return self.run_cell(*job[2:])

    def _run_jobs(self, jobs: list[tuple], on_start, on_done=None) -> None:
        """Runs jobs (`do_job`), here one after another or `cell_processes` at a time; `on_done(job, results)` gets
        a cell's results here, None from a worker (they are in the run's folder)."""
        on_done = on_done or (lambda job, results: None)
        if self.bench.cell_processes == 1:
            with torch_threads(self.bench.cell_threads):
                for job in jobs:
                    on_start(job)
                    on_done(job, self.do_job(job))
            return
        if self._pool is None:  # started once, for the trials and the cells
            parts = (self.bench, self.model_args, self.data_args, self.args, self.callbacks)
            threads = self.bench.cell_threads or threads_per_worker(self.bench.cell_processes)
            initargs = (parts, threads, logging.getLogger().level)
            self._pool = WorkerPool(self.bench.cell_processes, _start_worker, initargs)
        self._pool.run(jobs, _work, on_start, lambda job: on_done(job, None))

    def chosen_settings(self, strategy: str) -> dict:
        return self.tuning["strategies"][strategy]["settings"] if self.tuning else {}

    def _specs(self) -> dict:
        """Every task's spec, resolved (and its corpus folder checked) once per benchmark."""
        if self._resolved is None:
            self._resolved = {task: self.data_args.task_spec(task, self.task_locations) for task in self.tasks}
        return self._resolved

    def run_floors(self, fold: int) -> dict:
        """The floors of every task's test set in `fold` (floors/fold<k>.json; computed once)."""
        from .baselines import dimension_floor_scores, floor_inputs, floor_scores
        from .tasks import task_splits

        path = self.layout.floors(fold)
        dimensional = [task for task, spec in self._specs().items()
                       if spec.dimensions and self.model_args.dimension_weight > 0]
        if path.exists():
            floors = read_json(path)
            if all("dimensions" in floors.get(task, {}) for task in dimensional):
                return floors
        floors = {}
        for task, spec in self._specs().items():
            dataset = spec.load(cache_dir=self.data_args.dataset_cache_dir)
            splits = task_splits(dataset, fold, n_folds=self.data_args.n_folds, fold_seed=self.data_args.fold_seed)
            inputs = floor_inputs(splits, self.data_args.max_speech_seconds, where=spec.location or task)
            floors[task] = floor_scores(inputs, len(spec.labels), seed=fold)
            if task in dimensional:  # valence/arousal floors, for the tasks that learn them
                floors[task]["dimensions"] = dimension_floor_scores(inputs)
        if self.args.should_save:
            write_json(path, floors)
        return floors

    def collect_floors(self) -> dict:
        """Per task and floor: each metric's summary over the folds whose floors are computed."""
        per_fold = [read_json(self.layout.floors(fold)) for fold in self.bench.folds]
        per_fold = [floors for floors in per_fold if floors]
        result = {}
        for task in self.tasks:
            result[task] = {}
            for kind in FLOORS:
                rows = [floors[task][kind] for floors in per_fold if floors.get(task, {}).get(kind)]
                result[task][kind] = {metric: summarize([row[metric] for row in rows]) for metric in METRICS
                                      } if rows else None
            dimensional = [floors[task]["dimensions"] for floors in per_fold
                           if (floors.get(task) or {}).get("dimensions")]
            if dimensional:
                result[task]["dimensions"] = {
                    kind: {metric: summarize([row[kind][metric] for row in dimensional])
                           for metric in DIMENSION_METRICS} for kind in DIMENSION_FLOORS}
        return result if per_fold else {}

    # ----------------------------------------------------------------------------------------------- tuning
    def tuning_orders(self) -> list[list[str]]:
        if not self.bench.tuning_orders:
            return self.orders
        wanted = [split_task_items(order.split(","))[0] for order in self.bench.tuning_orders]
        unknown = [order for order in wanted if order not in self.orders]
        if unknown:
            raise ValueError(f"tuning_orders {unknown} are not among the orders {self.orders}")
        return wanted

    def tune(self, first: list[tuple] = ()) -> dict:
        """Runs every strategy's trials on the tuning fold and chooses by the rule in tuning.py; tuning.json.
        `first`: jobs to run in the same pass, before the trials (the floors, beside them in `cell_processes`)."""
        grid = self.bench.tuning_grid
        budget = self.bench.tuning_trials or min(
            len(strategy_grid(grid, get_strategy(name))) for name in self.bench.strategies)
        fold, seed, orders = self.bench.folds[0], self.seeds[0], self.tuning_orders()
        record = {"rule": TUNING_RULE, "criterion": f"validation {CRITERION_METRIC}", "grid": grid, "budget": budget,
                  "fold": fold, "seed": seed, "orders": [order_key(order) for order in orders], "strategies": {}}
        plan = {name: list(enumerate(trials(grid, get_strategy(name), budget, self.args.seed)))
                for name in self.bench.strategies}

        def trial_orders(name: str) -> list[list[str]]:
            return orders if get_strategy(name).carries_model else orders[:1]

        jobs = [*first, *(
                (f"[tuning] {name} trial {number + 1}: {format_settings(settings, '=')}, fold {fold} "
                 f"{'->'.join(task.upper() for task in order)}", "cell", Cell(name, fold, list(order), seed),
                 self.layout.trial(name, number, fold, order).root, settings)
                for name, points in plan.items() for number, settings in points for order in trial_orders(name)
                if not self.layout.trial(name, number, fold, order).results.exists())]
        ran: dict = {}  # what each trial run here returned (distributed: what every process saw)

        def keep(job: tuple, results: dict | None) -> None:
            if job[1] == "cell":
                ran[str(job[3])] = results

        self._run_jobs(jobs, on_start=lambda job: self._say(job[0]), on_done=keep)
        for name, points in plan.items():
            strategy = get_strategy(name)
            outcomes = []
            for number, settings in points:
                scores, earlier, new = [], [], []
                for order in trial_orders(name):
                    folder = self.layout.trial(name, number, fold, order)
                    result = ran.get(str(folder.root)) or read_json(folder.results)
                    scores.append(criterion(result, strategy))
                    last = result["validation_matrix"][CRITERION_METRIC][-1]
                    if strategy.carries_model and len(last) > 1:
                        earlier.append(float(np.mean([v for v in last[:-1] if v is not None])))
                        new.append(last[-1])
                defined = [score for score in scores if score is not None]
                outcomes.append({"trial": number, "settings": settings,
                                 "criterion": float(np.mean(defined)) if defined else None,
                                 "earlier_tasks": float(np.mean(earlier)) if earlier else None,
                                 "new_task": float(np.mean(new)) if new else None})
            best = max(outcomes, key=lambda item: (item["criterion"] is not None, item["criterion"] or 0.0,
                                                   -item["trial"]))
            record["strategies"][name] = {"trials": outcomes, "chosen": best["trial"], "settings": best["settings"]}
            if self.args.should_save:
                write_json(self.layout.tuning, record)
        return record

    def _reuse_trial(self, cell: Cell) -> bool:
        """The tuning fold's cells are the chosen trial's runs: copy them instead of training again."""
        if not self.tuning or cell.fold != self.tuning["fold"] or cell.seed != self.tuning["seed"]:
            return False
        chosen = self.tuning["strategies"][cell.strategy]["chosen"]
        source = self.layout.trial(cell.strategy, chosen, cell.fold, cell.order)
        if not source.results.exists() or not self.args.should_save:
            return False
        target = self.cell_layout(cell).root
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source.root, target)
        return True

    def run(self) -> dict:
        """Runs every unfinished cell (holding the folder's lock, see `storage.RunLock`) and returns results."""
        if not self.args.should_save:
            return self._run()
        with RunLock(self.output, command="kemdy-adapters benchmark"):
            return self._run()

    def _run(self) -> dict:
        try:
            return self._run_all()
        finally:
            if self._pool is not None:
                pool, self._pool = self._pool, None
                pool.close(failed=sys.exc_info()[0] is not None)

    def _run_all(self) -> dict:
        started = time.time()
        total = len(self.cells)
        self.write_report()  # valid from the start: progress 0 of N, or what an earlier invocation finished
        floors = [fold for fold in self.bench.folds if not self.layout.floors(fold).exists()]
        side_jobs = []  # with cell_processes, the floors are computed in a worker beside the first runs
        if self.bench.floors and floors and self.bench.cell_processes > 1:
            side_jobs = [(f"floors of fold{'s' * (len(floors) > 1)} {', '.join(map(str, floors))} (beside the "
                          "training): majority class, chance, eGeMAPS + TF-IDF linear baseline", "floors", floors)]
        elif self.bench.floors:
            for fold in floors:
                self._say(f"floors of fold {fold}: majority class, chance, eGeMAPS + TF-IDF linear baseline")
                self.run_floors(fold)
            self.write_report()
        if self.bench.tuning_grid:
            self.tuning, side_jobs = self.tune(first=side_jobs), []
            self.write_report()
        jobs = []
        for position, cell in enumerate(self.cells, start=1):
            seed = f" seed {cell.seed}" if self.bench.seeds else ""
            label = (f"[{position}/{total}] {cell.strategy} fold {cell.fold}{seed} "
                     f"{'->'.join(task.upper() for task in cell.order)}")
            if self.cell_layout(cell).results.exists():
                self._say(f"{label}: done already, skipped")
            elif self._reuse_trial(cell):
                self._say(f"{label}: the chosen tuning trial's run")
            else:
                jobs.append((label, "cell", cell, None, self.chosen_settings(cell.strategy)))
        cells = len(jobs)
        jobs = [*side_jobs, *jobs]
        cells_started, finished = time.time(), []  # the estimate of what is left counts the cells' time only

        def on_start(job: tuple) -> None:
            if job[1] != "cell":
                self._say(job[0])
                return
            left = cells - len(finished)
            estimate = (f", about {_duration((time.time() - cells_started) / len(finished) * left)} left"
                        if finished else "")
            self._say(f"{job[0]} (elapsed {_duration(time.time() - started)}{estimate})")

        def on_done(job: tuple, results) -> None:
            if job[1] == "cell":
                finished.append(job)
            self.write_report()

        self._run_jobs(jobs, on_start, on_done)
        results = self.write_report(figures=self.bench.figures)
        self._say(f"benchmark finished in {_duration(time.time() - started)}: {self.layout.report}")
        return results

    def _say(self, line: str) -> None:
        if self.args.should_save:
            print(line, flush=True)

    # ------------------------------------------------------------------------------------------ aggregation
    def collect(self) -> dict:
        strategies, labels, received = {}, {}, []
        for strategy in self.bench.strategies:
            cells = []
            for cell in [cell for cell in self.cells if cell.strategy == strategy]:
                result = read_json(self.cell_layout(cell).results)
                if result is not None:
                    cells.append(result)
                    labels.update(result.get("labels", {}))
                    received = received or result.get("received", [])
            if cells:
                strategies[strategy] = aggregate_strategy(strategy, cells, self.orders)
        return {
            "tasks": self.tasks,
            "orders": [order_key(order) for order in self.orders],
            "strategy_records": {name: asdict(get_strategy(name)) for name in self.bench.strategies},
            "labels": {task: labels[task] for task in self.tasks if task in labels},
            "received": received,
            "seeds": self.seeds,
            "floors": self.collect_floors() if self.bench.floors else {},
            "tuning": self.tuning,
            "strategies": strategies,
            "comparisons": compare_strategies(strategies),
            "progress": {"finished": sum(s["cells"] for s in strategies.values()), "total": len(self.cells)},
            "published": PUBLISHED,
            "note": self.bench.note,
            "config": {
                "benchmark": asdict(self.bench),
                "model": asdict(self.model_args),
                "data": asdict(self.data_args),
                "training": {key: _plain(value) for key, value in self.args.to_dict().items()},
            },
            "environment": environment(self.args),
        }

    def write_report(self, figures: bool = False) -> dict:
        from .report import render_markdown, write_figures

        results = self.collect()
        if self.args.should_save:
            write_json(self.layout.results, results)
            markdown = render_markdown(results)
            temporary = self.output / ".results.md.tmp"
            temporary.write_text(markdown, encoding="utf-8")
            temporary.replace(self.layout.report)
            if figures and results["strategies"]:
                write_figures(results, self.layout.figures, self._confusions())
        return results

    def _confusions(self) -> dict:
        """Per strategy and task: the confusion matrix after the whole sequence in the order where the task was
        learned first (task_a: alone), summed over folds."""
        sums: dict = {}
        for cell in self.cells:
            result = read_json(self.cell_layout(cell).results)
            if result is None:
                continue
            order = cell.order
            alone = not get_strategy(cell.strategy).carries_model
            for task in order if alone else order[:1]:
                matrix = result["confusion"][task if alone else order[-1]][task]
                if matrix is None:
                    continue
                key = (cell.strategy, task)
                sums[key] = (np.array(matrix) + sums[key]) if key in sums else np.array(matrix)
        return sums


def aggregate_strategy(strategy: str, cells: list[dict], orders: list[list[str]]) -> dict:
    """Folds, final scores (mean and std over folds) per order and task, BWT and forgetting per metric (the
    valence/arousal metrics too, where the cells scored them)."""
    alone = not get_strategy(strategy).carries_model
    metrics = METRICS + tuple(metric for metric in DIMENSION_METRICS
                              if all(metric in cell["matrix"] for cell in cells))
    final = {}
    for order in orders:
        same = [cell for cell in cells if cell["order"] == order or alone]
        per_task = {}
        for task in order:
            per_task[task] = {}
            for metric in metrics:
                values, folds = [], []
                for cell in same:
                    j = cell["order"].index(task)
                    row = j if alone else len(cell["order"]) - 1
                    values.append(cell["matrix"][metric][row][j])
                    folds.append(cell["fold"])
                per_task[task][metric] = summarize(values, folds)
        final[order_key(order)] = per_task
    summary = {
        kind: {metric: summarize([cell["summary"][metric][kind] for cell in cells], [cell["fold"] for cell in cells])
               for metric in metrics}
        for kind in ("bwt", "forgetting", "average")
    }
    aggregated = {
        "cells": len(cells),
        "scenario": cells[0].get("scenario"),
        "folds": [{"fold": cell["fold"], "seed": cell.get("seed"), "order": cell["order"], "matrix": cell["matrix"],
                   "average": {metric: cell["summary"][metric]["average"] for metric in metrics}}
                  for cell in cells],
        "final": final,
        "bwt": summary["bwt"],
        "forgetting": summary["forgetting"],
        "average": summary["average"],
        "trainable_parameters": max(cell["trainable_parameters"] for cell in cells),
        "export_bytes": max(cell["export_bytes"] for cell in cells),
        "train_seconds": float(sum(cell["train_seconds"] for cell in cells)),
    }
    if not alone:
        aggregated["forgetting_by_task"] = forgetting_by_task(cells, metrics)
    agnostic = aggregate_agnostic([cell for cell in cells if cell.get("task_agnostic")])
    if agnostic:
        aggregated["task_agnostic"] = agnostic
    return aggregated


def forgetting_by_task(cells: list[dict], metrics) -> dict:
    """Each task's forgetting (right after learning it minus after the last task) over the cells where another task
    was learned after it: the average over tasks can hide one task forgotten behind another that gained."""
    drops: dict[str, dict[str, list]] = {}
    for cell in cells:
        for metric in metrics:
            for task, drop in zip(cell["order"], task_forgetting(cell["matrix"][metric])):
                drops.setdefault(task, {}).setdefault(metric, []).append((drop, cell["fold"]))
    return {task: {metric: summarize(*zip(*pairs)) for metric, pairs in per_metric.items()}
            for task, per_metric in drops.items()}


def aggregate_agnostic(cells: list[dict]) -> dict | None:
    """Task-aware versus task-agnostic scores after the whole sequence, over cells (folds and orders) and tasks:
    `aware` uses each task's own adapters (the last row of R), `agnostic` the adapters the router chose."""
    if not cells:
        return None
    methods = list(cells[0]["task_agnostic"]["routing_accuracy"])
    aware = {metric: [] for metric in METRICS}
    agnostic = {metric: [] for metric in METRICS}
    folds = []
    for cell in cells:
        for j, task in enumerate(cell["order"]):
            folds.append(cell["fold"])
            for metric in METRICS:
                aware[metric].append(cell["matrix"][metric][-1][j])
                agnostic[metric].append(cell["task_agnostic"]["scores"][task][metric])
    return {
        "method": cells[0]["task_agnostic"]["method"],
        "routing_accuracy": {method: summarize([cell["task_agnostic"]["routing_accuracy"][method] for cell in cells],
                                               [cell["fold"] for cell in cells]) for method in methods},
        "aware": {metric: summarize(values, folds) for metric, values in aware.items()},
        "agnostic": {metric: summarize(values, folds) for metric, values in agnostic.items()},
    }


COMPARED_METRICS = ("macro_f1", "uar", "weighted_f1")


def compare_strategies(strategies: dict) -> list[dict]:
    """Paired comparisons of every two strategies on the cells they share (same fold, seed and order; a
    strategy that trains each task alone or jointly pairs with every order of its fold and seed): the final
    average over tasks (the last row of R; task_a: every task's own score), first minus second."""
    names = list(strategies)
    comparisons = []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            a, b = _cell_averages(first, strategies[first]), _cell_averages(second, strategies[second])
            ordered = sorted({key for key in (*a, *b) if key[2] is not None}, key=str)
            keys = ordered or sorted(set(a) & set(b), key=str)
            matched = [(_pick(a, key), _pick(b, key), key[0]) for key in keys]
            matched = [(x, y, fold) for x, y, fold in matched if x is not None and y is not None]
            if matched:
                comparisons.append({
                    "first": first, "second": second, "quantity": "final average over tasks",
                    **{metric: paired([x[metric] for x, _, _ in matched], [y[metric] for _, y, _ in matched],
                                      [fold for _, _, fold in matched])
                       for metric in COMPARED_METRICS}})
    return comparisons


def _cell_averages(name: str, data: dict) -> dict:
    """(fold, seed, order key or None for order-free strategies) -> the cell's final averages."""
    alone = not get_strategy(name).carries_model
    return {(cell["fold"], cell.get("seed"), None if alone else order_key(cell["order"])): cell["average"]
            for cell in data["folds"]}


def _pick(cells: dict, key: tuple):
    return cells.get(key, cells.get((key[0], key[1], None)))


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return str(value)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


_WORKER: Benchmark | None = None
"""In a worker process of `cell_processes`: the benchmark whose cells it trains."""


def _start_worker(parts: tuple, threads: int, level: int) -> None:
    import torch

    global _WORKER
    torch.set_num_threads(threads)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    _WORKER = Benchmark(*parts, status_line=False)  # one status line per console: the cell lines of the parent


def _work(*job) -> None:
    _WORKER.do_job(job)  # the results are in the run's folder


def check_cells(bench: BenchmarkArguments, data_args: DataArguments) -> None:
    """Refuses a benchmark that would run no cell, or cells that cannot exist, before any work."""
    bad = [fold for fold in bench.folds if not 0 <= fold < data_args.n_folds]
    if bad or not bench.folds:
        raise ValueError(f"folds must be distinct values in 0..{data_args.n_folds - 1} (n_folds "
                         f"{data_args.n_folds}), got {bench.folds}")
    if len(set(bench.folds)) != len(bench.folds) or (bench.seeds and len(set(bench.seeds)) != len(bench.seeds)):
        raise ValueError(f"folds and seeds must be distinct, got folds {bench.folds}, seeds {bench.seeds}")
    if not bench.strategies or not bench.orders:
        raise ValueError("a benchmark needs at least one strategy and one order")


def parse_benchmark_arguments(argv: list[str] | None = None):
    """Flags, or one YAML/JSON file, into (BenchmarkArguments, ModelArguments, DataArguments, training args)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser((BenchmarkArguments, ModelArguments, DataArguments, ContinualTrainingArguments),
                              prog="kemdy-adapters benchmark")
    bench, model_args, data_args, args = parse_with(parser, argv)
    check_cells(bench, data_args)
    tasks = sorted({task for order in bench.order_lists() for task in order})
    check_task_sources(data_args, tasks, {**args.task_locations, **bench.task_locations})
    return bench, model_args, data_args, args


def main(argv: list[str] | None = None) -> int:
    bench, model_args, data_args, args = parse_benchmark_arguments(argv if argv is not None else sys.argv[1:])
    Benchmark(bench, model_args, data_args, args).run()
    return 0
