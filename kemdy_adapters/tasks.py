"""Tasks as data: a name, a corpus source, a label set and the modalities it has.

Sources:
- `kemdy19` / `kemdy20`: the `datasets` loading scripts (`hf_dataset.load_kemdy`); the 7 emotions.
- a **generic corpus folder** in the `datasets` AudioFolder convention: `metadata.csv` or `metadata.jsonl` beside
  the audio, with columns
    `file_name`  audio path relative to the folder (any format soundfile reads; resampled to 16 kHz mono)
    `label`      any string
    `text`       optional transcript; a missing column or an empty cell means no transcript
    `session` or `speaker`  the groups the session-wise folds are drawn over (`session` wins when both exist),
                 or `split` with `train` / `validation` / `test` (then every fold uses that split)
    `valence`, `arousal`  optional, both or neither: numbers on the 1-5 scale (e.g. the raters' mean); a task
                 with them can learn regression outputs beside its labels (`--dimension_weight`)
  and optionally `labels.txt` (one label per line): the label set and its order. Without it the label set is
  the sorted (Unicode order) set of labels in the metadata. A row whose label is outside `labels.txt`, whose
  audio file is missing or unreadable, or a metadata file without a required column or without rows is an error
  naming the file and the row.
- any `datasets.Dataset` with those columns (`audio` decoded arrays or paths instead of `file_name`), from Python:
  `TaskSpec.from_dataset(name, dataset)`.

Utterances without a transcript are fed to the model with an empty transcript and a zero text vector (see
`MultimodalEmotionModel.forward`); a task none of whose utterances has a transcript is a speech-only task
(`modalities == ("speech",)`): its predictions never depend on any text.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from .configuration import check_task_name
from .corpus import CORPORA, EMOTIONS, CorpusFormatError
from .hf_dataset import SCRIPTS_SUPPORTED, audio_feature, corpus_fingerprint, encode_audio, load_kemdy
from .metrics import DIMENSIONS

logger = logging.getLogger(__name__)

METADATA_FILES = ("metadata.csv", "metadata.jsonl")
_LOADED: dict[tuple, datasets.Dataset] = {}
LABELS_FILE = "labels.txt"
GROUP_COLUMNS = ("session", "speaker")
SPLITS = ("train", "validation", "test")
BOTH = ("speech", "text")


@dataclass(frozen=True)
class TaskSpec:
    """One task: its name (adapter, head, folder and report name), where its data comes from, its labels.

    Args:
        name: Lower-case task name, e.g. `kemdy19` or `clinic`.
        source: `"kemdy19"`, `"kemdy20"`, `"folder"` (a generic corpus folder) or `"dataset"` (a Python dataset).
        location: The corpus folder (KEMDy: the unpacked folder or one above it), or None for a dataset.
        labels: The label set in its stable order (the head's class order).
        modalities: `("speech", "text")`, or `("speech",)` when no utterance has a transcript.
        dimensions: `("valence", "arousal")` where every utterance has both scores (KEMDy, or a corpus with those
            columns), else `()`.
    """

    name: str
    source: str
    location: str | None
    labels: tuple[str, ...]
    modalities: tuple[str, ...] = BOTH
    dimensions: tuple[str, ...] = ()
    dataset: datasets.Dataset | None = field(default=None, compare=False, repr=False)
    rows: list[dict] | None = field(default=None, compare=False, repr=False)
    """A folder's checked metadata rows, read once when the spec is made."""

    @classmethod
    def kemdy(cls, corpus: str, location) -> TaskSpec:
        return cls(name=corpus, source=corpus, location=str(location), labels=EMOTIONS, dimensions=DIMENSIONS)

    @classmethod
    def from_folder(cls, name: str, folder) -> TaskSpec:
        """Reads (and checks) a generic corpus folder's metadata to learn its labels and modalities."""
        check_task_name(name)
        rows, labels = read_folder_metadata(folder)
        has_text = any(row["text"] for row in rows)
        return cls(name=name, source="folder", location=str(Path(folder).resolve()), labels=labels,
                   modalities=BOTH if has_text else ("speech",), rows=rows,
                   dimensions=DIMENSIONS if "valence" in rows[0] else ())

    @classmethod
    def from_dataset(cls, name: str, dataset: datasets.Dataset, labels: list[str] | None = None) -> TaskSpec:
        """A task over an in-memory `datasets.Dataset` with the generic columns (`audio` instead of `file_name`)."""
        check_task_name(name)
        missing = [column for column in ("audio", "label") if column not in dataset.column_names]
        if missing:
            raise ValueError(f"dataset for task {name!r} lacks column(s) {missing}; it has {dataset.column_names}")
        if not any(column in dataset.column_names for column in (*GROUP_COLUMNS, "split")):
            raise ValueError(f"dataset for task {name!r} needs a session, speaker or split column")
        values = [str(label) for label in dataset["label"]]
        labels = _label_set(values, labels, f"dataset {name!r}")
        texts = dataset["text"] if "text" in dataset.column_names else []
        has_text = any(text and str(text).strip() for text in texts)
        given = [column for column in DIMENSIONS if column in dataset.column_names]
        if given and len(given) != len(DIMENSIONS):
            raise ValueError(f"dataset for task {name!r} has {given} but not {sorted(set(DIMENSIONS) - set(given))}: "
                             "give both valence and arousal or neither")
        return cls(name=name, source="dataset", location=None, labels=labels,
                   modalities=BOTH if has_text else ("speech",), dataset=dataset,
                   dimensions=DIMENSIONS if given else ())

    def load(self, cache_dir: str | None = None) -> datasets.Dataset:
        """The whole corpus as rows `id, session, label (ClassLabel), text, audio` (+ `split` where given);
        read (and its anomalies reported) once per process, then served from memory for every fold."""
        key = (self.source, self.location, self.labels, cache_dir, self._version())
        if self.dataset is None and key in _LOADED:
            return _LOADED[key]
        dataset = self._load(cache_dir)
        if self.dataset is None:
            _LOADED[key] = dataset
        return dataset

    def _version(self) -> str | None:
        """What changes when the corpus on disk changes (so a changed corpus is never served from memory)."""
        if self.source in CORPORA:
            return corpus_fingerprint(self.location, self.source)
        if self.source == "folder":
            folder = Path(self.location)
            return ";".join(f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
                            for path in sorted(folder.iterdir()) if path.is_file())
        return None

    def _load(self, cache_dir: str | None) -> datasets.Dataset:
        if self.source in CORPORA:
            return load_kemdy(self.source, self.location, cache_dir=cache_dir)
        if self.source == "folder":
            rows = self.rows if self.rows is not None else read_folder_metadata(self.location, self.labels)[0]
            return _to_dataset(rows, self.labels)
        return _normalise_dataset(self.name, self.dataset, self.labels)


def split_task_items(items) -> tuple[list[str], dict[str, str]]:
    """`["kemdy19", "clinic=/data/clinic"]` -> (`["kemdy19", "clinic"]`, `{"clinic": "/data/clinic"}`)."""
    names, locations = [], {}
    for item in items:
        name, sep, location = str(item).partition("=")
        name = name.strip()
        check_task_name(name)
        if sep:
            if not location.strip():
                raise ValueError(f"task {item!r}: give the corpus folder after '=' (name=path)")
            locations[name] = location.strip()
        names.append(name)
    return names, locations


def resolve_task(name: str, location: str | None = None, kemdy_dir=None) -> TaskSpec:
    """The spec of task `name`: a KEMDy corpus (from `location` or `kemdy_dir`), or a generic folder at `location`."""
    if name in CORPORA and (location or kemdy_dir):
        return TaskSpec.kemdy(name, location or kemdy_dir)
    if location:
        return TaskSpec.from_folder(name, location)
    if name in CORPORA:
        raise ValueError(f"no data for task {name!r}: pass --data_dir or --{name}_dir")
    raise ValueError(f"task {name!r} has no corpus: name it as {name}=/path/to/folder (a folder with metadata.csv "
                     f"or metadata.jsonl), or use one of the KEMDy corpora {list(CORPORA)}")


# ------------------------------------------------------------------------------------------- generic folders


def _label_set(values: list[str], given: list[str] | tuple[str, ...] | None, where: str) -> tuple[str, ...]:
    if not values:
        raise ValueError(f"{where}: no rows")
    if given is None:
        labels = tuple(sorted(set(values)))
    else:
        labels = tuple(given)
        unknown = sorted(set(values) - set(labels))
        if unknown:
            raise ValueError(f"{where}: labels {unknown} are not in the label set {list(labels)}")
    if len(labels) < 2:
        raise ValueError(f"{where}: a task needs at least two labels, found {list(labels)}")
    return labels


def _read_metadata_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs of a metadata.csv / metadata.jsonl file."""
    if path.suffix == ".jsonl":
        rows = []
        for line, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                raise CorpusFormatError(f"{path} line {line}: not valid JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise CorpusFormatError(f"{path} line {line}: expected a JSON object per line")
            rows.append((line, row))
        return rows
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        return [(line, row) for line, row in enumerate(reader, start=2)]


def read_folder_metadata(folder, labels: tuple[str, ...] | None = None) -> tuple[list[dict], tuple[str, ...]]:
    """Checked rows (`id, file, label, text, group, split`) of a generic corpus folder, and its label set.

    Raises:
        CorpusFormatError: naming the file and row of the first problem found.
    """
    import soundfile as sf

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CorpusFormatError(f"{folder}: no such folder (a task corpus folder with metadata.csv)")
    found = [folder / name for name in METADATA_FILES if (folder / name).is_file()]
    if not found:
        raise CorpusFormatError(f"{folder}: no metadata.csv or metadata.jsonl (the datasets AudioFolder convention: "
                                "file_name, label, optional text, and session, speaker or split)")
    if len(found) > 1:
        raise CorpusFormatError(f"{folder}: both metadata.csv and metadata.jsonl; keep one")
    path = found[0]
    raw = _read_metadata_rows(path)
    if not raw:
        raise CorpusFormatError(f"{path}: no rows (an empty metadata file)")
    columns = set().union(*(row.keys() for _, row in raw))
    for required in ("file_name", "label"):
        if required not in columns:
            raise CorpusFormatError(f"{path}: column {required!r} is missing (columns: {sorted(columns)})")
    group = next((name for name in GROUP_COLUMNS if name in columns), None)
    if group is None and "split" not in columns:
        raise CorpusFormatError(f"{path}: needs a session or speaker column (the groups of the folds) or a split "
                                "column (train/validation/test)")
    dimensional = [name for name in DIMENSIONS if name in columns]
    if dimensional and len(dimensional) != len(DIMENSIONS):
        missing = sorted(set(DIMENSIONS) - set(dimensional))
        raise CorpusFormatError(f"{path}: has column(s) {dimensional} but not {missing}: give both valence and "
                                "arousal or neither")
    given = labels
    if given is None and (folder / LABELS_FILE).is_file():
        given = tuple(line.strip() for line in (folder / LABELS_FILE).read_text(encoding="utf-8-sig").splitlines()
                      if line.strip())
    rows, seen = [], set()
    for line, row in raw:
        where = f"{path} line {line}"
        file_name = str(row.get("file_name") or "").strip()
        label = str(row.get("label") if row.get("label") is not None else "").strip()
        if not file_name:
            raise CorpusFormatError(f"{where}: empty file_name")
        if not label:
            raise CorpusFormatError(f"{where}: empty label")
        if given is not None and label not in given:
            raise CorpusFormatError(f"{where}: label {label!r} is not in the label set {list(given)} "
                                    f"({LABELS_FILE if labels is None else 'the task'})")
        audio = (folder / file_name).resolve()
        if not audio.is_file():
            raise CorpusFormatError(f"{where}: audio file {file_name} not found")
        try:
            info = sf.info(str(audio))
        except (sf.LibsndfileError, RuntimeError) as error:
            raise CorpusFormatError(f"{where}: audio file {file_name} is unreadable ({error})") from error
        if info.frames == 0:
            raise CorpusFormatError(f"{where}: audio file {file_name} holds no samples")
        split = str(row.get("split") or "").strip().lower() if "split" in columns and group is None else None
        if split is not None and split not in SPLITS:
            raise CorpusFormatError(f"{where}: split {row.get('split')!r} is not one of {list(SPLITS)}")
        grouping = str(row.get(group) or "").strip() if group else split
        if not grouping:
            raise CorpusFormatError(f"{where}: empty {group} cell")
        identifier = str(row.get("id") or Path(file_name).with_suffix("").as_posix())
        if identifier in seen:
            raise CorpusFormatError(f"{where}: duplicate utterance {identifier!r}")
        seen.add(identifier)
        text = row.get("text")
        rows.append({"id": identifier, "file": str(audio), "label": label,
                     "text": "" if text is None else " ".join(str(text).split()),
                     "session": grouping, "split": split,
                     **{name: _score(row.get(name), name, where) for name in dimensional}})
    return rows, _label_set([row["label"] for row in rows], given, str(path))


def _score(value, name: str, where: str) -> float:
    """A valence/arousal cell as a float in [1, 5], or an error naming the row."""
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        number = float("nan")
    if not 1.0 <= number <= 5.0:  # also catches NaN
        raise CorpusFormatError(f"{where}: {name} {value!r} is not a number from 1 to 5")
    return number


def features(labels: tuple[str, ...], with_split: bool, with_dimensions: bool = False) -> datasets.Features:
    columns = {"id": datasets.Value("string"), "session": datasets.Value("string"),
               "label": datasets.ClassLabel(names=list(labels)), "text": datasets.Value("string"),
               "audio": audio_feature()}
    if with_split:
        columns["split"] = datasets.Value("string")
    if with_dimensions:
        columns |= {name: datasets.Value("float32") for name in DIMENSIONS}
    return datasets.Features(columns)


def _to_dataset(rows: list[dict], labels: tuple[str, ...]) -> datasets.Dataset:
    with_split = rows[0]["split"] is not None
    with_dimensions = "valence" in rows[0]
    data = {"id": [row["id"] for row in rows], "session": [row["session"] for row in rows],
            "label": [labels.index(row["label"]) for row in rows], "text": [row["text"] for row in rows],
            "audio": [{"bytes": None, "path": row["file"]} for row in rows]}
    if with_split:
        data["split"] = [row["split"] for row in rows]
    if with_dimensions:
        data |= {name: [row[name] for row in rows] for name in DIMENSIONS}
    return datasets.Dataset.from_dict(data, features=features(labels, with_split, with_dimensions))


def _normalise_dataset(name: str, dataset: datasets.Dataset, labels: tuple[str, ...]) -> datasets.Dataset:
    """A Python dataset with the generic columns, as `id, session, label (ClassLabel), text, audio`."""
    group = next((column for column in GROUP_COLUMNS if column in dataset.column_names), None)
    names = dataset.features["label"].names if isinstance(dataset.features["label"], datasets.ClassLabel) else None

    def normalise(row, index):
        label = names[row["label"]] if names else str(row["label"])
        text = row.get("text")
        return {"id": str(row.get("id") or f"{name}-{index:06d}"),
                "session": str(row[group]) if group else str(row["split"]),
                "label": labels.index(label), "text": "" if text is None else " ".join(str(text).split())}

    keep = ({"audio", "split"} if group is None else {"audio"}) | set(DIMENSIONS)
    mapped = dataset.map(normalise, with_indices=True, remove_columns=[
        column for column in dataset.column_names if column not in keep], desc=f"reading task {name}")
    target = features(labels, "split" in mapped.column_names, "valence" in mapped.column_names)
    if SCRIPTS_SUPPORTED:
        if not isinstance(dataset.features["audio"], datasets.Audio):
            mapped = mapped.cast_column("audio", datasets.Audio(sampling_rate=16000))
    else:  # datasets 4+: the {bytes, path} storage without torchcodec (hf_dataset's module docstring)
        if isinstance(dataset.features["audio"], datasets.Audio):
            mapped = mapped.cast_column("audio", datasets.Audio(decode=False))
        mapped = mapped.map(lambda row: {"audio": encode_audio(row["audio"])}, features=target,
                            desc=f"storing task {name}'s audio")
    return mapped.cast(target)


# ----------------------------------------------------------------------------------------------------- folds


def task_rows(dataset: datasets.Dataset, fold: int, n_folds: int = 5, fold_seed: int = 12) -> dict[str, list[int]]:
    """The row indices of `fold`'s train/validation/test rows: session-wise folds (the KEMDy protocol over the
    dataset's groups), or the dataset's own `split` column, which then holds for every fold."""
    if "split" in dataset.column_names:
        column = dataset["split"]
        return {name: [i for i, value in enumerate(column) if value == name] for name in SPLITS}
    from .folds import session_rows

    return session_rows(dataset["session"], fold, n_splits=n_folds, seed=fold_seed)


def task_splits(dataset: datasets.Dataset, fold: int, n_folds: int = 5, fold_seed: int = 12) -> datasets.DatasetDict:
    """Train/validation/test rows of `fold` (see `task_rows`)."""
    rows = task_rows(dataset, fold, n_folds=n_folds, fold_seed=fold_seed)
    return datasets.DatasetDict({name: dataset.select(indices) for name, indices in rows.items()})
