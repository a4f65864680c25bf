"""The task loop: learn tasks strictly in sequence, one `ContinualTrainer` per task, and score every task after
every task (the score matrix R).

What a strategy does at each task comes from its record (`strategies.py`); the run folder's files are named in
`layout.py`. A run may start from tasks received from elsewhere (`from_tasks`: Hub repo ids or task folders):
they are loaded frozen before the first task, never trained, and routed among at the end; R has rows and
columns only for the run's own tasks, whose test data it has. A rerun skips finished tasks, rebuilds the model
from their files and resumes an interrupted task from its last Trainer checkpoint: finished work is never
recomputed or lost.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate import PartialState
from transformers import set_seed

from .console import EpochStatus
from .data import CorpusFold, MultimodalCollator, MultimodalProcessor, load_task_splits
from .ewc import EWCState, consolidate, estimate_fisher
from .export import ADAPTER_SETTINGS, HEAD_SETTINGS, read_task_config, seal_task
from .features import feature_encoder_digest, with_speech_features
from .hub import resolve_task as resolve_task_location
from .layout import RunLayout
from .metrics import DIMENSION_METRICS, DIMENSIONS, METRICS, compute_metrics, matrix_summary
from .modeling import MultimodalEmotionModel
from .precision import autocast, resolve_precision, training_precision
from .routing import KINDS, TaskStatistics, load_statistics, save_statistics
from .scoring import score_agnostic, score_row
from .storage import RunLock, ensure_writable, read_json, write_json
from .strategies import SHARED_HEAD, Strategy, get_strategy
from .tasks import TaskSpec
from .tracking import log_score_rows, reports_to_tensorboard
from .trainer import ContinualTrainer
from .training_args import ContinualTrainingArguments, DataArguments, ModelArguments, task_specs

logger = logging.getLogger(__name__)

RUN_SETTINGS = ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "weight_decay", "ewc_lambda",
                "ewc_gamma", "lwf_alpha", "lwf_temperature", "weight_average_decay")
"""The training settings run.json records (what tuning may have chosen), with the model's own (ADAPTER_SETTINGS and
HEAD_SETTINGS of export.py)."""
JOINT_STEP = "_joint"
"""The run folder's step name of a joint strategy (it trains once, on every task)."""


def build_model(model_args: ModelArguments, strategy: Strategy | str) -> MultimodalEmotionModel:
    """The model a strategy starts from: pretrained encoders, or random ones (`adapter_wo_pretrain`)."""
    strategy = get_strategy(strategy) if isinstance(strategy, str) else strategy
    return MultimodalEmotionModel.from_encoders(
        model_args.text_model,
        model_args.speech_model,
        pretrained=strategy.pretrained,
        projector_size=model_args.projector_size,
        dropout=model_args.dropout,
        adapter_method=model_args.adapter_method,
        adapter_reduction_factor=model_args.adapter_reduction_factor,
        lora_r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        speech_frozen_layers=model_args.speech_frozen_layers,
        adapter_non_linearity=model_args.adapter_non_linearity,
        adapter_init=model_args.adapter_init,
        task_layer_norms=model_args.task_layer_norms,
        dimension_loss=model_args.dimension_loss,
        dimension_weight=model_args.dimension_weight,
        text_pooling=model_args.text_pooling,
        speech_pooling=model_args.speech_pooling,
        modality_dropout=model_args.modality_dropout,
    )


def make_processor(model_args: ModelArguments, data_args: DataArguments) -> MultimodalProcessor:
    """The text tokenizer and waveform preparation of the run's checkpoints and data settings."""
    return MultimodalProcessor.from_checkpoints(
        model_args.text_model, model_args.speech_model, max_text_length=data_args.max_text_length,
        max_speech_seconds=data_args.max_speech_seconds)


