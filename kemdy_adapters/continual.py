"""The task loop: learn tasks strictly in sequence, one `ContinualTrainer` per task, and score every task after
every task (the score matrix R).

A run folder (`args.output_dir`) holds, per task in order:
    <task>/checkpoints/   the Trainer's checkpoints while the task trains (removed once it is finished)
    <task>/export/        adapter strategies: the task's adapters and head (safetensors), and its routing
                          statistics (means and variances of frozen-base features, see routing.py)
    <task>/model/         fine-tuning strategies: the whole model after this task (the previous one is removed)
    <task>/ewc/           ewc: anchor and Fisher after this task
    <task>/scores.json    written last, atomically: the task is finished
and `base/` (adapter_wo_pretrain: the random encoders, so a resumed run rebuilds the same model), then
`results.json` when the sequence is done. A rerun skips finished tasks, rebuilds the model from their files and
resumes an interrupted task from its last Trainer checkpoint: finished work is never recomputed or lost.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint

from .data import MultimodalCollator, MultimodalProcessor, load_task_splits, model_batches
from .ewc import EWCState, consolidate, estimate_fisher
from .features import feature_encoder_digest, with_speech_features
from .metrics import METRICS, classification_scores, compute_metrics, confusion, matrix_summary
from .modeling import MultimodalEmotionModel
from .routing import (
    DEFAULT_KIND,
    KINDS,
    Router,
    TaskStatistics,
    confidence_route,
    load_statistics,
    routing_features,
    save_statistics,
)
from .storage import read_json, write_json
from .trainer import ContinualTrainer
from .training_args import SHARED_HEAD, ContinualTrainingArguments, DataArguments, ModelArguments

logger = logging.getLogger(__name__)

ADAPTER_STRATEGIES = ("adapter", "adapter_wo_pretrain")


def build_model(model_args: ModelArguments, strategy: str) -> MultimodalEmotionModel:
    """The model a strategy starts from: pretrained encoders, or random ones for `adapter_wo_pretrain`."""
    return MultimodalEmotionModel.from_encoders(
        model_args.text_model,
        model_args.speech_model,
        pretrained=strategy != "adapter_wo_pretrain",
        projector_size=model_args.projector_size,
        dropout=model_args.dropout,
        adapter_method=model_args.adapter_method,
        adapter_reduction_factor=model_args.adapter_reduction_factor,
        lora_r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        speech_frozen_layers=model_args.speech_frozen_layers,
    )


def make_processor(model_args: ModelArguments, data_args: DataArguments) -> MultimodalProcessor:
    """The text tokenizer and waveform preparation of the run's checkpoints and data settings."""
    return MultimodalProcessor.from_checkpoints(
        model_args.text_model, model_args.speech_model, max_text_length=data_args.max_text_length,
        max_speech_seconds=data_args.max_speech_seconds)


def load_fold(data_args: DataArguments, args: ContinualTrainingArguments, tasks, fold: int,
              processor: MultimodalProcessor) -> dict:
    """Each task's train/validation/test inputs of session fold `fold`."""
    # The main process fills the datasets cache first; the others then read it instead of racing to write it.
    with args.main_process_first(desc="loading and preparing the corpora"):
        return {
            task: load_task_splits(task, data_args.corpus_dir(task), fold, processor,
                                   cache_dir=data_args.dataset_cache_dir, n_folds=data_args.n_folds,
                                   fold_seed=data_args.fold_seed)
            for task in tasks
        }


