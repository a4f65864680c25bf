"""The `datasets` builder behind `dataset_scripts/kemdy19` and `dataset_scripts/kemdy20`.

The loading scripts subclass `KemdyBuilder` and set `CORPUS`; all parsing lives in `corpus.py` so both scripts
share one tested implementation. Load them with

    load_dataset("dataset_scripts/kemdy20", data_dir="/data/KEMDy20_v1_1", trust_remote_code=True)

or with `load_kemdy`, which builds the same dataset through the builder classes here (no loading script, so
no remote code and no dependency on `datasets` still running scripts) and keys the cache on the corpus files,
not only on their path.

The `audio` column: with `datasets` 3.x it is `datasets.Audio(sampling_rate=16000)` (decoded with soundfile on
access). `datasets` 4.0 and later decode and even store audio only through torchcodec and the system's FFmpeg
libraries, so there the column keeps the same storage, `{"bytes", "path"}`, as a plain struct and `decode_audio`
reads it with soundfile (+ soxr to 16 kHz mono), giving the arrays `Audio` gives with 3.x. Code that reads audio
calls `decode_audio(row["audio"])`, which accepts either form. With torchcodec installed, a user can still
`cast_column("audio", datasets.Audio(sampling_rate=16000))`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from . import __version__
from .corpus import CORPORA, EMOTIONS, SPECS, CorpusFormatError, find_corpus_root, scan_corpus

SAMPLING_RATE = 16000
# `datasets` 4.0 dropped loading scripts and soundfile decoding (its Audio needs torchcodec + FFmpeg).
DATASETS_MAJOR = int(datasets.__version__.split(".")[0])
SCRIPTS_SUPPORTED = DATASETS_MAJOR < 4

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "dataset_scripts"

MANUAL_DOWNLOAD = """\
KEMDy19 and KEMDy20 are distributed by ETRI under a licence that forbids redistribution: request them from
ETRI (https://nanum.etri.re.kr), unpack the archive, and pass the unpacked folder (`KEMDy19/` or
`KEMDy20_v1_1/`, the one holding `annotation/` and `wav/`) as `data_dir`:
    load_dataset("dataset_scripts/{corpus}", data_dir="/path/to/{folder}", trust_remote_code=True)