def load_fold(data_args: DataArguments, args: ContinualTrainingArguments, specs: dict[str, TaskSpec], fold: int,
              processor: MultimodalProcessor, corpora: dict | None = None) -> dict:
    """Each task's train/validation/test inputs of session fold `fold` (`specs`: task name -> `TaskSpec`;
    `corpora`: task name -> its prepared corpus, when already prepared for another fold)."""
    corpora = corpora or {}
    # The main process fills the datasets cache first; the others then read it instead of racing to write it.
    with args.main_process_first(desc="loading and preparing the corpora"):
        return {
            task: load_task_splits(spec, None, fold, processor, cache_dir=data_args.dataset_cache_dir,
                                   n_folds=data_args.n_folds, fold_seed=data_args.fold_seed,
                                   corpus=corpora.get(task))
            for task, spec in specs.items()
        }


def _is_main(args: ContinualTrainingArguments) -> bool:
    """Whether this process writes the run's files (Trainer's own rule: `TrainingArguments.should_save`)."""
    return args.should_save


def _barrier() -> None:
    """Every process waits here for the others (accelerate's `wait_for_everyone`; nothing in one process)."""
    PartialState().wait_for_everyone()


class ContinualRun:
    """One strategy on one task order and fold.

    Args:
        model_args, data_args, args: The three argument groups (see `training_args.py`).
        data: Optional prepared splits per task (`{task: DatasetDict(train, validation, test)}`); loaded from
            `data_args` (or `specs`) when not given.
        callbacks: Extra `TrainerCallback`s for every task's Trainer.
        status_line: Whether a terminal shows the epoch status line (off in a benchmark's worker processes).
        specs: Optional `{task: TaskSpec}` (e.g. `TaskSpec.from_dataset` for a Python dataset); resolved from the
            arguments when not given.

    Example (the generated sample corpus and the shipped small encoders; on real data name the corpora and
    checkpoints, e.g. `--tasks kemdy19 clinic=/data/clinic --data_dir /data`):

    >>> import tempfile
    >>> from kemdy_adapters.continual import ContinualRun
    >>> from kemdy_adapters.pretrain import SHIPPED_ENCODERS
    >>> from kemdy_adapters.sample_corpus import write_sample_corpus
    >>> from kemdy_adapters.training_args import parse_arguments
    >>> work = tempfile.mkdtemp()
    >>> corpus = write_sample_corpus(f"{work}/corpus")
    >>> run = ContinualRun(*parse_arguments([
    ...     "--strategy", "adapter", "--data_dir", str(corpus), "--output_dir", f"{work}/run",
    ...     "--text_model", str(SHIPPED_ENCODERS / "text"), "--speech_model", str(SHIPPED_ENCODERS / "speech"),
    ...     "--num_train_epochs", "1", "--learning_rate", "1e-2", "--use_cpu", "true", "--disable_tqdm", "true"]))
    >>> results = run.run()
    >>> matrix = results["matrix"]["macro_f1"]  # R[i][j]: after learning task i, scored on task j
    >>> len(matrix), matrix[1][0] == matrix[0][0]  # adapters: the first task's score does not move
    (2, True)
    """

    def __init__(
        self,
        model_args: ModelArguments,
        data_args: DataArguments,
        args: ContinualTrainingArguments,
        data: dict | None = None,
        callbacks: list | None = None,
        specs: dict[str, TaskSpec] | None = None,
        status_line: bool = True,
    ):
        self.model_args, self.data_args, self.args = model_args, data_args, args
        self.strategy = get_strategy(args.strategy)
        self.order = list(args.tasks)
        self.layout = RunLayout(args.output_dir)
        self.output = self.layout.root
        self.callbacks = callbacks or []
        self.status_line = status_line
        if self.strategy.consolidates and len(self.order) < 2:
            raise ValueError(f"strategy {self.strategy.name!r} needs at least two tasks: it consolidates an earlier "
                             "task")
        ensure_writable(self.output)
        if not args.console_logs:
            datasets.disable_progress_bars()  # the console shows progress per cell; details go to the logs
        self.received = self._receive(args.from_tasks)
        self.processor = make_processor(model_args, data_args)
        self.collator = MultimodalCollator(self.processor.tokenizer)
        if data is None:
            data = load_fold(data_args, args, specs or task_specs(data_args, args), data_args.fold, self.processor)
        self.data = data
        for task in self.order:
            if task not in self.data:
                raise ValueError(f"no data for task {task!r}")
            for split in ("train", "validation", "test"):
                if len(self.data[task][split]) == 0:
                    raise ValueError(f"task {task!r} has no {split} data in fold {data_args.fold}")
        self.labels = {task: tuple(self.data[task]["train"].features["label"].names) for task in self.order}
        self.modalities = {task: self._modalities(task) for task in self.order}
        self.dimensions = {task: self._dimensions(task) for task in self.order}
        self.shared_head = self.strategy.heads_shared(list(self.labels.values()))
        self.model: MultimodalEmotionModel | None = None
        self.model_step = -1  # index of the last task the in-memory model has learned
        self._features: dict[str, dict] = {}

    def _modalities(self, task: str) -> tuple[str, ...]:
        """`("speech", "text")`, or `("speech",)` when none of the task's utterances has a transcript."""
        splits = self.data[task].values()
        if any("text_present" not in split.column_names for split in splits):
            return ("speech", "text")  # prepared without the flag: every utterance has its transcript
        has_text = any(np.any(np.asarray(split["text_present"]) > 0) for split in splits)
        return ("speech", "text") if has_text else ("speech",)

    def _dimensions(self, task: str) -> tuple[str, ...]:
        """The task's regression outputs: valence and arousal where `dimension_weight` > 0 and its data has them."""
        if self.model_args.dimension_weight <= 0:
            return ()
        has = all("dimension_targets" in split.column_names for split in self.data[task].values())
        return DIMENSIONS if has else ()

    def _receive(self, locations: list[str]) -> list[dict]:
        """The tasks received from elsewhere: where they are, their config (checked before any training)."""
        received, names = [], set()
        for location in locations:
            folder = resolve_task_location(location)
            config = read_task_config(folder)
            name = config["task"]
            if name in self.order or name in names:
                raise ValueError(f"{location}: received task {name!r} is also "
                                 f"{'a task of this run' if name in self.order else 'received twice'}")
            if not config["adapters"]:
                raise ValueError(f"{location}: task {name!r} has no adapters; only adapter tasks can be received")
            names.add(name)
            received.append({"task": name, "source": str(location), "folder": folder, "labels": config["labels"],
                             "weights_sha256": config.get("weights_sha256")})
        return received

    def _inputs(self, model: MultimodalEmotionModel) -> dict:
        """The splits the model trains and is scored on: with the frozen speech part's output cached per
        utterance (once per corpus and encoder, see features.py) unless `cache_speech_features` is off."""
        if not self.args.cache_speech_features:
            return self.data
        digest = feature_encoder_digest(model)
        if digest not in self._features:
            with self.args.main_process_first(desc="caching speech features"):
                self._features[digest] = {task: self._with_features(splits, model)
                                          for task, splits in self.data.items()}
        return self._features[digest]

    @staticmethod
    def _with_features(splits, model: MultimodalEmotionModel) -> dict:
        if isinstance(splits, CorpusFold):  # once for the whole corpus, each fold selects its rows
            return splits.select_from(with_speech_features(splits.corpus, model))
        return {name: with_speech_features(split, model) for name, split in splits.items()}

    # ------------------------------------------------------------------------------------------ model state
    def _fresh_model(self) -> MultimodalEmotionModel:
        """The strategy's starting model with the received tasks loaded (frozen, checked against its base)."""
        # Seeded: random weights (adapter_wo_pretrain, or any a checkpoint lacks, e.g. an MLM-only BERT's pooler)
        # must be the same in every process and on every rerun.
        set_seed(self.args.seed)
        if self.strategy.pretrained:
            model = build_model(self.model_args, self.strategy)
        elif not (self.layout.base / "config.json").exists():
            model = build_model(self.model_args, self.strategy)
            if _is_main(self.args):
                model.save_pretrained(self.layout.base)
            _barrier()
        else:
            model = MultimodalEmotionModel.from_pretrained(self.layout.base)
        for task in self.received:
            model.load_task(task["folder"], expected_labels=task["labels"], same_base=True,
                            allow_unverified=self.args.allow_unverified_tasks)
        return model

    def _model_before(self, index: int) -> MultimodalEmotionModel:
        """The model as it was right after task `index - 1` (fresh for the first task, and for task_a)."""
        if self.model is not None and self.model_step == index - 1 and self.strategy.carries_model:
            return self.model
        if index == 0 or not self.strategy.carries_model:
            return self._fresh_model()
        if self.strategy.adapters:
            model = self._fresh_model()
            for task in self.order[:index]:
                model.load_task(self.layout.export(task), expected_labels=list(self.labels[task]))
            return model
        return MultimodalEmotionModel.from_pretrained(self.layout.model(self.order[index - 1]))

    def _head(self, task: str) -> str:
        return SHARED_HEAD if self.shared_head else task

    def _prepare_strategy(self, model: MultimodalEmotionModel, task: str) -> str:
        """Adds what the task trains and freezes the rest; returns the head name the task is trained with."""
        head = self._head(task)
        if head not in model.tasks:
            modalities = ("speech", "text") if self.shared_head else self.modalities[task]
            dimensions = self._common_dimensions() if self.shared_head else self.dimensions[task]
            model.add_task(head, self.labels[task], adapters=self.strategy.adapters, modalities=modalities,
                           dimensions=dimensions)
        model.train_task(head, full=not self.strategy.adapters)
        return head

    def _common_dimensions(self) -> tuple[str, ...]:
        """A shared head's regression outputs: those every task has."""
        return tuple(name for name in DIMENSIONS if all(name in self.dimensions[task] for task in self.order))

    def _scored_heads(self, model: MultimodalEmotionModel, task: str) -> dict[str, str | None]:
        """Task -> the head that scores it after `task` (None: not scorable yet, or task_a's other tasks)."""
        if not self.strategy.carries_model:
            return {other: self._head(other) if other == task else None for other in self.order}
        return {other: self._head(other) if self._head(other) in model.tasks else None for other in self.order}

    # ----------------------------------------------------------------------------------------------- loop
    def run(self) -> dict:
        """Trains every unfinished task in order and returns the sequence's results (also `results.json`),
        holding the run folder's lock (`storage.RunLock`) in the main process."""
        if not _is_main(self.args):
            return self._run()
        with RunLock(self.output, command=f"kemdy-adapters {self.strategy.name} run"):
            return self._run()

    def _run(self) -> dict:
        if _is_main(self.args):
            write_json(self.layout.run_json, {
                "strategy": self.strategy.name, "order": self.order, "fold": self.data_args.fold,
                "seed": self.args.seed, "received": [_public(task) for task in self.received],
                "settings": {**{key: getattr(self.args, key) for key in RUN_SETTINGS},
                             **{key: getattr(self.model_args, key) for key in (*ADAPTER_SETTINGS, *HEAD_SETTINGS)}},
                "precision": {"train": training_precision(self.args),
                              "inference": resolve_precision(self.args.inference_precision, self.args.device)}})
        if self.strategy.joint:
            if not self.layout.scores(JOINT_STEP).exists():
                self._train_joint()
        for index, task in enumerate([] if self.strategy.joint else self.order):
            if self.layout.scores(task).exists():
                logger.info("%s: task %s already finished, skipped", self.output, task)
                continue
            self._train_task(index, task)
        results = self._collect()
        if _is_main(self.args):
            write_json(self.layout.results, results)
        _barrier()
        return results

    def _task_args(self, task: str) -> ContinualTrainingArguments:
        args = copy.deepcopy(self.args)
        args.output_dir = str(self.layout.checkpoints(task))
        args.logging_dir = str(self.layout.logs(task))
        return args

    def _check_previous(self, index: int, task: str) -> None:
        """A finished earlier task must have left on disk what the next one builds on."""
        if index == 0 or not self.strategy.carries_model:
            return
        previous = self.order[index - 1]
        for relative in self.strategy.needs:
            path = self.layout.task(previous) / relative
            if not path.exists():
                raise FileNotFoundError(f"task {task!r} ({self.strategy.name}) needs {path} from the earlier task "
                                        f"{previous!r}, which is missing; remove {self.output} to start over")

    def _fit(self, model: MultimodalEmotionModel, step: str, train, validation, **extra):
        """One Trainer for one step (a task, or the joint step), resumed from its last checkpoint if any."""
        args = self._task_args(step)
        trainer = ContinualTrainer(
            model=model, args=args, train_dataset=train, eval_dataset=validation, data_collator=self.collator,
            compute_metrics=compute_metrics, callbacks=[*self.callbacks, *self._console(step)], **extra)
        checkpoint = last_complete_checkpoint(args.output_dir, remove_incomplete=_is_main(self.args))
        if checkpoint:
            logger.info("%s: resuming %s from %s", self.output, step, checkpoint)
        return trainer, trainer.train(resume_from_checkpoint=checkpoint)

    def _console(self, step: str) -> list:
        """The status line that follows the step's epochs on a terminal (none with --console_logs: Trainer's own
        lines are printed then), from the process that writes."""
        wanted = self.status_line and not self.args.console_logs and _is_main(self.args)
        return [EpochStatus(step)] if wanted else []

    def _score(self, trainer, model, heads: dict, inputs: dict) -> tuple[dict, dict]:
        """One row of R on the test sessions, and the same row on the validation sessions (what tuning may look
        at; never the test sessions)."""
        with self._inference_precision():
            tests = score_row(trainer, model, heads, {task: inputs[task]["test"] for task in self.order})
            validation = score_row(trainer, model, heads,
                                   {task: inputs[task]["validation"] for task in self.order}, confusions=False)
        return tests, validation

    def _inference_precision(self):
        """Scoring and routing run in `inference_precision` (see precision.py)."""
        return autocast(self.args.inference_precision, self.args.device)

    def _finish(self, step: str, trainer, output, record: dict) -> None:
        """Writes the step's scores.json (the mark of a finished step) and drops its checkpoints."""
        if _is_main(self.args):
            write_json(self.layout.scores(step), {
                "task": step, **record, "best_epoch": _best_epoch(trainer),
                "train_seconds": output.metrics.get("train_runtime", 0.0),
                "log_history": trainer.state.log_history})
            if not self.args.keep_checkpoints:
                shutil.rmtree(trainer.args.output_dir, ignore_errors=True)

    def _train_task(self, index: int, task: str) -> None:
        self._check_previous(index, task)
        model = self._model_before(index)
        # New heads and adapters are initialised from the seed, not from whatever drew random numbers before.
        set_seed(self.args.seed + index)
        extra = {}
        if self.strategy.distills and index > 0:
            # LwF's teacher: the model as the earlier tasks left it, frozen; it answers with the heads it has.
            teacher = copy.deepcopy(model).eval()
            teacher.requires_grad_(False)
            extra.update(teacher=teacher, teacher_heads=list(teacher.tasks))
        head = self._prepare_strategy(model, task)
        if self.strategy.consolidates and index > 0:
            extra["ewc_state"] = EWCState.load(self.layout.ewc(self.order[index - 1]))
        trainable = model.num_parameters(only_trainable=True)
        inputs = self._inputs(model)
        trainer, output = self._fit(model, task, inputs[task]["train"], inputs[task]["validation"], **extra)
        model = trainer.model
        self._check_received_unchanged(model)

        # Persist what the next task (or a rerun) needs, then the scores, which mark the task finished.
        export_bytes = self._persist(model, index, task, head, inputs)
        scores, validation = self._score(trainer, model, self._scored_heads(model, task), inputs)
        agnostic = None
        if self.strategy.adapters and index == len(self.order) - 1 and len(self.order) + len(self.received) > 1:
            agnostic = self._score_agnostic(model, inputs)
        self._finish(task, trainer, output, {
            "head": head, "scores": scores, "validation": validation, "task_agnostic": agnostic,
            "trainable_parameters": trainable, "export_bytes": export_bytes})
        if _is_main(self.args) and reports_to_tensorboard(self.args.report_to):
            rows = [read_json(self.layout.scores(earlier))["scores"] for earlier in self.order[: index + 1]]
            log_score_rows(self.layout.tracker, self.order, rows)
        if _is_main(self.args) and index > 0 and self.strategy.carries_model and not self.strategy.adapters:
            shutil.rmtree(self.layout.model(self.order[index - 1]), ignore_errors=True)
        _barrier()
        self.model, self.model_step = model, index

    def _train_joint(self) -> None:
        """The upper bound: one model, one shared head, trained on the union of every task's training data
        (model selection on the union of their validation sessions), scored on every task's test sessions."""
        if len(set(self.labels.values())) > 1:
            raise ValueError(f"strategy {self.strategy.name!r} needs one label set for all tasks (one shared head); "
                             f"got {sorted(set(self.labels.values()))}")
        model = self._fresh_model()
        set_seed(self.args.seed)
        model.add_task(SHARED_HEAD, self.labels[self.order[0]], adapters=False, dimensions=self._common_dimensions())
        model.train_task(SHARED_HEAD, full=True)
        trainable = model.num_parameters(only_trainable=True)
        inputs = self._inputs(model)
        union = {split: datasets.concatenate_datasets([self._joint_columns(inputs[task][split])
                                                       for task in self.order]) for split in ("train", "validation")}
        trainer, output = self._fit(model, JOINT_STEP, union["train"], union["validation"])
        scores, validation = self._score(trainer, trainer.model, {task: SHARED_HEAD for task in self.order}, inputs)
        self._finish(JOINT_STEP, trainer, output, {
            "head": SHARED_HEAD, "scores": scores, "validation": validation, "task_agnostic": None,
            "trainable_parameters": trainable, "export_bytes": 0})
        _barrier()

    def _joint_columns(self, split: datasets.Dataset) -> datasets.Dataset:
        """A task's split as the union takes it: without valence/arousal targets unless every task has them (the
        shared head learns only what all have, and the union needs one set of columns)."""
        if not self._common_dimensions() and "dimension_targets" in split.column_names:
            return split.remove_columns("dimension_targets")
        return split

    def _check_received_unchanged(self, model: MultimodalEmotionModel) -> None:
        """The received tasks' weights must still be exactly the sender's after a task trained beside them."""
        from safetensors.torch import load_file

        from .export import TASK_WEIGHTS, task_state_dict

        for task in self.received:
            sent = load_file(Path(task["folder"]) / TASK_WEIGHTS)
            now = task_state_dict(model, task["task"])
            changed = [key for key, tensor in sent.items() if not torch.equal(now[key], tensor)]
            if changed:
                raise RuntimeError(f"received task {task['task']!r} changed while training: {changed[:3]}")

    def _persist(self, model: MultimodalEmotionModel, index: int, task: str, head: str, inputs: dict) -> int:
        size = 0
        last = index == len(self.order) - 1
        if self.strategy.consolidates and not last:
            previous = EWCState.load(self.layout.ewc(self.order[index - 1])) if index > 0 else None
            fisher, samples = estimate_fisher(model, inputs[task]["train"], self.collator,
                                              self.args.fisher_samples, self.args.fisher_batch_size,
                                              seed=self.args.seed + index)
            state = consolidate(model, fisher, task, samples, previous=previous, gamma=self.args.ewc_gamma)
            if _is_main(self.args):
                state.save(self.layout.ewc(task))
        if _is_main(self.args):
            if self.strategy.adapters:
                export = self.layout.export(task)
                size = model.save_task(export, task).bytes
                train = self._routing_inputs(inputs)[task]["train"]
                with self._inference_precision():
                    statistics = [TaskStatistics.from_dataset(model, train, self.collator, kind,
                                                              self.args.per_device_eval_batch_size)
                                  for kind in KINDS]
                size += save_statistics(export, statistics).stat().st_size
                seal_task(export)  # the integrity record covers the routing statistics too
            elif self.strategy.carries_model and not last:
                model.save_pretrained(self.layout.model(task))
                size = (self.layout.model(task) / "model.safetensors").stat().st_size
        _barrier()
        return size

    def _routing_inputs(self, inputs: dict) -> dict:
        """Splits with what routing features need: the convolutional features (cached or from the waveform). A
        layer-boundary cache no longer holds them, so then the waveforms are used."""
        first = next(iter(inputs.values()))["train"]
        return self.data if "speech_hidden" in first.column_names else inputs

    def _score_agnostic(self, model: MultimodalEmotionModel, inputs: dict) -> dict | None:
        """Every test utterance of this run's tasks routed among all tasks, received ones included."""
        statistics = {task["task"]: load_statistics(task["folder"]) for task in self.received}
        statistics |= {task: load_statistics(self.layout.export(task)) for task in self.order}
        lacking = sorted(task for task, kinds in statistics.items() if set(KINDS) - set(kinds))
        if lacking:
            logger.warning("no task-agnostic scores: tasks %s have no routing statistics", lacking)
            return None
        tests = {task: split["test"] for task, split in self._routing_inputs(inputs).items() if task in self.order}
        with self._inference_precision():
            return score_agnostic(model, statistics, tests, self.collator, self.args.per_device_eval_batch_size)

    # -------------------------------------------------------------------------------------------- results
    def _collect(self) -> dict:
        if self.strategy.joint:  # one training step: every row of R is the joint model's scores
            rows = [{**read_json(self.layout.scores(JOINT_STEP)), "task": task} for task in self.order]
        else:
            rows = [read_json(self.layout.scores(task)) for task in self.order]
        # Valence/arousal scores (CCC, r, RMSE) get their own matrices where a task learned them.
        metrics = METRICS + (DIMENSION_METRICS if any(self.dimensions.values()) else ())
        matrix, validation = ({
            metric: [[((row.get(key) or {}).get(other) or {}).get(metric) for other in self.order] for row in rows]
            for metric in metrics
        } for key in ("scores", "validation"))
        return {
            "strategy": self.strategy.name,
            "order": self.order,
            "fold": self.data_args.fold,
            "seed": self.args.seed,
            "labels": {task: list(labels) for task, labels in self.labels.items()},
            "modalities": {task: list(modalities) for task, modalities in self.modalities.items()},
            "dimensions": {task: list(dimensions) for task, dimensions in self.dimensions.items()},
            "scenario": self.strategy.scenario(list(self.labels.values())),
            "received": [_public(task) for task in self.received],
            "matrix": matrix,
            "validation_matrix": validation,
            "summary": {metric: matrix_summary(values, sequential=self.strategy.sequential)
                        for metric, values in matrix.items()},
            "confusion": {row["task"]: {other: (row["scores"][other] or {}).get("confusion") for other in self.order}
                          for row in rows},
            "best_epoch": {row["task"]: row["best_epoch"] for row in rows},
            "trainable_parameters": max(row["trainable_parameters"] for row in rows),
            "export_bytes": max(row["export_bytes"] for row in rows),
            "train_seconds": sum(row["train_seconds"] for row in rows),
            "task_agnostic": rows[-1].get("task_agnostic"),
        }


