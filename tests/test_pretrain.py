"""The offline encoders: a tokenizer that covers any Korean text, the shipped pair, and `kemdy-adapters pretrain`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from transformers import AutoTokenizer, BertModel, Wav2Vec2Model

from kemdy_adapters.cli import main
from kemdy_adapters.pretrain import SHIPPED_ENCODERS, demo_encoders, train_tokenizer
from kemdy_adapters.pretraining_data import general_sentences, has_final_consonant, particle, varied_recordings

ORDINARY_KOREAN = ["오늘 정말 기분이 좋아요", "어이없네 진짜 열받아", "똠양꿍 먹고 싶다 뷁", "ㅋㅋㅋ 대박 ㅠㅠ",
                   "KTX 타고 3시 10분에 도착했어요!", "괜찮아? 걱정 마(정말로)"]


def random_hangul(count: int, seed: int) -> list[str]:
    """Words of random syllables from the whole Hangul block (11,172 syllables), most never seen in training."""
    rng = np.random.default_rng(seed)
    return ["".join(chr(0xAC00 + int(code)) for code in rng.integers(0, 11172, size=rng.integers(1, 5)))
            for _ in range(count)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(tmp_path_factory.mktemp("tokenizer"), general_sentences(300, seed=5), vocab_size=900)


def test_the_tokenizer_never_needs_unk_for_korean_latin_or_digits(tokenizer):
    for ids in tokenizer(ORDINARY_KOREAN + random_hangul(400, seed=1))["input_ids"]:
        assert tokenizer.unk_token_id not in ids
    # Frequent words of its training text are single pieces, not spelled out jamo by jamo.
    assert tokenizer.tokenize("오늘") == [tokenizer.tokenize("오늘")[0]]


def test_the_tokenizer_reloads_from_its_folder(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(ORDINARY_KOREAN)["input_ids"] == tokenizer(ORDINARY_KOREAN)["input_ids"]


def test_particles_follow_the_final_consonant():
    assert has_final_consonant("책") and not has_final_consonant("커피") and not has_final_consonant("TV")
    assert [particle("책", "object"), particle("커피", "object"), particle("선생님", "subject"),
            particle("친구", "topic")] == ["책을", "커피를", "선생님이", "친구는"]


def test_pretraining_voices_vary_in_pitch_level_and_recording_chain():
    from kemdy_adapters.pretrain import frame_descriptors

    waveforms = varied_recordings(24, seed=3)
    pitches, noise = [], []
    for audio in waveforms:
        frames = frame_descriptors(audio, len(audio) // 320)
        voiced = frames[frames[:, 2] > 0.5]
        pitches.append(np.median(voiced[:, 1]) if len(voiced) else np.nan)
        noise.append(np.percentile(frames[:, 0], 10))  # the quietest frames: the recording's noise floor
    pitches = np.exp(np.array(pitches)[~np.isnan(pitches)])
    assert pitches.max() / pitches.min() > 2.0  # more than an octave between speakers
    assert np.ptp(noise) > 3.0  # noise floors that differ by more than 3 nats of energy


def test_the_shipped_encoders_load_like_hub_checkpoints_and_stay_small(tmp_path):
    for part in ("text", "speech"):
        for path in (SHIPPED_ENCODERS / part).iterdir():
            assert path.stat().st_size < 2 * 1024 * 1024, f"{path} is over 2 MiB"
    text, speech = demo_encoders(tmp_path)
    bert, wav2vec2 = BertModel.from_pretrained(text), Wav2Vec2Model.from_pretrained(speech)
    assert bert.config.hidden_size == wav2vec2.config.hidden_size == 64
    tokenizer = AutoTokenizer.from_pretrained(text)
    encoded = tokenizer(ORDINARY_KOREAN + random_hangul(200, 2))["input_ids"]
    assert not any(tokenizer.unk_token_id in ids for ids in encoded)
    record = json.loads((SHIPPED_ENCODERS / "pretrain_config.json").read_text())
    assert record["hidden_size"] == 64 and record["text_steps"] > 0
    # Pretrained, not random: the pooler separates sentences more than a fresh BERT of the same shape does.
    encoded = tokenizer(ORDINARY_KOREAN, padding=True, return_tensors="pt")
    fresh = BertModel(bert.config).eval()
    spread = {name: model.eval()(**encoded).pooler_output.std(0).mean().item()
              for name, model in (("pretrained", bert), ("fresh", fresh))}
    assert spread["pretrained"] > spread["fresh"]


def test_pretrain_command_on_the_users_text_and_audio(tmp_path, capsys):
    text_file = tmp_path / "sentences.txt"
    text_file.write_text("\n".join(general_sentences(60, seed=9)) + "\n\n", encoding="utf-8")
    audio = tmp_path / "audio"
    audio.mkdir()
    for index, waveform in enumerate(varied_recordings(4, seed=4)):
        sf.write(audio / f"{index}.wav", np.repeat(waveform, 2)[::2], 16000)
    stereo = np.stack([np.sin(np.linspace(0, 3000, 44100))] * 2, axis=1).astype(np.float32) * 0.3
    sf.write(audio / "stereo_44k.wav", stereo, 44100)  # mixed to mono, resampled to 16 kHz
    output = tmp_path / "encoders"
    arguments = ["pretrain", "--output", str(output), "--text", str(text_file), "--audio", str(audio),
                 "--hidden-size", "32", "--text-steps", "3", "--speech-steps", "2", "--vocab-size", "200"]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "60 sentences given" in out and "5 recordings given" in out
    assert BertModel.from_pretrained(output / "text").config.hidden_size == 32
    assert Wav2Vec2Model.from_pretrained(output / "speech").config.hidden_size == 32
    assert json.loads((output / "pretrain_config.json").read_text())["text_steps"] == 3
    assert main(arguments) == 0  # again: both parts kept
    assert capsys.readouterr().out.count("already there, kept") == 2


def test_pretrain_command_can_keep_a_tokenizer(tmp_path, capsys):
    text_file = tmp_path / "sentences.txt"
    text_file.write_text("\n".join(general_sentences(20, seed=3)) + "\n", encoding="utf-8")
    output = tmp_path / "encoders"
    arguments = ["pretrain", "--output", str(output), "--text", str(text_file), "--hidden-size", "32",
                 "--text-steps", "2", "--speech-steps", "1", "--recordings", "2"]
    assert main([*arguments, "--tokenizer", str(SHIPPED_ENCODERS / "text")]) == 0
    shipped, kept = AutoTokenizer.from_pretrained(SHIPPED_ENCODERS / "text"), AutoTokenizer.from_pretrained(
        output / "text")
    assert kept.get_vocab() == shipped.get_vocab()  # not trained again on the 20 sentences
    assert kept(ORDINARY_KOREAN)["input_ids"] == shipped(ORDINARY_KOREAN)["input_ids"]
    assert BertModel.from_pretrained(output / "text").config.vocab_size == len(shipped)
    assert main([*arguments, "--overwrite", "--tokenizer", str(tmp_path)]) == 2
    assert f"{tmp_path}: no tokenizer to reuse there" in capsys.readouterr().err


def test_pretrain_command_names_a_bad_input_file(tmp_path, capsys):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not a wav file")
    assert main(["pretrain", "--output", str(tmp_path / "out"), "--audio", str(tmp_path)]) == 2
    assert f"{bad}: unreadable audio" in capsys.readouterr().err
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    assert main(["pretrain", "--output", str(tmp_path / "out"), "--text", str(latin1)]) == 2
    assert f"{latin1}: not UTF-8 text" in capsys.readouterr().err
