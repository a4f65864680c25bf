"""From a loaded corpus to model inputs: tokenisation and waveform preparation once per corpus with `Dataset.map`
(cached by `datasets`), session folds selected from it, and the collator that pads text and speech into batches."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers.data.data_collator import pad_without_fast_tokenizer_warning

from .hf_dataset import decode_audio
from .tasks import TaskSpec, resolve_task, task_rows

MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "text_present", "input_values", "speech_features",
                 "speech_hidden", "labels", "dimension_targets")
SPEECH_COLUMNS = ("speech_hidden", "speech_features", "input_values")


@dataclass
class MultimodalProcessor:
    """Turns dataset rows into model inputs: WordPiece ids (truncated) and a normalised, cropped 16 kHz waveform.

    Args:
        tokenizer: The text encoder's tokenizer.
        max_text_length: Token limit (256 in the reference method).
        max_speech_seconds: Speech is cropped to its first `max_speech_seconds` (5 s in the reference).
        normalize: Zero-mean, unit-variance waveform per utterance, as Wav2Vec2FeatureExtractor(do_normalize)
            does for wav2vec2-base-960h and most Wav2Vec2 checkpoints.
    """

    tokenizer: object
    max_text_length: int = 256
    max_speech_seconds: float = 5.0
    normalize: bool = True
    sampling_rate: int = 16000

    def speech(self, array) -> np.ndarray:
        values = np.asarray(array, dtype=np.float32)[: int(self.max_speech_seconds * self.sampling_rate)]
        if self.normalize:
            values = (values - values.mean()) / np.sqrt(values.var() + 1e-7)
        return values

    def __call__(self, batch: dict) -> dict:
        # An utterance without a transcript gets the empty one ([CLS] [SEP]) and text_present 0: the model then
        # uses a zero text vector for it (see MultimodalEmotionModel.forward).
        texts = [text if isinstance(text, str) else "" for text in batch["text"]]
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_text_length)
        speech = [self.speech(decode_audio(audio)["array"]) for audio in batch["audio"]]
        inputs = {
            **{key: encoded[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded},
            "text_present": [1.0 if text.strip() else 0.0 for text in texts],
            "input_values": speech,
            "labels": batch["label"],
            "length": [len(values) for values in speech],
        }
        if "valence" in batch and "arousal" in batch:  # the regression targets, for tasks that learn them
            inputs["dimension_targets"] = [[float(v), float(a)] for v, a in zip(batch["valence"], batch["arousal"])]
        return inputs

    @classmethod
    def from_checkpoints(cls, text_checkpoint: str, speech_checkpoint: str | None = None, **kwargs):
        """The tokenizer of `text_checkpoint` and the normalisation setting of `speech_checkpoint`'s feature
        extractor (normalise when it has none)."""
        from transformers import AutoTokenizer, Wav2Vec2FeatureExtractor

        tokenizer = AutoTokenizer.from_pretrained(text_checkpoint)
        normalize = True
        if speech_checkpoint is not None:
            try:
                normalize = Wav2Vec2FeatureExtractor.from_pretrained(speech_checkpoint).do_normalize
            except OSError:
                pass
        return cls(tokenizer=tokenizer, normalize=normalize, **kwargs)


def prepare(
    dataset: datasets.Dataset, processor: MultimodalProcessor, num_proc: int | None = None
) -> datasets.Dataset:
    """Model inputs for every row, keeping `id`, `session`, `label` (and a `split` column); computed once and cached
    by `datasets`."""
    if -1 in dataset.unique("label"):
        raise ValueError("the dataset holds multi-label rows (label -1); load the single_label config to train")
    keep = {"id", "session", "label", "split"}
    prepared = dataset.map(
        processor,
        batched=True,
        batch_size=64,
        num_proc=num_proc,
        remove_columns=[column for column in dataset.column_names if column not in keep],
        desc="tokenising and preparing speech",
    )
    # Waveforms come back as numpy arrays, not Python lists of floats (much faster to collate).
    return prepared.with_format("numpy", columns=["input_values"], output_all_columns=True)


class CorpusFold(datasets.DatasetDict):
    """One fold's train/validation/test splits of a prepared corpus, each `corpus.select(rows[split])`.

    It is a `DatasetDict` like any other; it also keeps the whole prepared `corpus` and the fold's `rows`, so that
    what is computed per utterance (the frozen speech part's cache, see `features.py`) is computed once per
    corpus and every fold selects its rows from it (`select_from`)."""

    def __init__(self, corpus: datasets.Dataset, rows: dict[str, list[int]]):
        super().__init__({name: corpus.select(indices) for name, indices in rows.items()})
        self.corpus, self.rows = corpus, rows

    def select_from(self, corpus: datasets.Dataset) -> datasets.DatasetDict:
        """The fold's rows of `corpus`, a per-row transform of `self.corpus` (same rows, same order)."""
        if len(corpus) != len(self.corpus):
            raise ValueError(f"expected the {len(self.corpus)} rows of the fold's corpus, got {len(corpus)}")
        return datasets.DatasetDict({name: corpus.select(indices) for name, indices in self.rows.items()})


def prepare_task(task: str | TaskSpec, data_dir: str | Path | None, processor: MultimodalProcessor,
                 cache_dir: str | None = None) -> datasets.Dataset:
    """Task `task` (a `TaskSpec`, or a KEMDy corpus name with its `data_dir`) loaded and prepared: every
    utterance's model inputs, once per corpus."""
    spec = task if isinstance(task, TaskSpec) else resolve_task(task, data_dir)
    return prepare(spec.load(cache_dir=cache_dir), processor)


def load_task_splits(
    task: str | TaskSpec,
    data_dir: str | Path | None,
    fold: int,
    processor: MultimodalProcessor,
    cache_dir: str | None = None,
    n_folds: int = 5,
    fold_seed: int = 12,
    corpus: datasets.Dataset | None = None,
) -> CorpusFold:
    """Loads task `task` (a `TaskSpec`, or a KEMDy corpus name with its `data_dir`) and returns fold `fold`'s
    train/validation/test inputs (session-wise folds, or the corpus's own `split` column). `corpus`: the task's
    prepared corpus (`prepare_task`) when it is already at hand."""
    corpus = prepare_task(task, data_dir, processor, cache_dir) if corpus is None else corpus
    return CorpusFold(corpus, task_rows(corpus, fold, n_folds=n_folds, fold_seed=fold_seed))


def frame_mask(frames: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The (B, T) boolean mask of real frames of (B, T, C) `frames`: `mask` as given, or all frames."""
    if mask is None:
        return torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
    return mask.bool()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean over the real positions of (B, T, C) `values` (`mask` (B, T)): (B, C)."""
    weights = mask.unsqueeze(-1).to(values.dtype)
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def masked_mean_std(values: torch.Tensor, mask: torch.Tensor, eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and the standard deviation (square root of the variance + `eps`) over the real positions of
    (B, T, C) `values` (`mask` (B, T))."""
    weights = mask.unsqueeze(-1).to(values.dtype)
    count = weights.sum(1).clamp(min=1.0)
    mean = (values * weights).sum(1) / count
    variance = (((values - mean[:, None]) ** 2) * weights).sum(1) / count
    return mean, (variance + eps).sqrt()


@contextmanager
def eval_mode(module: torch.nn.Module):
    """`module` in eval mode (no dropout, no SpecAugment) inside the block, its own mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def model_batches(dataset: datasets.Dataset, collator, batch_size: int, device):
    """Collated model-input batches of a prepared dataset, in order, on `device`."""
    columns = [column for column in MODEL_COLUMNS if column in dataset.column_names]
    rows = dataset.select_columns(columns)
    for start in range(0, len(rows), batch_size):
        features = [rows[i] for i in range(start, min(start + batch_size, len(rows)))]
        yield {key: value.to(device) for key, value in collator(features).items()}


@dataclass
class MultimodalCollator:
    """Pads token ids with the tokenizer, and waveforms (or cached frames: feature-encoder output or frozen-layer
    output, see features.py) with zeros plus a mask (`speech_attention_mask`, or `speech_frame_mask` for frames)."""

    tokenizer: object
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        text_keys = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in features[0]]
        # (transformers' helper silences its advice to tokenise and pad in one call: text is tokenised once,
        # ahead, with Dataset.map.)
        batch = pad_without_fast_tokenizer_warning(
            self.tokenizer,
            [{key: feature[key] for key in text_keys} for feature in features],
            padding=True,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_tensors="pt",
        )
        speech_key = next(key for key in SPEECH_COLUMNS if key in features[0])
        rows = [torch.as_tensor(np.asarray(feature[speech_key], dtype=np.float32)) for feature in features]
        lengths = [len(row) for row in rows]
        values = rows[0].new_zeros(len(rows), max(lengths), *rows[0].shape[1:])
        mask = torch.zeros(len(rows), max(lengths), dtype=torch.long)
        for i, row in enumerate(rows):
            values[i, : lengths[i]] = row
            mask[i, : lengths[i]] = 1
        if speech_key != "input_values":  # (B, T, C) frames: feature-encoder output or frozen-layer output
            batch[speech_key], batch["speech_frame_mask"] = values, mask
        else:  # (B, samples) waveforms
            batch["input_values"], batch["speech_attention_mask"] = values, mask
        if "text_present" in features[0]:
            batch["text_present"] = torch.tensor([float(feature["text_present"]) for feature in features])
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([feature["labels"] for feature in features], dtype=torch.long)
        if "dimension_targets" in features[0]:
            batch["dimension_targets"] = torch.tensor(np.array([feature["dimension_targets"] for feature in features],
                                                               dtype=np.float32))
        return dict(batch)
