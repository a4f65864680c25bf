"""Tiny encoder configs and checkpoints for tests, the demo and speed checks (no download anywhere).

`save_tiny_encoders(folder)` writes a tiny BERT (with a WordPiece vocabulary built from given texts) and a tiny
Wav2Vec2 with `save_pretrained`, so that everything downstream loads them through `from_pretrained(path)`
exactly as it loads real checkpoints.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from transformers import (
    BertConfig,
    BertModel,
    BertTokenizerFast,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_text_config(
    vocab_size: int = 128, hidden_size: int = 32, layers: int = 2, dropout: float = 0.1
) -> BertConfig:
    return BertConfig(
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=128,
    )


def tiny_speech_config(
    norm: str = "group", hidden_size: int = 32, layers: int = 2, dropout: float = 0.1
) -> Wav2Vec2Config:
    """A small Wav2Vec2: 3 conv layers (20 ms hop, like the real 320-sample stride but shallower).

    Args:
        norm: `"group"` (post-LN, like wav2vec2-base) or `"layer"` (pre-LN, like large-lv60 / XLS-R).
        dropout: Every dropout probability of the encoder.
    """
    return Wav2Vec2Config(
        hidden_dropout=dropout,
        activation_dropout=dropout,
        attention_dropout=dropout,
        feat_proj_dropout=dropout,
        final_dropout=dropout,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden_size * 2,
        conv_dim=(32, 32, 32),
        conv_kernel=(10, 8, 4),
        conv_stride=(5, 8, 8),
        conv_bias=norm == "layer",
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm=norm,
        do_stable_layer_norm=norm == "layer",
        mask_time_prob=0.0,
        vocab_size=8,
    )


def build_vocab(texts: list[str], size: int = 512) -> list[str]:
    """A WordPiece-style vocabulary: special tokens, every character, then the most frequent words."""
    characters = sorted({char for text in texts for char in text if not char.isspace()})
    words = Counter(word for text in texts for word in text.split())
    vocab = SPECIAL_TOKENS + characters + ["##" + char for char in characters]
    for word, _ in words.most_common():
        if len(vocab) >= size:
            break
        if word not in vocab:
            vocab.append(word)
    return vocab


def save_tiny_tokenizer(folder: str | Path, texts: list[str], size: int = 512) -> BertTokenizerFast:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(build_vocab(texts, size)) + "\n", encoding="utf-8")
    # Korean text must keep its syllables: no accent stripping (it would decompose Hangul into jamo).
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=False, strip_accents=False,
                                  tokenize_chinese_chars=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def save_tiny_encoders(
    folder: str | Path, texts: list[str] | None = None, speech_norm: str = "group", seed: int = 0,
    dropout: float = 0.1,
) -> tuple[Path, Path]:
    """Writes `folder/text` (tiny BERT + tokenizer) and `folder/speech` (tiny Wav2Vec2 + feature extractor).

    Returns:
        The two checkpoint folders, to pass to `from_pretrained` / `MultimodalEmotionModel.from_encoders`.
    """
    import torch

    folder = Path(folder)
    texts = texts or ["b/ 오늘 날씨가 좋아", "화가 나", "TV에서 봤어요"]
    tokenizer = save_tiny_tokenizer(folder / "text", texts)
    torch.manual_seed(seed)
    BertModel(tiny_text_config(vocab_size=len(tokenizer), dropout=dropout)).save_pretrained(folder / "text")
    speech_config = tiny_speech_config(speech_norm, dropout=dropout)
    Wav2Vec2Model(speech_config).save_pretrained(folder / "speech")
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
        return_attention_mask=True,
    ).save_pretrained(folder / "speech")
    return folder / "text", folder / "speech"
