"""Local `evaluate` metric modules (loaded by absolute path, so they work without a hub)."""

from pathlib import Path

METRIC_PATH = str(Path(__file__).resolve().parent / "kemdy_emotion")


def load_metric(**kwargs):
    """`evaluate.load` of the kemdy_emotion module."""
    import evaluate

    return evaluate.load(METRIC_PATH, **kwargs)
