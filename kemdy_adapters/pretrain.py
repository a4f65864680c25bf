"""The demo's local stand-in for pretrained encoders: tiny BERT and Wav2Vec2 pretrained on generated data.

Real use starts from checkpoints pretrained on large unlabelled corpora (klue/bert-base, wav2vec2-base-960h).
No hub is reachable here, so the demo makes its own small *pretrained* encoders, from utterances generated with
another seed than the benchmark's corpus (so no benchmark utterance is seen) and without emotion labels:
- text: masked-language modelling on the generated transcripts (a WordPiece vocabulary built from them),
  plus a bag-of-words objective on the pooled [CLS] output, so the pooler summarises the sentence;
- speech: a self-supervised proxy, predicting frame-level prosodic descriptors computed from the signal itself
  (log energy, autocorrelation pitch and voicing, spectral centroid, zero-crossing rate) from the waveform.
Both are saved with `save_pretrained` and then loaded through `from_pretrained(path)` like real checkpoints.
This makes the demo's `adapter` versus `adapter_wo_pretrain` comparison meaningful; the numbers say nothing
about real encoders.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import (
    BertForPreTraining,
    DataCollatorForLanguageModeling,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

from .sample_corpus import synthetic_utterances
from .tiny import save_tiny_tokenizer, tiny_speech_config, tiny_text_config

logger = logging.getLogger(__name__)
HOP = 320  # samples per Wav2Vec2 frame (20 ms at 16 kHz), the tiny config's total conv stride


def frame_descriptors(audio: np.ndarray, frames: int) -> np.ndarray:
    """(frames, 5) prosodic descriptors of a waveform, one row per 20 ms frame (a 40 ms window)."""
    padded = np.pad(audio, (HOP // 2, 2 * HOP))
    rows = []
    for index in range(frames):
        window = padded[index * HOP : index * HOP + 2 * HOP] * np.hanning(2 * HOP)
        energy = np.log(np.mean(window**2) + 1e-6)
        spectrum = np.abs(np.fft.rfft(window))
        centroid = (spectrum * np.arange(len(spectrum))).sum() / (spectrum.sum() + 1e-9) / len(spectrum)
        crossings = np.mean(np.abs(np.diff(np.sign(window)))) / 2
        correlation = np.fft.irfft(np.abs(np.fft.rfft(window, 4 * HOP)) ** 2)[: 2 * HOP]
        lags = correlation[40:200]  # 80..400 Hz
        lag = int(np.argmax(lags)) + 40
        voicing = lags.max() / (correlation[0] + 1e-9)
        rows.append([energy, np.log(16000 / lag), voicing, centroid, crossings])
    return np.asarray(rows, dtype=np.float32)


def pretrain_text(
    folder: Path, texts: list[str], steps: int, seed: int, batch_size: int = 32, lr: float = 2e-3
) -> Path:
    """Masked-language modelling plus a sentence-level objective for the pooled [CLS] output: predicting which
    vocabulary items occur in the sentence (a self-supervised stand-in for the sentence objective that real
    BERT checkpoints train their pooler with). No labels are used."""
    torch.manual_seed(seed)
    tokenizer = save_tiny_tokenizer(folder, texts)
    model = BertForPreTraining(tiny_text_config(vocab_size=len(tokenizer), hidden_size=64))
    bag_head = nn.Linear(model.config.hidden_size, len(tokenizer))
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    encoded = [tokenizer(text, truncation=True, max_length=64) for text in texts]
    optimizer = torch.optim.AdamW([*model.parameters(), *bag_head.parameters()], lr=lr)
    generator = np.random.default_rng(seed)
    special = torch.tensor(tokenizer.all_special_ids)
    model.train()
    for step in range(steps):
        chosen = [encoded[i] for i in generator.integers(len(encoded), size=batch_size)]
        words = torch.zeros(batch_size, len(tokenizer))
        for row, item in enumerate(chosen):
            words[row, item["input_ids"]] = 1.0
        words[:, special] = 0.0
        batch = collator(chosen)
        labels = batch.pop("labels")
        output = model.bert(**batch)
        mlm = nn.functional.cross_entropy(
            model.cls.predictions(output.last_hidden_state).flatten(0, 1), labels.flatten(), ignore_index=-100)
        bag = nn.functional.binary_cross_entropy_with_logits(
            bag_head(output.pooler_output), words, pos_weight=torch.tensor(50.0))
        loss = mlm + bag
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            logger.info("text pretraining step %d: masked-LM loss %.3f, bag-of-words loss %.4f", step, mlm.item(),
                        bag.item())
    model.bert.save_pretrained(folder)  # the encoder with its pooler, as a BertModel checkpoint
    return folder


def pretrain_speech(folder: Path, waveforms: list[np.ndarray], steps: int, seed: int, batch_size: int = 16) -> Path:
    torch.manual_seed(seed)
    encoder = Wav2Vec2Model(tiny_speech_config(hidden_size=64))
    head = nn.Linear(encoder.config.hidden_size, 5)
    normalised = [(w - w.mean()) / np.sqrt(w.var() + 1e-7) for w in waveforms]
    lengths = [int(encoder._get_feat_extract_output_lengths(torch.tensor(len(w)))) for w in normalised]
    targets = [frame_descriptors(w, n) for w, n in zip(waveforms, lengths)]
    stacked = np.concatenate(targets)
    mean, std = stacked.mean(0), stacked.std(0) + 1e-6
    targets = [torch.from_numpy((t - mean) / std) for t in targets]
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=1e-3)
    generator = np.random.default_rng(seed)
    encoder.train()
    for step in range(steps):
        chosen = generator.integers(len(normalised), size=batch_size)
        longest = max(len(normalised[i]) for i in chosen)
        values = torch.zeros(batch_size, longest)
        for row, i in enumerate(chosen):
            values[row, : len(normalised[i])] = torch.from_numpy(normalised[i])
        hidden = encoder(values).last_hidden_state  # (B, T, H); padding is silence, and its targets are cut
        loss = sum(nn.functional.mse_loss(head(hidden[row, : lengths[i]]), targets[i]) for row, i in enumerate(chosen))
        loss = loss / batch_size
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            logger.info("speech pretraining step %d: descriptor loss %.3f", step, loss.item())
    encoder.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder)
    return folder


def pretrain_demo_encoders(
    folder: str | Path, seed: int = 1000, sentences: int = 2000, recordings: int = 200, text_steps: int = 1000,
    speech_steps: int = 100,
) -> tuple[Path, Path]:
    """Pretrains the demo's tiny encoders into `folder/text` and `folder/speech` (skipped if already there)."""
    folder = Path(folder)
    text, speech = folder / "text", folder / "speech"
    if (text / "config.json").exists() and (speech / "config.json").exists():
        return text, speech
    started = time.time()
    pretrain_text(text, [item["clean"] for item in synthetic_utterances(sentences, seed, audio=False)], text_steps,
                  seed)
    pretrain_speech(speech, [item["audio"] for item in synthetic_utterances(recordings, seed + 1)], speech_steps,
                    seed)
    logger.info("pretrained the demo encoders in %.0f s", time.time() - started)
    return text, speech
