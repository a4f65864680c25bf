"""Inference: `EmotionRecognizer` loads one or more task adapters (Hub repo ids or local folders) into a model
built from their base checkpoints and classifies utterances (speech + transcript), choosing the task's adapters
by routing when the caller does not name the task.

    recognizer = EmotionRecognizer.from_pretrained(["org/kemdy19-adapter", "runs/x/kemdy20/export"])
    recognizer("utt.wav", "transcript")            # routed
    recognizer(waveform, "transcript", task="kemdy20", sampling_rate=44100)

Audio of any sample rate and channel count is converted to 16 kHz mono (soundfile + soxr). Bad input raises
`InputError` naming the item and what is wrong; `predict_many` turns those into per-item error records and goes
on with the batch.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .corpus import clean_transcript, read_transcript
from .data import MultimodalCollator, MultimodalProcessor
from .export import TaskExportError, model_settings, read_task_config
from .hf_dataset import SAMPLING_RATE
from .hub import resolve_task
from .modeling import MultimodalEmotionModel
from .precision import autocast, cast_linear_weights, resolve_precision, torch_dtype
from .routing import DEFAULT_KIND, Router, load_statistics

logger = logging.getLogger(__name__)

MIN_SECONDS = 0.1
SILENCE_PEAK = 1e-4  # -80 dBFS: nothing but digital silence or dither
TRANSCRIPT_ENCODINGS = ("utf-8", "cp949")


class InputError(ValueError):
    """One utterance cannot be classified: unreadable or unusable audio, or no text."""


def load_audio(audio, sampling_rate: int | None = None, name: str = "audio") -> np.ndarray:
    """16 kHz mono float32 from a wav path, or from an array (samples, or samples x channels) at `sampling_rate`."""
    import soundfile as sf
    import soxr

    if isinstance(audio, (str, Path)):
        name = str(audio)
        if not Path(audio).is_file():
            raise InputError(f"{audio}: no such file")
        try:
            data, rate = sf.read(str(audio), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as error:
            raise InputError(f"{audio}: unreadable audio file ({error})") from error
    else:
        if sampling_rate is None:
            raise InputError(f"{name}: an audio array needs its sampling_rate")
        data, rate = np.asarray(audio, dtype=np.float32), int(sampling_rate)
        if data.ndim == 1:
            data = data[:, None]
        elif data.ndim != 2:
            raise InputError(f"{name}: audio must be 1-D (samples) or 2-D (samples x channels), got {data.shape}")
        elif data.shape[0] < data.shape[1]:
            data = data.T  # channels x samples
    if data.size == 0 or len(data) / rate < MIN_SECONDS:
        raise InputError(f"{name}: audio too short ({len(data) / rate:.3f} s; at least {MIN_SECONDS} s needed)")
    mono = data.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise InputError(f"{name}: audio holds NaN or infinite samples")
    if np.abs(mono).max() < SILENCE_PEAK:
        raise InputError(f"{name}: audio is silent (peak below {SILENCE_PEAK:g})")
    if rate != SAMPLING_RATE:
        mono = soxr.resample(mono, rate, SAMPLING_RATE).astype(np.float32)
    return mono


def transcript_beside(wav: str | Path) -> str | None:
    """The cleaned transcript in the `.txt` beside a wav file (UTF-8 or cp949, as in KEMDy); None without one."""
    path = Path(wav).with_suffix(".txt")
    if not path.is_file():
        return None
    try:
        raw, _ = read_transcript(path, TRANSCRIPT_ENCODINGS)
    except ValueError as error:
        raise InputError(str(error)) from error
    return clean_transcript(raw)


def quantize_int8(model: MultimodalEmotionModel) -> MultimodalEmotionModel:
    """Dynamic int8 quantisation of every linear layer (encoders, adapters, heads) in place, for CPU serving:
    weights stored as int8, activations quantised per batch. Convolutions and layer norms stay float. Done after
    every task is loaded (a quantised model cannot learn or load tasks)."""
    from torch.ao.quantization import quantize_dynamic

    model.eval()
    _unwrap_idle_lora_layers(model)
    with warnings.catch_warnings(record=True) as caught:
        # torch 2.13 deprecates the quantized tensor types that quantize_dynamic itself creates: nothing a user of
        # `--int8` can act on, so it goes to the log rather than the console.
        warnings.filterwarnings("always", message=".*quantized tensor creation functions.*", category=UserWarning)
        quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    for warning in caught:
        if "quantized tensor creation functions" in str(warning.message):
            logger.info("int8 quantisation: %s", warning.message)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return model


def _unwrap_idle_lora_layers(model: torch.nn.Module) -> int:
    """`adapters` wraps the encoders' attention and feed-forward projections in its LoRA layer (an `nn.Linear`
    subclass) even when no task uses LoRA; `quantize_dynamic` matches module types exactly and so would skip
    them, the encoders' largest matrices. Each wrapper without LoRA weights or hooks is replaced by the plain
    `nn.Linear` it computes (sharing its weight and bias). Returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            idle = (isinstance(child, torch.nn.Linear) and type(child) is not torch.nn.Linear
                    and len(getattr(child, "loras", {"unknown": None})) == 0
                    and not getattr(child, "fan_in_fan_out", False)
                    and not child._forward_hooks and not child._forward_pre_hooks)
            if idle:
                plain = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                        device=child.weight.device, dtype=child.weight.dtype)
                plain.weight = child.weight
                plain.bias = child.bias
                setattr(parent, name, plain)
                replaced += 1
    return replaced


