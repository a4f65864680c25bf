"""`ContinualTrainer`: a `Trainer` with the EWC penalty and class-balanced sampling, nothing else overridden.

The loop over tasks, adapter switching and exports live in `continual.py`; one ContinualTrainer trains one task.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils.data import Sampler
from transformers import Trainer

from .ewc import EWCPenalty, EWCState


class ClassBalancedSampler(Sampler[int]):
    """Draws `len(labels)` indices per epoch with replacement, each with probability proportional to the inverse
    frequency of its class, so every class is drawn about equally often (the reference method's sampler).

    The draw is seeded by `seed + epoch` (`set_epoch`, called by Trainer/accelerate each epoch), so every
    process of a distributed run draws the same sequence and a run resumed mid-task draws what it would have.
    """

    def __init__(self, labels: list[int], seed: int = 0):
        counts = Counter(labels)
        self.weights = torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.double)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.multinomial(self.weights, len(self.weights), replacement=True, generator=generator).tolist()


class ContinualTrainer(Trainer):
    """Trainer for one task of a continual sequence.

    Args:
        ewc_state: When given, `ewc_lambda / 2 * sum F (theta - theta*)^2` is added to the loss; the task loss and
            the penalty are logged separately (`task_loss`, `ewc_penalty`).
        All other arguments are `Trainer`'s; `args` is a `ContinualTrainingArguments`.
    """

    def __init__(self, *args, ewc_state: EWCState | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.ewc = EWCPenalty(ewc_state, self.args.ewc_lambda).to(self.args.device) if ewc_state else None
        self._parts: dict[str, list[float]] = {"task_loss": [], "ewc_penalty": []}

    # Why: the EWC penalty is part of the training objective, not of the model.
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if self.ewc is not None and model.training:
            penalty = self.ewc(self.accelerator.unwrap_model(model))
            self._parts["task_loss"].append(loss.detach().item())
            self._parts["ewc_penalty"].append(penalty.detach().item())
            loss = loss + penalty
        return (loss, outputs) if return_outputs else loss

    # Why: report the two parts of the EWC objective beside Trainer's total loss.
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            for name, values in self._parts.items():
                if values:
                    logs[name] = round(sum(values) / len(values), 6)
                    values.clear()
        super().log(logs, start_time)

    # Why: class-balanced sampling (inverse class frequency), as the reference method trained.
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.args.class_balanced_sampling:
            return super()._get_train_sampler(train_dataset)
        return ClassBalancedSampler(list(dataset["labels"]), seed=self.args.seed)
