"""Continual-learning strategies as data: one frozen record per strategy, read by the task loop, the benchmark and
the report instead of comparing strategy names.

A record says what a task trains, whether the model is carried from one task to the next, whether tasks share a
head, whether the strategy consolidates after a task (EWC), and which files of the earlier task the next one
needs. Adding a strategy is one `register_strategy(Strategy(...))` call plus whatever hook its record names.

Heads and label sets: the adapter strategies give every task its own head (the task id chooses adapters and
head: *task-incremental*). The fine-tuning strategies share one head while every task of the sequence has the
same label set (*domain-incremental*: one model, one output space, no task id needed); when the label sets
differ they keep one head per task over the shared body (task-incremental, like the adapters), because a shared
head cannot score a task whose classes it does not have.
"""

from __future__ import annotations

from dataclasses import dataclass

SHARED_HEAD = "shared"
"""The head name of strategies that share one head across tasks with the same label set."""


@dataclass(frozen=True)
class Strategy:
    """What one continual-learning strategy does at each task.

    Args:
        name: The strategy's name on the command line and in reports.
        summary: One line for the report.
        trains: `"adapters"` (the task's own adapters and head; everything else frozen) or `"all"` (both encoders
            except the convolutional feature encoder, and the head).
        pretrained: Start from the pretrained encoders (`False`: randomly initialised ones, same shapes).
        carries_model: Task i starts from the model after task i-1 (`False`: every task starts afresh: `task_a`).
        shared_head: Tasks with equal label sets share one head (`SHARED_HEAD`); otherwise one head per task.
        consolidates: After every task but the last, estimate the Fisher on that task's training data and
            penalise later changes (EWC).
        distills: While a later task trains, distil the previous model's outputs on the new task's data (LwF).
        joint: Train once on the union of every task's training data instead of in sequence (the upper bound).
        needs: Files, relative to the earlier task's folder, that the next task starts from.
    """

    name: str
    summary: str
    trains: str
    pretrained: bool = True
    carries_model: bool = True
    shared_head: bool = False
    consolidates: bool = False
    distills: bool = False
    joint: bool = False
    needs: tuple[str, ...] = ()

    def __post_init__(self):
        if self.trains not in ("adapters", "all"):
            raise ValueError(f"strategy {self.name!r}: trains must be 'adapters' or 'all', got {self.trains!r}")

    @property
    def adapters(self) -> bool:
        """Each task trains only its own adapters and head, so nothing an earlier task uses can change."""
        return self.trains == "adapters"

    @property
    def sequential(self) -> bool:
        """Tasks are learned one after another into one model (everything but `task_a`)."""
        return self.carries_model

    @property
    def receives(self) -> bool:
        """Can continue from task adapters received from elsewhere (loaded frozen beside the new tasks)."""
        return self.adapters

    def heads_shared(self, label_sets: list[tuple[str, ...]]) -> bool:
        """Whether this strategy uses one shared head for a sequence whose tasks have these label sets."""
        return self.shared_head and len(set(label_sets)) <= 1

    def scenario(self, label_sets: list[tuple[str, ...]]) -> str:
        """The continual-learning scenario of this strategy on a sequence with these label sets."""
        if self.joint:
            return "not continual: every task's data at once, one shared head (upper bound)"
        if not self.carries_model:
            return "each task alone (task id given)"
        if self.heads_shared(label_sets):
            return "domain-incremental: one shared head, no task id"
        return "task-incremental: the task id picks the head" + (" and adapters" if self.adapters else "")


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy) -> Strategy:
    """Adds a strategy record; its name must be new."""
    if strategy.name in STRATEGIES:
        raise ValueError(f"strategy {strategy.name!r} is registered already")
    STRATEGIES[strategy.name] = strategy
    return strategy


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


EXPORT = ("export/model.safetensors",)
MODEL = ("model/config.json",)

register_strategy(Strategy(
    "task_a", "each task trained alone from the pretrained encoders (the single-task reference)", trains="all",
    carries_model=False, shared_head=True))
register_strategy(Strategy(
    "finetune", "the whole model fine-tuned on each task in turn", trains="all", shared_head=True, needs=MODEL))
register_strategy(Strategy(
    "ewc", "fine-tuning with Elastic Weight Consolidation of the earlier tasks", trains="all", shared_head=True,
    consolidates=True, needs=(*MODEL, "ewc/ewc.safetensors")))
register_strategy(Strategy(
    "lwf", "fine-tuning with Learning without Forgetting: the previous model's outputs on the new task's data are "
    "distilled", trains="all", shared_head=True, distills=True, needs=MODEL))
register_strategy(Strategy(
    "adapter", "per-task adapters and head inside frozen pretrained encoders", trains="adapters", needs=EXPORT))
register_strategy(Strategy(
    "adapter_wo_pretrain", "per-task adapters inside frozen, randomly initialised encoders", trains="adapters",
    pretrained=False, needs=EXPORT))
register_strategy(Strategy(
    "joint", "one model trained on the union of every task's training data (the upper bound, not continual)",
    trains="all", carries_model=False, shared_head=True, joint=True))
