"""Reading KEMDy19 and KEMDy20 as they lie on disk (docs: ../shared/docs/kemdy-format.md).

The `datasets` loading scripts in `dataset_scripts/` are thin wrappers around `scan_corpus`, which walks an
unpacked corpus folder and returns one `Segment` per usable annotated utterance plus a `ScanReport` that counts
every row it did not use and why. Nothing is dropped without being counted: the report is logged at the end of
a scan and printed by `kemdy-adapters inspect`.
"""

from __future__ import annotations

import csv
import logging
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
"""The 7 classes, in the order of the `ClassLabel` (alphabetical, as the reference method used)."""

# KEMDy20 spells disgust "disqust" in its annotations.
LABEL_SPELLINGS = {name: name for name in EMOTIONS} | {"disqust": "disgust"}

CORPORA = ("kemdy19", "kemdy20")


class CorpusFormatError(ValueError):
    """A corpus file is not in the documented KEMDy format; the message names the file and the problem."""


@dataclass(frozen=True)
class CorpusSpec:
    """What differs between KEMDy19 and KEMDy20 on disk."""

    name: str
    annotation_glob: str
    annotation_re: re.Pattern
    segment_re: re.Pattern
    transcript_encodings: tuple[str, ...]
    speaker_filter: bool
    """KEMDy19 lists every segment of a session in both the F and M files; keep the file's own speaker's rows."""
    known_bad: dict[str, str] = field(default_factory=dict)
    """Segment ids excluded on purpose, with the reason (kemdy-format.md, section 2)."""
    id_fixes: dict[tuple[str, str], str] = field(default_factory=dict)
    """(annotation file, written id) -> intended id, for rows known to carry the wrong id."""


SPECS: dict[str, CorpusSpec] = {
    "kemdy19": CorpusSpec(
        name="kemdy19",
        annotation_glob="Session*_res.csv",
        annotation_re=re.compile(r"^Session(\d{2})_([FM])_res\.csv$", re.IGNORECASE),
        segment_re=re.compile(r"^Sess(\d{2})_((?:script|impro)\d{2})_([FM])(\d{3})$"),
        transcript_encodings=("utf-8", "cp949"),
        speaker_filter=True,
        known_bad={
            "Sess04_impro03_M031": "known bad segment in KEMDy19 (kemdy-format.md section 2)",
            "Sess04_impro03_F031": "known bad segment in KEMDy19 (kemdy-format.md section 2)",
        },
        id_fixes={("Session03_F_res.csv", "Sess03_impro02_M001"): "Sess03_impro02_F001"},
    ),
    "kemdy20": CorpusSpec(
        name="kemdy20",
        annotation_glob="Sess*_eval.csv",
        annotation_re=re.compile(r"^Sess(\d{2})_eval\.csv$", re.IGNORECASE),
        segment_re=re.compile(r"^Sess(\d{2})_(script\d{2})_(User\d{3})([FM])_(\d{3})$"),
        transcript_encodings=("cp949", "utf-8"),
        speaker_filter=False,
    ),
}


@dataclass
class Segment:
    """One annotated utterance with everything the loading scripts expose."""

    id: str
    corpus: str
    session: str
    dialogue: str
    speaker: str
    gender: str
    start: float
    end: float
    labels: list[str]
    emotion_raw: str
    valence: float
    arousal: float
    raters: list[str]
    rater_emotions: list[str]
    rater_valence: list[float]
    rater_arousal: list[float]
    wav_path: str
    text_raw: str
    text: str
    text_encoding: str
    duration: float
    sampling_rate: int
    annotation_file: str