def _public(task: dict) -> dict:
    """What results and run.json record of a received task (no local cache path)."""
    return {key: task[key] for key in ("task", "source", "labels", "weights_sha256")}



def last_complete_checkpoint(folder, remove_incomplete: bool = True) -> str | None:
    """The newest Trainer checkpoint in `folder` that was saved completely (its `trainer_state.json`, which
    Trainer writes last, exists and parses); newer incomplete ones (a process killed while saving) are said and,
    with `remove_incomplete`, removed, so that neither resuming nor checkpoint rotation trips over them."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    numbered = sorted((path for path in folder.iterdir() if path.is_dir() and path.name.startswith("checkpoint-")
                       and path.name.split("-")[-1].isdigit()), key=lambda path: int(path.name.split("-")[-1]))
    for path in reversed(numbered):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            return str(path)
        except (OSError, ValueError):
            logger.warning("%s: incomplete checkpoint (no readable trainer_state.json: the run was stopped while "
                           "saving it) %s", path, "removed" if remove_incomplete else "ignored")
            if remove_incomplete:
                shutil.rmtree(path, ignore_errors=True)
    return None


def _best_epoch(trainer) -> float | None:
    """The epoch of the kept (best validation) step, from the Trainer's own record of it."""
    step = trainer.state.best_global_step
    if step is None:
        return None
    epochs = [entry["epoch"] for entry in trainer.state.log_history if entry.get("step") == step and "epoch" in entry]
    return epochs[0] if epochs else None
