"""The `datasets` loading scripts on a generated corpus in the real layout: exactly the expected segments."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from kemdy_adapters.corpus import EMOTIONS, CorpusFormatError
from kemdy_adapters.hf_dataset import (
    SCRIPTS_SUPPORTED,
    audio_feature,
    decode_audio,
    encode_audio,
    load_kemdy,
    script_path,
)

scripts = pytest.mark.skipif(not SCRIPTS_SUPPORTED, reason="datasets 4+ runs no loading scripts (load_kemdy does)")


@pytest.fixture(scope="module")
def loaded(sample_corpus, hf_cache):
    return {
        (corpus, multi): load_kemdy(corpus, sample_corpus, multi_label=multi, cache_dir=hf_cache)
        for corpus in ("kemdy19", "kemdy20")
        for multi in (False, True)
    }


def _expected(manifest, corpus, multi):
    return {
        seg["id"]: seg
        for seg in manifest["segments"]
        if seg["corpus"] == corpus and seg["id"] not in manifest["missing"] and (multi or len(seg["labels"]) == 1)
        and "Sess04_impro03" not in seg["id"]
    }


@pytest.mark.parametrize("corpus", ["kemdy19", "kemdy20"])
@pytest.mark.parametrize("multi", [False, True])
def test_exactly_the_expected_segments(loaded, manifest, corpus, multi):
    dataset = loaded[(corpus, multi)]
    expected = _expected(manifest, corpus, multi)
    assert sorted(dataset["id"]) == sorted(expected)
    names = dataset.features["label"].names
    assert names == list(EMOTIONS) == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    for row in dataset.remove_columns("audio"):
        seg = expected[row["id"]]
        assert [names[i] for i in row["labels"]] == seg["labels"]
        assert row["label"] == (names.index(seg["labels"][0]) if len(seg["labels"]) == 1 else -1)
        assert row["text_raw"] == seg["text_raw"]
        assert row["text"] == seg["text"]
        assert row["session"] == seg["session"] == row["id"][:6]
        assert row["duration"] == pytest.approx(seg["frames"] / 16000, abs=1e-6)
        assert row["text_encoding"] == ("utf-8" if corpus == "kemdy19" else "cp949")
        assert len(row["raters"]) == len(row["rater_emotions"]) == len(row["rater_valence"]) == 10


def test_multilabel_rows_only_in_the_multi_label_config(loaded):
    for corpus in ("kemdy19", "kemdy20"):
        single, multi = loaded[(corpus, False)], loaded[(corpus, True)]
        ties = [labels for labels in multi["labels"] if len(labels) > 1]
        assert ties, "the sample corpus must hold tied rows"
        assert len(multi) == len(single) + len(ties)
        assert all(len(labels) == 1 for labels in single["labels"])
        assert -1 not in single["label"]


def test_ids_are_parsed_into_session_dialogue_speaker_gender(loaded):
    row19 = loaded[("kemdy19", False)].remove_columns("audio").filter(lambda r: r["id"] == "Sess01_script01_F001")[0]
    assert (row19["session"], row19["dialogue"], row19["speaker"], row19["gender"]) == (
        "Sess01", "script01", "Sess01_F", "F")
    kemdy20 = loaded[("kemdy20", False)].remove_columns("audio")
    row20 = kemdy20[0]
    assert row20["id"].startswith("Sess01_script01_User00")
    assert row20["speaker"] == row20["id"].split("_")[2] and row20["gender"] == row20["speaker"][-1]
    assert row20["dialogue"] == "script01"


def test_kemdy19_speaker_filter_and_anomalies(loaded):
    dataset = loaded[("kemdy19", True)]
    ids = set(dataset["id"])
    # Only the file's own speaker: each segment once, never the listener's row.
    assert len(ids) == len(dataset)
    # The Session03 F-file row that carries M001 for F001 is corrected; the bad Sess04 rows are excluded.
    assert "Sess03_impro02_F001" in ids
    assert not {"Sess04_impro03_M031", "Sess04_impro03_F031"} & ids
    # Stray male rows in the Session09 F file are dropped by the speaker filter; the M file's own row stays.
    assert "Sess09_script06_M001" not in ids
    assert "Sess09_impro01_M001" in ids


def test_audio_decodes_at_16k_and_never_from_converted(loaded, manifest):
    dataset = loaded[("kemdy19", False)]
    if SCRIPTS_SUPPORTED:
        assert isinstance(dataset.features["audio"], datasets.Audio)
        assert dataset.features["audio"].sampling_rate == 16000
        paths = dataset.cast_column("audio", datasets.Audio(decode=False))["audio"]
    else:  # datasets 4+: the Audio storage as a plain struct, decoded by decode_audio
        assert dataset.features["audio"] == audio_feature()
        paths = dataset["audio"]
    assert not any("converted" in item["path"] for item in paths)
    frames = {seg["id"]: seg["frames"] for seg in manifest["segments"]}
    for row in dataset.select(range(3)):
        audio = decode_audio(row["audio"])
        assert "converted" not in Path(audio["path"]).parts
        assert audio["sampling_rate"] == 16000
        assert audio["array"].shape == (frames[row["id"]],)
        assert np.abs(audio["array"]).max() > 0.01


def test_decode_audio_gives_what_datasets_audio_gives(tmp_path):
    """The struct path (datasets 4+) decodes to the arrays `datasets.Audio` gives with 3.x: resampled, mono."""
    rng = np.random.default_rng(0)
    stereo = rng.normal(0, 0.1, (22050, 2))
    sf.write(tmp_path / "stereo.wav", stereo, 22050, subtype="FLOAT")
    mono16 = rng.normal(0, 0.1, 16000)
    sf.write(tmp_path / "mono.wav", mono16, 16000, subtype="PCM_16")
    ours = {name: decode_audio({"bytes": None, "path": str(tmp_path / name)}) for name in ("stereo.wav", "mono.wav")}
    assert ours["stereo.wav"]["array"].shape == (16000,) and ours["stereo.wav"]["sampling_rate"] == 16000
    np.testing.assert_allclose(ours["mono.wav"]["array"], mono16, atol=2 / 32768)  # 16-bit steps
    in_bytes = decode_audio(encode_audio({"array": mono16, "sampling_rate": 16000}))["array"]
    np.testing.assert_allclose(in_bytes, mono16, atol=1e-6)
    if SCRIPTS_SUPPORTED:
        reference = datasets.Dataset.from_dict({"audio": [str(tmp_path / n) for n in ours]}).cast_column(
            "audio", datasets.Audio(sampling_rate=16000))
        for row, name in zip(reference, ours):
            np.testing.assert_allclose(ours[name]["array"], row["audio"]["array"], atol=1e-5)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not audio")
    with pytest.raises(CorpusFormatError, match=r"bad\.wav: unreadable audio"):
        decode_audio({"bytes": None, "path": str(tmp_path / "bad.wav")})


def test_missing_files_are_counted_and_logged(sample_corpus, hf_cache, caplog):
    from kemdy_adapters.corpus import scan_corpus

    segments, report = scan_corpus(sample_corpus, "kemdy19")
    assert report.skipped["transcript (.txt) missing"] == 3
    assert report.skipped["wav file missing"] == 1
    assert report.skipped["known bad segment in KEMDy19 (kemdy-format.md section 2)"] == 2
    assert report.rows_read == report.segments + sum(report.skipped.values())
    assert "transcript (.txt) missing" in caplog.text


@scripts
def test_plain_load_dataset_call_from_the_card(sample_corpus, tmp_path):
    dataset = datasets.load_dataset(
        str(script_path("kemdy20")), data_dir=str(Path(sample_corpus) / "KEMDy20_v1_1"), trust_remote_code=True,
        cache_dir=str(tmp_path))
    assert list(dataset) == ["train"]
    assert "session" in dataset["train"].column_names
    # load_kemdy builds through the builder class, not the script: the same rows and features
    direct = load_kemdy("kemdy20", sample_corpus, cache_dir=str(tmp_path / "direct"))
    assert direct.features == dataset["train"].features
    columns = [name for name in direct.column_names if name != "audio"]
    assert direct.select_columns(columns).to_list() == dataset["train"].select_columns(columns).to_list()


@scripts
def test_data_dir_is_required(tmp_path):
    with pytest.raises(Exception, match="data_dir"):
        datasets.load_dataset(str(script_path("kemdy19")), trust_remote_code=True, cache_dir=str(tmp_path))
