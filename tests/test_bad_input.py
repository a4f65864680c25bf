"""Bad input gives an error naming the file and the problem, or a counted skip where the real corpus has such rows."""

from __future__ import annotations

import shutil

import pytest

from kemdy_adapters.corpus import CorpusFormatError, scan_corpus
from kemdy_adapters.hf_dataset import load_kemdy


@pytest.fixture
def corpus_copy(sample_corpus, tmp_path):
    target = tmp_path / "corpus"
    shutil.copytree(sample_corpus, target)
    return target


def test_not_a_corpus_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CorpusFormatError, match=r"not a KEMDY20 corpus folder: expected annotation/Sess01_eval\.csv"):
        scan_corpus(tmp_path, "kemdy20")
    with pytest.raises(CorpusFormatError, match="no such folder"):
        scan_corpus(tmp_path / "absent", "kemdy19")


def test_renamed_column_names_the_file(corpus_copy, hf_cache):
    path = corpus_copy / "KEMDy20_v1_1" / "annotation" / "Sess02_eval.csv"
    path.write_text(path.read_text().replace("Total Evaluation", "Total Eval", 1))
    # Through the loading script too: the error is ours, not datasets' generic wrapper.
    with pytest.raises(CorpusFormatError, match=r"Sess02_eval\.csv: missing column\(s\) 'total evaluation'/'emotion'"):
        load_kemdy("kemdy20", corpus_copy, cache_dir=hf_cache)


def test_unknown_label_names_file_and_line(corpus_copy):
    path = corpus_copy / "KEMDy20_v1_1" / "annotation" / "Sess03_eval.csv"
    lines = path.read_text().split("\n")
    cells = lines[2].split(",")
    cells[4] = "joyful"
    lines[2] = ",".join(cells)
    path.write_text("\n".join(lines))
    with pytest.raises(CorpusFormatError, match=r"Sess03_eval\.csv, line 3: unknown emotion label 'joyful'"):
        scan_corpus(corpus_copy, "kemdy20")


def _first_segment_files(root, corpus):
    segments, _ = scan_corpus(root, corpus)
    from pathlib import Path

    wav = Path(segments[0].wav_path)
    return segments[0].id, wav, wav.with_suffix(".txt")


def test_undecodable_transcript(corpus_copy):
    segment_id, _, txt = _first_segment_files(corpus_copy, "kemdy19")
    txt.write_bytes(b"\xff\xfe\xff\x00\x81\n")
    with pytest.raises(CorpusFormatError, match=rf"{segment_id}\.txt: transcript is not valid text"):
        scan_corpus(corpus_copy, "kemdy19")


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_bad_wav_errors_or_is_skipped_on_request(corpus_copy, damage):
    segment_id, wav, _ = _first_segment_files(corpus_copy, "kemdy20")
    wav.write_bytes(wav.read_bytes()[:1000] if damage == "truncated" else b"")
    with pytest.raises(CorpusFormatError, match=rf"{segment_id}\.wav: {damage}"):
        scan_corpus(corpus_copy, "kemdy20")
    segments, report = scan_corpus(corpus_copy, "kemdy20", skip_bad_files=True)
    assert segment_id not in {segment.id for segment in segments}
    assert report.skipped["unreadable wav or transcript (skip_bad_files)"] == 1


def test_annotation_without_wav_folder(corpus_copy):
    shutil.rmtree(corpus_copy / "KEMDy19" / "wav")
    with pytest.raises(CorpusFormatError, match="has annotation/ but no wav/ folder"):
        scan_corpus(corpus_copy, "kemdy19")


def test_malformed_segment_id_is_counted(corpus_copy):
    path = corpus_copy / "KEMDy20_v1_1" / "annotation" / "Sess01_eval.csv"
    lines = path.read_text().split("\n")
    lines[2] = lines[2].replace("Sess01_script01_", "Sess01-script01-", 1)
    path.write_text("\n".join(lines))
    _, report = scan_corpus(corpus_copy, "kemdy20")
    assert report.skipped["segment id not in the corpus's pattern"] == 1
