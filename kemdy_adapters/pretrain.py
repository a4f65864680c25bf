"""Pretraining small encoders offline, as the demo's stand-in for hub checkpoints (`kemdy-adapters pretrain`).

Real use starts from checkpoints pretrained on large unlabelled corpora (klue/bert-base, wav2vec2-base-960h).
No hub is reachable here, so kemdy-adapters makes small *pretrained* encoders itself, without emotion labels:
- text: a WordPiece tokenizer over decomposed Hangul (every syllable splits into its conjoining jamo, so any
  Korean text tokenizes without `[UNK]`; frequent syllables and words are merged pieces), plus Latin letters,
  digits and punctuation; a BERT trained with masked-language modelling plus, for the pooled [CLS] output,
  predicting which character 1-3-grams the sentence holds, so the pooler summarises its words and syllables;
- speech: a Wav2Vec2 trained to predict frame-level prosodic descriptors computed from the signal itself (log
  energy, autocorrelation pitch and voicing, spectral centroid, zero-crossing rate) and, from its frame-averaged
  output, each utterance's mean and spread of those descriptors (the kind of functionals eGeMAPS summarises).
By default both learn from `pretraining_data.py` (a general Korean lexicon; many random voices and recording
chains), none of it from any benchmark corpus; `pretrain` also takes the user's own text and audio.
Both are saved with `save_pretrained` and loaded through `from_pretrained(path)` like hub checkpoints. The
package ships the demo's pair (`kemdy_adapters/encoders/`, made by `kemdy-adapters pretrain` with its defaults),
so every machine starts the demo from the same weights.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import (
    BertForPreTraining,
    BertTokenizerFast,
    DataCollatorForLanguageModeling,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

from .pretraining_data import PretrainConfig
from .tiny import SPECIAL_TOKENS, tiny_speech_config, tiny_text_config

logger = logging.getLogger(__name__)
HOP = 320  # samples per Wav2Vec2 frame (20 ms at 16 kHz), the tiny config's total conv stride
NGRAM_BUCKETS = 4096  # hashed character n-grams the pooled text vector learns to predict
SHIPPED_ENCODERS = Path(__file__).parent / "encoders"
"""The demo's pretrained pair, shipped in the package: `text/` (BERT + tokenizer), `speech/` (Wav2Vec2)."""

# The tokenizer's alphabet: modern conjoining jamo (what NFD makes of every Hangul syllable), compatibility jamo
# (ㅋㅋ, ㅠㅠ as typed), and printable ASCII.
JAMO = ([chr(c) for c in range(0x1100, 0x1113)] + [chr(c) for c in range(0x1161, 0x1176)]
        + [chr(c) for c in range(0x11A8, 0x11C3)] + [chr(c) for c in range(0x3131, 0x318F)])
ALPHABET = JAMO + [chr(c) for c in range(0x21, 0x7F)]


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


