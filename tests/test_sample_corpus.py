"""The generated sample corpus: real layout, deterministic, small, and carrying a learnable signal."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kemdy_adapters.corpus import scan_corpus
from kemdy_adapters.sample_corpus import SampleCorpusConfig, write_sample_corpus


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_deterministic_by_seed(tmp_path):
    small = SampleCorpusConfig(sessions=5, kemdy19_turns=2, kemdy20_turns=2)
    first = write_sample_corpus(tmp_path / "a", small)
    again = write_sample_corpus(tmp_path / "b", small)
    other = write_sample_corpus(tmp_path / "c", SampleCorpusConfig(seed=1, sessions=5, kemdy19_turns=2,
                                                                   kemdy20_turns=2))
    assert _digest(first) == _digest(again) != _digest(other)


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        write_sample_corpus(tmp_path, SampleCorpusConfig(sessions=5), overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_real_layout_and_quirks(sample_corpus):
    root19, root20 = Path(sample_corpus) / "KEMDy19", Path(sample_corpus) / "KEMDy20_v1_1"
    assert len(list((root19 / "annotation").glob("Session*_[FM]_res.csv"))) == 20
    assert len(list((root20 / "annotation").glob("Sess*_eval.csv"))) == 10
    assert (root19 / "wav" / "Session01" / "Sess01_script01" / "Sess01_script01_F001.wav").is_file()
    assert list((root19 / "wav" / "Session01" / "Sess01_script01" / "converted").glob("*.wav"))
    assert (root19 / "ECG" / "Session01" / "Original" / "Sess01F.csv").is_file()
    assert list((root20 / "EDA" / "Session01").glob("Sess01_script01_User00*.csv"))
    header = (root20 / "annotation" / "Sess01_eval.csv").read_text().split("\n")[0]
    assert header.startswith("Numb,Wav, ,Segment ID,Total Evaluation, , ,Eval01F")
    assert (root20 / "annotation" / "Sess05_eval.csv").read_text().startswith("Numb,WAV,")
    assert (root20 / "annotation" / "Sess06_eval.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in (root20 / "annotation" / "Sess07_eval.csv").read_bytes()
    assert "disqust" in "".join(p.read_text() for p in (root20 / "annotation").glob("*.csv"))
    assert len((root19 / "annotation" / "Session01_F_res.csv").read_text().split("\n")[0].split(",")) == 43
    transcript = next((root20 / "wav" / "Session01").glob("*.txt")).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        transcript.decode("utf-8")
    audio, rate = sf.read(next((root20 / "wav" / "Session01").glob("*.wav")))
    assert rate == 16000 and audio.ndim == 1


def test_small(sample_corpus, manifest):
    size = sum(path.stat().st_size for path in Path(sample_corpus).rglob("*") if path.is_file())
    assert size < 20e6
    assert 250 < len(manifest["segments"]) < 400


def _speech_features(path: str) -> list[float]:
    audio, _ = sf.read(path, dtype="float32")
    frames = audio[: len(audio) // 400 * 400].reshape(-1, 400)
    rms = np.sqrt((frames**2).mean(1) + 1e-9)
    voiced = frames[rms > rms.max() * 0.2]
    lags = [np.argmax(np.correlate(f, f, "full")[440:560]) + 40 for f in voiced]
    pitch = np.log(16000 / np.array(lags))
    crossings = (np.diff(np.sign(frames), axis=1) != 0).mean()
    return [np.log(rms.mean()), np.log(rms.std() + 1e-6), crossings, pitch.mean(), pitch.std(), len(voiced) / len(rms)]


def test_each_modality_carries_a_learnable_signal(sample_corpus):
    """Simple classifiers trained on sessions 1-7 beat chance clearly on sessions 8-10, from text and from speech."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    segments, _ = scan_corpus(sample_corpus, "kemdy19")
    train = [s for s in segments if int(s.session[4:]) <= 7]
    test = [s for s in segments if int(s.session[4:]) > 7]
    labels = [s.labels[0] for s in train], [s.labels[0] for s in test]
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)).fit([s.text for s in train])
    text_model = LogisticRegression(max_iter=2000, class_weight="balanced")
    text_model.fit(vectorizer.transform([s.text for s in train]), labels[0])
    text_f1 = f1_score(labels[1], text_model.predict(vectorizer.transform([s.text for s in test])), average="macro")

    features = [np.array([_speech_features(s.wav_path) for s in part]) for part in (train, test)]
    scaler = StandardScaler().fit(features[0])
    speech_model = LogisticRegression(max_iter=2000, class_weight="balanced")
    speech_model.fit(scaler.transform(features[0]), labels[0])
    speech_f1 = f1_score(labels[1], speech_model.predict(scaler.transform(features[1])), average="macro")
    # 7 classes: chance macro F1 is about 0.14.
    assert text_f1 > 0.4, text_f1
    assert speech_f1 > 0.4, speech_f1


def test_corpora_differ(manifest):
    """Speakers, vocabulary and label balance differ between the two generated corpora (the domain shift)."""
    words = {corpus: {w for s in manifest["segments"] if s["corpus"] == corpus for w in s["text"].split()}
             for corpus in ("kemdy19", "kemdy20")}
    overlap = len(words["kemdy19"] & words["kemdy20"]) / len(words["kemdy19"] | words["kemdy20"])
    assert overlap < 0.3
    neutral = {corpus: np.mean([s["labels"] == ["neutral"] for s in manifest["segments"] if s["corpus"] == corpus])
               for corpus in ("kemdy19", "kemdy20")}
    assert neutral["kemdy20"] > 0.6 > neutral["kemdy19"]