@dataclass
class Prediction:
    emotion: str
    probabilities: dict[str, float]
    task: str
    routed: bool
    routing: dict[str, float] | None
    seconds: float
    transcript: str = "given"
    """Where the transcript came from: `given`, `file` (the .txt beside the wav) or `none` (speech only)."""
    dimensions: dict[str, float] | None = None
    """Valence and arousal (1-5) where the task predicts them, else None."""

    def to_dict(self) -> dict:
        return {"emotion": self.emotion, "probabilities": self.probabilities,
                **(self.dimensions or {}), "task": self.task,
                "routed": self.routed, "routing": self.routing, "transcript": self.transcript,
                "seconds": round(self.seconds, 4)}


class EmotionRecognizer:
    """A model with one or more tasks, its processor, and a router over the tasks that have routing statistics.

    Load it with `from_pretrained` from task folders or Hub repo ids; call it on one utterance.

    Args:
        model (`MultimodalEmotionModel`): The model with its tasks loaded.
        processor (`MultimodalProcessor`): Tokenizer and waveform preparation of the model's checkpoints.
        router (`Router`, *optional*): Picks a task per utterance when none is named (needed for several tasks).

    Example (a task exported untrained from the shipped small encoders; `train` and `push` make real ones):

    >>> import tempfile
    >>> import numpy as np
    >>> from kemdy_adapters import EmotionRecognizer, MultimodalEmotionModel
    >>> from kemdy_adapters.pretrain import SHIPPED_ENCODERS
    >>> model = MultimodalEmotionModel.from_encoders(SHIPPED_ENCODERS / "text", SHIPPED_ENCODERS / "speech",
    ...                                              tasks={"kemdy19": None})
    >>> folder = f"{tempfile.mkdtemp()}/kemdy19"
    >>> _ = model.save_task(folder, "kemdy19")
    >>> recognizer = EmotionRecognizer.from_pretrained(folder, allow_unverified=True)  # no integrity record
    >>> speech = 0.1 * np.sin(np.linspace(0, 2000, 16000))  # one second at 16 kHz
    >>> prediction = recognizer(speech, "오늘 정말 기분이 좋아요", sampling_rate=16000)
    >>> prediction["task"], len(prediction["probabilities"]), prediction["emotion"] in prediction["probabilities"]
    ('kemdy19', 7, True)
    """

    def __init__(self, model: MultimodalEmotionModel, processor: MultimodalProcessor, router: Router | None = None,
                 precision: str = "auto"):
        self.model = model.eval()
        self.processor = processor
        self.collator = MultimodalCollator(processor.tokenizer)
        self.router = router
        self.precision = resolve_precision(precision, model.device)

    @property
    def tasks(self) -> list[str]:
        return self.model.tasks

    @classmethod
    def from_pretrained(
        cls,
        tasks,
        text_model: str | None = None,
        speech_model: str | None = None,
        revision: str | None = None,
        cache_dir=None,
        token: str | None = None,
        device: str | torch.device = "cpu",
        max_speech_seconds: float = 5.0,
        max_text_length: int = 256,
        int8: bool = False,
        allow_unverified: bool = False,
        precision: str = "auto",
    ) -> EmotionRecognizer:
        """Loads task adapters (Hub repo ids or local task folders) into a model built from their base checkpoints.

        Args:
            tasks: One location or a list of them. Every task must come from the same base checkpoints.
            text_model, speech_model: Override the base checkpoints recorded in the tasks (e.g. a local copy).
            revision, cache_dir, token: Passed to the Hub when a location is a repo id.
            int8: Serve with dynamic int8 quantisation of every linear layer (CPU; see `quantize_int8`).
            precision: `auto` (bf16 where the CPU or GPU computes it natively; fp32 with `int8`), `fp32`, `bf16`
                or `fp16` (GPU); see `precision.py`. In bf16/fp16 the linear layers' weights are stored in that
                precision. Probabilities are computed in fp32 whatever the precision.
            allow_unverified: Load tasks that have no integrity record (older exports) without checking them.
        """
        locations = [tasks] if isinstance(tasks, (str, Path)) else list(tasks)
        if not locations:
            raise ValueError("no task to load")
        folders = [resolve_task(location, revision=revision, cache_dir=cache_dir, token=token)
                   for location in locations]
        configs = [read_task_config(folder) for folder in folders]
        first = configs[0]
        text = text_model or first["base"]["text_checkpoint"]
        speech = speech_model or first["base"]["speech_checkpoint"]
        if not text or not speech:
            raise TaskExportError(f"{folders[0]}: the task records no base checkpoint (trained on random encoders?); "
                                  "pass text_model= and speech_model=")
        for folder, config in zip(folders[1:], configs[1:]):
            text_differs = not text_model and config["base"]["text_checkpoint"] != text
            speech_differs = not speech_model and config["base"]["speech_checkpoint"] != speech
            if text_differs or speech_differs:
                raise TaskExportError(
                    f"{folder}: task {config['task']!r} was trained on {config['base']['text_checkpoint']} + "
                    f"{config['base']['speech_checkpoint']}, the first task on {text} + {speech}")
        # The base checkpoints a task names are read as safetensors only: no pickle from a received task's base.
        model = MultimodalEmotionModel.from_encoders(text, speech, pretrained=True, use_safetensors=True,
                                                     **model_settings(first))
        statistics = {}
        for folder in folders:
            name = model.load_task(folder, allow_unverified=allow_unverified)
            kinds = load_statistics(folder)
            if kinds:
                statistics[name] = kinds
        model.to(device)
        router = None
        if len(model.tasks) > 1:
            shared = set.intersection(*(set(kinds) for kinds in statistics.values())) if statistics else set()
            if len(statistics) == len(model.tasks) and shared:
                kind = DEFAULT_KIND if DEFAULT_KIND in shared else sorted(shared)[0]
                router = Router({task: statistics[task][kind] for task in model.tasks})
            else:
                logger.warning("tasks without routing statistics (%s): pass task= to every call",
                               sorted(set(model.tasks) - set(statistics)))
        if int8:
            if precision not in ("auto", "fp32"):
                raise ValueError(f"int8 serving runs in fp32, not {precision}")
            precision = "fp32"
            quantize_int8(model)
        resolved = resolve_precision(precision, model.device)
        if resolved != "fp32":  # this model is only served: its linear weights are stored in the serving precision
            cast_linear_weights(model, torch_dtype(resolved))
        processor = MultimodalProcessor.from_checkpoints(text, speech, max_text_length=max_text_length,
                                                         max_speech_seconds=max_speech_seconds)
        return cls(model, processor, router, precision=precision)

    # ------------------------------------------------------------------------------------------- inference
    def _inputs(self, audio, text: str | None, sampling_rate: int | None, name: str) -> tuple[dict, str]:
        """The model inputs of one utterance and where its transcript came from: `given`, `file` (the .txt
        beside the wav, used when no text or only blanks are given) or `none` (speech only)."""
        waveform = load_audio(audio, sampling_rate, name=name)
        if text is not None and not isinstance(text, str):
            raise InputError(f"{name}: text must be a string, got {type(text).__name__}")
        source = "given"
        if text is None or not text.strip():
            text = transcript_beside(audio) if isinstance(audio, (str, Path)) else None
            source = "file" if text and text.strip() else "none"
        row = self.processor({"text": [text if source != "none" else ""], "audio": [{"array": waveform}],
                              "label": [0]})
        features = [{key: row[key][0] for key in row if key not in ("labels", "length")}]
        batch = self.collator(features)
        return {key: value.to(self.model.device) for key, value in batch.items()}, source

    @torch.no_grad()
    def __call__(self, audio, text: str | None = None, task: str | None = None,
                 sampling_rate: int | None = None) -> dict:
        """Classifies one utterance: `audio` is a wav path or an array (then give `sampling_rate`); `text` its
        transcript. Without a text (None, empty or blank) the `.txt` beside the wav is used if there is one, and
        otherwise the utterance is classified from speech alone (a zero text vector; a speech-only task ignores
        text always). `task` picks the adapters; without it, a one-task model uses its task and a multi-task
        model routes. Returns emotion, probabilities, `valence` and `arousal` (1-5) where the task predicts them,
        task, routing, where the transcript came from, seconds."""
        started = time.perf_counter()
        name = str(audio) if isinstance(audio, (str, Path)) else "audio"
        batch, transcript = self._inputs(audio, text, sampling_rate, name)
        routing = None
        if task is not None:
            if task not in self.model.tasks:
                raise InputError(f"{name}: unknown task {task!r}; loaded tasks: {self.model.tasks}")
            chosen, routed = task, False
        elif len(self.model.tasks) == 1:
            chosen, routed = self.model.tasks[0], False
        else:
            if self.router is None:
                raise InputError(f"{name}: no task given and the loaded tasks have no routing statistics")
            with autocast(self.precision, self.model.device):
                names, posterior = self.router.route(self.model, batch)
            chosen, routed = names[0], True
            routing = {other: round(float(p), 6) for other, p in zip(self.router.tasks, posterior[0])}
        with autocast(self.precision, self.model.device):
            output = self.model(**batch, task=chosen)
        logits = output.logits[0].float()
        dimensions = None
        if output.dimensions is not None:
            dimensions = {name: round(float(value), 4)
                          for name, value in zip(self.model.task_dimensions(chosen), output.dimensions[0].tolist())}
        if not torch.isfinite(logits).all():
            raise InputError(f"{name}: task {chosen!r} gave non-finite scores (damaged weights, or an input the "
                             "model cannot handle)")
        probabilities = torch.softmax(logits, -1).tolist()
        labels = self.model.task_labels(chosen)
        return Prediction(
            emotion=labels[int(np.argmax(probabilities))],
            probabilities={label: round(p, 6) for label, p in zip(labels, probabilities)},
            task=chosen, routed=routed, routing=routing, seconds=time.perf_counter() - started,
            transcript=transcript, dimensions=dimensions,
        ).to_dict()

    @torch.no_grad()
    def logits(self, audio, text: str | None = None, task: str | None = None,
               sampling_rate: int | None = None) -> torch.Tensor:
        """The raw logits (num_labels,) of one utterance under `task`'s adapters and head (inputs as `__call__`;
        a one-task model's task by default). For checks such as: a received task scores exactly as its sender's."""
        task = task or (self.model.tasks[0] if len(self.model.tasks) == 1 else None)
        if task not in self.model.tasks:
            raise InputError(f"give one of the loaded tasks {self.model.tasks}, got {task!r}")
        batch, _ = self._inputs(audio, text, sampling_rate, str(audio) if isinstance(audio, (str, Path)) else "audio")
        with autocast(self.precision, self.model.device):
            return self.model(**batch, task=task).logits[0].float()

    def predict_many(self, items, task: str | None = None):
        """Yields one record per item (`{"id", "audio", "text", "task"}` dicts): the prediction, or the error."""
        for item in items:
            record = {"id": item.get("id") or str(item.get("audio"))}
            try:
                record |= self(item["audio"], item.get("text"), task=item.get("task") or task,
                               sampling_rate=item.get("sampling_rate"))
            except InputError as error:
                record["error"] = str(error)
            yield record