@dataclass
class ScanReport:
    """Counts of every annotation row that did not become a segment, by reason, with a few example ids."""

    corpus: str
    data_dir: str
    rows_read: int = 0
    segments: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    fixed_ids: list[str] = field(default_factory=list)
    empty_files: list[str] = field(default_factory=list)
    """Annotation files with their header rows and no data row."""

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 5:
            shown.append(where)

    def summary(self) -> str:
        lines = [f"{self.corpus}: {self.segments} segments from {self.rows_read} annotation rows in {self.data_dir}"]
        for reason, count in sorted(self.skipped.items(), key=lambda item: -item[1]):
            lines.append(f"  skipped {count:>6}  {reason}  (e.g. {', '.join(self.examples[reason][:3])})")
        if self.empty_files:
            lines.append(f"  skipped {len(self.empty_files):>6}  annotation file(s) with a header and no rows: their "
                         f"segments are missing from every fold  ({', '.join(self.empty_files[:5])})")
        for fixed in self.fixed_ids:
            lines.append(f"  corrected id: {fixed}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- headers


def _normalise(cell: str) -> str:
    return " ".join(cell.replace("\ufeff", "").split()).lower()


def column_names(row1: list[str], row2: list[str]) -> list[tuple[str, str]]:
    """Names each column by its group (row 1, carried over blank cells) and its field (row 2).

    Row 1 leaves the cells after a group name blank (empty in KEMDy19, a single space in KEMDy20), so a blank
    cell belongs to the group on its left. Names are lower-cased and stripped so `Wav` and `WAV` match.
    """
    names, group = [], ""
    width = max(len(row1), len(row2))
    for index in range(width):
        top = _normalise(row1[index]) if index < len(row1) else ""
        sub = _normalise(row2[index]) if index < len(row2) else ""
        if top:
            group = top
        names.append((group, sub))
    return names


RATER_RE = re.compile(r"^eval(\d{2})([fm])$")


@dataclass
class AnnotationColumns:
    """Positions of the columns the loader reads, found by name."""

    start: int
    end: int
    segment_id: int
    emotion: int
    valence: int
    arousal: int
    raters: list[tuple[str, int, int, int]]  # (rater name, emotion, valence, arousal)


def locate_columns(path: Path, row1: list[str], row2: list[str]) -> AnnotationColumns:
    names = column_names(row1, row2)
    position = {}
    for index, name in enumerate(names):
        position.setdefault(name, index)
    wanted = {
        "start": ("wav", "start"),
        "end": ("wav", "end"),
        "segment_id": ("segment id", ""),
        "emotion": ("total evaluation", "emotion"),
        "valence": ("total evaluation", "valence"),
        "arousal": ("total evaluation", "arousal"),
    }
    missing = [
        f"{group!r}/{sub!r}" if sub else repr(group) for group, sub in wanted.values() if (group, sub) not in position
    ]
    if missing:
        found = sorted({group for group, _ in names if group})
        raise CorpusFormatError(
            f"{path}: missing column(s) {', '.join(missing)} in the two header rows; found groups {found}. "
            "Expected the KEMDy layout (row 1: Numb, Wav, ..., Segment ID, Total Evaluation, Eval01.., "
            "row 2: start, end, Emotion, Valence, Arousal)."
        )
    raters = []
    for (group, sub), index in position.items():
        match = RATER_RE.match(group)
        if match and sub == "emotion":
            valence, arousal = position.get((group, "valence")), position.get((group, "arousal"))
            if valence is None or arousal is None:
                raise CorpusFormatError(f"{path}: rater column {group!r} lacks its Valence/Arousal fields")
            raters.append((f"Eval{match.group(1)}{match.group(2).upper()}", index, valence, arousal))
    raters.sort(key=lambda rater: rater[1])
    return AnnotationColumns(**{key: position[name] for key, name in wanted.items()}, raters=raters)


# ------------------------------------------------------------------------------------------------ transcripts

TAG_RE = re.compile(r"(?<![A-Za-z0-9])[bonNlucs]/")
SLASH_RE = re.compile(r"(?<![A-Za-z])/|/(?![A-Za-z])")


def clean_transcript(raw: str) -> str:
    """Removes KEMDy transcription markup and keeps the words.

    `b/ o/ n/ N/ l/ u/ c/ s/` tags, `*` (uncertain word), `+` (repetition), `/` fillers and the parentheses of
    `(A+B)` overlap spans go; Latin words such as BTS or TV and `A/S`-style abbreviations stay.
    """
    text = TAG_RE.sub(" ", raw)
    text = SLASH_RE.sub(" ", text)
    text = re.sub(r"[*+()]", " ", text)
    return " ".join(text.split())


def read_transcript(path: Path, encodings: tuple[str, ...]) -> tuple[str, str]:
    """Returns (first line without its newline, encoding used); tries each encoding in turn."""
    data = path.read_bytes()
    errors = []
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as error:
            errors.append(f"{encoding}: {error.reason} at byte {error.start}")
            continue
        text = text.lstrip("\ufeff")
        return text.splitlines()[0].rstrip("\r\n") if text else "", encoding
    raise CorpusFormatError(f"{path}: transcript is not valid text in any of {list(encodings)} ({'; '.join(errors)})")


# ------------------------------------------------------------------------------------------------------ audio


@dataclass
class WavInfo:
    frames: int
    sampling_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sampling_rate


def inspect_wav(path: Path) -> WavInfo:
    """Reads a RIFF/WAVE header and checks that the file holds the audio its header announces.

    Cheap (reads the header only), so every segment is checked at load time instead of failing in the middle of
    training when the audio is decoded.
    """
    size = path.stat().st_size
    if size == 0:
        raise CorpusFormatError(f"{path}: empty wav file (0 bytes)")
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise CorpusFormatError(f"{path}: not a RIFF/WAVE file (starts with {head[:12]!r})")
        fmt = None
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                raise CorpusFormatError(f"{path}: truncated wav: no 'data' chunk in {size} bytes")
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                body = handle.read(chunk_size + (chunk_size & 1))
                if len(body) < 16:
                    raise CorpusFormatError(f"{path}: truncated wav: 'fmt ' chunk cut short")
                _, channels, rate, _, block_align, _ = struct.unpack("<HHIIHH", body[:16])
                fmt = (channels, rate, block_align)
            elif chunk_id == b"data":
                if fmt is None:
                    raise CorpusFormatError(f"{path}: 'data' chunk before 'fmt ' chunk")
                channels, rate, block_align = fmt
                available = size - handle.tell()
                if chunk_size > available:
                    raise CorpusFormatError(
                        f"{path}: truncated wav: header announces {chunk_size} bytes of audio, the file holds "
                        f"{available}"
                    )
                if channels == 0 or rate == 0 or block_align == 0:
                    raise CorpusFormatError(f"{path}: invalid wav format ({channels} channels at {rate} Hz)")
                frames = chunk_size // block_align
                if frames == 0:
                    raise CorpusFormatError(f"{path}: wav holds no audio frames")
                return WavInfo(frames=frames, sampling_rate=rate, channels=channels)
            else:
                handle.seek(chunk_size + (chunk_size & 1), 1)


# ------------------------------------------------------------------------------------------------ annotations


def _read_rows(path: Path) -> list[list[str]]:
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "cp949"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise CorpusFormatError(f"{path}: annotation file is neither UTF-8 nor cp949 text")
    return list(csv.reader(text.splitlines()))


def parse_labels(raw: str, path: Path, line: int) -> list[str]:
    """`neutral`, `disqust` or a tie such as `neutral;happy` -> canonical label names, in the file's order."""
    labels = []
    for part in raw.split(";"):
        name = part.strip().lower()
        if not name:
            continue
        if name not in LABEL_SPELLINGS:
            raise CorpusFormatError(
                f"{path}, line {line}: unknown emotion label {part.strip()!r} in {raw!r}; "
                f"expected one of {sorted(LABEL_SPELLINGS)}"
            )
        if LABEL_SPELLINGS[name] not in labels:
            labels.append(LABEL_SPELLINGS[name])
    return labels


def _number(cell: str, path: Path, line: int, what: str) -> float:
    cell = cell.strip()
    if not cell:
        return float("nan")
    try:
        return float(cell)
    except ValueError as error:
        raise CorpusFormatError(f"{path}, line {line}: {what} is not a number: {cell!r}") from error


@dataclass
class AnnotationRow:
    segment_id: str
    line: int
    start: float
    end: float
    emotion_raw: str
    labels: list[str]
    valence: float
    arousal: float
    raters: list[str]
    rater_emotions: list[str]
    rater_valence: list[float]
    rater_arousal: list[float]


def read_annotation(path: Path) -> list[AnnotationRow]:
    """Parses one annotation CSV (two header rows, then a row per segment). Blank rows are ignored."""
    rows = _read_rows(path)
    if len(rows) < 2:
        raise CorpusFormatError(f"{path}: expected two header rows, found {len(rows)} line(s)")
    columns = locate_columns(path, rows[0], rows[1])
    parsed = []
    width = len(column_names(rows[0], rows[1]))
    for line, raw_row in enumerate(rows[2:], start=3):
        if not any(cell.strip() for cell in raw_row):
            continue
        cells = [cell.strip() for cell in raw_row] + [""] * (width - len(raw_row))
        cell = cells.__getitem__
        segment_id = cell(columns.segment_id)
        emotion_raw = cell(columns.emotion)
        labels = parse_labels(emotion_raw, path, line)
        rater_emotions = []
        for _, emotion, _, _ in columns.raters:
            rater_labels = parse_labels(cell(emotion), path, line)
            rater_emotions.append(rater_labels[0] if rater_labels else "")
        parsed.append(
            AnnotationRow(
                segment_id=segment_id,
                line=line,
                start=_number(cell(columns.start), path, line, "Wav start"),
                end=_number(cell(columns.end), path, line, "Wav end"),
                emotion_raw=emotion_raw,
                labels=labels,
                valence=_number(cell(columns.valence), path, line, "Total Evaluation valence"),
                arousal=_number(cell(columns.arousal), path, line, "Total Evaluation arousal"),
                raters=[name for name, *_ in columns.raters],
                rater_emotions=rater_emotions,
                rater_valence=[_number(cell(v), path, line, f"{n} valence") for n, _, v, _ in columns.raters],
                rater_arousal=[_number(cell(a), path, line, f"{n} arousal") for n, _, _, a in columns.raters],
            )
        )
    return parsed


# ------------------------------------------------------------------------------------------------------- scan


def find_corpus_root(data_dir: str | Path, corpus: str) -> Path:
    """The folder holding `annotation/` and `wav/`; accepts the corpus folder or a folder right above it."""
    spec = SPECS[corpus]
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise CorpusFormatError(f"{root}: no such folder (data_dir for {corpus})")
    candidates = [root, *sorted(path for path in root.iterdir() if path.is_dir())]
    for candidate in candidates:
        annotation = candidate / "annotation"
        if annotation.is_dir() and any(_annotation_files(annotation, spec)):
            if not (candidate / "wav").is_dir():
                raise CorpusFormatError(f"{candidate}: has annotation/ but no wav/ folder; not a complete {corpus}")
            return candidate
    expected = "annotation/Session01_F_res.csv ..." if corpus == "kemdy19" else "annotation/Sess01_eval.csv ..."
    raise CorpusFormatError(
        f"{root}: not a {corpus.upper()} corpus folder: expected {expected} and wav/Session01/... in it "
        "(or in one folder below it). Obtain the corpus from ETRI and pass its unpacked folder as data_dir."
    )


def _annotation_files(folder: Path, spec: CorpusSpec) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and spec.annotation_re.match(path.name))


