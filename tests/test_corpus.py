"""The annotation, transcript and wav readers on the exact header rows and lines of kemdy-format.md."""

from __future__ import annotations

import csv
import io

import pytest

from kemdy_adapters.corpus import (
    CorpusFormatError,
    clean_transcript,
    inspect_wav,
    locate_columns,
    parse_labels,
    read_annotation,
    read_transcript,
)

KEMDY19_ROW1 = ("Numb,Wav,,ECG,,E4-EDA,,E4-TEMP,,Segment ID,Total Evaluation,,,Eval01F,,,Eval02M,,,Eval03F,,,"
                "Eval04F,,,Eval05M,,,Eval06M,,,Eval07M,,,Eval08F,,,Eval09M,,,Eval10F,,")
KEMDY19_ROW2 = ",start,end,start,end,start,end,start,end,,Emotion,Valence,Arousal," + ",".join(
    ["Emotion,Valence,Arousal"] * 10)
KEMDY20_ROW1 = ("Numb,Wav, ,Segment ID,Total Evaluation, , ,Eval01F, , ,Eval02M, , ,Eval03M, , ,Eval04F, , ,"
                "Eval05M, , ,Eval06F, , ,Eval07F, , ,Eval08M, , ,Eval09F, , ,Eval10M, ,")
KEMDY20_ROW2 = " ,start,end, ,Emotion,Valence,Arousal," + ",".join(["Emotion,Valence,Arousal"] * 10)


def _cells(line: str) -> list[str]:
    return next(csv.reader(io.StringIO(line)))


def test_kemdy19_header_columns_found_by_name(tmp_path):
    assert len(_cells(KEMDY19_ROW1)) == 43
    columns = locate_columns(tmp_path / "x.csv", _cells(KEMDY19_ROW1), _cells(KEMDY19_ROW2))
    assert (columns.start, columns.end, columns.segment_id) == (1, 2, 9)
    assert (columns.emotion, columns.valence, columns.arousal) == (10, 11, 12)
    assert [name for name, *_ in columns.raters][:3] == ["Eval01F", "Eval02M", "Eval03F"]
    assert len(columns.raters) == 10 and columns.raters[-1][1:] == (40, 41, 42)


def test_kemdy20_header_with_single_space_blanks_and_upper_case_wav(tmp_path):
    row1 = _cells(KEMDY20_ROW1.replace("Wav", "WAV"))
    assert len(row1) == 37
    columns = locate_columns(tmp_path / "x.csv", row1, _cells(KEMDY20_ROW2))
    assert (columns.start, columns.end, columns.segment_id, columns.emotion) == (1, 2, 3, 4)
    assert [name for name, *_ in columns.raters] == [
        "Eval01F", "Eval02M", "Eval03M", "Eval04F", "Eval05M", "Eval06F", "Eval07F", "Eval08M", "Eval09F", "Eval10M"]


def test_missing_column_names_the_file_and_the_column(tmp_path):
    path = tmp_path / "Sess01_eval.csv"
    with pytest.raises(CorpusFormatError, match=r"Sess01_eval\.csv: missing column\(s\) 'segment id'"):
        locate_columns(path, _cells(KEMDY20_ROW1.replace("Segment ID", "Segment")), _cells(KEMDY20_ROW2))


