"""`MultimodalEmotionConfig`: a text (BERT) and a speech (Wav2Vec2) sub-config, the tasks and their label lists."""

from __future__ import annotations

import copy
import re
from typing import Any

from transformers import AutoConfig, BertConfig, PretrainedConfig, Wav2Vec2Config

TASK_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ADAPTER_METHODS = ("houlsby", "lora")
MODALITIES = ("speech", "text")
ADAPTER_INITS = ("bert", "houlsby", "reference")
DIMENSION_LOSSES = ("mse", "ccc")
TEXT_POOLINGS = ("cls", "mean", "cls_mean", "attention")
SPEECH_POOLINGS = ("mean", "mean_std")


def _sub_config(value: Any, default_type: type[PretrainedConfig]) -> PretrainedConfig:
    if value is None:
        return default_type()
    if isinstance(value, PretrainedConfig):
        config = copy.deepcopy(value)
    else:
        value = dict(value)
        model_type = value.pop("model_type", default_type.model_type)
        config = AutoConfig.for_model(model_type, **value)
    # adapters.init() attaches its own state to an encoder's config; the composite config keeps a clean copy.
    if hasattr(config, "adapters"):
        del config.adapters
    return config


class MultimodalEmotionConfig(PretrainedConfig):
    """Configuration of `MultimodalEmotionModel`.

    Args:
        text_config: The BERT config (a `BertConfig` or its dict).
        speech_config: The Wav2Vec2 config (a `Wav2Vec2Config` or its dict).
        tasks: `{task name: {"labels": [...], "adapters": bool, "modalities": [...], "dimensions": [...]}}`, in the
            order the tasks were added. A task with `adapters=False` has a head but no adapters (the fine-tuning
            strategies' heads); `modalities` is `["speech", "text"]` (default) or `["speech"]` for a task learned
            without transcripts; `dimensions` (default none) lists the task's regression outputs, e.g.
            `["valence", "arousal"]` on the 1-5 scale, predicted beside the classes by the task's own head.
        projector_size: Width of the per-task projection of the speech hidden states (256 in the reference).
        dropout: Dropout before the classifier.
        adapter_method: `"houlsby"` (the `adapters` library's `double_seq_bn`: a bottleneck after the attention
            output and one after the feed-forward output of every layer) or `"lora"`.
        adapter_reduction_factor: Hidden size / bottleneck size of the Houlsby adapters (12: 64 at hidden 768).
        lora_r: LoRA rank. lora_alpha: LoRA scaling numerator.
        text_checkpoint: Where the text encoder's weights came from (a hub id or a path), or `None` for random
            weights; recorded so a shared task can name the base it needs.
        speech_checkpoint: The same for the speech encoder.
        active_task: The task whose adapters and head a forward pass uses by default.
        speech_layerdrop: Wav2Vec2 LayerDrop probability during training (the checkpoint's own value is
            overridden). Off by default: it skips whole layers, and with them their adapters, at random, which
            distributed training without unused-parameter detection cannot handle (ranks would skip different
            layers and wait for each other forever).
        speech_frozen_layers: The lowest N Wav2Vec2 layers get no adapters (adapters' `leave_out`). In the
            adapter strategies everything up to layer N is then frozen for every task, so its output is computed
            once per utterance and cached (`features.py`), and training runs only the layers above: much faster,
            at the price of no adapters (and no dropout or SpecAugment) below the boundary. 0 (default): adapters
            in every layer, as in the reference method.
        adapter_non_linearity: The Houlsby adapters' activation (`adapters`' default for `double_seq_bn` is
            `swish`; the reference method used `gelu`).
        adapter_init: `bert` (`adapters`' default: normal(0, 0.02) weights, zero biases), `houlsby` (truncated
            normal(0, 0.01), zero biases) or `reference` (the reference method's: truncated normal(0, 0.001)
            weights and biases): every one starts close to the identity.
        task_layer_norms: Give every task its own copy of the two layer norms of each encoder layer that has
            adapters, initialised from the pretrained ones and trained with the task's adapters (the reference
            method's text adapters did so); the shared layer norms stay frozen.
        dimension_loss: The regression outputs' training loss, `"mse"` (mean squared error on the 1-5 scale) or
            `"ccc"` (1 - the batch's concordance correlation coefficient, per dimension).
        dimension_weight: Its weight beside the cross-entropy (the task loss is CE + weight x mean over the
            dimensions); only tasks with `dimensions` have one.
        text_pooling: The text vector: `"cls"` (BERT's pooler over [CLS], as the reference method), `"mean"`
            (the mean of the last layer over the real tokens), `"cls_mean"` (both, concatenated: twice as wide) or
            `"attention"` (the real tokens weighted by a softmax over their dot product with a per-task query
            vector in the task's head, zeros at the start, so it starts as the mean).
        speech_pooling: The speech vector from a task's projected frames: `"mean"` over the real frames (the
            reference's) or `"mean_std"` (their mean and standard deviation, concatenated: twice as wide, the
            statistics pooling of speaker and emotion embeddings).
        modality_dropout: In training only, the probability that an utterance of a task with both modalities
            loses one of them (its pooled text or speech vector set to zeros, each half as likely), so that the
            classifier learns to use either alone as well as both. 0 (default): never.
    """

    model_type = "kemdy_multimodal_emotion"

    def __init__(
        self,
        text_config: dict | PretrainedConfig | None = None,
        speech_config: dict | PretrainedConfig | None = None,
        tasks: dict[str, dict] | None = None,
        projector_size: int = 256,
        dropout: float = 0.1,
        adapter_method: str = "houlsby",
        adapter_reduction_factor: int = 12,
        lora_r: int = 8,
        lora_alpha: int = 16,
        text_checkpoint: str | None = None,
        speech_checkpoint: str | None = None,
        active_task: str | None = None,
        speech_layerdrop: float = 0.0,
        speech_frozen_layers: int = 0,
        adapter_non_linearity: str = "swish",
        adapter_init: str = "bert",
        task_layer_norms: bool = False,
        dimension_loss: str = "mse",
        dimension_weight: float = 1.0,
        text_pooling: str = "cls",
        speech_pooling: str = "mean",
        modality_dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if adapter_method not in ADAPTER_METHODS:
            raise ValueError(f"adapter_method must be one of {ADAPTER_METHODS}, got {adapter_method!r}")
        self.text_config = _sub_config(text_config, BertConfig)
        self.speech_config = _sub_config(speech_config, Wav2Vec2Config)
        self.tasks = {name: {"labels": list(spec["labels"]), "adapters": bool(spec.get("adapters", True)),
                             "modalities": list(spec.get("modalities", MODALITIES)),
                             "dimensions": list(spec.get("dimensions", []))}
                      for name, spec in (tasks or {}).items()}
        for name in self.tasks:
            check_task_name(name)
        self.projector_size = projector_size
        self.dropout = dropout
        self.adapter_method = adapter_method
        self.adapter_reduction_factor = adapter_reduction_factor
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.text_checkpoint = text_checkpoint
        self.speech_checkpoint = speech_checkpoint
        self.active_task = active_task
        self.speech_layerdrop = speech_layerdrop
        if not 0 <= speech_frozen_layers < self.speech_config.num_hidden_layers:
            raise ValueError(f"speech_frozen_layers must be in [0, {self.speech_config.num_hidden_layers}), got "
                             f"{speech_frozen_layers}: the top layer needs adapters")
        self.speech_frozen_layers = speech_frozen_layers
        if adapter_init not in ADAPTER_INITS:
            raise ValueError(f"adapter_init must be one of {ADAPTER_INITS}, got {adapter_init!r}")
        self.adapter_non_linearity = adapter_non_linearity
        self.adapter_init = adapter_init
        self.task_layer_norms = task_layer_norms
        if dimension_loss not in DIMENSION_LOSSES:
            raise ValueError(f"dimension_loss must be one of {DIMENSION_LOSSES}, got {dimension_loss!r}")
        self.dimension_loss = dimension_loss
        self.dimension_weight = float(dimension_weight)
        if text_pooling not in TEXT_POOLINGS:
            raise ValueError(f"text_pooling must be one of {TEXT_POOLINGS}, got {text_pooling!r}")
        self.text_pooling = text_pooling
        if speech_pooling not in SPEECH_POOLINGS:
            raise ValueError(f"speech_pooling must be one of {SPEECH_POOLINGS}, got {speech_pooling!r}")
        self.speech_pooling = speech_pooling
        if not 0 <= modality_dropout < 1:
            raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        self.modality_dropout = float(modality_dropout)


RESERVED_TASK_NAMES = ("base", "logs")
"""Folders a run folder holds beside its tasks' (layout.py), so no task may be called so."""


def check_task_name(name: str) -> None:
    if not isinstance(name, str) or not TASK_NAME_RE.match(name):
        raise ValueError(
            f"task name {name!r} must be lower-case letters, digits and '_', starting with a letter (e.g. 'kemdy19')"
        )
    if name in RESERVED_TASK_NAMES:
        raise ValueError(f"task name {name!r} is taken by a run folder's own {name}/ folder; choose another")
