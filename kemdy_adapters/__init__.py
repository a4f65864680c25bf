"""kemdy-adapters: continual multimodal emotion recognition with per-task adapters."""

__version__ = "0.1.0"

_LAZY = {
    "MultimodalEmotionModel": "modeling",
    "MultimodalEmotionConfig": "configuration",
    "ContinualRun": "continual",
    "ContinualTrainer": "trainer",
    "ContinualTrainingArguments": "training_args",
    "EmotionRecognizer": "inference",
    "TaskSpec": "tasks",
    "load_kemdy": "hf_dataset",
    "pretrain_encoders": "pretrain",
    "write_sample_corpus": "sample_corpus",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    # The heavy modules (torch, transformers) are imported on first use, not by `import kemdy_adapters`.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
