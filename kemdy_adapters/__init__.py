"""kemdy-adapters: continual multimodal emotion recognition with per-task adapters."""

__version__ = "0.1.0"

_LAZY = {
    "EmotionRecognizer": "inference",
    "MultimodalEmotionConfig": "configuration",
    "MultimodalEmotionModel": "modeling",
    "ContinualTrainer": "trainer",
    "ContinualTrainingArguments": "training_args",
}


def __getattr__(name: str):
    # The heavy modules (torch, transformers) are imported on first use, not by `import kemdy_adapters`.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