def _speaker_of(spec: CorpusSpec, match: re.Match) -> tuple[str, str, str, str]:
    """(session, dialogue, speaker, gender) from a segment-id match."""
    if spec.name == "kemdy19":
        session, dialogue, gender = match.group(1), match.group(2), match.group(3)
        return f"Sess{session}", dialogue, f"Sess{session}_{gender}", gender
    session, dialogue, user, gender = match.group(1), match.group(2), match.group(3), match.group(4)
    return f"Sess{session}", dialogue, f"{user}{gender}", gender


def _wav_path(root: Path, spec: CorpusSpec, segment_id: str, session: str, dialogue: str) -> Path:
    folder = root / "wav" / f"Session{session[4:]}"
    if spec.name == "kemdy19":
        folder = folder / f"{session}_{dialogue}"
    return folder / f"{segment_id}.wav"


def _fix_ids(spec: CorpusSpec, files: dict[Path, list[AnnotationRow]], report: ScanReport) -> None:
    """Renames rows known to carry a wrong segment id (KEMDy19 Session03 F file).

    The wrong id also exists as a genuine row; the genuine one is the row whose times agree with the same id
    in the partner file (the other speaker's file of the session), so only the other row is renamed.
    """
    by_name = {path.name: rows for path, rows in files.items()}
    for (file_name, wrong), right in spec.id_fixes.items():
        rows = by_name.get(file_name)
        if rows is None or any(row.segment_id == right for row in rows):
            continue
        partner_name = file_name.replace("_F_", "_M_") if "_F_" in file_name else file_name.replace("_M_", "_F_")
        genuine = {(row.start, row.end) for row in by_name.get(partner_name, []) if row.segment_id == wrong}
        suspects = [row for row in rows if row.segment_id == wrong and (row.start, row.end) not in genuine]
        if len(suspects) == 1:
            suspects[0].segment_id = right
            report.fixed_ids.append(f"{file_name} line {suspects[0].line}: {wrong} -> {right}")


