"""Compact per-task export: one task's adapters and head as safetensors, plus the config that rebuilds them.

A task folder holds:
- `task_config.json`: the task name and labels, the adapter method and its settings, the head sizes, the
  base encoders it was trained on (checkpoint names and the shapes that must match) and the SHA-256 of the
  weights file;
- `model.safetensors`: the task's adapter weights in both encoders and its head (no pickle anywhere);
- optionally `routing.safetensors`: the task's routing statistics (`routing.py`), written by the task loop;
- `config.json`: `model_type` `kemdy-task`, the task and its labels: what `transformers.pipeline` and
  `AutoConfig` read (`pipelines.py`); nothing is loaded from it, so the integrity record does not need it.
Loading a task into a model built from the same base checkpoints reproduces its logits exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save, save_file

from . import __version__
from .faults import pause
from .storage import write_json

logger = logging.getLogger(__name__)

TASK_CONFIG = "task_config.json"
TASK_WEIGHTS = "model.safetensors"
PIPELINE_CONFIG = "config.json"
PIPELINE_MODEL_TYPE = "kemdy-task"
FORMAT = "kemdy-adapters-task"
FORMAT_VERSION = 1
TEXT_SHAPE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "vocab_size")
SPEECH_SHAPE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                       "conv_dim", "do_stable_layer_norm", "feat_extract_norm")


ADAPTER_SETTINGS = ("adapter_method", "adapter_reduction_factor", "lora_r", "lora_alpha", "speech_frozen_layers",
                    "adapter_non_linearity", "adapter_init", "task_layer_norms")
"""The model settings a task's adapters were built with; a model must match them to load the task."""
HEAD_SETTINGS = ("projector_size", "dropout", "text_pooling", "speech_pooling")
"""The settings a task's head was trained with; all but `dropout` must match to load it."""
SETTING_DEFAULTS = {"speech_frozen_layers": 0, "adapter_non_linearity": "swish", "adapter_init": "bert",
                    "task_layer_norms": False, "text_pooling": "cls",
                    "speech_pooling": "mean"}  # settings older exports do not record


def model_settings(config: dict) -> dict:
    """The `MultimodalEmotionConfig` arguments a task config records (adapters and head)."""
    return {field: config.get(field, SETTING_DEFAULTS.get(field)) for field in (*ADAPTER_SETTINGS, *HEAD_SETTINGS)}


class TaskExportError(ValueError):
    """A task folder is missing, damaged, or does not fit the model it is loaded into."""


@dataclass
class TaskExport:
    path: Path
    task: str
    parameters: int
    bytes: int

    def __str__(self) -> str:
        return f"task {self.task!r}: {self.parameters:,} parameters, {self.bytes / 1e6:.2f} MB in {self.path}"


def base_shapes(model) -> dict:
    text, speech = model.config.text_config, model.config.speech_config
    return {
        "text": {field: _plain(getattr(text, field)) for field in TEXT_SHAPE_FIELDS},
        "speech": {field: _plain(getattr(speech, field)) for field in SPEECH_SHAPE_FIELDS},
    }


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def base_fingerprint(model) -> str:
    """A digest of a slice of both encoders' frozen weights: tells whether two models share base weights."""
    digest = hashlib.sha256()
    for tensor in (model.text_encoder.embeddings.word_embeddings.weight[:64],
                   model.speech_encoder.feature_projection.projection.weight[:64],
                   model.speech_encoder.encoder.layers[-1].final_layer_norm.weight):
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def task_state_dict(model, name: str) -> dict[str, torch.Tensor]:
    parameters = dict(model.named_parameters())
    return {key: parameters[key].detach().to("cpu").contiguous() for key in model.task_parameter_names(name)}


def save_task(model, save_directory, name: str) -> TaskExport:
    """Writes task `name` into `save_directory` (created if needed) and returns its size report."""
    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = model.config.tasks[name]
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kemdy_adapters_version": __version__,
        "task": name,
        "labels": spec["labels"],
        "adapters": spec["adapters"],
        "modalities": spec.get("modalities", ["speech", "text"]),
        "dimensions": spec.get("dimensions", []),
        **{field: getattr(model.config, field) for field in (*ADAPTER_SETTINGS, *HEAD_SETTINGS)},
        "adapter_config": model.adapter_config().to_dict() if spec["adapters"] else None,
        "base": {
            "text_checkpoint": model.config.text_checkpoint,
            "speech_checkpoint": model.config.speech_checkpoint,
            "fingerprint": base_fingerprint(model),
            **base_shapes(model),
        },
    }
    state = task_state_dict(model, name)
    save_file(state, directory / TASK_WEIGHTS, metadata={"format": FORMAT, "task": name})
    config["weights_sha256"] = file_sha256(directory / TASK_WEIGHTS)
    write_json(directory / PIPELINE_CONFIG, {"model_type": PIPELINE_MODEL_TYPE, "task": name, "labels": spec["labels"],
                                             "architectures": ["KemdyTaskModel"]})
    pause("export")
    seal_task(directory, config)
    return TaskExport(
        path=directory,
        task=name,
        parameters=sum(tensor.numel() for tensor in state.values()),
        bytes=sum(path.stat().st_size for path in (directory / TASK_WEIGHTS, directory / TASK_CONFIG,
                                                    directory / PIPELINE_CONFIG)),
    )