def items_from(wav=None, text: str | None = None, folder=None, manifest=None) -> list[dict]:
    """The utterances one `predict` call names: a wav (and its text), every wav in a folder (recursively, text
    from the `.txt` beside each), or a CSV manifest with columns `audio` and optionally `text`, `id`, `task`
    (paths relative to the manifest)."""
    import csv

    if sum(value is not None for value in (wav, folder, manifest)) != 1:
        raise ValueError("give exactly one of a wav file, a folder or a CSV manifest")
    if wav is not None:
        return [{"id": Path(wav).stem, "audio": str(wav), "text": text}]
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        wavs = sorted(path for path in folder.rglob("*") if path.suffix.lower() == ".wav")
        if not wavs:
            raise ValueError(f"{folder}: no .wav files")
        return [{"id": str(path.relative_to(folder).with_suffix("")), "audio": str(path), "text": None}
                for path in wavs]
    manifest = Path(manifest)
    with open(manifest, newline="", encoding="utf-8-sig") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or "audio" not in rows[0]:
        raise ValueError(f"{manifest}: a CSV manifest needs a header with an 'audio' column (and optionally text, "
                         "id, task)")
    items = []
    for line, row in enumerate(rows, start=2):
        audio = (row.get("audio") or "").strip()
        path = Path(audio) if Path(audio).is_absolute() else manifest.parent / audio
        items.append({"id": (row.get("id") or "").strip() or f"{manifest.name}:{line}",
                      "audio": str(path) if audio else f"{manifest.name}:{line} (no audio path)",
                      "text": row.get("text") or None,  # an empty cell: the .txt beside the wav, or none
                      "task": (row.get("task") or "").strip() or None})
    return items