def scan_corpus(
    data_dir: str | Path, corpus: str, keep_multilabel: bool = False, skip_bad_files: bool = False
) -> tuple[list[Segment], ScanReport]:
    """Reads an unpacked KEMDy19 or KEMDy20 folder.

    Args:
        data_dir: The corpus folder (`KEMDy19/`, `KEMDy20_v1_1/`) or the folder right above it.
        corpus: `"kemdy19"` or `"kemdy20"`.
        keep_multilabel: Keep rows whose total label is a tie (`neutral;happy`); the common protocol drops them.
        skip_bad_files: Skip (and count) segments whose wav is empty, truncated or not a wav, or whose
            transcript cannot be decoded, instead of raising.

    Returns:
        The segments sorted by id, and the report of every skipped row with its reason.
    """
    if corpus not in SPECS:
        raise ValueError(f"unknown corpus {corpus!r}; expected one of {list(SPECS)}")
    spec = SPECS[corpus]
    root = find_corpus_root(data_dir, corpus)
    report = ScanReport(corpus=corpus, data_dir=str(root))
    files = {path: read_annotation(path) for path in _annotation_files(root / "annotation", spec)}
    _fix_ids(spec, files, report)

    segments: dict[str, Segment] = {}
    for path, rows in files.items():
        if not rows:
            # A header and no rows: the file's session (or speaker) contributes nothing, which changes the folds.
            report.empty_files.append(path.name)
            continue
        file_match = spec.annotation_re.match(path.name)
        file_session = f"Sess{file_match.group(1)}"
        file_gender = file_match.group(2).upper() if spec.speaker_filter else None
        for row in rows:
            report.rows_read += 1
            where = f"{path.name}:{row.line} {row.segment_id or '<no id>'}"
            match = spec.segment_re.match(row.segment_id)
            if match is None:
                report.skip("segment id not in the corpus's pattern", where)
                continue
            session, dialogue, speaker, gender = _speaker_of(spec, match)
            if file_gender is not None and gender != file_gender:
                # Not an error: the F file rates the female participant also while the male one speaks.
                report.skip("other speaker's row (KEMDy19 speaker filter)", where)
                continue
            if session != file_session:
                report.skip("segment of another session than its annotation file", where)
                continue
            if row.segment_id in spec.known_bad:
                report.skip(spec.known_bad[row.segment_id], where)
                continue
            if not row.labels:
                report.skip("no total emotion label", where)
                continue
            if len(row.labels) > 1 and not keep_multilabel:
                report.skip("multi-label (tied) row, dropped by the common protocol", where)
                continue
            if row.segment_id in segments:
                report.skip("duplicate segment id (first row kept)", where)
                continue
            wav = _wav_path(root, spec, row.segment_id, session, dialogue)
            txt = wav.with_suffix(".txt")
            if not wav.is_file():
                report.skip("wav file missing", where)
                continue
            if not txt.is_file():
                report.skip("transcript (.txt) missing", where)
                continue
            try:
                info = inspect_wav(wav)
                text_raw, encoding = read_transcript(txt, spec.transcript_encodings)
            except CorpusFormatError as error:
                if not skip_bad_files:
                    raise
                report.skip("unreadable wav or transcript (skip_bad_files)", f"{where}: {error}")
                continue
            segments[row.segment_id] = Segment(
                id=row.segment_id,
                corpus=corpus,
                session=session,
                dialogue=dialogue,
                speaker=speaker,
                gender=gender,
                start=row.start,
                end=row.end,
                labels=row.labels,
                emotion_raw=row.emotion_raw,
                valence=row.valence,
                arousal=row.arousal,
                raters=row.raters,
                rater_emotions=row.rater_emotions,
                rater_valence=row.rater_valence,
                rater_arousal=row.rater_arousal,
                wav_path=str(wav),
                text_raw=text_raw,
                text=clean_transcript(text_raw),
                text_encoding=encoding,
                duration=info.duration,
                sampling_rate=info.sampling_rate,
                annotation_file=path.name,
            )
    report.segments = len(segments)
    if not segments:
        raise CorpusFormatError(f"{root}: no usable segments found.\n{report.summary()}")
    if _has_problems(report):
        logger.warning("%s", report.summary())
    else:
        logger.info("%s", report.summary())
    return [segments[key] for key in sorted(segments)], report


def _has_problems(report: ScanReport) -> bool:
    benign = {"other speaker's row (KEMDy19 speaker filter)", "multi-label (tied) row, dropped by the common protocol"}
    return bool(report.empty_files) or any(reason not in benign for reason in report.skipped)