"""


@dataclass
class KemdyConfig(datasets.BuilderConfig):
    """Builder config.

    Args:
        keep_multilabel: Keep rows whose total label is a tie of several emotions (`label` is then -1 and
            `labels` lists them); the default `single_label` config drops them, as the common protocol does.
        skip_bad_files: Skip (and count in the log) segments whose wav or transcript is unreadable instead of
            stopping with an error.
        fingerprint: Free text that becomes part of the cache key; `load_kemdy` puts a digest of the corpus
            files here so a changed corpus is not served from a stale cache.
    """

    keep_multilabel: bool = False
    skip_bad_files: bool = False
    fingerprint: str = ""


def audio_feature():
    """The `audio` column's feature: `datasets.Audio` at 16 kHz where `datasets` decodes it with soundfile (3.x),
    else the same `{"bytes", "path"}` storage as a plain struct (see the module docstring)."""
    if SCRIPTS_SUPPORTED:
        return datasets.Audio(sampling_rate=SAMPLING_RATE)
    return {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}


def decode_audio(audio: dict) -> dict:
    """`{"path", "array", "sampling_rate"}` (16 kHz mono float64, as `datasets.Audio` decodes with 3.x) from an
    `audio` cell in either form: already decoded (returned as it is) or the `{"bytes", "path"}` struct.

    Raises:
        CorpusFormatError: the file or bytes cannot be read as audio (the message names the file).
    """
    if "array" in audio:
        return audio
    import io

    import soundfile as sf
    import soxr

    path = audio.get("path")
    source = io.BytesIO(audio["bytes"]) if audio.get("bytes") else path
    if source is None:
        raise CorpusFormatError("an audio cell holds neither bytes nor a path")
    try:
        data, rate = sf.read(source, always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise CorpusFormatError(f"{path or 'audio bytes'}: unreadable audio ({error})") from error
    array = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != SAMPLING_RATE:
        array = soxr.resample(array, rate, SAMPLING_RATE)
    return {"path": path, "array": np.asarray(array), "sampling_rate": SAMPLING_RATE}


def encode_audio(value) -> dict:
    """An audio value in any form a user's dataset holds (a path, `{"array", "sampling_rate"}`, or the
    `{"bytes", "path"}` storage) as the `{"bytes", "path"}` storage, without torchcodec (arrays become wav bytes)."""
    if isinstance(value, (str, Path)):
        return {"bytes": None, "path": str(value)}
    if value.get("array") is not None:
        import io

        import soundfile as sf

        buffer = io.BytesIO()
        sf.write(buffer, np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"]), format="WAV",
                 subtype="FLOAT")
        return {"bytes": buffer.getvalue(), "path": value.get("path")}
    return {"bytes": value.get("bytes"), "path": value.get("path")}


def features() -> datasets.Features:
    label = datasets.ClassLabel(names=list(EMOTIONS))
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "corpus": datasets.Value("string"),
            "session": datasets.Value("string"),
            "dialogue": datasets.Value("string"),
            "speaker": datasets.Value("string"),
            "gender": datasets.Value("string"),
            "start": datasets.Value("float32"),
            "end": datasets.Value("float32"),
            "duration": datasets.Value("float32"),
            "label": label,
            "labels": datasets.Sequence(label),
            "emotion_raw": datasets.Value("string"),
            "valence": datasets.Value("float32"),
            "arousal": datasets.Value("float32"),
            "raters": datasets.Sequence(datasets.Value("string")),
            "rater_emotions": datasets.Sequence(datasets.Value("string")),
            "rater_valence": datasets.Sequence(datasets.Value("float32")),
            "rater_arousal": datasets.Sequence(datasets.Value("float32")),
            "text_raw": datasets.Value("string"),
            "text": datasets.Value("string"),
            "text_encoding": datasets.Value("string"),
            "audio": audio_feature(),
        }
    )


class KemdyBuilder(datasets.GeneratorBasedBuilder):
    """One `train` split with every usable segment; session folds are drawn by `kemdy_adapters.folds`."""

    CORPUS = ""
    BUILDER_CONFIG_CLASS = KemdyConfig
    BUILDER_CONFIGS = [
        KemdyConfig(name="single_label", description="Rows with one total emotion (the common protocol)."),
        KemdyConfig(name="multi_label", keep_multilabel=True, description="Also the tied (multi-label) rows."),
    ]
    DEFAULT_CONFIG_NAME = "single_label"

    @property
    def manual_download_instructions(self) -> str:
        folder = "KEMDy19" if self.CORPUS == "kemdy19" else "KEMDy20_v1_1"
        return MANUAL_DOWNLOAD.format(corpus=self.CORPUS, folder=folder)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=f"{self.CORPUS.upper()}: Korean multimodal emotion corpus (ETRI), speech + transcript.",
            features=features(),
            homepage="https://nanum.etri.re.kr/share/kjnoh/KEMDy20?lang=En_us",
            license="ETRI KEMDy licence: research use, no redistribution",
        )

    def _split_generators(self, dl_manager):
        if not dl_manager.manual_dir:
            raise ValueError(f"{self.CORPUS}: data_dir is required.\n{self.manual_download_instructions}")
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"data_dir": dl_manager.manual_dir})]

    def _generate_examples(self, data_dir):
        segments, _ = scan_corpus(
            data_dir,
            self.CORPUS,
            keep_multilabel=self.config.keep_multilabel,
            skip_bad_files=self.config.skip_bad_files,
        )
        for segment in segments:
            yield segment.id, {
                "id": segment.id,
                "corpus": segment.corpus,
                "session": segment.session,
                "dialogue": segment.dialogue,
                "speaker": segment.speaker,
                "gender": segment.gender,
                "start": segment.start,
                "end": segment.end,
                "duration": segment.duration,
                "label": segment.labels[0] if len(segment.labels) == 1 else -1,
                "labels": segment.labels,
                "emotion_raw": segment.emotion_raw,
                "valence": segment.valence,
                "arousal": segment.arousal,
                "raters": segment.raters,
                "rater_emotions": segment.rater_emotions,
                "rater_valence": segment.rater_valence,
                "rater_arousal": segment.rater_arousal,
                "text_raw": segment.text_raw,
                "text": segment.text,
                "text_encoding": segment.text_encoding,
                "audio": {"path": segment.wav_path, "bytes": None},
            }


class Kemdy19(KemdyBuilder):
    """KEMDy19's builder (what `dataset_scripts/kemdy19/kemdy19.py` defines for `load_dataset`)."""

    CORPUS = "kemdy19"


