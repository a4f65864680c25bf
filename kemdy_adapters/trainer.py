"""`ContinualTrainer`: a `Trainer` with the EWC penalty, LwF's distillation, class-balanced sampling and an optional
average of the trained weights, nothing else overridden.

The loop over tasks, adapter switching and exports live in `continual.py`; one ContinualTrainer trains one task.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Sampler
from transformers import PrinterCallback, Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .ewc import EWCPenalty, EWCState
from .faults import pause


class ClassBalancedSampler(Sampler[int]):
    """Draws `len(labels)` indices per epoch with replacement, each with probability proportional to the inverse
    frequency of its class, so every class is drawn about equally often (the reference method's sampler).

    The draw is seeded by `seed + epoch` (`set_epoch`, called by Trainer/accelerate each epoch), so every
    process of a distributed run draws the same sequence and a run resumed mid-task draws what it would have.

    With `lengths` and `batch_size` the epoch's draw is grouped by length to cut padding: it is cut into groups
    of `group_batches` batches, each group is sorted by length and cut into batches, and the batches of a group
    are shuffled. Every epoch still draws the same class-balanced multiset; only who shares a batch changes.
    """

    def __init__(self, labels: list[int], seed: int = 0, lengths: list[int] | None = None,
                 batch_size: int | None = None, group_batches: int = 50):
        counts = Counter(labels)
        self.weights = torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.double)
        self.seed = seed
        self.epoch = 0
        if lengths is not None and len(lengths) != len(labels):
            raise ValueError(f"{len(lengths)} lengths for {len(labels)} rows")
        self.lengths = lengths
        self.batch_size = batch_size
        self.group_batches = group_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, len(self.weights), replacement=True, generator=generator).tolist()
        if self.lengths is None or not self.batch_size:
            yield from drawn
            return
        size = self.batch_size * self.group_batches
        for start in range(0, len(drawn), size):
            group = sorted(drawn[start: start + size], key=lambda index: self.lengths[index])
            batches = [group[i: i + self.batch_size] for i in range(0, len(group), self.batch_size)]
            for order in torch.randperm(len(batches), generator=generator).tolist():
                yield from batches[order]


AVERAGE_FILE = "weight_average.safetensors"
"""The weight average's state in every checkpoint of a run with `--weight_average_decay`."""


class WeightAverage:
    """An exponential moving average of a model's trainable parameters, one update per optimizer step:
    `a <- decay * a + (1 - decay) * theta`, from a = 0 and divided by `1 - decay^steps` (bias correction, as in
    Adam), so the average is a weighted mean of the weights the run went through and owes nothing to a = 0."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"the weight average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.sums = {name: torch.zeros_like(parameter, dtype=torch.float32)
                     for name, parameter in model.named_parameters() if parameter.requires_grad}

    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        parameters = dict(model.named_parameters())
        for name, total in self.sums.items():
            total.lerp_(parameters[name].detach().float(), 1 - self.decay)

    def averages(self) -> dict[str, torch.Tensor]:
        correction = 1 - self.decay ** self.steps
        return {name: total / correction for name, total in self.sums.items()}

    def copy_to(self, model: torch.nn.Module) -> None:
        """Writes the average into the model's parameters (nothing before the first update)."""
        if self.steps:
            _write(model, self.averages())

    @contextmanager
    def applied(self, model: torch.nn.Module):
        """The model holds the average inside the block and its own weights again after it."""
        parameters = dict(model.named_parameters())
        kept = {name: parameters[name].detach().clone() for name in self.sums}
        self.copy_to(model)
        try:
            yield
        finally:
            _write(model, kept)

    def save(self, path: Path) -> None:
        save_file({**self.sums, "__steps__": torch.tensor(self.steps)}, str(path))

    def load(self, path: Path) -> None:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: missing; the checkpoint was saved without --weight_average_decay, so "
                                    "a run with it cannot resume from it (remove the checkpoint folder to start over)")
        tensors = load_file(str(path))
        if set(tensors) - {"__steps__"} != set(self.sums):
            raise ValueError(f"{path}: averages parameters {sorted(set(tensors) - {'__steps__'})[:3]}..., not this "
                             f"model's trainable ones {sorted(self.sums)[:3]}...")
        self.steps = int(tensors.pop("__steps__"))
        for name, value in tensors.items():
            self.sums[name].copy_(value)


def _write(model: torch.nn.Module, values: dict[str, torch.Tensor]) -> None:
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in values.items():
            parameters[name].copy_(value)


class _UpdateAverage(TrainerCallback):
    def __init__(self, average: WeightAverage):
        self.average = average

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.average.update(model)