def train_tokenizer(folder: str | Path, texts: list[str], vocab_size: int = 3000) -> BertTokenizerFast:
    """A BERT WordPiece tokenizer over decomposed Hangul, saved into `folder` (see the module docstring).

    Every character of `ALPHABET` is in the vocabulary both word-initially and as a `##` continuation, so any
    word made of Hangul, compatibility jamo and printable ASCII tokenizes without `[UNK]`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=True,
                                            lowercase=False)
    learner = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    learner.normalizer = normalizer
    learner.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    learner.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=ALPHABET, show_progress=False))
    # Learned pieces in sorted order after the alphabet. (The trainer breaks ties between equally frequent
    # merges in no fixed order, so training again from the same texts can differ in a few pieces.)
    base = [*SPECIAL_TOKENS, *ALPHABET, *("##" + char for char in ALPHABET)]
    vocab = base + sorted(set(learner.get_vocab()) - set(base))
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # strip_accents=True is what decomposes Hangul syllables (NFD); jamo are letters, so they are kept.
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=False, strip_accents=True,
                                  tokenize_chinese_chars=True, model_max_length=128)
    tokenizer.save_pretrained(folder)
    return tokenizer


def reuse_tokenizer(source: str | Path, folder: str | Path) -> BertTokenizerFast:
    """The tokenizer saved in `source`, copied into `folder` (so a new encoder keeps a known vocabulary)."""
    tokenizer = BertTokenizerFast.from_pretrained(source)
    tokenizer.save_pretrained(folder)
    return tokenizer


def character_ngrams(text: str, buckets: int = NGRAM_BUCKETS, longest: int = 3) -> list[int]:
    """The hashed character 1..`longest`-grams inside each word of `text` (with word boundaries marked, as
    scikit-learn's `char_wb` analyser makes them): for Korean, syllables and syllable pairs and triples."""
    grams = set()
    for word in text.split():
        padded = f" {word} "
        for n in range(1, longest + 1):
            grams.update(padded[i : i + n] for i in range(len(padded) - n + 1))
    grams.discard(" ")
    return sorted({zlib.crc32(gram.encode("utf-8")) % buckets for gram in grams})


def pretrain_text(
    folder: Path, texts: list[str], steps: int, seed: int, batch_size: int = 32, lr: float = 2e-3,
    hidden_size: int = 64, layers: int = 2, vocab_size: int = 3000, dropout: float = 0.1, saved_dropout: float = 0.0,
    tokenizer: str | Path | None = None,
) -> Path:
    """Masked-language modelling plus a sentence-level objective for the pooled [CLS] output: predicting which
    character n-grams (hashed) occur in the sentence, so the pooled vector summarises its words, syllables
    included, whatever the tokenizer splits them into (a self-supervised stand-in for the sentence objective that
    real BERT checkpoints train their pooler with). No labels are used. `tokenizer`: a folder whose tokenizer is
    reused (copied) instead of training one on `texts`."""
    torch.manual_seed(seed)
    tokenizer = reuse_tokenizer(tokenizer, folder) if tokenizer else train_tokenizer(folder, texts, vocab_size)
    model = BertForPreTraining(tiny_text_config(vocab_size=len(tokenizer), hidden_size=hidden_size, layers=layers,
                                                dropout=dropout))
    bag_head = nn.Linear(model.config.hidden_size, NGRAM_BUCKETS)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    encoded = [tokenizer(text, truncation=True, max_length=64) for text in texts]
    grams = [character_ngrams(text) for text in texts]
    optimizer = torch.optim.AdamW([*model.parameters(), *bag_head.parameters()], lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    generator = np.random.default_rng(seed)
    model.train()
    for step in range(steps):
        indices = generator.integers(len(encoded), size=batch_size)
        chosen = [encoded[i] for i in indices]
        words = torch.zeros(batch_size, NGRAM_BUCKETS)
        for row, i in enumerate(indices):
            words[row, grams[i]] = 1.0
        batch = collator(chosen)
        labels = batch.pop("labels")
        output = model.bert(**batch)
        mlm = nn.functional.cross_entropy(
            model.cls.predictions(output.last_hidden_state).flatten(0, 1), labels.flatten(), ignore_index=-100)
        bag = nn.functional.binary_cross_entropy_with_logits(
            bag_head(output.pooler_output), words, pos_weight=torch.tensor(20.0))
        loss = mlm + bag
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 250 == 0 or step == steps - 1:
            logger.info("text pretraining step %d: masked-LM loss %.3f, character n-gram loss %.4f", step, mlm.item(),
                        bag.item())
    model.bert.config.hidden_dropout_prob = model.bert.config.attention_probs_dropout_prob = saved_dropout
    model.bert.save_pretrained(folder)  # the encoder with its pooler, as a BertModel checkpoint
    return folder


def pretrain_speech(
    folder: Path, waveforms: list[np.ndarray], steps: int, seed: int, batch_size: int = 16, lr: float = 1e-3,
    hidden_size: int = 64, layers: int = 2, dropout: float = 0.1, saved_dropout: float = 0.0,
) -> Path:
    """Frame-level prosodic descriptors from every output frame, and each utterance's mean and spread of them
    from the frame average (what the emotion model's speech branch pools). No labels are used."""
    torch.manual_seed(seed)
    encoder = Wav2Vec2Model(tiny_speech_config(hidden_size=hidden_size, layers=layers, dropout=dropout))
    frame_head = nn.Linear(encoder.config.hidden_size, 5)
    utterance_head = nn.Linear(encoder.config.hidden_size, 10)
    normalised = [(w - w.mean()) / np.sqrt(w.var() + 1e-7) for w in waveforms]
    lengths = [int(encoder._get_feat_extract_output_lengths(torch.tensor(len(w)))) for w in normalised]
    targets = [frame_descriptors(w, n) for w, n in zip(waveforms, lengths)]
    stacked = np.concatenate(targets)
    mean, std = stacked.mean(0), stacked.std(0) + 1e-6
    targets = [torch.from_numpy((t - mean) / std) for t in targets]
    summaries = torch.stack([torch.cat([t.mean(0), t.std(0)]) for t in targets])
    summaries = (summaries - summaries.mean(0)) / (summaries.std(0) + 1e-6)
    parameters = [*encoder.parameters(), *frame_head.parameters(), *utterance_head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    generator = np.random.default_rng(seed)
    encoder.train()
    for step in range(steps):
        chosen = generator.integers(len(normalised), size=batch_size)
        longest = max(len(normalised[i]) for i in chosen)
        values = torch.zeros(batch_size, longest)
        for row, i in enumerate(chosen):
            values[row, : len(normalised[i])] = torch.from_numpy(normalised[i])
        hidden = encoder(values).last_hidden_state  # (B, T, H); padding is silence, and its targets are cut
        frame_loss = sum(nn.functional.mse_loss(frame_head(hidden[row, : lengths[i]]), targets[i])
                         for row, i in enumerate(chosen)) / batch_size
        pooled = torch.stack([hidden[row, : lengths[i]].mean(0) for row, i in enumerate(chosen)])
        utterance_loss = nn.functional.mse_loss(utterance_head(pooled), summaries[chosen])
        loss = frame_loss + utterance_loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            logger.info("speech pretraining step %d: frame descriptor loss %.3f, utterance summary loss %.3f", step,
                        frame_loss.item(), utterance_loss.item())
    for name in ("hidden_dropout", "activation_dropout", "attention_dropout", "feat_proj_dropout", "final_dropout"):
        setattr(encoder.config, name, saved_dropout)
    encoder.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder)
    return folder


def pretrain_encoders(
    folder: str | Path, config: PretrainConfig | None = None, texts: list[str] | None = None,
    waveforms: list[np.ndarray] | None = None, tokenizer: str | Path | None = None,
) -> tuple[Path, Path]:
    """Pretrains a text and a speech encoder into `folder/text` and `folder/speech`.

    Args:
        folder: Where to write; each part is skipped if its `config.json` is already there.
        config: Sizes, steps and seed (`PretrainConfig()` made the shipped encoders).
        texts: Unlabelled sentences; by default `pretraining_data.pretraining_texts` with the config's sizes.
        waveforms: 16 kHz mono float arrays; by default `pretraining_data.varied_recordings(config.recordings)`.
        tokenizer: A folder holding a tokenizer to reuse for the text encoder instead of training one.

    Returns:
        The two checkpoint folders, for `from_pretrained` / `--text_model` / `--speech_model`.
    """
    from .pretraining_data import pretraining_texts, varied_recordings

    config = config or PretrainConfig()
    folder = Path(folder)
    text, speech = folder / "text", folder / "speech"
    started = time.time()
    trained = False
    if not (text / "config.json").exists():
        trained = True
        texts = texts if texts is not None else pretraining_texts(config.sentences, config.seed, config.corpus_style)
        pretrain_text(text, texts, config.text_steps, config.seed, hidden_size=config.hidden_size,
                      layers=config.layers, vocab_size=config.vocab_size, dropout=config.dropout,
                      saved_dropout=config.saved_dropout, tokenizer=tokenizer)
    if not (speech / "config.json").exists():
        trained = True
        waveforms = waveforms if waveforms is not None else varied_recordings(config.recordings, config.seed + 1)
        pretrain_speech(speech, waveforms, config.speech_steps, config.seed, hidden_size=config.hidden_size,
                        layers=config.layers, dropout=config.dropout, saved_dropout=config.saved_dropout)
    if trained:  # what made the part(s) trained now; parts kept from earlier keep their record
        (folder / "pretrain_config.json").write_text(json.dumps(asdict(config), indent=1) + "\n")
    logger.info("pretrained the encoders in %.0f s", time.time() - started)
    return text, speech


def demo_encoders(folder: str | Path) -> tuple[Path, Path]:
    """The shipped pretrained pair, copied into `folder/text` and `folder/speech` (kept if already there)."""
    folder = Path(folder)
    for part in ("text", "speech"):
        if not (folder / part / "config.json").exists():
            shutil.copytree(SHIPPED_ENCODERS / part, folder / part, dirs_exist_ok=True)
    return folder / "text", folder / "speech"