SEALED_FILES = (TASK_WEIGHTS, "routing.safetensors")
"""The files of a task folder its integrity record covers (when present), beside the config itself."""


def _canonical(config: dict) -> bytes:
    return json.dumps({key: value for key, value in config.items() if key != "config_sha256"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def seal_task(directory, config: dict | None = None) -> dict:
    """Records the SHA-256 of every task file (`files_sha256`) and of the config itself (`config_sha256`: labels,
    settings, base and digests), and writes `task_config.json` atomically. Called after every file is written."""
    directory = Path(directory)
    config = dict(config if config is not None else read_task_config(directory))
    config["files_sha256"] = {name: file_sha256(directory / name) for name in SEALED_FILES
                              if (directory / name).is_file()}
    config["config_sha256"] = hashlib.sha256(_canonical(config)).hexdigest()
    write_json(directory / TASK_CONFIG, config)
    return config


def verify_task(directory, allow_unverified: bool = False) -> dict:
    """The task's config after checking its integrity record: the config's own digest and every file's.

    Raises:
        TaskExportError: naming the file that differs, or, without `allow_unverified`, an export that has no
            integrity record (written by an older kemdy-adapters, or by hand).
    """
    directory = Path(directory)
    config = read_task_config(directory)
    if "config_sha256" not in config or "files_sha256" not in config:
        if not allow_unverified:
            raise TaskExportError(
                f"{directory / TASK_CONFIG}: no integrity record (config_sha256, files_sha256): exported by an older "
                "kemdy-adapters or by hand; re-export it, or load it unchecked with allow_unverified "
                "(--allow-unverified)")
        logger.warning("%s: no integrity record; loaded unverified as asked", directory)
        return config
    if hashlib.sha256(_canonical(config)).hexdigest() != config["config_sha256"]:
        raise TaskExportError(f"{directory / TASK_CONFIG}: modified after export (its contents, e.g. labels or "
                              "settings, differ from the SHA-256 it records)")
    recorded = config["files_sha256"]
    for name in SEALED_FILES:
        path = directory / name
        if name not in recorded:
            if path.is_file():
                raise TaskExportError(f"{path}: not covered by the task's integrity record (added after export)")
            continue
        if not path.is_file():
            raise TaskExportError(f"{path}: missing (the task's integrity record lists it)")
        if file_sha256(path) != recorded[name]:
            raise TaskExportError(f"{path}: contents differ from the SHA-256 recorded in {TASK_CONFIG} (damaged or "
                                  "modified after export)")
    return config


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_task_config(directory) -> dict:
    path = Path(directory) / TASK_CONFIG
    if not path.is_file():
        raise TaskExportError(f"{directory}: not a kemdy-adapters task folder ({TASK_CONFIG} is missing)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise TaskExportError(f"{path}: not valid JSON ({error})") from error
    if config.get("format") != FORMAT:
        raise TaskExportError(f"{path}: not a kemdy-adapters task config (format={config.get('format')!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise TaskExportError(f"{path}: written by a newer kemdy-adapters (format {config['format_version']})")
    return config


def check_compatible(model, config: dict, source, same_base: bool = False) -> None:
    """Raises TaskExportError naming every mismatch between the task's base and the model's.

    With `same_base=True` (a task received to continue from) different base weights are an error too, since
    the task's predictions would then differ from the sender's; otherwise they are a warning."""
    problems = []
    ours = base_shapes(model)
    for part in ("text", "speech"):
        for field, value in config["base"][part].items():
            if ours[part].get(field) != value:
                problems.append(f"{part} encoder {field}: task has {value!r}, model has {ours[part].get(field)!r}")
    settings = model_settings(config)
    head = tuple(field for field in HEAD_SETTINGS if field != "dropout")  # dropout only shapes training
    for field in (*ADAPTER_SETTINGS, *head) if config["adapters"] else head:
        if getattr(model.config, field) != settings[field]:
            problems.append(f"{field}: task has {settings[field]!r}, model has {getattr(model.config, field)!r}")
    if problems:
        raise TaskExportError(f"{source}: task {config['task']!r} does not fit this model: " + "; ".join(problems))
    if same_base and config["base"].get("fingerprint") != base_fingerprint(model):
        raise TaskExportError(
            f"{source}: task {config['task']!r} was trained on other base weights ({config['base']['text_checkpoint']}"
            f" + {config['base']['speech_checkpoint']}, fingerprint {config['base'].get('fingerprint')}) than this "
            f"run's ({model.config.text_checkpoint} + {model.config.speech_checkpoint}, fingerprint "
            f"{base_fingerprint(model)}): use the same text_model and speech_model as the sender")
    if config["base"].get("fingerprint") != base_fingerprint(model):
        logger.warning(
            "%s: task %r was trained on base weights %s (%s / %s); this model's base weights differ, so its "
            "predictions will not match the exported ones", source, config["task"], config["base"]["fingerprint"],
            config["base"]["text_checkpoint"], config["base"]["speech_checkpoint"])


def load_task(model, directory, name: str | None = None, expected_labels: list[str] | None = None,
              same_base: bool = False, allow_unverified: bool = False) -> str:
    """Adds the task saved in `directory` to `model` under its saved name (or `name`); returns the name.

    Only `task_config.json` and `model.safetensors` are read: no pickle, no code. The integrity record is
    checked first (`verify_task`; `allow_unverified=True` loads an export without one). `same_base=True`
    refuses a task trained on other base weights (see `check_compatible`).
    """
    directory = Path(directory)
    config = verify_task(directory, allow_unverified=allow_unverified)
    check_compatible(model, config, directory, same_base=same_base)
    if expected_labels is not None and list(expected_labels) != config["labels"]:
        raise TaskExportError(f"{directory}: label set {config['labels']} differs from the expected {expected_labels}")
    weights = directory / TASK_WEIGHTS
    if not weights.is_file():
        raise TaskExportError(f"{directory}: {TASK_WEIGHTS} is missing")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as error:
        raise TaskExportError(f"{weights}: unreadable safetensors file ({error})") from error
    saved, target = config["task"], name or config["task"]
    model.add_task(target, config["labels"], adapters=config["adapters"],
                   modalities=config.get("modalities", ["speech", "text"]), dimensions=config.get("dimensions", []))
    try:
        renamed = {_rename(key, saved, target): tensor for key, tensor in state.items()}
        parameters = dict(model.named_parameters())
        expected = set(model.task_parameter_names(target))
        missing, unexpected = sorted(expected - set(renamed)), sorted(set(renamed) - expected)
        if missing or unexpected:
            raise TaskExportError(f"{weights}: tensors do not match task {target!r}: missing {missing[:5]}"
                                  f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}")
        for key, tensor in renamed.items():
            if parameters[key].shape != tensor.shape:
                raise TaskExportError(f"{weights}: {key} has shape {tuple(tensor.shape)}, the model expects "
                                      f"{tuple(parameters[key].shape)}")
        with torch.no_grad():
            for key, tensor in renamed.items():
                parameters[key].copy_(tensor)
    except TaskExportError:
        remove_task(model, target)
        raise
    return target


def _rename(key: str, old: str, new: str) -> str:
    return key if old == new else key.replace(f".{old}.", f".{new}.")


def remove_task(model, name: str) -> None:
    """Deletes a task's adapters and head (used to undo a failed load)."""
    if model.config.tasks[name]["adapters"]:
        for encoder in (model.text_encoder, model.speech_encoder):
            encoder.delete_adapter(name)
        if model.config.task_layer_norms:
            for layer, attribute in model._adapted_layer_norms():
                getattr(layer, attribute).remove(name)
    del model.heads[name]
    del model.config.tasks[name]
    if model.config.active_task == name:
        model.config.active_task = None


def parameter_report(model, name: str) -> dict:
    """Per-task parameter counts and the exact size of its exported weights."""
    state = task_state_dict(model, name)
    task_parameters = sum(tensor.numel() for tensor in state.values())
    total = sum(parameter.numel() for parameter in model.parameters())
    heads = sum(parameter.numel() for parameter in model.heads[name].parameters())
    return {
        "task": name,
        "task_parameters": task_parameters,
        "adapter_parameters": task_parameters - heads,
        "head_parameters": heads,
        "model_parameters": total,
        "share": task_parameters / total,
        "export_bytes": len(save(state, metadata={"format": FORMAT, "task": name})),
    }