class JsonLinesLog(TrainerCallback):
    """Appends every Trainer log (loss, validation metrics, per epoch) as a JSON line to
    `<logging_dir>/trainer_log.jsonl` (main process only)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        path = Path(args.logging_dir) / "trainer_log.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class ContinualTrainer(Trainer):
    """Trainer for one task of a continual sequence.

    Args:
        ewc_state: When given, `ewc_lambda / 2 * sum F (theta - theta*)^2` is added to the loss; the task loss and
            the penalty are logged separately (`task_loss`, `ewc_penalty`).
        teacher, teacher_heads: When given (LwF), `lwf_alpha` times the distillation of the teacher's outputs
            for these heads is added to the loss (logged as `lwf_distillation`).
        All other arguments are `Trainer`'s; `args` is a `ContinualTrainingArguments`.
    """

    def __init__(self, *args, ewc_state: EWCState | None = None, teacher=None, teacher_heads: list[str] | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if not self.args.console_logs:
            # Why: the per-epoch metric dictionaries belong in the run folder's log, not on a person's console.
            self.remove_callback(PrinterCallback)
        self.add_callback(JsonLinesLog())
        self.ewc = EWCPenalty(ewc_state, self.args.ewc_lambda).to(self.args.device) if ewc_state else None
        self.teacher = teacher.to(self.args.device).eval() if teacher is not None else None
        self.teacher_heads = list(teacher_heads or [])
        self._parts: dict[str, list[float]] = {"task_loss": [], "ewc_penalty": [], "lwf_distillation": []}
        self.average = None
        if self.args.weight_average_decay:
            self.average = WeightAverage(self.model, self.args.weight_average_decay)
            self.add_callback(_UpdateAverage(self.average))

    # Why (weight averaging): validation, checkpoints and the kept model see the average of the weights, and
    # training goes on from the weights themselves.
    def train(self, *args, **kwargs):
        output = super().train(*args, **kwargs)
        if self.average is not None:
            best = self.state.best_model_checkpoint if self.args.load_best_model_at_end else None
            if best:  # Trainer has loaded the best step's own weights; its average is what was validated
                self.average.load(Path(best) / AVERAGE_FILE)
            self.average.copy_to(self.model)
        return output

    def evaluate(self, *args, **kwargs):
        if self.average is None or not self.is_in_train:
            return super().evaluate(*args, **kwargs)
        with self.average.applied(self.model):
            return super().evaluate(*args, **kwargs)

    def _save_checkpoint(self, model, trial):
        if self.average is not None and self.args.should_save:
            # Written before Trainer's files, so a checkpoint that reads as complete (trainer_state.json) has it.
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            self.average.save(folder / AVERAGE_FILE)
        return super()._save_checkpoint(model, trial)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if self.average is not None:
            self.average.load(Path(resume_from_checkpoint) / AVERAGE_FILE)

    # Why: the EWC penalty and LwF's distillation are parts of the training objective, not of the model.
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training and (self.ewc is not None or self.teacher is not None):
            self._parts["task_loss"].append(loss.detach().item())
        if self.ewc is not None and model.training:
            penalty = self.ewc(self.accelerator.unwrap_model(model))
            self._parts["ewc_penalty"].append(penalty.detach().item())
            loss = loss + penalty
        if self.teacher is not None and model.training:
            distillation = self.distillation(model, inputs, outputs.logits)
            self._parts["lwf_distillation"].append(distillation.detach().item())
            loss = loss + self.args.lwf_alpha * distillation
        return (loss, outputs) if return_outputs else loss

    def distillation(self, model, inputs: dict, logits: torch.Tensor) -> torch.Tensor:
        """LwF (Li & Hoiem, 2016): KL(teacher || student) of the softened outputs (temperature T, scaled by
        T^2) on the new task's batch, averaged over the teacher's heads. A head shared with the current task
        reuses this step's logits; another head costs one more forward pass of the student."""
        student = self.accelerator.unwrap_model(model)
        current = student.active_task
        features = {key: value for key, value in inputs.items() if key != "labels"}
        temperature = self.args.lwf_temperature
        total = 0.0
        for head in self.teacher_heads:
            with torch.no_grad():
                target = self.teacher(**features, task=head).logits
            predicted = logits if head == current else student(**features, task=head).logits
            total = total + torch.nn.functional.kl_div(
                torch.log_softmax(predicted / temperature, -1), torch.log_softmax(target / temperature, -1),
                log_target=True, reduction="batchmean") * temperature ** 2
        if student.active_task != current:
            student.set_active_task(current)
        return total / max(1, len(self.teacher_heads))

    # Why: report the two parts of the EWC objective beside Trainer's total loss.
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            for name, values in self._parts.items():
                if values:
                    logs[name] = round(sum(values) / len(values), 6)
                    values.clear()
        super().log(logs, start_time)

    # Why: epochs of seconds save checkpoints within a second of each other, so mtime ordering (and Trainer's
    # warning that it falls back from it) says nothing; the step number orders checkpoints exactly.
    def _sorted_checkpoints(self, output_dir=None, checkpoint_prefix=PREFIX_CHECKPOINT_DIR, use_mtime=False):
        return super()._sorted_checkpoints(output_dir=output_dir, checkpoint_prefix=checkpoint_prefix, use_mtime=False)

    # Why: a fault-injection point in the middle of a checkpoint (model written, trainer state not yet).
    def _save_optimizer_and_scheduler(self, output_dir):
        pause("checkpoint")
        return super()._save_optimizer_and_scheduler(output_dir)

    # Why: class-balanced sampling (inverse class frequency), as the reference method trained, optionally grouped
    # by length (Trainer's own group_by_length sampler cannot be class-balanced).
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.args.class_balanced_sampling:
            return super()._get_train_sampler(train_dataset)
        lengths = None
        if self.args.group_by_length:
            # The unfiltered dataset still has the length column (same rows, same order).
            source = self.train_dataset
            if self.args.length_column_name not in source.column_names:
                raise ValueError(f"group_by_length needs a {self.args.length_column_name!r} column in the training "
                                 "data")
            lengths = [int(length) for length in source[self.args.length_column_name]]
        batch = self._train_batch_size * max(1, self.args.world_size)
        return ClassBalancedSampler(list(dataset["labels"]), seed=self.args.seed, lengths=lengths, batch_size=batch)
