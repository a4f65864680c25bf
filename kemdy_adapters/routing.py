"""Task-agnostic routing: pick a task's adapters for an utterance whose corpus is not given, without any stored
training data.

When a task finishes, `TaskStatistics.from_dataset` summarises its training utterances by the per-dimension mean
and variance of features the **frozen base** computes (a diagonal Gaussian: two vectors and a count, a few KB;
no utterance, transcript or feature row is kept). It is saved beside the task's adapters as
`routing.safetensors`. `Router` scores an utterance under every task's Gaussian and picks the most likely task.

Two feature kinds, both independent of any adapter (so a later task can never shift an earlier task's statistics):
- `shallow`: mean of the input token embeddings, and mean and standard deviation over real frames of the frozen
  convolutional feature encoder's output. Almost free: the frames are computed (or cached) anyway.
- `frozen`: the frozen encoders' own outputs without adapters (BERT's pooled [CLS], the Wav2Vec2 transformer's
  mean over real frames). One extra forward pass of both encoders per utterance.
`confidence` (the head whose softmax is most confident) needs no statistics and is measured beside them by the
benchmark. `DEFAULT_KIND` is the one the benchmark measured best on the demo (see the README).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .data import eval_mode, frame_mask, masked_mean, masked_mean_std, model_batches

ROUTING_FILE = "routing.safetensors"
KINDS = ("shallow", "frozen")
DEFAULT_KIND = "shallow"
SPEECH_KEYS = ("input_values", "speech_attention_mask", "speech_features", "speech_frame_mask")


@torch.no_grad()
def routing_features(model, batch: dict, kind: str = DEFAULT_KIND) -> torch.Tensor:
    """(B, D) features of a collated batch that no adapter influences (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown routing feature kind {kind!r}; choose from {list(KINDS)}")
    input_ids = batch["input_ids"]
    attention_mask = batch.get("attention_mask", torch.ones_like(input_ids))
    speech = {key: batch.get(key) for key in SPEECH_KEYS}
    if kind == "shallow":
        embedded = model.text_encoder.embeddings.word_embeddings(input_ids)  # (B, L, H)
        text = masked_mean(embedded, attention_mask)
        if speech["speech_features"] is not None:
            frames = speech["speech_features"]
            mask = frame_mask(frames, speech["speech_frame_mask"])
        else:
            frames, mask = model.speech_frames(speech["input_values"], speech["speech_attention_mask"])
        mean, std = masked_mean_std(frames, mask)
        return torch.cat([text, mean, std], dim=-1).float()
    active = model.active_task
    model.deactivate_tasks()
    try:
        text = model.encode_text(input_ids, attention_mask, batch.get("token_type_ids"))
        hidden, mask = model.encode_speech(**speech)
        mean = masked_mean(hidden, mask)
    finally:
        if active is not None:
            model.set_active_task(active)
    return torch.cat([text, mean], dim=-1).float()


@dataclass
class TaskStatistics:
    """A diagonal Gaussian over one task's routing features: per-dimension mean and variance, and a count."""

    kind: str
    mean: torch.Tensor
    variance: torch.Tensor
    count: int

    @classmethod
    def from_dataset(cls, model, dataset, collator, kind: str = DEFAULT_KIND, batch_size: int = 32
                     ) -> TaskStatistics:
        total = squares = None
        count = 0
        with eval_mode(model):
            for batch in model_batches(dataset, collator, batch_size, model.device):
                features = routing_features(model, batch, kind).double().cpu()
                total = features.sum(0) if total is None else total + features.sum(0)
                squares = (features ** 2).sum(0) if squares is None else squares + (features ** 2).sum(0)
                count += len(features)
        if count < 2:
            raise ValueError(f"routing statistics need at least 2 utterances, got {count}")
        mean = total / count
        variance = (squares / count - mean ** 2).clamp(min=0.0) * count / (count - 1)
        return cls(kind=kind, mean=mean.float(), variance=variance.float(), count=count)

    def log_likelihood(self, features: torch.Tensor) -> torch.Tensor:
        """(B,) log density of (B, D) features, up to a constant shared by every task of the same kind."""
        # A floor keeps a near-constant dimension from dominating: 1e-3 of the mean variance.
        variance = self.variance + 1e-3 * self.variance.mean() + 1e-8
        return -0.5 * (((features - self.mean) ** 2) / variance + variance.log()).sum(-1)


def save_statistics(directory, statistics: list[TaskStatistics]) -> Path:
    """Writes one task's statistics (one entry per feature kind) to `directory/routing.safetensors`."""
    path = Path(directory) / ROUTING_FILE
    tensors = {}
    for stats in statistics:
        tensors[f"{stats.kind}.mean"] = stats.mean.contiguous()
        tensors[f"{stats.kind}.variance"] = stats.variance.contiguous()
        tensors[f"{stats.kind}.count"] = torch.tensor([stats.count])
    kinds = ",".join(stats.kind for stats in statistics)
    save_file(tensors, path, metadata={"format": "kemdy-adapters-routing", "kinds": kinds})
    return path


def load_statistics(directory) -> dict[str, TaskStatistics]:
    """The statistics saved with a task, by feature kind; {} when the task has none (an older export)."""
    path = Path(directory) / ROUTING_FILE
    if not path.is_file():
        return {}
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path}: unreadable routing statistics ({error})") from error
    kinds = sorted({key.split(".", 1)[0] for key in tensors})
    try:
        return {kind: TaskStatistics(kind, tensors[f"{kind}.mean"], tensors[f"{kind}.variance"],
                                     int(tensors[f"{kind}.count"][0])) for kind in kinds}
    except KeyError as error:
        raise ValueError(f"{path}: routing statistics lack {error}") from error


class Router:
    """Chooses, for each utterance, the task whose statistics give its features the highest likelihood."""

    def __init__(self, statistics: dict[str, TaskStatistics]):
        if not statistics:
            raise ValueError("a router needs the statistics of at least one task")
        kinds = {stats.kind for stats in statistics.values()}
        if len(kinds) != 1:
            raise ValueError(f"every task's statistics must be of one feature kind, got {sorted(kinds)}")
        dims = {task: stats.mean.numel() for task, stats in statistics.items()}
        if len(set(dims.values())) != 1:
            raise ValueError(f"routing statistics of different sizes (from different base models?): {dims}")
        self.statistics = statistics
        self.kind = kinds.pop()
        self.tasks = list(statistics)

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """(B, n_tasks) log-likelihoods, columns in `self.tasks` order."""
        return torch.stack([self.statistics[task].log_likelihood(features.cpu()) for task in self.tasks], dim=-1)

    def route(self, model, batch: dict) -> tuple[list[str], torch.Tensor]:
        """The chosen task per utterance and the posterior over tasks (equal priors), (B, n_tasks)."""
        scores = self.scores(routing_features(model, batch, self.kind))
        return [self.tasks[i] for i in scores.argmax(-1).tolist()], torch.softmax(scores, dim=-1)


def confidence_route(logits_per_task: dict[str, np.ndarray]) -> list[str]:
    """Routing by the most confident head: for each utterance, the task whose softmax peaks highest."""
    tasks = list(logits_per_task)
    peaks = np.stack([torch.softmax(torch.as_tensor(logits), -1).max(-1).values.numpy()
                      for logits in logits_per_task.values()], axis=-1)
    return [tasks[i] for i in peaks.argmax(-1)]
