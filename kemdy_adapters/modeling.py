"""`MultimodalEmotionModel`: BERT + Wav2Vec2 with per-task adapters (through `adapters`) and per-task heads.

text:   BERT -> pooled [CLS] (text_pooling: or the mean over real tokens, both, or a task query's weighting)
speech: frozen conv feature encoder -> Wav2Vec2 transformer -> task projector -> mean over real frames  (B, 256)
        (speech_pooling "mean_std": and their standard deviation beside it)
fusion: concat -> dropout -> task classifier                                          (B, num_labels)

Padding: the convolutional feature encoder of group-norm checkpoints (wav2vec2-base, `feat_extract_norm="group"`)
normalises each channel over the whole time axis, so zero padding would change every frame of a shorter
utterance. It is therefore run on each utterance alone, at its own length, and the frame features are padded
afterwards; layer-norm checkpoints normalise each frame on its own and are run batched. The transformer then
always gets the frame mask (padded frames are zeroed before the positional convolution and masked in
attention), and pooling averages real frames only, so a padded utterance gets the same vector as alone.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import adapters
import torch
from adapters import DoubleSeqBnConfig, LoRAConfig
from adapters.context import ForwardContext
from torch import nn
from transformers import BertModel, PreTrainedModel, Wav2Vec2Model
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration import MODALITIES, MultimodalEmotionConfig, check_task_name
from .corpus import EMOTIONS
from .data import eval_mode, frame_mask, masked_mean, masked_mean_std
from .interfaces import wav2vec2_interface

logger = logging.getLogger(__name__)


_DELIBERATELY_INACTIVE = contextvars.ContextVar("kemdy_adapters_deliberately_inactive", default=False)


class _NoInactiveAdapterWarning(logging.Filter):
    """adapters warns on every forward of a model that has adapters but none active. Inside this model's own
    methods that state is deliberate (a task without adapters, e.g. the fine-tuning strategies' shared head; the
    frozen base for routing; switching tasks), so there the message is dropped; anywhere else in the process
    (another adapters model) it passes, as does every other adapters message."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_DELIBERATELY_INACTIVE.get() and "none are activated for the forward pass" in record.getMessage())


logging.getLogger("adapters.model_mixin").addFilter(_NoInactiveAdapterWarning())


