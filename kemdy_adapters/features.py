"""The frozen part of the speech encoder, computed once per utterance and reused.

The convolutional feature encoder of Wav2Vec2 is frozen in every strategy, so its output for an utterance never
changes while a model trains: `with_speech_features` runs it once per utterance (alone, at its own length,
exactly as the model does) and stores the frames as a dataset column with `Dataset.map`. With
`speech_frozen_layers = N` in an adapter strategy, nothing below Wav2Vec2 layer N trains either, so the cache
holds the output of that boundary instead (`speech_hidden`, see `MultimodalEmotionModel.speech_lower_layers`)
and training runs only the layers above it.

The result is cached by `datasets` under a fingerprint made of the source dataset's fingerprint (which follows
the audio) and a digest of the cached part's weights, config and boundary, so a changed corpus or another
speech checkpoint never reads a stale entry, and every epoch, strategy and fold that shares them reuses it.
"""

from __future__ import annotations

import hashlib

import datasets
import numpy as np
import torch


def feature_encoder_digest(model, boundary: int | None = None) -> str:
    """Digest of what the cache holds the output of: the convolutional feature encoder, and with a layer
    boundary also the layers below it (weights, config and the boundary)."""
    boundary = model.speech_cache_boundary() if boundary is None else boundary
    encoder = model.speech_encoder
    digest = hashlib.sha256(f"{encoder.config.to_json_string()}:boundary={boundary}".encode())
    for index, module in enumerate(model.frozen_speech_modules(boundary)):
        for name, tensor in module.state_dict().items():
            digest.update(f"{index}.{name}".encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def with_speech_features(dataset: datasets.Dataset, model, batch_size: int = 16) -> datasets.Dataset:
    """`dataset` with the frozen speech part's output in place of `input_values`: `speech_features` (frames x
    channels of the feature encoder) or, above a layer boundary, `speech_hidden` (frames x hidden size)."""
    boundary = model.speech_cache_boundary()
    digest = feature_encoder_digest(model, boundary)
    column = "speech_hidden" if boundary else "speech_features"
    width = model.speech_encoder.config.hidden_size if boundary else model.speech_encoder.config.conv_dim[-1]

    def encode(batch):
        frames = []
        for values in batch["input_values"]:
            waveform = torch.as_tensor(np.asarray(values, dtype=np.float32))[None].to(model.device)
            # The model's own path for one utterance: (1, samples) -> (T, C or H).
            _, output, _ = model.frozen_speech(waveform)
            frames.append(output[0].cpu().numpy())
        return {column: frames}

    columns = [name for name in dataset.column_names if name != "input_values"]
    features = dataset.features.copy()
    del features["input_values"]
    features[column] = datasets.Array2D(shape=(None, width), dtype="float32")
    mapped = dataset.with_format(None).map(
        encode,
        batched=True,
        batch_size=batch_size,
        remove_columns=["input_values"],
        features=features,
        new_fingerprint=hashlib.sha256(f"{dataset._fingerprint}:{digest}".encode()).hexdigest()[:16],
        desc=f"caching speech {'layer ' + str(boundary) + ' inputs' if boundary else 'convolutional features'}",
    )
    return mapped.with_format("numpy", columns=[column], output_all_columns=True).select_columns([*columns, column])