def _is_main(args: ContinualTrainingArguments) -> bool:
    return args.process_index == 0


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class ContinualRun:
    """One strategy on one task order and fold.

    Args:
        model_args, data_args, args: The three argument groups (see `training_args.py`).
        data: Optional prepared splits per task (`{task: DatasetDict(train, validation, test)}`); loaded from
            `data_args` when not given.
        callbacks: Extra `TrainerCallback`s for every task's Trainer.
    """

    def __init__(
        self,
        model_args: ModelArguments,
        data_args: DataArguments,
        args: ContinualTrainingArguments,
        data: dict | None = None,
        callbacks: list | None = None,
    ):
        self.model_args, self.data_args, self.args = model_args, data_args, args
        self.order = list(args.tasks)
        self.strategy = args.strategy
        self.output = Path(args.output_dir)
        self.callbacks = callbacks or []
        if self.strategy == "ewc" and len(self.order) < 2:
            raise ValueError("strategy 'ewc' needs at least two tasks: it consolidates an earlier task")
        self.processor = make_processor(model_args, data_args)
        self.collator = MultimodalCollator(self.processor.tokenizer)
        self.data = data if data is not None else load_fold(data_args, args, self.order, data_args.fold,
                                                             self.processor)
        for task in self.order:
            if task not in self.data:
                raise ValueError(f"no data for task {task!r}")
            for split in ("train", "validation", "test"):
                if len(self.data[task][split]) == 0:
                    raise ValueError(f"task {task!r} has no {split} data in fold {data_args.fold}")
        self.model: MultimodalEmotionModel | None = None
        self.model_step = -1  # index of the last task the in-memory model has learned
        self._features: dict[str, dict] = {}

    def _inputs(self, model: MultimodalEmotionModel) -> dict:
        """The splits the model trains and is scored on: with the frozen feature encoder's output cached per
        utterance (once per encoder, see features.py) unless `cache_speech_features` is off."""
        if not self.args.cache_speech_features:
            return self.data
        digest = feature_encoder_digest(model)
        if digest not in self._features:
            with self.args.main_process_first(desc="caching speech features"):
                self._features[digest] = {
                    task: {name: with_speech_features(split, model) for name, split in splits.items()}
                    for task, splits in self.data.items()
                }
        return self._features[digest]

    # ------------------------------------------------------------------------------------------ model state
    def _fresh_model(self) -> MultimodalEmotionModel:
        # Seeded: random weights (adapter_wo_pretrain, or any a checkpoint lacks, e.g. an MLM-only BERT's pooler)
        # must be the same in every process and on every rerun.
        set_seed(self.args.seed)
        if self.strategy != "adapter_wo_pretrain":
            return build_model(self.model_args, self.strategy)
        base = self.output / "base"
        if not (base / "config.json").exists():
            model = build_model(self.model_args, self.strategy)
            if _is_main(self.args):
                model.save_pretrained(base)
            _barrier()
            return model
        return MultimodalEmotionModel.from_pretrained(base)

    def _model_before(self, index: int) -> MultimodalEmotionModel:
        """The model as it was right after task `index - 1` (fresh for the first task, and for task_a)."""
        if self.model is not None and self.model_step == index - 1 and self.strategy != "task_a":
            return self.model
        if index == 0 or self.strategy == "task_a":
            return self._fresh_model()
        previous = self.order[:index]
        if self.strategy in ADAPTER_STRATEGIES:
            model = self._fresh_model()
            for task in previous:
                model.load_task(self.output / task / "export")
            return model
        return MultimodalEmotionModel.from_pretrained(self.output / previous[-1] / "model")

    def _prepare_strategy(self, model: MultimodalEmotionModel, task: str) -> str:
        """Adds what the task trains and freezes the rest; returns the head name the task is trained with."""
        if self.strategy in ADAPTER_STRATEGIES:
            model.add_task(task)
            model.train_task(task)
            return task
        if SHARED_HEAD not in model.tasks:
            model.add_task(SHARED_HEAD, adapters=False)
        model.train_task(SHARED_HEAD, full=True)
        return SHARED_HEAD

    def _head_for(self, model: MultimodalEmotionModel, task: str) -> str | None:
        if self.strategy in ADAPTER_STRATEGIES:
            return task if task in model.tasks else None
        return SHARED_HEAD

    # ----------------------------------------------------------------------------------------------- loop
    def run(self) -> dict:
        """Trains every unfinished task in order and returns the sequence's results (also `results.json`)."""
        if _is_main(self.args):
            write_json(self.output / "run.json", {"strategy": self.strategy, "order": self.order,
                                                  "fold": self.data_args.fold, "seed": self.args.seed})
        for index, task in enumerate(self.order):
            if (self.output / task / "scores.json").exists():
                logger.info("%s: task %s already finished, skipped", self.output, task)
                continue
            self._train_task(index, task)
        results = self._collect()
        if _is_main(self.args):
            write_json(self.output / "results.json", results)
        _barrier()
        return results

    def _task_args(self, task: str) -> ContinualTrainingArguments:
        args = copy.deepcopy(self.args)
        args.output_dir = str(self.output / task / "checkpoints")
        args.logging_dir = str(self.output / task / "logs")
        return args

    def _check_previous(self, index: int, task: str) -> None:
        """A finished earlier task must have left on disk what the next one builds on."""
        if index == 0 or self.strategy == "task_a":
            return
        previous = self.order[index - 1]
        needed = {"adapter": ["export/model.safetensors"], "adapter_wo_pretrain": ["export/model.safetensors"],
                  "finetune": ["model/config.json"], "ewc": ["model/config.json", "ewc/ewc.safetensors"]}
        for relative in needed[self.strategy]:
            path = self.output / previous / relative
            if not path.exists():
                raise FileNotFoundError(f"task {task!r} ({self.strategy}) needs {path} from the earlier task "
                                        f"{previous!r}, which is missing; remove {self.output} to start over")

    def _train_task(self, index: int, task: str) -> None:
        folder = self.output / task
        self._check_previous(index, task)
        model = self._model_before(index)
        # New heads and adapters are initialised from the seed, not from whatever drew random numbers before.
        set_seed(self.args.seed + index)
        head = self._prepare_strategy(model, task)
        ewc_state = None
        if self.strategy == "ewc" and index > 0:
            ewc_state = EWCState.load(self.output / self.order[index - 1] / "ewc")
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        args = self._task_args(task)
        inputs = self._inputs(model)
        data = inputs[task]
        trainer = ContinualTrainer(
            model=model, args=args, train_dataset=data["train"], eval_dataset=data["validation"],
            data_collator=self.collator, compute_metrics=compute_metrics, ewc_state=ewc_state,
            callbacks=list(self.callbacks))
        checkpoint = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
        if checkpoint:
            logger.info("%s: resuming task %s from %s", self.output, task, checkpoint)
        started = time.time()
        trainer.train(resume_from_checkpoint=checkpoint)
        train_seconds = time.time() - started
        best_epoch = _best_epoch(trainer)
        model = trainer.model

        # Persist what the next task (or a rerun) needs, then the scores, which mark the task finished.
        export_bytes = self._persist(model, index, task, head, inputs)
        scores = self._score_all(trainer, model, task, inputs)
        agnostic = None
        if self.strategy in ADAPTER_STRATEGIES and index == len(self.order) - 1 and len(self.order) > 1:
            agnostic = self._score_agnostic(model, self._routing_inputs(inputs))
        if _is_main(self.args):
            write_json(folder / "scores.json", {
                "task": task, "head": head, "scores": scores, "task_agnostic": agnostic, "best_epoch": best_epoch,
                "train_seconds": train_seconds, "trainable_parameters": trainable, "export_bytes": export_bytes,
                "log_history": trainer.state.log_history})
            if not self.args.keep_checkpoints:
                shutil.rmtree(args.output_dir, ignore_errors=True)
            if index > 0 and self.strategy in ("finetune", "ewc"):
                shutil.rmtree(self.output / self.order[index - 1] / "model", ignore_errors=True)
        _barrier()
        self.model, self.model_step = model, index

    def _persist(self, model: MultimodalEmotionModel, index: int, task: str, head: str, inputs: dict) -> int:
        folder = self.output / task
        size = 0
        if self.strategy == "ewc" and index < len(self.order) - 1:
            previous = EWCState.load(self.output / self.order[index - 1] / "ewc") if index > 0 else None
            fisher, samples = estimate_fisher(model, inputs[task]["train"], self.collator,
                                              self.args.fisher_samples, self.args.fisher_batch_size)
            state = consolidate(model, fisher, task, samples, previous=previous, gamma=self.args.ewc_gamma)
            if _is_main(self.args):
                state.save(folder / "ewc")
        if _is_main(self.args):
            if self.strategy in ADAPTER_STRATEGIES:
                size = model.save_task(folder / "export", task).bytes
                train = self._routing_inputs(inputs)[task]["train"]
                statistics = [TaskStatistics.from_dataset(model, train, self.collator, kind,
                                                          self.args.per_device_eval_batch_size) for kind in KINDS]
                size += save_statistics(folder / "export", statistics).stat().st_size
            elif self.strategy in ("finetune", "ewc") and index < len(self.order) - 1:
                model.save_pretrained(folder / "model")
                size = (folder / "model" / "model.safetensors").stat().st_size
        _barrier()
        return size

    def _score_all(self, trainer, model, task: str, inputs: dict) -> dict:
        """Scores on the test sessions of every task (task_a: only its own), with confusion matrices."""
        scores = {}
        for other in self.order:
            head = self._head_for(model, other)
            if head is None or (self.strategy == "task_a" and other != task):
                scores[other] = None
                continue
            model.set_active_task(head)
            output = trainer.predict(inputs[other]["test"], metric_key_prefix="test")
            predictions = np.argmax(output.predictions, axis=-1)
            scores[other] = {
                **classification_scores(predictions, output.label_ids),
                "confusion": confusion(predictions, output.label_ids, len(model.task_labels(head))),
                "support": int(len(output.label_ids)),
            }
        return scores

    def _routing_inputs(self, inputs: dict) -> dict:
        """Splits with what routing features need: the convolutional features (cached or from the waveform). A
        layer-boundary cache no longer holds them, so then the waveforms are used."""
        first = next(iter(inputs.values()))["train"]
        return self.data if "speech_hidden" in first.column_names else inputs

    def _score_agnostic(self, model, inputs: dict) -> dict:
        """Scores without the task id: every test utterance of every task is routed to a task (from the
        exported statistics only) and classified by that task's adapters and head. Routing accuracy is measured
        for each method (the Gaussian statistics of each feature kind, and head confidence); the emotion scores
        use `DEFAULT_KIND`. Identical in every process (no sharding), written by rank 0."""
        tasks = list(self.order)
        statistics = {task: load_statistics(self.output / task / "export") for task in tasks}
        routers = {kind: Router({task: statistics[task][kind] for task in tasks}) for kind in KINDS}
        features = {kind: [] for kind in KINDS}
        logits = {task: [] for task in tasks}
        labels, truth = [], []
        model.eval()
        for task in tasks:
            for batch in model_batches(inputs[task]["test"], self.collator, self.args.per_device_eval_batch_size,
                                       model.device):
                for kind in KINDS:
                    features[kind].append(routing_features(model, batch, kind))
                with torch.no_grad():
                    for head in tasks:
                        logits[head].append(model(**batch, task=head).logits.float().cpu())
                labels.append(batch["labels"].cpu())
                truth += [task] * len(batch["labels"])
        logits = {task: torch.cat(values).numpy() for task, values in logits.items()}
        labels = torch.cat(labels).numpy()
        routes = {kind: [tasks[i] for i in router.scores(torch.cat(features[kind])).argmax(-1).tolist()]
                  for kind, router in routers.items()}
        routes["confidence"] = confidence_route(logits)
        chosen = routes[DEFAULT_KIND]
        predictions = np.array([logits[route][i].argmax() for i, route in enumerate(chosen)])
        truth = np.array(truth)
        return {
            "method": DEFAULT_KIND,
            "routing_accuracy": {method: float(np.mean(np.array(route) == truth)) for method, route in routes.items()},
            "routed_to": {task: {other: int(np.sum((truth == task) & (np.array(chosen) == other))) for other in tasks}
                          for task in tasks},
            "scores": {task: classification_scores(predictions[truth == task], labels[truth == task])
                       for task in tasks},
        }

    # -------------------------------------------------------------------------------------------- results
    def _collect(self) -> dict:
        rows = [read_json(self.output / task / "scores.json") for task in self.order]
        matrix = {
            metric: [[(row["scores"][other] or {}).get(metric) for other in self.order] for row in rows]
            for metric in METRICS
        }
        return {
            "strategy": self.strategy,
            "order": self.order,
            "fold": self.data_args.fold,
            "matrix": matrix,
            "summary": {metric: matrix_summary(values) for metric, values in matrix.items()},
            "confusion": {row["task"]: {other: (row["scores"][other] or {}).get("confusion") for other in self.order}
                          for row in rows},
            "best_epoch": {row["task"]: row["best_epoch"] for row in rows},
            "trainable_parameters": max(row["trainable_parameters"] for row in rows),
            "export_bytes": max(row["export_bytes"] for row in rows),
            "train_seconds": sum(row["train_seconds"] for row in rows),
            "task_agnostic": rows[-1].get("task_agnostic"),
        }


def _best_epoch(trainer) -> float | None:
    best = trainer.state.best_model_checkpoint
    if not best:
        return None
    step = int(best.rsplit("-", 1)[-1])
    epochs = [entry["epoch"] for entry in trainer.state.log_history if entry.get("step") == step and "epoch" in entry]
    return epochs[0] if epochs else None
