"""Elastic Weight Consolidation (Kirkpatrick et al., 2017): consolidate after a task, penalise later.

After a task is learned, `estimate_fisher` computes the diagonal empirical Fisher information of the trainable
parameters on **that task's own training data** (never the next task's: the reference prototype's flaw), and
`consolidate` stores it with the parameters' values (the anchor). While later tasks train, `penalty` adds
`lambda / 2 * sum_i F_i (theta_i - theta*_i)^2`. For longer sequences the Fisher accumulates online
(Schwarz et al., 2018): `F = gamma * F_previous + F_new`, anchored at the latest parameters.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from .data import eval_mode, model_batches

logger = logging.getLogger(__name__)


@dataclass
class EWCState:
    """Anchor parameters and their Fisher information, with a record of which data the Fisher saw."""

    anchor: dict[str, torch.Tensor]
    fisher: dict[str, torch.Tensor]
    tasks: list[str] = field(default_factory=list)
    samples: dict[str, list[str]] = field(default_factory=dict)
    """Task -> ids of the utterances the Fisher was estimated on (this process's shard)."""

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"anchor.{key}": value.contiguous() for key, value in self.anchor.items()}
        tensors |= {f"fisher.{key}": value.contiguous() for key, value in self.fisher.items()}
        save_file(tensors, directory / "ewc.safetensors")
        meta = {"tasks": self.tasks, "samples": self.samples}
        (directory / "ewc.json").write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> EWCState:
        directory = Path(directory)
        tensors = load_file(directory / "ewc.safetensors")
        meta = json.loads((directory / "ewc.json").read_text(encoding="utf-8"))
        return cls(
            anchor={key[len("anchor."):]: value for key, value in tensors.items() if key.startswith("anchor.")},
            fisher={key[len("fisher."):]: value for key, value in tensors.items() if key.startswith("fisher.")},
            tasks=meta["tasks"],
            samples=meta["samples"],
        )


def estimate_fisher(model, dataset, collator, max_samples: int, batch_size: int = 1, seed: int = 0
                    ) -> tuple[dict, list[str]]:
    """Diagonal empirical Fisher of `model`'s trainable parameters on a seeded random sample of up to
    `max_samples` rows drawn from the whole of `dataset` (every session, not the first rows: those are sorted by
    id, i.e. the lowest sessions and a few speakers).

    Each batch contributes `batch_size * grad(loss)^2`, the sum is divided by the number of rows; with
    `batch_size=1` this is the exact per-utterance empirical Fisher. Under torch.distributed each process takes
    its own contiguous shard of the rows and the sums are all-reduced, so every process ends with the same Fisher.
    Dropout is off (eval mode) so the estimate is deterministic.

    Returns:
        The Fisher per parameter name (on the CPU, float32) and the ids of the rows this process used.
    """
    order = np.random.default_rng(seed).permutation(len(dataset))[: min(max_samples, len(dataset))]
    rows = dataset.select(sorted(order.tolist()))
    if dist.is_available() and dist.is_initialized():
        rows = rows.shard(num_shards=dist.get_world_size(), index=dist.get_rank(), contiguous=True)
    parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not parameters:
        raise ValueError("no trainable parameters to estimate the Fisher information of")
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in parameters.items()}
    device = next(model.parameters()).device
    with eval_mode(model):
        for batch in model_batches(rows, collator, batch_size, device):
            model.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            for name, parameter in parameters.items():
                if parameter.grad is not None:
                    fisher[name] += parameter.grad.detach().float() ** 2 * len(batch["labels"])
        model.zero_grad(set_to_none=True)
    count = torch.tensor(float(len(rows)), device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        for value in fisher.values():
            dist.all_reduce(value)
    if count.item() == 0:
        raise ValueError("the Fisher sample budget selected no rows")
    return {name: (value / count).cpu() for name, value in fisher.items()}, list(rows["id"])


def consolidate(
    model, fisher: dict[str, torch.Tensor], task: str, samples: list[str], previous: EWCState | None = None,
    gamma: float = 1.0,
) -> EWCState:
    """The EWC state after learning `task`: anchor at the current parameters, Fisher accumulated online."""
    parameters = dict(model.named_parameters())
    anchor = {name: parameters[name].detach().to("cpu", torch.float32).clone() for name in fisher}
    total = dict(fisher)
    if previous is not None:
        for name, value in previous.fisher.items():
            total[name] = gamma * value + total[name] if name in total else gamma * value
            if name not in anchor:
                anchor[name] = previous.anchor[name]
    tasks = [*(previous.tasks if previous else []), task]
    seen = {**(previous.samples if previous else {}), task: samples}
    return EWCState(anchor=anchor, fisher=total, tasks=tasks, samples=seen)


class EWCPenalty(torch.nn.Module):
    """`lambda / 2 * sum F (theta - theta*)^2` over the parameters in an `EWCState`, on the model's device."""

    def __init__(self, state: EWCState, ewc_lambda: float):
        super().__init__()
        self.ewc_lambda = ewc_lambda
        self.names = sorted(state.fisher)
        for i, name in enumerate(self.names):
            self.register_buffer(f"fisher_{i}", state.fisher[name], persistent=False)
            self.register_buffer(f"anchor_{i}", state.anchor[name], persistent=False)

    def forward(self, model) -> torch.Tensor:
        parameters = dict(model.named_parameters())
        total = None
        for i, name in enumerate(self.names):
            difference = parameters[name].float() - getattr(self, f"anchor_{i}")
            term = (getattr(self, f"fisher_{i}") * difference.pow(2)).sum()
            total = term if total is None else total + term
        return 0.5 * self.ewc_lambda * total
