"""Scoring a continual run: one row of the score matrix R after each task, and the task-agnostic scores (every
test utterance routed to a task's adapters without its task id) after the last task."""

from __future__ import annotations

import numpy as np
import torch

from .data import model_batches
from .metrics import classification_scores, confusion, dimension_scores, split_predictions
from .routing import DEFAULT_KIND, KINDS, Router, confidence_route, routing_features


def score_row(trainer, model, heads: dict[str, str | None], tests: dict, confusions: bool = True) -> dict:
    """Scores on the given split (test sessions for R) of every task in `heads` (task -> the head that scores
    it, or None where the task cannot be scored yet), with confusion matrices: one row of R."""
    scores = {}
    for task, head in heads.items():
        if head is None:
            scores[task] = None
            continue
        model.set_active_task(head)
        output = trainer.predict(tests[task], metric_key_prefix="test")
        logits, dimensions = split_predictions(output.predictions)
        predictions = np.argmax(logits, axis=-1)
        scores[task] = {**classification_scores(predictions, output.label_ids), "support": int(len(output.label_ids))}
        if dimensions is not None and "dimension_targets" in tests[task].column_names:
            targets = np.asarray(tests[task]["dimension_targets"], dtype=np.float64)
            scores[task] |= dimension_scores(dimensions, targets, model.task_dimensions(head))
        if confusions:
            scores[task]["confusion"] = confusion(predictions, output.label_ids, len(model.task_labels(head)))
    return scores


@torch.no_grad()
def score_agnostic(model, statistics: dict[str, dict], tests: dict, collator, batch_size: int) -> dict:
    """Scores without the task id. Every test utterance of the tasks in `tests` is routed among all tasks in
    `statistics` (task -> {feature kind: TaskStatistics}; tasks received without data route too, though they
    have no test utterances here) and classified by the chosen task's adapters and head. Routing accuracy is
    measured for each method (the Gaussian statistics of each feature kind, and head confidence); the emotion
    scores use `DEFAULT_KIND` (an utterance routed to another task counts as wrong). Identical in every process."""
    tasks = list(statistics)
    routers = {kind: Router({task: statistics[task][kind] for task in tasks}) for kind in KINDS}
    features = {kind: [] for kind in KINDS}
    logits = {task: [] for task in tasks}
    labels, truth = [], []
    model.eval()
    for task, test in tests.items():
        for batch in model_batches(test, collator, batch_size, model.device):
            references = batch.pop("labels")  # each head has its own label set: no loss here
            for kind in KINDS:
                features[kind].append(routing_features(model, batch, kind))
            for head in tasks:
                logits[head].append(model(**batch, task=head).logits.float().cpu())
            labels.append(references.cpu())
            truth += [task] * len(references)
    logits = {task: torch.cat(values).numpy() for task, values in logits.items()}
    labels = torch.cat(labels).numpy()
    routes = {kind: [tasks[i] for i in router.scores(torch.cat(features[kind])).argmax(-1).tolist()]
              for kind, router in routers.items()}
    routes["confidence"] = confidence_route(logits)
    chosen = np.array(routes[DEFAULT_KIND])
    truth = np.array(truth)
    # A wrongly routed utterance gets the other task's prediction; with another label set it cannot be right.
    predictions = np.array([
        logits[route][i].argmax() if route == truth[i] or model.task_labels(route) == model.task_labels(truth[i])
        else -1 for i, route in enumerate(chosen)])
    return {
        "method": DEFAULT_KIND,
        "tasks": tasks,
        "routing_accuracy": {method: float(np.mean(np.array(route) == truth)) for method, route in routes.items()},
        "routed_to": {task: {other: int(np.sum((truth == task) & (chosen == other))) for other in tasks}
                      for task in tests},
        "scores": {task: classification_scores(predictions[truth == task], labels[truth == task]) for task in tests},
    }
