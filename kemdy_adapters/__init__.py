"""kemdy-adapters: continual multimodal emotion recognition with per-task adapters."""

__version__ = "0.1.0"
