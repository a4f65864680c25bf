"""The frozen convolutional feature encoder's output, computed once per utterance and reused.

The feature encoder of Wav2Vec2 is frozen in every strategy, so its output for an utterance never changes
while a model trains: `with_speech_features` runs it once per utterance (alone, at its own length, exactly as
the model does) and stores the frames as a dataset column with `Dataset.map`. The result is cached by
`datasets` under a fingerprint made of the source dataset's fingerprint (which follows the audio) and a digest
of the feature encoder's weights and config, so a changed corpus or another speech checkpoint never reads a
stale entry, and every epoch, strategy and fold that shares the encoder reuses it.
"""

from __future__ import annotations

import hashlib

import datasets
import numpy as np
import torch


def feature_encoder_digest(model) -> str:
    """Digest of the speech encoder's convolutional feature encoder (weights and config)."""
    encoder = model.speech_encoder
    digest = hashlib.sha256(encoder.config.to_json_string().encode())
    for name, tensor in encoder.feature_extractor.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def with_speech_features(dataset: datasets.Dataset, model, batch_size: int = 16) -> datasets.Dataset:
    """`dataset` with `speech_features` (frames x channels, float32) in place of `input_values`."""
    digest = feature_encoder_digest(model)
    channels = model.speech_encoder.config.conv_dim[-1]

    def encode(batch):
        frames = []
        with torch.no_grad():
            for values in batch["input_values"]:
                waveform = torch.as_tensor(np.asarray(values, dtype=np.float32))[None].to(model.device)
                # The model's own path for one utterance: (1, C, T) -> (T, C).
                features, _ = model.speech_frames(waveform)
                frames.append(features[0].cpu().numpy())
        return {"speech_features": frames}

    columns = [column for column in dataset.column_names if column != "input_values"]
    features = dataset.features.copy()
    del features["input_values"]
    features["speech_features"] = datasets.Array2D(shape=(None, channels), dtype="float32")
    mapped = dataset.with_format(None).map(
        encode,
        batched=True,
        batch_size=batch_size,
        remove_columns=["input_values"],
        features=features,
        new_fingerprint=hashlib.sha256(f"{dataset._fingerprint}:{digest}".encode()).hexdigest()[:16],
        desc="caching convolutional speech features",
    )
    return mapped.with_format("numpy", columns=["speech_features"], output_all_columns=True).select_columns(
        [*columns, "speech_features"])