def _inactive_adapters_expected(method):
    """Marks a method of `MultimodalEmotionModel` in which the encoders may run without active adapters."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        token = _DELIBERATELY_INACTIVE.set(True)
        try:
            return method(*args, **kwargs)
        finally:
            _DELIBERATELY_INACTIVE.reset(token)

    return wrapper


def _checkpoint_name(checkpoint) -> str:
    """How a base checkpoint is recorded (and named in shared tasks): a local folder by its absolute path, so a
    task loads from any working directory; a Hub id as given."""
    path = Path(checkpoint)
    return str(path.resolve()) if path.is_dir() else str(checkpoint)


DIMENSION_SCALE = (1.0, 5.0)
"""The valence/arousal scale (KEMDy's 1-5): a regression output is `low + (high - low) * sigmoid(x)`."""


class TaskHead(nn.Module):
    """A task's speech projector, its classifier over [pooled text; pooled projected speech] and, for a task with
    dimensions, a regressor over the same vector (one output per dimension, on `DIMENSION_SCALE`)."""

    def __init__(self, text_size: int, speech_size: int, projector_size: int, num_labels: int, dropout: float,
                 num_dimensions: int = 0, text_query: bool = False, speech_width: int | None = None):
        """`speech_width`: the pooled speech vector's width (default `projector_size`; twice that with the
        standard deviation beside the mean)."""
        super().__init__()
        speech_width = projector_size if speech_width is None else speech_width
        if text_query:  # `text_pooling="attention"`: zeros, so the pooling starts as the mean over the tokens
            self.text_query = nn.Parameter(torch.zeros(text_size))
        self.projector = nn.Linear(speech_size, projector_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(text_size + speech_width, num_labels)
        layers = [self.projector, self.classifier]
        if num_dimensions:
            self.regressor = nn.Linear(text_size + speech_width, num_dimensions)
            layers.append(self.regressor)
        for layer in layers:
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def dimensions(self, pooled: torch.Tensor) -> torch.Tensor | None:
        """(B, D) predictions on the 1-5 scale (near its middle, 3, before training), or None."""
        if not hasattr(self, "regressor"):
            return None
        low, high = DIMENSION_SCALE
        return low + (high - low) * torch.sigmoid(self.regressor(pooled).float())


def ccc_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - the batch's concordance correlation coefficient, averaged over the columns (dimensions)."""
    mean_p, mean_t = predictions.mean(0), targets.mean(0)
    covariance = ((predictions - mean_p) * (targets - mean_t)).mean(0)
    denominator = predictions.var(0, unbiased=False) + targets.var(0, unbiased=False) + (mean_p - mean_t) ** 2
    return (1 - 2 * covariance / denominator.clamp(min=1e-8)).mean()


@dataclass
class EmotionOutput(SequenceClassifierOutput):
    """`SequenceClassifierOutput` plus `dimensions`: (B, D) valence/arousal predictions for a task that has them
    (absent otherwise, so such a task's outputs are exactly the classifier's)."""

    dimensions: torch.Tensor | None = None


class TaskLayerNorm(nn.Module):
    """A layer norm with one copy per task: the active task's copy if it has one, else the shared (`base`) one.

    Replaces an encoder layer's layer norm when `task_layer_norms` is set, so that a task's adapters come with
    their own layer-norm parameters (initialised from the pretrained ones) while the shared ones stay frozen and
    every other task keeps its own. The active task is read from `state`, which the model sets."""

    def __init__(self, base: nn.LayerNorm, state: dict):
        super().__init__()
        self.base = base
        self.tasks = nn.ModuleDict()
        self.state = state  # a plain dict shared with the model, not a module or parameter

    def add(self, task: str) -> None:
        self.tasks[task] = copy.deepcopy(self.base)

    def remove(self, task: str) -> None:
        if task in self.tasks:
            del self.tasks[task]

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.base.bias

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        task = self.state.get("task")
        return (self.tasks[task] if task in self.tasks else self.base)(hidden)


def _padded(pieces: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """(B, C, T_max) from per-utterance (C, T_i) feature maps, zeros after each utterance's end (`like`'s dtype)."""
    features = like.new_zeros(len(pieces), pieces[0].shape[0], max(piece.shape[-1] for piece in pieces))
    for i, piece in enumerate(pieces):
        features[i, :, : piece.shape[-1]] = piece
    return features


def _bf16_inference(values: torch.Tensor) -> bool:
    """Whether `values` (on a CPU) are processed under bf16 autocast without gradients."""
    return (values.device.type == "cpu" and not torch.is_grad_enabled() and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def _conv_group_norm(windows: torch.Tensor, conv: nn.Conv1d, norm: nn.GroupNorm) -> torch.Tensor:
    """`norm(conv(x))` for a per-channel GroupNorm (Wav2Vec2's first layer), from the (T, C_in * k) windows, as
    one fp32 matrix product with the normalisation folded into the weights: each output channel's mean and
    variance over time follow from the windows' own mean and (C_in * k)^2 covariance, so the large (T, C_out)
    output is written once instead of being reduced and rescaled afterwards."""
    weight = conv.weight.reshape(conv.out_channels, -1).float()  # (C_out, K)
    frames = windows.shape[0]
    mean_in = (windows.new_ones(1, frames) @ windows)[0] / frames  # (K,)
    centered = windows - mean_in
    covariance = (centered.t() @ centered) / frames  # (K, K)
    mean = weight @ mean_in + (conv.bias if conv.bias is not None else 0.0)
    variance = ((weight @ covariance) * weight).sum(1)
    scale = torch.rsqrt(variance + norm.eps) * norm.weight
    shift = norm.bias - mean * scale + (conv.bias * scale if conv.bias is not None else 0.0)
    return torch.addmm(shift, windows, (weight * scale[:, None]).t())


def conv_features_bf16(extractor: nn.Module, waveform: torch.Tensor) -> torch.Tensor:
    """Wav2Vec2's convolutional feature encoder on one waveform (samples,) as bf16 matrix products: (T, C).

    Each convolution becomes a strided window view of a time-major (T, C) signal times the (C * k, C_out)
    weight, a matrix product bf16 units (AMX) run much faster than oneDNN's bf16 convolution (4 s of audio at
    base width: 0.029 s, against 0.081 s for the module under bf16 autocast and 0.089 s in fp32; README,
    Speed). The signal between layers is bf16; norms and their statistics are computed in fp32. Same arithmetic
    as the module up to bf16 rounding (relative error about 1e-2)."""
    hidden = waveform.to(torch.float32)[:, None]  # (samples, 1)
    for layer in extractor.conv_layers:
        conv = layer.conv
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        norm = getattr(layer, "layer_norm", None)
        if isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels:
            windows = hidden.float().unfold(0, kernel, stride)  # (T_out, C_in, kernel)
            hidden = _conv_group_norm(windows.reshape(windows.shape[0], -1), conv, norm)
        else:
            windows = hidden.to(torch.bfloat16).unfold(0, kernel, stride)
            weight = conv.weight.to(torch.bfloat16).reshape(conv.out_channels, -1)  # (C_out, C_in * kernel)
            hidden = windows.reshape(windows.shape[0], -1) @ weight.t()  # (T_out, C_out), bf16
            if conv.bias is not None:
                hidden = hidden + conv.bias.to(torch.bfloat16)
            if isinstance(norm, nn.GroupNorm):
                hidden = nn.functional.group_norm(hidden.float().t()[None], norm.num_groups, norm.weight,
                                                  norm.bias, norm.eps)[0].t()
            elif isinstance(norm, nn.LayerNorm):  # over channels, per frame
                hidden = nn.functional.layer_norm(hidden.float(), norm.normalized_shape, norm.weight, norm.bias,
                                                  norm.eps)
        hidden = layer.activation(hidden.to(torch.bfloat16))  # between layers the signal stays in bf16
    return hidden.float()


class MultimodalEmotionModel(PreTrainedModel):
    """Speech + text emotion classifier with one set of adapters and one head per task.

    Build it with `from_encoders` (from checkpoints, or configs with random weights) and load a saved one with
    `from_pretrained`. Tasks are added with `add_task`; `set_active_task` chooses the adapters and head a
    forward pass uses, and `train_task` freezes everything but one task's adapters and head.

    Args:
        config (`MultimodalEmotionConfig`): The BERT and Wav2Vec2 sub-configs, the tasks, and the adapter and
            head settings.

    Example (the small encoders shipped with kemdy-adapters stand in for `"klue/bert-base"` and
    `"facebook/wav2vec2-base-960h"`):

    >>> import torch
    >>> from kemdy_adapters import MultimodalEmotionModel
    >>> from kemdy_adapters.pretrain import SHIPPED_ENCODERS
    >>> model = MultimodalEmotionModel.from_encoders(SHIPPED_ENCODERS / "text", SHIPPED_ENCODERS / "speech")
    >>> model.add_task("kemdy19")  # Houlsby adapters in every layer of both encoders, and a 7-emotion head
    >>> model.train_task("kemdy19")  # only kemdy19's adapters and head get gradients
    >>> output = model(input_ids=torch.tensor([[2, 400, 3]]), input_values=torch.randn(1, 16000),
    ...                labels=torch.tensor([4]))
    >>> tuple(output.logits.shape), output.loss.requires_grad
    ((1, 7), True)
    """

    config_class = MultimodalEmotionConfig
    base_model_prefix = "kemdy"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    # adapters keeps a second reference to BERT's word embeddings for prompt tuning; the tensor is saved under
    # its own name, so the alias is neither saved nor expected when loading.
    _keys_to_ignore_on_save = ["text_encoder.prompt_tuning.base_model_embeddings.weight"]
    _keys_to_ignore_on_load_missing = [r"text_encoder\.prompt_tuning\.base_model_embeddings\.weight"]

    def __init__(
        self,
        config: MultimodalEmotionConfig,
        text_encoder: BertModel | None = None,
        speech_encoder: Wav2Vec2Model | None = None,
    ):
        super().__init__(config)
        # The encoders get their own config objects: adapters.init() writes adapter state into them.
        self.text_encoder = text_encoder or BertModel(copy.deepcopy(config.text_config))
        self.speech_encoder = speech_encoder or Wav2Vec2Model(copy.deepcopy(config.speech_config))
        if self.speech_encoder.config.add_adapter:
            raise ValueError("Wav2Vec2 configs with add_adapter=True (its own CTC adapter) are not supported")
        if config.text_pooling in ("mean", "attention"):
            self.text_encoder.pooler = None  # unused: so no parameter of the model goes without a gradient
        self.speech_encoder.freeze_feature_encoder()
        self.speech_encoder.config.layerdrop = config.speech_layerdrop
        adapters.init(self.text_encoder)
        adapters.init(self.speech_encoder, interface=wav2vec2_interface(self.speech_encoder.config))
        self._norm_state: dict = {"task": None}
        if config.task_layer_norms:
            for layer, name in self._adapted_layer_norms():
                setattr(layer, name, TaskLayerNorm(getattr(layer, name), self._norm_state))
        self.heads = nn.ModuleDict()
        for name in config.tasks:
            self._build_task(name)
        self.post_init()
        if config.active_task is not None:
            self.set_active_task(config.active_task)

    def initialize_weights(self) -> None:
        # Heads initialise themselves, encoders come initialised (their own constructors) or pretrained, and
        # adapters are initialised by `adapters`. transformers' default would dispatch BertModel's init to every
        # module of the encoder not flagged as loaded and so overwrite pretrained weights: nothing is done here.
        return

    def _init_weights(self, module: nn.Module) -> None:
        return

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_encoders(
        cls,
        text: str = "klue/bert-base",
        speech: str = "facebook/wav2vec2-base-960h",
        pretrained: bool = True,
        tasks: dict[str, list[str]] | None = None,
        use_safetensors: bool | None = None,
        **config_kwargs,
    ) -> MultimodalEmotionModel:
        """Builds the model around a BERT and a Wav2Vec2 checkpoint (hub ids or local folders).

        Args:
            text: BERT checkpoint id or path.
            speech: Wav2Vec2 checkpoint id or path.
            pretrained: Load the checkpoints' weights; `False` takes only their configs and initialises the
                encoders randomly (the `adapter_wo_pretrain` ablation).
            tasks: Optional `{name: labels}` to add right away, with adapters (labels `None`: the 7 emotions).
            use_safetensors: `True` reads the checkpoints' safetensors weights only (never a pickled
                `pytorch_model.bin`); `None`, transformers' default (safetensors when there).
            config_kwargs: Further `MultimodalEmotionConfig` arguments (projector_size, adapter_method, ...).
        """
        from transformers import AutoConfig

        if pretrained:
            text_encoder = BertModel.from_pretrained(text, use_safetensors=use_safetensors)
            speech_encoder = Wav2Vec2Model.from_pretrained(speech, use_safetensors=use_safetensors)
            text_config, speech_config = text_encoder.config, speech_encoder.config
        else:
            text_config, speech_config = AutoConfig.from_pretrained(text), AutoConfig.from_pretrained(speech)
            text_encoder = speech_encoder = None
        config = MultimodalEmotionConfig(
            text_config=text_config,
            speech_config=speech_config,
            text_checkpoint=_checkpoint_name(text) if pretrained else None,
            speech_checkpoint=_checkpoint_name(speech) if pretrained else None,
            **config_kwargs,
        )
        model = cls(config, text_encoder=text_encoder, speech_encoder=speech_encoder)
        for name, labels in (tasks or {}).items():
            model.add_task(name, labels or EMOTIONS)
        return model

    # ----------------------------------------------------------------------------------------------- tasks
    @property
    def tasks(self) -> list[str]:
        return list(self.config.tasks)

    @property
    def active_task(self) -> str | None:
        return self.config.active_task

    def adapter_config(self, part: str = "text"):
        """The `adapters` config of every task's adapters in the `text` or `speech` encoder (the speech encoder's
        lowest `speech_frozen_layers` layers are left out)."""
        leave_out = list(range(self.config.speech_frozen_layers)) if part == "speech" else []
        if self.config.adapter_method == "lora":
            return LoRAConfig(r=self.config.lora_r, alpha=self.config.lora_alpha, leave_out=leave_out)
        # `reference` is applied after creation (_reference_init); adapters builds it from its `bert` default.
        init = "bert" if self.config.adapter_init == "reference" else self.config.adapter_init
        return DoubleSeqBnConfig(reduction_factor=self.config.adapter_reduction_factor, leave_out=leave_out,
                                 non_linearity=self.config.adapter_non_linearity, init_weights=init)

    def _adapted_layer_norms(self) -> list[tuple[nn.Module, str]]:
        """(module, attribute) of the two layer norms of every encoder layer that has adapters."""
        found = []
        for layer in self.text_encoder.encoder.layer:
            found += [(layer.attention.output, "LayerNorm"), (layer.output, "LayerNorm")]
        for layer in self.speech_encoder.encoder.layers[self.config.speech_frozen_layers:]:
            found += [(layer, "layer_norm"), (layer, "final_layer_norm")]
        return found

    def _reference_init(self, name: str) -> None:
        """The reference method's adapter initialisation: truncated normal(0, 1e-3) weights and biases."""
        with torch.no_grad():
            for key, parameter in self.named_parameters():
                if key.startswith(("text_encoder.", "speech_encoder.")) and f"adapters.{name}." in key:
                    nn.init.trunc_normal_(parameter, std=1e-3, a=-2e-3, b=2e-3)

    def _build_task(self, name: str) -> None:
        spec = self.config.tasks[name]
        if spec["adapters"]:
            self.text_encoder.add_adapter(name, config=self.adapter_config("text"))
            self.speech_encoder.add_adapter(name, config=self.adapter_config("speech"))
            if self.config.adapter_init == "reference" and self.config.adapter_method != "lora":
                self._reference_init(name)
            if self.config.task_layer_norms:
                for layer, attribute in self._adapted_layer_norms():
                    getattr(layer, attribute).add(name)
        self.heads[name] = TaskHead(
            text_size=self.text_size,
            speech_size=self.config.speech_config.hidden_size,
            projector_size=self.config.projector_size,
            num_labels=len(spec["labels"]),
            dropout=self.config.dropout,
            num_dimensions=len(spec.get("dimensions", [])),
            text_query=self.config.text_pooling == "attention",
            speech_width=self.speech_width,
        )
        # New modules are created on the CPU; follow the rest of the model (not while from_pretrained builds it
        # on the meta device: moving would send the encoders' buffers there too).
        reference = next(self.text_encoder.parameters())
        if reference.device.type != "meta":
            self.to(device=reference.device)

    def add_task(self, name: str, labels: list[str] | tuple[str, ...] = EMOTIONS, adapters: bool = True,
                 modalities: list[str] | tuple[str, ...] = MODALITIES,
                 dimensions: list[str] | tuple[str, ...] = ()) -> None:
        """Adds a task: its head and, with `adapters=True`, a fresh adapter in every layer of both encoders.

        Args:
            name: The task name (adapters, head and export are named after it).
            labels: The task's label set, in the head's class order.
            adapters: Give the task its own adapters (`False`: a head only, over the shared encoders).
            modalities: `("speech", "text")`, or `("speech",)` for a speech-only task, whose head never sees text.
            dimensions: Regression outputs beside the classes (e.g. `("valence", "arousal")`, 1-5), in the head.
        """
        check_task_name(name)
        if "speech" not in modalities or set(modalities) - set(MODALITIES):
            raise ValueError(f"task {name!r}: modalities must be ('speech', 'text') or ('speech',), got {modalities}")
        if name in self.config.tasks:
            raise ValueError(f"task {name!r} exists already (tasks: {self.tasks})")
        if len(set(labels)) != len(labels) or len(labels) < 2:
            raise ValueError(f"task {name!r} needs at least two distinct labels, got {list(labels)}")
        taken = {part for key, _ in self.named_parameters() for part in key.split(".")}
        if name in taken:
            raise ValueError(f"task name {name!r} collides with a module name of the model")
        if len(set(dimensions)) != len(dimensions):
            raise ValueError(f"task {name!r}: dimensions must be distinct, got {list(dimensions)}")
        self.config.tasks[name] = {"labels": list(labels), "adapters": adapters,
                                   "modalities": [m for m in MODALITIES if m in modalities],
                                   "dimensions": list(dimensions)}
        self._build_task(name)

    def task_labels(self, name: str | None = None) -> list[str]:
        return list(self.config.tasks[self._task(name)]["labels"])

    def task_modalities(self, name: str | None = None) -> list[str]:
        return list(self.config.tasks[self._task(name)].get("modalities", MODALITIES))

    def task_dimensions(self, name: str | None = None) -> list[str]:
        return list(self.config.tasks[self._task(name)].get("dimensions", []))

    def _task(self, name: str | None) -> str:
        name = name or self.config.active_task
        if name is None:
            raise ValueError(f"no task given and no active task; call set_active_task (tasks: {self.tasks})")
        if name not in self.config.tasks:
            raise KeyError(f"unknown task {name!r}; this model has {self.tasks}")
        return name

    @_inactive_adapters_expected
    def set_active_task(self, name: str) -> None:
        """Uses `name`'s adapters (if it has any) and head in forward passes from now on."""
        name = self._task(name)
        active = name if self.config.tasks[name]["adapters"] else None
        for encoder in (self.text_encoder, self.speech_encoder):
            encoder.set_active_adapters(active)
        self._norm_state["task"] = active
        self.config.active_task = name

    @_inactive_adapters_expected
    def deactivate_tasks(self) -> None:
        """No task's adapters or layer norms in forward passes (the frozen base alone) until the next
        `set_active_task`."""
        for encoder in (self.text_encoder, self.speech_encoder):
            encoder.set_active_adapters(None)
        self._norm_state["task"] = None

    def train_task(self, name: str, full: bool = False) -> None:
        """Prepares to train one task: only its adapters and head get gradients (`full=True`: also both
        encoders, except the convolutional feature encoder, which is always frozen). Other heads and
        other tasks' adapters are frozen either way."""
        name = self._task(name)
        self.set_active_task(name)
        for parameter in self.parameters():
            parameter.requires_grad = False
        if self.config.tasks[name]["adapters"]:
            for encoder in (self.text_encoder, self.speech_encoder):
                encoder.train_adapter(name)
            self._norm_state["task"] = name  # train_adapter activates the adapters; the norms follow
            for key, parameter in self.named_parameters():
                if ".tasks." in key and key.endswith((f".tasks.{name}.weight", f".tasks.{name}.bias")):
                    parameter.requires_grad = True
        if full:
            others = {key for task in self.tasks if task != name for key in self.task_parameter_names(task)}
            for key, parameter in self.named_parameters():
                if key.startswith(("text_encoder.", "speech_encoder.")) and key not in others:
                    parameter.requires_grad = True
            self.speech_encoder.freeze_feature_encoder()
        for parameter in self.heads[name].parameters():
            parameter.requires_grad = True
        self.train()

    def task_parameter_names(self, name: str) -> list[str]:
        """Names of the parameters that belong to task `name`: its adapters in both encoders and its head."""
        name = self._task(name)
        head = f"heads.{name}."
        return [
            key for key, _ in self.named_parameters()
            if key.startswith(head) or (key.startswith(("text_encoder.", "speech_encoder.")) and f".{name}." in key)
        ]

    # --------------------------------------------------------------------------------------------- forward
    def speech_frames(
        self, input_values: torch.Tensor, speech_attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs the frozen convolutional feature encoder; returns padded frame features and the frame mask.

        Returns:
            features (B, T, C) and mask (B, T), True on real frames.
        """
        encoder = self.speech_encoder
        if speech_attention_mask is None:
            speech_attention_mask = torch.ones_like(input_values, dtype=torch.long)
        lengths = speech_attention_mask.sum(-1)
        frame_lengths = encoder._get_feat_extract_output_lengths(lengths).long()
        extract = encoder.feature_extractor
        with torch.no_grad():
            if _bf16_inference(input_values):
                # bf16 autocast on a CPU: the convolutions as bf16 matrix products, each utterance alone.
                features = _padded([conv_features_bf16(extract, values[: int(n)]).t()
                                    for values, n in zip(input_values, lengths)], input_values)
            elif encoder.config.feat_extract_norm == "group":
                # Group norm spans the time axis: run each utterance alone (see the module docstring).
                features = _padded([extract(values[None, : int(n)])[0] for values, n in zip(input_values, lengths)],
                                   input_values)
            else:
                features = extract(input_values)  # (B, C, T)
        features = features.transpose(1, 2)  # (B, T, C)
        mask = torch.arange(features.shape[1], device=features.device)[None, :] < frame_lengths[:, None]
        return features, mask

    @_inactive_adapters_expected
    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        query: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The text vector (B, `text_size`) with the active adapters: BERT's pooled [CLS], or with `text_pooling`
        `"mean"` the last layer's mean over the real tokens, `"cls_mean"` both concatenated, or `"attention"` the
        tokens weighted by softmax(token . `query`) over the real tokens (a task's `text_query`; None, as for
        routing, which has no task yet: the mean)."""
        output = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        if self.config.text_pooling == "cls":
            return output.pooler_output
        hidden = output.last_hidden_state
        real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        if self.config.text_pooling == "attention" and query is not None:
            scores = (hidden @ query.to(hidden.dtype)).masked_fill(~real, torch.finfo(hidden.dtype).min)
            return (torch.softmax(scores, dim=1).unsqueeze(-1) * hidden).sum(1)
        mean = masked_mean(hidden, real)
        return torch.cat([output.pooler_output, mean], dim=-1) if self.config.text_pooling == "cls_mean" else mean

    @property
    def text_size(self) -> int:
        """The width of the text vector (`encode_text`)."""
        hidden = self.config.text_config.hidden_size
        return 2 * hidden if self.config.text_pooling == "cls_mean" else hidden

    @property
    def speech_width(self) -> int:
        """The width of a task's pooled speech vector (`speech_pooling`)."""
        return self.config.projector_size * (2 if self.config.speech_pooling == "mean_std" else 1)

    @_inactive_adapters_expected
    def encode_speech(
        self,
        input_values: torch.Tensor | None = None,
        speech_attention_mask: torch.Tensor | None = None,
        speech_features: torch.Tensor | None = None,
        speech_frame_mask: torch.Tensor | None = None,
        speech_hidden: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Wav2Vec2 last hidden states (B, T, H) with the active adapters, and the frame mask (B, T).

        Takes the waveform (`input_values`, `speech_attention_mask`) or, to skip the frozen convolutional
        feature encoder, its precomputed output (`speech_features` (B, T, C), `speech_frame_mask` (B, T); see
        `features.py`), or the precomputed output of the frozen layers below `speech_frozen_layers`
        (`speech_hidden` (B, T, H), see `speech_lower_layers`).
        """
        if speech_hidden is not None:
            mask = frame_mask(speech_hidden, speech_frame_mask)
            with ForwardContext(self.speech_encoder):
                return self._speech_layers(speech_hidden, mask, self.config.speech_frozen_layers), mask
        if speech_features is not None:
            features, mask = speech_features, frame_mask(speech_features, speech_frame_mask)
        elif input_values is not None:
            features, mask = self.speech_frames(input_values, speech_attention_mask)
        else:
            raise ValueError("input_values (the 16 kHz waveform batch) or speech_features is required")
        encoder = self.speech_encoder
        # Calling submodules directly skips the forward() that adapters wraps: open its context ourselves.
        with ForwardContext(encoder):
            hidden, _ = encoder.feature_projection(features)
            hidden = encoder._mask_hidden_states(hidden, attention_mask=mask)  # SpecAugment, training only
            hidden = encoder.encoder(hidden, attention_mask=mask).last_hidden_state
        return hidden, mask

    def _speech_layers(self, hidden: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
        """Wav2Vec2 encoder layers `start`.. on their input `hidden` (B, T, H), then the final layer norm of
        pre-LN models: the part of `Wav2Vec2Encoder(StableLayerNorm).forward` above a layer boundary."""
        encoder = self.speech_encoder.encoder
        stable = self.speech_encoder.config.do_stable_layer_norm
        attention = encoder._update_full_mask(mask.long(), hidden)
        for layer in encoder.layers[start:]:
            hidden = layer(hidden, attention_mask=attention)[0]
        return encoder.layer_norm(hidden) if stable else hidden

    def speech_cache_boundary(self) -> int:
        """The layer boundary below which the speech encoder is frozen for every task and so can be cached:
        `speech_frozen_layers` while nothing below it trains (the adapter strategies), else 0 (cache the
        convolutional feature encoder only)."""
        boundary = self.config.speech_frozen_layers
        if boundary == 0:
            return 0
        if any(parameter.requires_grad for module in self.frozen_speech_modules(boundary)
               for parameter in module.parameters()):
            return 0
        return boundary

    def frozen_speech_modules(self, boundary: int) -> list[nn.Module]:
        """The speech modules whose output a cache at layer `boundary` holds (0: the feature encoder only)."""
        encoder = self.speech_encoder
        if boundary == 0:
            return [encoder.feature_extractor]
        return [encoder.feature_extractor, encoder.feature_projection, encoder.encoder.pos_conv_embed,
                encoder.encoder.layer_norm, *encoder.encoder.layers[:boundary]]

    @torch.no_grad()
    def frozen_speech(self, input_values: torch.Tensor, speech_attention_mask: torch.Tensor | None = None
                      ) -> tuple[str, torch.Tensor, torch.Tensor]:
        """The output of the frozen speech part, as the caches hold it: `("speech_features", (B, T, C), mask)`
        below no layer boundary, `("speech_hidden", (B, T, H), mask)` at `speech_cache_boundary()`; each
        utterance through the layers alone, at its own length."""
        features, mask = self.speech_frames(input_values, speech_attention_mask)
        if not self.speech_cache_boundary():
            return "speech_features", features, mask
        hidden = features.new_zeros(*features.shape[:2], self.config.speech_config.hidden_size)
        for i, n in enumerate(mask.sum(-1).tolist()):
            hidden[i, :n] = self.speech_lower_layers(features[i: i + 1, :n])[0]
        return "speech_hidden", hidden, mask

    @_inactive_adapters_expected
    @torch.no_grad()
    def speech_lower_layers(self, features: torch.Tensor) -> torch.Tensor:
        """One utterance's (1, T, C) feature-encoder output through the frozen part below
        `speech_frozen_layers`: projection, positional convolution, layer norm (post-LN) and the lowest layers,
        in eval mode (no dropout or SpecAugment). Returns (1, T, H), the input of layer `speech_frozen_layers`."""
        encoder = self.speech_encoder
        with eval_mode(encoder), ForwardContext(encoder):
            hidden, _ = encoder.feature_projection(features)
            hidden = hidden + encoder.encoder.pos_conv_embed(hidden)
            if not encoder.config.do_stable_layer_norm:
                hidden = encoder.encoder.layer_norm(hidden)
            for layer in encoder.encoder.layers[: self.config.speech_frozen_layers]:
                hidden = layer(hidden)[0]
        return hidden

    @_inactive_adapters_expected
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        speech_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        task: str | None = None,
        return_dict: bool | None = None,
        speech_features: torch.Tensor | None = None,
        speech_frame_mask: torch.Tensor | None = None,
        speech_hidden: torch.Tensor | None = None,
        text_present: torch.Tensor | None = None,
        dimension_targets: torch.Tensor | None = None,
    ) -> EmotionOutput:
        """Logits (B, num_labels) of `task` (default: the active task); a cross-entropy loss if `labels` given.
        A task with dimensions also returns `dimensions` (B, D) on the 1-5 scale; with `dimension_targets`
        (B, D) the loss adds `dimension_weight` x the dimension loss (`config.dimension_loss`). The targets are
        ignored for a task without dimensions (a shared batch may carry them).

        Speech comes as the waveform (`input_values`, `speech_attention_mask`), as the cached output of the
        frozen convolutional feature encoder (`speech_features`, `speech_frame_mask`), or as the cached output of
        the frozen layers below `speech_frozen_layers` (`speech_hidden`, `speech_frame_mask`).

        `text_present` (B,) is 0 for utterances without a transcript: their pooled text vector is replaced by
        zeros. A speech-only task (modalities `["speech"]`) zeroes it for every utterance, so its predictions do
        not depend on any text passed. (The text encoder still runs, so every trainable parameter takes part in
        the graph, as distributed training without unused-parameter detection needs.)
        """
        task = self._task(task)
        if task != self.config.active_task:
            self.set_active_task(task)
        head = self.heads[task]
        text = self.encode_text(input_ids, attention_mask, token_type_ids, getattr(head, "text_query", None))
        if "text" not in self.task_modalities(task):
            text = torch.where(torch.zeros_like(text, dtype=torch.bool), text, 0.0)
        elif text_present is not None:
            text = torch.where(text_present.bool().unsqueeze(-1), text, 0.0)
        hidden, mask = self.encode_speech(
            input_values, speech_attention_mask, speech_features, speech_frame_mask, speech_hidden
        )  # (B, T, H_speech), (B, T)
        projected = head.projector(hidden)  # (B, T, P)
        if self.config.speech_pooling == "mean_std":
            speech = torch.cat(masked_mean_std(projected, mask, eps=1e-6), dim=-1)  # (B, 2P)
        else:
            speech = masked_mean(projected, mask)  # (B, P)
        if self.training and self.config.modality_dropout and len(self.task_modalities(task)) == 2:
            text, speech = self._drop_modality(text, speech)
        pooled = head.dropout(torch.cat([text, speech], dim=-1))
        logits = head.classifier(pooled)  # (B, num_labels)
        dimensions = head.dimensions(pooled)  # (B, D) or None
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        if loss is not None and dimensions is not None and dimension_targets is not None:
            targets = dimension_targets.to(dimensions.dtype)
            part = (ccc_loss(dimensions, targets) if self.config.dimension_loss == "ccc"
                    else nn.functional.mse_loss(dimensions, targets))
            loss = loss + self.config.dimension_weight * part
        return EmotionOutput(loss=loss, logits=logits, dimensions=dimensions)

    def _drop_modality(self, text: torch.Tensor, speech: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`modality_dropout`: each utterance loses its text vector with probability p / 2, else its speech
        vector with probability p / 2 (zeros, as for an utterance without a transcript)."""
        draw = torch.rand(text.shape[0], 1, device=text.device)
        p = self.config.modality_dropout
        return torch.where(draw < p / 2, 0.0, text), torch.where((draw >= p / 2) & (draw < p), 0.0, speech)

    # ----------------------------------------------------------------------------------------------- export
    def save_task(self, save_directory, name: str | None = None):
        """Writes only task `name`'s adapters and head (safetensors) and what rebuilds them; see `export.py`."""
        from .export import save_task

        return save_task(self, save_directory, self._task(name))

    def load_task(self, location, name: str | None = None, revision: str | None = None, cache_dir=None,
                  expected_labels: list[str] | None = None, same_base: bool = False,
                  allow_unverified: bool = False) -> str:
        """Adds a task saved with `save_task` to this model; returns its name. `location` is a local folder or
        a Hub repo id (resolved through the Hugging Face cache, see `hub.resolve_task`). Its integrity record is
        checked (`allow_unverified=True` accepts an export without one); `expected_labels` checks the task's
        label set; `same_base=True` refuses a task trained on other base weights."""
        from .export import load_task
        from .hub import resolve_task

        return load_task(self, resolve_task(location, revision=revision, cache_dir=cache_dir), name=name,
                         expected_labels=expected_labels, same_base=same_base, allow_unverified=allow_unverified)

    def parameter_report(self, name: str | None = None) -> dict:
        """Trainable parameters of a task (its adapters and head), their share of the model, and export bytes."""
        from .export import parameter_report

        return parameter_report(self, self._task(name))