def test_printed_real_rows_parse(tmp_path):
    path = tmp_path / "Sess01_eval.csv"
    row = "1, 3.578390, 11.637391, Sess01_script01_User002M_001, neutral, 3.4, 2.9, " + ", ".join(
        ["neutral, 3, 3"] * 9 + ["disqust, 2, 4"])
    path.write_text("\n".join([KEMDY20_ROW1, KEMDY20_ROW2, row, ""]), encoding="utf-8")
    (parsed,) = read_annotation(path)
    assert parsed.segment_id == "Sess01_script01_User002M_001"
    assert (parsed.start, parsed.end, parsed.labels, parsed.valence, parsed.arousal) == (
        3.57839, 11.637391, ["neutral"], 3.4, 2.9)
    assert parsed.rater_emotions[-1] == "disgust" and parsed.rater_arousal[-1] == 4.0

    path19 = tmp_path / "Session01_F_res.csv"
    row19 = ("5, 28.943, 32.167, 0.155447, 0.02169028, 0.134394, 0.125435, 30.69, 30.71, Sess01_script01_F002, "
             "fear, 1.6, 3.7, " + ", ".join(["fear, 2, 4"] * 10))
    # BOM and CRLF line endings are tolerated.
    path19.write_bytes(("\ufeff" + "\r\n".join([KEMDY19_ROW1, KEMDY19_ROW2, row19, ""])).encode())
    (parsed,) = read_annotation(path19)
    assert (parsed.segment_id, parsed.labels, parsed.start, parsed.end) == ("Sess01_script01_F002", ["fear"], 28.943,
                                                                           32.167)


def test_labels_disqust_ties_and_unknown(tmp_path):
    assert parse_labels("disqust", tmp_path / "a.csv", 3) == ["disgust"]
    assert parse_labels("neutral;happy", tmp_path / "a.csv", 3) == ["neutral", "happy"]
    assert parse_labels(" Happy ; surprise ", tmp_path / "a.csv", 3) == ["happy", "surprise"]
    with pytest.raises(CorpusFormatError, match=r"a\.csv, line 7: unknown emotion label 'joy'"):
        parse_labels("joy", tmp_path / "a.csv", 7)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("b/ 몰라. o/ b/ 아 몰라 어떡해. o/", "몰라. 아 몰라 어떡해."),
        ("n/ 지섭씨. 일단 112에 신고하자.", "지섭씨. 일단 112에 신고하자."),
        ("l/ BTS 노래가 TV에서 N/ 나왔어 u/", "BTS 노래가 TV에서 나왔어"),
        ("음/ 그거* A/S 받았어+ 받았어 (네+예)", "음 그거 A/S 받았어 받았어 네 예"),
        ("c/ s/ SNS에 올렸어 ", "SNS에 올렸어"),
    ],
)
def test_clean_transcript_removes_tags_and_keeps_latin_words(raw, clean):
    assert clean_transcript(raw) == clean


def test_transcript_encodings(tmp_path):
    utf8, cp949, broken = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    utf8.write_text("b/ 몰라. o/ \n", encoding="utf-8")
    cp949.write_bytes("n/ 지섭씨.\n".encode("cp949"))
    broken.write_bytes(b"\xff\xfe\xff\x00\x81")
    assert read_transcript(utf8, ("utf-8", "cp949")) == ("b/ 몰라. o/ ", "utf-8")
    assert read_transcript(cp949, ("utf-8", "cp949")) == ("n/ 지섭씨.", "cp949")
    with pytest.raises(CorpusFormatError, match=r"c\.txt: transcript is not valid text in any of \['utf-8',"):
        read_transcript(broken, ("utf-8", "cp949"))


def test_wav_checks(tmp_path):
    import numpy as np
    import soundfile as sf

    good = tmp_path / "good.wav"
    sf.write(good, np.zeros(8000, dtype=np.float32), 16000, subtype="PCM_16")
    info = inspect_wav(good)
    assert (info.frames, info.sampling_rate, info.channels, info.duration) == (8000, 16000, 1, 0.5)

    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CorpusFormatError, match=r"truncated\.wav: truncated wav: header announces 16000 bytes"):
        inspect_wav(truncated)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(CorpusFormatError, match=r"empty\.wav: empty wav file"):
        inspect_wav(empty)
    text = tmp_path / "text.wav"
    text.write_text("not audio at all")
    with pytest.raises(CorpusFormatError, match=r"text\.wav: not a RIFF/WAVE file"):
        inspect_wav(text)