class Kemdy20(KemdyBuilder):
    """KEMDy20's builder (what `dataset_scripts/kemdy20/kemdy20.py` defines for `load_dataset`)."""

    CORPUS = "kemdy20"


BUILDERS = {"kemdy19": Kemdy19, "kemdy20": Kemdy20}


def script_path(corpus: str) -> Path:
    """The folder of the loading script for `corpus` (it ships beside the package in a source checkout)."""
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; expected one of {list(CORPORA)}")
    path = SCRIPTS_DIR / corpus
    if not (path / f"{corpus}.py").is_file():
        raise FileNotFoundError(f"{path / (corpus + '.py')}: loading script not found; install kemdy-adapters from "
                                "a source checkout (pip install -e .) so dataset_scripts/ is beside the package")
    return path


def corpus_fingerprint(data_dir: str | Path, corpus: str) -> str:
    """A digest of the annotation files and the wav/txt file list (names, sizes, mtimes) and this package's version."""
    root = find_corpus_root(data_dir, corpus)
    digest = hashlib.sha256(f"{__version__}:{root.resolve()}".encode())
    for path in sorted((root / "annotation").iterdir()):
        if SPECS[corpus].annotation_re.match(path.name):
            digest.update(path.name.encode() + path.read_bytes())
    for path in sorted((root / "wav").rglob("*")):
        if path.suffix in {".wav", ".txt"}:
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}:{stat.st_size}:{math.floor(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def load_kemdy(
    corpus: str,
    data_dir: str | Path,
    multi_label: bool = False,
    skip_bad_files: bool = False,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """Loads a corpus through its builder class and returns the `train` split (all sessions).

    Args:
        corpus (`str`): `"kemdy19"` or `"kemdy20"`.
        data_dir (`str` or `Path`): The unpacked corpus folder, or a folder right above it (e.g. the sample
            corpus folder).
        multi_label (`bool`, *optional*, defaults to `False`): Use the `multi_label` config (tied rows kept).
        skip_bad_files (`bool`, *optional*, defaults to `False`): Skip unreadable wav/txt files (counted in the
            log) instead of raising.
        cache_dir (`str`, *optional*): Where `datasets` keeps its Arrow cache.

    Example (the generated sample corpus, in the real on-disk layout):

    >>> import tempfile
    >>> from kemdy_adapters.hf_dataset import decode_audio, load_kemdy
    >>> from kemdy_adapters.sample_corpus import write_sample_corpus
    >>> work = tempfile.mkdtemp()
    >>> corpus = write_sample_corpus(f"{work}/corpus")
    >>> dataset = load_kemdy("kemdy20", corpus, cache_dir=f"{work}/cache")
    >>> dataset.features["label"].names
    ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise']
    >>> sorted(set(dataset["session"]))[:2], decode_audio(dataset[0]["audio"])["sampling_rate"]
    (['Sess01', 'Sess02'], 16000)
    """
    root = find_corpus_root(data_dir, corpus)
    # The builder class itself, not the loading script: no remote code to trust, and it keeps working with
    # `datasets` releases that no longer run loading scripts (4.0 and later).
    builder = BUILDERS[corpus](
        config_name="multi_label" if multi_label else "single_label",
        data_dir=str(root),
        skip_bad_files=skip_bad_files,
        fingerprint=corpus_fingerprint(root, corpus),
        cache_dir=cache_dir,
    )
    try:
        builder.download_and_prepare()
        return builder.as_dataset(split="train")
    except datasets.exceptions.DatasetGenerationError as error:
        # datasets wraps whatever the generator raised; surface our own message, which names the file.
        if isinstance(error.__cause__, CorpusFormatError):
            raise error.__cause__ from None
        raise
