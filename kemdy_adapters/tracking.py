"""The score matrix R in the experiment tracker, beside the curves Trainer's own integration logs per task.

With `--report_to tensorboard`, every task's Trainer writes its loss and validation curves to
`<run>/<task>/logs/` (Trainer's `TensorBoardCallback`), and after every task the task loop adds that task's row
of R to `<run>/logs/`: one scalar per metric and evaluated task (`R/<metric>/<task>`, step = how many tasks
were learned, minus one) and the matrix so far as a markdown table (`R/<metric>` text), so forgetting shows up as
falling curves. TensorBoard is an optional extra (`pip install kemdy-adapters[tensorboard]`); nothing needs a
network.
"""

from __future__ import annotations

from pathlib import Path

from .metrics import DIMENSION_METRICS, METRICS


def reports_to_tensorboard(report_to) -> bool:
    return "tensorboard" in (report_to or [])


def matrix_table(order: list[str], rows: list[dict], metric: str) -> str:
    """Markdown: one row per task learned so far, one column per task of the order (`-`: not scored yet)."""
    lines = [f"| after \\ on | {' | '.join(order)} |", "|---" * (len(order) + 1) + "|"]
    for trained, row in zip(order, rows):
        cells = [f"{row[task][metric]:.3f}" if row.get(task) else "-" for task in order]
        lines.append(f"| {trained} | {' | '.join(cells)} |")
    return "\n".join(lines)


def log_score_rows(folder: Path, order: list[str], rows: list[dict]) -> None:
    """Writes the last of `rows` (R's rows so far, task -> scores or None) as scalars, and the matrix so far."""
    from torch.utils.tensorboard import SummaryWriter

    step = len(rows) - 1
    with SummaryWriter(log_dir=str(folder)) as writer:
        for task, scores in rows[-1].items():
            if scores:
                # the class metrics, and valence/arousal CCC, r and RMSE where the task learned them
                for metric in (*METRICS, *(m for m in DIMENSION_METRICS if scores.get(m) is not None)):
                    writer.add_scalar(f"R/{metric}/{task}", scores[metric], global_step=step)
        for metric in METRICS:
            writer.add_text(f"R/{metric}", matrix_table(order, rows, metric), global_step=step)
